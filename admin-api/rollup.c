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
    _Atomic uint64_t hours;
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

static int rollup_run(void *arg, aa_periodic *job, PGconn *conn)
{
    aa_rollup *r = arg;
    bool done = false;
    int rc = AM_OK;
    while (!done && !aa_periodic_stopping(job)) {
        if ((rc = refresh_one(conn, &done)) != AM_OK)
            break;
        if (!done)
            atomic_fetch_add(&r->hours, 1);
    }
    count_pending(r, conn);
    return rc;
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
    struct aa_periodic_stats st;
    aa_periodic_stats(r->job, &st);
    am_prom_counter(b, "athena_admin_rollup_refreshes_total", "Hours recomputed into the rollups.",
                    atomic_load(&r->hours));
    am_prom_counter(b, "athena_admin_rollup_failures_total", "Rollup refreshes that failed.",
                    st.failures);
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

/* The CTE span (hs, he): the whole hours inside [$1, $2) that the rollups may answer for. */
#define SPAN_SQL                                                                                   \
    "span AS (SELECT date_trunc('hour', $1::timestamptz + interval '1 hour'"                       \
    " - interval '1 microsecond', 'UTC') AS hs,"                                                   \
    " greatest(date_trunc('hour', $2::timestamptz, 'UTC'), date_trunc('hour',"                     \
    " $1::timestamptz + interval '1 hour' - interval '1 microsecond', 'UTC')) AS he)"

/*
 * The CTE raw: the rows the rollups do not answer for, that is those before
 * span.hs, from span.he on, and those of hours in between whose rollup is
 * stale (marked dirty), all within the filters.
 */
#define RAW_SQL                                                                                    \
    "raw AS MATERIALIZED ("                                                                        \
    "SELECT m.* FROM llm_performance_metric m, span WHERE " AA_METRICS_FILTER_SQL                  \
    " AND m.timestamp < span.hs"                                                                   \
    " UNION ALL SELECT m.* FROM llm_performance_metric m, span WHERE " AA_METRICS_FILTER_SQL       \
    " AND m.timestamp >= span.he"                                                                  \
    " UNION ALL SELECT m.* FROM span, llm_metric_rollup_dirty d"                                   \
    " JOIN llm_performance_metric m ON m.timestamp >= d.hour"                                      \
    " AND m.timestamp < d.hour + interval '1 hour'"                                                \
    " WHERE d.hour >= span.hs AND d.hour < span.he AND " AA_METRICS_FILTER_SQL ")"

/* The rollup rows of clean hours in the span, within the filters a rollup keeps. */
#define ROLLUP_WHERE_SQL                                                                           \
    " r.hour >= span.hs AND r.hour < span.he AND NOT EXISTS (SELECT 1"                             \
    " FROM llm_metric_rollup_dirty d WHERE d.hour = r.hour)"                                       \
    " AND ($3::text IS NULL OR r.model = $3::text) AND ($4::text IS NULL OR r.backend = $4::text)" \
    " AND ($6::text IS NULL OR r.source = $6::text) AND ($7::text IS NULL OR r.status = $7::text)"

/* Counts and sums of raw rows per group, as the rollups keep them. */
#define RAW_COUNTS_SQL                                                                             \
    "count(*) AS n, count(*) FILTER (WHERE status = 'error') AS errors,"                           \
    " sum(latency_seconds) AS ls, sum(tokens_per_second) AS ts, coalesce(sum(tokens), 0) AS tk,"   \
    " coalesce(sum(cost_usd), 0) AS cost"

#define BUCKET_OF(t) "date_bin($12::interval, " t ", timestamptz '2000-01-01 00:00:00+00')"

/* on when the families fam include bit, else off. */
#define PICK(fam, bit, on, off) ((fam) & (bit) ? (on) : (off))

/*
 * Builds the summary (bucketed false) or the timeseries (true) over the
 * rollups: per bucket and group, the rollup rows (ru) and the raw rows
 * (rr, with their histograms made on the fly) are added up, histograms bin
 * by bin (am_hist_sum). For the summary the bucket is one NULL for all.
 * Only the histograms of the families asked for are read and merged.
 */
static int rollup_sql(char *out, size_t cap, const char *group, bool bucketed, unsigned fam)
{
    struct am_buf b;
    const char *g = group ? group : "NULL::text";
    const char *rbkt = bucketed ? BUCKET_OF("r.hour") : "NULL::timestamptz";
    const char *mbkt = bucketed ? BUCKET_OF("timestamp") : "NULL::timestamptz";
    const char *none = "NULL::bigint[]";
    am_buf_init(&b, 1 << 20);

    am_buf_printf(&b,
                  "WITH " SPAN_SQL ", ru AS (SELECT %s AS bkt, %s AS grp, sum(n) AS n,"
                  " sum(errors) AS errors, sum(latency_sum) AS ls, sum(tps_sum) AS ts,"
                  " sum(tokens_sum) AS tk, sum(cost_sum) AS cost, ",
                  rbkt, g);
    const char kinds[3] = {'l', 't', 'f'};
    const unsigned bits[3] = {AA_FIG_LATENCY, AA_FIG_TPS, AA_FIG_TTFT};
    for (int i = 0; i < 3; i++) {
        if (fam & bits[i])
            sums(&b, kinds[i]);
        else
            am_buf_printf(&b, "%s", none);
        am_buf_printf(&b, " AS %ch%s", kinds[i], i < 2 ? ", " : "");
    }
    /* The 'l' rows of the raw histograms carry the counts and sums, asked for or not. */
    am_buf_printf(&b,
                  " FROM llm_metric_rollup r, span WHERE" ROLLUP_WHERE_SQL
                  " GROUP BY 1, 2), " RAW_SQL ","
                  " rr AS (SELECT bkt, grp, sum(c) FILTER (WHERE k = 'l') AS n, sum(e) AS errors,"
                  " sum(ls) AS ls, sum(ts) AS ts, sum(tk) AS tk, sum(cost) AS cost, %s AS lh,"
                  " %s AS th, %s AS fh"
                  " FROM (SELECT %s AS bkt, %s AS grp, 'l' AS k, am_bin(latency_seconds, 0.001)"
                  " AS b, count(*) AS c, count(*) FILTER (WHERE status = 'error') AS e,"
                  " sum(latency_seconds) AS ls, sum(tokens_per_second) AS ts,"
                  " coalesce(sum(tokens), 0) AS tk, coalesce(sum(cost_usd), 0) AS cost"
                  " FROM raw GROUP BY 1, 2, 4",
                  PICK(fam, AA_FIG_LATENCY,
                       "am_hist_from(array_agg(b) FILTER (WHERE k = 'l'), array_agg(c) FILTER "
                       "(WHERE k = 'l'))",
                       none),
                  PICK(fam, AA_FIG_TPS,
                       "am_hist_from(array_agg(b) FILTER (WHERE k = 't'), array_agg(c) FILTER "
                       "(WHERE k = 't'))",
                       none),
                  PICK(fam, AA_FIG_TTFT,
                       "am_hist_from(array_agg(b) FILTER (WHERE k = 'f'), array_agg(c) FILTER "
                       "(WHERE k = 'f'))",
                       none),
                  mbkt, g);
    if (fam & AA_FIG_TPS)
        am_buf_printf(&b,
                      " UNION ALL SELECT %s, %s, 't', am_bin(tokens_per_second, 0.01), count(*),"
                      " 0, 0, 0, 0, 0 FROM raw GROUP BY 1, 2, 4",
                      mbkt, g);
    if (fam & AA_FIG_TTFT)
        am_buf_printf(&b,
                      " UNION ALL SELECT %s, %s, 'f', am_bin(ttft_seconds, 0.001), count(*),"
                      " 0, 0, 0, 0, 0 FROM raw WHERE ttft_seconds IS NOT NULL GROUP BY 1, 2, 4",
                      mbkt, g);
    /* An ungrouped summary has its one group even when nothing matches. */
    am_buf_printf(&b,
                  ") x GROUP BY bkt, grp),"
                  " g AS (SELECT bkt, grp, sum(n) AS n, sum(errors) AS errors, sum(ls) AS ls,"
                  " sum(ts) AS ts, sum(tk) AS tk, sum(cost) AS cost, %s AS lh, %s AS th, %s AS fh"
                  " FROM (SELECT * FROM ru UNION ALL SELECT * FROM rr%s) u GROUP BY bkt, grp)"
                  " SELECT json_build_object('since', $1::timestamptz, 'until', $2::timestamptz,",
                  PICK(fam, AA_FIG_LATENCY, "am_hist_sum(lh)", none),
                  PICK(fam, AA_FIG_TPS, "am_hist_sum(th)", none),
                  PICK(fam, AA_FIG_TTFT, "am_hist_sum(fh)", none),
                  group || bucketed ? ""
                                    : " UNION ALL SELECT NULL::timestamptz, NULL::text, 0, 0, 0, 0,"
                                      " 0, 0, NULL, NULL, NULL");
    const char *pct = fam ? "approximate" : "exact";
    if (bucketed)
        am_buf_printf(&b,
                      " 'bucket', $13::text, 'group_by', $11::text, 'figures', $14::text,"
                      " 'percentiles', '%s', 'points', coalesce(json_agg("
                      "json_build_object('bucket', bkt, 'group', grp, ",
                      pct);
    else
        am_buf_printf(&b,
                      " 'group_by', $11::text, 'figures', 'all', 'percentiles', '%s', 'groups',"
                      " coalesce(json_agg(json_build_object('group', grp, ",
                      pct);
    /*
     * Every row has a latency and a tokens/s, so those histograms hold n
     * values. OFFSET 0 keeps the planner from pulling the LATERAL subquery
     * up, which would run am_hist_quantiles once per element used.
     */
    am_buf_printf(
        &b,
        "'count', n, 'errors', errors, 'error_rate', errors::float8 / NULLIF(n, 0)::float8,"
        " 'latency_avg', ls / NULLIF(n, 0)%s, 'tokens_per_second_avg', ts / NULLIF(n, 0)%s%s,"
        " 'total_tokens', tk, 'cost_usd', trim_scale(cost)) ORDER BY %sgrp NULLS LAST),"
        " '[]'::json))"
        " FROM g, LATERAL (SELECT %s AS lq, %s AS tq, %s AS fq OFFSET 0) q",
        PICK(fam, AA_FIG_LATENCY,
             ", 'latency_p50', lq[1], 'latency_p95', lq[2], 'latency_p99', lq[3]", ""),
        PICK(fam, AA_FIG_TPS, ", 'tokens_per_second_p50', tq[1]", ""),
        PICK(fam, AA_FIG_TTFT, ", 'ttft_p50', fq[1], 'ttft_p95', fq[2]", ""),
        bucketed ? "bkt, " : "",
        PICK(fam, AA_FIG_LATENCY, "am_hist_quantiles(lh, '{0.5,0.95,0.99}', 0.001, n::bigint)",
             "NULL::float8[]"),
        PICK(fam, AA_FIG_TPS, "am_hist_quantiles(th, '{0.5}', 0.01, n::bigint)", "NULL::float8[]"),
        PICK(fam, AA_FIG_TTFT, "am_hist_quantiles(fh, '{0.5,0.95}', 0.001)", "NULL::float8[]"));
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

int aa_rollup_counts_sql(char *out, size_t cap, const char *group)
{
    const char *g = group ? group : "NULL::text";
    int n = snprintf(
        out, cap,
        "WITH " SPAN_SQL ", ru AS (SELECT %s AS grp, sum(n) AS n, sum(errors) AS errors,"
        " sum(latency_sum) AS ls, sum(tps_sum) AS ts, sum(tokens_sum) AS tk,"
        " sum(cost_sum) AS cost FROM llm_metric_rollup_label r, span WHERE" ROLLUP_WHERE_SQL
        " AND ($5::text IS NULL OR r.intent = $5::text) AND ($10::text IS NULL OR r.stage = "
        "$10::text)"
        " GROUP BY 1), " RAW_SQL ", ra AS (SELECT %s AS grp, " RAW_COUNTS_SQL
        " FROM raw GROUP BY 1),"
        " g AS (SELECT grp, sum(n) AS n, sum(errors) AS errors, sum(ls) AS ls, sum(ts) AS ts,"
        " sum(tk) AS tk, sum(cost) AS cost FROM (SELECT * FROM ru UNION ALL SELECT * FROM ra%s) u "
        "GROUP BY "
        "grp) " AA_COUNTS_JSON,
        g, g, group ? "" : " UNION ALL SELECT NULL::text, 0, 0, 0, 0, 0, 0");
    return n < 0 || (size_t)n >= cap ? AM_ERANGE : AM_OK;
}

int aa_rollup_summary_sql(char *out, size_t cap, const char *group)
{
    return rollup_sql(out, cap, group, false, AA_FIG_ALL);
}

int aa_rollup_timeseries_sql(char *out, size_t cap, const char *group, unsigned families)
{
    return rollup_sql(out, cap, group, true, families);
}
