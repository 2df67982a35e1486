/* athena-gateway: flags, wiring and signals of the OpenAI-compatible front door to Ollama. */
#include "am_config.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "am_publisher.h"
#include "models.h"
#include "proxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static const char *listen_addr;
static const char *ollama_url;
static const char *bus_urls;
static const char *model_map;
static const char *model_map_file;
static long long timeout_s;
static long long max_conns;
static long long max_calls;
static long long loops;
static long long max_streams;
static long long max_body_kib;
static struct am_publisher_settings pubset;

static const struct am_setting settings[] = {
    {"listen", "LISTEN_ADDR", AM_SET_STRING, "0.0.0.0:8000", 0, 0, "host:port to serve HTTP on",
     &listen_addr},
    {"ollama-url", "OLLAMA_URL", AM_SET_STRING, "http://localhost:11434", 0, 0, "Ollama's base URL",
     &ollama_url},
    {"metrics-bus-urls", "METRICS_BUS_URLS", AM_SET_STRING, "tcp://127.0.0.1:5556", 0, 0,
     "comma-separated collector bus URLs", &bus_urls},
    {"model-map", "GATEWAY_MODEL_MAP", AM_SET_STRING, NULL, 0, 0,
     "OpenAI model names to Ollama models, \"alias=model,...\" (over the defaults "
     "gpt-3.5-turbo=phi3:mini, gpt-4=llama3.1:8b)",
     &model_map},
    {"model-map-file", "GATEWAY_MODEL_MAP_FILE", AM_SET_STRING, NULL, 0, 0,
     "file of alias=model lines, read before GATEWAY_MODEL_MAP", &model_map_file},
    {"timeout-s", "GATEWAY_TIMEOUT_S", AM_SET_INT, "120", 1, 3600,
     "a whole call to Ollama; past it the client gets 504", &timeout_s},
    {"max-connections", "GATEWAY_MAX_CONNECTIONS", AM_SET_INT, "1024", 1, 100000,
     "client connections at once, shared evenly by the event loops; past it new ones are closed",
     &max_conns},
    {"max-calls", "GATEWAY_MAX_CALLS", AM_SET_INT, "1024", 1, 100000,
     "calls to Ollama at once, streaming or not; past it 503", &max_calls},
    {"threads", "GATEWAY_THREADS", AM_SET_INT, "2", 1, 64,
     "event loops, each a thread serving its share of the connections and their calls to Ollama",
     &loops},
    {"max-streams", "GATEWAY_MAX_STREAMS", AM_SET_INT, "256", 1, 100000,
     "streaming calls at once; past it 503", &max_streams},
    {"max-body-kib", "GATEWAY_MAX_BODY_KIB", AM_SET_INT, "4096", 1, 1048576,
     "largest request body; larger ones get 413", &max_body_kib},
    AM_PUBLISHER_SETTINGS(pubset),
};

int main(int argc, char **argv)
{
    gw_models *models = NULL;
    am_publisher *pub = NULL;
    gw_proxy *proxy = NULL;
    am_http_server *http[64] = {NULL};
    char err[512];
    sigset_t set;
    int sig, status = 0;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "athena-gateway",
                   "An OpenAI-compatible /v1/chat/completions that forwards to Ollama and "
                   "measures every call.");
    if (gw_models_load(&models, model_map_file, model_map, err, sizeof err)) {
        fprintf(stderr, "athena-gateway: %s\n", err);
        return 2;
    }
    am_signals_block(&set);

    if (am_publisher_open_settings(&pub, &pubset, bus_urls) != AM_OK) {
        fprintf(stderr, "athena-gateway: METRICS_BUS_URLS: cannot publish to '%s'\n", bus_urls);
        gw_models_free(models);
        return 2;
    }
    struct gw_proxy_config gcfg = {
        .ollama_url = ollama_url,
        .timeout_ms = (long)timeout_s * 1000,
        .connect_timeout_ms = 5000,
        .loops = (int)loops,
        .max_calls = (int)max_calls,
        .max_streams = (int)max_streams,
        .models = models,
        .pub = pub,
    };
    if (gw_proxy_new(&proxy, &gcfg) != AM_OK) {
        status = 1;
        goto out;
    }
    /*
     * Each event loop runs a server of its own; they all accept from the
     * first one's listening socket, whichever loop is free first.
     */
    struct am_http_options opt = {
        .max_body = (size_t)max_body_kib << 10,
        .timeout_s = (unsigned)timeout_s + 30,
        .external_loop = true,
        .max_conns = (unsigned)((max_conns + loops - 1) / loops),
        /*
         * Headers only (bodies are copied out as they come): 16 KiB holds
         * any OpenAI client's, and libmicrohttpd clears the whole pool for
         * every request on a kept-alive connection.
         */
        .conn_memory = 16 << 10,
    };
    for (int i = 0; i < (int)loops; i++) {
        opt.share_listener = http[0];
        if (am_http_start(&http[i], listen_addr, &opt, gw_proxy_handle,
                          gw_proxy_handler_arg(proxy, i))) {
            fprintf(stderr, "athena-gateway: cannot serve HTTP on %s\n", listen_addr);
            status = 2;
            goto out;
        }
    }
    if (gw_proxy_start(proxy, http) != AM_OK) {
        status = 1;
        goto out;
    }
    am_log_info("athena-gateway %s on %s, Ollama at %s, metrics %s", AM_VERSION, listen_addr,
                ollama_url, pubset.enabled ? bus_urls : "off");
    sigwait(&set, &sig);
    am_log_info("stopping on signal %d", sig);
    /* Running calls are answered (new ones get 503), for at most the time a call may take. */
    gw_proxy_stop(proxy, (int)timeout_s * 1000);
out:
    /* The loops run the servers: they stop first (gw_proxy_free does, if still running). */
    gw_proxy_stop(proxy, 0);
    for (int i = 0; i < (int)loops; i++)
        am_http_stop(http[i]);
    gw_proxy_free(proxy);
    am_publisher_close(pub, NULL);
    gw_models_free(models);
    return status;
}
