/* The performance page: serves the embedded HTML, script, style and Chart.js. */
#include "page.h"
#include "api.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const struct aa_page_asset *aa_page_find(const char *name)
{
    for (const struct aa_page_asset *a = aa_page_assets; a->name; a++)
        if (!strcmp(a->name, name))
            return a;
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

const char *aa_page_content_type(const char *name)
{
    if (ends_with(name, ".html"))
        return "text/html; charset=utf-8";
    if (ends_with(name, ".js"))
        return "text/javascript; charset=utf-8";
    if (ends_with(name, ".css"))
        return "text/css; charset=utf-8";
    return "application/octet-stream";
}

/* True when the If-None-Match header of req names etag (or is "*"). */
static bool not_modified(const struct am_http_request *req, const char *etag)
{
    const char *inm = am_http_header(req, "If-None-Match");
    if (!inm)
        return false;
    if (!strcmp(inm, "*"))
        return true;
    /* A list of tags, possibly weak ("W/"), compared weakly as RFC 9110 13.1.2 says. */
    size_t elen = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        char after = p[elen];
        if (after == '\0' || after == ',' || after == ' ')
            return true;
    }
    return false;
}

/*
 * Replies with asset a, gzipped when the client takes it (Chart.js is 200 KB
 * plain, 68 KB gzipped). The page itself is revalidated on every load
 * (no-cache, so a new build shows at once); scripts and styles may be used
 * for an hour without asking, then revalidated by ETag.
 */
static void serve(const struct am_http_request *req, struct am_http_response *resp,
                  const struct aa_page_asset *a, const char *cache_control)
{
    bool gz = am_http_accepts_gzip(req) && a->gz_len < a->len;
    const char *etag = gz ? a->gz_etag : a->etag;
    const unsigned char *data = gz ? a->gz : a->data;
    size_t len = gz ? a->gz_len : a->len;

    resp->headers[0] = (struct am_http_header){"ETag", etag};
    resp->headers[1] = (struct am_http_header){"Cache-Control", cache_control};
    resp->headers[2] = (struct am_http_header){"Vary", "Accept-Encoding"};
    if (gz)
        resp->headers[3] = (struct am_http_header){"Content-Encoding", "gzip"};
    if (not_modified(req, etag)) {
        am_http_reply(resp, 304, aa_page_content_type(a->name), "");
        return;
    }
    char *body = malloc(len ? len : 1);
    if (!body) {
        am_http_error(resp, 500, "out of memory");
        return;
    }
    memcpy(body, data, len);
    free(resp->body);
    resp->status = 200;
    resp->content_type = aa_page_content_type(a->name);
    resp->body = body;
    resp->body_len = len;
}

static void page(struct aa_ctx *ctx, const struct am_http_request *req,
                 struct am_http_response *resp, const char *arg)
{
    const struct aa_page_asset *a = aa_page_find("index.html");
    if (!a) {
        am_http_error(resp, 500, "the page was not built in");
        return;
    }
    serve(req, resp, a, "no-cache");
}

static void asset(struct aa_ctx *ctx, const struct am_http_request *req,
                  struct am_http_response *resp, const char *arg)
{
    const struct aa_page_asset *a = arg ? aa_page_find(arg) : NULL;
    if (!a || !strcmp(arg, "index.html")) {
        am_http_error(resp, 404, "not found");
        return;
    }
    serve(req, resp, a, "public, max-age=3600");
}

/* "/" sends browsers to the page; the query string, if any, is not kept. */
static void root(struct aa_ctx *ctx, const struct am_http_request *req,
                 struct am_http_response *resp, const char *arg)
{
    am_http_reply(resp, 302, "text/plain; charset=utf-8", "see /performance\n");
    resp->headers[0] = (struct am_http_header){"Location", "/performance"};
}

const struct aa_route aa_page_routes[] = {
    {"GET", "/", root, 0},
    {"GET", "/performance", page, 0},
    {"GET", "/static/*", asset, 0},
    {0},
};
