/*
 * The gateway's request handling, event-driven. The HTTP handler checks
 * the OpenAI request, defers its response (the connection is suspended)
 * and submits the Ollama call to its event loop (loop.c), which runs it
 * with the loop's other calls on one libcurl multi handle. When a plain call
 * ends, the answer is built and the connection resumed. A streaming call
 * is answered at its first token, or its failure, so that a call that
 * fails before answering still gets a real HTTP status; then each Ollama
 * line is relayed as an OpenAI chunk as it arrives. Either way the call
 * ends with one metric on the bus. A request and its call run on the
 * thread of the loop that took the connection; the loops share the
 * counters (atomic) and the admission counts (under the lock).
 */
#include "proxy.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_ollama.h"
#include "am_prom.h"
#include "openai.h"
#include "loop.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * A stream's bytes waiting for the client: past STREAM_PAUSE the Ollama
 * transfer is paused until the client has read half of it; STREAM_MAX is
 * the hard bound (a client that lets it fill is treated as gone).
 */
#define STREAM_PAUSE (1 << 20)
#define STREAM_MAX   (4 << 20)

/* One event loop, and the server it runs: the handler's argument. */
struct shard {
    gw_proxy *proxy;
    gw_loop *loop;
};

struct gw_proxy {
    struct gw_proxy_config cfg;
    struct shard *shards; /* cfg.loops of them */
    pthread_mutex_t mu;   /* guards what follows, shared by the loops */
    int calls, streams;   /* chat calls running, and how many of them stream */
    bool draining;        /* shutting down: new calls are refused */
    _Atomic uint64_t calls_ok, calls_error, calls_rejected, streams_rejected;
    _Atomic int streams_paused;    /* transfers held back for a slow client */
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

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg)
{
    gw_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return AM_ENOMEM;
    p->cfg = *cfg;
    if (p->cfg.loops < 1)
        p->cfg.loops = 1;
    p->shards = calloc((size_t)p->cfg.loops, sizeof *p->shards);
    if (!p->shards) {
        free(p);
        return AM_ENOMEM;
    }
    for (int i = 0; i < p->cfg.loops; i++) {
        p->shards[i].proxy = p;
        if (gw_loop_new(&p->shards[i].loop)) {
            gw_proxy_free(p);
            return AM_ENOMEM;
        }
    }
    pthread_mutex_init(&p->mu, NULL);
    p->latency.bounds = latency_bounds;
    p->latency.nbounds = sizeof latency_bounds / sizeof latency_bounds[0];
    p->ttft.bounds = ttft_bounds;
    p->ttft.nbounds = sizeof ttft_bounds / sizeof ttft_bounds[0];
    p->tokens.bounds = token_bounds;
    p->tokens.nbounds = sizeof token_bounds / sizeof token_bounds[0];
    *out = p;
    return AM_OK;
}

static void count_response(gw_proxy *p, int status)
{
    int cls = status / 100;
    atomic_fetch_add(&p->responses[cls >= 1 && cls <= 5 ? cls : 0], 1);
}

/* Hands a deferred connection its response, counted; *d is consumed. Accepts *d NULL. */
static void reply_deferred(gw_proxy *p, am_http_deferred **d, struct am_http_response *r)
{
    if (!*d) {
        free(r->body);
        am_http_stream_release(r->stream);
        return;
    }
    count_response(p, r->status);
    am_http_deferred_reply(*d, r);
    *d = NULL;
}

/* A chat call ends. */
static void release(gw_proxy *p, bool stream)
{
    pthread_mutex_lock(&p->mu);
    p->calls--;
    p->streams -= stream;
    pthread_mutex_unlock(&p->mu);
}

