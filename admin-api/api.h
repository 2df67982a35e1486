/* Routing, authorisation and shared reply helpers of the admin-api. */
#ifndef AA_API_H
#define AA_API_H

#include "am_buf.h"
#include "am_http.h"
#include "pool.h"

#include <stdbool.h>
#include <stddef.h>

/* What every handler can reach. */
struct aa_ctx {
    aa_pool *pool;
    const char *token;    /* bearer token for writes, or NULL when writes are open */
    int db_timeout_ms;    /* how long a request waits for a pool connection */
    void *stream;         /* the SSE hub (stream.c), or NULL */
    int rollup_min_hours; /* summaries over at least this many hours read the rollups; 0 never */
};

/* arg is the path segment matched by '*' in the route's pattern, or NULL. */
typedef void (*aa_handler)(struct aa_ctx *ctx, const struct am_http_request *req,
                           struct am_http_response *resp, const char *arg);

enum {
    AA_WRITE = 1,     /* needs the bearer token when one is configured */
    AA_JSON_BODY = 2, /* the body must be JSON (415 otherwise) */
    AA_ANY_BODY = 4,  /* the handler checks the content type itself */
};

struct aa_route {
    const char *method;
    const char *pattern; /* literal segments, '*' for one parameter segment */
    aa_handler fn;
    unsigned flags;
};

/* The route tables of the handler modules, each ended by a zeroed entry. */
extern const struct aa_route aa_metrics_routes[];
extern const struct aa_route aa_backend_routes[];
extern const struct aa_route aa_stream_routes[];
extern const struct aa_route aa_health_routes[];
extern const struct aa_route aa_page_routes[]; /* page.c: the performance page */

/*
 * Finds the route for req among the tables (first match wins), checks
 * authorisation and content type, calls the handler and counts the request.
 */
void aa_dispatch(struct aa_ctx *ctx, const struct aa_route *const *tables,
                 const struct am_http_request *req, struct am_http_response *resp);

/*
 * Runs sql (parameters as text, NULL for SQL NULL) that yields one row with
 * one text column holding JSON, and replies with it and ok_status. No row:
 * 404 with not_found (or an empty JSON list when not_found is NULL). A pool
 * or connection failure: 503. A unique violation: 409 with conflict (or 400
 * when conflict is NULL); any other SQL error: 500. Errors are logged with
 * the request id.
 */
void aa_reply_query(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, int ok_status, const char *sql, int nparams,
                    const char *const *params, const char *not_found, const char *conflict);

/*
 * aa_reply_query for a statement whose one parameter is the id in arg (a
 * path segment): 400 when arg is not a positive whole number.
 */
void aa_reply_by_id(struct aa_ctx *ctx, const struct am_http_request *req,
                    struct am_http_response *resp, const char *arg, int ok_status, const char *sql,
                    const char *not_found);

/* Replies ok_status with body taken over from b. */
void aa_reply_buf(struct am_http_response *resp, int ok_status, struct am_buf *b);

/* The content type of req without parameters, lower case, in out (outlen bytes); "" if none. */
void aa_content_type(const struct am_http_request *req, char *out, size_t outlen);

/* Appends the request counters and latency histogram in Prometheus text format. */
void aa_api_write_prom(struct am_buf *b);

/* Compares a and b in time independent of where they differ. */
bool aa_token_equal(const char *a, const char *b);

#endif
