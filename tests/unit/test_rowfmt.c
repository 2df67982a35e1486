/* Unit tests of the COPY text rows made from decoded bus batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_buf.h"
#include "am_log.h"
#include "am_metric.h"
#include "fixtures.h"
#include "rowfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rows of fixture_full_metric and fixture_min_metric in stream gw@host/77. */
#define FULL_ROW_FIELDS                                                                            \
    "2023-11-14 "                                                                                  \
    "22:13:20.123456+00\tllama-3.1-8b\tvllm\t1.25\t42\t33.5\t7\t0.25\terror\ttimeout\treq-1\t"     \
    "sess-\xc3\xa9t\xc3\xa9\t\xe7\x94\xa8\xe6\x88\xb7-7\tz\xc3\xbcrich\tchat-\xf0\x9f\x98\x80\t"   \
    "dev-\xce\xb1\xce\xb2\xce\xb3\tgateway\tsynthesize\tgw@host\t77\t"
#define MIN_ROW_FIELDS                                                                             \
    "2023-11-14 "                                                                                  \
    "22:13:20.123456+00\tm\tb\t0.5\t0\t0\t\\N\t\\N\tok\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"       \
    "unknown\t\\N\tgw@host\t77\t"

/* Encodes ms as one bus message and decodes it, as the receiver does. */
static Athena__Metrics__MetricBatch *decoded(const char *source_id, int64_t epoch,
                                             int64_t first_seq, const struct am_metric *ms,
                                             size_t n)
{
    static uint8_t frame[65536];
    Athena__Metrics__MetricBatch *b = NULL;
    const char *why = NULL;
    size_t len = fixture_frame(frame, sizeof frame, source_id, epoch, first_seq, ms, n);
    if (am_frame_decode(frame, len, &b, &why) != 0)
        fail_msg("am_frame_decode: %s", why);
    return b;
}

/* Frees the batch even when a test fails with one in hand. */
static int free_batch(void **state)
{
    athena__metrics__metric_batch__free_unpacked(*state, NULL);
    *state = NULL;
    return 0;
}

static void test_rows_have_every_field_in_column_order(void **state)
{
    struct am_metric ms[2] = {fixture_full_metric(), fixture_min_metric()};
    Athena__Metrics__MetricBatch *b = *state = decoded("gw@host", 77, 1000, ms, 2);
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 2);
    assert_int_equal(invalid, 0);
    assert_string_equal(out.data, FULL_ROW_FIELDS "1000\n" MIN_ROW_FIELDS "1001\n");
    am_buf_free(&out);
}

static void test_rows_have_one_field_per_column(void **state)
{
    size_t columns = 1;
    for (const char *p = CL_ROW_COLUMNS; *p; p++)
        columns += *p == ',';
    struct am_metric m = fixture_full_metric();
    Athena__Metrics__MetricBatch *b = *state = decoded("gw@host", 77, 0, &m, 1);
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 1);
    size_t tabs = 0;
    for (size_t i = 0; i < out.len; i++)
        tabs += out.data[i] == '\t';
    assert_int_equal(tabs + 1, columns);
    assert_int_equal(out.data[out.len - 1], '\n');
    am_buf_free(&out);
}

static void test_status_is_error_only_when_error_is_true(void **state)
{
    /* Built by hand: a present error field that says false, and absent counts. */
    Athena__Metrics__Metric m = ATHENA__METRICS__METRIC__INIT;
    Athena__Metrics__Metric *ms[1] = {&m};
    Athena__Metrics__MetricBatch b = ATHENA__METRICS__METRIC_BATCH__INIT;
    m.timestamp_us = FIXTURE_TS_US;
    m.model = "m";
    m.backend = "b";
    m.latency_seconds = 2;
    m.has_error = 1;
    m.error = 0;
    m.source = "";
    b.source_id = "s";
    b.epoch = 1;
    b.first_seq = 5;
    b.n_metrics = 1;
    b.metrics = ms;
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, &b, &invalid), 1);
    assert_string_equal(
        out.data, "2023-11-14 22:13:20.123456+00\tm\tb\t2\t0\t0\t\\N\t\\N\tok\t\\N\t\\N\t\\N\t"
                  "\\N\t\\N\t\\N\t\\N\tunknown\t\\N\ts\t1\t5\n");
    am_buf_free(&out);
}

