/* athena-orchestrator: flags, wiring and signals of the query pipeline and its LLM router. */
#include "admission.h"
#include "am_config.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_publisher.h"
#include "pipeline.h"
#include "registry.h"
#include "router.h"
#include "server.h"
#include "window.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROGRAM  "athena-orchestrator"
#define MAX_LIST 64 /* intents, rejection words */

static const char *listen_addr;
static const char *ollama_url;
static const char *mlx_url;
static const char *admin_url;
static const char *bus_urls;
static const char *intents_list;
static const char *reject_list;
static const char *classify_model, *synthesize_model, *validate_model;
static const char *classify_prompt, *synthesize_prompt, *validate_prompt;
static long long classify_max, synthesize_max, validate_max;
static long long registry_ttl_s, registry_retry_s, registry_timeout_ms;
static long long workers, queue_max, queue_timeout_ms, retry_after_s;
static long long query_timeout_s, ollama_timeout_ms, mlx_timeout_ms, connect_timeout_ms;
static long long retries, retry_backoff_ms;
static long long window_s, max_body_kib;
static struct am_publisher_settings pubset;

static const struct am_setting settings[] = {
    {"listen", "LISTEN_ADDR", AM_SET_STRING, "0.0.0.0:8001", 0, 0, "host:port to serve HTTP on",
     &listen_addr},
    {"ollama-url", "OLLAMA_URL", AM_SET_STRING, "http://localhost:11434", 0, 0,
     "Ollama's base URL: models the registry does not name, and auto's fallback", &ollama_url},
    {"mlx-url", "MLX_URL", AM_SET_STRING, NULL, 0, 0,
     "OpenAI-compatible server for mlx and auto models registered without an endpoint_url",
     &mlx_url},
    {"admin-api-url", "ADMIN_API_URL", AM_SET_STRING, "http://localhost:8080", 0, 0,
     "the admin-api whose registry names each model's backend (\"\": none, all Ollama)",
     &admin_url},
    {"metrics-bus-urls", "METRICS_BUS_URLS", AM_SET_STRING, "tcp://127.0.0.1:5556", 0, 0,
     "comma-separated collector bus URLs", &bus_urls},
    {"registry-ttl-s", "ORCH_REGISTRY_TTL_S", AM_SET_INT, "60", 0, 86400,
     "how long a registry answer (found or not) is used before asking again", &registry_ttl_s},
    {"registry-retry-s", "ORCH_REGISTRY_RETRY_S", AM_SET_INT, "5", 0, 3600,
     "after a failed registry look-up, how long until the next (the last answer, or Ollama, "
     "meanwhile)",
     &registry_retry_s},
    {"registry-timeout-ms", "ORCH_REGISTRY_TIMEOUT_MS", AM_SET_INT, "2000", 1, 60000,
     "one registry look-up", &registry_timeout_ms},
    {"workers", "ORCH_WORKERS", AM_SET_INT, "32", 1, 1024, "queries run at once", &workers},
    {"queue-max", "ORCH_QUEUE_MAX", AM_SET_INT, "128", 0, 2048,
     "queries waiting for a worker; past it 503 with Retry-After", &queue_max},
    {"queue-timeout-ms", "ORCH_QUEUE_TIMEOUT_MS", AM_SET_INT, "30000", 0, 3600000,
     "longest wait for a worker; past it 503 with Retry-After", &queue_timeout_ms},
    {"retry-after-s", "ORCH_RETRY_AFTER_S", AM_SET_INT, "1", 1, 3600, "the Retry-After of a 503",
     &retry_after_s},
    {"query-timeout-s", "ORCH_QUERY_TIMEOUT_S", AM_SET_INT, "120", 1, 3600,
     "all the LLM calls of one query; a call is cut at it (504 when synthesis is)",
     &query_timeout_s},
    {"ollama-timeout-ms", "ORCH_OLLAMA_TIMEOUT_MS", AM_SET_INT, "60000", 1, 3600000,
     "one call to Ollama, unless the registry sets timeout_seconds", &ollama_timeout_ms},
    {"mlx-timeout-ms", "ORCH_MLX_TIMEOUT_MS", AM_SET_INT, "60000", 1, 3600000,
     "one call to MLX, unless the registry sets timeout_seconds", &mlx_timeout_ms},
    {"connect-timeout-ms", "ORCH_CONNECT_TIMEOUT_MS", AM_SET_INT, "2000", 1, 60000,
     "connecting to a backend", &connect_timeout_ms},
    {"retries", "ORCH_RETRIES", AM_SET_INT, "1", 0, 5,
     "extra attempts of a call whose connection could not be made (nothing was sent)", &retries},
    {"retry-backoff-ms", "ORCH_RETRY_BACKOFF_MS", AM_SET_INT, "100", 0, 10000,
     "wait before each such attempt", &retry_backoff_ms},
    {"intents", "ORCH_INTENTS", AM_SET_STRING, "weather_query,music,smart_home,general", 0, 0,
     "the classifier's intents, comma-separated; the first one named in its answer wins, "
     "else general",
     &intents_list},
    {"reject-words", "ORCH_VALIDATE_REJECT_WORDS", AM_SET_STRING, "INVALID,REJECT,REJECTED", 0, 0,
     "a validator answer with one of these words (any case) rejects the answer", &reject_list},
    {"classify-model", "ORCH_CLASSIFY_MODEL", AM_SET_STRING, "phi3:mini", 0, 0,
     "model of the classify step", &classify_model},
    {"synthesize-model", "ORCH_SYNTHESIZE_MODEL", AM_SET_STRING, "llama3.1:8b", 0, 0,
     "model of the synthesize step", &synthesize_model},
    {"validate-model", "ORCH_VALIDATE_MODEL", AM_SET_STRING, "phi3:mini", 0, 0,
     "model of the validate step", &validate_model},
    {"classify-prompt", "ORCH_CLASSIFY_PROMPT", AM_SET_STRING, ORCH_CLASSIFY_PROMPT, 0, 0,
     "system prompt of the classify step (the intents are appended)", &classify_prompt},
    {"synthesize-prompt", "ORCH_SYNTHESIZE_PROMPT", AM_SET_STRING, ORCH_SYNTHESIZE_PROMPT, 0, 0,
     "system prompt of the synthesize step (the intent is appended)", &synthesize_prompt},
    {"validate-prompt", "ORCH_VALIDATE_PROMPT", AM_SET_STRING, ORCH_VALIDATE_PROMPT, 0, 0,
     "system prompt of the validate step", &validate_prompt},
    {"classify-max-tokens", "ORCH_CLASSIFY_MAX_TOKENS", AM_SET_INT, "16", 0, 1000000,
     "tokens the classifier may generate (0: no limit)", &classify_max},
    {"synthesize-max-tokens", "ORCH_SYNTHESIZE_MAX_TOKENS", AM_SET_INT, "512", 0, 1000000,
     "tokens an answer may have (0: no limit)", &synthesize_max},
    {"validate-max-tokens", "ORCH_VALIDATE_MAX_TOKENS", AM_SET_INT, "64", 0, 1000000,
     "tokens the validator may generate (0: no limit)", &validate_max},
    {"window-s", "ORCH_WINDOW_S", AM_SET_INT, "300", 1, 86400,
     "the span of the GET /router/metrics summary", &window_s},
    {"max-body-kib", "ORCH_MAX_BODY_KIB", AM_SET_INT, "64", 1, 16384,
     "largest POST /query body; larger ones get 413", &max_body_kib},
    AM_PUBLISHER_SETTINGS(pubset),
};

