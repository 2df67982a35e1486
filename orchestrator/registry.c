/*
 * The backend registry cache. Entries live in a small array searched by
 * name: the orchestrator asks for a handful of models, and a linear scan of
 * them costs less than hashing. A look-up runs outside the cache lock with
 * the entry marked as fetching, so other calls for the same model wait for
 * its answer (one request to the admin-api, however many calls) while calls
 * for other models go on. Look-ups share one keep-alive connection.
 */
#include "registry.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ollama.h"
#include "am_prom.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ANSWER (64 << 10)

struct entry {
    char *model;
    bool fetching;
    bool known; /* b holds an answer */
    int64_t expires_ns;
    struct orch_backend b;
};

struct orch_registry {
    char *admin_url;
    int64_t ttl_ns, retry_ns;
    long timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t fetched;
    struct entry *entries;
    int n, max;
    struct orch_registry_stats st;

    pthread_mutex_t fetch_mu; /* one look-up at a time on the shared connection */
    CURL *curl;
};

enum lookup { FOUND, NOT_FOUND, FAILED };

const char *orch_backend_type_name(enum orch_backend_type t)
{
    switch (t) {
    case ORCH_BACKEND_MLX:
        return "mlx";
    case ORCH_BACKEND_AUTO:
        return "auto";
    case ORCH_BACKEND_OLLAMA:
        break;
    }
    return "ollama";
}

static void default_backend(struct orch_backend *b)
{
    b->type = ORCH_BACKEND_OLLAMA;
    b->registered = false;
    b->url[0] = '\0';
    b->max_tokens = 0;
    b->has_temperature = false;
    b->temperature = 0;
    b->timeout_ms = 0;
}

int orch_registry_new(orch_registry **out, const struct orch_registry_config *cfg)
{
    orch_registry *r = calloc(1, sizeof *r);
    if (!r)
        return AM_ENOMEM;
    if (cfg->admin_url && *cfg->admin_url) {
        size_t len = strlen(cfg->admin_url);
        while (len > 0 && cfg->admin_url[len - 1] == '/')
            len--;
        r->admin_url = strndup(cfg->admin_url, len);
        r->curl = am_curl_easy_new();
        if (!r->admin_url || !r->curl)
            goto fail;
    }
    r->max = cfg->max_models > 0 ? cfg->max_models : 256;
    r->entries = calloc((size_t)r->max, sizeof *r->entries);
    if (!r->entries)
        goto fail;
    r->ttl_ns = (int64_t)cfg->ttl_ms * 1000000;
    r->retry_ns = (int64_t)cfg->retry_ms * 1000000;
    r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->fetched, NULL);
    pthread_mutex_init(&r->fetch_mu, NULL);
    *out = r;
    return AM_OK;
fail:
    curl_easy_cleanup(r->curl);
    free(r->admin_url);
    free(r->entries);
    free(r);
    return AM_ENOMEM;
}

