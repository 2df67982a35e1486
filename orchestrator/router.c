/*
 * The LLM router. A call looks its model up in the registry (cached), then
 * asks Ollama (/api/chat), an OpenAI-compatible MLX server, or MLX then
 * Ollama (auto). A request is repeated only when its connection could not
 * be made, so a backend never sees a request twice. Keep-alive connection
 * handles are pooled per backend kind: a call borrows one, and gives it
 * back with its connections open for the next call. Every call ends with one
 * metric on the bus.
 */
#include "router.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_idle_pool.h"
#include "am_ollama.h"
#include "am_prom.h"
#include "bodies.h"
#include "openai_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { B_OLLAMA, B_MLX, NBACKENDS };
enum { S_CLASSIFY, S_SYNTHESIZE, S_VALIDATE, S_OTHER, NSTAGES };

static const char *const stage_names[NSTAGES] = {"classify", "synthesize", "validate", "other"};

struct orch_router {
    struct orch_router_config cfg;
    char *ollama_url, *mlx_url;

    am_idle_pool *pools[NBACKENDS]; /* idle keep-alive clients of each backend kind */

    _Atomic uint64_t calls[NBACKENDS][NSTAGES][2]; /* [.][.][error] */
    _Atomic uint64_t attempts[NBACKENDS][2];
    _Atomic uint64_t fallbacks, retries;
    struct am_prom_histogram latency, tokens;
};

