/* Metric records posted as JSON: field types, the table's rules, and the rows to insert. */
#include "metrics_record.h"
#include "am_error.h"
#include "am_metric.h"
#include "params.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Optional text fields a client may set, besides model and backend. */
static const char *const optional_text[] = {
    "error_type", "request_id", "session_id", "user_id", "zone", "intent", "device_id", "stage",
};
#define N_OPTIONAL_TEXT (sizeof optional_text / sizeof optional_text[0])

/* Unix seconds the table accepts (am_metric_validate): 2000-01-01 .. 2100-01-01. */
#define TS_MIN_S 946684800.0
#define TS_MAX_S 4102444800.0

int64_t aa_metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int aa_metrics_time_us(const char *text, int64_t *out)
{
    char canon[48];
    struct tm tm = {0};
    int us = 0;
    /* aa_parse_time writes "YYYY-MM-DD HH:MM:SS.ffffff+00", always UTC. */
    if (aa_parse_time(text, canon, sizeof canon) ||
        sscanf(canon, "%4d-%2d-%2d %2d:%2d:%2d.%6d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &us) != 7)
        return AM_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) * 1000000 + us;
    return AM_OK;
}

/* A text field: absent, null and "" read as NULL. */
static int get_text(const json_t *rec, const char *name, const char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(rec, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return AM_OK;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s must be a string", name);
        return AM_EINVAL;
    }
    const char *s = json_string_value(v);
    *out = *s ? s : NULL;
    return AM_OK;
}

static int get_required_text(const json_t *rec, const char *name, const char **out, char *err,
                             size_t errlen)
{
    if (get_text(rec, name, out, err, errlen))
        return AM_EINVAL;
    if (!*out) {
        snprintf(err, errlen, "%s is required (a non-empty string)", name);
        return AM_EINVAL;
    }
    return AM_OK;
}

/* A number >= 0; *present false when absent or null (an error when required). */
static int get_number(const json_t *rec, const char *name, bool required, bool *present,
                      double *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(rec, name);
    *present = false;
    if (!v || json_is_null(v)) {
        if (!required)
            return AM_OK;
        snprintf(err, errlen, "%s is required (a number >= 0)", name);
        return AM_EINVAL;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d < 0) {
        snprintf(err, errlen, "%s must be a number >= 0", name);
        return AM_EINVAL;
    }
    *out = d;
    *present = true;
    return AM_OK;
}

/* A whole number 0 .. INT32_MAX; 42.0 counts as whole, 42.5 and "42" do not. */
static int get_count(const json_t *rec, const char *name, bool required, bool *present,
                     int32_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(rec, name);
    double d;
    *present = false;
    if (!v || json_is_null(v)) {
        if (!required)
            return AM_OK;
        snprintf(err, errlen, "%s is required (a whole number >= 0)", name);
        return AM_EINVAL;
    }
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v))
        d = json_real_value(v);
    else
        d = -1;
    if (d < 0) {
        snprintf(err, errlen, "%s must be a whole number >= 0", name);
        return AM_EINVAL;
    }
    if (d > INT32_MAX) {
        snprintf(err, errlen, "%s must be at most %d", name, INT32_MAX);
        return AM_EINVAL;
    }
    *out = (int32_t)d;
    *present = true;
    return AM_OK;
}

/* Unix seconds (a number) or an ISO 8601 string; now_us when absent or null. */
static int get_timestamp(const json_t *rec, int64_t now_us, int64_t *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(rec, "timestamp");
    if (!v || json_is_null(v)) {
        *out = now_us;
        return AM_OK;
    }
    if (json_is_number(v)) {
        double s = json_number_value(v);
        if (!(s >= TS_MIN_S && s <= TS_MAX_S)) {
            snprintf(err, errlen, "timestamp is outside 2000-01-01 .. 2100-01-01 (Unix seconds)");
            return AM_EINVAL;
        }
        *out = llround(s * 1e6);
        return AM_OK;
    }
    if (json_is_string(v)) {
        if (aa_metrics_time_us(json_string_value(v), out)) {
            snprintf(err, errlen,
                     "timestamp must be an ISO 8601 time (2026-01-31T12:00:00Z) or Unix seconds");
            return AM_EINVAL;
        }
        return AM_OK;
    }
    snprintf(err, errlen, "timestamp must be a number (Unix seconds) or an ISO 8601 string");
    return AM_EINVAL;
}

/* A column can hold AA_METRICS_BATCH_MAX escaped texts of the longest length. */
#define COLUMN_MAX ((size_t)AA_METRICS_BATCH_MAX * (2 * AM_METRIC_MAX_STRING + 8) + 16)

void aa_metrics_rows_init(struct aa_metrics_rows *rows)
{
    for (int i = 0; i < AA_METRICS_NCOLS; i++)
        am_buf_init(&rows->col[i], COLUMN_MAX);
    rows->n = 0;
    rows->finished = 0;
}

