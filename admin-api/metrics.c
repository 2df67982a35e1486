/* The metrics endpoints: list, post, batch, summary and timeseries. */
#include "am_error.h"
#include "api.h"
#include "metrics_filter.h"
#include "metrics_record.h"
#include "params.h"
#include "rollup.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Rows reach PostgreSQL as one array per column (made by metrics_record.c)
 * and are inserted by one statement, so a batch is stored whole or not at
 * all without an explicit transaction. Identity ids are drawn in the order
 * of ord, so ascending ids follow the records' order. Each call's cost
 * comes from the price in force at its timestamp (am_call_cost, migration 5).
 */
#define INSERT_SQL                                                                                 \
    "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,"      \
    " tokens_per_second, prompt_tokens, ttft_seconds, status, error_type, request_id,"             \
    " session_id, user_id, zone, intent, device_id, source, stage, source_id, epoch, seq,"         \
    " cost_usd)"                                                                                   \
    " SELECT r.ts, r.model, r.backend,"                                                            \
    " r.latency_seconds, r.tokens, r.tokens_per_second, r.prompt_tokens, r.ttft_seconds,"          \
    " r.status, r.error_type, r.request_id, r.session_id, r.user_id, r.zone, r.intent,"            \
    " r.device_id, 'api', r.stage, 'api', 0, nextval('llm_performance_metric_api_seq'),"           \
    " c.cost_usd FROM (SELECT *, timestamptz 'epoch' + ts_us * interval '1 microsecond' AS ts"     \
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::float8[],"    \
    " $7::int[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],"    \
    " $14::text[], $15::text[], $16::text[], $17::text[])"                                         \
    " WITH ORDINALITY AS u(" AA_METRICS_COLUMNS ", ord)) r,"                                       \
    " LATERAL am_call_cost(r.model, r.ts, r.prompt_tokens, r.tokens) c"                            \
    " ORDER BY r.ord RETURNING id"

/*
 * wake tells the live-stream hubs (stream.c) that rows were stored; a CTE
 * runs only when referenced, hence "FROM ins, wake".
 */
static const char insert_one_sql[] = "WITH ins AS (" INSERT_SQL "),"
                                     " wake AS (SELECT pg_notify('llm_metric', ''))"
                                     " SELECT json_build_object('id', id, 'status', 'created')"
                                     " FROM ins, wake";

static const char insert_batch_sql[] =
    "WITH ins AS (" INSERT_SQL "), wake AS (SELECT pg_notify('llm_metric', ''))"
    " SELECT json_build_object('inserted', count(*), 'ids', json_agg(id ORDER BY id))"
    " FROM ins, wake";

/* $1..$10 filters, $11 limit, $12 before_id. */
static const char list_sql[] =
    "SELECT coalesce(json_agg(json_build_object("
    "'id', id, 'timestamp', timestamp, 'model', model, 'backend', backend,"
    " 'latency_seconds', latency_seconds, 'tokens_generated', tokens, 'tokens', tokens,"
    " 'tokens_per_second', tokens_per_second, 'prompt_tokens', prompt_tokens,"
    " 'ttft_seconds', ttft_seconds, 'status', status, 'error_type', error_type,"
    " 'request_id', request_id, 'session_id', session_id, 'user_id', user_id, 'zone', zone,"
    " 'intent', intent, 'device_id', device_id, 'source', source, 'stage', stage,"
    " 'cost_usd', trim_scale(cost_usd))"
    " ORDER BY timestamp DESC, id DESC), '[]'::json)"
    " FROM (SELECT * FROM llm_performance_metric WHERE " AA_METRICS_FILTER_SQL
    " AND ($12::bigint IS NULL OR (timestamp, id) <"
    " (SELECT a.timestamp, a.id FROM llm_performance_metric a WHERE a.id = $12::bigint))"
    " ORDER BY timestamp DESC, id DESC LIMIT $11::bigint) m";

/*
 * The figures of one group (summary) or one bucket and group (timeseries):
 * counts and sums always, each family of percentiles when asked for
 * (FIGURES_SQL and FIGURES_JSON hold them all).
 */
