/* Unit tests of the metric encoding, the bus frame decoder and metric validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "am_metric.h"
#include "fixtures.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_CAP 65536

/* Timestamps the validator accepts, inclusive: 2000-01-01 and 2100-01-01. */
#define TS_MIN_US 946684800000000LL
#define TS_MAX_US 4102444800000000LL

/* Encodes ms as one frame and decodes it again; the caller frees the batch. */
static Athena__Metrics__MetricBatch *round_trip(const struct am_metric *ms, size_t n,
                                                const char *source_id, int64_t epoch,
                                                int64_t first_seq)
{
    static uint8_t frame[FRAME_CAP];
    Athena__Metrics__MetricBatch *batch = NULL;
    const char *why = NULL;
    size_t len = fixture_frame(frame, sizeof frame, source_id, epoch, first_seq, ms, n);
    int rc = am_frame_decode(frame, len, &batch, &why);
    if (rc != 0)
        fail_msg("am_frame_decode: %s", why);
    assert_non_null(batch);
    return batch;
}

static void test_round_trip_keeps_every_field(void **state)
{
    struct am_metric m = fixture_full_metric();
    Athena__Metrics__MetricBatch *b = round_trip(&m, 1, "gw@host", 9, 0);
    assert_int_equal(b->n_metrics, 1);
    const Athena__Metrics__Metric *d = b->metrics[0];

    assert_int_equal(d->timestamp_us, m.timestamp_us);
    assert_string_equal(d->model, m.model);
    assert_string_equal(d->backend, m.backend);
    assert_true(d->latency_seconds == m.latency_seconds);
    assert_true(d->has_tokens);
    assert_int_equal(d->tokens, m.tokens);
    assert_true(d->has_tokens_per_second);
    assert_true(d->tokens_per_second == m.tokens_per_second);
    assert_true(d->has_prompt_tokens);
    assert_int_equal(d->prompt_tokens, m.prompt_tokens);
    assert_true(d->has_ttft_seconds);
    assert_true(d->ttft_seconds == m.ttft_seconds);
    assert_true(d->has_error);
    assert_true(d->error);
    assert_string_equal(d->error_type, m.error_type);
    assert_string_equal(d->request_id, m.request_id);
    assert_string_equal(d->session_id, m.session_id);
    assert_string_equal(d->user_id, m.user_id);
    assert_string_equal(d->zone, m.zone);
    assert_string_equal(d->intent, m.intent);
    assert_string_equal(d->device_id, m.device_id);
    assert_string_equal(d->source, m.source);
    assert_string_equal(d->stage, m.stage);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_round_trip_leaves_absent_optionals_absent(void **state)
{
    struct am_metric m = fixture_min_metric();
    /* Values behind a false has_ flag must not travel. */
    m.prompt_tokens = 99;
    m.ttft_seconds = 3.0;
    Athena__Metrics__MetricBatch *b = round_trip(&m, 1, "gw@host", 9, 0);
    const Athena__Metrics__Metric *d = b->metrics[0];

    assert_false(d->has_prompt_tokens);
    assert_false(d->has_ttft_seconds);
    assert_false(d->has_error);
    assert_false(d->error);
    /* tokens and tokens_per_second are always sent, zero included. */
    assert_true(d->has_tokens);
    assert_int_equal(d->tokens, 0);
    assert_true(d->has_tokens_per_second);
    assert_true(d->tokens_per_second == 0.0);
    assert_null(d->error_type);
    assert_null(d->request_id);
    assert_null(d->session_id);
    assert_null(d->user_id);
    assert_null(d->zone);
    assert_null(d->intent);
    assert_null(d->device_id);
    assert_null(d->source);
    assert_null(d->stage);
    assert_int_equal(am_metric_validate_pb(d, &(const char *){NULL}), 0);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_round_trip_keeps_multibyte_utf8_byte_exact(void **state)
{
    /* 1024 bytes of 4-byte characters: the longest text a field may hold. */
    static char longest[AM_METRIC_MAX_STRING + 1];
    for (size_t i = 0; i < AM_METRIC_MAX_STRING; i += 4)
        memcpy(longest + i, "\xf0\x9f\x8e\xb5", 4);
    struct am_metric m = fixture_min_metric();
    m.model = "\xe6\xa8\xa1\xe5\x9e\x8b-\xc3\xbc";
    m.backend = "\xf0\x9f\x9a\x80";
    m.stage = longest;
    const char *why = NULL;
    assert_int_equal(am_metric_validate(&m, &why), 0);

    Athena__Metrics__MetricBatch *b = round_trip(&m, 1, "s\xc3\xb8urce", 1, 0);
    const Athena__Metrics__Metric *d = b->metrics[0];
    assert_string_equal(b->source_id, "s\xc3\xb8urce");
    assert_string_equal(d->model, m.model);
    assert_string_equal(d->backend, m.backend);
    assert_int_equal(strlen(d->stage), AM_METRIC_MAX_STRING);
    assert_memory_equal(d->stage, longest, AM_METRIC_MAX_STRING);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_batch_keeps_header_and_metric_order(void **state)
{
    struct am_metric ms[5];
    char rids[5][16];
    for (int i = 0; i < 5; i++) {
        ms[i] = fixture_full_metric();
        snprintf(rids[i], sizeof rids[i], "r%d", i);
        ms[i].request_id = rids[i];
        ms[i].tokens = 100 + i;
    }
    Athena__Metrics__MetricBatch *b = round_trip(ms, 5, "orchestrator@node-3", 123456789, 4000);
    assert_string_equal(b->source_id, "orchestrator@node-3");
    assert_int_equal(b->epoch, 123456789);
    assert_int_equal(b->first_seq, 4000);
    assert_int_equal(b->n_metrics, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(b->metrics[i]->request_id, rids[i]);
        assert_int_equal(b->metrics[i]->tokens, 100 + i);
    }
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_batch_header_alone_decodes_as_empty_batch(void **state)
{
    Athena__Metrics__MetricBatch *b = round_trip(NULL, 0, "src", 0, 17);
    assert_int_equal(b->n_metrics, 0);
    assert_int_equal(b->epoch, 0);
    assert_int_equal(b->first_seq, 17);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_pack_reports_erange_when_output_is_too_small(void **state)
{
    uint8_t out[AM_METRIC_MAX_PACKED];
    size_t len = 0;
    struct am_metric m = fixture_full_metric();
    assert_int_equal(am_metric_pack(&m, out, sizeof out, &len), 0);
    assert_true(len > 0);
    size_t need = len;
    assert_int_equal(am_metric_pack(&m, out, need - 1, &len), AM_ERANGE);
    assert_int_equal(am_metric_pack(&m, out, need, &len), 0);
    assert_int_equal(len, need);
}

static void test_frame_writers_report_zero_when_out_of_room(void **state)
{
    uint8_t out[256];
    size_t need = am_frame_header(out, sizeof out, "src", 1, 0, false);
    assert_true(need > 4);
    assert_memory_equal(out, AM_FRAME_MAGIC, 4);
    assert_int_equal(am_frame_header(out, need - 1, "src", 1, 0, false), 0);

    uint8_t packed[16] = {0};
    assert_int_equal(am_frame_metric(out, 5, packed, sizeof packed), 0);
    assert_true(am_frame_metric(out, sizeof out, packed, sizeof packed) >= 2 + sizeof packed);
}

/* Expects am_frame_decode to refuse data with the given reason. */
static void assert_decode_rejects(const uint8_t *data, size_t len, const char *reason)
{
    Athena__Metrics__MetricBatch *b = NULL;
    const char *why = NULL;
    assert_int_equal(am_frame_decode(data, len, &b, &why), AM_EPROTO);
    assert_non_null(why);
    assert_string_equal(why, reason);
    assert_null(b);
}

static void test_decode_rejects_wrong_magic(void **state)
{
    uint8_t frame[FRAME_CAP];
    struct am_metric m = fixture_full_metric();
    size_t len = fixture_frame(frame, sizeof frame, "src", 1, 0, &m, 1);
    frame[3] = '2';
    assert_decode_rejects(frame, len, "bad_magic");
    frame[3] = '1';
    frame[0] = 'a';
    assert_decode_rejects(frame, len, "bad_magic");
}

static void test_decode_rejects_input_shorter_than_magic(void **state)
{
    assert_decode_rejects((const uint8_t *)"AMB", 3, "bad_magic");
    assert_decode_rejects((const uint8_t *)"", 0, "bad_magic");
}

static void test_decode_rejects_truncated_message(void **state)
{
    uint8_t frame[FRAME_CAP];
    struct am_metric ms[2] = {fixture_full_metric(), fixture_full_metric()};
    size_t len = fixture_frame(frame, sizeof frame, "src", 1, 0, ms, 2);
    /* Cut inside the last metric: its length prefix promises more than is there. */
    assert_decode_rejects(frame, len - 5, "not_protobuf");
    /* Only the magic and one byte of header. */
    assert_decode_rejects(frame, 5, "not_protobuf");
}

static void test_decode_rejects_header_without_required_field(void **state)
{
    /* Magic, then only epoch (field 2) and first_seq (field 3): source_id absent. */
    const uint8_t frame[] = {'A', 'M', 'B', '1', 0x10, 0x01, 0x18, 0x00};
    assert_decode_rejects(frame, sizeof frame, "not_protobuf");
}

static void test_decode_rejects_empty_or_null_source_id(void **state)
{
    uint8_t frame[256];
    size_t len = am_frame_header(frame, sizeof frame, "", 1, 0, false);
    assert_true(len > 0);
    assert_decode_rejects(frame, len, "bad_header");
    len = am_frame_header(frame, sizeof frame, NULL, 1, 0, false);
    assert_true(len > 0);
    assert_decode_rejects(frame, len, "bad_header");
}

static void test_decode_rejects_invalid_utf8_source_id(void **state)
{
    uint8_t frame[256];
    size_t len = am_frame_header(frame, sizeof frame, "bad\xc0\xafid", 1, 0, false);
    assert_true(len > 0);
    assert_decode_rejects(frame, len, "bad_header");
}

static void test_decode_rejects_negative_epoch_and_first_seq(void **state)
{
    uint8_t frame[256];
    size_t len = am_frame_header(frame, sizeof frame, "src", -1, 0, false);
    assert_decode_rejects(frame, len, "bad_header");
    len = am_frame_header(frame, sizeof frame, "src", 1, -5, false);
    assert_decode_rejects(frame, len, "bad_header");
}

static void test_decode_rejects_sequence_overflow(void **state)
{
    uint8_t frame[FRAME_CAP];
    struct am_metric m = fixture_min_metric();
    size_t len = fixture_frame(frame, sizeof frame, "src", 1, INT64_MAX, &m, 1);
    assert_decode_rejects(frame, len, "bad_header");
    /* A batch ending exactly at INT64_MAX (first_seq + n) is still accepted. */
    len = fixture_frame(frame, sizeof frame, "src", 1, INT64_MAX - 1, &m, 1);
    Athena__Metrics__MetricBatch *b = NULL;
    const char *why = NULL;
    assert_int_equal(am_frame_decode(frame, len, &b, &why), 0);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

static void test_decode_rejects_oversize_before_parsing(void **state)
{
    uint8_t *big = calloc(1, (size_t)AM_FRAME_MAX + 1);
    assert_non_null(big);
    memcpy(big, AM_FRAME_MAGIC, 4);
    assert_decode_rejects(big, (size_t)AM_FRAME_MAX + 1, "oversize");
    /* At exactly the bound the size is fine; the zero bytes are what is wrong. */
    assert_decode_rejects(big, AM_FRAME_MAX, "not_protobuf");
    free(big);
}

/* Expects am_metric_validate to refuse m with a reason that names field. */
static void assert_invalid(const struct am_metric *m, const char *field)
{
    const char *why = NULL;
    assert_int_equal(am_metric_validate(m, &why), AM_EINVAL);
    assert_non_null(why);
    if (!strstr(why, field))
        fail_msg("reason '%s' does not name '%s'", why, field);
}

static void test_validate_accepts_full_and_minimal_metrics(void **state)
{
    const char *why = NULL;
    struct am_metric m = fixture_full_metric();
    assert_int_equal(am_metric_validate(&m, &why), 0);
    m = fixture_min_metric();
    assert_int_equal(am_metric_validate(&m, &why), 0);
}

static void test_validate_rejects_missing_model_or_backend(void **state)
{
    struct am_metric m = fixture_full_metric();
    m.model = NULL;
    assert_invalid(&m, "model");
    m.model = "";
    assert_invalid(&m, "model");
    m = fixture_full_metric();
    m.backend = NULL;
    assert_invalid(&m, "backend");
    m.backend = "";
    assert_invalid(&m, "backend");
}

static void test_validate_rejects_bad_numbers(void **state)
{
    struct am_metric m = fixture_full_metric();
    m.latency_seconds = NAN;
    assert_invalid(&m, "latency_seconds");
    m.latency_seconds = -0.001;
    assert_invalid(&m, "latency_seconds");
    m.latency_seconds = INFINITY;
    assert_invalid(&m, "latency_seconds");

    m = fixture_full_metric();
    m.tokens_per_second = NAN;
    assert_invalid(&m, "tokens_per_second");

    m = fixture_full_metric();
    m.ttft_seconds = -1;
    assert_invalid(&m, "ttft_seconds");
    /* An absent ttft is not looked at. */
    m.has_ttft = false;
    const char *why = NULL;
    assert_int_equal(am_metric_validate(&m, &why), 0);
}

static void test_validate_rejects_negative_token_counts(void **state)
{
    const char *why = NULL;
    struct am_metric m = fixture_full_metric();
    m.tokens = -1;
    assert_invalid(&m, "token");

    m = fixture_full_metric();
    m.prompt_tokens = -1;
    assert_invalid(&m, "token");
    m.has_prompt_tokens = false;
    assert_int_equal(am_metric_validate(&m, &why), 0);

    m = fixture_full_metric();
    m.tokens = 0;
    m.prompt_tokens = 0;
    assert_int_equal(am_metric_validate(&m, &why), 0);
}

static void test_validate_rejects_timestamp_out_of_range(void **state)
{
    const char *why = NULL;
    struct am_metric m = fixture_full_metric();
    m.timestamp_us = TS_MIN_US - 1;
    assert_invalid(&m, "timestamp");
    m.timestamp_us = TS_MAX_US + 1;
    assert_invalid(&m, "timestamp");
    m.timestamp_us = 0;
    assert_invalid(&m, "timestamp");
    m.timestamp_us = TS_MIN_US;
    assert_int_equal(am_metric_validate(&m, &why), 0);
    m.timestamp_us = TS_MAX_US;
    assert_int_equal(am_metric_validate(&m, &why), 0);
}

static void test_validate_rejects_invalid_utf8_in_any_text_field(void **state)
{
    static const char *const bad[] = {
        "over\xc0\xaflong",    /* overlong '/' */
        "sur\xed\xa0\x80gate", /* U+D800 */
        "trunc\xe2\x82",       /* a 3-byte sequence cut after 2 */
        "\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct am_metric m = fixture_full_metric();
        m.model = bad[i];
        assert_invalid(&m, "model");
        m = fixture_full_metric();
        m.error_type = bad[i];
        assert_invalid(&m, "error_type");
        m = fixture_full_metric();
        m.stage = bad[i];
        assert_invalid(&m, "stage");
        m = fixture_full_metric();
        m.device_id = bad[i];
        assert_invalid(&m, "device_id");
    }
}

static void test_validate_rejects_strings_over_max(void **state)
{
    static char at_max[AM_METRIC_MAX_STRING + 1];
    static char over_max[AM_METRIC_MAX_STRING + 2];
    memset(at_max, 'a', AM_METRIC_MAX_STRING);
    memset(over_max, 'a', AM_METRIC_MAX_STRING + 1);
    const char *why = NULL;

    struct am_metric m = fixture_full_metric();
    m.request_id = at_max;
    assert_int_equal(am_metric_validate(&m, &why), 0);
    m.request_id = over_max;
    assert_invalid(&m, "request_id");

    m = fixture_full_metric();
    m.backend = over_max;
    assert_invalid(&m, "backend");
}

static void test_validate_pb_applies_the_same_rules(void **state)
{
    Athena__Metrics__Metric pb = ATHENA__METRICS__METRIC__INIT;
    const char *why = NULL;
    pb.timestamp_us = FIXTURE_TS_US;
    pb.model = "m";
    pb.backend = "b";
    pb.latency_seconds = 1;
    assert_int_equal(am_metric_validate_pb(&pb, &why), 0);

    /* A negative count counts only when the field is present. */
    pb.tokens = -3;
    assert_int_equal(am_metric_validate_pb(&pb, &why), 0);
    pb.has_tokens = 1;
    assert_int_equal(am_metric_validate_pb(&pb, &why), AM_EINVAL);
    pb.tokens = 3;

    pb.has_ttft_seconds = 1;
    pb.ttft_seconds = NAN;
    assert_int_equal(am_metric_validate_pb(&pb, &why), AM_EINVAL);
    assert_non_null(strstr(why, "ttft_seconds"));
    pb.ttft_seconds = 0;

    pb.zone = "\xed\xbf\xbf"; /* U+DFFF */
    assert_int_equal(am_metric_validate_pb(&pb, &why), AM_EINVAL);
    assert_non_null(strstr(why, "zone"));
}

static void test_utf8_valid_accepts_well_formed_text(void **state)
{
    assert_true(am_utf8_valid("", 0));
    assert_true(am_utf8_valid("plain ascii", 64));
    assert_true(am_utf8_valid("\xc3\xa9", 64));         /* U+00E9 */
    assert_true(am_utf8_valid("\xe2\x82\xac", 64));     /* U+20AC */
    assert_true(am_utf8_valid("\xf0\x9f\x98\x80", 64)); /* U+1F600 */
    assert_true(am_utf8_valid("\xed\x9f\xbf", 64));     /* U+D7FF, just below surrogates */
    assert_true(am_utf8_valid("\xee\x80\x80", 64));     /* U+E000, just above */
    assert_true(am_utf8_valid("\xf4\x8f\xbf\xbf", 64)); /* U+10FFFF, the last code point */
    assert_true(am_utf8_valid("\xc2\x80", 64));         /* U+0080, shortest 2-byte */
}

static void test_utf8_valid_rejects_malformed_text(void **state)
{
    assert_false(am_utf8_valid("\x80", 64));             /* lone continuation */
    assert_false(am_utf8_valid("\xc0\xaf", 64));         /* overlong 2-byte */
    assert_false(am_utf8_valid("\xc1\xbf", 64));         /* overlong 2-byte */
    assert_false(am_utf8_valid("\xe0\x80\xaf", 64));     /* overlong 3-byte */
    assert_false(am_utf8_valid("\xf0\x82\x82\xac", 64)); /* overlong 4-byte */
    assert_false(am_utf8_valid("\xed\xa0\x80", 64));     /* U+D800 */
    assert_false(am_utf8_valid("\xed\xbf\xbf", 64));     /* U+DFFF */
    assert_false(am_utf8_valid("\xf4\x90\x80\x80", 64)); /* U+110000 */
    assert_false(am_utf8_valid("\xf8\x88\x80\x80\x80", 64));
    assert_false(am_utf8_valid("\xfe", 64));
    assert_false(am_utf8_valid("ab\xe2\x82", 64));   /* cut at the end */
    assert_false(am_utf8_valid("\xf0\x9f\x98", 64)); /* cut at the end */
    assert_false(am_utf8_valid("\xe2\x82x", 64));    /* ASCII where a continuation belongs */
    assert_false(am_utf8_valid("\xc3\xa9\xc3", 64)); /* valid, then a cut sequence */
}

static void test_utf8_valid_counts_bytes_against_max(void **state)
{
    assert_true(am_utf8_valid("abcd", 4));
    assert_false(am_utf8_valid("abcd", 3));
    assert_false(am_utf8_valid("a", 0));
    /* A character that would end past max does not fit, even though it starts inside. */
    assert_true(am_utf8_valid("a\xe2\x82\xac", 4));
    assert_false(am_utf8_valid("a\xe2\x82\xac", 3));
    assert_false(am_utf8_valid("\xf0\x9f\x98\x80", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_every_field),
        cmocka_unit_test(test_round_trip_leaves_absent_optionals_absent),
        cmocka_unit_test(test_round_trip_keeps_multibyte_utf8_byte_exact),
        cmocka_unit_test(test_batch_keeps_header_and_metric_order),
        cmocka_unit_test(test_batch_header_alone_decodes_as_empty_batch),
        cmocka_unit_test(test_pack_reports_erange_when_output_is_too_small),
        cmocka_unit_test(test_frame_writers_report_zero_when_out_of_room),
        cmocka_unit_test(test_decode_rejects_wrong_magic),
        cmocka_unit_test(test_decode_rejects_input_shorter_than_magic),
        cmocka_unit_test(test_decode_rejects_truncated_message),
        cmocka_unit_test(test_decode_rejects_header_without_required_field),
        cmocka_unit_test(test_decode_rejects_empty_or_null_source_id),
        cmocka_unit_test(test_decode_rejects_invalid_utf8_source_id),
        cmocka_unit_test(test_decode_rejects_negative_epoch_and_first_seq),
        cmocka_unit_test(test_decode_rejects_sequence_overflow),
        cmocka_unit_test(test_decode_rejects_oversize_before_parsing),
        cmocka_unit_test(test_validate_accepts_full_and_minimal_metrics),
        cmocka_unit_test(test_validate_rejects_missing_model_or_backend),
        cmocka_unit_test(test_validate_rejects_bad_numbers),
        cmocka_unit_test(test_validate_rejects_negative_token_counts),
        cmocka_unit_test(test_validate_rejects_timestamp_out_of_range),
        cmocka_unit_test(test_validate_rejects_invalid_utf8_in_any_text_field),
        cmocka_unit_test(test_validate_rejects_strings_over_max),
        cmocka_unit_test(test_validate_pb_applies_the_same_rules),
        cmocka_unit_test(test_utf8_valid_accepts_well_formed_text),
        cmocka_unit_test(test_utf8_valid_rejects_malformed_text),
        cmocka_unit_test(test_utf8_valid_counts_bytes_against_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