static void test_text_escapes_backslash_tab_newline_and_cr(void **state)
{
    struct am_metric m = fixture_min_metric();
    m.model = "a\\b\tc\nd\re";
    m.stage = "\\\\";
    m.error_type = "\r\n";
    Athena__Metrics__MetricBatch *b = *state = decoded("gw\thost", 77, 3, &m, 1);
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 1);
    assert_string_equal(
        out.data, "2023-11-14 22:13:20.123456+00\ta\\\\b\\tc\\nd\\re\tb\t0.5\t0\t0\t\\N\t\\N\tok\t"
                  "\\r\\n\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tunknown\t\\\\\\\\\t"
                  "gw\\thost\t77\t3\n");
    am_buf_free(&out);
}

static void test_invalid_metric_is_skipped_and_others_keep_their_seq(void **state)
{
    struct am_metric ms[4] = {fixture_min_metric(), fixture_min_metric(), fixture_min_metric(),
                              fixture_min_metric()};
    ms[1].latency_seconds = -1;
    ms[2].model = "\xc0\xaf";
    Athena__Metrics__MetricBatch *b = *state = decoded("gw@host", 77, 10, ms, 4);
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 2);
    assert_int_equal(invalid, 2);
    assert_string_equal(out.data, MIN_ROW_FIELDS "10\n" MIN_ROW_FIELDS "13\n");
    am_buf_free(&out);
}

static void test_empty_batch_writes_nothing(void **state)
{
    Athena__Metrics__MetricBatch *b = *state = decoded("gw@host", 77, 10, NULL, 0);
    struct am_buf out;
    unsigned invalid = 0;
    am_buf_init(&out, 1 << 20);

    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(invalid, 0);
    am_buf_free(&out);
}

static void test_bound_too_small_fails_and_leaves_buffer_unchanged(void **state)
{
    struct am_metric ms[2] = {fixture_full_metric(), fixture_min_metric()};
    Athena__Metrics__MetricBatch *b = *state = decoded("gw@host", 77, 1000, ms, 2);
    const char *first_row = FULL_ROW_FIELDS "1000\n";
    struct am_buf out;
    unsigned invalid = 0;

    /* Room for what is there, the first row and a little: not for the second row. */
    am_buf_init(&out, strlen("before\n") + strlen(first_row) + 10);
    assert_int_equal(am_buf_append(&out, "before\n", 7), 0);
    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), -1);
    assert_int_equal(out.len, 7);
    assert_string_equal(out.data, "before\n");

    /* Too small for even the first row. */
    am_buf_free(&out);
    am_buf_init(&out, 16);
    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), -1);
    assert_int_equal(out.len, 0);
    if (out.data)
        assert_string_equal(out.data, "");

    /* The same buffer takes the batch once it may grow. */
    am_buf_free(&out);
    am_buf_init(&out, 1 << 20);
    assert_int_equal(am_buf_append(&out, "before\n", 7), 0);
    assert_int_equal(cl_rowfmt_batch(&out, b, &invalid), 2);
    assert_int_equal(strncmp(out.data + 7, first_row, strlen(first_row)), 0);
    am_buf_free(&out);
}

int main(void)
{
    /* Skipped metrics are logged at debug; keep the test output clean. */
    am_log_set_level("error");
#define T(fn) cmocka_unit_test_teardown(fn, free_batch)
    const struct CMUnitTest tests[] = {
        T(test_rows_have_every_field_in_column_order),
        T(test_rows_have_one_field_per_column),
        cmocka_unit_test(test_status_is_error_only_when_error_is_true),
        T(test_text_escapes_backslash_tab_newline_and_cr),
        T(test_invalid_metric_is_skipped_and_others_keep_their_seq),
        T(test_empty_batch_writes_nothing),
        T(test_bound_too_small_fails_and_leaves_buffer_unchanged),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
