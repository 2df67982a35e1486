/* The gateway's model map, from defaults, a file and a variable. */
#include "models.h"
#include "am_error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 256
#define MAX_NAME   256

struct gw_models {
    char alias[MAX_MODELS][MAX_NAME];
    char target[MAX_MODELS][MAX_NAME];
    size_t n;
};

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static int put(gw_models *m, const char *alias, const char *target, const char *origin, char *err,
               size_t errlen)
{
    if (!*alias || !*target || strlen(alias) >= MAX_NAME || strlen(target) >= MAX_NAME) {
        snprintf(err, errlen, "%s: '%s=%s' needs a name and a model of at most %d bytes", origin,
                 alias, target, MAX_NAME - 1);
        return AM_EINVAL;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (!strcmp(m->alias[i], alias)) {
            snprintf(m->target[i], MAX_NAME, "%s", target);
            return AM_OK;
        }
    }
    if (m->n >= MAX_MODELS) {
        snprintf(err, errlen, "%s: more than %d model mappings", origin, MAX_MODELS);
        return AM_EINVAL;
    }
    snprintf(m->alias[m->n], MAX_NAME, "%s", alias);
    snprintf(m->target[m->n], MAX_NAME, "%s", target);
    m->n++;
    return AM_OK;
}

/* Parses "alias=model" or "alias: model" in place. */
static int put_entry(gw_models *m, char *entry, const char *origin, char *err, size_t errlen)
{
    char *sep = strchr(entry, '=');
    if (!sep) {
        /* "alias: model"; the alias itself may not contain ": " */
        sep = strstr(entry, ": ");
    }
    if (!sep) {
        snprintf(err, errlen, "%s: '%s' is not alias=model", origin, trim(entry));
        return AM_EINVAL;
    }
    *sep = '\0';
    char *target = sep + 1;
    return put(m, trim(entry), trim(target), origin, err, errlen);
}

int gw_models_load(gw_models **out, const char *file, const char *spec, char *err, size_t errlen)
{
    gw_models *m = calloc(1, sizeof *m);
    int rc = AM_OK;
    if (!m)
        return AM_ENOMEM;
    put(m, "gpt-3.5-turbo", "phi3:mini", "default", err, errlen);
    put(m, "gpt-4", "llama3.1:8b", "default", err, errlen);

    if (file && *file) {
        FILE *f = fopen(file, "r");
        char line[1024];
        char origin[300];
        int lineno = 0;
        if (!f) {
            snprintf(err, errlen, "GATEWAY_MODEL_MAP_FILE: cannot read %s", file);
            rc = AM_EINVAL;
            goto out;
        }
        while (rc == AM_OK && fgets(line, sizeof line, f)) {
            lineno++;
            char *s = trim(line);
            if (!*s || *s == '#')
                continue;
            snprintf(origin, sizeof origin, "%s:%d", file, lineno);
            rc = put_entry(m, s, origin, err, errlen);
        }
        fclose(f);
    }
    if (rc == AM_OK && spec && *spec) {
        char *copy = strdup(spec);
        char *save = NULL;
        if (!copy) {
            rc = AM_ENOMEM;
            goto out;
        }
        for (char *tok = strtok_r(copy, ",", &save); tok && rc == AM_OK;
             tok = strtok_r(NULL, ",", &save)) {
            if (*trim(tok))
                rc = put_entry(m, tok, "GATEWAY_MODEL_MAP", err, errlen);
        }
        free(copy);
    }
out:
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return AM_OK;
}

const char *gw_models_resolve(const gw_models *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++) {
        if (!strcmp(m->alias[i], name))
            return m->target[i];
    }
    return name;
}

size_t gw_models_count(const gw_models *m)
{
    return m->n;
}

void gw_models_entry(const gw_models *m, size_t i, const char **alias, const char **target)
{
    *alias = m->alias[i];
    *target = m->target[i];
}

void gw_models_free(gw_models *m)
{
    free(m);
}
