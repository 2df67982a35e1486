/* Alert rules over HTTP: validation of rule bodies, the rule list, one rule, and the history. */
#include "alerts.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "params.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/*
 * One rule as JSON, from row r of llm_alert_rule. Timestamps come out as
 * ISO 8601 in UTC (the pool's sessions run with TimeZone=UTC).
 */
#define RULE_JSON                                                                                  \
    "json_build_object('id', r.id, 'name', r.name, 'metric', r.metric, "                           \
    "'scope', " AA_ALERT_SCOPE_JSON(                                                               \
        "r") ", 'op', r.op, 'threshold', r.threshold,"                                             \
             " 'window_seconds', r.window_seconds, 'min_calls', r.min_calls,"                      \
             " 'webhook_url', r.webhook_url, 'state', r.state, 'state_since', r.state_since,"      \
             " 'last_value', r.last_value, 'last_calls', r.last_calls, 'evaluated_at', "           \
             "r.evaluated_at,"                                                                     \
             " 'created_at', r.created_at, 'updated_at', r.updated_at)"

/* One event of the history, from row e of llm_alert_event. */
#define EVENT_JSON                                                                                 \
    "json_build_object('id', e.id, 'rule_id', e.rule_id, 'name', e.rule_name, 'state', e.kind,"    \
    " 'at', e.at, 'metric', e.metric, 'scope', e.scope, 'op', e.op, 'threshold', e.threshold,"     \
    " 'window_seconds', e.window_seconds, 'value', e.value, 'calls', e.calls,"                     \
    " 'webhook_url', e.webhook_url, 'delivery', e.delivery, 'attempts', e.attempts,"               \
    " 'http_status', e.http_status, 'error', e.error, 'delivered_at', e.delivered_at)"

/* The body's values as parameters, in this order; an update adds P_SCOPE_SET and P_ID. */
enum {
    P_NAME,
    P_METRIC,
    P_MODEL,
    P_BACKEND,
    P_INTENT,
    P_SOURCE,
    P_OP,
    P_THRESHOLD,
    P_WINDOW,
    P_MIN_CALLS,
    P_URL,
    P_SCOPE_SET,
    P_ID,
    NPARAMS
};

static const char sql_insert[] =
    "WITH r AS (INSERT INTO llm_alert_rule (name, metric, scope_model, scope_backend,"
    " scope_intent, scope_source, op, threshold, window_seconds, min_calls, webhook_url)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8, $9::integer, $10::integer, $11)"
    " RETURNING *) SELECT " RULE_JSON " FROM r";

/* Fields the body leaves out keep their value; a scope given replaces the whole scope. */
static const char sql_update[] =
    "WITH r AS (UPDATE llm_alert_rule SET name = coalesce($1, name),"
    " metric = coalesce($2, metric),"
    " scope_model = CASE WHEN $12::boolean THEN $3 ELSE scope_model END,"
    " scope_backend = CASE WHEN $12::boolean THEN $4 ELSE scope_backend END,"
    " scope_intent = CASE WHEN $12::boolean THEN $5 ELSE scope_intent END,"
    " scope_source = CASE WHEN $12::boolean THEN $6 ELSE scope_source END,"
    " op = coalesce($7, op), threshold = coalesce($8::float8, threshold),"
    " window_seconds = coalesce($9::integer, window_seconds),"
    " min_calls = coalesce($10::integer, min_calls), webhook_url = coalesce($11, webhook_url),"
    " updated_at = now() WHERE id = $13::bigint RETURNING *) SELECT " RULE_JSON " FROM r";

static const char sql_list[] = "SELECT coalesce(json_agg(" RULE_JSON " ORDER BY r.id), '[]')"
                               " FROM llm_alert_rule r WHERE $1::text IS NULL OR r.state = $1";

static const char sql_by_id[] =
    "SELECT " RULE_JSON " FROM llm_alert_rule r WHERE r.id = $1::bigint";

static const char sql_delete[] =
    "WITH d AS (DELETE FROM llm_alert_rule WHERE id = $1::bigint RETURNING id) SELECT '' FROM d";

static const char sql_history[] =
    "SELECT coalesce(json_agg(" EVENT_JSON " ORDER BY e.id DESC), '[]') FROM"
    " (SELECT * FROM llm_alert_event WHERE $1::bigint IS NULL OR rule_id = $1::bigint"
    " ORDER BY id DESC LIMIT $2::bigint) e";

static const char *const metric_names[] = {
    "latency_p95", "latency_p99",  "error_rate", "tokens_per_second_p50",
    "ttft_p95",    "request_rate", NULL};
static const char *const op_names[] = {">", ">=", "<", "<=", NULL};
static const char *const scope_keys[] = {"model", "backend", "intent", "source", NULL};

/* Keys of a rule as we answer it that no client sets; accepted and ignored. */
static const char *const read_only[] = {
    "id",           "state",      "state_since", "last_value", "last_calls",
    "evaluated_at", "created_at", "updated_at",  NULL,
};

#define NAME_MAX_BYTES 200
#define URL_MAX_BYTES  2048
#define WINDOW_MAX_S   86400
#define MIN_CALLS_MAX  INT32_MAX

/* A validated body: root owns the strings value[] points into. */
struct rule_input {
    json_t *root;
    bool set[NPARAMS];
    const char *value[NPARAMS]; /* NULL: not given (or SQL NULL for a scope key) */
    char number[3][40];         /* threshold, window_seconds, min_calls as text */
};

/* Index of s in the NULL-terminated list, or -1. */
static int lookup(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s))
            return i;
    return -1;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* scope: null or an object of model, backend, intent and source, each a non-empty string. */
