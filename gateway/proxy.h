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
    int max_streams;         /* streaming calls at once; past it 503 */
    const gw_models *models; /* borrowed */
    am_publisher *pub;       /* borrowed; NULL publishes nothing */
};

int gw_proxy_new(gw_proxy **out, const struct gw_proxy_config *cfg);

/* The am_http handler; arg is the gw_proxy. */
void gw_proxy_handle(void *arg, const struct am_http_request *req, struct am_http_response *resp);

/* Waits for running streams to finish (at most timeout_ms), then frees p; accepts NULL. */
void gw_proxy_free(gw_proxy *p, int timeout_ms);

#endif
