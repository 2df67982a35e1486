/* One simulated generation: the request, its deterministic answer, its schedule and its lines. */
#ifndef SIM_GEN_H
#define SIM_GEN_H

#include "fault.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sim_api {
    SIM_API_CHAT,     /* POST /api/chat: lines carry message.content */
    SIM_API_GENERATE, /* POST /api/generate: lines carry response */
};

/* Bounds of what a request may ask for. */
#define SIM_MAX_ANSWER_TOKENS 100000
#define SIM_MAX_TOKENS_PER_S  100000
#define SIM_MAX_TTFT_MS       600000
#define SIM_MAX_STALL_MS      3600000
#define SIM_MAX_STOP          16  /* options.stop strings */
#define SIM_MAX_STOP_LEN      256 /* bytes of one stop string */
#define SIM_MAX_MODEL_LEN     256

/* How one request is simulated: the settings, after the X-Sim-* headers. */
struct sim_plan {
    long long tokens_per_second; /* > 0 */
    long long ttft_ms;           /* request start to the first token */
    long long answer_tokens;     /* answer length before num_predict and stop */
    enum sim_fault fault;
    long long fail_after_tokens; /* tokens sent before error_line, disconnect or slow strikes */
    long long stall_ms;          /* the pause of the slow fault */
    long long seed;              /* used when the request has no options.seed */
};

typedef struct sim_gen sim_gen;

/*
 * Parses the JSON body of a chat or generate request. On success *out owns
 * the request (free with sim_gen_free). On a bad body returns AM_EINVAL with
 * Ollama-style words in err (of errlen bytes), or AM_ENOMEM.
 */
int sim_gen_parse(enum sim_api api, const char *body, size_t len, sim_gen **out, char *err,
                  size_t errlen);

/* The model the request names (owned by g). */
const char *sim_gen_model(const sim_gen *g);

/* Whether the answer is to be streamed (Ollama's default) or sent whole. */
bool sim_gen_stream(const sim_gen *g);

/*
 * Whether the request has no prompt (generate) or no messages (chat): Ollama
 * then only loads the model and answers done_reason "load".
 */
bool sim_gen_is_load(const sim_gen *g);

/* Whitespace-separated words of the prompt or of every message: prompt_eval_count. */
long long sim_gen_prompt_words(const sim_gen *g);

/*
 * Builds the answer and its schedule from plan, counting time from start_ns
 * (am_clock_mono_ns). Returns 0 or AM_ENOMEM.
 */
int sim_gen_start(sim_gen *g, const struct sim_plan *plan, int64_t start_ns);

/* Tokens the answer has (eval_count once all are sent). */
long long sim_gen_tokens(const sim_gen *g);

/* What a streaming step produced. */
enum sim_step {
    SIM_STEP_TOKEN, /* a line with one token; more follow */
    SIM_STEP_LAST,  /* the final line (done: true) or an error line; nothing follows */
    SIM_STEP_CUT,   /* the disconnect fault: close the connection now */
};

/* When the next streaming step is due (am_clock_mono_ns). */
int64_t sim_gen_next_due(const sim_gen *g);

/*
 * Produces the next line of a stream, newline included, stamped with now_ns.
 * On success *line is malloc'd (free() it) and *len is its length; on
 * AM_ENOMEM nothing is produced. Call it once the step is due.
 */
int sim_gen_step(sim_gen *g, int64_t now_ns, enum sim_step *step, char **line, size_t *len);

/* When the whole (non-streamed) answer, or its fault, is due. */
int64_t sim_gen_whole_due(const sim_gen *g);

/*
 * The non-streamed answer at now_ns: one JSON object (malloc'd, *len bytes)
 * with HTTP *status 200, or 500 with {"error"} for the error_line fault.
 * Returns 0 or AM_ENOMEM. The disconnect fault is the caller's to act on.
 */
int sim_gen_whole(sim_gen *g, int64_t now_ns, int *status, char **body, size_t *len);

/* The answer to a request without a prompt: done_reason "load"; malloc'd. */
char *sim_gen_load_reply(const sim_gen *g, size_t *len);

/* The fault this request runs with. */
enum sim_fault sim_gen_fault(const sim_gen *g);

/* Frees g; accepts NULL. */
void sim_gen_free(sim_gen *g);

/* Formats a Unix time in microseconds as RFC 3339 UTC, e.g. 2024-08-07T03:57:33.036588Z. */
void sim_format_time(int64_t unix_us, char *out, size_t outlen);

#endif
