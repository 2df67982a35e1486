/* Unit tests of price definitions: what PUT /api/llm-backends/prices accepts, refuses and stores.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "prices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2026-01-31 12:00:00 UTC */
#define NOW_US 1769860800000000LL

/* Parses body as the handler does once it holds a JSON object (invalid JSON: AM_EINVAL). */
static int parse(const char *body, struct aa_price *p, char *err)
{
    json_t *root = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    err[0] = '\0';
    if (!root || !json_is_object(root)) {
        json_decref(root);
        snprintf(err, 256, "not a JSON object");
        return AM_EINVAL;
    }
    int rc = aa_price_parse(root, NOW_US, p, err, 256);
    json_decref(root);
    return rc;
}

/* body is refused, and the reason contains want. */
static void refused(const char *body, const char *want)
{
    struct aa_price p;
    char err[256];
    if (parse(body, &p, err) != AM_EINVAL)
        fail_msg("accepted %s", body);
    if (!strstr(err, want))
        fail_msg("%s: reason '%s' does not say '%s'", body, err, want);
}

static void test_accepts_a_definition_and_defaults_valid_from_to_now(void **state)
{
    struct aa_price p;
    char err[256];
    assert_int_equal(
        parse("{\"model\": \"gpt-4o\", \"input_usd_per_mtok\": 2.5, \"output_usd_per_mtok\": 10}",
              &p, err),
        AM_OK);
    assert_string_equal(p.model, "gpt-4o");
    assert_string_equal(p.input_usd_per_mtok, "2.5");
    assert_string_equal(p.output_usd_per_mtok, "10");
    assert_string_equal(p.valid_from, "2026-01-31 12:00:00.000000+00");
}

/* A definition of model m with more (JSON members) is accepted and stores valid_from want. */
static void accepted(const char *more, const char *want)
{
    struct aa_price p;
    char body[256], err[256];
    snprintf(body, sizeof body,
             "{\"model\": \"m\", \"input_usd_per_mtok\": 0, \"output_usd_per_mtok\": 1, %s}", more);
    if (parse(body, &p, err) != AM_OK)
        fail_msg("refused %s: %s", body, err);
    assert_string_equal(p.valid_from, want);
}

static void test_valid_from_as_iso_or_unix_seconds(void **state)
{
    accepted("\"valid_from\": \"2026-02-01T00:00:00Z\"", "2026-02-01 00:00:00.000000+00");
    accepted("\"valid_from\": 1769860800.5", "2026-01-31 12:00:00.500000+00");
    accepted("\"valid_from\": null", "2026-01-31 12:00:00.000000+00");
}

static void test_listed_keys_are_ignored(void **state)
{
    accepted("\"current\": true, \"valid_until\": null, \"created\": false, \"created_at\": \"x\"",
             "2026-01-31 12:00:00.000000+00");
}

static void test_bad_definitions_name_what_is_wrong(void **state)
{
    refused("{\"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}", "model is required");
    refused("{\"model\": \"\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}",
            "model is required");
    refused("{\"model\": 7, \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1}",
            "model is required");
    refused("{\"model\": \"m\", \"output_usd_per_mtok\": 1}", "input_usd_per_mtok and");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": -0.5, \"output_usd_per_mtok\": 1}",
            "input_usd_per_mtok must be a number from 0");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": \"3\"}",
            "output_usd_per_mtok must be a number");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": 0.0000000000001, "
            "\"output_usd_per_mtok\": 1}",
            "input_usd_per_mtok must have at most 12 decimals");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1e7}",
            "output_usd_per_mtok must be a number from 0 to 1000000");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, "
            "\"valid_from\": \"yesterday\"}",
            "valid_from must be an ISO 8601 time");
    refused("{\"model\": \"m\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, "
            "\"backend\": \"mlx\"}",
            "unknown field 'backend'");
}

/* Prices reach PostgreSQL's numeric as the decimal the client wrote, not a binary expansion. */
static void test_decimal_is_the_shortest_that_reads_back(void **state)
{
    char out[32];
    assert_int_equal(aa_price_decimal(0.15, out, sizeof out), AM_OK);
    assert_string_equal(out, "0.15");
    assert_int_equal(aa_price_decimal(1000000, out, sizeof out), AM_OK);
    assert_string_equal(out, "1000000");
    assert_int_equal(aa_price_decimal(1e-7, out, sizeof out), AM_OK);
    assert_string_equal(out, "0.0000001");
    assert_int_equal(aa_price_decimal(0.000000000001, out, sizeof out), AM_OK);
    assert_string_equal(out, "0.000000000001");
    /* Past 12 decimals (0.1 + 0.2 is 0.30000000000000004 in binary): refused. */
    assert_int_equal(aa_price_decimal(0.1 + 0.2, out, sizeof out), AM_EINVAL);
    assert_int_equal(aa_price_decimal(1.5e-13, out, sizeof out), AM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_a_definition_and_defaults_valid_from_to_now),
        cmocka_unit_test(test_valid_from_as_iso_or_unix_seconds),
        cmocka_unit_test(test_listed_keys_are_ignored),
        cmocka_unit_test(test_bad_definitions_name_what_is_wrong),
        cmocka_unit_test(test_decimal_is_the_shortest_that_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
