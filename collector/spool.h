/* The collector's disk spool: row chunks kept in files while PostgreSQL cannot take them. */
#ifndef CL_SPOOL_H
#define CL_SPOOL_H

#include "chunkq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cl_spool cl_spool;

/*
 * The spool is a directory of segment files, numbered in the order they
 * were written. The receiver appends chunks to the open segment
 * (NNNNNNNNNNNNNNNN.open); a segment is sealed (fsync, renamed to .seg,
 * directory fsync) when it reaches its size or its age, or when the writer
 * wants it. Only then does it count as spooled. The writer replays sealed
 * segments oldest first and deletes each one only after its rows are
 * committed. Every record carries a CRC-32, so a segment cut short by a
 * crash is truncated after its last whole record when the spool is opened.
 */
struct cl_spool_config {
    const char *dir;        /* created if missing (one level) */
    uint64_t max_bytes;     /* all segments together; past it appends fail with AM_EFULL */
    uint64_t segment_bytes; /* a segment is sealed once it holds this much */
    int segment_ms;         /* or once its first record is this old */
};

/* What opening the spool found left by an earlier run. */
struct cl_spool_recovery {
    uint64_t segments;  /* segments kept, to be replayed */
    uint64_t rows;      /* rows in them */
    uint64_t torn;      /* segments whose tail was cut off (truncated to their last whole record) */
    uint64_t lost_rows; /* rows of torn records whose header was still readable */
};

/*
 * Opens (or creates) the spool in cfg->dir, takes an exclusive lock on it
 * (a second collector on the same directory gets AM_EIO) and checks every
 * segment left there, sealing an open one. *out is freed with
 * cl_spool_close; rec may be NULL. Returns 0, or AM_EIO or AM_ENOMEM with
 * the reason in err (errlen bytes; may be NULL).
 */
int cl_spool_open(cl_spool **out, const struct cl_spool_config *cfg, struct cl_spool_recovery *rec,
                  char *err, size_t errlen);

/* Seals the open segment and frees s; accepts NULL. What is on disk stays for the next start. */
void cl_spool_close(cl_spool *s);

/* True while the spool holds any row, sealed or not. Thread-safe. */
bool cl_spool_holds(cl_spool *s);

/*
 * Appends the rows of c (not taken over; the caller still frees it) to the
 * open segment. Returns 0, AM_EFULL when max_bytes would be passed, or
 * AM_EIO when the file cannot be written (reason logged). Thread-safe.
 */
int cl_spool_append(cl_spool *s, const struct cl_chunk *c);

/* Seals the open segment when it is due (by age); call it now and then. Thread-safe. */
void cl_spool_tick(cl_spool *s);

/* Seals the open segment now, if it holds anything. Returns 0 or AM_EIO. Thread-safe. */
int cl_spool_seal(cl_spool *s);

/* A sealed segment loaded for replay. */
struct cl_spool_segment {
    uint64_t number;
    struct cl_chunk *chunks; /* owned, linked by next; freed by cl_spool_done or _release */
    uint64_t rows;
    uint64_t lost_rows; /* rows of records that failed their check (counted, not replayed) */
};

/*
 * Loads the oldest sealed segment (sealing the open one first when no
 * other is left) into *out, which the caller owns until cl_spool_done or
 * cl_spool_release. Returns 0, AM_ENOTFOUND when the spool holds nothing,
 * AM_EIO or AM_ENOMEM. The segment stays on disk.
 */
int cl_spool_take(cl_spool *s, struct cl_spool_segment **out);

/* The rows of seg are committed: deletes its file and frees seg. Accepts NULL. */
void cl_spool_done(cl_spool *s, struct cl_spool_segment *seg);

/*
 * Gives up on the oldest sealed segment, which cl_spool_take could not
 * read: deletes it if it can and returns the rows it held, for the caller
 * to count as dropped. Returns 0 when there is none.
 */
uint64_t cl_spool_discard_oldest(cl_spool *s);

/* Frees seg and leaves its file for a later take (or the next start). Accepts NULL. */
void cl_spool_release(cl_spool *s, struct cl_spool_segment *seg);

#endif
