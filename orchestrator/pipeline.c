/*
 * The query pipeline. Each step is one router call with its own model and
 * system prompt, and each call publishes its own metric with the query's
 * request id and metadata. The classifier's answer picks the intent, which
 * every later step (and the classifier's own metric) carries. A classifier
 * that fails leaves the intent at the fallback and the query goes on; a
 * synthesis that fails ends the query with 502 or 504; a validator that
 * fails leaves the answer unvalidated.
 */
#include "pipeline.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "answers.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEEDBACK_MAX 512 /* bytes of the validator's answer passed to the re-synthesis */

struct orch_pipeline {
    struct orch_pipeline_config cfg;
    char *classify_system; /* the classify prompt with the intents appended */
};

int orch_pipeline_new(orch_pipeline **out, const struct orch_pipeline_config *cfg)
{
    struct am_buf b;
    orch_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return AM_ENOMEM;
    p->cfg = *cfg;
    /*
     * The list follows the prompt, comma separated: a model copies a name
     * as written. The names are joined to their punctuation, so a parrot
     * such as the simulator, which echoes bare words, never picks one up.
     */
    am_buf_init(&b, 1 << 20);
    am_buf_printf(&b, "%s\nIntents: ", cfg->classify_prompt);
    for (size_t i = 0; i < cfg->nintents; i++)
        am_buf_printf(&b, "%s%s", cfg->intents[i], i + 1 < cfg->nintents ? ", " : ".");
    p->classify_system = am_buf_take(&b, NULL);
    if (!p->classify_system) {
        free(p);
        return AM_ENOMEM;
    }
    *out = p;
    return AM_OK;
}

void orch_pipeline_free(orch_pipeline *p)
{
    if (!p)
        return;
    free(p->classify_system);
    free(p);
}

void orch_query_free(struct orch_query *q)
{
    if (!q)
        return;
    json_decref(q->json);
    memset(q, 0, sizeof *q);
}

/* An optional text field of o: absent or null gives NULL. */
static int text_field(json_t *o, const char *key, bool required, const char **out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (!required)
            return AM_OK;
        snprintf(err, errlen, "%s is required", key);
        return AM_EINVAL;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s must be a string", key);
        return AM_EINVAL;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        snprintf(err, errlen, "%s must not contain NUL characters", key);
        return AM_EINVAL;
    }
    /* Metadata goes into every metric, whose text fields have this bound. */
    if (!required && json_string_length(v) > AM_METRIC_MAX_STRING) {
        snprintf(err, errlen, "%s is longer than %d bytes", key, AM_METRIC_MAX_STRING);
        return AM_EINVAL;
    }
    *out = s;
    return AM_OK;
}

int orch_query_parse(const char *body, size_t len, struct orch_query *q, char *err, size_t errlen)
{
    json_error_t jerr;
    memset(q, 0, sizeof *q);
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        snprintf(err, errlen, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return AM_EINVAL;
    }
    q->json = o;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "the body must be a JSON object");
        goto bad;
    }
    if (text_field(o, "query", true, &q->query, err, errlen) ||
        text_field(o, "session_id", false, &q->session_id, err, errlen) ||
        text_field(o, "user_id", false, &q->user_id, err, errlen) ||
        text_field(o, "zone", false, &q->zone, err, errlen) ||
        text_field(o, "device_id", false, &q->device_id, err, errlen))
        goto bad;
    if (q->query[strspn(q->query, " \t\r\n")] == '\0') {
        snprintf(err, errlen, "query must not be blank");
        goto bad;
    }
    return AM_OK;
bad:
    orch_query_free(q);
    return AM_EINVAL;
}

/* One query on its way through the steps. */
struct run {
    orch_pipeline *p;
    const struct orch_query *q;
    const char *request_id;
    int64_t deadline_ns;
    const char *intent;
};

static double ms_since(int64_t t0)
{
    return (double)(am_clock_mono_ns() - t0) / 1e6;
}

/* A call of one step; the caller sets messages and the rest. */
static struct orch_call step_call(const struct run *run, const char *model, const char *stage,
                                  int max_tokens)
{
    return (struct orch_call){
        .model = model,
        .max_tokens = max_tokens,
        .deadline_ns = run->deadline_ns,
        .request_id = run->request_id,
        .session_id = run->q->session_id,
        .user_id = run->q->user_id,
        .zone = run->q->zone,
        .device_id = run->q->device_id,
        .intent = run->intent,
        .stage = stage,
    };
}

static void classify(struct run *run, double *ms)
{
    orch_pipeline *p = run->p;
    struct orch_result res;
    struct orch_message msgs[] = {
        {"system", p->classify_system},
        {"user", run->q->query},
    };
    struct orch_call call =
        step_call(run, p->cfg.classify_model, "classify", p->cfg.classify_max_tokens);
    call.messages = msgs;
    call.nmessages = 2;
    call.has_temperature = true; /* the same request, the same intent */
    call.temperature = 0;

    int64_t t0 = am_clock_mono_ns();
    int rc = orch_router_run(p->cfg.router, &call, &res);
    run->intent =
        orch_answers_intent(rc == AM_OK ? res.content : NULL, p->cfg.intents, p->cfg.nintents);
    if (rc != AM_OK)
        AM_LOG_REQ(AM_LOG_WARN, run->request_id, "classify failed (%s); intent %s", res.error_type,
                   run->intent);
    /* The classifier's own metric carries the intent it found. */
    call.intent = run->intent;
    orch_router_publish(p->cfg.router, &call, &res);
    orch_result_free(&res);
    *ms = ms_since(t0);
}

/* The length of the first max bytes of s, not cutting a UTF-8 sequence. */
static int utf8_prefix(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return (int)n;
}

