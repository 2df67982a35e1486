/* Translation between OpenAI chat completions and Ollama's /api/chat. */
#include "openai.h"
#include "am_buf.h"
#include "am_error.h"
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

/* Message content, a string or an array of {"type": "text", "text": ...} parts, as one JSON string.
 */
static int write_content(struct am_buf *b, json_t *content, char *err, char *param, size_t errlen,
                         size_t i)
{
    char field[64];
    snprintf(field, sizeof field, "messages[%zu].content", i);
    if (json_is_string(content))
        return am_buf_json_string(b, json_string_value(content), json_string_length(content));
    if (json_is_null(content) || !content)
        return am_buf_lit(b, "\"\"");
    if (!json_is_array(content))
        return fail(err, param, errlen, field, "%s must be a string or an array of text parts",
                    field);
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part)
    {
        json_t *type = json_object_get(part, "type");
        if (!json_is_string(json_object_get(part, "text")) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0)
            return fail(err, param, errlen, field, "%s: only text parts are supported", field);
    }
    /* The parts' escaped texts, one after the other, are the escaped joined text. */
    int rc = am_buf_lit(b, "\"");
    json_array_foreach(content, k, part)
    {
        json_t *text = json_object_get(part, "text");
        size_t at = b->len;
        if (!rc &&
            !(rc = am_buf_json_string(b, json_string_value(text), json_string_length(text)))) {
            /* drop the quotes am_buf_json_string put around this part */
            memmove(b->data + at, b->data + at + 1, b->len - at - 2);
            b->len -= 2;
        }
    }
    return rc ? rc : am_buf_lit(b, "\"");
}

/* A JSON number as Ollama gets it: integers as they are, reals in the fewest digits that read back.
 */
static int write_number(struct am_buf *b, json_t *v)
{
    if (json_is_integer(v))
        return am_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    double d = json_real_value(v);
    char text[32];
    snprintf(text, sizeof text, "%.15g", d);
    if (strtod(text, NULL) != d)
        snprintf(text, sizeof text, "%.17g", d);
    return am_buf_append(b, text, strlen(text));
}

/* Opens the "options" object on its first entry and writes the key. */
static int option_key(struct am_buf *b, int *options, const char *key)
{
    int rc = am_buf_printf(b, "%s\"%s\":", (*options)++ ? "," : ",\"options\":{", key);
    return rc;
}

static int number(json_t *req, const char *key, double min, double max, struct am_buf *b,
                  int *options, const char *as, char *err, char *param, size_t errlen)
{
    json_t *v = json_object_get(req, key);
    char msg[160];
    if (!v || json_is_null(v))
        return AM_OK;
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
        snprintf(msg, sizeof msg, "%s must be a number between %g and %g", key, min, max);
        return fail(err, param, errlen, key, "%s", msg);
    }
    return option_key(b, options, as) || write_number(b, v) ? AM_ENOMEM : AM_OK;
}

static int write_stop(struct am_buf *b, int *options, json_t *stop, char *err, char *param,
                      size_t errlen)
{
    const char *msg = "%sstop must be a string or up to 4 strings";
    size_t k;
    json_t *s;
    if (!json_is_string(stop) && !(json_is_array(stop) && json_array_size(stop) <= 4))
        return fail(err, param, errlen, "stop", msg, NULL);
    json_array_foreach(stop, k, s)
    {
        if (!json_is_string(s))
            return fail(err, param, errlen, "stop", msg, NULL);
    }
    if (option_key(b, options, "stop") || am_buf_lit(b, "["))
        return AM_ENOMEM;
    if (json_is_string(stop)) {
        if (am_buf_json_string(b, json_string_value(stop), json_string_length(stop)))
            return AM_ENOMEM;
    }
    json_array_foreach(stop, k, s)
    {
        if ((k > 0 && am_buf_lit(b, ",")) ||
            am_buf_json_string(b, json_string_value(s), json_string_length(s)))
            return AM_ENOMEM;
    }
    return am_buf_lit(b, "]") ? AM_ENOMEM : AM_OK;
}

/*
 * Validates the body and writes the Ollama request straight into a buffer:
 * {"model", "messages": [{"role", "content"}...], "stream", "options"}.
 */
