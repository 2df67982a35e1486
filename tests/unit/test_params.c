/* Unit tests of the admin-api's parameter parsing: times, numbers, limits, text, enums, booleans.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "params.h"

#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

/*
 * The aa_param_* functions read the query through am_http_query, which asks
 * libmicrohttpd. This definition takes the library's place in the test
 * binary: the "connection" is a NULL-terminated list of key, value pairs.
 */
const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                                        const char *key)
{
    const char *const *kv = (const char *const *)(void *)connection;
    if (kind != MHD_GET_ARGUMENT_KIND)
        return NULL;
    for (; kv[0]; kv += 2) {
        if (!strcmp(kv[0], key))
            return kv[1];
    }
    return NULL;
}

/* A request whose query is the pairs in kv (an array ending in NULL). */
static struct am_http_request request(const char **kv)
{
    return (struct am_http_request){
        .method = "GET", .path = "/", .body = "", .conn = (struct MHD_Connection *)(void *)kv};
}

/* Asserts that text parses to want ("YYYY-MM-DD HH:MM:SS.ffffff+00"). */
static void parses(const char *text, const char *want)
{
    char out[64];
    memset(out, 'x', sizeof out);
    int rc = aa_parse_time(text, out, sizeof out);
    if (rc != AM_OK)
        fail_msg("aa_parse_time(\"%s\") failed with %d", text, rc);
    if (strcmp(out, want) != 0)
        fail_msg("aa_parse_time(\"%s\") = \"%s\", want \"%s\"", text, out, want);
}

static void refuses(const char *text)
{
    char out[64];
    if (aa_parse_time(text, out, sizeof out) == AM_OK)
        fail_msg("aa_parse_time(\"%s\") accepted it as \"%s\"", text, out);
}

