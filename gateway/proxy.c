/*
 * The gateway's request handling. A plain call runs on the HTTP worker
 * thread. A streaming call runs on a thread of its own: the handler waits
 * for the first token (or the failure) so that a call that fails before
 * answering still gets a real HTTP status, then hands the response stream
 * to that thread, which relays each Ollama line as an OpenAI chunk as it
 * arrives. Either way the call ends with one metric on the bus.
 */
#include "proxy.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_idle_pool.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_ollama.h"
#include "am_prom.h"
#include "openai.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_CLIENTS    64
#define STREAM_PENDING (1 << 20)

struct gw_proxy {
    struct gw_proxy_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t idle;   /* signalled when a stream ends */
    am_idle_pool *clients; /* idle keep-alive connections */
    int streams;           /* streaming calls running */
    _Atomic uint64_t calls_ok, calls_error, streams_rejected;
    _Atomic uint64_t responses[6]; /* by status class: 1xx..5xx, [0] other */
    struct am_prom_histogram latency, ttft, tokens;
};

/* The OpenTelemetry GenAI semantic conventions' bucket boundaries. */
static const double latency_bounds[] = {0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
                                        1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                     0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};
static const double token_bounds[] = {1,     4,     16,     64,      256,     1024,     4096,
                                      16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};

static int client_make(void **out)
{
    am_ollama_client *c = NULL;
    int rc = am_ollama_client_new(&c);
    *out = c;
    return rc;
}

static void client_drop(void *c)
{
    am_ollama_client_free(c);
}

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg)
{
    gw_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return AM_ENOMEM;
    if (am_idle_pool_new(&p->clients, MAX_CLIENTS, client_make, client_drop)) {
        free(p);
        return AM_ENOMEM;
    }
    p->cfg = *cfg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->latency.bounds = latency_bounds;
    p->latency.nbounds = sizeof latency_bounds / sizeof latency_bounds[0];
    p->ttft.bounds = ttft_bounds;
    p->ttft.nbounds = sizeof ttft_bounds / sizeof ttft_bounds[0];
    p->tokens.bounds = token_bounds;
    p->tokens.nbounds = sizeof token_bounds / sizeof token_bounds[0];
    *out = p;
    return AM_OK;
}

static am_ollama_client *client_get(gw_proxy *p)
{
    return am_idle_pool_get(p->clients);
}

static void client_put(gw_proxy *p, am_ollama_client *c)
{
    am_idle_pool_put(p->clients, c);
}

/* What one call needs after the handler has returned. */
struct call {
    gw_proxy *proxy;
    struct gw_request req;
    char id[80]; /* chatcmpl-<request id> */
    int64_t created;
    int64_t start_us, start_ns;
    char request_id[129], session_id[129], user_id[129], zone[129], device_id[129];
    struct am_ollama_result res;
    int rc;

    /* The hand-over between the handler and the stream thread. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool first; /* the first token has arrived */
    bool finished;
    bool client_gone;
    am_http_stream *stream; /* attached by the handler */
    struct am_buf early;    /* events produced before the stream was attached */
};

static void copy_header(const struct am_http_request *req, const char *name, char *out, size_t cap)
{
    const char *v = am_http_header(req, name);
    out[0] = '\0';
    if (v && am_utf8_valid(v, cap - 1))
        snprintf(out, cap, "%s", v);
}

