/* The backend registry the LLM router reads: list, look-up, create, update, delete, toggle. */
#include "api.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "params.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * One registry entry as JSON: every column of llm_backend b plus the live
 * figures s computed by LIVE_FIGURES. Timestamps come out as ISO 8601 in UTC
 * (the pool's sessions run with TimeZone=UTC).
 */
#define ENTRY_JSON                                                                                 \
    "json_build_object('id', b.id, 'model_name', b.model_name, 'backend_type', b.backend_type,"    \
    " 'endpoint_url', b.endpoint_url, 'enabled', b.enabled, 'priority', b.priority,"               \
    " 'max_tokens', b.max_tokens, 'temperature_default', b.temperature_default,"                   \
    " 'timeout_seconds', b.timeout_seconds, 'description', b.description,"                         \
    " 'total_requests', s.total_requests, 'total_errors', s.total_errors,"                         \
    " 'avg_tokens_per_sec', s.avg_tokens_per_sec, 'avg_latency_ms', s.avg_latency_ms,"             \
    " 'created_at', b.created_at, 'updated_at', b.updated_at)"

/*
 * The model's calls over the last 24 hours. The window keeps the look-up an
 * index range scan on (model, timestamp) however long the table grows; the
 * averages cover successful calls only, since a failed call has no rate.
 */
#define LIVE_FIGURES                                                                               \
    " CROSS JOIN LATERAL (SELECT count(*) AS total_requests,"                                      \
    "   count(*) FILTER (WHERE m.status = 'error') AS total_errors,"                               \
    "   avg(m.tokens_per_second) FILTER (WHERE m.status = 'ok') AS avg_tokens_per_sec,"            \
    "   avg(m.latency_seconds) FILTER (WHERE m.status = 'ok') * 1000 AS avg_latency_ms"            \
    "  FROM llm_performance_metric m"                                                              \
    "  WHERE m.model = b.model_name AND m.timestamp >= now() - interval '24 hours') s"

static const char sql_list[] =
    "SELECT coalesce(json_agg(" ENTRY_JSON " ORDER BY b.model_name), '[]')"
    " FROM llm_backend b" LIVE_FIGURES " WHERE b.enabled OR NOT $1::boolean";

static const char sql_by_id[] =
    "SELECT " ENTRY_JSON " FROM llm_backend b" LIVE_FIGURES " WHERE b.id = $1::bigint";

static const char sql_by_model[] = "SELECT " ENTRY_JSON " FROM llm_backend b" LIVE_FIGURES
                                   " WHERE b.model_name = $1 AND b.enabled";

static const char sql_toggle[] =
    "WITH b AS (UPDATE llm_backend SET enabled = NOT enabled, updated_at = now()"
    " WHERE id = $1::bigint RETURNING *) SELECT " ENTRY_JSON " FROM b" LIVE_FIGURES;

static const char sql_delete[] =
    "WITH d AS (DELETE FROM llm_backend WHERE id = $1::bigint RETURNING id) SELECT '' FROM d";

/* The fields a client may set, in the order of the INSERT's parameters. */
enum field_kind { F_NAME, F_TYPE, F_URL, F_BOOL, F_INT, F_REAL, F_TEXT };

struct field {
    const char *name; /* JSON key and column */
    enum field_kind kind;
    const char *type;   /* SQL type of the parameter */
    long long min, max; /* bounds of a number; for text, at most max bytes */
    const char *def;    /* value on create when absent; NULL: required, or SQL NULL if nullable */
    int nullable;
};

#define NFIELDS 9

static const struct field fields[NFIELDS] = {
    {"model_name", F_NAME, "text", 0, AM_METRIC_MAX_STRING, NULL, 0},
    {"backend_type", F_TYPE, "text", 0, 0, NULL, 0},
    {"endpoint_url", F_URL, "text", 0, 2048, NULL, 0},
    {"enabled", F_BOOL, "boolean", 0, 0, "true", 0},
    /* The existing backend's default: lower means preferred in 'auto' mode. */
    {"priority", F_INT, "integer", INT32_MIN, INT32_MAX, "100", 0},
    {"max_tokens", F_INT, "integer", 1, INT32_MAX, "2048", 0},
    {"temperature_default", F_REAL, "double precision", 0, 2, "0.7", 0},
    {"timeout_seconds", F_INT, "integer", 1, 86400, "60", 0},
    {"description", F_TEXT, "text", 0, 4096, NULL, 1},
};

/* Keys of an entry as we answer it that no client sets; accepted and ignored. */
static const char *const read_only[] = {
    "id",           "created_at",     "updated_at",         "created_by", "total_requests",
    "total_errors", "avg_latency_ms", "avg_tokens_per_sec", NULL,
};

static const char sql_insert[] =
    "WITH b AS (INSERT INTO llm_backend (model_name, backend_type, endpoint_url, enabled,"
    " priority, max_tokens, temperature_default, timeout_seconds, description)"
    " VALUES ($1, $2, $3, $4::boolean, $5::integer, $6::integer, $7::double precision,"
    " $8::integer, $9) RETURNING *) SELECT " ENTRY_JSON " FROM b" LIVE_FIGURES;

/* A validated body: the fields it sets, as text parameters. */
struct input {
    json_t *root;               /* owns the strings value[] points into */
    int set[NFIELDS];           /* the body names this field */
    const char *value[NFIELDS]; /* NULL for SQL NULL */
    char number[NFIELDS][40];   /* storage for formatted numbers */
};

static void input_free(struct input *in)
{
    json_decref(in->root);
    in->root = NULL;
}

/* Checks one value against its field and stores it as a parameter; AM_EINVAL with err. */
static int take_value(struct input *in, int i, json_t *v, char *err)
{
    const struct field *f = &fields[i];
    const char *s;
    size_t len;

    in->set[i] = 1;
    if (json_is_null(v) && f->nullable) {
        in->value[i] = NULL;
        return AM_OK;
    }
    switch (f->kind) {
    case F_NAME:
    case F_TYPE:
    case F_URL:
    case F_TEXT:
        if (!json_is_string(v)) {
            snprintf(err, AA_ERR_MAX, "%s must be a string%s", f->name,
                     f->nullable ? " or null" : "");
            return AM_EINVAL;
        }
        s = json_string_value(v);
        len = json_string_length(v);
        if (f->kind == F_TYPE) {
            if (strcmp(s, "ollama") && strcmp(s, "mlx") && strcmp(s, "auto")) {
                snprintf(err, AA_ERR_MAX, "backend_type must be one of ollama, mlx, auto");
                return AM_EINVAL;
            }
        } else if (len > (size_t)f->max) {
            snprintf(err, AA_ERR_MAX, "%s must be at most %lld bytes", f->name, f->max);
            return AM_EINVAL;
        } else if (f->kind == F_NAME && (len == 0 || !aa_no_space(s))) {
            snprintf(err, AA_ERR_MAX, "%s must be non-empty, without spaces or control characters",
                     f->name);
            return AM_EINVAL;
        } else if (f->kind == F_URL && !aa_http_url_ok(s)) {
            snprintf(err, AA_ERR_MAX,
                     "%s must be an http:// or https:// URL without spaces or control characters",
                     f->name);
            return AM_EINVAL;
        }
        in->value[i] = s;
        return AM_OK;
    case F_BOOL:
        if (!json_is_boolean(v)) {
            snprintf(err, AA_ERR_MAX, "%s must be true or false", f->name);
            return AM_EINVAL;
        }
        in->value[i] = json_is_true(v) ? "true" : "false";
        return AM_OK;
    case F_INT:
        if (!json_is_integer(v)) {
            snprintf(err, AA_ERR_MAX, "%s must be a whole number", f->name);
            return AM_EINVAL;
        }
        if (json_integer_value(v) < f->min || json_integer_value(v) > f->max) {
            snprintf(err, AA_ERR_MAX, "%s must be between %lld and %lld", f->name, f->min, f->max);
            return AM_EINVAL;
        }
        snprintf(in->number[i], sizeof in->number[i], "%lld", (long long)json_integer_value(v));
        in->value[i] = in->number[i];
        return AM_OK;
    case F_REAL:
        if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
            json_number_value(v) < (double)f->min || json_number_value(v) > (double)f->max) {
            snprintf(err, AA_ERR_MAX, "%s must be a number from %lld to %lld", f->name, f->min,
                     f->max);
            return AM_EINVAL;
        }
        snprintf(in->number[i], sizeof in->number[i], "%.17g", json_number_value(v));
        in->value[i] = in->number[i];
        return AM_OK;
    }
    return AM_EINVAL;
}

