/* Translation between OpenAI chat completions and Ollama's /api/chat. */
#include "openai.h"
#include "am_buf.h"
#include "am_error.h"
#include "am_json.h"
#include "am_metric.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGES 1024

static int fail(char *err, char *param, size_t errlen, const char *field, const char *fmt,
                const char *detail)
{
    snprintf(err, errlen, fmt, detail ? detail : "");
    snprintf(param, errlen, "%s", field ? field : "");
    return AM_EINVAL;
}

/*
 * The request is read with yajl's event parser, without building a tree:
 * the fields Ollama gets are written into buffers as the parser passes
 * them, everything else is skipped, and the checks then run in a fixed
 * order (model, messages, stream, stream_options, n, response_format,
 * temperature, top_p, frequency_penalty, presence_penalty, max_tokens,
 * seed, stop, user), so that a body with several faults is answered with the
 * same one whatever the order of its fields. A JSON schema
 * (response_format.json_schema.schema) is the one value passed on as it
 * is: its text is copied from the body.
 */
enum rq_kind { V_ABSENT, V_NULL, V_BOOL, V_INT, V_REAL, V_STRING, V_OBJECT, V_ARRAY };

/* A top-level field's value as far as the checks need it. */
struct rq_value {
    enum rq_kind kind;
    bool b;
    long long i;
    double d;
};

enum rq_field {
    F_OTHER,
    F_MODEL,
    F_MESSAGES,
    F_STREAM,
    F_STREAM_OPTIONS,
    F_N,
    F_TEMPERATURE,
    F_TOP_P,
    F_MAX_TOKENS,
    F_MAX_COMPLETION_TOKENS,
    F_SEED,
    F_STOP,
    F_FREQUENCY_PENALTY,
    F_PRESENCE_PENALTY,
    F_RESPONSE_FORMAT,
    F_USER,
    F_NFIELDS
};

static const char *const rq_fields[F_NFIELDS] = {
    [F_MODEL] = "model",
    [F_MESSAGES] = "messages",
    [F_STREAM] = "stream",
    [F_STREAM_OPTIONS] = "stream_options",
    [F_N] = "n",
    [F_TEMPERATURE] = "temperature",
    [F_TOP_P] = "top_p",
    [F_MAX_TOKENS] = "max_tokens",
    [F_MAX_COMPLETION_TOKENS] = "max_completion_tokens",
    [F_SEED] = "seed",
    [F_STOP] = "stop",
    [F_FREQUENCY_PENALTY] = "frequency_penalty",
    [F_PRESENCE_PENALTY] = "presence_penalty",
    [F_RESPONSE_FORMAT] = "response_format",
    [F_USER] = "user",
};

/* What an open container is. */
enum rq_ctx {
    C_TOP,
    C_MESSAGES,
    C_MESSAGE,
    C_PARTS,
    C_PART,
    C_STREAM_OPTIONS,
    C_STOP,
    C_RESPONSE_FORMAT,
    C_JSON_SCHEMA,
    C_SCHEMA, /* the schema itself: skipped, its text copied */
    C_SKIP
};

/*
 * Keys that matter inside a message (role..content), a content part
 * (text..type), response_format (type..json_schema), its json_schema
 * (schema) and stream_options (include_usage): each object's keys are a
 * run of this list.
 */
enum rq_inner {
    I_OTHER,
    I_ROLE,
    I_CONTENT,
    I_TEXT,
    I_TYPE,
    I_JSON_SCHEMA,
    I_SCHEMA,
    I_INCLUDE_USAGE
};

static const char *const rq_inner_keys[] = {
    [I_ROLE] = "role",
    [I_CONTENT] = "content",
    [I_TEXT] = "text",
    [I_TYPE] = "type",
    [I_JSON_SCHEMA] = "json_schema",
    [I_SCHEMA] = "schema",
    [I_INCLUDE_USAGE] = "include_usage",
};

