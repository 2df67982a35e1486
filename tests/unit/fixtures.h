/* Metrics and bus frames shared by the unit tests; include after <cmocka.h>. */
#ifndef TEST_FIXTURES_H
#define TEST_FIXTURES_H

#include "am_metric.h"

#include <stddef.h>
#include <stdint.h>

/* 2023-11-14, well inside the accepted 2000..2100 range. */
#define FIXTURE_TS_US 1700000000123456LL

/*
 * A metric with every field set, the numbers exactly representable so that
 * their text forms are predictable, and several strings multi-byte UTF-8.
 */
static inline struct am_metric fixture_full_metric(void)
{
    return (struct am_metric){
        .timestamp_us = FIXTURE_TS_US,
        .model = "llama-3.1-8b",
        .backend = "vllm",
        .latency_seconds = 1.25,
        .tokens = 42,
        .tokens_per_second = 33.5,
        .has_prompt_tokens = true,
        .prompt_tokens = 7,
        .has_ttft = true,
        .ttft_seconds = 0.25,
        .error = true,
        .error_type = "timeout",
        .request_id = "req-1",
        .session_id = "sess-\xc3\xa9t\xc3\xa9",      /* "sess-été" */
        .user_id = "\xe7\x94\xa8\xe6\x88\xb7-7",     /* "用户-7" */
        .zone = "z\xc3\xbcrich",                     /* "zürich" */
        .intent = "chat-\xf0\x9f\x98\x80",           /* "chat-😀" */
        .device_id = "dev-\xce\xb1\xce\xb2\xce\xb3", /* "dev-αβγ" */
        .source = "gateway",
        .stage = "synthesize",
    };
}

/* A metric with only what is required: every optional field absent. */
static inline struct am_metric fixture_min_metric(void)
{
    return (struct am_metric){
        .timestamp_us = FIXTURE_TS_US,
        .model = "m",
        .backend = "b",
        .latency_seconds = 0.5,
    };
}

/*
 * Encodes n metrics as one bus message the way the publisher does. Returns
 * the message length; fails the test when anything does not fit.
 */
static inline size_t fixture_frame(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                                   int64_t first_seq, const struct am_metric *ms, size_t n)
{
    uint8_t packed[AM_METRIC_MAX_PACKED];
    size_t used = am_frame_header(out, cap, source_id, epoch, first_seq, false);
    assert_true(used > 0);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        assert_int_equal(am_metric_pack(&ms[i], packed, sizeof packed, &len), 0);
        size_t w = am_frame_metric(out + used, cap - used, packed, len);
        assert_true(w > 0);
        used += w;
    }
    return used;
}

#endif