/* Splits a comma list setting into items (in place in a copy); exits 2 when it is wrong. */
static char *split_list(const char *name, const char *value, char **items, size_t *n)
{
    char *copy = strdup(value ? value : "");
    if (!copy) {
        fprintf(stderr, PROGRAM ": out of memory\n");
        exit(1);
    }
    *n = am_config_split(copy, items, MAX_LIST + 1);
    if (*n == 0 || *n > MAX_LIST) {
        fprintf(stderr, PROGRAM ": %s: want 1 to %d comma-separated words\n", name, MAX_LIST);
        exit(2);
    }
    for (size_t i = 0; i < *n; i++) {
        if (strlen(items[i]) > 128) {
            fprintf(stderr, PROGRAM ": %s: '%.40s...' is longer than 128 bytes\n", name, items[i]);
            exit(2);
        }
    }
    return copy;
}

static void check_model(const char *name, const char *model)
{
    if (!model || !*model || !am_utf8_valid(model, 256)) {
        fprintf(stderr, PROGRAM ": %s: want a model name of 1 to 256 bytes\n", name);
        exit(2);
    }
}

/* Prompts and intents go into every request body as they are: they must be UTF-8. */
static void check_text(const char *name, const char *text)
{
    if (!text || !am_utf8_valid(text, SIZE_MAX)) {
        fprintf(stderr, PROGRAM ": %s: not UTF-8 text\n", name);
        exit(2);
    }
}

