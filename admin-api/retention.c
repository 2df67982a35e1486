/*
 * Retention: a thread that deletes metrics older than the configured number
 * of days, a few thousand rows per transaction, so no lock is held for long
 * and the collectors' inserts never wait on it. Replicas take turns through
 * an advisory lock.
 */
#include "retention.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Any stable number; the same in every admin-api replica. */
#define RETENTION_LOCK_KEY "7243520"

struct aa_retention {
    struct aa_retention_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    bool stopping;
    _Atomic uint64_t deleted;
    _Atomic uint64_t runs;
    _Atomic uint64_t failures;
    _Atomic int64_t last_success_unix;
};

static const char delete_sql[] = "DELETE FROM llm_performance_metric WHERE id IN ("
                                 "  SELECT id FROM llm_performance_metric"
                                 "  WHERE timestamp < now() - make_interval(days => $1::int)"
                                 "  ORDER BY timestamp LIMIT $2::int)";

static bool stopping(aa_retention *r)
{
    pthread_mutex_lock(&r->mu);
    bool s = r->stopping;
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* One run: batches until nothing old is left. Returns 0 or AM_EDB. */
static int run_once(aa_retention *r, PGconn *conn)
{
    char days[16], batch[16];
    const char *params[2] = {days, batch};
    snprintf(days, sizeof days, "%d", r->cfg.days);
    snprintf(batch, sizeof batch, "%d", r->cfg.batch_rows);

    PGresult *res = PQexec(conn, "SELECT pg_try_advisory_lock(" RETENTION_LOCK_KEY ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        am_log_warn("retention: %s", PQresultErrorMessage(res));
        PQclear(res);
        return AM_EDB;
    }
    bool locked = !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!locked) {
        am_log_debug("retention: another replica is running it");
        return AM_OK;
    }

    int rc = AM_OK;
    uint64_t total = 0;
    for (;;) {
        if (stopping(r))
            break;
        res = PQexecParams(conn, delete_sql, 2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            am_log_warn("retention: delete failed: %s", PQresultErrorMessage(res));
            PQclear(res);
            rc = AM_EDB;
            break;
        }
        long n = strtol(PQcmdTuples(res), NULL, 10);
        PQclear(res);
        total += (uint64_t)n;
        atomic_fetch_add(&r->deleted, (uint64_t)n);
        if (n < r->cfg.batch_rows)
            break;
    }
    res = PQexec(conn, "SELECT pg_advisory_unlock(" RETENTION_LOCK_KEY ")");
    PQclear(res);
    if (total > 0)
        am_log_info("retention: deleted %llu metrics older than %d days", (unsigned long long)total,
                    r->cfg.days);
    return rc;
}

static void *retention_main(void *arg)
{
    aa_retention *r = arg;
    PGconn *conn = NULL;

    while (!stopping(r)) {
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
            const char *vals[] = {r->cfg.database_url, "5", "athena-admin-api-retention", NULL};
            conn = PQconnectdbParams(keys, vals, 1);
            if (PQstatus(conn) != CONNECTION_OK) {
                am_log_warn("retention: database connection failed: %s", PQerrorMessage(conn));
                PQfinish(conn);
                conn = NULL;
            }
        }
        if (conn) {
            atomic_fetch_add(&r->runs, 1);
            if (run_once(r, conn) == AM_OK)
                atomic_store(&r->last_success_unix, am_clock_now_us() / 1000000);
            else
                atomic_fetch_add(&r->failures, 1);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += r->cfg.interval_s;
        pthread_mutex_lock(&r->mu);
        if (!r->stopping)
            pthread_cond_timedwait(&r->wake, &r->mu, &ts);
        pthread_mutex_unlock(&r->mu);
    }
    PQfinish(conn);
    return NULL;
}

int aa_retention_start(aa_retention **out, const struct aa_retention_config *cfg)
{
    *out = NULL;
    if (cfg->days <= 0)
        return AM_OK;
    aa_retention *r = calloc(1, sizeof *r);
    if (!r)
        return AM_ENOMEM;
    r->cfg = *cfg;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, retention_main, r) != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return AM_ENOMEM;
    }
    *out = r;
    return AM_OK;
}

void aa_retention_write_prom(aa_retention *r, struct am_buf *b)
{
    if (!r)
        return;
    am_prom_counter(b, "athena_admin_retention_deleted_total",
                    "Metrics deleted for being older than the retention.",
                    atomic_load(&r->deleted));
    am_prom_counter(b, "athena_admin_retention_runs_total", "Retention runs started.",
                    atomic_load(&r->runs));
    am_prom_counter(b, "athena_admin_retention_failures_total", "Retention runs that failed.",
                    atomic_load(&r->failures));
    am_prom_gauge(b, "athena_admin_retention_last_success_timestamp_seconds",
                  "When a retention run last finished.",
                  (double)atomic_load(&r->last_success_unix));
}

void aa_retention_stop(aa_retention *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