static int take_scope(struct rule_input *in, json_t *v, char *err)
{
    const char *key;
    json_t *s;
    char text[64];

    in->set[P_SCOPE_SET] = true;
    in->value[P_SCOPE_SET] = "true";
    if (json_is_null(v))
        return AM_OK;
    if (!json_is_object(v)) {
        snprintf(err, AA_ERR_MAX,
                 "scope must be an object with any of model, backend, intent, "
                 "source");
        return AM_EINVAL;
    }
    json_object_foreach(v, key, s)
    {
        int k = lookup(scope_keys, key);
        if (k < 0) {
            aa_ascii_copy(text, sizeof text, key);
            snprintf(err, AA_ERR_MAX,
                     "unknown scope key '%s': scope takes model, backend, intent, source", text);
            return AM_EINVAL;
        }
        if (json_is_null(s))
            continue;
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            json_string_length(s) > AM_METRIC_MAX_STRING) {
            snprintf(err, AA_ERR_MAX, "scope.%s must be a non-empty string of at most %d bytes",
                     scope_keys[k], AM_METRIC_MAX_STRING);
            return AM_EINVAL;
        }
        in->value[P_MODEL + k] = json_string_value(s);
    }
    return AM_OK;
}

/* A whole number from min to max into number, as a parameter. */
static int take_int(struct rule_input *in, int p, char *number, json_t *v, const char *name,
                    long long min, long long max, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, AA_ERR_MAX, "%s must be a whole number from %lld to %lld", name, min, max);
        return AM_EINVAL;
    }
    snprintf(number, 40, "%lld", (long long)json_integer_value(v));
    in->value[p] = number;
    return AM_OK;
}

/* A string field: name, metric, op or webhook_url. */
static int take_text(struct rule_input *in, int p, json_t *v, char *err)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t len = s ? json_string_length(v) : 0;

    switch (p) {
    case P_NAME:
        if (!s || len == 0 || len > NAME_MAX_BYTES || has_control(s)) {
            snprintf(err, AA_ERR_MAX,
                     "name must be a non-empty string of at most %d bytes without control "
                     "characters",
                     NAME_MAX_BYTES);
            return AM_EINVAL;
        }
        break;
    case P_METRIC:
        if (!s || lookup(metric_names, s) < 0) {
            snprintf(err, AA_ERR_MAX,
                     "metric must be one of latency_p95, latency_p99, error_rate, "
                     "tokens_per_second_p50, ttft_p95, request_rate");
            return AM_EINVAL;
        }
        break;
    case P_OP:
        if (!s || lookup(op_names, s) < 0) {
            snprintf(err, AA_ERR_MAX, "op must be one of >, >=, <, <=");
            return AM_EINVAL;
        }
        break;
    default: /* P_URL */
        if (!s || len > URL_MAX_BYTES || !aa_http_url_ok(s)) {
            snprintf(err, AA_ERR_MAX,
                     "webhook_url must be an http:// or https:// URL of at most %d bytes, "
                     "without spaces",
                     URL_MAX_BYTES);
            return AM_EINVAL;
        }
        break;
    }
    in->value[p] = s;
    return AM_OK;
}

/* One key of the body; AM_EINVAL with err naming what is wrong. */
static int take_field(struct rule_input *in, const char *key, json_t *v, char *err)
{
    static const struct {
        const char *name;
        int p;
    } text_fields[] = {
        {"name", P_NAME}, {"metric", P_METRIC}, {"op", P_OP}, {"webhook_url", P_URL}};
    char text[64];

    for (size_t i = 0; i < sizeof text_fields / sizeof text_fields[0]; i++) {
        if (!strcmp(key, text_fields[i].name)) {
            in->set[text_fields[i].p] = true;
            return take_text(in, text_fields[i].p, v, err);
        }
    }
    if (!strcmp(key, "scope"))
        return take_scope(in, v, err);
    if (!strcmp(key, "threshold")) {
        in->set[P_THRESHOLD] = true;
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            snprintf(err, AA_ERR_MAX, "threshold must be a number");
            return AM_EINVAL;
        }
        snprintf(in->number[0], sizeof in->number[0], "%.17g", json_number_value(v));
        in->value[P_THRESHOLD] = in->number[0];
        return AM_OK;
    }
    if (!strcmp(key, "window_seconds")) {
        in->set[P_WINDOW] = true;
        return take_int(in, P_WINDOW, in->number[1], v, key, 1, WINDOW_MAX_S, err);
    }
    if (!strcmp(key, "min_calls")) {
        in->set[P_MIN_CALLS] = true;
        return take_int(in, P_MIN_CALLS, in->number[2], v, key, 0, MIN_CALLS_MAX, err);
    }
    if (lookup(read_only, key) >= 0)
        return AM_OK;
    aa_ascii_copy(text, sizeof text, key);
    snprintf(err, AA_ERR_MAX, "unknown field '%s'", text);
    return AM_EINVAL;
}

