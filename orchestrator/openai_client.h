/* A client for OpenAI-compatible /v1/chat/completions servers (the MLX backend), over libcurl. */
#ifndef ORCH_OPENAI_CLIENT_H
#define ORCH_OPENAI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct orch_openai_call {
    const char *base_url; /* e.g. http://localhost:9000; a trailing /v1 is accepted */
    const char *body;     /* the JSON request, not streamed */
    long timeout_ms;      /* whole call */
    long connect_timeout_ms;
    const char *request_id; /* sent as X-Request-Id and logged; may be NULL */
};

struct orch_openai_result {
    long http_status;
    char error_type[32]; /* "" on success; else timeout, backend_unavailable, http_NNN,
                            bad_response, too_large */
    char error[256];
    bool not_sent; /* the connection failed: the server never saw the request */
    char *content; /* choices[0].message.content, NUL-terminated, or NULL; owned, see
                      orch_openai_result_free */
    size_t content_len;
    char model[128];
    char finish_reason[32];
    bool has_usage; /* usage.completion_tokens was there */
    int64_t completion_tokens, prompt_tokens;
    double latency_seconds; /* request start to end */
};

/* One keep-alive connection handle; one thread at a time. Freed with orch_openai_client_free. */
typedef struct orch_openai_client orch_openai_client;
int orch_openai_client_new(orch_openai_client **out);
void orch_openai_client_free(orch_openai_client *c);

/*
 * POSTs call->body to base_url/v1/chat/completions. Returns 0 when the
 * server answered 200 with a completion, else AM_EIO with res->error_type
 * and res->error set. Free res with orch_openai_result_free either way.
 */
int orch_openai_run(orch_openai_client *c, const struct orch_openai_call *call,
                    struct orch_openai_result *res);

void orch_openai_result_free(struct orch_openai_result *res);

/*
 * Parses a chat completion (the 200 answer) into res. Returns 0 or
 * AM_EPROTO (error_type bad_response) or AM_ENOMEM. Exposed for tests.
 */
int orch_openai_parse(const char *body, size_t len, struct orch_openai_result *res);

#endif