/*
 * Parses req's body into in: a JSON object whose keys are fields, or read-only
 * keys of an entry (ignored). With create, fills the defaults and insists on
 * the required fields. AM_EINVAL with a one-line reason in err (AA_ERR_MAX
 * bytes). Free in with input_free, whatever the result.
 */
static int parse_input(const struct am_http_request *req, int create, struct input *in, char *err)
{
    const char *key;
    json_t *v;
    char text[64];

    memset(in, 0, sizeof *in);
    if (aa_body_object(req, &in->root, err))
        return AM_EINVAL;
    json_object_foreach(in->root, key, v)
    {
        int i, r;
        for (i = 0; i < NFIELDS && strcmp(key, fields[i].name); i++)
            ;
        if (i < NFIELDS) {
            if (take_value(in, i, v, err))
                return AM_EINVAL;
            continue;
        }
        for (r = 0; read_only[r] && strcmp(key, read_only[r]); r++)
            ;
        if (!read_only[r]) {
            aa_ascii_copy(text, sizeof text, key);
            snprintf(err, AA_ERR_MAX, "unknown field '%s'", text);
            return AM_EINVAL;
        }
    }
    if (!create)
        return AM_OK;
    for (int i = 0; i < NFIELDS; i++) {
        if (in->set[i])
            continue;
        if (!fields[i].def && !fields[i].nullable) {
            snprintf(err, AA_ERR_MAX, "%s is required", fields[i].name);
            return AM_EINVAL;
        }
        in->value[i] = fields[i].def;
    }
    return AM_OK;
}

