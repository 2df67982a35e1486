/* The JSON request bodies the router sends: Ollama's /api/chat and OpenAI chat completions. */
#ifndef ORCH_BODIES_H
#define ORCH_BODIES_H

#include "router.h"

#include <stdbool.h>

/* What a call asks of its backend besides the messages, once the registry has had its say. */
struct orch_plan {
    int max_tokens; /* 0: unset */
    bool has_temperature;
    double temperature;
};

/*
 * The body of a non-streamed call: Ollama's {"model", "messages", "stream":
 * false, "options": {"num_predict", "temperature"}} or OpenAI's {"model",
 * "messages", "stream": false, "max_tokens", "temperature"}, each option
 * only when the plan sets it. The call's text must be UTF-8 (it is copied
 * as is, with JSON's escapes). Returns a malloc'd NUL-terminated string
 * (free()), or NULL when out of memory.
 */
char *orch_body_ollama(const struct orch_call *call, const struct orch_plan *p);
char *orch_body_openai(const struct orch_call *call, const struct orch_plan *p);

#endif
