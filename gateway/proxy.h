/* The gateway's request handling: OpenAI in, Ollama out, one metric per call. */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "am_buf.h"
#include "am_http.h"
#include "am_publisher.h"
#include "models.h"

typedef struct gw_proxy gw_proxy;

struct gw_proxy_config {
    const char *ollama_url;
    long timeout_ms; /* a whole call to Ollama */
    long connect_timeout_ms;
    int max_calls;           /* calls to Ollama at once; past it 503 */
    int max_streams;         /* streaming calls at once; past it 503 */
    int upstream_threads;    /* threads running the calls to Ollama */
    const gw_models *models; /* borrowed */
    am_publisher *pub;       /* borrowed; NULL publishes nothing */
};

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg);

/*
 * The am_http handler; arg is the gw_proxy. Calls to Ollama are deferred
 * responses (am_http_defer): the server must run a pool of threads, not a
 * thread per connection.
 */
void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp);

/*
 * Refuses new calls (503) and waits, at most timeout_ms, for the running
 * ones to be answered.
 */
void gw_proxy_drain(gw_proxy *p, int timeout_ms);

/*
 * Ends what is still running (each call with its metric; its client, if
 * still connected, gets nothing more) and frees p. Stop the HTTP server
 * first. Accepts NULL.
 */
void gw_proxy_free(gw_proxy *p);

#endif
