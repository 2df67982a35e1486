/* The bounded queue of COPY rows between the bus receiver and the database writer. */
#ifndef CL_CHUNKQ_H
#define CL_CHUNKQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rows of one bus message, in COPY text format. */
struct cl_chunk {
    struct cl_chunk *next;
    char *rows; /* owned; freed by cl_chunk_free */
    size_t len;
    uint32_t nrows;
    /*
     * Set on the first message of a stream this collector run sees when it
     * starts past seq 0 (a restart, or a stream forgotten at the bound):
     * once it is committed, the writer looks up the stream's last stored
     * sequence number below check_seq and counts what lies between as a gap.
     */
    char *check_source_id; /* owned; NULL when there is nothing to check */
    int64_t check_epoch;
    int64_t check_seq;
};

struct cl_chunkq {
    pthread_mutex_t mu;
    pthread_cond_t nonempty;
    struct cl_chunk *head, *tail;
    size_t rows, bytes; /* queued and taken-but-not-released, against the bound */
    size_t max_bytes;
    bool closed;
};

void cl_chunkq_init(struct cl_chunkq *q, size_t max_bytes);
void cl_chunkq_destroy(struct cl_chunkq *q);

/*
 * Appends c. Ownership moves to the queue on success only; AM_EFULL when
 * the bound would be passed (the caller drops c and counts it).
 */
int cl_chunkq_push(struct cl_chunkq *q, struct cl_chunk *c);

/*
 * Detaches chunks from the head, at least one and up to max_rows rows, into
 * a list (*out, linked by next) that the caller owns. Waits up to timeout_ms
 * while the queue is empty; returns the number of chunks (0 on timeout or
 * when closed and empty). Their bytes stay counted until cl_chunkq_release.
 */
size_t cl_chunkq_take(struct cl_chunkq *q, size_t max_rows, int timeout_ms, struct cl_chunk **out);

/* Frees a taken chunk and returns its room to the bound. Accepts NULL. */
void cl_chunkq_release(struct cl_chunkq *q, struct cl_chunk *c);

/* Wakes cl_chunkq_take waiters for good. */
void cl_chunkq_close(struct cl_chunkq *q);

/* Frees a chunk that was never queued. Accepts NULL. */
void cl_chunk_free(struct cl_chunk *c);

#endif
