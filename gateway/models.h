/* The gateway's model map: OpenAI model names to Ollama models. */
#ifndef GW_MODELS_H
#define GW_MODELS_H

#include <stddef.h>

typedef struct gw_models gw_models;

/*
 * Builds the map from the defaults (gpt-3.5-turbo -> phi3:mini, gpt-4 ->
 * llama3.1:8b), then the entries of file (lines "alias=model" or
 * "alias: model", # comments; NULL for none), then spec ("a=b,c=d"; NULL for
 * none), later entries overriding earlier ones. On a malformed entry returns
 * AM_EINVAL with a one-line reason in err.
 */
int gw_models_load(gw_models **out, const char *file, const char *spec, char *err, size_t errlen);

/* The Ollama model for name: its mapping, or name itself (unknown names pass through). */
const char *gw_models_resolve(const gw_models *m, const char *name);

/* Number of aliases, and the i-th alias and its target, for /v1/models. */
size_t gw_models_count(const gw_models *m);
void gw_models_entry(const gw_models *m, size_t i, const char **alias, const char **target);

void gw_models_free(gw_models *m);

#endif
