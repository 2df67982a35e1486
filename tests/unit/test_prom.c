/* Unit tests of the Prometheus text writer and the bounded buffer under it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_buf.h"
#include "am_error.h"
#include "am_prom.h"

#include <stdlib.h>
#include <string.h>

static void test_histogram_buckets_are_cumulative_and_inf_equals_count(void **state)
{
    static const double bounds[] = {0.1, 1, 10};
    struct am_prom_histogram h = {.bounds = bounds, .nbounds = 3};
    /* A value equal to a bound belongs to that bound's bucket (le is "less or equal"). */
    const double values[] = {0.05, 0.1, 0.5, 1, 5, 50, 100};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        am_prom_observe(&h, values[i]);
    struct am_buf b;
    am_buf_init(&b, 1 << 16);

    am_prom_histogram_write(&b, "t_latency_seconds", "Latency.", &h);
    assert_string_equal(b.data, "# HELP t_latency_seconds Latency.\n"
                                "# TYPE t_latency_seconds histogram\n"
                                "t_latency_seconds_bucket{le=\"0.1\"} 2\n"
                                "t_latency_seconds_bucket{le=\"1\"} 4\n"
                                "t_latency_seconds_bucket{le=\"10\"} 5\n"
                                "t_latency_seconds_bucket{le=\"+Inf\"} 7\n"
                                "t_latency_seconds_sum 156.650000\n"
                                "t_latency_seconds_count 7\n");
    am_buf_free(&b);
}

static void test_empty_histogram_writes_zero_buckets(void **state)
{
    static const double bounds[] = {1};
    struct am_prom_histogram h = {.bounds = bounds, .nbounds = 1};
    struct am_buf b;
    am_buf_init(&b, 1 << 16);
    am_prom_histogram_write(&b, "h", "H.", &h);
    assert_non_null(strstr(b.data, "\nh_bucket{le=\"1\"} 0\n"));
    assert_non_null(strstr(b.data, "\nh_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(b.data, "\nh_count 0\n"));
    am_buf_free(&b);
}

static void test_counter_gauge_and_labelled_sample_lines(void **state)
{
    struct am_buf b;
    am_buf_init(&b, 1 << 16);
    am_prom_counter(&b, "c_total", "Things.", 18446744073709551615ULL);
    am_prom_gauge(&b, "g", "Level.", 2.5);
    am_prom_sample(&b, "d_total", "reason=\"full\"", 3);
    assert_string_equal(b.data, "# HELP c_total Things.\n# TYPE c_total counter\n"
                                "c_total 18446744073709551615\n"
                                "# HELP g Level.\n# TYPE g gauge\ng 2.5\n"
                                "d_total{reason=\"full\"} 3\n");
    am_buf_free(&b);
}

static void test_buf_append_stops_at_max_and_appends_nothing(void **state)
{
    struct am_buf b;
    am_buf_init(&b, 10);
    assert_int_equal(am_buf_append(&b, "0123456", 7), 0);
    assert_int_equal(am_buf_append(&b, "abcd", 4), AM_EFULL);
    assert_int_equal(b.len, 7);
    assert_string_equal(b.data, "0123456");
    assert_int_equal(am_buf_append(&b, "abc", 3), 0); /* exactly max */
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456abc");
    assert_int_equal(am_buf_append(&b, "x", 1), AM_EFULL);
    assert_int_equal(am_buf_printf(&b, "%d", 1), AM_EFULL);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456abc");
    am_buf_free(&b);
}

static void test_buf_printf_past_max_appends_nothing(void **state)
{
    struct am_buf b;
    am_buf_init(&b, 300);
    assert_int_equal(am_buf_printf(&b, "%s", "head:"), 0);
    /* Text longer than printf's 256-byte stack buffer takes the other path; same bound. */
    assert_int_equal(am_buf_printf(&b, "%300d", 7), AM_EFULL);
    assert_int_equal(am_buf_printf(&b, "%296d", 7), AM_EFULL);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "head:");
    assert_int_equal(am_buf_printf(&b, "%295d", 7), 0);
    assert_int_equal(b.len, 300);
    am_buf_free(&b);
}

static void test_buf_printf_grows_past_its_first_allocation(void **state)
{
    struct am_buf b;
    char expect[5000];
    am_buf_init(&b, 1 << 20);
    /* Short pieces, then one longer than printf's 256-byte stack buffer. */
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        assert_int_equal(am_buf_printf(&b, "%d,", i % 10), 0);
        expect[n++] = (char)('0' + i % 10);
        expect[n++] = ',';
    }
    assert_int_equal(am_buf_printf(&b, "%1000s|", "x"), 0);
    memset(expect + n, ' ', 999);
    n += 999;
    expect[n++] = 'x';
    expect[n++] = '|';
    expect[n] = '\0';

    assert_int_equal(b.len, n);
    assert_true(b.cap > n);
    assert_int_equal(strlen(b.data), n);
    assert_string_equal(b.data, expect);
    am_buf_free(&b);
}

static void test_buf_take_hands_over_data_and_empties(void **state)
{
    struct am_buf b;
    size_t len = 0;
    am_buf_init(&b, 100);
    char *empty = am_buf_take(&b, &len);
    assert_non_null(empty);
    assert_int_equal(len, 0);
    assert_string_equal(empty, "");
    free(empty);

    assert_int_equal(am_buf_append(&b, "abc", 3), 0);
    char *p = am_buf_take(&b, &len);
    assert_int_equal(len, 3);
    assert_string_equal(p, "abc");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    /* The bound still holds for what comes next. */
    assert_int_equal(am_buf_append(&b, p, 3), 0);
    assert_string_equal(b.data, "abc");
    free(p);
    am_buf_free(&b);
    am_buf_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_buckets_are_cumulative_and_inf_equals_count),
        cmocka_unit_test(test_empty_histogram_writes_zero_buckets),
        cmocka_unit_test(test_counter_gauge_and_labelled_sample_lines),
        cmocka_unit_test(test_buf_append_stops_at_max_and_appends_nothing),
        cmocka_unit_test(test_buf_printf_past_max_appends_nothing),
        cmocka_unit_test(test_buf_printf_grows_past_its_first_allocation),
        cmocka_unit_test(test_buf_take_hands_over_data_and_empties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
