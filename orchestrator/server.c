/* The orchestrator's HTTP face: /query through admission to the pipeline, health and metrics. */
#include "server.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_ollama.h"
#include "am_prom.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The statuses /query answers, for athena_orchestrator_queries_total. */
static const int codes[] = {200, 400, 405, 500, 502, 503, 504};
#define NCODES (sizeof codes / sizeof codes[0])

struct orch_server {
    struct orch_server_config cfg;
    char *ollama_url, *admin_url; /* without a trailing slash; admin_url NULL: none */
    char retry_after[24];
    _Atomic uint64_t queries[NCODES + 1]; /* [NCODES]: any other status */
    struct am_prom_histogram duration, queue_wait;

    pthread_mutex_t probe_mu; /* one readiness probe at a time, on one connection */
    am_ollama_client *probe;
};

static const double duration_bounds[] = {0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
                                         1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const double wait_bounds[] = {0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,   0.5,   1,     2.5,  5,     10,   30};

static char *base_url(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    return strndup(url, n);
}

int orch_server_new(orch_server **out, const struct orch_server_config *cfg)
{
    orch_server *s = calloc(1, sizeof *s);
    if (!s)
        return AM_ENOMEM;
    s->ollama_url = base_url(cfg->ollama_url);
    s->admin_url = cfg->admin_url && *cfg->admin_url ? base_url(cfg->admin_url) : NULL;
    if (!s->ollama_url || (cfg->admin_url && *cfg->admin_url && !s->admin_url) ||
        am_ollama_client_new(&s->probe) != AM_OK) {
        free(s->ollama_url);
        free(s->admin_url);
        free(s);
        return AM_ENOMEM;
    }
    s->cfg = *cfg;
    snprintf(s->retry_after, sizeof s->retry_after, "%d", cfg->retry_after_s);
    s->duration.bounds = duration_bounds;
    s->duration.nbounds = sizeof duration_bounds / sizeof duration_bounds[0];
    s->queue_wait.bounds = wait_bounds;
    s->queue_wait.nbounds = sizeof wait_bounds / sizeof wait_bounds[0];
    pthread_mutex_init(&s->probe_mu, NULL);
    *out = s;
    return AM_OK;
}

void orch_server_free(orch_server *s)
{
    if (!s)
        return;
    am_ollama_client_free(s->probe);
    free(s->ollama_url);
    free(s->admin_url);
    pthread_mutex_destroy(&s->probe_mu);
    free(s);
}

static void count(orch_server *s, int status)
{
    size_t i = 0;
    while (i < NCODES && codes[i] != status)
        i++;
    atomic_fetch_add(&s->queries[i], 1);
}

static void reply_json(struct am_http_response *resp, int status, char *body)
{
    free(resp->body);
    if (!body) {
        am_http_error(resp, 500, "out of memory");
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = body;
    resp->body_len = strlen(body);
}

/* 503 with Retry-After: the client should come back, not give up. */
static void reply_busy(orch_server *s, struct am_http_response *resp, const char *msg,
                       const char *request_id)
{
    json_t *o = json_pack("{s:s,s:i,s:s}", "error", msg, "retry_after_s", s->cfg.retry_after_s,
                          "request_id", request_id);
    reply_json(resp, 503, o ? json_dumps(o, JSON_COMPACT) : NULL);
    json_decref(o);
    resp->headers[0] = (struct am_http_header){"Retry-After", s->retry_after};
}

static void query(orch_server *s, const struct am_http_request *req, struct am_http_response *resp)
{
    struct orch_query q;
    char err[512];
    int64_t received = am_clock_mono_ns();

    /* The request id goes into every metric, whose text must be UTF-8. */
    if (!am_utf8_valid(req->request_id, AM_METRIC_MAX_STRING)) {
        am_http_error(resp, 400, "X-Request-Id must be UTF-8 text");
        return;
    }
    if (orch_query_parse(req->body, req->body_len, &q, err, sizeof err) != AM_OK) {
        AM_LOG_REQ(AM_LOG_DEBUG, req->request_id, "bad query: %s", err);
        am_http_error(resp, 400, err);
        return;
    }
    int rc = orch_admission_enter(s->cfg.admission, s->cfg.queue_timeout_ms);
    if (rc != AM_OK) {
        orch_query_free(&q);
        AM_LOG_REQ(AM_LOG_INFO, req->request_id, "query refused: %s",
                   rc == AM_EFULL ? "queue full" : am_strerror(rc));
        reply_busy(s, resp,
                   rc == AM_EFULL     ? "too many queries at once; retry later"
                   : rc == AM_ECLOSED ? "shutting down"
                                      : "no worker came free in time; retry later",
                   req->request_id);
        return;
    }
    int64_t started = am_clock_mono_ns();
    am_prom_observe(&s->queue_wait, (double)(started - received) / 1e9);
    int status = 500;
    char *body =
        orch_pipeline_run(s->cfg.pipeline, &q, req->request_id, received, started, &status);
    orch_admission_leave(s->cfg.admission);
    orch_query_free(&q);
    am_prom_observe(&s->duration, (double)(am_clock_mono_ns() - received) / 1e9);
    reply_json(resp, status, body);
}

/* Whether GET base + path answers 200 within 2 s. */
static bool probe(orch_server *s, const char *base, const char *path)
{
    char *body = NULL;
    long status = 0;
    pthread_mutex_lock(&s->probe_mu);
    int rc = am_ollama_get(s->probe, base, path, 2000, &status, &body);
    pthread_mutex_unlock(&s->probe_mu);
    free(body);
    return rc == AM_OK && status == 200;
}

/*
 * Ready when Ollama answers: it serves every model the registry does not
 * name, and every auto model whose MLX fails. The registry is reported but
 * not required, since the router falls back to Ollama without it.
 */
static void ready(orch_server *s, struct am_http_response *resp)
{
    bool ollama = probe(s, s->ollama_url, "/api/version");
    const char *registry = "off";
    if (s->admin_url)
        registry = probe(s, s->admin_url, "/health") ? "ok" : "unreachable";
    json_t *o =
        ollama ? json_pack("{s:s,s:s,s:s}", "status", "ready", "ollama", "ok", "registry", registry)
               : json_pack("{s:s,s:s,s:s}", "error", "ollama unreachable", "ollama", "unreachable",
                           "registry", registry);
    reply_json(resp, ollama ? 200 : 503, o ? json_dumps(o, JSON_COMPACT) : NULL);
    json_decref(o);
}

static void write_metrics(orch_server *s, struct am_http_response *resp)
{
    struct am_buf b;
    char labels[32];
    int running, waiting;

    am_buf_init(&b, 1 << 20);
    am_prom_family(&b, "athena_orchestrator_queries_total", "counter",
                   "POST /query answers by HTTP status (413s are answered before the pipeline "
                   "and not counted).");
    for (size_t i = 0; i <= NCODES; i++) {
        if (i < NCODES)
            snprintf(labels, sizeof labels, "code=\"%d\"", codes[i]);
        else
            snprintf(labels, sizeof labels, "code=\"other\"");
        am_prom_sample(&b, "athena_orchestrator_queries_total", labels,
                       (double)atomic_load(&s->queries[i]));
    }
    orch_admission_load(s->cfg.admission, &running, &waiting);
    am_prom_gauge(&b, "athena_orchestrator_queries_running", "Queries a worker is running now.",
                  running);
    am_prom_gauge(&b, "athena_orchestrator_queries_waiting", "Queries waiting for a worker now.",
                  waiting);
    am_prom_histogram_write(&b, "athena_orchestrator_query_duration_seconds",
                            "Time of a whole query, from arrival to answer.", &s->duration);
    am_prom_histogram_write(&b, "athena_orchestrator_queue_wait_seconds",
                            "Time an admitted query waited for a worker.", &s->queue_wait);
    orch_router_write_prom(s->cfg.router, &b);
    orch_registry_write_prom(s->cfg.registry, &b);
    am_publisher_write_prom(s->cfg.pub, &b, "athena_orchestrator");
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4";
    resp->body = am_buf_take(&b, &resp->body_len);
}

void orch_server_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    orch_server *s = arg;
    const char *path = req->path;

    if (!strcmp(path, "/query")) {
        if (strcmp(req->method, "POST") != 0)
            am_http_error(resp, 405, "use POST");
        else
            query(s, req, resp);
        count(s, resp->status);
        return;
    }
    bool known = !strcmp(path, "/health") || !strcmp(path, "/ready") || !strcmp(path, "/metrics") ||
                 !strcmp(path, "/router/metrics");
    if (!known)
        am_http_error(resp, 404, "not found");
    else if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        am_http_error(resp, 405, "use GET");
    else if (!strcmp(path, "/health"))
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ok\"}");
    else if (!strcmp(path, "/ready"))
        ready(s, resp);
    else if (!strcmp(path, "/metrics"))
        write_metrics(s, resp);
    else
        reply_json(resp, 200, orch_window_json(s->cfg.window, am_clock_mono_ns() / 1000000));
}
