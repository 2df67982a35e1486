/*
 * Hourly rollups. Inserts mark their hour dirty (a trigger, migration 3);
 * this thread recomputes finished dirty hours from the raw rows, one hour
 * per transaction, skipping hours another replica is working on. The
 * summary query reads refreshed hours from the rollups and everything else
 * from the raw rows, so it is never stale; its percentiles come from
 * histograms with bins 12 % apart.
 */
#include "rollup.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"
#include "metrics_filter.h"
#include "periodic.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BINS 128

struct aa_rollup {
    struct aa_rollup_config cfg;
    aa_periodic *job;
    _Atomic uint64_t hours, failures;
    _Atomic int64_t pending;
};

static int exec_simple(PGconn *conn, const char *sql, ExecStatusType want)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == want;
    if (!ok)
        am_log_warn("rollup: %s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return ok ? AM_OK : AM_EDB;
}

/* Refreshes one finished dirty hour; *done is false when none is left. */
static int refresh_one(PGconn *conn, bool *done)
{
    PGresult *res = NULL;
    int rc;
    *done = true;
    if ((rc = exec_simple(conn, "BEGIN", PGRES_COMMAND_OK)))
        return rc;
    res = PQexec(conn, "SELECT hour FROM llm_metric_rollup_dirty"
                       " WHERE hour < date_trunc('hour', now(), 'UTC')"
                       " ORDER BY hour LIMIT 1 FOR UPDATE SKIP LOCKED");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        am_log_warn("rollup: %s", PQresultErrorMessage(res));
        rc = AM_EDB;
        goto fail;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return exec_simple(conn, "COMMIT", PGRES_COMMAND_OK);
    }
    char hour[64];
    snprintf(hour, sizeof hour, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    const char *params[1] = {hour};
    res = PQexecParams(conn, "DELETE FROM llm_metric_rollup_dirty WHERE hour = $1", 1, NULL, params,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        am_log_warn("rollup: %s", PQresultErrorMessage(res));
        rc = AM_EDB;
        goto fail;
    }
    PQclear(res);
    res = PQexecParams(conn, "SELECT am_rollup_hour($1)", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        am_log_warn("rollup of %s: %s", hour, PQresultErrorMessage(res));
        rc = AM_EDB;
        goto fail;
    }
    PQclear(res);
    *done = false;
    return exec_simple(conn, "COMMIT", PGRES_COMMAND_OK);
fail:
    PQclear(res);
    exec_simple(conn, "ROLLBACK", PGRES_COMMAND_OK);
    return rc;
}

static void count_pending(aa_rollup *r, PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT count(*) FROM llm_metric_rollup_dirty"
                                 " WHERE hour < date_trunc('hour', now(), 'UTC')");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        atomic_store(&r->pending, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
    PQclear(res);
}

static void rollup_run(void *arg, aa_periodic *job, PGconn *conn)
{
    aa_rollup *r = arg;
    bool done = false;
    while (!done && !aa_periodic_stopping(job)) {
        if (refresh_one(conn, &done) != AM_OK) {
            atomic_fetch_add(&r->failures, 1);
            break;
        }
        if (!done)
            atomic_fetch_add(&r->hours, 1);
    }
    count_pending(r, conn);
}

int aa_rollup_start(aa_rollup **out, const struct aa_rollup_config *cfg)
{
    *out = NULL;
    if (cfg->interval_s <= 0)
        return AM_OK;
    aa_rollup *r = calloc(1, sizeof *r);
    if (!r)
        return AM_ENOMEM;
    r->cfg = *cfg;
    int rc = aa_periodic_start(&r->job, cfg->database_url, "athena-admin-api-rollup",
                               "-c TimeZone=UTC", cfg->interval_s, rollup_run, r);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return AM_OK;
}

void aa_rollup_write_prom(aa_rollup *r, struct am_buf *b)
{
    if (!r)
        return;
    am_prom_counter(b, "athena_admin_rollup_refreshes_total", "Hours recomputed into the rollups.",
                    atomic_load(&r->hours));
    am_prom_counter(b, "athena_admin_rollup_failures_total", "Rollup refreshes that failed.",
                    atomic_load(&r->failures));
    am_prom_gauge(b, "athena_admin_rollup_backlog",
                  "Finished hours waiting for their rollup (read raw meanwhile).",
                  (double)atomic_load(&r->pending));
}

void aa_rollup_stop(aa_rollup *r)
{
    if (!r)
        return;
    aa_periodic_stop(r->job);
    free(r);
}

/* ARRAY[sum(p0), ..., sum(p127)] */
static void sums(struct am_buf *b, char p)
{
    am_buf_append(b, "ARRAY[", 6);
    for (int i = 0; i < BINS; i++)
        am_buf_printf(b, "%ssum(%c%d)", i ? "," : "", p, i);
    am_buf_append(b, "]::bigint[]", 11);
}

