/* Unit tests of the collector's cost column: the version in force, exact decimals, escaped names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "cost.h"

#include <stdio.h>
#include <string.h>

/* A COPY row as cl_rowfmt_batch writes it: time, model, tokens and prompt tokens vary. */
static void row(char *out, size_t len, const char *ts, const char *model, const char *tokens,
                const char *prompt)
{
    snprintf(
        out, len,
        "%s\t%s\tollama\t1.5\t%s\t30\t%s\t\\N\tok\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tgateway\t"
        "\\N\tsrc\t1\t7\n",
        ts, model, tokens, prompt);
}

/* The cost column cl_prices_cost_rows gives one row. */
static void cost_of(cl_prices *p, const char *r, char *cost, size_t len)
{
    struct am_buf out;
    am_buf_init(&out, 1 << 16);
    assert_int_equal(cl_prices_cost_rows(p, r, strlen(r), &out), AM_OK);
    /* Everything before the new column is the row as it was. */
    assert_int_equal(out.len > strlen(r), 1);
    assert_memory_equal(out.data, r, strlen(r) - 1);
    assert_int_equal(out.data[strlen(r) - 1], '\t');
    assert_int_equal(out.data[out.len - 1], '\n');
    snprintf(cost, len, "%.*s", (int)(out.len - strlen(r) - 1), out.data + strlen(r));
    am_buf_free(&out);
}

static void expect(cl_prices *p, const char *ts, const char *model, const char *tokens,
                   const char *prompt, const char *want)
{
    char r[512], cost[64];
    row(r, sizeof r, ts, model, tokens, prompt);
    cost_of(p, r, cost, sizeof cost);
    if (strcmp(cost, want) != 0)
        fail_msg("%s %s %s/%s: cost %s, expected %s", ts, model, prompt, tokens, cost, want);
}

static void test_the_version_in_force_at_the_call(void **state)
{
    cl_prices *p;
    assert_int_equal(cl_prices_new(&p), AM_OK);
    /* Added out of order: the list sorts them. */
    assert_int_equal(cl_prices_add(p, "gpt", "2026-02-01 00:00:00.000000+00", "1.25", "7.5"),
                     AM_OK);
    assert_int_equal(cl_prices_add(p, "gpt", "2026-01-01 00:00:00.000000+00", "2.5", "10"), AM_OK);
    assert_int_equal(cl_prices_add(p, "cheap", "2000-01-01 00:00:00.000000+00", "0", "0.6"), AM_OK);
    assert_int_equal(cl_prices_count(p), 3);
    /* Before its first version a model costs 0. */
    expect(p, "2025-12-31 23:59:59.999999+00", "gpt", "1000", "2000", "0");
    /* From the first version's instant on: (2000 x 2.5 + 1000 x 10) / 1e6. */
    expect(p, "2026-01-01 00:00:00.000000+00", "gpt", "1000", "2000", "0.015");
    expect(p, "2026-01-31 23:59:59.999999+00", "gpt", "1000", "2000", "0.015");
    /* The second version: (2000 x 1.25 + 1000 x 7.5) / 1e6. */
    expect(p, "2026-02-01 00:00:00.000000+00", "gpt", "1000", "2000", "0.01");
    /* No prompt tokens count as 0. */
    expect(p, "2026-03-01 00:00:00.000000+00", "gpt", "3", "\\N", "0.0000225");
    expect(p, "2026-03-01 00:00:00.000000+00", "cheap", "1", "5000", "0.0000006");
    /* A model without a price, or one whose name only starts like a priced one. */
    expect(p, "2026-03-01 00:00:00.000000+00", "local", "1000", "2000", "0");
    expect(p, "2026-03-01 00:00:00.000000+00", "gp", "1000", "2000", "0");
    expect(p, "2026-03-01 00:00:00.000000+00", "gpt4", "1000", "2000", "0");
    cl_prices_clear(p);
    assert_int_equal(cl_prices_count(p), 0);
    expect(p, "2026-03-01 00:00:00.000000+00", "gpt", "1000", "2000", "0");
    cl_prices_free(p);
}

