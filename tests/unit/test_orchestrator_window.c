/* Unit tests of the router's sliding-window summary (GET /router/metrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "window.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static json_t *summary(orch_window *w, int64_t now_ms)
{
    char *s = orch_window_json(w, now_ms);
    assert_non_null(s);
    json_error_t jerr;
    json_t *o = json_loads(s, 0, &jerr);
    free(s);
    assert_non_null(o);
    return o;
}

static json_int_t get_int(json_t *o, const char *path1, const char *path2, const char *key)
{
    json_t *v = o;
    if (path1)
        v = json_object_get(v, path1);
    if (path2)
        v = json_object_get(v, path2);
    v = json_object_get(v, key);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", key);
    return json_integer_value(v);
}

static double get_real(json_t *o, const char *path1, const char *path2, const char *key)
{
    json_t *v = o;
    if (path1)
        v = json_object_get(v, path1);
    if (path2)
        v = json_object_get(v, path2);
    v = json_object_get(v, key);
    if (!json_is_number(v))
        fail_msg("%s is not a number", key);
    return json_number_value(v);
}

static void test_empty_window(void **state)
{
    orch_window *w;
    assert_int_equal(orch_window_new(&w, 60), AM_OK);
    json_t *o = summary(w, 1000);
    assert_int_equal(get_int(o, NULL, NULL, "window_seconds"), 60);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 0);
    assert_true(get_real(o, NULL, NULL, "avg_latency_seconds") == 0.0);
    assert_int_equal(json_object_size(json_object_get(o, "by_model")), 0);
    json_decref(o);
    orch_window_free(w);
}

static void test_by_model_and_backend_with_errors_left_out_of_averages(void **state)
{
    orch_window *w;
    int64_t t = 5000000;
    assert_int_equal(orch_window_new(&w, 60), AM_OK);
    orch_window_record(w, t, "phi3:mini", "ollama", 1.0, 40.0, false);
    orch_window_record(w, t + 10, "phi3:mini", "ollama", 3.0, 20.0, false);
    orch_window_record(w, t + 20, "phi3:mini", "mlx", 0.5, 0.0, false); /* no rate reported */
    orch_window_record(w, t + 30, "llama3.1:8b", "ollama", 99.0, 0.0, true);

    json_t *o = summary(w, t + 40);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 4);
    assert_int_equal(get_int(o, NULL, NULL, "errors"), 1);
    assert_float_equal(get_real(o, NULL, NULL, "avg_latency_seconds"), 1.5, 1e-9);
    assert_float_equal(get_real(o, NULL, NULL, "avg_tokens_per_second"), 30.0, 1e-9);

    assert_int_equal(get_int(o, "by_model", "phi3:mini", "requests"), 3);
    assert_float_equal(get_real(o, "by_model", "phi3:mini", "avg_latency_seconds"), 1.5, 1e-9);
    assert_int_equal(get_int(o, "by_model", "llama3.1:8b", "requests"), 1);
    assert_int_equal(get_int(o, "by_model", "llama3.1:8b", "errors"), 1);
    assert_true(get_real(o, "by_model", "llama3.1:8b", "avg_latency_seconds") == 0.0);

    assert_int_equal(get_int(o, "by_backend", "ollama", "requests"), 3);
    assert_float_equal(get_real(o, "by_backend", "ollama", "avg_tokens_per_second"), 30.0, 1e-9);
    assert_int_equal(get_int(o, "by_backend", "mlx", "requests"), 1);
    assert_true(get_real(o, "by_backend", "mlx", "avg_tokens_per_second") == 0.0);
    json_decref(o);
    orch_window_free(w);
}

static void test_calls_leave_the_window(void **state)
{
    orch_window *w;
    int64_t t = 10000000; /* ms */
    assert_int_equal(orch_window_new(&w, 60), AM_OK);
    orch_window_record(w, t, "m", "ollama", 1.0, 10.0, false);
    orch_window_record(w, t + 30000, "m", "ollama", 1.0, 10.0, false);

    json_t *o = summary(w, t + 59000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 2);
    json_decref(o);
    /* 61 s after the first, only the second is left. */
    o = summary(w, t + 61000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 1);
    json_decref(o);
    o = summary(w, t + 91000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 0);
    json_decref(o);
    /* A slice that is reused starts from zero. */
    orch_window_record(w, t + 120000, "m", "ollama", 2.0, 10.0, false);
    o = summary(w, t + 120000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 1);
    assert_float_equal(get_real(o, NULL, NULL, "avg_latency_seconds"), 2.0, 1e-9);
    json_decref(o);
    orch_window_free(w);
}

static void test_short_window_and_too_many_keys(void **state)
{
    orch_window *w;
    char model[32];
    assert_int_equal(orch_window_new(&w, 5), AM_OK);
    for (int i = 0; i < ORCH_WINDOW_MAX_KEYS + 10; i++) {
        snprintf(model, sizeof model, "model-%d", i);
        orch_window_record(w, 1000, model, "ollama", 1.0, 1.0, false);
    }
    json_t *o = summary(w, 1000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), ORCH_WINDOW_MAX_KEYS + 10);
    assert_int_equal(json_object_size(json_object_get(o, "by_model")), ORCH_WINDOW_MAX_KEYS);
    assert_int_equal(get_int(o, "by_model", "other", "requests"), 11);
    json_decref(o);
    o = summary(w, 7000);
    assert_int_equal(get_int(o, NULL, NULL, "total_requests"), 0);
    json_decref(o);
    orch_window_free(w);
    orch_window *bad = NULL;
    assert_int_equal(orch_window_new(&bad, 0), AM_EINVAL);
    assert_null(bad);
    orch_window_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_window),
        cmocka_unit_test(test_by_model_and_backend_with_errors_left_out_of_averages),
        cmocka_unit_test(test_calls_leave_the_window),
        cmocka_unit_test(test_short_window_and_too_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