/*
 * Runs a write (sql yields the entry as JSON in one row, or no row when the
 * id is unknown) and replies ok_status with the entry. A model that is
 * already configured is a 400, as the existing backend answers. Returns
 * AM_OK when the write happened; otherwise the reply already says why.
 */
static int reply_write(struct aa_ctx *ctx, const struct am_http_request *req,
                       struct am_http_response *resp, int ok_status, const char *sql, int nparams,
                       const char *const *params, const char *model)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    int rc = AM_EDB;
    char msg[AM_METRIC_MAX_STRING + 64];

    conn = aa_pool_get(ctx->pool, ctx->db_timeout_ms);
    if (!conn) {
        am_http_error(resp, 503, "database unavailable");
        goto out;
    }
    res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            am_http_reply(resp, ok_status, "application/json", PQgetvalue(res, 0, 0));
            rc = AM_OK;
        } else {
            am_http_error(resp, 404, "backend not found");
            rc = AM_ENOTFOUND;
        }
        goto out;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    if (state && !strcmp(state, "23505") && constraint &&
        !strcmp(constraint, "llm_backend_model_name_key")) {
        snprintf(msg, sizeof msg, "a backend for model '%s' already exists",
                 model ? model : "(unknown)");
        am_http_error(resp, 400, msg);
        rc = AM_EINVAL;
    } else if (state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))) {
        /* Validation should have caught it; the constraint has the last word. */
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        aa_ascii_copy(msg, sizeof msg, primary ? primary : "invalid value");
        am_http_error(resp, 400, msg);
        rc = AM_EINVAL;
    } else if (PQstatus(conn) != CONNECTION_OK || (state && !strncmp(state, "08", 2)) ||
               (state && !strncmp(state, "57", 2))) {
        AM_LOG_REQ(AM_LOG_WARN, req->request_id, "database unavailable: %s",
                   PQresultErrorMessage(res));
        am_http_error(resp, 503, "database unavailable");
    } else {
        AM_LOG_REQ(AM_LOG_ERROR, req->request_id, "backend registry write failed: %s",
                   PQresultErrorMessage(res));
        am_http_error(resp, 500, "internal error");
    }
out:
    PQclear(res);
    if (conn)
        aa_pool_put(ctx->pool, conn);
    return rc;
}