static void call_unref(struct call *c)
{
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left > 0)
        return;
    am_http_stream_release(c->stream);
    am_buf_free(&c->early);
    am_ollama_result_free(&c->res);
    gw_request_free(&c->req);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void publish(struct call *c)
{
    gw_proxy *p = c->proxy;
    const struct am_ollama_result *r = &c->res;
    struct am_metric m = {0};
    double latency = (double)(am_clock_mono_ns() - c->start_ns) / 1e9;

    m.timestamp_us = c->start_us;
    m.model = r->model[0] ? r->model : c->req.model;
    m.backend = "ollama";
    m.latency_seconds = latency;
    m.tokens = (int32_t)r->eval_count;
    m.tokens_per_second =
        r->eval_duration_ns > 0 ? (double)r->eval_count / ((double)r->eval_duration_ns / 1e9) : 0;
    m.has_prompt_tokens = r->has_counts;
    m.prompt_tokens = (int32_t)r->prompt_eval_count;
    m.has_ttft = c->req.stream && r->has_ttft;
    m.ttft_seconds = r->ttft_seconds;
    m.error = r->error_type[0] != '\0';
    m.error_type = m.error ? r->error_type : NULL;
    m.request_id = c->request_id[0] ? c->request_id : NULL;
    m.session_id = c->session_id[0] ? c->session_id : NULL;
    m.user_id = c->user_id[0] ? c->user_id : NULL;
    m.zone = c->zone[0] ? c->zone : NULL;
    m.device_id = c->device_id[0] ? c->device_id : NULL;
    m.source = "gateway";
    am_publisher_send(p->cfg.pub, &m);
    am_prom_observe(&p->latency, latency);
    if (m.has_ttft)
        am_prom_observe(&p->ttft, m.ttft_seconds);
    if (!m.error)
        am_prom_observe(&p->tokens, (double)m.tokens);
    atomic_fetch_add(m.error ? &p->calls_error : &p->calls_ok, 1);
}