/* The run of rq_inner_keys an object of each context has; first 0: none is read. */
static const struct {
    enum rq_inner first, last;
} rq_ctx_keys[C_SKIP] = {
    [C_MESSAGE] = {I_ROLE, I_CONTENT},
    [C_PART] = {I_TEXT, I_TYPE},
    [C_STREAM_OPTIONS] = {I_INCLUDE_USAGE, I_INCLUDE_USAGE},
    [C_RESPONSE_FORMAT] = {I_TYPE, I_JSON_SCHEMA},
    [C_JSON_SCHEMA] = {I_SCHEMA, I_SCHEMA},
};

/* response_format.type */
enum rq_format { RF_ABSENT, RF_BAD, RF_TEXT, RF_JSON_OBJECT, RF_JSON_SCHEMA };
static const char *const rq_formats[] = {
    [RF_TEXT] = "text", [RF_JSON_OBJECT] = "json_object", [RF_JSON_SCHEMA] = "json_schema"};

#define RQ_MAX_DEPTH 8 /* deeper containers are only skipped */

static const char *const roles[] = {"system", "user", "assistant", "tool"};
#define NROLES ((int)(sizeof roles / sizeof roles[0]))

struct rq_scan {
    struct am_json_parse json;
    const char *body;
    int depth; /* containers open */
    enum rq_ctx ctx[RQ_MAX_DEPTH + 1];
    bool not_object;             /* the body is JSON but not an object */
    enum rq_field field;         /* the top-level field whose value comes next */
    enum rq_inner inner;         /* the inner key whose value comes next */
    unsigned seen;               /* top-level fields met, by bit */
    unsigned inner_seen[C_SKIP]; /* keys met in the open object of each context (bits) */
    struct rq_value v[F_NFIELDS];
    /* "model" */
    char model[256];
    size_t model_len;
    char user[129]; /* "user" */
    size_t user_len;
    /* "messages": each one written out as it ends, until the first bad one. */
    struct am_buf msgs;
    size_t nmsgs;
    long bad_msg;       /* index of the first bad message, -1: none */
    bool bad_msg_role;  /* its role is bad (else its content) */
    bool bad_msg_parts; /* its content is an array with a part that is not text */
    /* the message being read */
    int role; /* index in roles, -1: none or unknown */
    enum rq_kind content_kind;
    bool content_bad;
    struct am_buf content; /* escaped text, without the quotes */
    /* the content part being read */
    bool part_type_text, part_text, part_bad;
    /* stream_options.include_usage */
    enum rq_kind include_usage_kind;
    bool include_usage;
    /* "response_format" */
    enum rq_format format;
    enum rq_kind json_schema_kind, schema_kind;
    size_t schema_from, schema_to; /* the schema's text in the body; to 0: none */
    /* "stop": the strings, escaped and comma-separated */
    struct am_buf stop;
    size_t nstop;
    bool stop_bad;
    int alloc_rc; /* a buffer was full or out of memory */
};

/* A string value kept in out (cap bytes, cut short if longer); returns its whole length. */
static size_t copy_text(char *out, size_t cap, const unsigned char *s, size_t len)
{
    size_t n = len < cap ? len : cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    return len;
}

static enum rq_ctx rq_top(const struct rq_scan *sc)
{
    return sc->depth > RQ_MAX_DEPTH ? C_SKIP : sc->ctx[sc->depth];
}

static void rq_alloc(struct rq_scan *sc, int rc)
{
    if (rc && !sc->alloc_rc)
        sc->alloc_rc = rc;
}

/* The message being read is over: written out, or remembered as the first bad one. */
static void rq_message_end(struct rq_scan *sc, bool is_object)
{
    size_t i = sc->nmsgs++;
    if (sc->bad_msg >= 0)
        return;
    if (!is_object || sc->role < 0) {
        sc->bad_msg = (long)i;
        sc->bad_msg_role = true;
        return;
    }
    if (sc->content_bad) {
        sc->bad_msg = (long)i;
        sc->bad_msg_role = false;
        sc->bad_msg_parts = sc->content_kind == V_ARRAY;
        return;
    }
    rq_alloc(sc, am_buf_printf(&sc->msgs, "%s{\"role\":\"%s\",\"content\":\"", i ? "," : "",
                               roles[sc->role]));
    if (sc->content.len)
        rq_alloc(sc, am_buf_append(&sc->msgs, sc->content.data, sc->content.len));
    rq_alloc(sc, am_buf_lit(&sc->msgs, "\"}"));
}