int aa_rollup_summary_sql(char *out, size_t cap, const char *group)
{
    struct am_buf b;
    const char *g = group ? group : "NULL::text";
    const char *gb = group ? " GROUP BY 1" : "";
    am_buf_init(&b, 1 << 20);

    am_buf_printf(&b,
                  "WITH span AS (SELECT date_trunc('hour', $1::timestamptz + interval '1 hour'"
                  " - interval '1 microsecond', 'UTC') AS hs,"
                  " greatest(date_trunc('hour', $2::timestamptz, 'UTC'), date_trunc('hour',"
                  " $1::timestamptz + interval '1 hour' - interval '1 microsecond', 'UTC')) AS he),"
                  " ru AS (SELECT %s AS grp, sum(n) AS n, sum(errors) AS errors,"
                  " sum(latency_sum) AS ls, sum(tps_sum) AS ts, sum(tokens_sum) AS tk, ",
                  g);
    sums(&b, 'l');
    am_buf_append(&b, " AS lh, ", 8);
    sums(&b, 't');
    am_buf_append(&b, " AS th, ", 8);
    sums(&b, 'f');
    am_buf_printf(&b,
                  " AS fh FROM llm_metric_rollup r, span WHERE r.hour >= span.hs"
                  " AND r.hour < span.he AND NOT EXISTS (SELECT 1 FROM llm_metric_rollup_dirty d"
                  " WHERE d.hour = r.hour) AND ($3::text IS NULL OR r.model = $3::text)"
                  " AND ($4::text IS NULL OR r.backend = $4::text)"
                  " AND ($6::text IS NULL OR r.source = $6::text)"
                  " AND ($7::text IS NULL OR r.status = $7::text)%s),",
                  group ? " GROUP BY 1 HAVING count(*) > 0" : " HAVING count(*) > 0");
    am_buf_printf(
        &b,
        " raw AS MATERIALIZED ("
        "SELECT m.* FROM llm_performance_metric m, span WHERE " AA_METRICS_FILTER_SQL
        " AND m.timestamp < span.hs"
        " UNION ALL SELECT m.* FROM llm_performance_metric m, span WHERE " AA_METRICS_FILTER_SQL
        " AND m.timestamp >= span.he"
        " UNION ALL SELECT m.* FROM span, llm_metric_rollup_dirty d"
        " JOIN llm_performance_metric m ON m.timestamp >= d.hour"
        " AND m.timestamp < d.hour + interval '1 hour'"
        " WHERE d.hour >= span.hs AND d.hour < span.he AND " AA_METRICS_FILTER_SQL "),"
        " ra AS (SELECT %s AS grp, count(*) AS n,"
        " count(*) FILTER (WHERE status = 'error') AS errors, sum(latency_seconds) AS ls,"
        " sum(tokens_per_second) AS ts, coalesce(sum(tokens), 0) AS tk FROM raw%s),"
        " rh AS (SELECT grp,"
        " am_hist_from(array_agg(b) FILTER (WHERE k = 'l'), array_agg(c) FILTER"
        " (WHERE k = 'l')) AS lh,"
        " am_hist_from(array_agg(b) FILTER (WHERE k = 't'), array_agg(c) FILTER"
        " (WHERE k = 't')) AS th,"
        " am_hist_from(array_agg(b) FILTER (WHERE k = 'f'), array_agg(c) FILTER"
        " (WHERE k = 'f')) AS fh"
        " FROM (SELECT %s AS grp, 'l' AS k, am_bin(latency_seconds, 0.001) AS b,"
        " count(*) AS c FROM raw GROUP BY 1, 3"
        " UNION ALL SELECT %s, 't', am_bin(tokens_per_second, 0.01), count(*) FROM raw"
        " GROUP BY 1, 3"
        " UNION ALL SELECT %s, 'f', am_bin(ttft_seconds, 0.001), count(*) FROM raw"
        " WHERE ttft_seconds IS NOT NULL GROUP BY 1, 3) x GROUP BY grp),",
        g, gb, g, g, g);
    am_buf_printf(&b,
                  " keys AS (SELECT grp FROM ru UNION SELECT grp FROM ra%s),"
                  " g AS (SELECT k.grp, coalesce(ru.n, 0) + coalesce(ra.n, 0) AS n,"
                  " coalesce(ru.errors, 0) + coalesce(ra.errors, 0) AS errors,"
                  " coalesce(ru.ls, 0) + coalesce(ra.ls, 0) AS ls,"
                  " coalesce(ru.ts, 0) + coalesce(ra.ts, 0) AS ts,"
                  " coalesce(ru.tk, 0) + coalesce(ra.tk, 0) AS tk,"
                  " am_hist_add(ru.lh, rh.lh) AS lh, am_hist_add(ru.th, rh.th) AS th,"
                  " am_hist_add(ru.fh, rh.fh) AS fh FROM keys k"
                  " LEFT JOIN ru ON ru.grp IS NOT DISTINCT FROM k.grp"
                  " LEFT JOIN ra ON ra.grp IS NOT DISTINCT FROM k.grp"
                  " LEFT JOIN rh ON rh.grp IS NOT DISTINCT FROM k.grp)"
                  " SELECT json_build_object('since', $1::timestamptz, 'until', $2::timestamptz,"
                  " 'group_by', $11::text, 'percentiles', 'approximate', 'groups',"
                  " coalesce(json_agg(json_build_object('group', grp, 'count', n,"
                  " 'errors', errors, 'error_rate', errors::float8 / NULLIF(n, 0)::float8,"
                  " 'latency_avg', ls / NULLIF(n, 0),"
                  " 'latency_p50', am_hist_quantile(lh, 0.5, 0.001),"
                  " 'latency_p95', am_hist_quantile(lh, 0.95, 0.001),"
                  " 'latency_p99', am_hist_quantile(lh, 0.99, 0.001),"
                  " 'tokens_per_second_avg', ts / NULLIF(n, 0),"
                  " 'tokens_per_second_p50', am_hist_quantile(th, 0.5, 0.01),"
                  " 'ttft_p50', am_hist_quantile(fh, 0.5, 0.001),"
                  " 'ttft_p95', am_hist_quantile(fh, 0.95, 0.001),"
                  " 'total_tokens', tk) ORDER BY grp NULLS LAST), '[]'::json)) FROM g",
                  group ? "" : " UNION SELECT NULL::text");
    size_t len = 0;
    char *sql = am_buf_take(&b, &len);
    if (!sql || len + 1 > cap) {
        free(sql);
        return AM_ERANGE;
    }
    memcpy(out, sql, len + 1);
    free(sql);
    return AM_OK;
}
