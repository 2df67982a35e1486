/*
 * Retention: a thread that deletes metrics older than the configured number
 * of days, a few thousand rows per transaction, so no lock is held for long
 * and the collectors' inserts never wait on it. Replicas take turns through
 * an advisory lock.
 */
#include "retention.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"
#include "periodic.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any stable number; the same in every admin-api replica. */
#define RETENTION_LOCK_KEY "7243520"

struct aa_retention {
    struct aa_retention_config cfg;
    aa_periodic *job;
    _Atomic uint64_t deleted;
};

static const char delete_sql[] = "DELETE FROM llm_performance_metric WHERE id IN ("
                                 "  SELECT id FROM llm_performance_metric"
                                 "  WHERE timestamp < now() - make_interval(days => $1::int)"
                                 "  ORDER BY timestamp LIMIT $2::int)";

/* One run: batches until nothing old is left. Returns 0 or AM_EDB. */
static int run_once(aa_retention *r, aa_periodic *job, PGconn *conn)
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
        if (aa_periodic_stopping(job))
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

static int retention_run(void *arg, aa_periodic *job, PGconn *conn)
{
    return run_once(arg, job, conn);
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
    int rc = aa_periodic_start(&r->job, cfg->database_url, "athena-admin-api-retention", NULL,
                               cfg->interval_s, retention_run, r);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return AM_OK;
}

void aa_retention_write_prom(aa_retention *r, struct am_buf *b)
{
    if (!r)
        return;
    struct aa_periodic_stats st;
    aa_periodic_stats(r->job, &st);
    am_prom_counter(b, "athena_admin_retention_deleted_total",
                    "Metrics deleted for being older than the retention.",
                    atomic_load(&r->deleted));
    am_prom_counter(b, "athena_admin_retention_runs_total", "Retention runs started.", st.runs);
    am_prom_counter(b, "athena_admin_retention_failures_total", "Retention runs that failed.",
                    st.failures);
    am_prom_gauge(b, "athena_admin_retention_last_success_timestamp_seconds",
                  "When a retention run last finished.", (double)st.last_success_unix);
}

void aa_retention_stop(aa_retention *r)
{
    if (!r)
        return;
    aa_periodic_stop(r->job);
    free(r);
}
