/*
 * Per-publisher sequence tracking: finds metrics that never arrived, and
 * remembers them as holes until they arrive, are announced gone, or are
 * given up (the replay requests of replay.c are made from the holes).
 */
#ifndef CL_STREAMS_H
#define CL_STREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cl_streams cl_streams;

/*
 * Gaps remembered per stream, to recognise metrics that arrive after their
 * gap was counted and to ask for them. Past it the oldest hole is
 * forgotten: given up, and counted so.
 */
#define CL_STREAM_HOLES 16

/* A table of at most max streams; the least recently seen is forgotten past it. */
int cl_streams_new(cl_streams **out, size_t max);
void cl_streams_free(cl_streams *s);

/* What one batch tells about its stream. */
struct cl_seen {
    int64_t gap;       /* metrics skipped before this batch (0 when none) */
    int64_t gap_from;  /* first missing sequence number when gap > 0 */
    int new_stream;    /* first batch of this stream seen by this collector */
    int replayed;      /* the batch lies wholly before what was already seen */
    int64_t filled;    /* metrics of an earlier gap that this batch brings after all */
    int64_t forgotten; /* metrics of holes forgotten to make room (given up, not filled) */
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

/* True when the stream is tracked. */
bool cl_streams_known(cl_streams *s, const char *source_id, int64_t epoch);

/*
 * Remembers [from, to) as missing from the stream (found by the writer
 * below a restarted collector's first message), tracking the stream if it
 * is not yet. Returns the metrics of holes forgotten to make room.
 */
int64_t cl_streams_add_hole(cl_streams *s, const char *source_id, int64_t epoch, int64_t from,
                            int64_t to);

/*
 * Takes [from, to) out of the stream's holes: its publisher no longer has
 * them. Returns how many missing metrics that settles.
 */
int64_t cl_streams_gone(cl_streams *s, const char *source_id, int64_t epoch, int64_t from,
                        int64_t to);

/* Metrics in the holes of every stream now. */
int64_t cl_streams_pending(const cl_streams *s);

/* Called by cl_streams_due for one stream's holes to ask for again, n at most CL_STREAM_HOLES. */
typedef void cl_streams_ask_fn(void *arg, const char *source_id, int64_t epoch,
                               const int64_t (*ranges)[2], int n);
/* Called by cl_streams_due for a hole given up. */
typedef void cl_streams_give_up_fn(void *arg, const char *source_id, int64_t epoch, int64_t from,
                                   int64_t to);

/*
 * Walks the holes at now_ns (a monotonic clock): a hole is first asked for
 * delay_ns after it was first walked, then again after 250 ms, doubling up
 * to 5 s; once it has been open give_up_ns it is given up (give_up called,
 * the hole forgotten). give_up_ns 0: never given up.
 */
void cl_streams_due(cl_streams *s, int64_t now_ns, int64_t delay_ns, int64_t give_up_ns,
                    cl_streams_ask_fn *ask, cl_streams_give_up_fn *give_up, void *arg);

#endif