static void rq_message_begin(struct rq_scan *sc)
{
    sc->inner_seen[C_MESSAGE] = 0;
    sc->role = -1;
    sc->content_kind = V_ABSENT;
    sc->content_bad = false;
    sc->content.len = 0;
}

/*
 * A value begins: a scalar (kind, with its string or number) or a container
 * (V_OBJECT, V_ARRAY). Returns the context a container opens.
 */
static enum rq_ctx rq_value(struct rq_scan *sc, enum rq_kind kind, const unsigned char *s,
                            size_t len, long long i, double d)
{
    enum rq_ctx at = rq_top(sc);
    if (sc->depth == 0) {
        if (kind != V_OBJECT && kind != V_ARRAY)
            am_json_refuse(&sc->json, "'[' or '{' expected"); /* as jansson says it */
        sc->not_object = kind != V_OBJECT;
        return sc->not_object ? C_SKIP : C_TOP;
    }
    if (sc->not_object)
        return C_SKIP;
    bool text = kind == V_STRING;
    switch (at) {
    case C_TOP: {
        enum rq_field f = sc->field;
        sc->field = F_OTHER;
        if (f == F_OTHER)
            return C_SKIP;
        struct rq_value *v = &sc->v[f];
        v->kind = kind;
        v->b = i != 0;
        v->i = i;
        v->d = d;
        if (f == F_MODEL && text) {
            sc->model_len = copy_text(sc->model, sizeof sc->model, s, len);
        } else if (f == F_USER && text) {
            sc->user_len = copy_text(sc->user, sizeof sc->user, s, len);
        } else if (f == F_STOP && text) {
            rq_alloc(sc, am_buf_json_string(&sc->stop, (const char *)s, len));
            sc->nstop = 1;
        }
        if (kind == V_OBJECT)
            return f == F_STREAM_OPTIONS    ? C_STREAM_OPTIONS
                   : f == F_RESPONSE_FORMAT ? C_RESPONSE_FORMAT
                                            : C_SKIP;
        if (kind == V_ARRAY)
            return f == F_MESSAGES ? C_MESSAGES : f == F_STOP ? C_STOP : C_SKIP;
        return C_SKIP;
    }
    case C_MESSAGES:
        if (kind == V_OBJECT) {
            rq_message_begin(sc);
            return C_MESSAGE;
        }
        rq_message_end(sc, false);
        return C_SKIP;
    case C_MESSAGE: {
        enum rq_inner k = sc->inner;
        sc->inner = I_OTHER;
        if (k == I_ROLE) {
            if (text)
                sc->role = am_json_name(roles, 0, NROLES - 1, s, len);
        } else if (k == I_CONTENT) {
            sc->content_kind = kind;
            if (text) {
                rq_alloc(sc, am_buf_json_escaped(&sc->content, (const char *)s, len));
            } else if (kind == V_ARRAY) {
                return C_PARTS;
            } else if (kind != V_NULL) {
                sc->content_bad = true;
            }
        }
        return C_SKIP;
    }
    case C_PARTS:
        if (kind == V_OBJECT) {
            sc->inner_seen[C_PART] = 0;
            sc->part_type_text = sc->part_text = sc->part_bad = false;
            return C_PART;
        }
        sc->content_bad = true;
        return C_SKIP;
    case C_PART: {
        enum rq_inner k = sc->inner;
        sc->inner = I_OTHER;
        if (k == I_TYPE) {
            sc->part_type_text = text && len == 4 && !memcmp(s, "text", 4);
            if (!sc->part_type_text)
                sc->part_bad = true;
        } else if (k == I_TEXT) {
            if (!text) {
                sc->part_bad = true;
            } else {
                sc->part_text = true;
                rq_alloc(sc, am_buf_json_escaped(&sc->content, (const char *)s, len));
            }
        }
        return C_SKIP;
    }
    case C_STREAM_OPTIONS:
        if (sc->inner == I_INCLUDE_USAGE) {
            sc->include_usage_kind = kind;
            sc->include_usage = kind == V_BOOL && i;
        }
        sc->inner = I_OTHER;
        return C_SKIP;
    case C_RESPONSE_FORMAT: {
        enum rq_inner k = sc->inner;
        sc->inner = I_OTHER;
        if (k == I_TYPE) {
            int f = text ? am_json_name(rq_formats, RF_TEXT, RF_JSON_SCHEMA, s, len) : -1;
            sc->format = f < 0 ? RF_BAD : (enum rq_format)f;
        } else if (k == I_JSON_SCHEMA) {
            sc->json_schema_kind = kind;
            if (kind == V_OBJECT)
                return C_JSON_SCHEMA;
        }
        return C_SKIP;
    }
    case C_JSON_SCHEMA: {
        enum rq_inner k = sc->inner;
        sc->inner = I_OTHER;
        if (k == I_SCHEMA)
            sc->schema_kind = kind;
        if (k == I_SCHEMA && kind == V_OBJECT) {
            /* yajl has just read the '{'. */
            sc->schema_from = yajl_get_bytes_consumed(sc->json.parser) - 1;
            return C_SCHEMA;
        }
        return C_SKIP;
    }
    case C_STOP:
        if (!text) {
            sc->stop_bad = true;
        } else {
            if (sc->nstop++ > 0)
                rq_alloc(sc, am_buf_lit(&sc->stop, ","));
            rq_alloc(sc, am_buf_json_string(&sc->stop, (const char *)s, len));
        }
        return C_SKIP;
    default:
        return C_SKIP;
    }
}

