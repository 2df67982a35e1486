/* The models the simulator claims to have pulled, and /api/tags. */
#ifndef SIM_MODELS_H
#define SIM_MODELS_H

#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_MODELS 64

typedef struct sim_models sim_models;

/*
 * Parses a comma-separated list of model names ("phi3:mini,llama3.1:8b").
 * Names are 1..200 bytes of letters, digits and ._:/- ; a name without a tag
 * gets ":latest", as in Ollama. On success *out owns the list (free with
 * sim_models_free); on a bad list returns AM_EINVAL with a one-line reason.
 */
int sim_models_parse(const char *list, sim_models **out, char *err, size_t errlen);

/* Index of the model a request names ("x" also finds "x:latest"), or -1. */
int sim_models_find(const sim_models *m, const char *name);

/* Number of models, and the name of model i. */
size_t sim_models_count(const sim_models *m);
const char *sim_models_name(const sim_models *m, size_t i);

/*
 * The body of GET /api/tags: {"models": [{name, model, modified_at, size,
 * digest, details}]}, modified_at being unix_us. Malloc'd, or NULL.
 */
char *sim_models_tags_json(const sim_models *m, int64_t unix_us, size_t *len);

/* Frees m; accepts NULL. */
void sim_models_free(sim_models *m);

#endif