/* What one call needs after the handler has returned; owned by the loop's thread then. */
struct call {
    struct gw_job job; /* first: the loop hands it back */
    gw_proxy *proxy;
    struct gw_request req;
    struct am_ollama_call oc;
    am_ollama_xfer *xfer;
    am_http_deferred *deferred; /* until the response is handed over */
    am_http_stream *stream;     /* a streaming call's, from its first token */
    char id[80];                /* chatcmpl-<request id> */
    int64_t created;
    int64_t start_us, start_ns;
    int64_t paused_ns; /* when the transfer was paused for a slow client; 0: running */
    char request_id[129], session_id[129], user_id[129], zone[129], device_id[129];
    struct am_ollama_result res;
    int rc;
    bool ended;       /* the transfer is over: no more pausing */
    bool client_gone; /* a streaming client left (or stopped reading) */
};

static void copy_header(const struct am_http_request *req, const char *name, char *out, size_t cap)
{
    const char *v = am_http_header(req, name);
    out[0] = '\0';
    if (v && am_utf8_valid(v, cap - 1))
        snprintf(out, cap, "%s", v);
}

static void call_free(struct call *c)
{
    am_http_stream_release(c->stream);
    am_ollama_result_free(&c->res);
    gw_request_free(&c->req);
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
    } else if (!strcmp(r->error_type, "client_closed")) {
        /* Nobody reads it; counted as nginx logs it, not as a server fault. */
        status = 499;
        type = "client_closed";
    } else if (!strcmp(r->error_type, "http_404")) {
        status = 404;
        type = "invalid_request_error";
        code = "model_not_found";
    } else if (!strncmp(r->error_type, "http_4", 6)) {
        status = 400;
        type = "invalid_request_error";
    }
    const char *msg = status == 499 ? "the client closed the connection"
                      : r->error[0] ? r->error
                                    : "the model backend failed";
    char *body = gw_error_json(msg, type, NULL, code);
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

/* Relays an event to the streaming client; ev is consumed. Non-zero: the client is gone. */
static int emit(struct call *c, char *ev)
{
    if (!ev)
        return AM_ENOMEM;
    int rc = am_http_stream_write(c->stream, ev, strlen(ev));
    free(ev);
    if (rc == AM_ECLOSED || rc == AM_EFULL) {
        /* Gone, or not reading while STREAM_MAX piled up. */
        c->client_gone = true;
        return rc;
    }
    if (rc == AM_OK && !c->ended && !c->paused_ns && c->job.easy &&
        am_http_stream_pending(c->stream) > STREAM_PAUSE) {
        /* The client reads slower than Ollama writes: stop reading from Ollama for a while. */
        c->paused_ns = am_clock_mono_ns();
        c->job.wants_tick = true;
        atomic_fetch_add(&c->proxy->streams_paused, 1);
        curl_easy_pause(c->job.easy, CURLPAUSE_RECV);
    }
    return rc;
}

/* The transfer runs again (or ends): no longer counted as paused. */
static void unpause(struct call *c)
{
    if (!c->paused_ns)
        return;
    c->paused_ns = 0;
    c->job.wants_tick = false;
    atomic_fetch_sub(&c->proxy->streams_paused, 1);
}

/*
 * While the transfer is paused: resume it when the client has caught up;
 * end it, not resumed, when the client has left. (Resumed, libcurl would
 * hand the gone client what it holds, fail in curl_easy_pause, and leave
 * the transfer waiting for its timeout.)
 */
static int call_tick(struct gw_job *job)
{
    struct call *c = (struct call *)job;
    if (am_http_stream_closed(c->stream))
        c->client_gone = true;
    else if (am_clock_mono_ns() - c->paused_ns > (int64_t)c->proxy->cfg.timeout_ms * 1000000)
        c->client_gone = true; /* a client this slow is treated as gone */
    else if (am_http_stream_pending(c->stream) > STREAM_PAUSE / 2)
        return 0;
    /* libcurl may deliver what it holds right here, so the flags are cleared first. */
    unpause(c);
    if (c->client_gone)
        return CURLE_WRITE_ERROR;
    return (int)curl_easy_pause(c->job.easy, CURLPAUSE_CONT);
}

