/* Metric records posted as JSON: checked against the table's rules, turned into rows to insert. */
#ifndef AA_METRICS_RECORD_H
#define AA_METRICS_RECORD_H

#include "am_buf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Records one batch request may carry; more get 413. */
#define AA_METRICS_BATCH_MAX 10000

/* The columns of a row, in the order of aa_metrics_rows.col and of the insert's parameters. */
#define AA_METRICS_COLUMNS                                                                         \
    "ts_us, model, backend, latency_seconds, tokens, tokens_per_second, prompt_tokens,"            \
    " ttft_seconds, status, error_type, request_id, session_id, user_id, zone, intent,"            \
    " device_id, stage"
#define AA_METRICS_NCOLS 17

/*
 * Checked records as PostgreSQL array literals, one per column (see
 * AA_METRICS_COLUMNS; the time is Unix microseconds), ready to be passed as
 * parameters and unnested.
 */
struct aa_metrics_rows {
    struct am_buf col[AA_METRICS_NCOLS];
    size_t n; /* records appended */
    int finished;
};

/* Makes rows empty; free it with aa_metrics_rows_free. */
void aa_metrics_rows_init(struct aa_metrics_rows *rows);

/* Frees what rows holds; accepts rows that were only initialised. */
void aa_metrics_rows_free(struct aa_metrics_rows *rows);

/*
 * Closes the array literals and points params[0 .. AA_METRICS_NCOLS-1] at
 * them (owned by rows). Returns AM_OK, AM_EFULL or AM_ENOMEM.
 */
int aa_metrics_rows_params(struct aa_metrics_rows *rows, const char **params);

/* How a body holds its records. */
enum aa_metrics_body {
    AA_METRICS_OBJECT, /* one JSON object: POST /api/llm-backends/metrics */
    AA_METRICS_ARRAY,  /* a JSON array of objects (application/json batch) */
    AA_METRICS_NDJSON, /* one object per line (application/x-ndjson batch) */
};

/*
 * Checks one decoded record (see docs/API.md for its fields) and appends it
 * to rows: the time defaults to now_us, status to "ok", empty optional text
 * reads as NULL, and unknown keys are ignored. Returns AM_OK; AM_EINVAL with
 * a one-line reason naming the field in err (errlen bytes); or AM_EFULL /
 * AM_ENOMEM. rows is left as it was on failure.
 */
int aa_metrics_record(const json_t *rec, int64_t now_us, struct aa_metrics_rows *rows, char *err,
                      size_t errlen);

/*
 * Parses body (len bytes) holding records as kind says, at most max of them,
 * into rows (initialised by the caller). Returns AM_OK; AM_EINVAL when the
 * body or a record is bad (err names the record by its 0-based index, and
 * for NDJSON its 1-based line, then what is wrong; rows is then of no use);
 * AM_EFULL past max records; or AM_ENOMEM.
 */
int aa_metrics_parse(const char *body, size_t len, enum aa_metrics_body kind, size_t max,
                     struct aa_metrics_rows *rows, char *err, size_t errlen);

/*
 * Unix microseconds of text, a time as aa_parse_time accepts it (ISO 8601 or
 * Unix seconds). Returns AM_OK or AM_EINVAL.
 */
int aa_metrics_time_us(const char *text, int64_t *out);

/* The current time in Unix microseconds. */
int64_t aa_metrics_now_us(void);

#endif
