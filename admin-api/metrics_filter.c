/* The query filters shared by the metric list, summary and timeseries. */
#include "metrics_filter.h"
#include "am_error.h"
#include "am_metric.h"
#include "metrics_record.h"
#include "params.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DAY_US (86400LL * 1000000)

/* Writes us as aa_parse_time does: "YYYY-MM-DD HH:MM:SS.ffffff+00". */
static void format_us(int64_t us, char *out, size_t outlen)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

/* A time parameter into text and microseconds; text stays "" when absent. */
static int get_time(const struct am_http_request *req, const char *name, char *text, int64_t *us,
                    char *err)
{
    const char *s = am_http_query(req, name);
    char buf[64];
    size_t n;

    text[0] = '\0';
    if (!s)
        return AM_OK;
    n = strlen(s);
    if (n < sizeof buf) {
        memcpy(buf, s, n + 1);
        /* An unencoded '+' of a zone offset arrives as a space (form encoding). */
        char *sp = strrchr(buf, ' ');
        if (sp && sp - buf > 10)
            *sp = '+';
    }
    if (n >= sizeof buf || aa_parse_time(buf, text, AA_METRICS_TIME_LEN) ||
        aa_metrics_time_us(text, us)) {
        text[0] = '\0';
        snprintf(err, AA_ERR_MAX,
                 "%s must be an ISO 8601 time (2026-01-31T12:00:00Z) or Unix seconds", name);
        return AM_EINVAL;
    }
    return AM_OK;
}

/* A text filter; empty reads as absent, as the Python backend's `if model:` did. */
static int get_text(const struct am_http_request *req, const char *name, const char **out,
                    char *err)
{
    if (aa_param_text(req, name, AM_METRIC_MAX_STRING, out, err))
        return AM_EINVAL;
    if (*out && !**out)
        *out = NULL;
    return AM_OK;
}

int aa_metrics_filter_parse(const struct am_http_request *req, bool default_range,
                            struct aa_metrics_filter *f, char *err)
{
    static const char *const statuses[] = {"ok", "error", NULL};

    memset(f, 0, sizeof *f);
    if (get_time(req, "since", f->since, &f->since_us, err) ||
        get_time(req, "until", f->until, &f->until_us, err) ||
        get_text(req, "model", &f->model, err) || get_text(req, "backend", &f->backend, err) ||
        get_text(req, "intent", &f->intent, err) || get_text(req, "source", &f->source, err) ||
        aa_param_enum(req, "status", statuses, NULL, &f->status, err) ||
        get_text(req, "session_id", &f->session_id, err) ||
        get_text(req, "request_id", &f->request_id, err) || get_text(req, "stage", &f->stage, err))
        return AM_EINVAL;

    if (default_range && !f->until[0]) {
        f->until_us = aa_metrics_now_us();
        format_us(f->until_us, f->until, sizeof f->until);
    }
    if (default_range && !f->since[0]) {
        f->since_us = f->until_us - DAY_US;
        if (f->since_us < 0)
            f->since_us = 0;
        format_us(f->since_us, f->since, sizeof f->since);
    }
    if (f->since[0] && f->until[0] && f->since_us >= f->until_us) {
        snprintf(err, AA_ERR_MAX, "since must be earlier than until");
        return AM_EINVAL;
    }
    return AM_OK;
}

void aa_metrics_filter_params(const struct aa_metrics_filter *f, const char **params)
{
    params[0] = f->since[0] ? f->since : NULL;
    params[1] = f->until[0] ? f->until : NULL;
    params[2] = f->model;
    params[3] = f->backend;
    params[4] = f->intent;
    params[5] = f->source;
    params[6] = f->status;
    params[7] = f->session_id;
    params[8] = f->request_id;
    params[9] = f->stage;
}