/*
 * Parses req's body into in. With create, the fields without a default are
 * required and min_calls defaults to 1. AM_EINVAL with a one-line reason in
 * err. Free in->root with json_decref, whatever the result.
 */
static int parse_rule(const struct am_http_request *req, bool create, struct rule_input *in,
                      char *err)
{
    static const struct {
        int p;
        const char *name;
    } required[] = {
        {P_NAME, "name"},           {P_METRIC, "metric"},         {P_OP, "op"},
        {P_THRESHOLD, "threshold"}, {P_WINDOW, "window_seconds"}, {P_URL, "webhook_url"}};
    const char *key;
    json_t *v;

    memset(in, 0, sizeof *in);
    in->value[P_SCOPE_SET] = "false";
    if (aa_body_object(req, &in->root, err))
        return AM_EINVAL;
    json_object_foreach(in->root, key, v)
    {
        if (take_field(in, key, v, err))
            return AM_EINVAL;
    }
    if (!create)
        return AM_OK;
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!in->set[required[i].p]) {
            snprintf(err, AA_ERR_MAX, "%s is required", required[i].name);
            return AM_EINVAL;
        }
    }
    if (!in->set[P_MIN_CALLS])
        in->value[P_MIN_CALLS] = "1";
    return AM_OK;
}

static void list_rules(struct aa_ctx *ctx, const struct am_http_request *req,
                       struct am_http_response *resp, const char *arg)
{
    static const char *const states[] = {"ok", "firing", NULL};
    char err[AA_ERR_MAX];
    const char *state;

    if (aa_param_enum(req, "state", states, NULL, &state, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    const char *params[] = {state};
    aa_reply_query(ctx, req, resp, 200, sql_list, 1, params, NULL, NULL);
}

static void get_rule(struct aa_ctx *ctx, const struct am_http_request *req,
                     struct am_http_response *resp, const char *arg)
{
    aa_reply_by_id(ctx, req, resp, arg, 200, sql_by_id, "alert rule not found");
}

/* POST (arg NULL) creates a rule; PUT .../{arg} changes the fields its body names. */
static void write_rule(struct aa_ctx *ctx, const struct am_http_request *req,
                       struct am_http_response *resp, const char *arg)
{
    struct rule_input in;
    char err[AA_ERR_MAX];
    bool create = arg == NULL;

    if (!create && aa_parse_id(arg)) {
        am_http_error(resp, 400, "id must be a positive whole number");
        return;
    }
    if (parse_rule(req, create, &in, err)) {
        am_http_error(resp, 400, err);
        goto out;
    }
    in.value[P_ID] = arg;
    aa_reply_query(ctx, req, resp, create ? 201 : 200, create ? sql_insert : sql_update,
                   create ? P_SCOPE_SET : NPARAMS, in.value, create ? NULL : "alert rule not found",
                   "an alert rule with this name already exists");
    if (resp->status == 201 || resp->status == 200)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "alerts: %s rule %s",
                   create ? "created" : "updated", create ? in.value[P_NAME] : arg);
out:
    json_decref(in.root);
}

static void create_rule(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, const char *arg)
{
    write_rule(ctx, req, resp, NULL);
}

static void delete_rule(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, const char *arg)
{
    aa_reply_by_id(ctx, req, resp, arg, 204, sql_delete, "alert rule not found");
    if (resp->status == 204)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "alerts: deleted rule %s", arg);
}

static void history(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, const char *arg)
{
    char err[AA_ERR_MAX], rule[24], limit[24];
    long long rule_id, n;

    if (aa_param_int(req, "rule_id", 0, 1, INT64_MAX, &rule_id, err) ||
        aa_param_limit(req, "limit", 100, 1000, &n, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    snprintf(rule, sizeof rule, "%lld", rule_id);
    snprintf(limit, sizeof limit, "%lld", n);
    const char *params[] = {rule_id ? rule : NULL, limit};
    aa_reply_query(ctx, req, resp, 200, sql_history, 2, params, NULL, NULL);
}

/* history comes before '*', so that it is not read as an id. */
const struct aa_route aa_alert_routes[] = {
    {"GET", "/api/llm-backends/alerts", list_rules, 0},
    {"POST", "/api/llm-backends/alerts", create_rule, AA_WRITE | AA_JSON_BODY},
    {"GET", "/api/llm-backends/alerts/history", history, 0},
    {"GET", "/api/llm-backends/alerts/*", get_rule, 0},
    {"PUT", "/api/llm-backends/alerts/*", write_rule, AA_WRITE | AA_JSON_BODY},
    {"DELETE", "/api/llm-backends/alerts/*", delete_rule, AA_WRITE},
    {0},
};