static int rq_null(void *ctx)
{
    rq_value(ctx, V_NULL, NULL, 0, 0, 0);
    return !((struct rq_scan *)ctx)->json.refused;
}

static int rq_boolean(void *ctx, int b)
{
    rq_value(ctx, V_BOOL, NULL, 0, b, 0);
    return !((struct rq_scan *)ctx)->json.refused;
}

static int rq_integer(void *ctx, long long i)
{
    rq_value(ctx, V_INT, NULL, 0, i, (double)i);
    return !((struct rq_scan *)ctx)->json.refused;
}

static int rq_double(void *ctx, double d)
{
    rq_value(ctx, V_REAL, NULL, 0, 0, d);
    return !((struct rq_scan *)ctx)->json.refused;
}

static int rq_string(void *ctx, const unsigned char *s, size_t len)
{
    struct rq_scan *sc = ctx;
    /*
     * yajl's UTF-8 check lets overlong forms and NUL characters through:
     * refused here, as jansson refuses them in the other bodies (unpaired
     * surrogate escapes am_json_parse refuses before the parse).
     */
    if (!am_utf8_valid_len((const char *)s, len)) {
        return am_json_refuse(&sc->json, "a string that is not UTF-8 text");
    }
    rq_value(sc, V_STRING, s, len, 0, 0);
    return !sc->json.refused;
}

static int rq_open(struct rq_scan *sc, enum rq_kind kind)
{
    if (sc->depth >= AM_JSON_MAX_DEPTH) {
        return am_json_refuse(&sc->json, "maximum parsing depth reached");
    }
    enum rq_ctx c = rq_value(sc, kind, NULL, 0, 0, 0);
    sc->depth++;
    if (sc->depth <= RQ_MAX_DEPTH)
        sc->ctx[sc->depth] = c;
    return !sc->json.refused;
}

static int rq_close(struct rq_scan *sc)
{
    enum rq_ctx c = rq_top(sc);
    if (--sc->depth == 0)
        am_json_value_end(&sc->json);
    if (c == C_SCHEMA) {
        /* yajl has just read the '}'. */
        size_t to = yajl_get_bytes_consumed(sc->json.parser);
        if (sc->body[sc->schema_from] == '{' && sc->body[to - 1] == '}')
            sc->schema_to = to;
    }
    if (c == C_MESSAGE) {
        rq_message_end(sc, true);
    } else if (c == C_PART) {
        if (sc->part_bad || !sc->part_type_text || !sc->part_text)
            sc->content_bad = true;
    }
    return 1;
}

