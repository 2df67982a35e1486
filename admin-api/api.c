/* Routing, authorisation, request accounting and the shared query reply. */
#include "api.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"
#include "params.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Request counts by route pattern, method and status. */
struct counter {
    const char *method;
    const char *route;
    int status;
    uint64_t count;
};

#define MAX_COUNTERS 256
static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;
static struct counter counters[MAX_COUNTERS];
static int ncounters;

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,   0.25,   0.5,   1,    2.5,   5};
static struct am_prom_histogram latency = {
    .bounds = latency_bounds, .nbounds = sizeof latency_bounds / sizeof latency_bounds[0]};

static void count_request(const char *method, const char *route, int status, double seconds)
{
    am_prom_observe(&latency, seconds);
    pthread_mutex_lock(&counters_mu);
    int i;
    for (i = 0; i < ncounters; i++) {
        if (counters[i].status == status && counters[i].route == route &&
            !strcmp(counters[i].method, method))
            break;
    }
    if (i == ncounters && ncounters < MAX_COUNTERS) {
        /* Methods outside the routes are folded into one label value. */
        static const char *const known[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
        const char *m = "OTHER";
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (!strcmp(method, known[k]))
                m = known[k];
        counters[ncounters++] = (struct counter){m, route, status, 0};
    }
    if (i < MAX_COUNTERS)
        counters[i].count++;
    pthread_mutex_unlock(&counters_mu);
}

void aa_api_write_prom(struct am_buf *b)
{
    am_prom_family(b, "athena_admin_http_requests_total", "counter",
                   "HTTP requests by method, route and status.");
    pthread_mutex_lock(&counters_mu);
    for (int i = 0; i < ncounters; i++) {
        am_buf_printf(b,
                      "athena_admin_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} "
                      "%llu\n",
                      counters[i].method, counters[i].route, counters[i].status,
                      (unsigned long long)counters[i].count);
    }
    pthread_mutex_unlock(&counters_mu);
    am_prom_histogram_write(b, "athena_admin_http_request_seconds",
                            "Time to answer an HTTP request.", &latency);
}

bool aa_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    /* Always walk the expected token's length, whatever was sent. */
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)((i < la ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

/* Matches path against pattern; on a '*' segment copies it to arg (arglen bytes). */
static bool match(const char *pattern, const char *path, char *arg, size_t arglen)
{
    arg[0] = '\0';
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= arglen)
                return false;
            memcpy(arg, path, n);
            arg[n] = '\0';
            path += n;
            pattern++;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    /* A trailing slash on the request is accepted. */
    if (*path == '/' && path[1] == '\0')
        path++;
    return *pattern == '\0' && *path == '\0';
}

void aa_content_type(const struct am_http_request *req, char *out, size_t outlen)
{
    const char *ct = am_http_header(req, "Content-Type");
    size_t n = 0;
    if (ct) {
        while (*ct == ' ')
            ct++;
        for (; ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < outlen; n++)
            out[n] = (char)tolower((unsigned char)ct[n]);
    }
    out[n] = '\0';
}

void aa_dispatch(struct aa_ctx *ctx, const struct aa_route *const *tables,
                 const struct am_http_request *req, struct am_http_response *resp)
{
    int64_t t0 = am_clock_mono_ns();
    char arg[512];
    const struct aa_route *found = NULL;
    bool path_matched = false;
    const char *route_label = "unmatched";

    /* A path that matched in one table is answered by that table (405 if no method fits). */
    for (int t = 0; tables[t] && !found && !path_matched; t++) {
        for (const struct aa_route *r = tables[t]; r->pattern; r++) {
            if (!match(r->pattern, req->path, arg, sizeof arg))
                continue;
            path_matched = true;
            route_label = r->pattern;
            if (!strcmp(r->method, req->method) ||
                (!strcmp(r->method, "GET") && !strcmp(req->method, "HEAD"))) {
                found = r;
                break;
            }
        }
    }

    if (!found) {
        am_http_error(resp, path_matched ? 405 : 404,
                      path_matched ? "method not allowed" : "not found");
        goto out;
    }
    if ((found->flags & AA_WRITE) && ctx->token) {
        const char *auth = am_http_header(req, "Authorization");
        /* The scheme name is case-insensitive (RFC 9110 11.1). */
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
            !aa_token_equal(auth + 7, ctx->token)) {
            am_http_error(resp, 401, "missing or wrong bearer token");
            goto out;
        }
    }
    if (found->flags & AA_JSON_BODY) {
        char ct[64];
        aa_content_type(req, ct, sizeof ct);
        if (strcmp(ct, "application/json") != 0) {
            am_http_error(resp, 415, "Content-Type must be application/json");
            goto out;
        }
    }
    found->fn(ctx, req, resp, arg[0] ? arg : NULL);

out:
    count_request(req->method, route_label, resp->status, (double)(am_clock_mono_ns() - t0) / 1e9);
}

void aa_reply_buf(struct am_http_response *resp, int ok_status, struct am_buf *b)
{
    free(resp->body);
    resp->status = ok_status;
    resp->content_type = "application/json";
    resp->body = am_buf_take(b, &resp->body_len);
}

void aa_reply_query(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, int ok_status, const char *sql, int nparams,
                    const char *const *params, const char *not_found, const char *conflict)
{
    PGconn *conn = aa_pool_get(ctx->pool, ctx->db_timeout_ms);
    if (!conn) {
        am_http_error(resp, 503, "database unavailable");
        return;
    }
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
            am_http_reply(resp, ok_status, "application/json", PQgetvalue(res, 0, 0));
        } else if (not_found) {
            am_http_error(resp, 404, not_found);
        } else if (st == PGRES_COMMAND_OK) {
            am_http_reply(resp, ok_status, "application/json", "");
        } else {
            am_http_reply(resp, ok_status, "application/json", "[]");
        }
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && !strcmp(state, "23505")) {
            am_http_error(resp, conflict ? 409 : 400, conflict ? conflict : "already exists");
        } else if (PQstatus(conn) != CONNECTION_OK || (state && !strncmp(state, "08", 2)) ||
                   (state && !strncmp(state, "57", 2))) {
            AM_LOG_REQ(AM_LOG_WARN, req->request_id, "database unavailable: %s",
                       PQresultErrorMessage(res));
            am_http_error(resp, 503, "database unavailable");
        } else {
            AM_LOG_REQ(AM_LOG_ERROR, req->request_id, "query failed: %s",
                       PQresultErrorMessage(res));
            am_http_error(resp, 500, "internal error");
        }
    }
    PQclear(res);
    aa_pool_put(ctx->pool, conn);
}

void aa_reply_by_id(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, const char *arg, int ok_status, const char *sql,
                    const char *not_found)
{
    if (aa_parse_id(arg)) {
        am_http_error(resp, 400, "id must be a positive whole number");
        return;
    }
    const char *params[] = {arg};
    aa_reply_query(ctx, req, resp, ok_status, sql, 1, params, not_found, NULL);
}
