/* A client for Ollama's chat and generate calls over libcurl, parsing NDJSON as it streams. */
#include "am_ollama.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_json.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_ndjson.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
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
    if (!proxy_in_environment) {
        curl_easy_setopt(h, CURLOPT_PROXY, "");
        curl_easy_setopt(h, CURLOPT_NOPROXY, ""); /* nor for no_proxy */
    }
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

/*
 * One line of Ollama's answer is read with yajl's event parser, without
 * building a tree: the few fields the call needs are picked out as the
 * parser passes them, and generated text goes straight into res->content
 * (taken back out if the line turns out to be bad). A line is about 300
 * bytes; this costs a sixth of parsing it into a jansson tree, on every
 * line of every call. A line is refused when it is not one JSON object, or
 * when a field read here appears twice; other fields are only skipped.
 */
enum line_key {
    K_OTHER,
    K_ERROR,
    K_MODEL,
    K_MESSAGE,
    K_RESPONSE,
    K_DONE,
    K_DONE_REASON,
    K_EVAL_COUNT,
    K_EVAL_DURATION,
    K_PROMPT_EVAL_COUNT,
    K_PROMPT_EVAL_DURATION,
    K_TOTAL_DURATION,
    K_LOAD_DURATION,
    K_CONTENT, /* message.content */
    K_NKEYS
};

/* Top-level keys first, in enum order; "content" only inside "message". */
static const char *const line_keys[K_NKEYS] = {
    [K_ERROR] = "error",
    [K_MODEL] = "model",
    [K_MESSAGE] = "message",
    [K_RESPONSE] = "response",
    [K_DONE] = "done",
    [K_DONE_REASON] = "done_reason",
    [K_EVAL_COUNT] = "eval_count",
    [K_EVAL_DURATION] = "eval_duration",
    [K_PROMPT_EVAL_COUNT] = "prompt_eval_count",
    [K_PROMPT_EVAL_DURATION] = "prompt_eval_duration",
    [K_TOTAL_DURATION] = "total_duration",
    [K_LOAD_DURATION] = "load_duration",
    [K_CONTENT] = "content",
};

enum text_from { TEXT_NONE, TEXT_RESPONSE, TEXT_MESSAGE };

struct line_scan {
    struct am_ollama_result *res;
    size_t before;     /* res->content_len when the line began */
    int depth;         /* containers open; 1: inside the line's object */
    int message_depth; /* depth of the "message" object while inside it, else 0 */
    enum line_key key; /* the key whose value comes next */
    unsigned seen;     /* known keys met, by bit: a second one is refused */
    bool error;        /* the line has an "error" member */
    char error_msg[256];
    bool error_is_text;
    enum text_from text_from;
    bool text_bad;     /* the text that counts is not a string */
    bool response_bad; /* "response" is not a string (counts only without message.content) */
    int append_rc;     /* the text did not fit */
    bool done;
    char model[128], done_reason[32];
    bool has_model, has_done_reason;
    int64_t counts[K_LOAD_DURATION + 1];
    uint32_t counted; /* counts read as non-negative integers, by bit */
    struct am_json_parse json;
};

