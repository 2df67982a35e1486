/*
 * Admission to the query pipeline. A query either takes a free worker at
 * once, or joins a FIFO of waiters, each with a condition variable of its
 * own on its stack, or is refused when the FIFO is full. A worker that is
 * given back goes straight to the oldest waiter, so queries start in the
 * order they arrived and a woken thread never races a newcomer for it.
 */
#include "admission.h"
#include "am_error.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct waiter {
    pthread_cond_t cv;
    bool granted;
    struct waiter *next;
};

struct orch_admission {
    pthread_mutex_t mu;
    int workers, queue_max;
    int running, waiting;
    bool closed;
    struct waiter *head, *tail;
};

int orch_admission_new(orch_admission **out, int workers, int queue_max)
{
    if (workers < 1 || queue_max < 0)
        return AM_EINVAL;
    orch_admission *a = calloc(1, sizeof *a);
    if (!a)
        return AM_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->workers = workers;
    a->queue_max = queue_max;
    *out = a;
    return AM_OK;
}

static void unlink_waiter(orch_admission *a, struct waiter *w)
{
    struct waiter **pp = &a->head, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = w->next;
    if (a->tail == w)
        a->tail = prev;
    a->waiting--;
}

int orch_admission_enter(orch_admission *a, long timeout_ms)
{
    int rc = AM_OK;
    pthread_mutex_lock(&a->mu);
    if (a->closed) {
        rc = AM_ECLOSED;
    } else if (a->running < a->workers && !a->head) {
        a->running++;
    } else if (a->waiting >= a->queue_max || timeout_ms <= 0) {
        rc = AM_EFULL;
    } else {
        struct waiter w = {.granted = false};
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&w.cv, &attr);
        pthread_condattr_destroy(&attr);
        if (a->tail)
            a->tail->next = &w;
        else
            a->head = &w;
        a->tail = &w;
        a->waiting++;

        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!w.granted && !a->closed) {
            if (pthread_cond_timedwait(&w.cv, &a->mu, &until) == ETIMEDOUT)
                break;
        }
        /* A grant counts even when it came together with the timeout. */
        if (!w.granted) {
            unlink_waiter(a, &w);
            rc = a->closed ? AM_ECLOSED : AM_ETIMEDOUT;
        }
        pthread_cond_destroy(&w.cv);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void orch_admission_leave(orch_admission *a)
{
    pthread_mutex_lock(&a->mu);
    struct waiter *w = a->head;
    if (w && !a->closed) {
        /* The worker moves to the oldest waiter: running stays the same. */
        a->head = w->next;
        if (!a->head)
            a->tail = NULL;
        a->waiting--;
        w->granted = true;
        pthread_cond_signal(&w->cv);
    } else {
        a->running--;
    }
    pthread_mutex_unlock(&a->mu);
}

void orch_admission_close(orch_admission *a)
{
    pthread_mutex_lock(&a->mu);
    a->closed = true;
    for (struct waiter *w = a->head; w; w = w->next)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&a->mu);
}

void orch_admission_load(orch_admission *a, int *running, int *waiting)
{
    pthread_mutex_lock(&a->mu);
    *running = a->running;
    *waiting = a->waiting;
    pthread_mutex_unlock(&a->mu);
}

void orch_admission_free(orch_admission *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}
