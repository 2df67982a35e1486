/* The backend registry: which backend serves a model, asked of the admin-api and cached. */
#ifndef ORCH_REGISTRY_H
#define ORCH_REGISTRY_H

#include "am_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORCH_URL_MAX 2048 /* the admin-api's bound on endpoint_url */

enum orch_backend_type {
    ORCH_BACKEND_OLLAMA,
    ORCH_BACKEND_MLX,  /* an OpenAI-compatible server */
    ORCH_BACKEND_AUTO, /* MLX first, Ollama when MLX fails */
};

/* Where the calls to one model go. */
struct orch_backend {
    enum orch_backend_type type;
    bool registered;        /* false: not registered (or the registry is unreachable): Ollama at
                               OLLAMA_URL, and the fields below are unset */
    char url[ORCH_URL_MAX]; /* the registered endpoint_url */
    int max_tokens;         /* 0: unset */
    bool has_temperature;
    double temperature;
    long timeout_ms; /* 0: unset */
};

typedef struct orch_registry orch_registry;

struct orch_registry_config {
    const char *admin_url; /* e.g. http://localhost:8080; NULL or "": no registry */
    long ttl_ms;     /* how long an answer, found or not found (404), is used; 0: ask every call */
    long retry_ms;   /* after a failed look-up, how long until the next one */
    long timeout_ms; /* one look-up */
    int max_models;  /* answers held; past it the one that expires first is forgotten */
};

struct orch_registry_stats {
    uint64_t hits;   /* a fresh answer was in the cache */
    uint64_t misses; /* none was: the call looked up, or waited for a look-up in flight */
    uint64_t lookups_found, lookups_not_found, lookups_error; /* requests to the admin-api */
    uint64_t stale; /* an expired entry served because the registry could not be asked */
    int entries;
};

/* On success *out is owned by the caller and freed with orch_registry_free. */
int orch_registry_new(orch_registry **out, const struct orch_registry_config *cfg);
void orch_registry_free(orch_registry *r);

/*
 * Fills *b with the backend of model. Asks the admin-api
 * (GET /api/llm-backends/model/{model}) when the cache holds no fresh
 * answer; calls for a model that is being looked up wait for that look-up
 * instead of asking again. An unknown model (404) gives Ollama, cached for
 * the TTL like a found one. A failed look-up gives the last answer known
 * for the model if there is one, else Ollama, and is not repeated for
 * retry_ms. Thread-safe; never fails.
 */
void orch_registry_get(orch_registry *r, const char *model, const char *request_id,
                       struct orch_backend *b);

void orch_registry_stats(orch_registry *r, struct orch_registry_stats *st);

/* Appends the cache's counters in Prometheus text (athena_orchestrator_registry_ names). */
void orch_registry_write_prom(orch_registry *r, struct am_buf *b);

/*
 * Parses an entry as the admin-api answers it into *b (registered true).
 * Returns 0, or AM_EPROTO with a reason in why (whylen bytes). Exposed for
 * tests.
 */
int orch_registry_parse(const char *body, size_t len, struct orch_backend *b, char *why,
                        size_t whylen);

/* "ollama", "mlx" or "auto". */
const char *orch_backend_type_name(enum orch_backend_type t);

#endif
