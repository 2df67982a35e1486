/* A background job of the admin-api: its own thread and database connection, run every period. */
#include "periodic.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct aa_periodic {
    const char *database_url, *name, *opts; /* not copied: live as long as the job */
    int interval_s;
    aa_periodic_fn fn;
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    bool stopping;
    _Atomic uint64_t runs, failures;
    _Atomic int64_t last_success_unix;
};

void aa_periodic_stats(aa_periodic *job, struct aa_periodic_stats *out)
{
    out->runs = atomic_load(&job->runs);
    out->failures = atomic_load(&job->failures);
    out->last_success_unix = atomic_load(&job->last_success_unix);
}

bool aa_periodic_stopping(aa_periodic *job)
{
    pthread_mutex_lock(&job->mu);
    bool s = job->stopping;
    pthread_mutex_unlock(&job->mu);
    return s;
}

bool aa_periodic_sleep(aa_periodic *job, int ms)
{
    struct timespec ts;
    am_clock_mono_deadline(&ts, ms);
    pthread_mutex_lock(&job->mu);
    while (!job->stopping && pthread_cond_timedwait(&job->wake, &job->mu, &ts) == 0)
        ;
    bool s = job->stopping;
    pthread_mutex_unlock(&job->mu);
    return !s;
}

static PGconn *connect_job(aa_periodic *job)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {job->database_url, "5", job->name, job->opts ? job->opts : "", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        am_log_warn("%s: database connection failed: %s", job->name, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static void *job_main(void *arg)
{
    aa_periodic *job = arg;
    PGconn *conn = NULL;

    while (!aa_periodic_stopping(job)) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            conn = connect_job(job);
        }
        if (conn) {
            atomic_fetch_add(&job->runs, 1);
            if (job->fn(job->arg, job, conn) == AM_OK)
                atomic_store(&job->last_success_unix, am_clock_now_us() / 1000000);
            else
                atomic_fetch_add(&job->failures, 1);
        }
        struct timespec ts;
        am_clock_mono_deadline(&ts, (int64_t)job->interval_s * 1000);
        pthread_mutex_lock(&job->mu);
        if (!job->stopping)
            pthread_cond_timedwait(&job->wake, &job->mu, &ts);
        pthread_mutex_unlock(&job->mu);
    }
    PQfinish(conn);
    return NULL;
}

int aa_periodic_start(aa_periodic **out, const char *database_url, const char *name,
                      const char *opts, int interval_s, aa_periodic_fn fn, void *arg)
{
    aa_periodic *job = calloc(1, sizeof *job);
    if (!job)
        return AM_ENOMEM;
    *job = (struct aa_periodic){.database_url = database_url,
                                .name = name,
                                .opts = opts,
                                .interval_s = interval_s,
                                .fn = fn,
                                .arg = arg};
    pthread_mutex_init(&job->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&job->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&job->thread, NULL, job_main, job) != 0) {
        pthread_cond_destroy(&job->wake);
        pthread_mutex_destroy(&job->mu);
        free(job);
        return AM_ENOMEM;
    }
    *out = job;
    return AM_OK;
}

void aa_periodic_stop(aa_periodic *job)
{
    if (!job)
        return;
    pthread_mutex_lock(&job->mu);
    job->stopping = true;
    pthread_cond_broadcast(&job->wake);
    pthread_mutex_unlock(&job->mu);
    pthread_join(job->thread, NULL);
    pthread_cond_destroy(&job->wake);
    pthread_mutex_destroy(&job->mu);
    free(job);
}