static void check_url(const char *name, const char *url, bool required)
{
    if ((!url || !*url) && !required)
        return;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        fprintf(stderr, PROGRAM ": %s: '%s' is not an http:// or https:// URL\n", name,
                url ? url : "");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    char *intents[MAX_LIST + 1], *rejects[MAX_LIST + 1];
    size_t nintents, nrejects;
    am_publisher *pub = NULL;
    orch_registry *registry = NULL;
    orch_window *window = NULL;
    orch_router *router = NULL;
    orch_pipeline *pipeline = NULL;
    orch_admission *admission = NULL;
    orch_server *server = NULL;
    am_http_server *http = NULL;
    sigset_t set;
    int sig, status = 1;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, PROGRAM,
                   "The query pipeline (classify, synthesize, validate) over an LLM router that "
                   "picks each model's backend from the admin-api's registry and measures every "
                   "call.");
    check_url("OLLAMA_URL", ollama_url, true);
    check_url("MLX_URL", mlx_url, false);
    check_url("ADMIN_API_URL", admin_url, false);
    check_model("ORCH_CLASSIFY_MODEL", classify_model);
    check_model("ORCH_SYNTHESIZE_MODEL", synthesize_model);
    check_model("ORCH_VALIDATE_MODEL", validate_model);
    check_text("ORCH_CLASSIFY_PROMPT", classify_prompt);
    check_text("ORCH_SYNTHESIZE_PROMPT", synthesize_prompt);
    check_text("ORCH_VALIDATE_PROMPT", validate_prompt);
    check_text("ORCH_INTENTS", intents_list);
    char *intents_buf = split_list("ORCH_INTENTS", intents_list, intents, &nintents);
    char *rejects_buf = split_list("ORCH_VALIDATE_REJECT_WORDS", reject_list, rejects, &nrejects);

    am_signals_block(&set);

    if (am_publisher_open_settings(&pub, &pubset, bus_urls) != AM_OK) {
        fprintf(stderr, PROGRAM ": METRICS_BUS_URLS: cannot publish to '%s'\n", bus_urls);
        status = 2;
        goto out;
    }
    struct orch_registry_config rcfg = {
        .admin_url = admin_url,
        .ttl_ms = (long)registry_ttl_s * 1000,
        .retry_ms = (long)registry_retry_s * 1000,
        .timeout_ms = (long)registry_timeout_ms,
        .max_models = 256,
    };
    struct orch_router_config ocfg = {
        .ollama_url = ollama_url,
        .mlx_url = mlx_url,
        .ollama_timeout_ms = (long)ollama_timeout_ms,
        .mlx_timeout_ms = (long)mlx_timeout_ms,
        .connect_timeout_ms = (long)connect_timeout_ms,
        .retries = (int)retries,
        .retry_backoff_ms = (long)retry_backoff_ms,
        .max_idle_clients = (int)workers,
        .pub = pub,
    };
    if (orch_registry_new(&registry, &rcfg) || orch_window_new(&window, (int)window_s))
        goto out;
    ocfg.registry = registry;
    ocfg.window = window;
    if (orch_router_new(&router, &ocfg))
        goto out;
    struct orch_pipeline_config pipe_cfg = {
        .router = router,
        .intents = intents,
        .nintents = nintents,
        .reject_words = rejects,
        .nreject_words = nrejects,
        .classify_model = classify_model,
        .synthesize_model = synthesize_model,
        .validate_model = validate_model,
        .classify_prompt = classify_prompt,
        .synthesize_prompt = synthesize_prompt,
        .validate_prompt = validate_prompt,
        .classify_max_tokens = (int)classify_max,
        .synthesize_max_tokens = (int)synthesize_max,
        .validate_max_tokens = (int)validate_max,
        .query_timeout_ms = (long)query_timeout_s * 1000,
    };
    if (orch_pipeline_new(&pipeline, &pipe_cfg) ||
        orch_admission_new(&admission, (int)workers, (int)queue_max))
        goto out;
    struct orch_server_config scfg = {
        .pipeline = pipeline,
        .router = router,
        .registry = registry,
        .window = window,
        .admission = admission,
        .pub = pub,
        .ollama_url = ollama_url,
        .admin_url = admin_url,
        .queue_timeout_ms = (long)queue_timeout_ms,
        .retry_after_s = (int)retry_after_s,
    };
    if (orch_server_new(&server, &scfg))
        goto out;
    /*
     * A query runs on the thread of its connection (see server.h), a thread
     * per connection, so that a keep-alive connection never waits for
     * another's query. A connection stays idle-timed-out only while nothing
     * runs on it, so the idle timeout must outlast a query.
     */
    struct am_http_options opt = {
        .max_body = (size_t)max_body_kib << 10,
        .timeout_s = (unsigned)(query_timeout_s + queue_timeout_ms / 1000 + 30),
        .thread_per_connection = true,
    };
    if (am_http_start(&http, listen_addr, &opt, orch_server_handle, server) != AM_OK) {
        fprintf(stderr, PROGRAM ": cannot serve HTTP on %s\n", listen_addr);
        status = 2;
        goto out;
    }
    am_log_info(PROGRAM " %s on %s, Ollama at %s, registry %s, %lld workers, queue %lld, "
                        "metrics %s",
                AM_VERSION, listen_addr, ollama_url, admin_url && *admin_url ? admin_url : "off",
                workers, queue_max, pubset.enabled ? bus_urls : "off");
    sigwait(&set, &sig);
    am_log_info("stopping on signal %d", sig);
    status = 0;
out:
    /* Waiting queries get 503 at once; running ones end within their timeouts. */
    if (admission)
        orch_admission_close(admission);
    am_http_stop(http);
    orch_server_free(server);
    orch_admission_free(admission);
    orch_pipeline_free(pipeline);
    orch_router_free(router);
    orch_window_free(window);
    orch_registry_free(registry);
    am_publisher_close(pub, NULL);
    free(intents_buf);
    free(rejects_buf);
    return status;
}