#define FIGURES_SQL_COUNTS                                                                         \
    "count(*) AS n, count(*) FILTER (WHERE status = 'error') AS errors,"                           \
    " avg(latency_seconds) AS latency_avg, avg(tokens_per_second) AS tps_avg,"                     \
    " coalesce(sum(tokens), 0) AS total_tokens, coalesce(sum(cost_usd), 0) AS cost"
#define FIGURES_SQL_LATENCY                                                                        \
    ", percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_seconds) AS lat"
#define FIGURES_SQL_TPS                                                                            \
    ", percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_per_second) AS tps_p50"
#define FIGURES_SQL_TTFT                                                                           \
    ", percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY ttft_seconds) AS ttft"
#define FIGURES_SQL FIGURES_SQL_COUNTS FIGURES_SQL_LATENCY FIGURES_SQL_TPS FIGURES_SQL_TTFT

#define FIGURES_JSON_HEAD                                                                          \
    "'count', n, 'errors', errors, 'error_rate', errors::float8 / NULLIF(n, 0)::float8,"           \
    " 'latency_avg', latency_avg"
#define FIGURES_JSON_LATENCY ", 'latency_p50', lat[1], 'latency_p95', lat[2], 'latency_p99', lat[3]"
#define FIGURES_JSON_TPS_AVG ", 'tokens_per_second_avg', tps_avg"
#define FIGURES_JSON_TPS     ", 'tokens_per_second_p50', tps_p50"
#define FIGURES_JSON_TTFT    ", 'ttft_p50', ttft[1], 'ttft_p95', ttft[2]"
#define FIGURES_JSON_TAIL    ", 'total_tokens', total_tokens, 'cost_usd', trim_scale(cost)"
#define FIGURES_JSON                                                                               \
    FIGURES_JSON_HEAD FIGURES_JSON_LATENCY FIGURES_JSON_TPS_AVG FIGURES_JSON_TPS FIGURES_JSON_TTFT \
        FIGURES_JSON_TAIL

/* %s: the group column and the GROUP BY clause. $11 is the group_by name. */
static const char summary_fmt[] =
    "WITH g AS (SELECT %s AS grp, " FIGURES_SQL " FROM llm_performance_metric"
    " WHERE " AA_METRICS_FILTER_SQL " %s)"
    " SELECT json_build_object('since', $1::timestamptz, 'until', $2::timestamptz,"
    " 'group_by', $11::text, 'figures', 'all', 'percentiles', 'exact', 'groups',"
    " coalesce(json_agg(json_build_object('group', "
    "grp, " FIGURES_JSON ") ORDER BY grp NULLS LAST), '[]'::json)) FROM g";

/* The summary's figures of one group over every row, for the alert evaluator (alerts_eval.c). */
const char aa_metrics_figures_sql[] =
    "SELECT " FIGURES_SQL " FROM llm_performance_metric WHERE " AA_METRICS_FILTER_SQL;

/* figures=counts: %s the group column and the GROUP BY clause; $11 is the group_by name. */
static const char counts_fmt[] =
    "WITH g AS (SELECT %s AS grp, count(*) AS n, count(*) FILTER (WHERE status = 'error') AS "
    "errors,"
    " sum(latency_seconds) AS ls, sum(tokens_per_second) AS ts, coalesce(sum(tokens), 0) AS tk,"
    " coalesce(sum(cost_usd), 0) AS cost"
    " FROM llm_performance_metric WHERE " AA_METRICS_FILTER_SQL " %s) " AA_COUNTS_JSON;

/*
 * Values of group_by; each is also the column it groups by. No rollup keeps
 * user_id or session_id: those groupings always read the rows.
 */
static const char *const group_names[] = {"model", "backend", "intent",     "source",
                                          "stage", "user_id", "session_id", NULL};

static const char *const figure_sets[] = {"all", "counts", NULL};

/* top=N (figures=counts): the N groups of highest cost, then most calls. */
#define TOP_MAX 1000

