/* The simulator's counters and their Prometheus text. */
#ifndef SIM_STATS_H
#define SIM_STATS_H

#include "am_buf.h"
#include "fault.h"
#include "models.h"

#include <stddef.h>

/* The endpoints requests are counted by; anything else is SIM_EP_OTHER. */
enum sim_endpoint {
    SIM_EP_ROOT,
    SIM_EP_CHAT,
    SIM_EP_GENERATE,
    SIM_EP_TAGS,
    SIM_EP_VERSION,
    SIM_EP_HEALTH,
    SIM_EP_READY,
    SIM_EP_METRICS,
    SIM_EP_OTHER,
    SIM_EP_COUNT,
};

/* The endpoint of a path. */
enum sim_endpoint sim_stats_endpoint(const char *path);

/* Counts one answered request by its HTTP status (a 200 stream counts when it starts). */
void sim_stats_request(enum sim_endpoint ep, int status);

/* Counts tokens generated for model index model (see models.h). Thread-safe, like all here. */
void sim_stats_tokens(int model, long long n);

void sim_stats_prompt_tokens(long long n);
void sim_stats_fault(enum sim_fault f);
void sim_stats_stream_started(void);
/* aborted: the stream ended before its last line (client gone, or shutdown). */
void sim_stats_stream_ended(int aborted);
/* A connection could not be put to sleep: the wake-up table was full. */
void sim_stats_wakeup_full(void);

/* Writes every counter in the Prometheus text format; model names come from models. */
void sim_stats_write(struct am_buf *b, const sim_models *models);

#endif
