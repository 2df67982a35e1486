/*
 * The JSON request bodies of the router's calls, written straight into a
 * buffer. They are a fixed shape around a few strings; building them as
 * jansson objects and dumping those took a tenth of the orchestrator's CPU
 * per query.
 */
#include "bodies.h"
#include "am_buf.h"

#include <stdio.h>
#include <string.h>

#define MAX_BODY (64 << 20) /* far above any prompt the pipeline builds */

/* A body being written; the first failed append (out of memory, or the bound) sticks. */
struct out {
    struct am_buf b;
    int rc;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->rc == 0 && n > 0)
        o->rc = am_buf_append(&o->b, s, n);
}

/* Appends s as a JSON string (am_buf_json_string: JSON's escapes, UTF-8 as it is). */
static void put_string(struct out *o, const char *s)
{
    if (o->rc == 0)
        o->rc = am_buf_json_string(&o->b, s, strlen(s));
}

/*
 * A number as jansson writes a real: 17 significant digits, so that it
 * reads back the same; ".0" when that looks like an integer; an exponent
 * without its sign or leading zeros (1e-07 is 1e-7).
 */
static void put_real(struct out *o, double v)
{
    char s[40];
    int n = snprintf(s, sizeof s, "%.17g", v);
    char *e = strchr(s, 'e');
    if (e) {
        char *digits = e + 1 + (e[1] == '+' || e[1] == '-'), *from = digits;
        if (e[1] == '+')
            digits = e + 1;
        while (*from == '0' && from[1])
            from++;
        memmove(digits, from, strlen(from) + 1);
        n = (int)strlen(s);
    }
    put(o, s, (size_t)n);
    if (!strpbrk(s, ".e"))
        put(o, ".0", 2);
}

/* {"model":...,"messages":[...],"stream":false */
static void put_head(struct out *o, const struct orch_call *call)
{
    put(o, "{\"model\":", 9);
    put_string(o, call->model);
    put(o, ",\"messages\":[", 13);
    for (size_t i = 0; i < call->nmessages; i++) {
        put(o, i ? ",{\"role\":" : "{\"role\":", i ? 9 : 8);
        put_string(o, call->messages[i].role);
        put(o, ",\"content\":", 11);
        put_string(o, call->messages[i].content);
        put(o, "}", 1);
    }
    put(o, "],\"stream\":false", 16);
}

/* The plan's options as object members, the token limit under the backend's name for it. */
static void put_options(struct out *o, const struct orch_plan *p, const char *max_tokens_key)
{
    char s[64];
    const char *sep = "";
    if (p->max_tokens > 0) {
        int n = snprintf(s, sizeof s, "\"%s\":%d", max_tokens_key, p->max_tokens);
        put(o, s, (size_t)n);
        sep = ",";
    }
    if (p->has_temperature) {
        put(o, sep, strlen(sep));
        put(o, "\"temperature\":", 14);
        put_real(o, p->temperature);
    }
}

static char *finish(struct out *o)
{
    if (o->rc) {
        am_buf_free(&o->b);
        return NULL;
    }
    return am_buf_take(&o->b, NULL);
}

char *orch_body_ollama(const struct orch_call *call, const struct orch_plan *p)
{
    struct out o = {.rc = 0};
    am_buf_init(&o.b, MAX_BODY);
    put_head(&o, call);
    put(&o, ",\"options\":{", 12);
    put_options(&o, p, "num_predict");
    put(&o, "}}", 2);
    return finish(&o);
}

char *orch_body_openai(const struct orch_call *call, const struct orch_plan *p)
{
    struct out o = {.rc = 0};
    am_buf_init(&o.b, MAX_BODY);
    put_head(&o, call);
    if (p->max_tokens > 0 || p->has_temperature)
        put(&o, ",", 1);
    put_options(&o, p, "max_tokens");
    put(&o, "}", 1);
    return finish(&o);
}
