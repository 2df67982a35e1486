/* The LLM router: one generate call to the backend the registry names, measured and published. */
#ifndef ORCH_ROUTER_H
#define ORCH_ROUTER_H

#include "am_buf.h"
#include "am_publisher.h"
#include "registry.h"
#include "window.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct orch_message {
    const char *role; /* system, user or assistant */
    const char *content;
};

/* One call. Every pointer is borrowed for the duration of the call; all text is UTF-8. */
struct orch_call {
    const char *model;
    const struct orch_message *messages;
    size_t nmessages;
    int max_tokens; /* 0: no limit of the caller's (the registry's max_tokens still caps it) */
    bool has_temperature;
    double temperature;  /* else the registry's temperature_default, else the backend's */
    int64_t deadline_ns; /* am_clock_mono_ns by which the call must be over; 0: none */
    /* The metric's metadata; NULL when absent. */
    const char *request_id, *session_id, *user_id, *zone, *device_id, *intent, *stage;
};

struct orch_result {
    const char *backend; /* static: the backend that answered, or the last one tried */
    char error_type[32]; /* "" on success; timeout, backend_unavailable, http_NNN, ... */
    char error[256];
    char *content; /* the generated text, NUL-terminated, never NULL after a success; owned */
    size_t content_len;
    int32_t tokens; /* generated: Ollama's eval_count, OpenAI's usage.completion_tokens */
    bool has_prompt_tokens;
    int32_t prompt_tokens;
    double tokens_per_second; /* from the backend's own timing where it reports one */
    int64_t start_us;         /* wall clock when the first backend request started */
    double latency_seconds;   /* from then to the end, retries and fallback included */
    int attempts;             /* backend requests made */
    bool fell_back;           /* auto: MLX failed, Ollama answered or failed too */
};

typedef struct orch_router orch_router;

struct orch_router_config {
    const char *ollama_url;  /* OLLAMA_URL */
    const char *mlx_url;     /* MLX_URL: MLX for models registered without a URL; may be NULL */
    long ollama_timeout_ms;  /* a call to Ollama, unless the registry sets timeout_seconds */
    long mlx_timeout_ms;     /* the same for MLX */
    long connect_timeout_ms; /* connection set-up, within the above */
    int retries;             /* extra attempts after a connection failure (nothing was sent) */
    long retry_backoff_ms;   /* wait before each of them */
    int max_idle_clients;    /* keep-alive connections kept per backend kind */
    orch_registry *registry; /* borrowed */
    am_publisher *pub;       /* borrowed; NULL publishes nothing */
    orch_window *window;     /* borrowed; NULL keeps no summary */
};

/* On success *out is owned by the caller and freed with orch_router_free. */
int orch_router_new(orch_router **out, const struct orch_router_config *cfg);
void orch_router_free(orch_router *r);

/*
 * Runs call on its model's backend and publishes one metric for it,
 * whatever the outcome: orch_router_run then orch_router_publish. Returns 0
 * with res->content set, or AM_ETIMEDOUT (error_type "timeout") or AM_EIO
 * (any other failure). Thread-safe. Free res with orch_result_free either
 * way.
 */
int orch_router_generate(orch_router *r, const struct orch_call *call, struct orch_result *res);

/*
 * The call without its metric, for a caller that learns part of the
 * metadata from the answer (the classifier learns the intent); it must then
 * call orch_router_publish exactly once. Same returns as generate.
 */
int orch_router_run(orch_router *r, const struct orch_call *call, struct orch_result *res);

/* Publishes the metric of a finished call and counts it. Thread-safe. */
void orch_router_publish(orch_router *r, const struct orch_call *call,
                         const struct orch_result *res);

void orch_result_free(struct orch_result *res);

/* Appends the router's counters and histograms (Prometheus text, athena_orchestrator_ names). */
void orch_router_write_prom(orch_router *r, struct am_buf *b);

#endif
