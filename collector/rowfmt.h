/* Turns decoded bus batches into rows of PostgreSQL's COPY text format. */
#ifndef CL_ROWFMT_H
#define CL_ROWFMT_H

#include "am_buf.h"
#include "am_metric.h"

/* The columns of llm_performance_metric (and its staging table), in the order rows are written. */
#define CL_ROW_COLUMNS                                                                             \
    "timestamp, model, backend, latency_seconds, tokens, tokens_per_second, prompt_tokens, "       \
    "ttft_seconds, status, error_type, request_id, session_id, user_id, zone, intent, device_id, " \
    "source, stage, source_id, epoch, seq"

/*
 * Appends one COPY text line per valid metric of batch to out. Invalid
 * metrics are skipped and counted in *invalid (their reason logged at debug).
 * Returns the number of rows written, or -1 when out's bound was hit (out is
 * then left as it was).
 */
long cl_rowfmt_batch(struct am_buf *out, const Athena__Metrics__MetricBatch *batch,
                     unsigned *invalid);

/*
 * Appends s as one COPY text field followed by its tab (NULL as \N), with
 * backslash, tab, newline and carriage return escaped. Same returns as
 * am_buf_append.
 */
int cl_rowfmt_text(struct am_buf *b, const char *s);

#endif
