/* Model prices: list their versions, define one (PUT); each stored call gets its cost from them. */
#include "prices.h"
#include "am_error.h"
#include "am_log.h"
#include "api.h"
#include "metrics_record.h"
#include "params.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Every version, oldest first per model, with the time the next one takes
 * over (valid_until, NULL for the latest) and whether it is in force now.
 */
static const char sql_list[] =
    "SELECT coalesce(json_agg(json_build_object('model', model, 'valid_from', valid_from,"
    " 'valid_until', valid_until, 'input_usd_per_mtok', trim_scale(input_usd_per_mtok),"
    " 'output_usd_per_mtok', trim_scale(output_usd_per_mtok),"
    " 'current', valid_from <= now() AND (valid_until IS NULL OR valid_until > now()),"
    " 'created_at', created_at) ORDER BY model, valid_from), '[]')"
    " FROM (SELECT *, lead(valid_from) OVER (PARTITION BY model ORDER BY valid_from)"
    " AS valid_until FROM llm_model_price WHERE $1::text IS NULL OR model = $1::text) p";

/* A version at the same valid_from is replaced; calls already stored keep their cost. */
static const char sql_put[] =
    "WITH p AS (INSERT INTO llm_model_price (model, valid_from, input_usd_per_mtok,"
    " output_usd_per_mtok) VALUES ($1, $2::timestamptz, $3::numeric, $4::numeric)"
    " ON CONFLICT (model, valid_from) DO UPDATE SET"
    " input_usd_per_mtok = EXCLUDED.input_usd_per_mtok,"
    " output_usd_per_mtok = EXCLUDED.output_usd_per_mtok, created_at = now()"
    " RETURNING *, xmax = 0 AS created)"
    " SELECT json_build_object('model', model, 'valid_from', valid_from,"
    " 'input_usd_per_mtok', trim_scale(input_usd_per_mtok),"
    " 'output_usd_per_mtok', trim_scale(output_usd_per_mtok), 'created', created,"
    " 'created_at', created_at) FROM p";

/* Keys of a listed price that no client sets; accepted and ignored. */
static const char *const read_only[] = {"valid_until", "current", "created", "created_at", NULL};

int aa_price_decimal(double v, char *out, size_t outlen)
{
    for (int decimals = 0; decimals <= AA_PRICE_DECIMALS; decimals++) {
        snprintf(out, outlen, "%.*f", decimals, v);
        if (strtod(out, NULL) == v)
            return AM_OK;
    }
    return AM_EINVAL;
}

static int take_price(json_t *v, const char *name, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0 ||
        json_number_value(v) > AA_PRICE_MAX) {
        snprintf(err, errlen, "%s must be a number from 0 to %d (USD per million tokens)", name,
                 AA_PRICE_MAX);
        return AM_EINVAL;
    }
    if (aa_price_decimal(json_number_value(v), out, outlen)) {
        snprintf(err, errlen, "%s must have at most %d decimals", name, AA_PRICE_DECIMALS);
        return AM_EINVAL;
    }
    return AM_OK;
}

static int take_time(json_t *v, char *out, size_t outlen, char *err, size_t errlen)
{
    int rc = AM_EINVAL;
    if (json_is_string(v) && json_string_length(v) < 64)
        rc = aa_parse_time(json_string_value(v), out, outlen);
    else if (json_is_number(v))
        rc = aa_format_unix(json_number_value(v), out, outlen);
    if (rc) {
        snprintf(err, errlen,
                 "valid_from must be an ISO 8601 time (2026-01-31T12:00:00Z) or Unix seconds");
        return AM_EINVAL;
    }
    return AM_OK;
}