void aa_metrics_rows_free(struct aa_metrics_rows *rows)
{
    for (int i = 0; i < AA_METRICS_NCOLS; i++)
        am_buf_free(&rows->col[i]);
    rows->n = 0;
}

int aa_metrics_rows_params(struct aa_metrics_rows *rows, const char **params)
{
    for (int i = 0; i < AA_METRICS_NCOLS; i++) {
        int rc;
        if (!rows->finished &&
            (rc = am_buf_append(&rows->col[i], rows->n ? "}" : "{}", rows->n ? 1 : 2)))
            return rc;
        params[i] = rows->col[i].data;
    }
    rows->finished = 1;
    return AM_OK;
}

/* Starts the next element of column c: "{" before the first, "," after. */
static int put_sep(struct aa_metrics_rows *rows, int c)
{
    return am_buf_append(&rows->col[c], rows->n ? "," : "{", 1);
}

/* A text element, quoted, with the array literal's escapes; NULL unquoted. */
static int put_text(struct aa_metrics_rows *rows, int c, const char *s)
{
    struct am_buf *b = &rows->col[c];
    int rc = put_sep(rows, c);
    if (rc)
        return rc;
    if (!s)
        return am_buf_append(b, "NULL", 4);
    rc = am_buf_append(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p && !rc; p++) {
        if (*p != '"' && *p != '\\')
            continue;
        rc = am_buf_append(b, run, (size_t)(p - run));
        if (!rc)
            rc = am_buf_append(b, "\\", 1);
        run = p;
    }
    if (!rc)
        rc = am_buf_append(b, run, strlen(run));
    return rc ? rc : am_buf_append(b, "\"", 1);
}

/* Number elements; absent numbers are NULL. */
static int put_int(struct aa_metrics_rows *rows, int c, bool present, long long v)
{
    int rc = put_sep(rows, c);
    if (rc)
        return rc;
    return present ? am_buf_printf(&rows->col[c], "%lld", v)
                   : am_buf_append(&rows->col[c], "NULL", 4);
}

static int put_real(struct aa_metrics_rows *rows, int c, bool present, double v)
{
    int rc = put_sep(rows, c);
    if (rc)
        return rc;
    /* 17 significant digits bring back the very same double. */
    return present ? am_buf_printf(&rows->col[c], "%.17g", v)
                   : am_buf_append(&rows->col[c], "NULL", 4);
}

/* Appends m as one element of every column; on failure the columns are restored. */
static int put_row(struct aa_metrics_rows *rows, const struct am_metric *m, const char *const *opt)
{
    size_t len[AA_METRICS_NCOLS];
    int rc = AM_OK;
    for (int i = 0; i < AA_METRICS_NCOLS; i++)
        len[i] = rows->col[i].len;
    rc = rc ? rc : put_int(rows, 0, true, m->timestamp_us);
    rc = rc ? rc : put_text(rows, 1, m->model);
    rc = rc ? rc : put_text(rows, 2, m->backend);
    rc = rc ? rc : put_real(rows, 3, true, m->latency_seconds);
    rc = rc ? rc : put_int(rows, 4, true, m->tokens);
    rc = rc ? rc : put_real(rows, 5, true, m->tokens_per_second);
    rc = rc ? rc : put_int(rows, 6, m->has_prompt_tokens, m->prompt_tokens);
    rc = rc ? rc : put_real(rows, 7, m->has_ttft, m->ttft_seconds);
    rc = rc ? rc : put_text(rows, 8, m->error ? "error" : "ok");
    for (size_t i = 0; i < N_OPTIONAL_TEXT; i++)
        rc = rc ? rc : put_text(rows, 9 + (int)i, opt[i]);
    if (rc) {
        for (int i = 0; i < AA_METRICS_NCOLS; i++) {
            rows->col[i].len = len[i];
            if (rows->col[i].data)
                rows->col[i].data[len[i]] = '\0';
        }
        return rc;
    }
    rows->n++;
    return AM_OK;
}

