/*
 * The replay protocol's messages, encoded and checked: stream notices
 * (publisher to collectors, on the data socket) and replay requests
 * (collector to publishers, on the replay socket). docs/ARCHITECTURE.md
 * describes the exchange.
 */
#ifndef AM_REPLAY_H
#define AM_REPLAY_H

#include "metrics.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AM_NOTICE_MAGIC      "AMN1" /* first four bytes of a stream notice */
#define AM_REQUEST_MAGIC     "AMQ1" /* follows the topic of a replay request */
#define AM_REPLAY_MAX_RANGES 64     /* ranges in one notice or request */
#define AM_REPLAY_MSG_MAX    4096   /* one notice or request, encoded */
#define AM_SOURCE_ID_MAX     256    /* bytes of a source id */

/* Sequence numbers [from, to) of one stream. */
struct am_seq_range {
    int64_t from, to;
};

/* True when data starts with the stream notice magic. */
bool am_notice_is(const uint8_t *data, size_t len);

/*
 * Writes a stream notice into out: next_seq (skipped when negative) and up
 * to AM_REPLAY_MAX_RANGES gone ranges. Returns the bytes written, 0 when
 * cap is too small or there are too many ranges.
 */
size_t am_notice_encode(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                        int64_t next_seq, const struct am_seq_range *gone, size_t ngone);

/*
 * Decodes a stream notice. On success *out is owned by the caller and freed
 * with athena__metrics__stream_notice__free_unpacked(*out, NULL). Returns
 * AM_EPROTO with a static reason in *why for anything malformed: over
 * AM_REPLAY_MSG_MAX, another magic, not protobuf, or a bad header or range.
 */
int am_notice_decode(const uint8_t *data, size_t len, Athena__Metrics__StreamNotice **out,
                     const char **why);

/*
 * Writes a replay request into out: the topic "<source_id>\0" that the
 * publisher subscribes to, the magic, then the request with 1 to
 * AM_REPLAY_MAX_RANGES ranges. Returns the bytes written, 0 when it does
 * not fit or the ranges are out of bounds.
 */
size_t am_request_encode(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                         const struct am_seq_range *ranges, size_t n);

/*
 * Decodes a replay request; ownership and errors as for am_notice_decode
 * (athena__metrics__replay_request__free_unpacked). The topic must equal
 * the request's source id.
 */
int am_request_decode(const uint8_t *data, size_t len, Athena__Metrics__ReplayRequest **out,
                      const char **why);

#endif