static void test_iso_forms(void **state)
{
    parses("2024-11-29T17:06:40Z", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29t17:06:40z", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29 17:06:40", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T17:06", "2024-11-29 17:06:00.000000+00");
    parses("2024-11-29", "2024-11-29 00:00:00.000000+00");
    parses("1970-01-01T00:00:00Z", "1970-01-01 00:00:00.000000+00");
    parses("9999-12-31T23:59:59Z", "9999-12-31 23:59:59.000000+00");
}

static void test_offsets(void **state)
{
    parses("2024-11-29T19:06:40+02:00", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T19:06:40+0200", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T19:06:40+02", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T11:36:40-05:30", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T17:06:40+00:00", "2024-11-29 17:06:40.000000+00");
    parses("2024-11-29T17:06:40-00:00", "2024-11-29 17:06:40.000000+00");
    /* Offsets move the date across midnight, month and year ends. */
    parses("2024-12-01T01:00:00+02:00", "2024-11-30 23:00:00.000000+00");
    parses("2024-12-31T23:30:00-01:00", "2025-01-01 00:30:00.000000+00");
    parses("2025-01-01T00:15:00+00:30", "2024-12-31 23:45:00.000000+00");
    parses("2024-01-01T23:00:00-23:59", "2024-01-02 22:59:00.000000+00");
}

static void test_fractions(void **state)
{
    parses("2024-11-29T17:06:40.5Z", "2024-11-29 17:06:40.500000+00");
    parses("2024-11-29T17:06:40,25Z", "2024-11-29 17:06:40.250000+00");
    parses("2024-11-29T17:06:40.000001Z", "2024-11-29 17:06:40.000001+00");
    parses("2024-11-29T17:06:40.123456Z", "2024-11-29 17:06:40.123456+00");
    /* Digits past the microsecond are dropped, not rounded. */
    parses("2024-11-29T17:06:40.1234569Z", "2024-11-29 17:06:40.123456+00");
    parses("2024-11-29T19:06:40.75+02:00", "2024-11-29 17:06:40.750000+00");
}

/* Every microsecond survives the trip through floating point, for times of this century. */
static void test_microseconds_exact(void **state)
{
    for (int us = 0; us < 1000000; us += 997) {
        char in[64], want[64];
        snprintf(in, sizeof in, "2031-07-14T09:26:53.%06dZ", us);
        snprintf(want, sizeof want, "2031-07-14 09:26:53.%06d+00", us);
        parses(in, want);
    }
}

static void test_leap_days(void **state)
{
    parses("2024-02-29T12:00:00Z", "2024-02-29 12:00:00.000000+00");
    parses("2000-02-29", "2000-02-29 00:00:00.000000+00");
    parses("2024-03-01T00:30:00+01:00", "2024-02-29 23:30:00.000000+00");
    parses("2023-03-01T00:30:00+01:00", "2023-02-28 23:30:00.000000+00");
    parses("2024-12-31T12:00:00Z", "2024-12-31 12:00:00.000000+00");
    refuses("2023-02-29");
    refuses("2100-02-29");
    refuses("1900-02-29");
    refuses("2024-02-30");
}

static void test_leap_second(void **state)
{
    /* :60 is accepted and read as the first instant of the next minute. */
    parses("2016-12-31T23:59:60Z", "2017-01-01 00:00:00.000000+00");
    refuses("2016-12-31T23:59:61Z");
}

static void test_unix_seconds(void **state)
{
    parses("0", "1970-01-01 00:00:00.000000+00");
    parses("1732900000", "2024-11-29 17:06:40.000000+00");
    parses("1732900000.123", "2024-11-29 17:06:40.123000+00");
    parses("1709208000", "2024-02-29 12:00:00.000000+00");
    parses("1.", "1970-01-01 00:00:01.000000+00");
    parses(".5", "1970-01-01 00:00:00.500000+00");
    /* All digits are always seconds: a bare year is not a year. */
    parses("2024", "1970-01-01 00:33:44.000000+00");
    /* A fraction that rounds up carries into the seconds. */
    parses("1732900000.9999999", "2024-11-29 17:06:41.000000+00");
    refuses("253402300800");
    refuses("-1");
    refuses("1e9");
    refuses("1.2.3");
    refuses(".");
    refuses("0x10");
}

static void test_bad_strings(void **state)
{
    static const char *const bad[] = {
        "",
        "yesterday",
        "2024-11",
        "2024-1-01",
        "24-11-29",
        "10000-01-01",
        "2024-13-01",
        "2024-00-10",
        "2024-04-31",
        "2024-01-00",
        "2024/01/01",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T12",
        "2024-01-01T12:0",
        "2024-01-01T12:00:0",
        "2024-01-01T12:00:00.Z",
        "2024-01-01T12:00:00+",
        "2024-01-01T12:00:00+2",
        "2024-01-01T12:00:00+24:00",
        "2024-01-01T12:00:00+05:60",
        "2024-01-01T12:00:00+05:3",
        "2024-01-01T12:00:00Zjunk",
        "2024-01-01T12:00:00Z ",
        " 2024-01-01",
        "2024-01-01x",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",
        "2024-01-01T12:00:00 02:00",
        "2024-01-01'; DROP TABLE x; --",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refuses(bad[i]);
}

static void test_format_unix(void **state)
{
    char out[64];
    assert_int_equal(aa_format_unix(0, out, sizeof out), AM_OK);
    assert_string_equal(out, "1970-01-01 00:00:00.000000+00");
    assert_int_equal(aa_format_unix(951825600.25, out, sizeof out), AM_OK);
    assert_string_equal(out, "2000-02-29 12:00:00.250000+00");
    assert_int_equal(aa_format_unix(-0.5, out, sizeof out), AM_ERANGE);
    assert_int_equal(aa_format_unix(NAN, out, sizeof out), AM_ERANGE);
    assert_int_equal(aa_format_unix(INFINITY, out, sizeof out), AM_ERANGE);
    assert_int_equal(aa_format_unix(253402300800.0, out, sizeof out), AM_ERANGE);
}

static void test_param_int(void **state)
{
    const char *kv[] = {"n",    "42",    "neg", "-5",  "word",
                        "abc",  "empty", "",    "big", "9223372036854775808",
                        "frac", "1.5",   NULL};
    struct am_http_request req = request(kv);
    char err[AA_ERR_MAX] = "";
    long long v = 0;

    assert_int_equal(aa_param_int(&req, "n", 0, 1, 100, &v, err), AM_OK);
    assert_int_equal(v, 42);
    assert_int_equal(aa_param_int(&req, "absent", 7, 1, 100, &v, err), AM_OK);
    assert_int_equal(v, 7);
    assert_int_equal(aa_param_int(&req, "neg", 0, 1, 100, &v, err), AM_EINVAL);
    assert_string_equal(err, "neg must be between 1 and 100");
    assert_int_equal(aa_param_int(&req, "n", 0, 1, 41, &v, err), AM_EINVAL);
    static const char *const not_numbers[] = {"word", "empty", "big", "frac"};
    for (size_t i = 0; i < 4; i++) {
        err[0] = '\0';
        assert_int_equal(aa_param_int(&req, not_numbers[i], 0, 0, 100, &v, err), AM_EINVAL);
        assert_non_null(strstr(err, not_numbers[i]));
        assert_non_null(strstr(err, "whole number"));
    }
}

static void test_param_limit(void **state)
{
    const char *kv[] = {"a", "7", "b", "1000", "c", "1500", "d", "0", "e", "-1", "f", "ten", NULL};
    struct am_http_request req = request(kv);
    char err[AA_ERR_MAX];
    long long v;

    assert_int_equal(aa_param_limit(&req, "absent", 100, 1000, &v, err), AM_OK);
    assert_int_equal(v, 100);
    assert_int_equal(aa_param_limit(&req, "a", 100, 1000, &v, err), AM_OK);
    assert_int_equal(v, 7);
    assert_int_equal(aa_param_limit(&req, "b", 100, 1000, &v, err), AM_OK);
    assert_int_equal(v, 1000);
    assert_int_equal(aa_param_limit(&req, "c", 100, 1000, &v, err), AM_OK);
    assert_int_equal(v, 1000);
    static const char *const refused[] = {"d", "e", "f"};
    for (size_t i = 0; i < 3; i++) {
        err[0] = '\0';
        assert_int_equal(aa_param_limit(&req, refused[i], 100, 1000, &v, err), AM_EINVAL);
        assert_non_null(strstr(err, "at least 1"));
    }
}

static void test_param_time(void **state)
{
    const char *kv[] = {"since", "2024-02-29T12:00:00+01:00", "until", "2024-02-30", NULL};
    struct am_http_request req = request(kv);
    char out[48], err[AA_ERR_MAX];
    bool present = true;

    assert_int_equal(aa_param_time(&req, "absent", out, sizeof out, &present, err), AM_OK);
    assert_false(present);
    assert_int_equal(aa_param_time(&req, "since", out, sizeof out, &present, err), AM_OK);
    assert_true(present);
    assert_string_equal(out, "2024-02-29 11:00:00.000000+00");
    assert_int_equal(aa_param_time(&req, "until", out, sizeof out, &present, err), AM_EINVAL);
    assert_false(present);
    assert_non_null(strstr(err, "until must be"));
}

static void test_param_text(void **state)
{
    const char *kv[] = {"ok",   "phi3:mini", "utf8", "\xc3\xa9t\xc3\xa9", "bad", "a\xff",
                        "over", "abcdef",    NULL};
    struct am_http_request req = request(kv);
    const char *s = "sentinel";
    char err[AA_ERR_MAX];

    assert_int_equal(aa_param_text(&req, "absent", 5, &s, err), AM_OK);
    assert_null(s);
    assert_int_equal(aa_param_text(&req, "ok", 1024, &s, err), AM_OK);
    assert_string_equal(s, "phi3:mini");
    assert_int_equal(aa_param_text(&req, "utf8", 5, &s, err), AM_OK);
    assert_int_equal(aa_param_text(&req, "utf8", 4, &s, err), AM_EINVAL);
    assert_int_equal(aa_param_text(&req, "bad", 1024, &s, err), AM_EINVAL);
    assert_string_equal(err, "bad must be UTF-8 text of at most 1024 bytes");
    assert_int_equal(aa_param_text(&req, "over", 6, &s, err), AM_OK);
    assert_int_equal(aa_param_text(&req, "over", 5, &s, err), AM_EINVAL);
}

static void test_param_enum(void **state)
{
    static const char *const allowed[] = {"model", "backend", NULL};
    const char *kv[] = {"g", "backend", "h", "Model", "i", "model;--", NULL};
    struct am_http_request req = request(kv);
    const char *out = NULL;
    char err[AA_ERR_MAX];

    assert_int_equal(aa_param_enum(&req, "absent", allowed, NULL, &out, err), AM_OK);
    assert_null(out);
    assert_int_equal(aa_param_enum(&req, "absent", allowed, "model", &out, err), AM_OK);
    assert_string_equal(out, "model");
    /* The answer is the table's own string, never the request's. */
    assert_int_equal(aa_param_enum(&req, "g", allowed, NULL, &out, err), AM_OK);
    assert_ptr_equal(out, allowed[1]);
    assert_int_equal(aa_param_enum(&req, "h", allowed, NULL, &out, err), AM_EINVAL);
    assert_string_equal(err, "h must be one of model, backend");
    assert_int_equal(aa_param_enum(&req, "i", allowed, NULL, &out, err), AM_EINVAL);
}

static void test_param_bool(void **state)
{
    const char *kv[] = {"a", "true", "b", "FALSE", "c", "1", "d", "0", "e", "yes", NULL};
    struct am_http_request req = request(kv);
    bool v;
    char err[AA_ERR_MAX];

    assert_int_equal(aa_param_bool(&req, "absent", true, &v, err), AM_OK);
    assert_true(v);
    assert_int_equal(aa_param_bool(&req, "a", false, &v, err), AM_OK);
    assert_true(v);
    assert_int_equal(aa_param_bool(&req, "b", true, &v, err), AM_OK);
    assert_false(v);
    assert_int_equal(aa_param_bool(&req, "c", false, &v, err), AM_OK);
    assert_true(v);
    assert_int_equal(aa_param_bool(&req, "d", true, &v, err), AM_OK);
    assert_false(v);
    assert_int_equal(aa_param_bool(&req, "e", true, &v, err), AM_EINVAL);
    assert_string_equal(err, "e must be true or false");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_forms),    cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_fractions),    cmocka_unit_test(test_microseconds_exact),
        cmocka_unit_test(test_leap_days),    cmocka_unit_test(test_leap_second),
        cmocka_unit_test(test_unix_seconds), cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_format_unix),  cmocka_unit_test(test_param_int),
        cmocka_unit_test(test_param_limit),  cmocka_unit_test(test_param_time),
        cmocka_unit_test(test_param_text),   cmocka_unit_test(test_param_enum),
        cmocka_unit_test(test_param_bool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