void orch_registry_free(orch_registry *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        free(r->entries[i].model);
    free(r->entries);
    curl_easy_cleanup(r->curl);
    free(r->admin_url);
    pthread_mutex_destroy(&r->fetch_mu);
    pthread_cond_destroy(&r->fetched);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int fail(char *why, size_t whylen, const char *msg)
{
    snprintf(why, whylen, "%s", msg);
    return AM_EPROTO;
}

int orch_registry_parse(const char *body, size_t len, struct orch_backend *b, char *why,
                        size_t whylen)
{
    json_error_t jerr;
    int rc = AM_OK;
    json_t *o = json_loadb(body, len, 0, &jerr);
    default_backend(b);
    if (!json_is_object(o)) {
        rc = fail(why, whylen, "the entry is not a JSON object");
        goto out;
    }
    json_t *type = json_object_get(o, "backend_type");
    const char *t = json_string_value(type);
    if (!t) {
        rc = fail(why, whylen, "backend_type is not a string");
        goto out;
    }
    if (!strcmp(t, "ollama")) {
        b->type = ORCH_BACKEND_OLLAMA;
    } else if (!strcmp(t, "mlx")) {
        b->type = ORCH_BACKEND_MLX;
    } else if (!strcmp(t, "auto")) {
        b->type = ORCH_BACKEND_AUTO;
    } else {
        rc = fail(why, whylen, "backend_type is not ollama, mlx or auto");
        goto out;
    }
    json_t *url = json_object_get(o, "endpoint_url");
    if (url && !json_is_null(url)) {
        const char *u = json_string_value(url);
        if (!u || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))) {
            rc = fail(why, whylen, "endpoint_url is not an http(s) URL");
            goto out;
        }
        size_t n = strlen(u);
        while (n > 0 && u[n - 1] == '/')
            n--;
        if (n >= sizeof b->url) {
            rc = fail(why, whylen, "endpoint_url is too long");
            goto out;
        }
        memcpy(b->url, u, n);
        b->url[n] = '\0';
    }
    json_t *v = json_object_get(o, "enabled");
    if (json_is_false(v)) {
        rc = fail(why, whylen, "the entry is disabled");
        goto out;
    }
    v = json_object_get(o, "max_tokens");
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT32_MAX)
        b->max_tokens = (int)json_integer_value(v);
    v = json_object_get(o, "temperature_default");
    if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 2) {
        b->has_temperature = true;
        b->temperature = json_number_value(v);
    }
    v = json_object_get(o, "timeout_seconds");
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= 86400)
        b->timeout_ms = (long)json_integer_value(v) * 1000;
    b->registered = true;
out:
    json_decref(o);
    if (rc)
        default_backend(b);
    return rc;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t n = size * nmemb;
    return am_buf_append(userdata, ptr, n) == AM_OK ? n : 0;
}

/* Asks the admin-api about model. Takes fetch_mu; called without the cache lock. */
static enum lookup fetch(orch_registry *r, const char *model, const char *request_id,
                         struct orch_backend *b)
{
    struct am_buf body;
    struct curl_slist *headers = NULL;
    char url[ORCH_URL_MAX + 1200], rid[160], why[128];
    enum lookup result = FAILED;
    long status = 0;

    am_buf_init(&body, MAX_ANSWER);
    pthread_mutex_lock(&r->fetch_mu);
    CURL *h = r->curl;
    char *escaped = curl_easy_escape(h, model, 0);
    if (!escaped) {
        pthread_mutex_unlock(&r->fetch_mu);
        return FAILED;
    }
    snprintf(url, sizeof url, "%s/api/llm-backends/model/%s", r->admin_url, escaped);
    curl_free(escaped);
    if (request_id) {
        snprintf(rid, sizeof rid, "X-Request-Id: %.128s", request_id);
        headers = curl_slist_append(headers, rid);
    }
    /* A GET on a handle of its own; the fixed options were set once (am_curl_easy_new). */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_unlock(&r->fetch_mu);
    curl_slist_free_all(headers);

    if (cc != CURLE_OK) {
        AM_LOG_REQ(AM_LOG_WARN, request_id, "registry look-up of %s failed: %s", model,
                   curl_easy_strerror(cc));
    } else if (status == 200) {
        if (orch_registry_parse(body.data ? body.data : "", body.len, b, why, sizeof why) ==
            AM_OK) {
            result = FOUND;
            AM_LOG_REQ(AM_LOG_DEBUG, request_id, "registry: %s is served by %s at %s", model,
                       orch_backend_type_name(b->type), b->url);
        } else {
            AM_LOG_REQ(AM_LOG_WARN, request_id, "registry entry of %s refused: %s", model, why);
        }
    } else if (status == 404 || status == 400) {
        /* 400: a name the registry cannot hold, so it cannot be registered either. */
        result = NOT_FOUND;
        AM_LOG_REQ(AM_LOG_DEBUG, request_id, "registry: %s is not registered; Ollama serves it",
                   model);
    } else {
        AM_LOG_REQ(AM_LOG_WARN, request_id, "registry look-up of %s answered HTTP %ld", model,
                   status);
    }
    am_buf_free(&body);
    return result;
}

static struct entry *find(orch_registry *r, const char *model)
{
    for (int i = 0; i < r->n; i++) {
        if (!strcmp(r->entries[i].model, model))
            return &r->entries[i];
    }
    return NULL;
}

