/* A client for Ollama's chat and generate calls over libcurl, parsing NDJSON as it streams. */
#include "am_ollama.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ndjson.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE    (1 << 20) /* one NDJSON line */
#define MAX_CONTENT (4 << 20) /* all generated text of one call */
#define MAX_ERRBODY 4096

struct am_ollama_client {
    CURL *curl;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata);
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata);

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static bool proxy_in_environment; /* set once, before any handle exists */

static void curl_init_once(void)
{
    static const char *const proxy_vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        proxy_in_environment |= getenv(proxy_vars[i]) != NULL;
}

void *am_curl_easy_new(void)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    /* What every call of every handle shares is set once; callers set the rest per call. */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Only http and https: the URLs come from configuration, still no file:// surprises. */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /*
     * With no proxy variable in the environment, say so once: libcurl would
     * otherwise look for them again on every call.
     */
    if (!proxy_in_environment)
        curl_easy_setopt(h, CURLOPT_PROXY, "");
    return h;
}

int am_ollama_client_new(am_ollama_client **out)
{
    am_ollama_client *c = calloc(1, sizeof *c);
    if (!c)
        return AM_ENOMEM;
    c->curl = am_curl_easy_new();
    if (!c->curl) {
        free(c);
        return AM_ENOMEM;
    }
    *out = c;
    return AM_OK;
}

