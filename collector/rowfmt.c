/* COPY text rows from decoded bus batches. */
#include "rowfmt.h"
#include "am_error.h"
#include "am_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* COPY text escapes: backslash, and the delimiter and line characters. */
int cl_rowfmt_text(struct am_buf *b, const char *s)
{
    if (!s)
        return am_buf_append(b, "\\N\t", 3);
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '\\':
            esc = "\\\\";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\0':
            break;
        default:
            continue;
        }
        if (p > run && am_buf_append(b, run, (size_t)(p - run)))
            return AM_EFULL;
        if (!esc)
            break;
        if (am_buf_append(b, esc, 2))
            return AM_EFULL;
        run = p + 1;
    }
    return am_buf_append(b, "\t", 1);
}

static int put_row(struct am_buf *b, const Athena__Metrics__Metric *m, const char *source_id,
                   int64_t epoch, int64_t seq)
{
    char num[160];
    int rc = 0;

    /* Validation keeps timestamps within 2000..2100, so the division is safe. */
    time_t sec = (time_t)(m->timestamp_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(num, sizeof num, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00\t", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(m->timestamp_us % 1000000));
    rc |= am_buf_append(b, num, strlen(num));
    rc |= cl_rowfmt_text(b, m->model);
    rc |= cl_rowfmt_text(b, m->backend);
    snprintf(num, sizeof num, "%.17g\t%d\t%.17g\t", m->latency_seconds,
             m->has_tokens ? m->tokens : 0, m->has_tokens_per_second ? m->tokens_per_second : 0.0);
    rc |= am_buf_append(b, num, strlen(num));
    if (m->has_prompt_tokens)
        snprintf(num, sizeof num, "%d\t", m->prompt_tokens);
    else
        snprintf(num, sizeof num, "\\N\t");
    rc |= am_buf_append(b, num, strlen(num));
    if (m->has_ttft_seconds)
        snprintf(num, sizeof num, "%.17g\t", m->ttft_seconds);
    else
        snprintf(num, sizeof num, "\\N\t");
    rc |= am_buf_append(b, num, strlen(num));
    rc |= cl_rowfmt_text(b, m->has_error && m->error ? "error" : "ok");
    rc |= cl_rowfmt_text(b, m->error_type && *m->error_type ? m->error_type : NULL);
    const char *opt[] = {m->request_id, m->session_id, m->user_id,
                         m->zone,       m->intent,     m->device_id};
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        rc |= cl_rowfmt_text(b, opt[i] && *opt[i] ? opt[i] : NULL);
    rc |= cl_rowfmt_text(b, m->source && *m->source ? m->source : "unknown");
    rc |= cl_rowfmt_text(b, m->stage && *m->stage ? m->stage : NULL);
    rc |= cl_rowfmt_text(b, source_id);
    snprintf(num, sizeof num, "%" PRId64 "\t%" PRId64 "\n", epoch, seq);
    rc |= am_buf_append(b, num, strlen(num));
    return rc ? AM_EFULL : AM_OK;
}

long cl_rowfmt_batch(struct am_buf *out, const Athena__Metrics__MetricBatch *batch,
                     unsigned *invalid)
{
    size_t start = out->len;
    long rows = 0;
    for (size_t i = 0; i < batch->n_metrics; i++) {
        const char *why = NULL;
        if (am_metric_validate_pb(batch->metrics[i], &why)) {
            (*invalid)++;
            am_log_debug("dropping metric %s/%lld/%lld: %s", batch->source_id,
                         (long long)batch->epoch, (long long)(batch->first_seq + (int64_t)i), why);
            continue;
        }
        if (put_row(out, batch->metrics[i], batch->source_id, batch->epoch,
                    batch->first_seq + (int64_t)i)) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
            return -1;
        }
        rows++;
    }
    return rows;
}
