/* The query pipeline: classify, synthesize, validate (with one re-synthesis), over the router. */
#ifndef ORCH_PIPELINE_H
#define ORCH_PIPELINE_H

#include "router.h"

#include <stddef.h>
#include <stdint.h>

/* The default system prompts; see docs/ORCHESTRATOR.md for how each answer is read. */
#define ORCH_CLASSIFY_PROMPT                                                                       \
    "You sort the requests of a smart-home voice assistant by intent. Reply with exactly one "     \
    "intent from the list below and nothing else."
#define ORCH_SYNTHESIZE_PROMPT                                                                     \
    "You are Athena, a smart-home voice assistant. Answer the request in one or two short, "       \
    "accurate sentences that can be read aloud."
#define ORCH_VALIDATE_PROMPT                                                                       \
    "You check the answers of a smart-home voice assistant for factual errors. Read the request "  \
    "and the proposed answer. If the answer is correct and relevant, reply with the single word "  \
    "\"VALID\". Otherwise reply with \"INVALID\" and one sentence saying what is wrong."

/* A POST /query body. The strings point into json and live as long as it. */
struct orch_query {
    const char *query;                                   /* required, not blank */
    const char *session_id, *user_id, *zone, *device_id; /* NULL when absent */
    void *json;
};

/*
 * Parses and checks a POST /query body. Returns 0 with *q filled (free it
 * with orch_query_free), or AM_EINVAL with a one-line reason in err
 * (errlen bytes).
 */
int orch_query_parse(const char *body, size_t len, struct orch_query *q, char *err, size_t errlen);

void orch_query_free(struct orch_query *q);

struct orch_pipeline_config {
    orch_router *router;  /* borrowed */
    char *const *intents; /* the classifier's choices, in order of preference */
    size_t nintents;
    char *const *reject_words; /* a validator answer with one of them rejects */
    size_t nreject_words;
    const char *classify_model, *synthesize_model, *validate_model;
    const char *classify_prompt, *synthesize_prompt, *validate_prompt; /* system prompts */
    int classify_max_tokens, synthesize_max_tokens, validate_max_tokens;
    long query_timeout_ms; /* all the LLM calls of one query; 0: none */
};

typedef struct orch_pipeline orch_pipeline;

/* On success *out is owned by the caller and freed with orch_pipeline_free. Copies nothing. */
int orch_pipeline_new(orch_pipeline **out, const struct orch_pipeline_config *cfg);
void orch_pipeline_free(orch_pipeline *p);

/*
 * Runs the steps for q: classify, synthesize, validate, and on a rejection
 * one more synthesize. received_ns (am_clock_mono_ns) is when the request
 * arrived, started_ns when a worker took it. Sets *status (200; 502 when
 * the answer could not be made; 504 when its backend timed out) and
 * returns the JSON body (malloc'd; free()), NULL when out of memory.
 * Thread-safe.
 */
char *orch_pipeline_run(orch_pipeline *p, const struct orch_query *q, const char *request_id,
                        int64_t received_ns, int64_t started_ns, int *status);

#endif