static void scan_copy(char *dst, size_t cap, const unsigned char *s, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* A value begins at the current depth: which key it belongs to, if one the line needs. */
static enum line_key scan_value_key(struct line_scan *sc)
{
    enum line_key k = sc->key;
    sc->key = K_OTHER;
    if (sc->message_depth ? sc->depth != sc->message_depth : sc->depth != 1)
        return K_OTHER;
    return k;
}

static int scan_text(struct line_scan *sc, enum text_from from, const unsigned char *s, size_t len)
{
    struct am_ollama_result *res = sc->res;
    if (from == TEXT_RESPONSE && sc->text_from == TEXT_MESSAGE)
        return 1; /* message.content wins */
    /* From message.content over a "response" met earlier: that text goes. */
    res->content_len = sc->before;
    if (res->content)
        res->content[res->content_len] = '\0';
    sc->text_from = from;
    if (!sc->append_rc)
        sc->append_rc = append_content(res, (const char *)s, len);
    return 1;
}

/* A value that is not a string, an integer or a boolean (null, a real, a container). */
static void scan_other_value(struct line_scan *sc, enum line_key k)
{
    if (k == K_ERROR)
        sc->error = true;
    else if (k == K_CONTENT)
        sc->text_bad = true, sc->text_from = TEXT_MESSAGE;
    else if (k == K_RESPONSE)
        sc->response_bad = true;
}

static int scan_null(void *ctx)
{
    struct line_scan *sc = ctx;
    if (sc->depth == 0)
        return am_json_refuse(&sc->json, "not an object");
    scan_other_value(sc, scan_value_key(sc));
    return 1;
}

static int scan_boolean(void *ctx, int v)
{
    struct line_scan *sc = ctx;
    if (sc->depth == 0)
        return am_json_refuse(&sc->json, "not an object");
    enum line_key k = scan_value_key(sc);
    if (k == K_DONE)
        sc->done = v;
    else
        scan_other_value(sc, k);
    return 1;
}

static int scan_integer(void *ctx, long long v)
{
    struct line_scan *sc = ctx;
    if (sc->depth == 0)
        return am_json_refuse(&sc->json, "not an object");
    enum line_key k = scan_value_key(sc);
    if (k >= K_EVAL_COUNT && k <= K_LOAD_DURATION && v >= 0) {
        sc->counts[k] = v;
        sc->counted |= 1u << k;
    } else {
        scan_other_value(sc, k);
    }
    return 1;
}

static int scan_double(void *ctx, double v)
{
    return scan_null(ctx);
}

static int scan_string(void *ctx, const unsigned char *s, size_t len)
{
    struct line_scan *sc = ctx;
    if (sc->depth == 0)
        return am_json_refuse(&sc->json, "not an object");
    enum line_key k = scan_value_key(sc);
    /* yajl lets lone surrogate escapes through as bytes that are not UTF-8. */
    if (k != K_OTHER && !am_utf8_valid_len((const char *)s, len))
        return am_json_refuse(&sc->json, "a string that is not UTF-8 text");
    switch (k) {
    case K_ERROR:
        sc->error = sc->error_is_text = true;
        scan_copy(sc->error_msg, sizeof sc->error_msg, s, len);
        return 1;
    case K_MODEL:
        sc->has_model = true;
        scan_copy(sc->model, sizeof sc->model, s, len);
        return 1;
    case K_DONE_REASON:
        sc->has_done_reason = true;
        scan_copy(sc->done_reason, sizeof sc->done_reason, s, len);
        return 1;
    case K_CONTENT:
        return scan_text(sc, TEXT_MESSAGE, s, len);
    case K_RESPONSE:
        return scan_text(sc, TEXT_RESPONSE, s, len);
    default:
        return 1;
    }
}

static int scan_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct line_scan *sc = ctx;
    sc->key = K_OTHER;
    int first, last;
    if (sc->message_depth && sc->depth == sc->message_depth)
        first = last = K_CONTENT;
    else if (!sc->message_depth && sc->depth == 1)
        first = K_ERROR, last = K_LOAD_DURATION;
    else
        return 1;
    int k = am_json_key(&sc->json, line_keys, first, last, &sc->seen, key, len);
    if (k == AM_JSON_KEY_TWICE)
        return 0;
    if (k != AM_JSON_KEY_OTHER)
        sc->key = (enum line_key)k;
    return 1;
}

static int scan_start_map(void *ctx)
{
    struct line_scan *sc = ctx;
    if (sc->depth >= AM_JSON_MAX_DEPTH)
        return am_json_refuse(&sc->json, "maximum parsing depth reached");
    enum line_key k = sc->depth == 0 ? K_OTHER : scan_value_key(sc);
    sc->depth++;
    if (k == K_MESSAGE)
        sc->message_depth = sc->depth;
    else if (sc->depth > 1)
        scan_other_value(sc, k);
    return 1;
}

static int scan_end_map(void *ctx)
{
    struct line_scan *sc = ctx;
    if (sc->depth == sc->message_depth)
        sc->message_depth = 0;
    if (--sc->depth == 0)
        am_json_value_end(&sc->json);
    return 1;
}

