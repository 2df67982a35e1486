/* The router's sliding-window summary of recent LLM calls, by model and by backend. */
#ifndef ORCH_WINDOW_H
#define ORCH_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

/*
 * What the Python router's report_metrics() answered, over the last
 * window_s seconds instead of the last N calls. The window is kept as 60
 * slices (fewer when window_s < 60), so a call leaves the summary between
 * window_s - window_s/60 and window_s seconds after it was recorded.
 */
typedef struct orch_window orch_window;

/* (model, backend) pairs told apart; past the bound, new pairs are summed as ("other", "other"). */
#define ORCH_WINDOW_MAX_KEYS 64

/* On success *out is owned by the caller, freed with orch_window_free. */
int orch_window_new(orch_window **out, int window_s);
void orch_window_free(orch_window *w);

/*
 * Records one call that ended at now_ms (monotonic milliseconds). Failed
 * calls count as requests and errors only; the averages are over the calls
 * that succeeded (tokens/s over those that reported a rate), as in the
 * admin-api's live figures. Thread-safe.
 */
void orch_window_record(orch_window *w, int64_t now_ms, const char *model, const char *backend,
                        double latency_s, double tokens_per_second, bool error);

/*
 * The summary at now_ms as JSON: {"window_seconds", "total_requests",
 * "errors", "avg_latency_seconds", "avg_tokens_per_second", "by_model":
 * {model: {"requests", "errors", "avg_latency_seconds",
 * "avg_tokens_per_second"}}, "by_backend": {...}}. Returns a malloc'd
 * string (free()) or NULL when out of memory.
 */
char *orch_window_json(orch_window *w, int64_t now_ms);

#endif
