/* The orchestrator's HTTP face: /query through admission to the pipeline, health and metrics. */
#ifndef ORCH_SERVER_H
#define ORCH_SERVER_H

#include "admission.h"
#include "am_http.h"
#include "am_publisher.h"
#include "pipeline.h"
#include "registry.h"
#include "router.h"
#include "window.h"

typedef struct orch_server orch_server;

struct orch_server_config {
    orch_pipeline *pipeline; /* all borrowed */
    orch_router *router;
    orch_registry *registry;
    orch_window *window;
    orch_admission *admission;
    am_publisher *pub;
    const char *ollama_url; /* what /ready checks */
    const char *admin_url;  /* reported by /ready, not required; NULL or "": none */
    long queue_timeout_ms;  /* a query waits at most this long for a worker, then 503 */
    int retry_after_s;      /* the Retry-After of a 503 */
};

/* On success *out is owned by the caller and freed with orch_server_free. */
int orch_server_new(orch_server **out, const struct orch_server_config *cfg);
void orch_server_free(orch_server *s);

/*
 * The am_http handler; arg is the orch_server. POST /query runs on the
 * calling HTTP thread once admission gives it a worker; the HTTP server
 * runs a thread per connection (see main.c), so no connection waits for
 * another one's query.
 */
void orch_server_handle(void *arg, const struct am_http_request *req,
                        struct am_http_response *resp);

#endif