/* Formats a prompt into a malloc'd string; NULL when out of memory. */
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/*
 * The answer. Given a rejected answer and the validator's words, asks once
 * more with both in the conversation.
 */
static int synthesize(struct run *run, const char *rejected, const char *verdict,
                      struct orch_result *res, double *ms)
{
    orch_pipeline *p = run->p;
    char *system = format("%s\nThe request's intent: %s.", p->cfg.synthesize_prompt, run->intent);
    char *feedback = verdict ? format("A fact check rejected that answer: %.*s\nAnswer the "
                                      "request again, correcting what was wrong.",
                                      utf8_prefix(verdict, FEEDBACK_MAX), verdict)
                             : NULL;
    struct orch_message msgs[4] = {
        {"system", system},
        {"user", run->q->query},
        {"assistant", rejected},
        {"user", feedback},
    };
    int64_t t0 = am_clock_mono_ns();
    int rc;
    if (!system || (verdict && !feedback)) {
        memset(res, 0, sizeof *res);
        rc = AM_ENOMEM;
    } else {
        struct orch_call call =
            step_call(run, p->cfg.synthesize_model, "synthesize", p->cfg.synthesize_max_tokens);
        call.messages = msgs;
        call.nmessages = verdict ? 4 : 2;
        rc = orch_router_generate(p->cfg.router, &call, res);
    }
    *ms += ms_since(t0);
    free(system);
    free(feedback);
    return rc;
}

/* The validator's verdict on answer: 0 with *rejected set, or the router's error. */
static int validate(struct run *run, const char *answer, bool *rejected, char **verdict, double *ms)
{
    orch_pipeline *p = run->p;
    struct orch_result res;
    char *text = format("Request: %s\nProposed answer: %s", run->q->query, answer);
    int64_t t0 = am_clock_mono_ns();
    int rc = AM_ENOMEM;

    *rejected = false;
    *verdict = NULL;
    if (text) {
        struct orch_message msgs[] = {
            {"system", p->cfg.validate_prompt},
            {"user", text},
        };
        struct orch_call call =
            step_call(run, p->cfg.validate_model, "validate", p->cfg.validate_max_tokens);
        call.messages = msgs;
        call.nmessages = 2;
        call.has_temperature = true;
        call.temperature = 0;
        rc = orch_router_generate(p->cfg.router, &call, &res);
        if (rc == AM_OK) {
            *rejected =
                orch_answers_rejects(res.content, p->cfg.reject_words, p->cfg.nreject_words);
            *verdict = res.content;
            res.content = NULL;
        } else {
            AM_LOG_REQ(AM_LOG_WARN, run->request_id, "validate failed (%s); answer unchecked",
                       res.error_type);
        }
        orch_result_free(&res);
    }
    free(text);
    *ms = ms_since(t0);
    return rc;
}

static char *failure_json(const struct run *run, const char *stage, const struct orch_result *res)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s failed: %s: %s", stage, res->error_type,
             res->error[0] ? res->error : "no detail");
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s}", "error", msg, "stage", stage, "error_type",
                  res->error_type[0] ? res->error_type : "internal", "request_id", run->request_id);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    return s;
}

char *orch_pipeline_run(orch_pipeline *p, const struct orch_query *q, const char *request_id,
                        int64_t received_ns, int64_t started_ns, int *status)
{
    struct run run = {
        .p = p,
        .q = q,
        .request_id = request_id,
        .deadline_ns = p->cfg.query_timeout_ms > 0
                           ? started_ns + (int64_t)p->cfg.query_timeout_ms * 1000000
                           : 0,
        .intent = NULL,
    };
    double classify_ms = 0, synthesize_ms = 0, validate_ms = 0;
    struct orch_result answer, second;
    bool rejected = false, resynthesized = false;
    const char *validation = "accepted";
    char *verdict = NULL, *out = NULL;

    classify(&run, &classify_ms);
    int rc = synthesize(&run, NULL, NULL, &answer, &synthesize_ms);
    if (rc != AM_OK) {
        *status = rc == AM_ETIMEDOUT ? 504 : 502;
        out = failure_json(&run, "synthesize", &answer);
        orch_result_free(&answer);
        return out;
    }
    if (validate(&run, answer.content, &rejected, &verdict, &validate_ms) != AM_OK) {
        validation = "error";
    } else if (rejected) {
        validation = "rejected";
        AM_LOG_REQ(AM_LOG_INFO, request_id, "validator rejected the answer; synthesizing again");
        if (synthesize(&run, answer.content, verdict, &second, &synthesize_ms) == AM_OK) {
            orch_result_free(&answer);
            answer = second;
            resynthesized = true;
        } else {
            /* The first answer is all there is; it goes out marked as not validated. */
            orch_result_free(&second);
        }
    }
    free(verdict);

    json_t *timings =
        json_pack("{s:f,s:f,s:f,s:f,s:f}", "queue_ms", (double)(started_ns - received_ns) / 1e6,
                  "classify_ms", classify_ms, "synthesize_ms", synthesize_ms, "validate_ms",
                  validate_ms, "total_ms", ms_since(received_ns));
    json_t *o =
        json_pack("{s:s,s:s,s:b,s:s,s:b,s:s,s:o}", "answer", answer.content, "intent", run.intent,
                  "validated", !strcmp(validation, "accepted"), "validation", validation,
                  "resynthesized", resynthesized, "request_id", request_id, "timings", timings);
    out = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(o);
    orch_result_free(&answer);
    *status = 200;
    AM_LOG_REQ(AM_LOG_DEBUG, request_id, "query answered: intent %s, %s, %.1f ms", run.intent,
               validation, ms_since(received_ns));
    return out;
}