/* The OpenTelemetry GenAI semantic conventions' bucket boundaries, as the gateway uses. */
static const double latency_bounds[] = {0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
                                        1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const double token_bounds[] = {1,     4,     16,     64,      256,     1024,     4096,
                                      16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};

static char *strip_url(const char *url)
{
    if (!url || !*url)
        return NULL;
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    return strndup(url, n);
}

/* The pools' constructors and destructors, typed for am_idle_pool. */
static int ollama_make(void **out)
{
    am_ollama_client *c = NULL;
    int rc = am_ollama_client_new(&c);
    *out = c;
    return rc;
}

static void ollama_drop(void *c)
{
    am_ollama_client_free(c);
}

static int openai_make(void **out)
{
    orch_openai_client *c = NULL;
    int rc = orch_openai_client_new(&c);
    *out = c;
    return rc;
}

static void openai_drop(void *c)
{
    orch_openai_client_free(c);
}

/* One request to a backend, as the shared call path hands it to that backend's client. */
struct request {
    const char *url, *body, *request_id;
    long timeout_ms, connect_timeout_ms;
};

static void set_error(struct orch_result *res, const char *type, const char *msg)
{
    snprintf(res->error_type, sizeof res->error_type, "%s", type);
    snprintf(res->error, sizeof res->error, "%s", msg);
}

/* Records a failed request in res; its code, AM_ETIMEDOUT for a timeout and else AM_EIO. */
static int request_failed(struct orch_result *res, const char *type, const char *msg)
{
    set_error(res, type, msg);
    return !strcmp(type, "timeout") ? AM_ETIMEDOUT : AM_EIO;
}

/*
 * am_ollama reports every transport failure as backend_unavailable, with
 * curl's words for the cause: a refused or unresolvable connection is the
 * one where nothing was sent.
 */
static bool ollama_not_sent(const struct am_ollama_result *o)
{
    return o->http_status == 0 && !strcmp(o->error_type, "backend_unavailable") &&
           (!strcmp(o->error, curl_easy_strerror(CURLE_COULDNT_CONNECT)) ||
            !strcmp(o->error, curl_easy_strerror(CURLE_COULDNT_RESOLVE_HOST)));
}

static int ollama_request(void *client, const struct request *rq, struct orch_result *res,
                          bool *not_sent)
{
    struct am_ollama_result o;
    struct am_ollama_call oc = {
        .base_url = rq->url,
        .path = "/api/chat",
        .body = rq->body,
        .timeout_ms = rq->timeout_ms,
        .connect_timeout_ms = rq->connect_timeout_ms,
        .request_id = rq->request_id,
    };
    int rc = am_ollama_run(client, &oc, &o);
    if (rc == AM_OK) {
        res->content = o.content ? o.content : strdup("");
        res->content_len = o.content ? o.content_len : 0;
        o.content = NULL;
        res->tokens = (int32_t)o.eval_count;
        res->has_prompt_tokens = o.has_counts;
        res->prompt_tokens = (int32_t)o.prompt_eval_count;
        res->tokens_per_second =
            o.eval_duration_ns > 0 ? (double)o.eval_count / ((double)o.eval_duration_ns / 1e9) : 0;
    } else {
        *not_sent = ollama_not_sent(&o);
        rc = request_failed(res, o.error_type, o.error);
    }
    am_ollama_result_free(&o);
    return rc;
}

static int openai_request(void *client, const struct request *rq, struct orch_result *res,
                          bool *not_sent)
{
    struct orch_openai_result o;
    struct orch_openai_call oc = {
        .base_url = rq->url,
        .body = rq->body,
        .timeout_ms = rq->timeout_ms,
        .connect_timeout_ms = rq->connect_timeout_ms,
        .request_id = rq->request_id,
    };
    int rc = orch_openai_run(client, &oc, &o);
    if (rc == AM_OK) {
        res->content = o.content;
        res->content_len = o.content_len;
        o.content = NULL;
        res->tokens = o.has_usage ? (int32_t)o.completion_tokens : 0;
        res->has_prompt_tokens = o.has_usage;
        res->prompt_tokens = (int32_t)o.prompt_tokens;
        /* No timing of its own: the rate over this request's whole time. */
        res->tokens_per_second =
            o.latency_seconds > 0 ? (double)res->tokens / o.latency_seconds : 0;
    } else {
        *not_sent = o.not_sent;
        rc = request_failed(res, o.error_type, o.error);
    }
    orch_openai_result_free(&o);
    return rc;
}

/*
 * A backend kind, as the one call path drives it: its pool of idle
 * clients, its body, one request on a client (filling res with the answer,
 * or with the error and whether the request was never sent).
 */
struct backend {
    const char *name;
    const char *no_url; /* the error when the call has no URL for it */
    am_idle_new_fn make;
    am_idle_free_fn drop;
    char *(*body)(const struct orch_call *call, const struct orch_plan *p);
    int (*request)(void *client, const struct request *rq, struct orch_result *res, bool *not_sent);
};

static const struct backend backends[NBACKENDS] = {
    [B_OLLAMA] = {"ollama", "no Ollama URL: set OLLAMA_URL", ollama_make, ollama_drop,
                  orch_body_ollama, ollama_request},
    [B_MLX] = {"mlx", "no MLX URL: register one or set MLX_URL", openai_make, openai_drop,
               orch_body_openai, openai_request},
};

int orch_router_new(orch_router **out, const struct orch_router_config *cfg)
{
    orch_router *r = calloc(1, sizeof *r);
    if (!r)
        return AM_ENOMEM;
    r->cfg = *cfg;
    if (r->cfg.max_idle_clients < 1)
        r->cfg.max_idle_clients = 1;
    r->ollama_url = strip_url(cfg->ollama_url);
    r->mlx_url = strip_url(cfg->mlx_url);
    if (!r->ollama_url || (cfg->mlx_url && *cfg->mlx_url && !r->mlx_url))
        goto fail;
    for (int be = 0; be < NBACKENDS; be++) {
        if (am_idle_pool_new(&r->pools[be], r->cfg.max_idle_clients, backends[be].make,
                             backends[be].drop))
            goto fail;
    }
    r->latency.bounds = latency_bounds;
    r->latency.nbounds = sizeof latency_bounds / sizeof latency_bounds[0];
    r->tokens.bounds = token_bounds;
    r->tokens.nbounds = sizeof token_bounds / sizeof token_bounds[0];
    *out = r;
    return AM_OK;
fail:
    orch_router_free(r);
    return AM_ENOMEM;
}

void orch_router_free(orch_router *r)
{
    if (!r)
        return;
    for (int be = 0; be < NBACKENDS; be++)
        am_idle_pool_free(r->pools[be]);
    free(r->ollama_url);
    free(r->mlx_url);
    free(r);
}

void orch_result_free(struct orch_result *res)
{
    if (!res)
        return;
    free(res->content);
    res->content = NULL;
    res->content_len = 0;
}

/* The time one attempt may take: its backend's timeout, within the call's deadline. */
static long attempt_timeout(const struct orch_call *call, long timeout_ms)
{
    if (call->deadline_ns <= 0)
        return timeout_ms;
    int64_t left = (call->deadline_ns - am_clock_mono_ns()) / 1000000;
    return left < timeout_ms ? (long)left : timeout_ms;
}

static void backoff(orch_router *r)
{
    long ms = r->cfg.retry_backoff_ms;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    if (ms > 0)
        nanosleep(&ts, NULL);
}

/*
 * The call on one backend: a request, repeated up to retries times while
 * its connection could not be made, each within the call's deadline.
 * Counts every request. res holds the last request's outcome.
 */
static int run_backend(orch_router *r, int be, const struct orch_call *call,
                       const struct orch_plan *p, const char *url, long timeout_ms, int retries,
                       struct orch_result *res)
{
    const struct backend *kind = &backends[be];
    int rc = AM_EIO;

    res->backend = kind->name;
    if (!url || !*url) {
        set_error(res, "backend_unavailable", kind->no_url);
        return AM_EIO;
    }
    char *body = kind->body(call, p);
    void *client = body ? am_idle_pool_get(r->pools[be]) : NULL;
    if (!client) {
        free(body);
        set_error(res, "internal", "out of memory");
        return AM_ENOMEM;
    }
    for (int attempt = 0;; attempt++) {
        struct request rq = {
            .url = url,
            .body = body,
            .request_id = call->request_id,
            .timeout_ms = attempt_timeout(call, timeout_ms),
            .connect_timeout_ms = r->cfg.connect_timeout_ms,
        };
        bool not_sent = false;
        if (rq.timeout_ms <= 0) {
            rc = request_failed(res, "timeout", "the query's deadline passed");
            break;
        }
        res->attempts++;
        res->error_type[0] = res->error[0] = '\0';
        rc = kind->request(client, &rq, res, &not_sent);
        atomic_fetch_add(&r->attempts[be][rc != AM_OK], 1);
        if (rc == AM_OK || attempt >= retries || !not_sent)
            break;
        atomic_fetch_add(&r->retries, 1);
        backoff(r);
    }
    if (rc == AM_OK && !res->content) {
        set_error(res, "internal", "out of memory");
        rc = AM_ENOMEM;
    }
    am_idle_pool_put(r->pools[be], client);
    free(body);
    return rc;
}

int orch_router_run(orch_router *r, const struct orch_call *call, struct orch_result *res)
{
    struct orch_backend b;
    struct orch_plan p = {0};
    int rc;

    memset(res, 0, sizeof *res);
    res->backend = backends[B_OLLAMA].name;
    orch_registry_get(r->cfg.registry, call->model, call->request_id, &b);

    p.max_tokens = call->max_tokens;
    if (b.max_tokens > 0 && (p.max_tokens <= 0 || p.max_tokens > b.max_tokens))
        p.max_tokens = b.max_tokens;
    p.has_temperature = call->has_temperature || b.has_temperature;
    p.temperature = call->has_temperature ? call->temperature : b.temperature;
    long ollama_timeout = b.timeout_ms > 0 ? b.timeout_ms : r->cfg.ollama_timeout_ms;
    long mlx_timeout = b.timeout_ms > 0 ? b.timeout_ms : r->cfg.mlx_timeout_ms;
    const char *mlx_url = b.url[0] ? b.url : r->mlx_url;

    res->start_us = am_clock_now_us();
    int64_t t0 = am_clock_mono_ns();
    switch (b.type) {
    case ORCH_BACKEND_MLX:
        rc = run_backend(r, B_MLX, call, &p, mlx_url, mlx_timeout, r->cfg.retries, res);
        break;
    case ORCH_BACKEND_AUTO:
        /* Ollama is the retry: MLX gets no second attempt of its own. */
        rc = run_backend(r, B_MLX, call, &p, mlx_url, mlx_timeout, 0, res);
        if (rc != AM_OK && rc != AM_ENOMEM) {
            AM_LOG_REQ(AM_LOG_INFO, call->request_id, "%s: MLX failed (%s), trying Ollama",
                       call->model, res->error_type);
            atomic_fetch_add(&r->fallbacks, 1);
            res->fell_back = true;
            res->error_type[0] = res->error[0] = '\0';
            rc = run_backend(r, B_OLLAMA, call, &p, r->ollama_url, ollama_timeout, r->cfg.retries,
                             res);
        }
        break;
    case ORCH_BACKEND_OLLAMA:
    default:
        rc = run_backend(r, B_OLLAMA, call, &p, b.url[0] ? b.url : r->ollama_url, ollama_timeout,
                         r->cfg.retries, res);
        break;
    }
    res->latency_seconds = (double)(am_clock_mono_ns() - t0) / 1e9;
    if (rc != AM_OK && !res->error_type[0])
        set_error(res, "internal", am_strerror(rc));
    return rc == AM_OK ? AM_OK : rc == AM_ETIMEDOUT ? AM_ETIMEDOUT : AM_EIO;
}

static int stage_index(const char *stage)
{
    for (int i = 0; stage && i < S_OTHER; i++) {
        if (!strcmp(stage, stage_names[i]))
            return i;
    }
    return S_OTHER;
}

void orch_router_publish(orch_router *r, const struct orch_call *call,
                         const struct orch_result *res)
{
    bool error = res->error_type[0] != '\0';
    struct am_metric m = {
        .timestamp_us = res->start_us,
        .model = call->model,
        .backend = res->backend,
        .latency_seconds = res->latency_seconds,
        .tokens = error ? 0 : res->tokens,
        .tokens_per_second = error ? 0 : res->tokens_per_second,
        .has_prompt_tokens = !error && res->has_prompt_tokens,
        .prompt_tokens = res->prompt_tokens,
        .error = error,
        .error_type = error ? res->error_type : NULL,
        .request_id = call->request_id,
        .session_id = call->session_id,
        .user_id = call->user_id,
        .zone = call->zone,
        .intent = call->intent,
        .device_id = call->device_id,
        .source = "orchestrator",
        .stage = call->stage,
    };
    /* A metric the publisher refuses is counted there (dropped_invalid). */
    am_publisher_send(r->cfg.pub, &m);
    int b = !strcmp(res->backend, backends[B_MLX].name) ? B_MLX : B_OLLAMA;
    atomic_fetch_add(&r->calls[b][stage_index(call->stage)][error], 1);
    am_prom_observe(&r->latency, res->latency_seconds);
    if (!error)
        am_prom_observe(&r->tokens, (double)res->tokens);
    if (r->cfg.window)
        orch_window_record(r->cfg.window, am_clock_mono_ns() / 1000000, call->model, res->backend,
                           res->latency_seconds, m.tokens_per_second, error);
}

int orch_router_generate(orch_router *r, const struct orch_call *call, struct orch_result *res)
{
    int rc = orch_router_run(r, call, res);
    orch_router_publish(r, call, res);
    return rc;
}

void orch_router_write_prom(orch_router *r, struct am_buf *b)
{
    char labels[128];
    am_prom_family(b, "athena_orchestrator_llm_calls_total", "counter",
                   "LLM calls by the backend that answered (or was tried last), stage and status.");
    for (int be = 0; be < NBACKENDS; be++) {
        for (int s = 0; s < NSTAGES; s++) {
            for (int e = 0; e < 2; e++) {
                snprintf(labels, sizeof labels, "backend=\"%s\",stage=\"%s\",status=\"%s\"",
                         backends[be].name, stage_names[s], e ? "error" : "ok");
                am_prom_sample(b, "athena_orchestrator_llm_calls_total", labels,
                               (double)atomic_load(&r->calls[be][s][e]));
            }
        }
    }
    am_prom_family(b, "athena_orchestrator_backend_requests_total", "counter",
                   "Requests to the backends, retries and fallbacks included, by outcome.");
    for (int be = 0; be < NBACKENDS; be++) {
        for (int e = 0; e < 2; e++) {
            snprintf(labels, sizeof labels, "backend=\"%s\",status=\"%s\"", backends[be].name,
                     e ? "error" : "ok");
            am_prom_sample(b, "athena_orchestrator_backend_requests_total", labels,
                           (double)atomic_load(&r->attempts[be][e]));
        }
    }
    am_prom_counter(b, "athena_orchestrator_backend_fallbacks_total",
                    "Calls to auto backends that fell back from MLX to Ollama.",
                    atomic_load(&r->fallbacks));
    am_prom_counter(b, "athena_orchestrator_backend_retries_total",
                    "Requests repeated because their connection could not be made.",
                    atomic_load(&r->retries));
    am_prom_histogram_write(b, "athena_orchestrator_llm_call_duration_seconds",
                            "Time of a whole LLM call (gen_ai.client.operation.duration).",
                            &r->latency);
    am_prom_histogram_write(b, "athena_orchestrator_llm_output_tokens",
                            "Tokens generated per successful call (gen_ai.client.token.usage).",
                            &r->tokens);
}