/* Families of percentiles a timeseries may ask for (figures=...), in answer order. */
static const struct {
    const char *name;
    unsigned bit;
} families[] = {
    {"latency", AA_FIG_LATENCY},
    {"tokens_per_second", AA_FIG_TPS},
    {"ttft", AA_FIG_TTFT},
};
#define NFAMILIES (sizeof families / sizeof families[0])

static const char *const bucket_names[] = {"1m", "5m", "1h", "1d", NULL};
static const char *const bucket_intervals[] = {"1 minute", "5 minutes", "1 hour", "1 day"};
static const int64_t bucket_us[] = {60000000LL, 300000000LL, 3600000000LL, 86400000000LL};

/* Room for a query built from a format below and its fixed fragments (at most 64 bytes). */
#define SQL_MAX 8192
_Static_assert(sizeof summary_fmt + 64 <= SQL_MAX, "summary_fmt outgrew SQL_MAX");
_Static_assert(sizeof counts_fmt + 64 <= SQL_MAX, "counts_fmt outgrew SQL_MAX");

#define MAX_BUCKETS 10000

/* The rollup summary names 384 histogram columns. */
#define ROLLUP_SQL_MAX (64 * 1024)
#define LIST_DEFAULT   100
#define LIST_MAX       1000

/* date_bin's origin, 2000-01-01 UTC, in Unix microseconds. */
#define BUCKET_ORIGIN_US 946684800000000LL

static void reply_parse_error(struct am_http_response *resp, int rc, const char *err)
{
    if (rc == AM_EINVAL)
        am_http_error(resp, 400, err);
    else if (rc == AM_EFULL)
        am_http_error(resp, 413, err);
    else
        am_http_error(resp, 500, "out of memory");
}

/* Parses the body as kind holding at most max records, inserts them with sql, replies 201. */
static void insert_body(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, enum aa_metrics_body kind, size_t max,
                        const char *sql)
{
    struct aa_metrics_rows rows;
    const char *params[AA_METRICS_NCOLS];
    char err[AA_ERR_MAX] = "";
    int rc;

    aa_metrics_rows_init(&rows);
    rc = aa_metrics_parse(req->body, req->body_len, kind, max, &rows, err, sizeof err);
    if (rc) {
        reply_parse_error(resp, rc, err);
        goto out;
    }
    if ((rc = aa_metrics_rows_params(&rows, params))) {
        reply_parse_error(resp, rc, "the batch is too large");
        goto out;
    }
    aa_reply_query(ctx, req, resp, 201, sql, AA_METRICS_NCOLS, params, NULL, NULL);
out:
    aa_metrics_rows_free(&rows);
}

static void post_metric(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, const char *arg)
{
    insert_body(ctx, req, resp, AA_METRICS_OBJECT, 1, insert_one_sql);
}

static void post_batch(struct aa_ctx *ctx, const struct am_http_request *req,
                       struct am_http_response *resp, const char *arg)
{
    char ct[64];
    enum aa_metrics_body kind;

    aa_content_type(req, ct, sizeof ct);
    if (!strcmp(ct, "application/json")) {
        kind = AA_METRICS_ARRAY;
    } else if (!strcmp(ct, "application/x-ndjson")) {
        kind = AA_METRICS_NDJSON;
    } else {
        am_http_error(resp, 415, "Content-Type must be application/json or application/x-ndjson");
        return;
    }
    insert_body(ctx, req, resp, kind, AA_METRICS_BATCH_MAX, insert_batch_sql);
}

static void list_metrics(struct aa_ctx *ctx, const struct am_http_request *req,
                         struct am_http_response *resp, const char *arg)
{
    struct aa_metrics_filter f;
    char err[AA_ERR_MAX], limit_text[24], before_text[24];
    const char *params[AA_METRICS_FILTER_NPARAMS + 2];
    long long limit, before_id;