/* A slot for model: a new one, or the idle entry that expires first. NULL when none. */
static struct entry *add(orch_registry *r, const char *model)
{
    struct entry *e = NULL;
    char *name = strdup(model);
    if (!name)
        return NULL;
    if (r->n < r->max) {
        e = &r->entries[r->n++];
    } else {
        for (int i = 0; i < r->n; i++) {
            struct entry *c = &r->entries[i];
            if (!c->fetching && (!e || c->expires_ns < e->expires_ns))
                e = c;
        }
        if (!e) {
            free(name);
            return NULL;
        }
        free(e->model);
    }
    memset(e, 0, sizeof *e);
    e->model = name;
    return e;
}

void orch_registry_get(orch_registry *r, const char *model, const char *request_id,
                       struct orch_backend *b)
{
    if (!r->admin_url) {
        default_backend(b);
        return;
    }
    pthread_mutex_lock(&r->mu);
    struct entry *e;
    for (;;) {
        e = find(r, model);
        if (e && e->known && am_clock_mono_ns() < e->expires_ns) {
            r->st.hits++;
            *b = e->b;
            pthread_mutex_unlock(&r->mu);
            return;
        }
        if (!e || !e->fetching)
            break;
        pthread_cond_wait(&r->fetched, &r->mu);
    }
    r->st.misses++;
    if (!e)
        e = add(r, model);
    if (e)
        e->fetching = true;
    pthread_mutex_unlock(&r->mu);

    struct orch_backend fresh;
    enum lookup result = fetch(r, model, request_id, &fresh);

    pthread_mutex_lock(&r->mu);
    int64_t now = am_clock_mono_ns();
    if (result == FOUND)
        r->st.lookups_found++;
    else if (result == NOT_FOUND)
        r->st.lookups_not_found++;
    else
        r->st.lookups_error++;
    if (result == NOT_FOUND || (result == FAILED && !(e && e->known)))
        default_backend(&fresh);
    if (result == FAILED && e && e->known) {
        /* Keep routing as last known rather than move a model while the admin-api is away. */
        fresh = e->b;
        if (fresh.registered)
            r->st.stale++;
    }
    if (e) {
        e->b = fresh;
        e->known = true;
        e->expires_ns = now + (result == FAILED ? r->retry_ns : r->ttl_ns);
        e->fetching = false;
        pthread_cond_broadcast(&r->fetched);
    }
    *b = fresh;
    pthread_mutex_unlock(&r->mu);
}

void orch_registry_stats(orch_registry *r, struct orch_registry_stats *st)
{
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    st->entries = r->n;
    pthread_mutex_unlock(&r->mu);
}

void orch_registry_write_prom(orch_registry *r, struct am_buf *b)
{
    struct orch_registry_stats st;
    orch_registry_stats(r, &st);
    am_prom_counter(b, "athena_orchestrator_registry_cache_hits_total",
                    "Calls whose model's backend was in the registry cache.", st.hits);
    am_prom_counter(b, "athena_orchestrator_registry_cache_misses_total",
                    "Calls that found no fresh answer in the cache and looked the model up, or "
                    "waited for a look-up in flight.",
                    st.misses);
    am_prom_family(b, "athena_orchestrator_registry_lookups_total", "counter",
                   "Requests to the admin-api's registry, by result.");
    am_prom_sample(b, "athena_orchestrator_registry_lookups_total", "result=\"found\"",
                   (double)st.lookups_found);
    am_prom_sample(b, "athena_orchestrator_registry_lookups_total", "result=\"not_found\"",
                   (double)st.lookups_not_found);
    am_prom_sample(b, "athena_orchestrator_registry_lookups_total", "result=\"error\"",
                   (double)st.lookups_error);
    am_prom_counter(b, "athena_orchestrator_registry_stale_total",
                    "Look-ups that failed while an earlier answer was known, which was kept.",
                    st.stale);
    am_prom_gauge(b, "athena_orchestrator_registry_entries", "Models held in the cache.",
                  st.entries);
}