static void list_backends(struct aa_ctx *ctx, const struct am_http_request *req,
                          struct am_http_response *resp, const char *arg)
{
    char err[AA_ERR_MAX];
    bool enabled_only;
    if (aa_param_bool(req, "enabled_only", false, &enabled_only, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    const char *params[] = {enabled_only ? "true" : "false"};
    aa_reply_query(ctx, req, resp, 200, sql_list, 1, params, NULL, NULL);
}

static void get_backend(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, const char *arg)
{
    aa_reply_by_id(ctx, req, resp, arg, 200, sql_by_id, "backend not found");
}

static void get_backend_by_model(struct aa_ctx *ctx, const struct am_http_request *req,
                                 struct am_http_response *resp, const char *arg)
{
    char msg[AM_METRIC_MAX_STRING + 64];
    /* libmicrohttpd has already decoded the path: phi3%3Amini arrives as phi3:mini. */
    if (!arg || !am_utf8_valid(arg, AM_METRIC_MAX_STRING) || !aa_no_space(arg)) {
        am_http_error(resp, 400, "model_name must be UTF-8 of at most 1024 bytes, without spaces");
        return;
    }
    snprintf(msg, sizeof msg, "no enabled backend configured for model '%s'", arg);
    const char *params[] = {arg};
    aa_reply_query(ctx, req, resp, 200, sql_by_model, 1, params, msg, NULL);
}

static void create_backend(struct aa_ctx *ctx, const struct am_http_request *req,
                           struct am_http_response *resp, const char *arg)
{
    struct input in = {0};
    char err[AA_ERR_MAX];

    if (parse_input(req, 1, &in, err)) {
        am_http_error(resp, 400, err);
        goto out;
    }
    if (reply_write(ctx, req, resp, 201, sql_insert, NFIELDS, in.value, in.value[0]) == AM_OK)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "backend registry: created model %s", in.value[0]);
out:
    input_free(&in);
}

static void update_backend(struct aa_ctx *ctx, const struct am_http_request *req,
                           struct am_http_response *resp, const char *arg)
{
    struct input in = {0};
    struct am_buf sql;
    const char *params[NFIELDS + 1];
    int n = 0, rc = AM_OK;
    char err[AA_ERR_MAX];

    am_buf_init(&sql, 8192);
    if (aa_parse_id(arg)) {
        am_http_error(resp, 400, "id must be a positive whole number");
        goto out;
    }
    if (parse_input(req, 0, &in, err)) {
        am_http_error(resp, 400, err);
        goto out;
    }
    params[n++] = arg;
    /* Only fixed column names from fields[] go into the text; values are parameters. */
    rc |= am_buf_printf(&sql, "WITH b AS (UPDATE llm_backend SET ");
    for (int i = 0; i < NFIELDS; i++) {
        if (!in.set[i])
            continue;
        params[n++] = in.value[i];
        rc |= am_buf_printf(&sql, "%s = $%d::%s, ", fields[i].name, n, fields[i].type);
    }
    if (n == 1) {
        /* Nothing to change: answer the entry as it is. */
        aa_reply_query(ctx, req, resp, 200, sql_by_id, 1, params, "backend not found", NULL);
        goto out;
    }
    rc |= am_buf_printf(&sql,
                        "updated_at = now() WHERE id = $1::bigint RETURNING *) SELECT %s FROM b%s",
                        ENTRY_JSON, LIVE_FIGURES);
    if (rc) {
        am_http_error(resp, 500, "internal error");
        goto out;
    }
    if (reply_write(ctx, req, resp, 200, sql.data, n, params, in.value[0]) == AM_OK)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "backend registry: updated id %s", arg);
out:
    am_buf_free(&sql);
    input_free(&in);
}

static void delete_backend(struct aa_ctx *ctx, const struct am_http_request *req,
                           struct am_http_response *resp, const char *arg)
{
    aa_reply_by_id(ctx, req, resp, arg, 204, sql_delete, "backend not found");
    if (resp->status == 204)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "backend registry: deleted id %s", arg);
}

static void toggle_backend(struct aa_ctx *ctx, const struct am_http_request *req,
                           struct am_http_response *resp, const char *arg)
{
    aa_reply_by_id(ctx, req, resp, arg, 200, sql_toggle, "backend not found");
    if (resp->status == 200)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "backend registry: toggled id %s", arg);
}

const struct aa_route aa_backend_routes[] = {
    {"GET", "/api/llm-backends", list_backends, 0},
    {"POST", "/api/llm-backends", create_backend, AA_WRITE | AA_JSON_BODY},
    {"GET", "/api/llm-backends/model/*", get_backend_by_model, 0},
    {"GET", "/api/llm-backends/*", get_backend, 0},
    {"PUT", "/api/llm-backends/*", update_backend, AA_WRITE | AA_JSON_BODY},
    {"DELETE", "/api/llm-backends/*", delete_backend, AA_WRITE},
    {"POST", "/api/llm-backends/*/toggle", toggle_backend, AA_WRITE},
    {0},
};
