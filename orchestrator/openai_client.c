/*
 * A client for OpenAI-compatible chat completions over libcurl. The answer
 * is collected into a buffer the client keeps between calls, so a call
 * allocates only the text it hands back.
 */
#include "openai_client.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_ollama.h"
#include "am_log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWER (4 << 20)  /* one completion, as the Ollama client bounds it */
#define KEEP_BUF   (64 << 10) /* a bigger answer's buffer is not kept for the next call */

struct orch_openai_client {
    CURL *curl;
    struct am_buf answer;
};

int orch_openai_client_new(orch_openai_client **out)
{
    orch_openai_client *c = calloc(1, sizeof *c);
    if (!c)
        return AM_ENOMEM;
    c->curl = am_curl_easy_new();
    if (!c->curl) {
        free(c);
        return AM_ENOMEM;
    }
    am_buf_init(&c->answer, MAX_ANSWER);
    *out = c;
    return AM_OK;
}

void orch_openai_client_free(orch_openai_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    am_buf_free(&c->answer);
    free(c);
}

void orch_openai_result_free(struct orch_openai_result *res)
{
    if (!res)
        return;
    free(res->content);
    res->content = NULL;
    res->content_len = 0;
}

static void set_error(struct orch_openai_result *res, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct orch_openai_result *res, const char *type, const char *fmt, ...)
{
    va_list ap;
    if (res->error_type[0])
        return;
    snprintf(res->error_type, sizeof res->error_type, "%s", type);
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

static bool get_count(json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

int orch_openai_parse(const char *body, size_t len, struct orch_openai_result *res)
{
    json_error_t jerr;
    int rc = AM_EPROTO;
    json_t *o = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(o)) {
        set_error(res, "bad_response", "not a JSON object: %s", o ? "wrong type" : jerr.text);
        goto out;
    }
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    json_t *message = json_object_get(choice, "message");
    json_t *content = json_object_get(message, "content");
    if (!json_is_object(message) || !(json_is_string(content) || json_is_null(content))) {
        set_error(res, "bad_response", "no choices[0].message.content");
        goto out;
    }
    const char *text = json_is_string(content) ? json_string_value(content) : "";
    size_t n = json_is_string(content) ? json_string_length(content) : 0;
    res->content = malloc(n + 1);
    if (!res->content) {
        rc = AM_ENOMEM;
        goto out;
    }
    memcpy(res->content, text, n);
    res->content[n] = '\0';
    res->content_len = n;
    json_t *v = json_object_get(o, "model");
    if (json_is_string(v))
        snprintf(res->model, sizeof res->model, "%s", json_string_value(v));
    v = json_object_get(choice, "finish_reason");
    if (json_is_string(v))
        snprintf(res->finish_reason, sizeof res->finish_reason, "%s", json_string_value(v));
    json_t *usage = json_object_get(o, "usage");
    res->has_usage = get_count(usage, "completion_tokens", &res->completion_tokens);
    get_count(usage, "prompt_tokens", &res->prompt_tokens);
    rc = AM_OK;
out:
    json_decref(o);
    return rc;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t n = size * nmemb;
    return am_buf_append(userdata, ptr, n) == AM_OK ? n : 0;
}

/* The message of an OpenAI error body {"error": {"message": ...}} or {"error": "..."}. */
static void error_from_body(struct orch_openai_result *res, const struct am_buf *b)
{
    json_error_t jerr;
    char type[32];
    json_t *o = json_loadb(b->data ? b->data : "", b->len, 0, &jerr);
    json_t *e = json_object_get(o, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg)
        msg = json_string_value(e);
    snprintf(type, sizeof type, "http_%ld", res->http_status);
    set_error(res, type, "%s", msg ? msg : "the backend answered with an error");
    json_decref(o);
}

int orch_openai_run(orch_openai_client *c, const struct orch_openai_call *call,
                    struct orch_openai_result *res)
{
    struct curl_slist *headers = NULL;
    char url[4096], rid[160];
    size_t blen = strlen(call->base_url);

    memset(res, 0, sizeof *res);
    while (blen > 0 && call->base_url[blen - 1] == '/')
        blen--;
    bool has_v1 = blen >= 3 && !strncmp(call->base_url + blen - 3, "/v1", 3);
    snprintf(url, sizeof url, "%.*s%s/chat/completions", (int)blen, call->base_url,
             has_v1 ? "" : "/v1");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    /* No wait for a 100 Continue before a body over 1 KiB. */
    headers = curl_slist_append(headers, "Expect:");
    if (call->request_id) {
        snprintf(rid, sizeof rid, "X-Request-Id: %.128s", call->request_id);
        headers = curl_slist_append(headers, rid);
    }
    c->answer.len = 0;

    CURL *h = c->curl; /* its fixed options were set once (am_curl_easy_new) */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->answer);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, call->timeout_ms > 0 ? call->timeout_ms : 120000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     call->connect_timeout_ms > 0 ? call->connect_timeout_ms : 5000L);

    int64_t t0 = am_clock_mono_ns();
    CURLcode cc = curl_easy_perform(h);
    res->latency_seconds = (double)(am_clock_mono_ns() - t0) / 1e9;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->http_status);

    if (cc == CURLE_OPERATION_TIMEDOUT) {
        set_error(res, "timeout", "no complete answer within %ld ms", call->timeout_ms);
    } else if (cc == CURLE_WRITE_ERROR) {
        set_error(res, "too_large", "the answer passed %d bytes", MAX_ANSWER);
    } else if (cc != CURLE_OK) {
        res->not_sent = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST;
        set_error(res, "backend_unavailable", "%s", curl_easy_strerror(cc));
    } else if (res->http_status != 200) {
        error_from_body(res, &c->answer);
    } else if (orch_openai_parse(c->answer.data ? c->answer.data : "", c->answer.len, res) ==
               AM_ENOMEM) {
        set_error(res, "internal", "out of memory");
    }
    curl_slist_free_all(headers);
    if (c->answer.cap > KEEP_BUF)
        am_buf_free(&c->answer);
    if (res->error_type[0]) {
        AM_LOG_REQ(AM_LOG_WARN, call->request_id, "openai %s: %s: %s", url, res->error_type,
                   res->error);
        return AM_EIO;
    }
    return AM_OK;
}
