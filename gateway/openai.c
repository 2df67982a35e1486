/* Translation between OpenAI chat completions and Ollama's /api/chat. */
#include "openai.h"
#include "am_error.h"
#include "am_metric.h"

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

/* Message content: a string, or an array of {"type": "text", "text": ...} parts. */
static json_t *flatten_content(json_t *content, char *err, char *param, size_t errlen, size_t i)
{
    char field[64];
    snprintf(field, sizeof field, "messages[%zu].content", i);
    if (json_is_string(content))
        return json_incref(content);
    if (json_is_null(content))
        return json_string("");
    if (!json_is_array(content)) {
        fail(err, param, errlen, field, "%s must be a string or an array of text parts", field);
        return NULL;
    }
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(content, k, part)
    {
        json_t *text = json_object_get(part, "text");
        if (!json_is_string(text) || !json_is_string(json_object_get(part, "type")) ||
            strcmp(json_string_value(json_object_get(part, "type")), "text") != 0) {
            fail(err, param, errlen, field, "%s: only text parts are supported", field);
            return NULL;
        }
        total += json_string_length(text);
    }
    char *joined = malloc(total + 1);
    if (!joined)
        return NULL;
    size_t n = 0;
    json_array_foreach(content, k, part)
    {
        json_t *text = json_object_get(part, "text");
        memcpy(joined + n, json_string_value(text), json_string_length(text));
        n += json_string_length(text);
    }
    joined[n] = '\0';
    json_t *s = json_stringn(joined, n);
    free(joined);
    return s;
}

static int number(json_t *req, const char *key, double min, double max, json_t *options,
                  const char *as, char *err, char *param, size_t errlen)
{
    json_t *v = json_object_get(req, key);
    char msg[160];
    if (!v || json_is_null(v))
        return AM_OK;
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
        snprintf(msg, sizeof msg, "%s must be a number between %g and %g", key, min, max);
        return fail(err, param, errlen, key, "%s", msg);
    }
    json_object_set(options, as, v);
    return AM_OK;
}

int gw_parse_request(const char *body, size_t len, const gw_models *models, struct gw_request *out,
                     char *err, char *param, size_t errlen)
{
    json_error_t jerr;
    json_t *req = NULL, *ollama = NULL, *messages = NULL, *options = NULL;
    int rc = AM_EINVAL;
    char msg[256];

    memset(out, 0, sizeof *out);
    param[0] = '\0';
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
    messages = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *role = json_object_get(m, "role");
        char field[64];
        snprintf(field, sizeof field, "messages[%zu].role", i);
        static const char *const roles[] = {"system", "user", "assistant", "tool", NULL};
        int known = 0;
        for (int r = 0; json_is_string(role) && roles[r]; r++)
            known |= !strcmp(json_string_value(role), roles[r]);
        if (!json_is_object(m) || !known) {
            fail(err, param, errlen, field, "%s must be system, user, assistant or tool", field);
            goto out;
        }
        json_t *content = flatten_content(json_object_get(m, "content"), err, param, errlen, i);
        if (!content) {
            if (!err[0])
                fail(err, param, errlen, NULL, "%sout of memory", NULL);
            goto out;
        }
        json_array_append_new(messages, json_pack("{s:O,s:o}", "role", role, "content", content));
    }

    json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        fail(err, param, errlen, "stream", "%sstream must be true or false", NULL);
        goto out;
    }
    out->stream = json_is_true(stream);
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

    options = json_object();
    if (number(req, "temperature", 0, 2, options, "temperature", err, param, errlen) ||
        number(req, "top_p", 0, 1, options, "top_p", err, param, errlen))
        goto out;
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
        json_object_set(options, "num_predict", max_tokens);
    }
    json_t *seed = json_object_get(req, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            fail(err, param, errlen, "seed", "%sseed must be a whole number", NULL);
            goto out;
        }
        json_object_set(options, "seed", seed);
    }
    json_t *stop = json_object_get(req, "stop");
    if (stop && !json_is_null(stop)) {
        json_t *list = json_array();
        if (json_is_string(stop)) {
            json_array_append(list, stop);
        } else if (json_is_array(stop) && json_array_size(stop) <= 4) {
            json_t *s;
            size_t k;
            json_array_foreach(stop, k, s)
            {
                if (!json_is_string(s)) {
                    json_decref(list);
                    fail(err, param, errlen, "stop", "%sstop must be a string or up to 4 strings",
                         NULL);
                    goto out;
                }
                json_array_append(list, s);
            }
        } else {
            json_decref(list);
            fail(err, param, errlen, "stop", "%sstop must be a string or up to 4 strings", NULL);
            goto out;
        }
        json_object_set_new(options, "stop", list);
    }

    ollama = json_pack("{s:s,s:O,s:b}", "model", out->model, "messages", messages, "stream",
                       out->stream);
    if (ollama && json_object_size(options) > 0)
        json_object_set(ollama, "options", options);
    out->ollama_body = ollama ? json_dumps(ollama, JSON_COMPACT) : NULL;
    if (!out->ollama_body) {
        fail(err, param, errlen, NULL, "%sout of memory", NULL);
        goto out;
    }
    rc = AM_OK;
out:
    json_decref(req);
    json_decref(ollama);
    json_decref(messages);
    json_decref(options);
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

static json_t *usage(const struct am_ollama_result *res)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)res->prompt_eval_count,
                     "completion_tokens", (json_int_t)res->eval_count, "total_tokens",
                     (json_int_t)(res->prompt_eval_count + res->eval_count));
}

char *gw_completion_json(const char *id, int64_t created, const char *model,
                         const struct am_ollama_result *res)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s%},s:s}],s:o}", "id", id, "object",
                          "chat.completion", "created", (json_int_t)created, "model", model,
                          "choices", "index", 0, "message", "role", "assistant", "content",
                          res->content ? res->content : "", res->content_len, "finish_reason",
                          gw_finish_reason(res->done_reason), "usage", usage(res));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static char *as_event(json_t *o)
{
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!json)
        return NULL;
    size_t n = strlen(json);
    char *ev = malloc(n + 9);
    if (ev) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, json, n);
        memcpy(ev + 6 + n, "\n\n", 3);
    }
    free(json);
    return ev;
}

char *gw_chunk_event(const char *id, int64_t created, const char *model, const char *text,
                     size_t len, bool role, const char *finish)
{
    json_t *delta = json_object();
    if (role)
        json_object_set_new(delta, "role", json_string("assistant"));
    if (text)
        json_object_set_new(delta, "content", json_stringn(text, len));
    json_t *choice = json_pack("{s:i,s:o,s:o}", "index", 0, "delta", delta, "finish_reason",
                               finish ? json_string(finish) : json_null());
    return as_event(json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", id, "object",
                              "chat.completion.chunk", "created", (json_int_t)created, "model",
                              model, "choices", choice));
}

char *gw_usage_event(const char *id, int64_t created, const char *model,
                     const struct am_ollama_result *res)
{
    return as_event(json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", id, "object",
                              "chat.completion.chunk", "created", (json_int_t)created, "model",
                              model, "choices", "usage", usage(res)));
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
