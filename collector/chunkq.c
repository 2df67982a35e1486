/* A bounded FIFO of row chunks, with its bound covering chunks being written too. */
#include "chunkq.h"
#include "am_clock.h"
#include "am_error.h"
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void publish_depth(struct cl_chunkq *q)
{
    atomic_store_explicit(&cl_stats.queue_rows, q->rows, memory_order_relaxed);
    atomic_store_explicit(&cl_stats.queue_bytes, q->bytes, memory_order_relaxed);
}

void cl_chunkq_init(struct cl_chunkq *q, size_t max_bytes)
{
    pthread_condattr_t ca;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->nonempty, &ca);
    pthread_condattr_destroy(&ca);
    q->head = q->tail = NULL;
    q->rows = q->bytes = 0;
    q->max_bytes = max_bytes;
    q->closed = false;
}

void cl_chunkq_destroy(struct cl_chunkq *q)
{
    struct cl_chunk *c = q->head;
    while (c) {
        struct cl_chunk *next = c->next;
        cl_chunk_free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    pthread_cond_destroy(&q->nonempty);
    pthread_mutex_destroy(&q->mu);
}

void cl_chunk_free(struct cl_chunk *c)
{
    if (!c)
        return;
    free(c->rows);
    free(c->check_source_id);
    free(c);
}

int cl_chunkq_push(struct cl_chunkq *q, struct cl_chunk *c)
{
    /* What a chunk costs in memory: its rows plus the bookkeeping. */
    size_t cost = c->len + sizeof *c;
    pthread_mutex_lock(&q->mu);
    if (q->bytes + cost > q->max_bytes) {
        pthread_mutex_unlock(&q->mu);
        return AM_EFULL;
    }
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->rows += c->nrows;
    q->bytes += cost;
    publish_depth(q);
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
    return AM_OK;
}

size_t cl_chunkq_take(struct cl_chunkq *q, size_t max_rows, int timeout_ms, struct cl_chunk **out)
{
    struct timespec ts;
    size_t n = 0, rows = 0;
    struct cl_chunk *first = NULL, *last = NULL;

    am_clock_mono_deadline(&ts, timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->closed) {
        if (pthread_cond_timedwait(&q->nonempty, &q->mu, &ts) == ETIMEDOUT)
            break;
    }
    while (q->head && (n == 0 || rows + q->head->nrows <= max_rows)) {
        struct cl_chunk *c = q->head;
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        c->next = NULL;
        if (last)
            last->next = c;
        else
            first = c;
        last = c;
        rows += c->nrows;
        n++;
    }
    pthread_mutex_unlock(&q->mu);
    *out = first;
    return n;
}

void cl_chunkq_release(struct cl_chunkq *q, struct cl_chunk *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&q->mu);
    q->rows -= c->nrows;
    q->bytes -= c->len + sizeof *c;
    publish_depth(q);
    pthread_mutex_unlock(&q->mu);
    cl_chunk_free(c);
}

void cl_chunkq_close(struct cl_chunkq *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
}