int aa_metrics_record(const json_t *rec, int64_t now_us, struct aa_metrics_rows *rows, char *err,
                      size_t errlen)
{
    struct am_metric m = {0};
    const char *opt[N_OPTIONAL_TEXT];
    const char *status = NULL, *why = NULL;
    bool has_latency, has_tokens, has_tps;
    int rc = AM_EINVAL;

    if (!json_is_object(rec)) {
        snprintf(err, errlen, "a metric must be a JSON object");
        goto out;
    }
    /* Fields are checked in the order a reader finds them in the docs. */
    if (get_timestamp(rec, now_us, &m.timestamp_us, err, errlen) ||
        get_required_text(rec, "model", &m.model, err, errlen) ||
        get_required_text(rec, "backend", &m.backend, err, errlen) ||
        get_number(rec, "latency_seconds", true, &has_latency, &m.latency_seconds, err, errlen) ||
        get_count(rec, "tokens", true, &has_tokens, &m.tokens, err, errlen) ||
        get_number(rec, "tokens_per_second", true, &has_tps, &m.tokens_per_second, err, errlen) ||
        get_count(rec, "prompt_tokens", false, &m.has_prompt_tokens, &m.prompt_tokens, err,
                  errlen) ||
        get_number(rec, "ttft_seconds", false, &m.has_ttft, &m.ttft_seconds, err, errlen) ||
        get_text(rec, "status", &status, err, errlen))
        goto out;
    if (status && strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) {
        snprintf(err, errlen, "status must be \"ok\" or \"error\"");
        goto out;
    }
    m.error = status && !strcmp(status, "error");
    for (size_t i = 0; i < N_OPTIONAL_TEXT; i++) {
        if (get_text(rec, optional_text[i], &opt[i], err, errlen))
            goto out;
    }
    m.error_type = opt[0];
    m.request_id = opt[1];
    m.session_id = opt[2];
    m.user_id = opt[3];
    m.zone = opt[4];
    m.intent = opt[5];
    m.device_id = opt[6];
    m.stage = opt[7];
    m.source = "api";
    /* The bus and the API share one set of rules (UTF-8, lengths, ranges). */
    if (am_metric_validate(&m, &why)) {
        snprintf(err, errlen, "%s", why);
        goto out;
    }

    rc = put_row(rows, &m, opt);
    if (rc == AM_EFULL)
        snprintf(err, errlen, "the batch is too large to store in one request");

out:
    return rc;
}

/* Checks rec as record index (line > 0: its NDJSON line) and appends its row. */
static int add_record(const json_t *rec, size_t index, size_t line, int64_t now_us,
                      struct aa_metrics_rows *rows, char *err, size_t errlen)
{
    char why[AA_ERR_MAX] = "";
    int rc = aa_metrics_record(rec, now_us, rows, why, sizeof why);
    if (rc == AM_EINVAL && line)
        snprintf(err, errlen, "record %zu (line %zu): %s", index, line, why);
    else if (rc == AM_EINVAL)
        snprintf(err, errlen, "record %zu: %s", index, why);
    else if (rc)
        snprintf(err, errlen, "%s", why);
    return rc;
}

static int parse_ndjson(const char *body, size_t len, size_t max, int64_t now_us,
                        struct aa_metrics_rows *rows, char *err, size_t errlen)
{
    const char *p = body, *end = body + len;
    size_t line = 0, nrec = 0;
    json_t *rec = NULL;
    int rc = AM_OK;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        const char *a = p, *b = stop, *start = p;
        line++;
        p = nl ? nl + 1 : end;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (a == b)
            continue; /* blank lines, such as the one after a final newline */
        if (nrec == max) {
            snprintf(err, errlen, "more than %zu records in one batch; split it", max);
            rc = AM_EFULL;
            goto out;
        }
        json_error_t jerr;
        rec = json_loadb(a, (size_t)(b - a), JSON_DECODE_ANY, &jerr);
        if (!rec) {
            snprintf(err, errlen, "record %zu (line %zu): invalid JSON at column %d: %s", nrec,
                     line, jerr.column + (int)(a - start), jerr.text);
            rc = AM_EINVAL;
            goto out;
        }
        if ((rc = add_record(rec, nrec, line, now_us, rows, err, errlen)))
            goto out;
        json_decref(rec);
        rec = NULL;
        nrec++;
    }
    if (nrec == 0) {
        snprintf(err, errlen, "the batch holds no records");
        rc = AM_EINVAL;
    }
out:
    json_decref(rec);
    return rc;
}

int aa_metrics_parse(const char *body, size_t len, enum aa_metrics_body kind, size_t max,
                     struct aa_metrics_rows *rows, char *err, size_t errlen)
{
    json_t *doc = NULL;
    int64_t now_us = aa_metrics_now_us();
    int rc;

    if (kind == AA_METRICS_NDJSON) {
        rc = parse_ndjson(body, len, max, now_us, rows, err, errlen);
        goto out;
    }

    json_error_t jerr;
    rc = AM_EINVAL;
    doc = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        snprintf(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        goto out;
    }
    if (kind == AA_METRICS_OBJECT) {
        if (!json_is_object(doc)) {
            snprintf(err, errlen, "the body must be a JSON object");
            goto out;
        }
        rc = aa_metrics_record(doc, now_us, rows, err, errlen);
        goto out;
    }
    if (!json_is_array(doc)) {
        snprintf(err, errlen,
                 "the body must be a JSON array of metrics (or NDJSON sent as "
                 "application/x-ndjson)");
        goto out;
    }
    size_t n = json_array_size(doc);
    if (n == 0) {
        snprintf(err, errlen, "the batch holds no records");
        goto out;
    }
    if (n > max) {
        snprintf(err, errlen, "the batch holds %zu records; at most %zu per request", n, max);
        rc = AM_EFULL;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = add_record(json_array_get(doc, i), i, 0, now_us, rows, err, errlen)))
            goto out;
    }
    rc = AM_OK;

out:
    json_decref(doc);
    return rc;
}