int aa_price_parse(json_t *root, int64_t now_us, struct aa_price *out, char *err, size_t errlen)
{
    json_t *v;
    const char *key;
    char text[64];

    memset(out, 0, sizeof *out);
    json_object_foreach(root, key, v)
    {
        int r = 0;
        while (read_only[r] && strcmp(key, read_only[r]))
            r++;
        if (!strcmp(key, "model") || !strcmp(key, "input_usd_per_mtok") ||
            !strcmp(key, "output_usd_per_mtok") || !strcmp(key, "valid_from") || read_only[r])
            continue;
        aa_ascii_copy(text, sizeof text, key);
        snprintf(err, errlen, "unknown field '%s'", text);
        return AM_EINVAL;
    }
    v = json_object_get(root, "model");
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > AM_METRIC_MAX_STRING ||
        !am_utf8_valid(json_string_value(v), AM_METRIC_MAX_STRING)) {
        snprintf(err, errlen, "model is required (a non-empty string of at most %d bytes)",
                 AM_METRIC_MAX_STRING);
        return AM_EINVAL;
    }
    memcpy(out->model, json_string_value(v), json_string_length(v) + 1);
    if (!json_object_get(root, "input_usd_per_mtok") ||
        !json_object_get(root, "output_usd_per_mtok")) {
        snprintf(err, errlen, "input_usd_per_mtok and output_usd_per_mtok are required");
        return AM_EINVAL;
    }
    if (take_price(json_object_get(root, "input_usd_per_mtok"), "input_usd_per_mtok",
                   out->input_usd_per_mtok, sizeof out->input_usd_per_mtok, err, errlen) ||
        take_price(json_object_get(root, "output_usd_per_mtok"), "output_usd_per_mtok",
                   out->output_usd_per_mtok, sizeof out->output_usd_per_mtok, err, errlen))
        return AM_EINVAL;
    v = json_object_get(root, "valid_from");
    if (v && !json_is_null(v)) {
        if (take_time(v, out->valid_from, sizeof out->valid_from, err, errlen))
            return AM_EINVAL;
    } else if (aa_format_unix((double)now_us / 1e6, out->valid_from, sizeof out->valid_from)) {
        snprintf(err, errlen, "the clock is outside 1970..9999");
        return AM_EINVAL;
    }
    return AM_OK;
}

static void list_prices(struct aa_ctx *ctx, const struct am_http_request *req,
                        struct am_http_response *resp, const char *arg)
{
    const char *params[1];
    char err[AA_ERR_MAX];

    if (aa_param_text(req, "model", AM_METRIC_MAX_STRING, &params[0], err)) {
        am_http_error(resp, 400, err);
        return;
    }
    if (params[0] && !params[0][0])
        params[0] = NULL;
    aa_reply_query(ctx, req, resp, 200, sql_list, 1, params, NULL, NULL);
}

static void put_price(struct aa_ctx *ctx, const struct am_http_request *req,
                      struct am_http_response *resp, const char *arg)
{
    struct aa_price *p = malloc(sizeof *p);
    json_t *root = NULL;
    char err[AA_ERR_MAX];

    if (!p) {
        am_http_error(resp, 500, "out of memory");
        return;
    }
    if (aa_body_object(req, &root, err) ||
        aa_price_parse(root, aa_metrics_now_us(), p, err, sizeof err)) {
        am_http_error(resp, 400, err);
        goto out;
    }
    const char *params[] = {p->model, p->valid_from, p->input_usd_per_mtok, p->output_usd_per_mtok};
    aa_reply_query(ctx, req, resp, 200, sql_put, 4, params, NULL, NULL);
    if (resp->status == 200)
        AM_LOG_REQ(AM_LOG_INFO, req->request_id,
                   "prices: model %s costs %s/%s USD per million tokens from %s", p->model,
                   p->input_usd_per_mtok, p->output_usd_per_mtok, p->valid_from);
out:
    json_decref(root);
    free(p);
}

/* Listed before the registry's routes, whose "/api/llm-backends/<id>" would match "prices". */
const struct aa_route aa_price_routes[] = {
    {"GET", "/api/llm-backends/prices", list_prices, 0},
    {"PUT", "/api/llm-backends/prices", put_price, AA_WRITE | AA_JSON_BODY},
    {0},
};