/* The first token of a streaming call: the client gets 200 and the stream from now on. */
static int open_stream(struct call *c)
{
    struct am_http_response r = {0};
    gw_job_unwatch(&c->job); /* from now on a write finds a client that left */
    if (am_http_reply_stream(&r, 200, "text/event-stream", STREAM_MAX, &c->stream) != AM_OK) {
        reply_bad_request(&r, 503, "out of memory", NULL);
        reply_deferred(c->proxy, &c->deferred, &r);
        c->client_gone = true;
        return AM_ENOMEM;
    }
    reply_deferred(c->proxy, &c->deferred, &r);
    return AM_OK;
}

/* Each piece of generated text of a streaming call, on the loop's thread. */
static int on_delta(void *arg, const char *text, size_t len)
{
    struct call *c = arg;
    if (c->client_gone)
        return AM_ECLOSED;
    bool first = !c->stream;
    if (first && open_stream(c))
        return AM_ENOMEM;
    return emit(c, gw_chunk_event(c->id, c->created, c->req.model, text, len, first, NULL));
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

static void stream_done(struct call *c)
{
    gw_proxy *p = c->proxy;
    if (c->client_gone)
        snprintf(c->res.error_type, sizeof c->res.error_type, "client_closed");
    if (!c->stream) {
        /* Finished without a token: an error, or an empty answer. */
        struct am_http_response r = {0};
        if (c->rc != AM_OK)
            reply_failure(c, &r);
        else
            reply_whole_stream(c, &r);
        publish(c);
        reply_deferred(p, &c->deferred, &r);
        return;
    }
    if (!c->client_gone) {
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
    am_http_stream_release(c->stream);
    c->stream = NULL;
}

static void plain_done(struct call *c)
{
    struct am_http_response r = {0};
    if (c->client_gone)
        snprintf(c->res.error_type, sizeof c->res.error_type, "client_closed");
    publish(c);
    if (c->rc != AM_OK) {
        reply_failure(c, &r);
    } else {
        r.body = gw_completion_json(c->id, c->created,
                                    c->res.model[0] ? c->res.model : c->req.model, &c->res);
        r.status = r.body ? 200 : 500;
        r.content_type = "application/json";
        r.body_len = r.body ? strlen(r.body) : 0;
    }
    reply_deferred(c->proxy, &c->deferred, &r);
}

/* The socket of the client still waiting for the call's answer, or -1. */
static int call_client_fd(struct gw_job *job)
{
    struct call *c = (struct call *)job;
    return c->deferred ? am_http_deferred_fd(c->deferred) : -1;
}

static int call_start(struct gw_job *job, void *easy)
{
    struct call *c = (struct call *)job;
    return am_ollama_xfer_begin(easy, &c->oc, &c->res, &c->xfer);
}

/* The call to Ollama has ended (or never started): answer, measure, let go. */
static void call_done(struct gw_job *job, int curl_code)
{
    struct call *c = (struct call *)job;
    gw_proxy *p = c->proxy;
    bool stream = c->req.stream;

    c->ended = true;
    unpause(c); /* a transfer can end paused: aborted at shutdown */
    if (c->xfer) {
        c->rc = am_ollama_xfer_end(c->xfer, curl_code);
        c->xfer = NULL;
    } else {
        c->rc = AM_EIO;
        snprintf(c->res.error_type, sizeof c->res.error_type, "internal");
        snprintf(c->res.error, sizeof c->res.error, "the call could not be started");
    }
    if (c->job.client_left)
        c->client_gone = true; /* before the answer: nobody waits for it */
    if (stream)
        stream_done(c);
    else
        plain_done(c);
    call_free(c);
    release(p, stream);
}

/* Counts the call in, or says why not (a 503 for the client). */
static const char *admit(gw_proxy *p, bool stream)
{
    const char *why = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->draining) {
        why = "the gateway is shutting down; retry later";
        atomic_fetch_add(&p->calls_rejected, 1);
    } else if (p->calls >= p->cfg.max_calls) {
        why = "too many calls at once; retry later";
        atomic_fetch_add(&p->calls_rejected, 1);
    } else if (stream && p->streams >= p->cfg.max_streams) {
        why = "too many streaming calls at once; retry later";
        atomic_fetch_add(&p->streams_rejected, 1);
    } else {
        p->calls++;
        p->streams += stream;
    }
    pthread_mutex_unlock(&p->mu);
    return why;
}

static void chat_completions(gw_proxy *p, gw_loop *loop, const struct am_http_request *req,
                             struct am_http_response *resp)
{
    char err[512], param[512];
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        reply_bad_request(resp, 503, "out of memory", NULL);
        return;
    }
    c->proxy = p;
    c->start_us = am_clock_now_us();
    c->start_ns = am_clock_mono_ns();
    c->created = c->start_us / 1000000;
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
        call_free(c);
        return;
    }
    /* OpenAI's "user" stands in for an X-User-Id the client did not send. */
    if (!c->user_id[0] && c->req.user[0])
        snprintf(c->user_id, sizeof c->user_id, "%s", c->req.user);
    bool stream = c->req.stream;
    const char *why = admit(p, stream);
    if (why) {
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "refused: %s", why);
        reply_bad_request(resp, 503, why, NULL);
        call_free(c);
        return;
    }
    if (am_http_defer(resp, &c->deferred)) {
        reply_bad_request(resp, 503, "out of memory", NULL);
        call_free(c);
        release(p, stream);
        return;
    }
    c->oc = (struct am_ollama_call){
        .base_url = p->cfg.ollama_url,
        .path = "/api/chat",
        .body = c->req.ollama_body,
        .timeout_ms = p->cfg.timeout_ms,
        .connect_timeout_ms = p->cfg.connect_timeout_ms,
        .on_delta = stream ? on_delta : NULL,
        .arg = c,
        .request_id = c->request_id,
    };
    c->job.start = call_start;
    c->job.done = call_done;
    c->job.tick = call_tick;
    c->job.client_fd = call_client_fd;
    /* From here the call belongs to the loop. */
    gw_loop_submit(loop, &c->job);
}