static int rq_start_map(void *ctx)
{
    return rq_open(ctx, V_OBJECT);
}

static int rq_end_map(void *ctx)
{
    return rq_close(ctx);
}

static int rq_start_array(void *ctx)
{
    return rq_open(ctx, V_ARRAY);
}

static int rq_end_array(void *ctx)
{
    return rq_close(ctx);
}

static int rq_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct rq_scan *sc = ctx;
    if (!am_utf8_valid_len((const char *)key, len)) {
        return am_json_refuse(&sc->json, "a key that is not UTF-8 text");
    }
    sc->field = F_OTHER;
    sc->inner = I_OTHER;
    enum rq_ctx at = rq_top(sc);
    int k;
    if (at == C_TOP) {
        k = am_json_key(&sc->json, rq_fields, F_MODEL, F_NFIELDS - 1, &sc->seen, key, len);
        if (k >= 0)
            sc->field = (enum rq_field)k;
    } else if (at != C_SKIP && rq_ctx_keys[at].first) {
        k = am_json_key(&sc->json, rq_inner_keys, rq_ctx_keys[at].first, rq_ctx_keys[at].last,
                        &sc->inner_seen[at], key, len);
        if (k >= 0)
            sc->inner = (enum rq_inner)k;
    } else {
        return 1;
    }
    return k != AM_JSON_KEY_TWICE;
}

static const yajl_callbacks rq_callbacks = {
    .yajl_null = rq_null,
    .yajl_boolean = rq_boolean,
    .yajl_integer = rq_integer,
    .yajl_double = rq_double,
    .yajl_string = rq_string,
    .yajl_start_map = rq_start_map,
    .yajl_map_key = rq_map_key,
    .yajl_end_map = rq_end_map,
    .yajl_start_array = rq_start_array,
    .yajl_end_array = rq_end_array,
};

/* Parses the body into sc; 0, or AM_EINVAL with the reason in err ("invalid JSON at ..."). */
static int rq_parse(struct rq_scan *sc, const char *body, size_t len, char *err, char *param,
                    size_t errlen)
{
    const char *bad = am_json_parse(&sc->json, &rq_callbacks, sc, body, len);
    if (!bad)
        return AM_OK;
    int line = 1, column = 0;
    for (size_t i = 0; i < sc->json.at && i < len; i++) {
        if (body[i] == '\n')
            line++, column = 0;
        else
            column++;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "invalid JSON at line %d column %d: %s", line, column, bad);
    return fail(err, param, errlen, NULL, "%s", msg);
}

/* A JSON number as Ollama gets it: integers as they are, reals in the fewest digits that read back.
 */
static int write_number(struct am_buf *b, const struct rq_value *v)
{
    if (v->kind == V_INT)
        return am_buf_printf(b, "%lld", v->i);
    char text[32];
    snprintf(text, sizeof text, "%.15g", v->d);
    if (strtod(text, NULL) != v->d)
        snprintf(text, sizeof text, "%.17g", v->d);
    return am_buf_append(b, text, strlen(text));
}

static bool present(const struct rq_value *v)
{
    return v->kind != V_ABSENT && v->kind != V_NULL;
}

/* Opens the "options" object on its first entry and writes the key. */
static int option_key(struct am_buf *b, int *options, const char *key)
{
    return am_buf_printf(b, "%s\"%s\":", (*options)++ ? "," : ",\"options\":{", key);
}

static int number(const struct rq_value *v, const char *key, double min, double max,
                  struct am_buf *b, int *options, char *err, char *param, size_t errlen)
{
    char msg[160];
    if (!present(v))
        return AM_OK;
    if ((v->kind != V_INT && v->kind != V_REAL) || v->d < min || v->d > max) {
        snprintf(msg, sizeof msg, "%s must be a number between %g and %g", key, min, max);
        return fail(err, param, errlen, key, "%s", msg);
    }
    return option_key(b, options, key) || write_number(b, v) ? AM_ENOMEM : AM_OK;
}