int gw_parse_request(const char *body, size_t len, const gw_models *models, struct gw_request *out,
                     char *err, char *param, size_t errlen)
{
    json_error_t jerr;
    json_t *req = NULL;
    struct am_buf b;
    int rc = AM_EINVAL, options = 0;
    char msg[256];

    memset(out, 0, sizeof *out);
    param[0] = err[0] = '\0';
    am_buf_init(&b, len * 6 + 4096); /* escaping grows text at most six times */
    req = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        snprintf(msg, sizeof msg, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        fail(err, param, errlen, NULL, "%s", msg);
        goto out;
    }
    if (!json_is_object(req)) {
        fail(err, param, errlen, NULL, "%sthe body must be a JSON object", NULL);
        goto out;
    }
    json_t *model = json_object_get(req, "model");
    if (!json_is_string(model) || json_string_length(model) == 0 ||
        json_string_length(model) >= sizeof out->requested_model ||
        !am_utf8_valid(json_string_value(model), sizeof out->requested_model - 1)) {
        fail(err, param, errlen, "model", "%smodel must be a non-empty string", NULL);
        goto out;
    }
    snprintf(out->requested_model, sizeof out->requested_model, "%s", json_string_value(model));
    snprintf(out->model, sizeof out->model, "%s", gw_models_resolve(models, out->requested_model));

    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0 ||
        json_array_size(msgs) > MAX_MESSAGES) {
        fail(err, param, errlen, "messages",
             "%smessages must be a non-empty array (at most 1024 messages)", NULL);
        goto out;
    }
    if (am_buf_lit(&b, "{\"model\":") || am_buf_json_string(&b, out->model, strlen(out->model)) ||
        am_buf_lit(&b, ",\"messages\":["))
        goto oom;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *role = json_object_get(m, "role");
        char field[64];
        snprintf(field, sizeof field, "messages[%zu].role", i);
        static const char *const roles[] = {"system", "user", "assistant", "tool", NULL};
        int known = -1;
        for (int r = 0; json_is_string(role) && roles[r]; r++)
            if (!strcmp(json_string_value(role), roles[r]))
                known = r;
        if (!json_is_object(m) || known < 0) {
            fail(err, param, errlen, field, "%s must be system, user, assistant or tool", field);
            goto out;
        }
        if (am_buf_printf(&b, "%s{\"role\":\"%s\",\"content\":", i ? "," : "", roles[known]))
            goto oom;
        int crc = write_content(&b, json_object_get(m, "content"), err, param, errlen, i);
        if (crc == AM_EINVAL)
            goto out;
        if (crc || am_buf_lit(&b, "}"))
            goto oom;
    }

    json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        fail(err, param, errlen, "stream", "%sstream must be true or false", NULL);
        goto out;
    }
    out->stream = json_is_true(stream);
    if (am_buf_printf(&b, "],\"stream\":%s", out->stream ? "true" : "false"))
        goto oom;
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        json_t *iu = json_object_get(so, "include_usage");
        if (!json_is_object(so) || (iu && !json_is_boolean(iu))) {
            fail(err, param, errlen, "stream_options",
                 "%sstream_options must be an object with a boolean include_usage", NULL);
            goto out;
        }
        out->include_usage = json_is_true(iu);
    }
    json_t *n = json_object_get(req, "n");
    if (n && !json_is_null(n) && (!json_is_integer(n) || json_integer_value(n) != 1)) {
        fail(err, param, errlen, "n", "%sonly n=1 is supported", NULL);
        goto out;
    }

    if (number(req, "temperature", 0, 2, &b, &options, "temperature", err, param, errlen) ||
        number(req, "top_p", 0, 1, &b, &options, "top_p", err, param, errlen))
        goto fail;
    const char *tok_key =
        json_object_get(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    json_t *max_tokens = json_object_get(req, tok_key);
    if (max_tokens && !json_is_null(max_tokens)) {
        if (!json_is_integer(max_tokens) || json_integer_value(max_tokens) < 1 ||
            json_integer_value(max_tokens) > 1000000) {
            snprintf(msg, sizeof msg, "%s must be a whole number from 1 to 1000000", tok_key);
            fail(err, param, errlen, tok_key, "%s", msg);
            goto out;
        }
        if (option_key(&b, &options, "num_predict") || write_number(&b, max_tokens))
            goto oom;
    }
    json_t *seed = json_object_get(req, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            fail(err, param, errlen, "seed", "%sseed must be a whole number", NULL);
            goto out;
        }
        if (option_key(&b, &options, "seed") || write_number(&b, seed))
            goto oom;
    }
    json_t *stop = json_object_get(req, "stop");
    if (stop && !json_is_null(stop) && write_stop(&b, &options, stop, err, param, errlen))
        goto fail;
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
    json_decref(req);
    am_buf_free(&b);
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
