/* Wake-ups for suspended connections: one timer thread resumes each when its next line is due. */
#include "wakeup.h"
#include "am_clock.h"
#include "am_error.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct entry {
    int64_t due_ns;
    struct MHD_Connection *conn;
};

struct sim_wakeup {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC, like the due times */
    pthread_t thread;
    struct entry *heap; /* binary min-heap on due_ns */
    size_t len, cap;
    bool stopping;
};

static void sift_up(struct entry *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent].due_ns <= h[i].due_ns)
            break;
        struct entry t = h[parent];
        h[parent] = h[i];
        h[i] = t;
        i = parent;
    }
}

static void sift_down(struct entry *h, size_t len, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < len && h[l].due_ns < h[m].due_ns)
            m = l;
        if (r < len && h[r].due_ns < h[m].due_ns)
            m = r;
        if (m == i)
            return;
        struct entry t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
}

/*
 * Resuming happens under the lock, after the matching suspend (also under
 * it), so a connection is never resumed before it was suspended. Lock order
 * is always this mutex, then libmicrohttpd's own.
 */
static void *run(void *arg)
{
    sim_wakeup *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (s->len == 0) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        int64_t now = am_clock_mono_ns();
        if (s->heap[0].due_ns <= now) {
            MHD_resume_connection(s->heap[0].conn);
            s->heap[0] = s->heap[--s->len];
            sift_down(s->heap, s->len, 0);
            continue;
        }
        struct timespec ts = {.tv_sec = (time_t)(s->heap[0].due_ns / 1000000000),
                              .tv_nsec = (long)(s->heap[0].due_ns % 1000000000)};
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sim_wakeup_start(sim_wakeup **out, size_t capacity)
{
    pthread_condattr_t attr;
    sim_wakeup *s = calloc(1, sizeof *s);
    if (!s)
        return AM_ENOMEM;
    s->heap = calloc(capacity ? capacity : 1, sizeof *s->heap);
    if (!s->heap) {
        free(s);
        return AM_ENOMEM;
    }
    s->cap = capacity;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s->heap);
        free(s);
        return AM_ENOMEM;
    }
    *out = s;
    return AM_OK;
}

int sim_wakeup_at(sim_wakeup *s, struct MHD_Connection *conn, int64_t due_ns)
{
    int rc = AM_OK;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        rc = AM_ECLOSED;
    } else if (s->len == s->cap) {
        rc = AM_EFULL;
    } else {
        MHD_suspend_connection(conn);
        s->heap[s->len] = (struct entry){.due_ns = due_ns, .conn = conn};
        sift_up(s->heap, s->len);
        s->len++;
        /* Wake the thread only when its next deadline moved earlier. */
        if (s->heap[0].conn == conn)
            pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sim_wakeup_stop(sim_wakeup *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stopping = true;
    for (size_t i = 0; i < s->len; i++)
        MHD_resume_connection(s->heap[i].conn);
    s->len = 0;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
}

void sim_wakeup_free(sim_wakeup *s)
{
    if (!s)
        return;
    sim_wakeup_stop(s);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->heap);
    free(s);
}