/*
 * Validates the body and writes the Ollama request:
 * {"model", "messages": [{"role", "content"}...], "stream", "options"}.
 */
int gw_parse_request(const char *body, size_t len, const gw_models *models, struct gw_request *out,
                     char *err, char *param, size_t errlen)
{
    struct rq_scan sc = {.bad_msg = -1, .body = body};
    struct am_buf b;
    int rc = AM_EINVAL, options = 0;
    char msg[256];

    memset(out, 0, sizeof *out);
    param[0] = err[0] = '\0';
    size_t bound = len * 6 + 4096; /* escaping grows text at most six times */
    am_buf_init(&b, bound);
    am_buf_init(&sc.msgs, bound);
    am_buf_init(&sc.content, bound);
    am_buf_init(&sc.stop, bound);
    if (rq_parse(&sc, body, len, err, param, errlen))
        goto out;
    if (sc.alloc_rc)
        goto oom;
    if (sc.not_object) {
        fail(err, param, errlen, NULL, "%sthe body must be a JSON object", NULL);
        goto out;
    }
    if (sc.v[F_MODEL].kind != V_STRING || sc.model_len == 0 ||
        sc.model_len >= sizeof out->requested_model) {
        fail(err, param, errlen, "model", "%smodel must be a non-empty string", NULL);
        goto out;
    }
    snprintf(out->requested_model, sizeof out->requested_model, "%s", sc.model);
    snprintf(out->model, sizeof out->model, "%s", gw_models_resolve(models, out->requested_model));

    if (sc.v[F_MESSAGES].kind != V_ARRAY || sc.nmsgs == 0 || sc.nmsgs > MAX_MESSAGES) {
        fail(err, param, errlen, "messages",
             "%smessages must be a non-empty array (at most 1024 messages)", NULL);
        goto out;
    }
    if (sc.bad_msg >= 0) {
        char field[64];
        if (sc.bad_msg_role) {
            snprintf(field, sizeof field, "messages[%ld].role", sc.bad_msg);
            fail(err, param, errlen, field, "%s must be system, user, assistant or tool", field);
        } else {
            snprintf(field, sizeof field, "messages[%ld].content", sc.bad_msg);
            /* Which fault: a part that is not text, or content of another type. */
            fail(err, param, errlen, field,
                 sc.bad_msg_parts ? "%s: only text parts are supported"
                                  : "%s must be a string or an array of text parts",
                 field);
        }
        goto out;
    }
    if (am_buf_lit(&b, "{\"model\":") || am_buf_json_string(&b, out->model, strlen(out->model)) ||
        am_buf_lit(&b, ",\"messages\":[") || am_buf_append(&b, sc.msgs.data, sc.msgs.len))
        goto oom;

    const struct rq_value *stream = &sc.v[F_STREAM];
    if (present(stream) && stream->kind != V_BOOL) {
        fail(err, param, errlen, "stream", "%sstream must be true or false", NULL);
        goto out;
    }
    out->stream = stream->kind == V_BOOL && stream->b;
    if (am_buf_printf(&b, "],\"stream\":%s", out->stream ? "true" : "false"))
        goto oom;
    const struct rq_value *so = &sc.v[F_STREAM_OPTIONS];
    if (present(so)) {
        if (so->kind != V_OBJECT ||
            (sc.include_usage_kind != V_ABSENT && sc.include_usage_kind != V_BOOL)) {
            fail(err, param, errlen, "stream_options",
                 "%sstream_options must be an object with a boolean include_usage", NULL);
            goto out;
        }
        out->include_usage = sc.include_usage;
    }
    const struct rq_value *n = &sc.v[F_N];
    if (present(n) && (n->kind != V_INT || n->i != 1)) {
        fail(err, param, errlen, "n", "%sonly n=1 is supported", NULL);
        goto out;
    }

    const struct rq_value *rf = &sc.v[F_RESPONSE_FORMAT];
    if (present(rf)) {
        if (rf->kind != V_OBJECT) {
            fail(err, param, errlen, "response_format",
                 "%sresponse_format must be an object with a type", NULL);
            goto out;
        }
        if (sc.format == RF_ABSENT || sc.format == RF_BAD) {
            fail(err, param, errlen, "response_format.type",
                 "%sresponse_format.type must be text, json_object or json_schema", NULL);
            goto out;
        }
        if (sc.format == RF_JSON_SCHEMA && sc.json_schema_kind != V_OBJECT) {
            fail(err, param, errlen, "response_format.json_schema",
                 "%sresponse_format.json_schema must be an object", NULL);
            goto out;
        }
        if (sc.format == RF_JSON_SCHEMA && sc.schema_kind != V_ABSENT && sc.schema_kind != V_NULL &&
            !sc.schema_to) {
            fail(err, param, errlen, "response_format.json_schema.schema",
                 "%sresponse_format.json_schema.schema must be a JSON schema object", NULL);
            goto out;
        }
        /*
         * Ollama's "format": the schema the answer must follow, or "json"
         * (a json_schema without a schema asks for JSON all the same).
         */
        if (sc.format == RF_JSON_SCHEMA && sc.schema_to) {
            if (am_buf_lit(&b, ",\"format\":") ||
                am_buf_append(&b, body + sc.schema_from, sc.schema_to - sc.schema_from))
                goto oom;
        } else if (sc.format != RF_TEXT && am_buf_lit(&b, ",\"format\":\"json\"")) {
            goto oom;
        }
    }

    if (number(&sc.v[F_TEMPERATURE], "temperature", 0, 2, &b, &options, err, param, errlen) ||
        number(&sc.v[F_TOP_P], "top_p", 0, 1, &b, &options, err, param, errlen) ||
        number(&sc.v[F_FREQUENCY_PENALTY], "frequency_penalty", -2, 2, &b, &options, err, param,
               errlen) ||
        number(&sc.v[F_PRESENCE_PENALTY], "presence_penalty", -2, 2, &b, &options, err, param,
               errlen))
        goto fail;
    bool completion = sc.v[F_MAX_COMPLETION_TOKENS].kind != V_ABSENT;
    const char *tok_key = completion ? "max_completion_tokens" : "max_tokens";
    const struct rq_value *max_tokens = &sc.v[completion ? F_MAX_COMPLETION_TOKENS : F_MAX_TOKENS];
    if (present(max_tokens)) {
        if (max_tokens->kind != V_INT || max_tokens->i < 1 || max_tokens->i > 1000000) {
            snprintf(msg, sizeof msg, "%s must be a whole number from 1 to 1000000", tok_key);
            fail(err, param, errlen, tok_key, "%s", msg);
            goto out;
        }
        if (option_key(&b, &options, "num_predict") || write_number(&b, max_tokens))
            goto oom;
    }
    const struct rq_value *seed = &sc.v[F_SEED];
    if (present(seed)) {
        if (seed->kind != V_INT) {
            fail(err, param, errlen, "seed", "%sseed must be a whole number", NULL);
            goto out;
        }
        if (option_key(&b, &options, "seed") || write_number(&b, seed))
            goto oom;
    }
    const struct rq_value *stop = &sc.v[F_STOP];
    if (present(stop)) {
        if ((stop->kind != V_STRING && stop->kind != V_ARRAY) || sc.stop_bad || sc.nstop > 4) {
            fail(err, param, errlen, "stop", "%sstop must be a string or up to 4 strings", NULL);
            goto out;
        }
        if (option_key(&b, &options, "stop") || am_buf_lit(&b, "[") ||
            am_buf_append(&b, sc.stop.data, sc.stop.len) || am_buf_lit(&b, "]"))
            goto oom;
    }
    const struct rq_value *user = &sc.v[F_USER];
    if (present(user)) {
        if (user->kind != V_STRING || sc.user_len >= sizeof out->user) {
            fail(err, param, errlen, "user", "%suser must be a string of at most 128 bytes", NULL);
            goto out;
        }
        snprintf(out->user, sizeof out->user, "%s", sc.user);
    }
    if ((options && am_buf_lit(&b, "}")) || am_buf_lit(&b, "}"))
        goto oom;
    out->ollama_body = am_buf_take(&b, NULL);
    rc = AM_OK;
    goto out;
fail:
    if (err[0])
        goto out;
oom:
    fail(err, param, errlen, NULL, "%sout of memory", NULL);
out:
    am_buf_free(&b);
    am_buf_free(&sc.msgs);
    am_buf_free(&sc.content);
    am_buf_free(&sc.stop);
    return rc;
}