    if (aa_metrics_filter_parse(req, false, &f, err) ||
        aa_param_limit(req, "limit", LIST_DEFAULT, LIST_MAX, &limit, err) ||
        aa_param_int(req, "before_id", 0, 1, INT64_MAX, &before_id, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    aa_metrics_filter_params(&f, params);
    snprintf(limit_text, sizeof limit_text, "%lld", limit);
    snprintf(before_text, sizeof before_text, "%lld", before_id);
    params[AA_METRICS_FILTER_NPARAMS] = limit_text;
    params[AA_METRICS_FILTER_NPARAMS + 1] = before_id ? before_text : NULL;
    aa_reply_query(ctx, req, resp, 200, list_sql, AA_METRICS_FILTER_NPARAMS + 2, params, NULL,
                   NULL);
}

/* group_by into its column (a fixed fragment), or NULL for one overall group. */
static int parse_group(const struct am_http_request *req, const char **group, char *err)
{
    return aa_param_enum(req, "group_by", group_names, NULL, group, err);
}

/*
 * Whether a summary or timeseries may read whole hours from the rollups: a
 * range of at least rollup_min_hours and no exact=true (400 on a bad value).
 */
static int long_range(struct aa_ctx *ctx, const struct am_http_request *req,
                      const struct aa_metrics_filter *f, bool *use, char *err)
{
    bool exact;
    int rc = aa_param_bool(req, "exact", false, &exact, err);
    if (rc)
        return rc;
    *use = !exact && ctx->rollup_min_hours > 0 &&
           f->until_us - f->since_us >= (int64_t)ctx->rollup_min_hours * 3600000000LL;
    return 0;
}

/* Whether the rollups with histograms keep the grouping and the filters. */
static bool histograms_keep(const struct aa_metrics_filter *f, const char *group)
{
    bool by =
        !group || !strcmp(group, "model") || !strcmp(group, "backend") || !strcmp(group, "source");
    return by && !f->intent && !f->session_id && !f->request_id && !f->stage;
}

/* Whether the rollups by intent and stage (counts and sums) keep the grouping and the filters. */
static bool labels_keep(const struct aa_metrics_filter *f, const char *group)
{
    bool by = !group || (strcmp(group, "user_id") != 0 && strcmp(group, "session_id") != 0);
    return by && !f->session_id && !f->request_id;
}

/* Runs the rollup query that build makes for group, with nparams params. */
static void reply_rollup(struct aa_ctx *ctx, const struct am_http_request *req,
                         struct am_http_response *resp, int (*build)(char *, size_t, const char *),
                         const char *group, int nparams, const char **params)
{
    char *big = malloc(ROLLUP_SQL_MAX);
    if (!big || build(big, ROLLUP_SQL_MAX, group)) {
        free(big);
        am_http_error(resp, 500, "internal error");
        return;
    }
    aa_reply_query(ctx, req, resp, 200, big, nparams, params, NULL, NULL);
    free(big);
}

/*
 * The summary with figures=counts: counts and sums only, exact on every
 * path. Long ranges read the rollups by intent and stage, which keep every
 * grouping and every filter but session_id and request_id.
 */
static void counts(struct aa_ctx *ctx, const struct am_http_request *req,
                   struct am_http_response *resp, const struct aa_metrics_filter *f,
                   const char *group, bool rollup, const char **params)
{
    char sql[SQL_MAX];

    if (rollup && labels_keep(f, group)) {
        reply_rollup(ctx, req, resp, aa_rollup_counts_sql, group, AA_METRICS_FILTER_NPARAMS + 2,
                     params);
        return;
    }
    snprintf(sql, sizeof sql, counts_fmt, group ? group : "NULL::text", group ? "GROUP BY 1" : "");
    aa_reply_query(ctx, req, resp, 200, sql, AA_METRICS_FILTER_NPARAMS + 2, params, NULL, NULL);
}

static void summary(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, const char *arg)
{
    struct aa_metrics_filter f;
    char err[AA_ERR_MAX], sql[SQL_MAX];
    const char *params[AA_METRICS_FILTER_NPARAMS + 2];
    const char *group, *figures;
    char top_text[24];
    long long top;
    bool rollup;

    if (aa_metrics_filter_parse(req, true, &f, err) || parse_group(req, &group, err) ||
        aa_param_enum(req, "figures", figure_sets, "all", &figures, err) ||
        aa_param_int(req, "top", 0, 1, TOP_MAX, &top, err) ||
        long_range(ctx, req, &f, &rollup, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    if (top && strcmp(figures, "counts") != 0) {
        am_http_error(resp, 400, "top needs figures=counts");
        return;
    }
    aa_metrics_filter_params(&f, params);
    params[AA_METRICS_FILTER_NPARAMS] = group;
    snprintf(top_text, sizeof top_text, "%lld", top);
    params[AA_METRICS_FILTER_NPARAMS + 1] = top ? top_text : NULL;
    if (!strcmp(figures, "counts")) {
        counts(ctx, req, resp, &f, group, rollup, params);
        return;
    }
    /*
     * Long ranges read whole hours from the rollups (approximate
     * percentiles); short ones, filters the rollups do not keep and
     * exact=true read every row.
     */
    if (rollup && histograms_keep(&f, group)) {
        reply_rollup(ctx, req, resp, aa_rollup_summary_sql, group, AA_METRICS_FILTER_NPARAMS + 1,
                     params);
        return;
    }
    /* Without GROUP BY the aggregate yields its one row even when nothing matches. */
    snprintf(sql, sizeof sql, summary_fmt, group ? group : "NULL::text", group ? "GROUP BY 1" : "");
    aa_reply_query(ctx, req, resp, 200, sql, AA_METRICS_FILTER_NPARAMS + 1, params, NULL, NULL);
}

/* Floor division, for times before the bucket origin. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/*
 * figures for a timeseries: all (the default), counts, or a comma-separated
 * list of families. Sets *fam and name (the value echoed in the answer).
 */
static int parse_families(const struct am_http_request *req, unsigned *fam, char *name, size_t cap,
                          char *err)
{
    const char *v = am_http_query(req, "figures");
    unsigned m = 0;

    if (!v || !*v || !strcmp(v, "all")) {
        m = AA_FIG_ALL;
    } else if (strcmp(v, "counts") != 0) {
        for (const char *p = v;; p++) {
            size_t n = strcspn(p, ","), i = 0;
            while (i < NFAMILIES &&
                   (strlen(families[i].name) != n || strncmp(p, families[i].name, n)))
                i++;
            if (i == NFAMILIES) {
                snprintf(err, AA_ERR_MAX,
                         "figures must be all, counts, or a comma-separated list of latency, "
                         "tokens_per_second and ttft");
                return AM_EINVAL;
            }
            m |= families[i].bit;
            p += n;
            if (!*p)
                break;
        }
    }
    *fam = m;
    if (m == AA_FIG_ALL || m == 0) {
        snprintf(name, cap, "%s", m ? "all" : "counts");
        return 0;
    }
    name[0] = '\0';
    for (size_t i = 0; i < NFAMILIES; i++)
        if (m & families[i].bit)
            snprintf(name + strlen(name), cap - strlen(name), "%s%s", name[0] ? "," : "",
                     families[i].name);
    return 0;
}

/* The timeseries over every row, with the families of percentiles fam. */
static void timeseries_sql(char *out, size_t cap, const char *group, unsigned fam)
{
    snprintf(
        out, cap,
        "WITH g AS (SELECT date_bin($12::interval, timestamp, timestamptz '2000-01-01 00:00:00+00')"
        " AS bucket, %s AS grp, " FIGURES_SQL_COUNTS "%s%s%s FROM llm_performance_metric"
        " WHERE " AA_METRICS_FILTER_SQL " GROUP BY 1, 2)"
        " SELECT json_build_object('since', $1::timestamptz, 'until', $2::timestamptz,"
        " 'bucket', $13::text, 'group_by', $11::text, 'figures', $14::text,"
        " 'percentiles', 'exact', 'points', coalesce(json_agg(json_build_object('bucket', bucket,"
        " 'group', grp, " FIGURES_JSON_HEAD "%s" FIGURES_JSON_TPS_AVG "%s%s" FIGURES_JSON_TAIL ")"
        " ORDER BY bucket, grp NULLS LAST), '[]'::json)) FROM g",
        group ? group : "NULL::text", fam & AA_FIG_LATENCY ? FIGURES_SQL_LATENCY : "",
        fam & AA_FIG_TPS ? FIGURES_SQL_TPS : "", fam & AA_FIG_TTFT ? FIGURES_SQL_TTFT : "",
        fam & AA_FIG_LATENCY ? FIGURES_JSON_LATENCY : "", fam & AA_FIG_TPS ? FIGURES_JSON_TPS : "",
        fam & AA_FIG_TTFT ? FIGURES_JSON_TTFT : "");
}

static void timeseries(struct aa_ctx *ctx, const struct am_http_request *req,
                       struct am_http_response *resp, const char *arg)
{
    struct aa_metrics_filter f;
    char err[AA_ERR_MAX], sql[SQL_MAX], figures[64];
    const char *params[AA_METRICS_FILTER_NPARAMS + 4];
    const char *group, *bucket;
    unsigned fam;
    bool rollup;

    if (aa_metrics_filter_parse(req, true, &f, err) || parse_group(req, &group, err) ||
        aa_param_enum(req, "bucket", bucket_names, "1h", &bucket, err) ||
        parse_families(req, &fam, figures, sizeof figures, err) ||
        long_range(ctx, req, &f, &rollup, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    int b = 0;
    while (strcmp(bucket_names[b], bucket) != 0)
        b++;
    /* Buckets that [since, until) touches, counting partial ones at both ends. */
    int64_t first = floor_div(f.since_us - BUCKET_ORIGIN_US, bucket_us[b]);
    int64_t last = floor_div(f.until_us - 1 - BUCKET_ORIGIN_US, bucket_us[b]);
    if (last - first + 1 > MAX_BUCKETS) {
        snprintf(err, sizeof err,
                 "since .. until spans %" PRId64 " buckets of %s; at most %d: narrow the range "
                 "or use a larger bucket",
                 last - first + 1, bucket, MAX_BUCKETS);
        am_http_error(resp, 400, err);
        return;
    }
    aa_metrics_filter_params(&f, params);
    params[AA_METRICS_FILTER_NPARAMS] = group;
    params[AA_METRICS_FILTER_NPARAMS + 1] = bucket_intervals[b];
    params[AA_METRICS_FILTER_NPARAMS + 2] = bucket;
    params[AA_METRICS_FILTER_NPARAMS + 3] = figures;
    /* Buckets of whole hours can take whole hours from the rollups. */
    if (rollup && histograms_keep(&f, group) && bucket_us[b] % 3600000000LL == 0) {
        char *big = malloc(ROLLUP_SQL_MAX);
        if (!big || aa_rollup_timeseries_sql(big, ROLLUP_SQL_MAX, group, fam)) {
            free(big);
            am_http_error(resp, 500, "internal error");
            return;
        }
        aa_reply_query(ctx, req, resp, 200, big, AA_METRICS_FILTER_NPARAMS + 4, params, NULL, NULL);
        free(big);
        return;
    }
    timeseries_sql(sql, sizeof sql, group, fam);
    aa_reply_query(ctx, req, resp, 200, sql, AA_METRICS_FILTER_NPARAMS + 4, params, NULL, NULL);
}

const struct aa_route aa_metrics_routes[] = {
    {"GET", "/api/llm-backends/metrics", list_metrics, 0},
    {"POST", "/api/llm-backends/metrics", post_metric, AA_WRITE | AA_JSON_BODY},
    {"POST", "/api/llm-backends/metrics/batch", post_batch, AA_WRITE | AA_ANY_BODY},
    {"GET", "/api/llm-backends/metrics/summary", summary, 0},
    {"GET", "/api/llm-backends/metrics/timeseries", timeseries, 0},
    {0},
};