static void test_exact_decimals_at_the_extremes(void **state)
{
    cl_prices *p;
    assert_int_equal(cl_prices_new(&p), AM_OK);
    assert_int_equal(cl_prices_add(p, "tiny", "2000-01-01 00:00:00.000000+00", "0.000000000001",
                                   "0.000000000001"),
                     AM_OK);
    assert_int_equal(
        cl_prices_add(p, "huge", "2000-01-01 00:00:00.000000+00", "1000000", "1000000"), AM_OK);
    /* One token at 1e-12 USD per million tokens: 1e-18 USD. */
    expect(p, "2026-01-01 00:00:00.000000+00", "tiny", "1", "0", "0.000000000000000001");
    /* The largest counts at the largest price: (2^31 - 1) x 2 USD, no overflow. */
    expect(p, "2026-01-01 00:00:00.000000+00", "huge", "2147483647", "2147483647", "4294967294");
    expect(p, "2026-01-01 00:00:00.000000+00", "tiny", "2147483647", "2147483647",
           "0.000000004294967294");
    cl_prices_free(p);
}

static void test_escaped_model_names_match(void **state)
{
    cl_prices *p;
    char r[512], cost[64];
    assert_int_equal(cl_prices_new(&p), AM_OK);
    assert_int_equal(cl_prices_add(p, "a\tb\\c", "2000-01-01 00:00:00.000000+00", "1", "1"), AM_OK);
    /* In COPY text the tab and the backslash are escaped. */
    row(r, sizeof r, "2026-01-01 00:00:00.000000+00", "a\\tb\\\\c", "1000000", "0");
    cost_of(p, r, cost, sizeof cost);
    assert_string_equal(cost, "1");
    cl_prices_free(p);
}

static void test_bad_versions_are_refused(void **state)
{
    cl_prices *p;
    const char *ts = "2000-01-01 00:00:00.000000+00";
    assert_int_equal(cl_prices_new(&p), AM_OK);
    assert_int_equal(cl_prices_add(p, "m", ts, "-1", "1"), AM_EINVAL);
    assert_int_equal(cl_prices_add(p, "m", ts, "1", "1e3"), AM_EINVAL);
    assert_int_equal(cl_prices_add(p, "m", ts, "1000000.5", "1"), AM_EINVAL);
    assert_int_equal(cl_prices_add(p, "m", ts, "0.0000000000001", "1"), AM_EINVAL);
    assert_int_equal(cl_prices_add(p, "m", ts, "NaN", "1"), AM_EINVAL);
    assert_int_equal(cl_prices_add(p, "m", "2000-01-01", "1", "1"), AM_EINVAL);
    assert_int_equal(cl_prices_count(p), 0);
    cl_prices_free(p);
}

static void test_every_row_of_a_chunk_gets_its_cost(void **state)
{
    cl_prices *p;
    char a[512], b[512], both[1024];
    struct am_buf out;
    assert_int_equal(cl_prices_new(&p), AM_OK);
    assert_int_equal(cl_prices_add(p, "m", "2000-01-01 00:00:00.000000+00", "1", "2"), AM_OK);
    row(a, sizeof a, "2026-01-01 00:00:00.000000+00", "m", "10", "20");
    row(b, sizeof b, "2026-01-01 00:00:01.000000+00", "other", "10", "20");
    snprintf(both, sizeof both, "%s%s", a, b);
    am_buf_init(&out, 1 << 16);
    assert_int_equal(cl_prices_cost_rows(p, both, strlen(both), &out), AM_OK);
    char want[1200];
    snprintf(want, sizeof want, "%.*s\t0.00004\n%.*s\t0\n", (int)strlen(a) - 1, a,
             (int)strlen(b) - 1, b);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    /* A bound too small for the rows: AM_EFULL. */
    struct am_buf small;
    am_buf_init(&small, 16);
    assert_int_equal(cl_prices_cost_rows(p, both, strlen(both), &small), AM_EFULL);
    am_buf_free(&small);
    am_buf_free(&out);
    cl_prices_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_version_in_force_at_the_call),
        cmocka_unit_test(test_exact_decimals_at_the_extremes),
        cmocka_unit_test(test_escaped_model_names_match),
        cmocka_unit_test(test_bad_versions_are_refused),
        cmocka_unit_test(test_every_row_of_a_chunk_gets_its_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
