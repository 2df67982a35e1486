/* Admission to the query pipeline: a fixed number of workers and a bounded FIFO queue. */
#ifndef ORCH_ADMISSION_H
#define ORCH_ADMISSION_H

typedef struct orch_admission orch_admission;

/*
 * At most workers queries run at once and at most queue_max wait for a
 * worker, in arrival order. On success *out is owned by the caller and
 * freed with orch_admission_free. AM_EINVAL for workers < 1 or
 * queue_max < 0, AM_ENOMEM.
 */
int orch_admission_new(orch_admission **out, int workers, int queue_max);

/*
 * Takes a worker, waiting in the queue at most timeout_ms (0: not at all).
 * Returns 0 (run, then call orch_admission_leave), AM_EFULL (the queue is
 * full: refuse the query), AM_ETIMEDOUT (no worker came free in time) or
 * AM_ECLOSED (shutting down). Thread-safe.
 */
int orch_admission_enter(orch_admission *a, long timeout_ms);

/* Gives the worker back; the query that waited longest gets it. */
void orch_admission_leave(orch_admission *a);

/* Refuses new queries from now on and wakes those waiting (AM_ECLOSED). */
void orch_admission_close(orch_admission *a);

/* Queries running and waiting now. */
void orch_admission_load(orch_admission *a, int *running, int *waiting);

/* Frees a; nothing may be running or waiting. Accepts NULL. */
void orch_admission_free(orch_admission *a);

#endif