/* HTTP status and OpenAI error for a call that failed before answering. */
static void reply_failure(struct call *c, struct am_http_response *resp)
{
    const struct am_ollama_result *r = &c->res;
    int status = 502;
    const char *type = "upstream_error";
    const char *code = r->error_type;
    if (!strcmp(r->error_type, "timeout")) {
        status = 504;
    } else if (!strcmp(r->error_type, "http_404")) {
        status = 404;
        type = "invalid_request_error";
        code = "model_not_found";
    } else if (!strncmp(r->error_type, "http_4", 6)) {
        status = 400;
        type = "invalid_request_error";
    }
    char *body =
        gw_error_json(r->error[0] ? r->error : "the model backend failed", type, NULL, code);
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

static void reply_bad_request(struct am_http_response *resp, int status, const char *msg,
                              const char *param)
{
    char *body = gw_error_json(msg, "invalid_request_error", param, NULL);
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

/* Writes an event to the attached stream, waiting while the client is behind. */
static int stream_write(struct call *c, const char *ev)
{
    size_t len = strlen(ev);
    int64_t give_up = am_clock_mono_ns() + (int64_t)c->proxy->cfg.timeout_ms * 1000000;
    for (;;) {
        int rc = am_http_stream_write(c->stream, ev, len);
        if (rc != AM_EFULL)
            return rc;
        if (am_clock_mono_ns() > give_up)
            return AM_ETIMEDOUT;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

/* Sends ev to the client, or keeps it for the handler to send; ev is consumed. */
static int emit(struct call *c, char *ev)
{
    int rc = AM_OK;
    if (!ev)
        return AM_ENOMEM;
    pthread_mutex_lock(&c->mu);
    am_http_stream *s = c->stream;
    if (!s && am_buf_append(&c->early, ev, strlen(ev)))
        rc = AM_ENOMEM;
    pthread_mutex_unlock(&c->mu);
    if (s)
        rc = stream_write(c, ev);
    free(ev);
    if (rc == AM_ECLOSED || rc == AM_ETIMEDOUT) {
        c->client_gone = true;
        return rc;
    }
    return AM_OK;
}

static int on_delta(void *arg, const char *text, size_t len)
{
    struct call *c = arg;
    bool first = !c->first;
    char *ev = gw_chunk_event(c->id, c->created, c->req.model, text, len, first, NULL);
    int rc = emit(c, ev);
    if (first) {
        pthread_mutex_lock(&c->mu);
        c->first = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

static void *stream_main(void *arg)
{
    struct call *c = arg;
    gw_proxy *p = c->proxy;
    am_ollama_client *client = client_get(p);
    struct am_ollama_call oc = {
        .base_url = p->cfg.ollama_url,
        .path = "/api/chat",
        .body = c->req.ollama_body,
        .timeout_ms = p->cfg.timeout_ms,
        .connect_timeout_ms = p->cfg.connect_timeout_ms,
        .on_delta = on_delta,
        .arg = c,
        .request_id = c->request_id,
    };
    if (client) {
        c->rc = am_ollama_run(client, &oc, &c->res);
        client_put(p, client);
    } else {
        c->rc = AM_ENOMEM;
        snprintf(c->res.error_type, sizeof c->res.error_type, "internal");
    }
    if (c->client_gone)
        snprintf(c->res.error_type, sizeof c->res.error_type, "client_closed");

    if (c->first && !c->client_gone) {
        if (c->rc == AM_OK) {
            emit(c, gw_chunk_event(c->id, c->created, c->req.model, NULL, 0, false,
                                   gw_finish_reason(c->res.done_reason)));
            if (c->req.include_usage)
                emit(c, gw_usage_event(c->id, c->created, c->req.model, &c->res));
            emit(c, strdup("data: [DONE]\n\n"));
        } else {
            /* Too late for an HTTP status: the error goes in the stream. */
            char *err = gw_error_json(c->res.error, "upstream_error", NULL, c->res.error_type);
            if (err) {
                size_t n = strlen(err) + 9;
                char *ev = malloc(n);
                if (ev)
                    snprintf(ev, n, "data: %s\n\n", err);
                emit(c, ev);
                free(err);
            }
        }
    }
    publish(c);

    pthread_mutex_lock(&c->mu);
    c->finished = true;
    if (c->stream)
        am_http_stream_end(c->stream);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);

    pthread_mutex_lock(&p->mu);
    p->streams--;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->mu);
    call_unref(c);
    return NULL;
}

/* A streaming call whose answer had no text at all: send its events in one body. */
static void reply_whole_stream(struct call *c, struct am_http_response *resp)
{
    struct am_buf b;
    am_buf_init(&b, 1 << 20);
    char *evs[3] = {
        gw_chunk_event(c->id, c->created, c->req.model, "", 0, true,
                       gw_finish_reason(c->res.done_reason)),
        c->req.include_usage ? gw_usage_event(c->id, c->created, c->req.model, &c->res) : NULL,
        strdup("data: [DONE]\n\n"),
    };
    for (int i = 0; i < 3; i++) {
        if (evs[i])
            am_buf_append(&b, evs[i], strlen(evs[i]));
        free(evs[i]);
    }
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->body = am_buf_take(&b, &resp->body_len);
}

static void handle_stream(gw_proxy *p, struct call *c, struct am_http_response *resp)
{
    pthread_mutex_lock(&p->mu);
    if (p->streams >= p->cfg.max_streams) {
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add(&p->streams_rejected, 1);
        reply_bad_request(resp, 503, "too many streaming calls at once; retry later", NULL);
        call_unref(c);
        return;
    }
    p->streams++;
    pthread_mutex_unlock(&p->mu);

    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    c->refs = 2;
    if (pthread_create(&t, &attr, stream_main, c) != 0) {
        pthread_attr_destroy(&attr);
        pthread_mutex_lock(&p->mu);
        p->streams--;
        pthread_mutex_unlock(&p->mu);
        c->refs = 1;
        reply_bad_request(resp, 503, "cannot start the call", NULL);
        call_unref(c);
        return;
    }
    pthread_attr_destroy(&attr);

    pthread_mutex_lock(&c->mu);
    while (!c->first && !c->finished)
        pthread_cond_wait(&c->cv, &c->mu);
    if (!c->first) {
        /* Finished without a token: an error, or an empty answer. */
        pthread_mutex_unlock(&c->mu);
        if (c->rc != AM_OK)
            reply_failure(c, resp);
        else
            reply_whole_stream(c, resp);
        call_unref(c);
        return;
    }
    am_http_stream *s = NULL;
    /* Room for what came before the hand-over, and as much again. */
    size_t room = STREAM_PENDING + c->early.len;
    if (am_http_reply_stream(resp, 200, "text/event-stream", room, &s) != AM_OK) {
        pthread_mutex_unlock(&c->mu);
        c->client_gone = true;
        reply_bad_request(resp, 503, "out of memory", NULL);
        call_unref(c);
        return;
    }
    if (c->early.len)
        am_http_stream_write(s, c->early.data, c->early.len);
    am_buf_free(&c->early);
    c->stream = s;
    if (c->finished)
        am_http_stream_end(s);
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

static void handle_plain(gw_proxy *p, struct call *c, struct am_http_response *resp)
{
    am_ollama_client *client = client_get(p);
    struct am_ollama_call oc = {
        .base_url = p->cfg.ollama_url,
        .path = "/api/chat",
        .body = c->req.ollama_body,
        .timeout_ms = p->cfg.timeout_ms,
        .connect_timeout_ms = p->cfg.connect_timeout_ms,
        .request_id = c->request_id,
    };
    if (!client) {
        reply_bad_request(resp, 503, "out of memory", NULL);
        call_unref(c);
        return;
    }
    c->rc = am_ollama_run(client, &oc, &c->res);
    client_put(p, client);
    publish(c);
    if (c->rc != AM_OK) {
        reply_failure(c, resp);
    } else {
        char *body = gw_completion_json(c->id, c->created,
                                        c->res.model[0] ? c->res.model : c->req.model, &c->res);
        free(resp->body);
        resp->status = body ? 200 : 500;
        resp->content_type = "application/json";
        resp->body = body;
        resp->body_len = body ? strlen(body) : 0;
    }
    call_unref(c);
}

static void chat_completions(gw_proxy *p, const struct am_http_request *req,
                             struct am_http_response *resp)
{
    char err[512], param[512];
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        reply_bad_request(resp, 503, "out of memory", NULL);
        return;
    }
    c->proxy = p;
    c->refs = 1;
    c->start_us = am_clock_now_us();
    c->start_ns = am_clock_mono_ns();
    c->created = c->start_us / 1000000;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    am_buf_init(&c->early, 64 << 20);
    snprintf(c->request_id, sizeof c->request_id, "%s", req->request_id);
    snprintf(c->id, sizeof c->id, "chatcmpl-%.60s", req->request_id);
    copy_header(req, "X-Session-Id", c->session_id, sizeof c->session_id);
    copy_header(req, "X-User-Id", c->user_id, sizeof c->user_id);
    copy_header(req, "X-Zone", c->zone, sizeof c->zone);
    copy_header(req, "X-Device-Id", c->device_id, sizeof c->device_id);

    if (gw_parse_request(req->body, req->body_len, p->cfg.models, &c->req, err, param,
                         sizeof err)) {
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "bad request: %s", err);
        reply_bad_request(resp, 400, err, param);
        call_unref(c);
        return;
    }
    if (c->req.stream)
        handle_stream(p, c, resp);
    else
        handle_plain(p, c, resp);
}

static void list_models(gw_proxy *p, struct am_http_response *resp)
{
    am_ollama_client *client = client_get(p);
    char *body = NULL;
    long status = 0;
    json_error_t jerr;

    if (!client || am_ollama_get(client, p->cfg.ollama_url, "/api/tags", 5000, &status, &body) ||
        status != 200) {
        if (client)
            client_put(p, client);
        free(body);
        char *e = gw_error_json("the model backend is unreachable", "upstream_error", NULL,
                                "backend_unavailable");
        free(resp->body);
        resp->status = 502;
        resp->content_type = "application/json";
        resp->body = e;
        resp->body_len = e ? strlen(e) : 0;
        return;
    }
    client_put(p, client);
    json_t *tags = json_loads(body, 0, &jerr);
    free(body);
    json_t *data = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(tags, "models"), i, m)
    {
        json_t *name = json_object_get(m, "name");
        if (json_is_string(name))
            json_array_append_new(data, json_pack("{s:O,s:s,s:i,s:s}", "id", name, "object",
                                                  "model", "created", 0, "owned_by", "ollama"));
    }
    for (size_t k = 0; k < gw_models_count(p->cfg.models); k++) {
        const char *alias, *target;
        gw_models_entry(p->cfg.models, k, &alias, &target);
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s,s:s}", "id", alias, "object",
                                              "model", "created", 0, "owned_by", "athena-gateway",
                                              "root", target));
    }
    json_decref(tags);
    json_t *list = json_pack("{s:s,s:o}", "object", "list", "data", data);
    char *out = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    free(resp->body);
    resp->status = out ? 200 : 500;
    resp->content_type = "application/json";
    resp->body = out;
    resp->body_len = out ? strlen(out) : 0;
}