void am_ollama_client_free(am_ollama_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

void am_ollama_result_free(struct am_ollama_result *res)
{
    if (!res)
        return;
    free(res->content);
    res->content = NULL;
    res->content_len = res->content_cap = 0;
}

static void set_error(struct am_ollama_result *res, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct am_ollama_result *res, const char *type, const char *fmt, ...)
{
    va_list ap;
    if (res->error_type[0])
        return; /* the first cause is the one worth reporting */
    snprintf(res->error_type, sizeof res->error_type, "%s", type);
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

static int append_content(struct am_ollama_result *res, const char *text, size_t len)
{
    if (res->content_len + len > MAX_CONTENT)
        return AM_ERANGE;
    if (res->content_len + len + 1 > res->content_cap) {
        size_t cap = res->content_cap ? res->content_cap : 1024;
        while (cap < res->content_len + len + 1)
            cap *= 2;
        char *p = realloc(res->content, cap);
        if (!p)
            return AM_ENOMEM;
        res->content = p;
        res->content_cap = cap;
    }
    memcpy(res->content + res->content_len, text, len);
    res->content_len += len;
    res->content[res->content_len] = '\0';
    return AM_OK;
}

static bool get_count(json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

int am_ollama_parse_line(struct am_ollama_result *res, const char *line, size_t len,
                         const char **delta, size_t *delta_len)
{
    json_error_t jerr;
    int rc = AM_OK;
    *delta = NULL;
    *delta_len = 0;

    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        set_error(res, "bad_response", "not a JSON object: %s", obj ? "wrong type" : jerr.text);
        json_decref(obj);
        return AM_EPROTO;
    }
    json_t *err = json_object_get(obj, "error");
    if (err) {
        set_error(res, "backend_error", "%s",
                  json_is_string(err) ? json_string_value(err) : "error without a message");
        json_decref(obj);
        return AM_EPROTO;
    }
    json_t *model = json_object_get(obj, "model");
    if (json_is_string(model))
        snprintf(res->model, sizeof res->model, "%s", json_string_value(model));

    /* chat: message.content; generate: response */
    json_t *text = json_object_get(json_object_get(obj, "message"), "content");
    if (!text)
        text = json_object_get(obj, "response");
    if (text && !json_is_string(text)) {
        set_error(res, "bad_response", "generated text is not a string");
        rc = AM_EPROTO;
        goto out;
    }
    if (text && json_string_length(text) > 0) {
        size_t before = res->content_len;
        if ((rc = append_content(res, json_string_value(text), json_string_length(text)))) {
            set_error(res, "too_large", "the answer passed %d bytes", MAX_CONTENT);
            goto out;
        }
        *delta = res->content + before;
        *delta_len = json_string_length(text);
    }
    if (json_is_true(json_object_get(obj, "done"))) {
        res->done = true;
        json_t *reason = json_object_get(obj, "done_reason");
        if (json_is_string(reason))
            snprintf(res->done_reason, sizeof res->done_reason, "%s", json_string_value(reason));
        bool counts = get_count(obj, "eval_count", &res->eval_count);
        counts &= get_count(obj, "eval_duration", &res->eval_duration_ns);
        get_count(obj, "prompt_eval_count", &res->prompt_eval_count);
        get_count(obj, "prompt_eval_duration", &res->prompt_eval_duration_ns);
        get_count(obj, "total_duration", &res->total_duration_ns);
        get_count(obj, "load_duration", &res->load_duration_ns);
        res->has_counts = counts;
    }
out:
    json_decref(obj);
    return rc;
}

/* One call in progress: what libcurl's callbacks fill, and what it must keep alive. */
struct am_ollama_xfer {
    const struct am_ollama_call *call; /* NULL for a GET */
    struct am_ollama_result *res;
    struct am_ndjson lines;
    struct am_buf errbody; /* the start of an error answer; a GET's whole body */
    struct curl_slist headers[3];
    char rid[300];
    char url[2048];
    void *easy;
    int64_t t0;
    long status;
    long timeout_ms;
    int failed; /* a line was bad or the consumer aborted */
};

static int on_line(void *arg, const char *line, size_t len)
{
    struct am_ollama_xfer *st = arg;
    const char *delta;
    size_t dlen;
    int rc = am_ollama_parse_line(st->res, line, len, &delta, &dlen);
    if (rc)
        return rc;
    if (dlen > 0) {
        if (!st->res->has_ttft) {
            st->res->has_ttft = true;
            st->res->ttft_seconds = (double)(am_clock_mono_ns() - st->t0) / 1e9;
        }
        if (st->call->on_delta && st->call->on_delta(st->call->arg, delta, dlen)) {
            set_error(st->res, "aborted", "the caller stopped the stream");
            return AM_ECLOSED;
        }
    }
    return AM_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct am_ollama_xfer *st = userdata;
    size_t n = size * nmemb;
    if (st->status != 200) {
        /* Keep the start of an error body for its message. */
        size_t room = st->errbody.max - st->errbody.len;
        am_buf_append(&st->errbody, ptr, n < room ? n : room);
        return n;
    }
    if (am_ndjson_feed(&st->lines, ptr, n)) {
        st->failed = 1;
        if (!st->res->error_type[0])
            set_error(st->res, "bad_response", "an answer line passed %d bytes", MAX_LINE);
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return n;
}

/* The HTTP status is known once headers are in; the write callback needs it first. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct am_ollama_xfer *st = userdata;
    size_t n = size * nitems;
    /* "HTTP/1.1 200 OK": the three digits after the first space */
    if (n > 12 && !memcmp(buf, "HTTP/", 5)) {
        const char *sp = memchr(buf, ' ', n - 4);
        if (sp && sp[1] >= '1' && sp[1] <= '5' && sp[2] >= '0' && sp[2] <= '9' && sp[3] >= '0' &&
            sp[3] <= '9')
            st->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    }
    return n;
}

static void error_from_body(struct am_ollama_xfer *st)
{
    json_error_t jerr;
    json_t *obj = json_loadb(st->errbody.data ? st->errbody.data : "", st->errbody.len, 0, &jerr);
    json_t *msg = json_object_get(obj, "error");
    char type[32];
    snprintf(type, sizeof type, "http_%ld", st->status);
    set_error(st->res, type, "%s",
              json_is_string(msg) ? json_string_value(msg) : "backend answered with an error");
    json_decref(obj);
}

int am_ollama_xfer_begin(void *easy, const struct am_ollama_call *call,
                         struct am_ollama_result *res, am_ollama_xfer **out)
{
    am_ollama_xfer *st = calloc(1, sizeof *st);
    if (!st)
        return AM_ENOMEM;
    st->call = call;
    st->res = res;
    st->easy = easy;
    st->timeout_ms = call->timeout_ms > 0 ? call->timeout_ms : 120000L;
    memset(res, 0, sizeof *res);
    snprintf(st->url, sizeof st->url, "%s%s", call->base_url, call->path);
    am_ndjson_init(&st->lines, MAX_LINE, on_line, st);
    am_buf_init(&st->errbody, MAX_ERRBODY);
    /* "Expect:" keeps libcurl from waiting for a 100 Continue before sending a large body. */
    st->headers[0].data = "Content-Type: application/json";
    st->headers[0].next = &st->headers[1];
    st->headers[1].data = "Expect:";
    if (call->request_id) {
        snprintf(st->rid, sizeof st->rid, "X-Request-Id: %s", call->request_id);
        st->headers[2].data = st->rid;
        st->headers[1].next = &st->headers[2];
    }

    CURL *h = easy;
    curl_easy_setopt(h, CURLOPT_URL, st->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(call->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, st->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, st);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, st);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, st->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     call->connect_timeout_ms > 0 ? call->connect_timeout_ms : 5000L);
    st->t0 = am_clock_mono_ns();
    *out = st;
    return AM_OK;
}

static void xfer_free(am_ollama_xfer *st)
{
    am_ndjson_free(&st->lines);
    am_buf_free(&st->errbody);
    free(st);
}

int am_ollama_xfer_end(am_ollama_xfer *st, int curl_code)
{
    struct am_ollama_result *res = st->res;
    const struct am_ollama_call *call = st->call;
    CURLcode cc = (CURLcode)curl_code;
    int rc = AM_OK;

    res->latency_seconds = (double)(am_clock_mono_ns() - st->t0) / 1e9;
    curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &res->http_status);
    if (cc == CURLE_OK && res->http_status == 200 && am_ndjson_finish(&st->lines) != AM_OK)
        st->failed = 1;
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        set_error(res, "timeout", "no complete answer within %ld ms", st->timeout_ms);
    } else if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
        set_error(res, "backend_unavailable", "%s", curl_easy_strerror(cc));
    } else if (cc != CURLE_OK && !st->failed) {
        set_error(res, "backend_unavailable", "%s", curl_easy_strerror(cc));
    } else if (cc == CURLE_OK && res->http_status != 200) {
        st->status = res->http_status;
        error_from_body(st);
    } else if (!res->error_type[0] && !res->done) {
        set_error(res, "incomplete_response", "the answer ended before done");
    }
    if (res->error_type[0]) {
        rc = AM_EIO;
        AM_LOG_REQ(AM_LOG_WARN, call->request_id, "ollama %s: %s: %s", call->path, res->error_type,
                   res->error);
    }
    xfer_free(st);
    return rc;
}

