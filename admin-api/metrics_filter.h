/* The query filters shared by the metric list, summary and timeseries, as SQL parameters. */
#ifndef AA_METRICS_FILTER_H
#define AA_METRICS_FILTER_H

#include "am_http.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * The WHERE condition every metrics query uses. It takes parameters
 * $1..$10 in the order of aa_metrics_filter_params; an absent filter is
 * NULL. The statements are unnamed, so PostgreSQL plans them with the
 * values and the NULL tests fold away (the indexes still apply).
 */
#define AA_METRICS_FILTER_SQL                                                                      \
    "($1::timestamptz IS NULL OR timestamp >= $1::timestamptz)"                                    \
    " AND ($2::timestamptz IS NULL OR timestamp < $2::timestamptz)"                                \
    " AND ($3::text IS NULL OR model = $3::text)"                                                  \
    " AND ($4::text IS NULL OR backend = $4::text)"                                                \
    " AND ($5::text IS NULL OR intent = $5::text)"                                                 \
    " AND ($6::text IS NULL OR source = $6::text)"                                                 \
    " AND ($7::text IS NULL OR status = $7::text)"                                                 \
    " AND ($8::text IS NULL OR session_id = $8::text)"                                             \
    " AND ($9::text IS NULL OR request_id = $9::text)"                                             \
    " AND ($10::text IS NULL OR stage = $10::text)"

#define AA_METRICS_FILTER_NPARAMS 10

/*
 * The summary's figures (metrics.c) over the rows AA_METRICS_FILTER_SQL
 * keeps, as one row: n (calls), errors, latency_avg, tps_avg, total_tokens,
 * lat (p50, p95, p99 of latency_seconds), tps_p50 and ttft (p50, p95), with
 * the summary's percentile definitions. Parameters as AA_METRICS_FILTER_SQL.
 */
extern const char aa_metrics_figures_sql[];

/* Room for a time as aa_parse_time writes it. */
#define AA_METRICS_TIME_LEN 48

struct aa_metrics_filter {
    char since[AA_METRICS_TIME_LEN]; /* "" when absent */
    char until[AA_METRICS_TIME_LEN];
    int64_t since_us, until_us; /* meaningful when the text is set */
    const char *model, *backend, *intent, *source, *status, *session_id, *request_id, *stage;
};

/*
 * Reads since, until, model, backend, intent, source, status, session_id,
 * request_id and stage from req into f (text points into the request; an
 * empty value counts as absent). With default_range, a missing until is
 * now and a missing since is 24 hours before until. Returns AM_OK, or
 * AM_EINVAL with a one-line reason in err (AA_ERR_MAX bytes); since must
 * come before until.
 */
int aa_metrics_filter_parse(const struct am_http_request *req, bool default_range,
                            struct aa_metrics_filter *f, char *err);

/* Fills params[0 .. AA_METRICS_FILTER_NPARAMS-1] for AA_METRICS_FILTER_SQL; they point into f. */
void aa_metrics_filter_params(const struct aa_metrics_filter *f, const char **params);

#endif