static void write_metrics(gw_proxy *p, struct am_http_response *resp)
{
    struct am_buf b;
    am_buf_init(&b, 1 << 20);
    am_prom_counter(&b, "athena_gateway_calls_ok_total", "Calls to Ollama that answered.",
                    atomic_load(&p->calls_ok));
    am_prom_counter(&b, "athena_gateway_calls_error_total", "Calls to Ollama that failed.",
                    atomic_load(&p->calls_error));
    am_prom_counter(&b, "athena_gateway_streams_rejected_total",
                    "Streaming calls refused for being over the limit.",
                    atomic_load(&p->streams_rejected));
    pthread_mutex_lock(&p->mu);
    int streams = p->streams;
    pthread_mutex_unlock(&p->mu);
    am_prom_gauge(&b, "athena_gateway_streams", "Streaming calls running now.", streams);
    am_prom_family(&b, "athena_gateway_responses_total", "counter",
                   "HTTP responses by status class.");
    static const char *const classes[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6; i++) {
        char lbl[32];
        snprintf(lbl, sizeof lbl, "code=\"%s\"", classes[i]);
        am_prom_sample(&b, "athena_gateway_responses_total", lbl,
                       (double)atomic_load(&p->responses[i]));
    }
    am_prom_histogram_write(&b, "athena_gateway_operation_duration_seconds",
                            "Time of a whole LLM call (gen_ai.client.operation.duration).",
                            &p->latency);
    am_prom_histogram_write(&b, "athena_gateway_time_to_first_token_seconds",
                            "Time to the first token of a streamed call "
                            "(gen_ai.server.time_to_first_token).",
                            &p->ttft);
    am_prom_histogram_write(&b, "athena_gateway_output_tokens",
                            "Tokens generated per call (gen_ai.client.token.usage, output).",
                            &p->tokens);
    am_publisher_write_prom(p->cfg.pub, &b, "athena_gateway");
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = am_buf_take(&b, &resp->body_len);
}

