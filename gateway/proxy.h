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
    const gw_models *models; /* borrowed */
    am_publisher *pub;       /* borrowed; NULL publishes nothing */
};

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg);

/*
 * Starts the event loop (loop.c) that runs http, an am_http server
 * started with external_loop and gw_proxy_handle as its handler, and the
 * calls to Ollama. 0 or AM_ENOMEM.
 */
int gw_proxy_start(gw_proxy *p, am_http_server *http);

/* The am_http handler; arg is the gw_proxy. It runs on the loop's thread. */
void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp);

/*
 * Refuses new calls (503) and lets the running ones finish, for at most
 * timeout_ms; the rest are ended (each with its metric; their clients get
 * nothing more). Then stops the loop: the server may be stopped after it.
 */
void gw_proxy_stop(gw_proxy *p, int timeout_ms);

/* Frees p (stopping it first, at once, if it runs); accepts NULL. */
void gw_proxy_free(gw_proxy *p);

#endif
