/* The models the simulator claims to have pulled, and /api/tags. */
#include "models.h"
#include "am_error.h"
#include "gen.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_NAME_MAX 200

struct sim_models {
    size_t n;
    char names[SIM_MAX_MODELS][MODEL_NAME_MAX + 8];
};

static int valid_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._:/-", c) != NULL;
}

int sim_models_parse(const char *list, sim_models **out, char *err, size_t errlen)
{
    sim_models *m = calloc(1, sizeof *m);
    if (!m)
        return AM_ENOMEM;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        size_t n = (size_t)(e - s);
        if (n > 0) {
            if (m->n == SIM_MAX_MODELS) {
                snprintf(err, errlen, "at most %d models", SIM_MAX_MODELS);
                goto bad;
            }
            if (n > MODEL_NAME_MAX) {
                snprintf(err, errlen, "model name '%.20s...' is longer than %d bytes", s,
                         MODEL_NAME_MAX);
                goto bad;
            }
            for (size_t i = 0; i < n; i++) {
                if (!valid_char(s[i])) {
                    snprintf(err, errlen,
                             "model name '%.*s' has a character other than "
                             "letters, digits and ._:/-",
                             (int)n, s);
                    goto bad;
                }
            }
            char *name = m->names[m->n];
            memcpy(name, s, n);
            name[n] = '\0';
            if (!memchr(s, ':', n))
                strcat(name, ":latest");
            if (sim_models_find(m, name) >= 0) {
                snprintf(err, errlen, "model '%s' is listed twice", name);
                goto bad;
            }
            m->n++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    if (m->n == 0) {
        snprintf(err, errlen, "the model list is empty");
        goto bad;
    }
    *out = m;
    return AM_OK;
bad:
    free(m);
    return AM_EINVAL;
}

int sim_models_find(const sim_models *m, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < m->n; i++) {
        const char *have = m->names[i];
        if (!strcmp(have, name))
            return (int)i;
        /* "llama3" names "llama3:latest". */
        if (!strchr(name, ':') && !strncmp(have, name, nlen) && !strcmp(have + nlen, ":latest"))
            return (int)i;
    }
    return -1;
}

size_t sim_models_count(const sim_models *m)
{
    return m->n;
}

const char *sim_models_name(const sim_models *m, size_t i)
{
    return m->names[i];
}

static uint64_t hash64(const char *s, uint64_t salt)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ salt;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/*
 * Plausible details from the name alone: the family is the name up to its
 * first digit or colon ("llama3.1:8b" -> "llama"), the parameter size comes
 * from a tag like "8b" (else 3.8B), the file is a Q4_0 GGUF of about 0.6
 * bytes a parameter.
 */
static json_t *model_json(const char *name, const char *modified)
{
    char family[MODEL_NAME_MAX + 8], params[32], digest[65];
    size_t flen = strcspn(name, "0123456789:");
    if (flen == 0)
        flen = strcspn(name, ":");
    memcpy(family, name, flen);
    family[flen] = '\0';

    double billions = 3.8;
    const char *tag = strchr(name, ':');
    if (tag) {
        char *end = NULL;
        double v = strtod(tag + 1, &end);
        if (end != tag + 1 && (*end == 'b' || *end == 'B') && v > 0 && v < 10000)
            billions = v;
    }
    snprintf(params, sizeof params, "%.1fB", billions);
    for (int i = 0; i < 4; i++)
        snprintf(digest + 16 * i, 17, "%016llx", (unsigned long long)hash64(name, (uint64_t)i));

    json_t *details = json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format",
                                "gguf", "family", family, "families", family, "parameter_size",
                                params, "quantization_level", "Q4_0");
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:o}", "name", name, "model", name, "modified_at",
                     modified, "size", (json_int_t)(billions * 0.6e9), "digest", digest, "details",
                     details);
}

char *sim_models_tags_json(const sim_models *m, int64_t unix_us, size_t *len)
{
    char modified[48];
    sim_format_time(unix_us, modified, sizeof modified);
    json_t *list = json_array();
    for (size_t i = 0; list && i < m->n; i++) {
        json_t *one = model_json(m->names[i], modified);
        if (!one || json_array_append_new(list, one)) {
            json_decref(list);
            return NULL;
        }
    }
    json_t *root = json_pack("{s:o}", "models", list);
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (body)
        *len = strlen(body);
    return body;
}

void sim_models_free(sim_models *m)
{
    free(m);
}