static int scan_start_array(void *ctx)
{
    struct line_scan *sc = ctx;
    if (sc->depth >= AM_JSON_MAX_DEPTH)
        return am_json_refuse(&sc->json, "maximum parsing depth reached");
    if (sc->depth == 0)
        return am_json_refuse(&sc->json, "not an object");
    scan_other_value(sc, scan_value_key(sc));
    sc->depth++;
    return 1;
}

static int scan_end_array(void *ctx)
{
    struct line_scan *sc = ctx;
    sc->depth--;
    return 1;
}

static const yajl_callbacks scan_callbacks = {
    .yajl_null = scan_null,
    .yajl_boolean = scan_boolean,
    .yajl_integer = scan_integer,
    .yajl_double = scan_double,
    .yajl_string = scan_string,
    .yajl_start_map = scan_start_map,
    .yajl_map_key = scan_map_key,
    .yajl_end_map = scan_end_map,
    .yajl_start_array = scan_start_array,
    .yajl_end_array = scan_end_array,
};

int am_ollama_parse_line(struct am_ollama_result *res, const char *line, size_t len,
                         const char **delta, size_t *delta_len)
{
    struct line_scan sc = {.res = res, .before = res->content_len};
    *delta = NULL;
    *delta_len = 0;

    const char *bad = am_json_parse(&sc.json, &scan_callbacks, &sc, line, len);
    if (bad || sc.error || sc.text_bad || (sc.text_from == TEXT_NONE && sc.response_bad) ||
        sc.append_rc) {
        /* The line's text, if any went in, comes back out. */
        res->content_len = sc.before;
        if (res->content)
            res->content[res->content_len] = '\0';
    }
    if (bad) {
        set_error(res, "bad_response", "not a JSON object: %s", bad);
        return AM_EPROTO;
    }
    if (sc.error) {
        set_error(res, "backend_error", "%s",
                  sc.error_is_text ? sc.error_msg : "error without a message");
        return AM_EPROTO;
    }
    if (sc.has_model)
        memcpy(res->model, sc.model, sizeof res->model);
    if (sc.text_bad || (sc.text_from == TEXT_NONE && sc.response_bad)) {
        set_error(res, "bad_response", "generated text is not a string");
        return AM_EPROTO;
    }
    if (sc.append_rc) {
        set_error(res, "too_large", "the answer passed %d bytes", MAX_CONTENT);
        return sc.append_rc;
    }
    if (res->content_len > sc.before) {
        *delta = res->content + sc.before;
        *delta_len = res->content_len - sc.before;
    }
    if (sc.done) {
        res->done = true;
        if (sc.has_done_reason)
            memcpy(res->done_reason, sc.done_reason, sizeof res->done_reason);
        int64_t *to[K_LOAD_DURATION + 1] = {
            [K_EVAL_COUNT] = &res->eval_count,
            [K_EVAL_DURATION] = &res->eval_duration_ns,
            [K_PROMPT_EVAL_COUNT] = &res->prompt_eval_count,
            [K_PROMPT_EVAL_DURATION] = &res->prompt_eval_duration_ns,
            [K_TOTAL_DURATION] = &res->total_duration_ns,
            [K_LOAD_DURATION] = &res->load_duration_ns,
        };
        for (int k = K_EVAL_COUNT; k <= K_LOAD_DURATION; k++)
            if (sc.counted & (1u << k))
                *to[k] = sc.counts[k];
        uint32_t both = (1u << K_EVAL_COUNT) | (1u << K_EVAL_DURATION);
        res->has_counts = (sc.counted & both) == both;
    }
    return AM_OK;
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
    } else if (cc == CURLE_ABORTED_BY_CALLBACK && !st->failed) {
        /* Ended by the caller (its client left, or shutdown), not by the backend. */
        set_error(res, "aborted", "the call was ended before its answer");
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
        bool aborted = !strcmp(res->error_type, "aborted");
        AM_LOG_REQ(aborted ? AM_LOG_INFO : AM_LOG_WARN, call->request_id, "ollama %s: %s: %s",
                   call->path, res->error_type, res->error);
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
