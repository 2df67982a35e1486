/* Per-publisher sequence tracking: finds metrics that never arrived. */
#ifndef CL_STREAMS_H
#define CL_STREAMS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cl_streams cl_streams;

/* Gaps remembered per stream, to recognise metrics that arrive after their gap was counted. */
#define CL_STREAM_HOLES 8

/* A table of at most max streams; the least recently seen is forgotten past it. */
int cl_streams_new(cl_streams **out, size_t max);
void cl_streams_free(cl_streams *s);

/* What one batch tells about its stream. */
struct cl_seen {
    int64_t gap;      /* metrics skipped before this batch (0 when none) */
    int64_t gap_from; /* first missing sequence number when gap > 0 */
    int new_stream;   /* first batch of this stream seen by this collector */
    int replayed;     /* the batch lies wholly before what was already seen */
    int64_t filled;   /* metrics of an earlier gap that this batch brings after all */
};

/*
 * Records that the batch (source_id, epoch, first_seq .. first_seq+n-1)
 * arrived and reports what it tells. Messages can arrive out of order (the
 * rest of a dropped connection drained after the new one started), so the
 * last CL_STREAM_HOLES gaps of a stream are remembered, and a batch that
 * falls into one reports how much of it it fills. Not thread-safe: the
 * receiver owns it.
 */
void cl_streams_see(cl_streams *s, const char *source_id, int64_t epoch, int64_t first_seq,
                    size_t n, struct cl_seen *seen);

/* Number of streams tracked. */
size_t cl_streams_count(const cl_streams *s);

#endif