int am_ollama_run(am_ollama_client *c, const struct am_ollama_call *call,
                  struct am_ollama_result *res)
{
    am_ollama_xfer *x = NULL;
    if (am_ollama_xfer_begin(c->curl, call, res, &x)) {
        memset(res, 0, sizeof *res);
        set_error(res, "internal", "out of memory");
        return AM_ENOMEM;
    }
    return am_ollama_xfer_end(x, curl_easy_perform(c->curl));
}

static size_t collect_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct am_buf *b = userdata;
    size_t n = size * nmemb;
    return am_buf_append(b, ptr, n) == AM_OK ? n : 0;
}

int am_ollama_get_begin(void *easy, const char *base_url, const char *path, long timeout_ms,
                        am_ollama_xfer **out)
{
    am_ollama_xfer *st = calloc(1, sizeof *st);
    if (!st)
        return AM_ENOMEM;
    st->easy = easy;
    st->timeout_ms = timeout_ms;
    am_ndjson_init(&st->lines, MAX_LINE, on_line, st);
    am_buf_init(&st->errbody, 1 << 20);
    snprintf(st->url, sizeof st->url, "%s%s", base_url, path);
    CURL *h = easy;
    curl_easy_setopt(h, CURLOPT_URL, st->url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &st->errbody);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, NULL);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    *out = st;
    return AM_OK;
}

int am_ollama_get_end(am_ollama_xfer *st, int curl_code, long *status, char **body)
{
    CURLcode cc = (CURLcode)curl_code;
    int rc = AM_OK;
    if (cc != CURLE_OK) {
        am_log_warn("GET %s failed: %s", st->url, curl_easy_strerror(cc));
        rc = AM_EIO;
        goto out;
    }
    curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, status);
    *body = am_buf_take(&st->errbody, NULL);
    rc = *body ? AM_OK : AM_ENOMEM;
out:
    xfer_free(st);
    return rc;
}

int am_ollama_get(am_ollama_client *c, const char *base_url, const char *path, long timeout_ms,
                  long *status, char **body)
{
    am_ollama_xfer *x = NULL;
    if (am_ollama_get_begin(c->curl, base_url, path, timeout_ms, &x))
        return AM_ENOMEM;
    return am_ollama_get_end(x, curl_easy_perform(c->curl), status, body);
}