/* A GET to Ollama (/ready, /v1/models), run by the loop like a call. */
struct fetch {
    struct gw_job job; /* first: the loop hands it back */
    gw_proxy *proxy;
    const char *path;
    long timeout_ms;
    am_ollama_xfer *xfer;
    am_http_deferred *deferred;
    /* Builds the response from Ollama's answer (rc 0 and its status and body, or a failure). */
    void (*answer)(gw_proxy *p, int rc, long status, const char *body, struct am_http_response *r);
};

static int fetch_start(struct gw_job *job, void *easy)
{
    struct fetch *f = (struct fetch *)job;
    return am_ollama_get_begin(easy, f->proxy->cfg.ollama_url, f->path, f->timeout_ms, &f->xfer);
}

static void fetch_done(struct gw_job *job, int curl_code)
{
    struct fetch *f = (struct fetch *)job;
    gw_proxy *p = f->proxy;
    struct am_http_response r = {0};
    long status = 0;
    char *body = NULL;
    int rc = f->xfer ? am_ollama_get_end(f->xfer, curl_code, &status, &body) : AM_EIO;
    f->answer(p, rc, status, body, &r);
    free(body);
    reply_deferred(p, &f->deferred, &r);
    free(f);
}

static void fetch(gw_proxy *p, gw_loop *loop, const char *path, long timeout_ms,
                  void (*answer)(gw_proxy *, int, long, const char *, struct am_http_response *),
                  struct am_http_response *resp)
{
    struct fetch *f = calloc(1, sizeof *f);
    if (!f || am_http_defer(resp, &f->deferred)) {
        free(f);
        am_http_error(resp, 503, "out of memory");
        return;
    }
    f->proxy = p;
    f->path = path;
    f->timeout_ms = timeout_ms;
    f->answer = answer;
    f->job.start = fetch_start;
    f->job.done = fetch_done;
    gw_loop_submit(loop, &f->job);
}

