/* OpenAI chat-completions requests and responses, translated to and from Ollama's /api/chat. */
#ifndef GW_OPENAI_H
#define GW_OPENAI_H

#include "am_ollama.h"
#include "models.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_request {
    char requested_model[256]; /* as the client named it */
    char model[256];           /* the Ollama model it maps to */
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    char user[129];     /* OpenAI's end-user id ("user"), "" when absent */
    char *ollama_body;  /* the /api/chat request; freed by gw_request_free */
};

/*
 * Validates an OpenAI chat-completions body and builds the Ollama request.
 * Returns 0, or AM_EINVAL with a one-line reason in err and the offending
 * field in param (both errlen bytes; param "" when none).
 */
int gw_parse_request(const char *body, size_t len, const gw_models *models, struct gw_request *out,
                     char *err, char *param, size_t errlen);

void gw_request_free(struct gw_request *r);

/* OpenAI's finish_reason for Ollama's done_reason ("length" stays, everything else is "stop"). */
const char *gw_finish_reason(const char *done_reason);

/*
 * The whole chat.completion object for a finished call. Returns a malloc'd
 * NUL-terminated string (free()), NULL when out of memory.
 */
char *gw_completion_json(const char *id, int64_t created, const char *model,
                         const struct am_ollama_result *res);

/*
 * One chat.completion.chunk as an SSE event ("data: {...}\n\n"). role adds
 * the assistant role to the delta, finish (may be NULL) sets finish_reason.
 * Returns a malloc'd string (free()), NULL when out of memory.
 */
char *gw_chunk_event(const char *id, int64_t created, const char *model, const char *text,
                     size_t len, bool role, const char *finish);

/* The usage chunk of stream_options.include_usage, as an SSE event. */
char *gw_usage_event(const char *id, int64_t created, const char *model,
                     const struct am_ollama_result *res);

/* OpenAI's error object as JSON: {"error": {"message", "type", "param", "code"}}. */
char *gw_error_json(const char *message, const char *type, const char *param, const char *code);

#endif
