/* Unit tests of the replay protocol's messages: stream notices and replay requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "am_replay.h"

#include <string.h>

static void test_notice_round_trip_keeps_next_seq_and_gone_ranges(void **state)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    struct am_seq_range gone[2] = {{10, 20}, {30, 4000}};
    size_t len = am_notice_encode(buf, sizeof buf, "gw@a", 7, 5000, gone, 2);
    assert_true(len > 4);
    assert_true(am_notice_is(buf, len));

    Athena__Metrics__StreamNotice *n = NULL;
    const char *why = NULL;
    assert_int_equal(am_notice_decode(buf, len, &n, &why), AM_OK);
    assert_string_equal(n->source_id, "gw@a");
    assert_int_equal(n->epoch, 7);
    assert_true(n->has_next_seq);
    assert_int_equal(n->next_seq, 5000);
    assert_int_equal(n->n_gone, 2);
    assert_int_equal(n->gone[1]->from, 30);
    assert_int_equal(n->gone[1]->to, 4000);
    athena__metrics__stream_notice__free_unpacked(n, NULL);

    /* Without next_seq (a gone notice only) it stays absent. */
    len = am_notice_encode(buf, sizeof buf, "gw@a", 7, -1, gone, 1);
    assert_int_equal(am_notice_decode(buf, len, &n, &why), AM_OK);
    assert_false(n->has_next_seq);
    athena__metrics__stream_notice__free_unpacked(n, NULL);
}

static void test_notice_refuses_bad_ranges_and_bounds(void **state)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    struct am_seq_range empty = {20, 20}, negative = {-5, 3};
    struct am_seq_range many[AM_REPLAY_MAX_RANGES + 1];
    for (int i = 0; i <= AM_REPLAY_MAX_RANGES; i++)
        many[i] = (struct am_seq_range){i * 2, i * 2 + 1};

    assert_int_equal(am_notice_encode(buf, sizeof buf, "gw", 1, -1, &empty, 1), 0);
    assert_int_equal(am_notice_encode(buf, sizeof buf, "gw", 1, -1, &negative, 1), 0);
    assert_int_equal(am_notice_encode(buf, sizeof buf, "gw", 1, -1, many, AM_REPLAY_MAX_RANGES + 1),
                     0);
    assert_true(am_notice_encode(buf, sizeof buf, "gw", 1, -1, many, AM_REPLAY_MAX_RANGES) > 0);
    assert_int_equal(am_notice_encode(buf, 8, "gw", 1, 5, NULL, 0), 0);

    Athena__Metrics__StreamNotice *n = NULL;
    const char *why = NULL;
    assert_int_equal(am_notice_decode((const uint8_t *)"AMB1xxxx", 8, &n, &why), AM_EPROTO);
    assert_string_equal(why, "bad_magic");
    assert_int_equal(am_notice_decode((const uint8_t *)"AMN1\xff\xff", 6, &n, &why), AM_EPROTO);
    assert_string_equal(why, "not_protobuf");
    static uint8_t big[AM_REPLAY_MSG_MAX + 1] = "AMN1";
    assert_int_equal(am_notice_decode(big, sizeof big, &n, &why), AM_EPROTO);
    assert_string_equal(why, "oversize");
    /* An empty source id is a bad header. */
    size_t len = am_notice_encode(buf, sizeof buf, "", 1, 5, NULL, 0);
    assert_int_equal(am_notice_decode(buf, len, &n, &why), AM_EPROTO);
    assert_string_equal(why, "bad_header");
}

static void test_request_starts_with_its_topic_and_round_trips(void **state)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    struct am_seq_range r[2] = {{0, 512}, {1000, 1001}};
    size_t len = am_request_encode(buf, sizeof buf, "gw@a", 9, r, 2);
    assert_true(len > 0);
    /* NNG's SUB filter matches prefixes: the topic is the source id with its NUL. */
    assert_memory_equal(buf, "gw@a\0AMQ1", 9);

    Athena__Metrics__ReplayRequest *q = NULL;
    const char *why = NULL;
    assert_int_equal(am_request_decode(buf, len, &q, &why), AM_OK);
    assert_string_equal(q->source_id, "gw@a");
    assert_int_equal(q->epoch, 9);
    assert_int_equal(q->n_ranges, 2);
    assert_int_equal(q->ranges[0]->to, 512);
    athena__metrics__replay_request__free_unpacked(q, NULL);
}

static void test_request_refuses_a_topic_that_is_not_its_source(void **state)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    struct am_seq_range r = {0, 5};
    size_t len = am_request_encode(buf, sizeof buf, "gw@a", 9, &r, 1);
    Athena__Metrics__ReplayRequest *q = NULL;
    const char *why = NULL;

    buf[0] = 'x'; /* "xw@a" subscribed, "gw@a" asked for */
    assert_int_equal(am_request_decode(buf, len, &q, &why), AM_EPROTO);
    assert_string_equal(why, "bad_header");
    assert_int_equal(am_request_decode((const uint8_t *)"gw@a", 4, &q, &why), AM_EPROTO);
    assert_string_equal(why, "bad_magic");
    /* No range, or an empty one, is refused at both ends. */
    assert_int_equal(am_request_encode(buf, sizeof buf, "gw@a", 9, &r, 0), 0);
    r.to = 0;
    assert_int_equal(am_request_encode(buf, sizeof buf, "gw@a", 9, &r, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notice_round_trip_keeps_next_seq_and_gone_ranges),
        cmocka_unit_test(test_notice_refuses_bad_ranges_and_bounds),
        cmocka_unit_test(test_request_starts_with_its_topic_and_round_trips),
        cmocka_unit_test(test_request_refuses_a_topic_that_is_not_its_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
