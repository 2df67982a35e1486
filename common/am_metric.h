/* The metric of one LLM call, and its encoding on the bus. */
#ifndef AM_METRIC_H
#define AM_METRIC_H

#include "metrics.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds every publisher and collector enforce. */
#define AM_METRIC_MAX_PACKED 8192      /* one encoded metric */
#define AM_METRIC_MAX_STRING 1024      /* one text field, in bytes */
#define AM_FRAME_MAX         (4 << 20) /* one bus message */
#define AM_FRAME_MAGIC       "AMB1"    /* first four bytes of every bus message */

/*
 * One LLM call. Strings are borrowed (NULL means absent); the has_ flags
 * mark optional numbers that are present.
 */
struct am_metric {
    int64_t timestamp_us; /* request start, microseconds since the Unix epoch */
    const char *model;
    const char *backend;
    double latency_seconds;
    int32_t tokens;
    double tokens_per_second;
    bool has_prompt_tokens;
    int32_t prompt_tokens;
    bool has_ttft;
    double ttft_seconds;
    bool error; /* status "error" when true, "ok" otherwise */
    const char *error_type;
    const char *request_id;
    const char *session_id;
    const char *user_id;
    const char *zone;
    const char *intent;
    const char *device_id;
    const char *source;
    const char *stage;
};

/*
 * Checks a decoded metric against the table's rules (required fields, UTF-8
 * text within AM_METRIC_MAX_STRING, finite non-negative numbers). Returns 0
 * or AM_EINVAL with a static reason in *why.
 */
int am_metric_validate_pb(const Athena__Metrics__Metric *m, const char **why);

/* The same rules for a metric about to be published. */
int am_metric_validate(const struct am_metric *m, const char **why);

/*
 * Encodes m as a protobuf Metric into out (cap bytes). Returns 0 and the
 * length in *len, or AM_ERANGE when it does not fit.
 */
int am_metric_pack(const struct am_metric *m, uint8_t *out, size_t cap, size_t *len);

/*
 * Writes the start of a bus message into out: the magic and the batch
 * header, marked as resent from the replay ring when replay is true.
 * Returns the bytes written, 0 when cap is too small.
 */
size_t am_frame_header(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                       int64_t first_seq, bool replay);

/*
 * Appends one packed metric (from am_metric_pack) as an element of the
 * batch's repeated field. Returns the bytes written, 0 when cap is too small.
 */
size_t am_frame_metric(uint8_t *out, size_t cap, const uint8_t *packed, size_t len);

/*
 * Decodes a bus message. On success *out is the batch, owned by the caller
 * and freed with athena__metrics__metric_batch__free_unpacked(*out, NULL).
 * Returns AM_EPROTO with a static reason in *why for anything malformed.
 * Individual metrics are not validated here (see am_metric_validate_pb).
 */
int am_frame_decode(const uint8_t *data, size_t len, Athena__Metrics__MetricBatch **out,
                    const char **why);

/* True when s is valid UTF-8 of at most max bytes. */
bool am_utf8_valid(const char *s, size_t max);

/* True when the len bytes at s are valid UTF-8 without a NUL character. */
bool am_utf8_valid_len(const char *s, size_t len);

#endif