static void ready(gw_proxy *p, struct am_http_response *resp)
{
    am_ollama_client *client = client_get(p);
    char *body = NULL;
    long status = 0;
    int rc = client ? am_ollama_get(client, p->cfg.ollama_url, "/api/version", 2000, &status, &body)
                    : AM_ENOMEM;
    if (client)
        client_put(p, client);
    free(body);
    if (rc == AM_OK && status == 200)
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ready\"}");
    else
        am_http_error(resp, 503, "ollama unreachable");
}

static void route(gw_proxy *p, const struct am_http_request *req, struct am_http_response *resp);

void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    gw_proxy *p = arg;
    route(p, req, resp);
    int cls = resp->status / 100;
    atomic_fetch_add(&p->responses[cls >= 1 && cls <= 5 ? cls : 0], 1);
}

static void route(gw_proxy *p, const struct am_http_request *req, struct am_http_response *resp)
{
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    bool post = !strcmp(req->method, "POST");
    const char *path = req->path;

    if (!strcmp(path, "/v1/chat/completions") || !strcmp(path, "/chat/completions")) {
        if (!post) {
            reply_bad_request(resp, 405, "use POST", NULL);
            return;
        }
        const char *ct = am_http_header(req, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            reply_bad_request(resp, 415, "Content-Type must be application/json", NULL);
            return;
        }
        chat_completions(p, req, resp);
    } else if (!strcmp(path, "/v1/models") || !strcmp(path, "/models")) {
        if (!get)
            reply_bad_request(resp, 405, "use GET", NULL);
        else
            list_models(p, resp);
    } else if (!strcmp(path, "/health") && get) {
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ok\"}");
    } else if (!strcmp(path, "/ready") && get) {
        ready(p, resp);
    } else if (!strcmp(path, "/metrics") && get) {
        write_metrics(p, resp);
    } else {
        am_http_error(resp, 404, "not found");
    }
}

void gw_proxy_free(gw_proxy *p, int timeout_ms)
{
    if (!p)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&p->mu);
    while (p->streams > 0) {
        if (pthread_cond_timedwait(&p->idle, &p->mu, &ts) == ETIMEDOUT)
            break;
    }
    int left = p->streams;
    pthread_mutex_unlock(&p->mu);
    if (left > 0) {
        /* Their threads still use p: leave it to the process exit. */
        am_log_warn("%d streaming calls still running at shutdown", left);
        return;
    }
    am_idle_pool_free(p->clients);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
