/* The simulator's counters and their Prometheus text. */
#include "stats.h"
#include "am_prom.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const endpoint_names[SIM_EP_COUNT] = {
    "/",       "/api/chat", "/api/generate", "/api/tags", "/api/version",
    "/health", "/ready",    "/metrics",      "other",
};

/* The statuses the simulator answers with; anything else lands in the last slot. */
static const int statuses[] = {200, 400, 404, 405, 413, 500, 503, 0};
#define NSTATUS (sizeof statuses / sizeof statuses[0])

static _Atomic uint64_t requests[SIM_EP_COUNT][NSTATUS];
static _Atomic uint64_t tokens[SIM_MAX_MODELS];
static _Atomic uint64_t prompt_tokens;
static _Atomic uint64_t faults[SIM_FAULT_COUNT];
static _Atomic int64_t streams_active;
static _Atomic uint64_t streams_total;
static _Atomic uint64_t streams_aborted;
static _Atomic uint64_t wakeup_full;

enum sim_endpoint sim_stats_endpoint(const char *path)
{
    for (int i = 0; i < SIM_EP_OTHER; i++) {
        if (!strcmp(path, endpoint_names[i]))
            return (enum sim_endpoint)i;
    }
    return SIM_EP_OTHER;
}

void sim_stats_request(enum sim_endpoint ep, int status)
{
    size_t i = 0;
    while (i + 1 < NSTATUS && statuses[i] != status)
        i++;
    atomic_fetch_add_explicit(&requests[ep][i], 1, memory_order_relaxed);
}

void sim_stats_tokens(int model, long long n)
{
    if (model >= 0 && model < SIM_MAX_MODELS && n > 0)
        atomic_fetch_add_explicit(&tokens[model], (uint64_t)n, memory_order_relaxed);
}

void sim_stats_prompt_tokens(long long n)
{
    if (n > 0)
        atomic_fetch_add_explicit(&prompt_tokens, (uint64_t)n, memory_order_relaxed);
}

void sim_stats_fault(enum sim_fault f)
{
    if (f > SIM_FAULT_NONE && f < SIM_FAULT_COUNT)
        atomic_fetch_add_explicit(&faults[f], 1, memory_order_relaxed);
}

void sim_stats_stream_started(void)
{
    atomic_fetch_add(&streams_active, 1);
    atomic_fetch_add(&streams_total, 1);
}

void sim_stats_stream_ended(int aborted)
{
    atomic_fetch_sub(&streams_active, 1);
    if (aborted)
        atomic_fetch_add(&streams_aborted, 1);
}

void sim_stats_wakeup_full(void)
{
    atomic_fetch_add(&wakeup_full, 1);
}

void sim_stats_write(struct am_buf *b, const sim_models *models)
{
    char labels[512];

    am_prom_family(b, "athena_ollama_sim_requests_total", "counter",
                   "HTTP requests answered, by endpoint and status");
    for (int e = 0; e < SIM_EP_COUNT; e++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = atomic_load_explicit(&requests[e][s], memory_order_relaxed);
            if (!v)
                continue;
            if (statuses[s])
                snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"%d\"", endpoint_names[e],
                         statuses[s]);
            else
                snprintf(labels, sizeof labels, "endpoint=\"%s\",status=\"other\"",
                         endpoint_names[e]);
            am_prom_sample(b, "athena_ollama_sim_requests_total", labels, (double)v);
        }
    }

    am_prom_family(b, "athena_ollama_sim_tokens_generated_total", "counter",
                   "tokens sent in answers (eval_count), by model");
    for (size_t i = 0; i < sim_models_count(models) && i < SIM_MAX_MODELS; i++) {
        /* Model names hold only letters, digits and ._:/-, so they need no escaping. */
        snprintf(labels, sizeof labels, "model=\"%s\"", sim_models_name(models, i));
        am_prom_sample(b, "athena_ollama_sim_tokens_generated_total", labels,
                       (double)atomic_load_explicit(&tokens[i], memory_order_relaxed));
    }

    am_prom_counter(b, "athena_ollama_sim_prompt_tokens_total",
                    "prompt words counted (prompt_eval_count)", atomic_load(&prompt_tokens));

    am_prom_family(b, "athena_ollama_sim_faults_injected_total", "counter",
                   "faults injected, by mode (X-Sim-Fail or SIM_FAIL_RATE)");
    for (int f = SIM_FAULT_NONE + 1; f < SIM_FAULT_COUNT; f++) {
        snprintf(labels, sizeof labels, "mode=\"%s\"", sim_fault_name((enum sim_fault)f));
        am_prom_sample(b, "athena_ollama_sim_faults_injected_total", labels,
                       (double)atomic_load(&faults[f]));
    }

    am_prom_gauge(b, "athena_ollama_sim_streams_active", "streaming answers in progress",
                  (double)atomic_load(&streams_active));
    am_prom_counter(b, "athena_ollama_sim_streams_total", "streaming answers started",
                    atomic_load(&streams_total));
    am_prom_counter(b, "athena_ollama_sim_streams_aborted_total",
                    "streams that ended before their last line: client gone or shutdown",
                    atomic_load(&streams_aborted));
    am_prom_counter(b, "athena_ollama_sim_wakeups_refused_total",
                    "answers cut because the wake-up table (SIM_MAX_CONNECTIONS) was full",
                    atomic_load(&wakeup_full));
}