void gw_request_free(struct gw_request *r)
{
    if (!r)
        return;
    free(r->ollama_body);
    r->ollama_body = NULL;
}

const char *gw_finish_reason(const char *done_reason)
{
    return done_reason && !strcmp(done_reason, "length") ? "length" : "stop";
}

/* "id", "object", "created" and "model", the head every answer object starts with. */
static int write_head(struct am_buf *b, const char *id, const char *object, int64_t created,
                      const char *model)
{
    if (am_buf_lit(b, "{\"id\":") || am_buf_json_string(b, id, strlen(id)) ||
        am_buf_printf(b, ",\"object\":\"%s\",\"created\":%" PRId64 ",\"model\":", object,
                      created) ||
        am_buf_json_string(b, model, strlen(model)))
        return AM_ENOMEM;
    return AM_OK;
}

static int write_usage(struct am_buf *b, const struct am_ollama_result *res)
{
    return am_buf_printf(b,
                         "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                         ",\"total_tokens\":%" PRId64 "}",
                         res->prompt_eval_count, res->eval_count,
                         res->prompt_eval_count + res->eval_count);
}

/* The buffer's text, or NULL (and nothing kept) when writing it failed. */
static char *finish(struct am_buf *b, int rc)
{
    if (rc) {
        am_buf_free(b);
        return NULL;
    }
    return am_buf_take(b, NULL);
}