static void models_answer(gw_proxy *p, int rc, long status, const char *body,
                          struct am_http_response *resp)
{
    json_error_t jerr;
    if (rc || status != 200) {
        char *e = gw_error_json("the model backend is unreachable", "upstream_error", NULL,
                                "backend_unavailable");
        free(resp->body);
        resp->status = 502;
        resp->content_type = "application/json";
        resp->body = e;
        resp->body_len = e ? strlen(e) : 0;
        return;
    }
    json_t *tags = json_loads(body, 0, &jerr);
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

static void ready_answer(gw_proxy *p, int rc, long status, const char *body,
                         struct am_http_response *resp)
{
    (void)p;
    (void)body;
    if (rc == AM_OK && status == 200)
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ready\"}");
    else
        am_http_error(resp, 503, "ollama unreachable");
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
    am_prom_counter(&b, "athena_gateway_calls_rejected_total",
                    "Calls refused for being over GATEWAY_MAX_CALLS, or during shutdown.",
                    atomic_load(&p->calls_rejected));
    pthread_mutex_lock(&p->mu);
    int calls = p->calls, streams = p->streams;
    pthread_mutex_unlock(&p->mu);
    am_prom_gauge(&b, "athena_gateway_calls", "Calls to Ollama running now.", calls);
    am_prom_gauge(&b, "athena_gateway_streams", "Streaming calls running now.", streams);
    am_prom_gauge(
        &b, "athena_gateway_streams_paused",
        "Streaming calls whose Ollama transfer is held back for a client that reads slowly.",
        atomic_load(&p->streams_paused));
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

static void route(gw_proxy *p, gw_loop *loop, const struct am_http_request *req,
                  struct am_http_response *resp);

void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    struct shard *sh = arg;
    gw_proxy *p = sh->proxy;
    route(p, sh->loop, req, resp);
    if (!resp->deferred) /* a deferred response is counted when it is handed over */
        count_response(p, resp->status);
}

static void route(gw_proxy *p, gw_loop *loop, const struct am_http_request *req,
                  struct am_http_response *resp)
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
        chat_completions(p, loop, req, resp);
    } else if (!strcmp(path, "/v1/models") || !strcmp(path, "/models")) {
        if (!get)
            reply_bad_request(resp, 405, "use GET", NULL);
        else
            fetch(p, loop, "/api/tags", 5000, models_answer, resp);
    } else if (!strcmp(path, "/health") && get) {
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ok\"}");
    } else if (!strcmp(path, "/ready") && get) {
        fetch(p, loop, "/api/version", 2000, ready_answer, resp);
    } else if (!strcmp(path, "/metrics") && get) {
        write_metrics(p, resp);
    } else {
        am_http_error(resp, 404, "not found");
    }
}

void *gw_proxy_handler_arg(gw_proxy *p, int i)
{
    return &p->shards[i];
}

int gw_proxy_start(gw_proxy *p, am_http_server *const *http)
{
    for (int i = 0; i < p->cfg.loops; i++)
        if (gw_loop_start(p->shards[i].loop, http[i]))
            return AM_ENOMEM;
    return AM_OK;
}

/* Stops the loops together: each has the same deadline for its calls. */
static void stop_loops(gw_proxy *p, int timeout_ms)
{
    for (int i = 0; i < p->cfg.loops; i++)
        if (p->shards[i].loop)
            gw_loop_stop_begin(p->shards[i].loop, timeout_ms);
    for (int i = 0; i < p->cfg.loops; i++)
        if (p->shards[i].loop)
            gw_loop_stop(p->shards[i].loop, timeout_ms);
}

void gw_proxy_stop(gw_proxy *p, int timeout_ms)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->draining = true;
    int calls = p->calls;
    pthread_mutex_unlock(&p->mu);
    if (calls > 0)
        am_log_info("waiting for %d calls to Ollama", calls);
    stop_loops(p, timeout_ms);
}

void gw_proxy_free(gw_proxy *p)
{
    if (!p)
        return;
    stop_loops(p, 0);
    for (int i = 0; i < p->cfg.loops; i++)
        gw_loop_free(p->shards[i].loop);
    free(p->shards);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
