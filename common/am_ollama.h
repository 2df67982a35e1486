/* A client for Ollama's /api/chat and /api/generate, streaming or not, over libcurl. */
#ifndef AM_OLLAMA_H
#define AM_OLLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called with each piece of generated text as it arrives; non-zero aborts the call. */
typedef int (*am_ollama_delta_fn)(void *arg, const char *text, size_t len);

struct am_ollama_call {
    const char *base_url; /* e.g. http://localhost:11434 */
    const char *path;     /* "/api/chat" or "/api/generate" */
    const char *body;     /* the JSON request, "stream" set as wanted */
    long timeout_ms;      /* whole call */
    long connect_timeout_ms;
    am_ollama_delta_fn on_delta; /* may be NULL */
    void *arg;
    const char *request_id; /* for logs; may be NULL */
};

struct am_ollama_result {
    long http_status;
    char error_type[32]; /* "" on success; else timeout, backend_unavailable, http_NNN,
                            backend_error, bad_response, incomplete_response, too_large, aborted */
    char error[256];
    char *content; /* all generated text, NUL-terminated (NULL when none); see am_ollama_result_free
                    */
    size_t content_len;
    size_t content_cap;
    char model[128];
    char done_reason[32];
    bool done;
    bool has_counts; /* the final object carried the counts below */
    int64_t prompt_eval_count, eval_count;
    int64_t total_duration_ns, load_duration_ns, prompt_eval_duration_ns, eval_duration_ns;
    bool has_ttft;
    double ttft_seconds;    /* request start to first generated text */
    double latency_seconds; /* request start to end */
};

/* A reusable connection handle (keep-alive); one per thread. Freed with am_ollama_client_free. */
typedef struct am_ollama_client am_ollama_client;

/*
 * A new libcurl easy handle, libcurl's global set-up done once for the
 * process first, with the options every call shares already set (no
 * signals, TCP keep-alive, http and https only, no proxy look-ups when the
 * environment names none): callers set only what changes per call and
 * must not curl_easy_reset it. NULL when out of memory; free with
 * curl_easy_cleanup.
 * (void * keeps curl.h out of this header.)
 */
void *am_curl_easy_new(void);
int am_ollama_client_new(am_ollama_client **out);
void am_ollama_client_free(am_ollama_client *c);

/*
 * Runs one call. Returns 0 when Ollama answered with a complete response,
 * else an error code with res->error_type and res->error set; res is filled
 * as far as the call got either way. Free res with am_ollama_result_free.
 */
int am_ollama_run(am_ollama_client *c, const struct am_ollama_call *call,
                  struct am_ollama_result *res);

void am_ollama_result_free(struct am_ollama_result *res);

/*
 * A call on a libcurl multi handle the caller drives. am_ollama_xfer_begin
 * sets up easy (a handle from am_curl_easy_new) to run call into res and
 * hands back the transfer's state in *out; the caller adds easy to its
 * multi handle and, when the multi reports it done, passes its CURLcode to
 * am_ollama_xfer_end, which fills res as am_ollama_run does, frees the
 * state and returns what am_ollama_run would. call (with its body) and res
 * must stay valid until then; on_delta runs inside curl_multi_perform.
 * Returns 0 or AM_ENOMEM (nothing set up).
 */
typedef struct am_ollama_xfer am_ollama_xfer;
int am_ollama_xfer_begin(void *easy, const struct am_ollama_call *call,
                         struct am_ollama_result *res, am_ollama_xfer **out);
int am_ollama_xfer_end(am_ollama_xfer *x, int curl_code);

/*
 * am_ollama_get on a multi handle, in the same two steps: _begin sets up
 * easy, _end takes the CURLcode, frees the state and returns what
 * am_ollama_get would.
 */
int am_ollama_get_begin(void *easy, const char *base_url, const char *path, long timeout_ms,
                        am_ollama_xfer **out);
int am_ollama_get_end(am_ollama_xfer *x, int curl_code, long *status, char **body);

/*
 * GETs base_url + path (e.g. /api/tags) within timeout_ms. On success *body
 * is the response (malloc'd, NUL-terminated, at most 1 MiB; free()) and
 * *status its HTTP status. Returns 0 or AM_EIO (logged).
 */
int am_ollama_get(am_ollama_client *c, const char *base_url, const char *path, long timeout_ms,
                  long *status, char **body);

/*
 * Parses one line of Ollama's answer into res: the text it carries is
 * appended to res->content and *delta points at it there (valid until the
 * next call). An {"error": ...} line sets error_type "backend_error".
 * Exposed for tests and fuzzing. Returns 0, AM_EPROTO (not an Ollama
 * object, or an error line), AM_ERANGE (content over its bound) or AM_ENOMEM.
 */
int am_ollama_parse_line(struct am_ollama_result *res, const char *line, size_t len,
                         const char **delta, size_t *delta_len);

#endif