char *gw_completion_json(const char *id, int64_t created, const char *model,
                         const struct am_ollama_result *res)
{
    struct am_buf b;
    am_buf_init(&b, res->content_len * 6 + 4096);
    int rc =
        write_head(&b, id, "chat.completion", created, model) ||
        am_buf_lit(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                       "\"content\":") ||
        am_buf_json_string(&b, res->content ? res->content : "", res->content_len) ||
        am_buf_printf(&b, "},\"finish_reason\":\"%s\"}],", gw_finish_reason(res->done_reason)) ||
        write_usage(&b, res) || am_buf_lit(&b, "}");
    return finish(&b, rc);
}

/* "data: " + the object + "\n\n" */
char *gw_chunk_event(const char *id, int64_t created, const char *model, const char *text,
                     size_t len, bool role, const char *finish_reason)
{
    struct am_buf b;
    am_buf_init(&b, len * 6 + 4096);
    int rc =
        am_buf_lit(&b, "data: ") || write_head(&b, id, "chat.completion.chunk", created, model) ||
        am_buf_lit(&b, ",\"choices\":[{\"index\":0,\"delta\":{") ||
        (role && am_buf_lit(&b, "\"role\":\"assistant\"")) ||
        (text && ((role ? am_buf_lit(&b, ",\"content\":") : am_buf_lit(&b, "\"content\":")) ||
                  am_buf_json_string(&b, text, len))) ||
        am_buf_lit(&b, "},\"finish_reason\":") ||
        (finish_reason ? am_buf_printf(&b, "\"%s\"", finish_reason) : am_buf_lit(&b, "null")) ||
        am_buf_lit(&b, "}]}\n\n");
    return finish(&b, rc);
}

char *gw_usage_event(const char *id, int64_t created, const char *model,
                     const struct am_ollama_result *res)
{
    struct am_buf b;
    am_buf_init(&b, 4096);
    int rc = am_buf_lit(&b, "data: ") ||
             write_head(&b, id, "chat.completion.chunk", created, model) ||
             am_buf_lit(&b, ",\"choices\":[],") || write_usage(&b, res) || am_buf_lit(&b, "}\n\n");
    return finish(&b, rc);
}

char *gw_error_json(const char *message, const char *type, const char *param, const char *code)
{
    json_t *o = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", message, "type", type,
                          "param", param && *param ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}
