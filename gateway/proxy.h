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
    int loops;               /* event loops (threads), each with its own server */
    int max_calls;           /* calls to Ollama at once; past it 503 */
    int max_streams;         /* streaming calls at once; past it 503 */
    const gw_models *models; /* borrowed */
    am_publisher *pub;       /* borrowed; NULL publishes nothing */
};

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg);

/* The handler argument of the server of loop i (0 <= i < cfg.loops), for gw_proxy_handle. */
void *gw_proxy_handler_arg(gw_proxy *p, int i);

/*
 * Starts the event loops (loop.c): loop i runs http[i], an am_http server
 * started with external_loop, gw_proxy_handle and gw_proxy_handler_arg(p,
 * i), and the calls to Ollama of its requests. 0 or AM_ENOMEM.
 */
int gw_proxy_start(gw_proxy *p, am_http_server *const *http);

/* The am_http handler. It runs on the thread of its server's loop. */
void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp);

/*
 * Refuses new calls (503) and lets the running ones finish, for at most
 * timeout_ms; the rest are ended (each with its metric; their clients get
 * nothing more). Then stops the loops: the servers may be stopped after
 * it. Accepts NULL.
 */
void gw_proxy_stop(gw_proxy *p, int timeout_ms);

/* Frees p (stopping it first, at once, if it runs); accepts NULL. */
void gw_proxy_free(gw_proxy *p);

#endif
