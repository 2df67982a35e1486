/* The router's sliding-window summary of recent LLM calls, by model and by backend. */
#include "window.h"
#include "am_error.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLICES 60
#define KEY_MAX    256 /* longer model names are summed under "other" */

struct acc {
    uint32_t requests, errors, ok, rated;
    double latency_sum, tps_sum;
};

struct slice {
    int64_t index; /* now_ms / slice_ms when the slice was last reset */
    struct acc acc[ORCH_WINDOW_MAX_KEYS];
};

struct key {
    char model[KEY_MAX];
    char backend[16];
};

struct orch_window {
    pthread_mutex_t mu;
    int window_s;
    int nslices;
    int64_t slice_ms;
    struct key keys[ORCH_WINDOW_MAX_KEYS];
    int nkeys;
    struct slice slices[MAX_SLICES];
};

int orch_window_new(orch_window **out, int window_s)
{
    if (window_s < 1)
        return AM_EINVAL;
    orch_window *w = calloc(1, sizeof *w);
    if (!w)
        return AM_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    w->window_s = window_s;
    w->nslices = window_s < MAX_SLICES ? window_s : MAX_SLICES;
    w->slice_ms = (int64_t)window_s * 1000 / w->nslices;
    for (int i = 0; i < MAX_SLICES; i++)
        w->slices[i].index = -1;
    *out = w;
    return AM_OK;
}

void orch_window_free(orch_window *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* The key of (model, backend), added when there is room. Called locked. */
static int key_of(orch_window *w, const char *model, const char *backend)
{
    if (strlen(model) >= KEY_MAX)
        model = "other";
    if (strlen(backend) >= sizeof w->keys[0].backend)
        backend = "other";
    for (int i = 0; i < w->nkeys; i++) {
        if (!strcmp(w->keys[i].model, model) && !strcmp(w->keys[i].backend, backend))
            return i;
    }
    if (w->nkeys >= ORCH_WINDOW_MAX_KEYS - 1) {
        /* The last slot sums every pair past the bound. */
        struct key *k = &w->keys[ORCH_WINDOW_MAX_KEYS - 1];
        if (w->nkeys < ORCH_WINDOW_MAX_KEYS) {
            snprintf(k->model, sizeof k->model, "other");
            snprintf(k->backend, sizeof k->backend, "other");
            w->nkeys = ORCH_WINDOW_MAX_KEYS;
        }
        return ORCH_WINDOW_MAX_KEYS - 1;
    }
    struct key *k = &w->keys[w->nkeys];
    snprintf(k->model, sizeof k->model, "%s", model);
    snprintf(k->backend, sizeof k->backend, "%s", backend);
    return w->nkeys++;
}

void orch_window_record(orch_window *w, int64_t now_ms, const char *model, const char *backend,
                        double latency_s, double tokens_per_second, bool error)
{
    int64_t index = now_ms / w->slice_ms;
    pthread_mutex_lock(&w->mu);
    struct slice *s = &w->slices[index % w->nslices];
    if (s->index != index) {
        memset(s->acc, 0, sizeof s->acc);
        s->index = index;
    }
    struct acc *a = &s->acc[key_of(w, model ? model : "", backend ? backend : "")];
    a->requests++;
    if (error) {
        a->errors++;
    } else {
        a->ok++;
        a->latency_sum += latency_s;
        if (tokens_per_second > 0) {
            a->rated++;
            a->tps_sum += tokens_per_second;
        }
    }
    pthread_mutex_unlock(&w->mu);
}

static void add(struct acc *to, const struct acc *from)
{
    to->requests += from->requests;
    to->errors += from->errors;
    to->ok += from->ok;
    to->rated += from->rated;
    to->latency_sum += from->latency_sum;
    to->tps_sum += from->tps_sum;
}

static json_t *summary(const struct acc *a)
{
    return json_pack("{s:I,s:I,s:f,s:f}", "requests", (json_int_t)a->requests, "errors",
                     (json_int_t)a->errors, "avg_latency_seconds",
                     a->ok ? a->latency_sum / a->ok : 0.0, "avg_tokens_per_second",
                     a->rated ? a->tps_sum / a->rated : 0.0);
}

/* Adds a to the row of name in table (n rows of names), adding the row. */
static void merge(struct acc *table, const char **names, int *n, const char *name,
                  const struct acc *a)
{
    int i;
    for (i = 0; i < *n; i++) {
        if (!strcmp(names[i], name))
            break;
    }
    if (i == *n) {
        names[i] = name;
        memset(&table[i], 0, sizeof table[i]);
        (*n)++;
    }
    add(&table[i], a);
}

char *orch_window_json(orch_window *w, int64_t now_ms)
{
    struct acc by_key[ORCH_WINDOW_MAX_KEYS] = {{0}};
    struct acc by_model[ORCH_WINDOW_MAX_KEYS], by_backend[ORCH_WINDOW_MAX_KEYS], total = {0};
    const char *model_names[ORCH_WINDOW_MAX_KEYS], *backend_names[ORCH_WINDOW_MAX_KEYS];
    int nmodels = 0, nbackends = 0;
    int64_t index = now_ms / w->slice_ms;
    char *out = NULL;

    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->nslices; i++) {
        const struct slice *s = &w->slices[i];
        if (s->index < 0 || s->index <= index - w->nslices || s->index > index)
            continue;
        for (int k = 0; k < w->nkeys; k++)
            add(&by_key[k], &s->acc[k]);
    }
    int nkeys = w->nkeys;
    struct key keys[ORCH_WINDOW_MAX_KEYS];
    memcpy(keys, w->keys, sizeof keys[0] * (size_t)nkeys);
    pthread_mutex_unlock(&w->mu);

    for (int k = 0; k < nkeys; k++) {
        if (by_key[k].requests == 0)
            continue;
        add(&total, &by_key[k]);
        merge(by_model, model_names, &nmodels, keys[k].model, &by_key[k]);
        merge(by_backend, backend_names, &nbackends, keys[k].backend, &by_key[k]);
    }

    json_t *models = json_object(), *backends = json_object();
    for (int i = 0; i < nmodels; i++)
        json_object_set_new(models, model_names[i], summary(&by_model[i]));
    for (int i = 0; i < nbackends; i++)
        json_object_set_new(backends, backend_names[i], summary(&by_backend[i]));
    json_t *root =
        json_pack("{s:i,s:I,s:I,s:f,s:f,s:o,s:o}", "window_seconds", w->window_s, "total_requests",
                  (json_int_t)total.requests, "errors", (json_int_t)total.errors,
                  "avg_latency_seconds", total.ok ? total.latency_sum / total.ok : 0.0,
                  "avg_tokens_per_second", total.rated ? total.tps_sum / total.rated : 0.0,
                  "by_model", models, "by_backend", backends);
    if (root)
        out = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(root);
    return out;
}
