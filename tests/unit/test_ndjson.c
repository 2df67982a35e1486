/* Unit tests of the NDJSON line splitter and the Ollama answer parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "am_ndjson.h"
#include "am_ollama.h"

#include <stdio.h>
#include <string.h>

struct lines {
    char got[16][64];
    int n;
};

static int collect(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    assert_true(l->n < 16);
    assert_int_equal(strlen(line), len);
    snprintf(l->got[l->n++], sizeof l->got[0], "%s", line);
    return 0;
}

static void test_lines_split_across_pieces_are_joined(void **state)
{
    struct am_ndjson s;
    struct lines l = {0};
    am_ndjson_init(&s, 64, collect, &l);
    assert_int_equal(am_ndjson_feed(&s, "{\"a\":", 5), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(am_ndjson_feed(&s, "1}\n{\"b\":2}\r\n\n{\"c\"", 17), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[0], "{\"a\":1}");
    assert_string_equal(l.got[1], "{\"b\":2}");
    assert_int_equal(am_ndjson_feed(&s, ":3}", 3), 0);
    assert_int_equal(am_ndjson_finish(&s), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.got[2], "{\"c\":3}");
    am_ndjson_free(&s);
}

static void test_a_line_past_the_bound_stops_the_stream(void **state)
{
    struct am_ndjson s;
    struct lines l = {0};
    char big[100];
    memset(big, 'x', sizeof big);
    am_ndjson_init(&s, 64, collect, &l);
    assert_int_equal(am_ndjson_feed(&s, big, 40), 0);
    assert_int_equal(am_ndjson_feed(&s, big, 40), AM_ERANGE);
    assert_int_equal(am_ndjson_feed(&s, "\n{}\n", 4), AM_ERANGE);
    assert_int_equal(l.n, 0);
    am_ndjson_free(&s);
}

static int stop_at_second(void *arg, const char *line, size_t len)
{
    int *n = arg;
    return ++*n == 2 ? AM_ECLOSED : 0;
}

static void test_the_line_callback_can_stop_the_stream(void **state)
{
    struct am_ndjson s;
    int n = 0;
    am_ndjson_init(&s, 64, stop_at_second, &n);
    assert_int_equal(am_ndjson_feed(&s, "a\nb\nc\n", 6), AM_ECLOSED);
    assert_int_equal(n, 2);
    am_ndjson_free(&s);
}

static void parse(struct am_ollama_result *r, const char *line, int want_rc, const char *want_delta)
{
    const char *d;
    size_t dl;
    assert_int_equal(am_ollama_parse_line(r, line, strlen(line), &d, &dl), want_rc);
    if (want_delta) {
        assert_int_equal(dl, strlen(want_delta));
        assert_memory_equal(d, want_delta, dl);
    } else {
        assert_int_equal(dl, 0);
    }
}

static void test_chat_stream_lines_build_content_and_final_counts(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r,
          "{\"model\":\"phi3:mini\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},"
          "\"done\":false}",
          0, "Hel");
    parse(&r,
          "{\"model\":\"phi3:mini\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},"
          "\"done\":false}",
          0, "lo");
    assert_false(r.done);
    parse(&r,
          "{\"model\":\"phi3:mini\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
          "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":900000000,"
          "\"load_duration\":1000,\"prompt_eval_count\":12,\"prompt_eval_duration\":2000,"
          "\"eval_count\":2,\"eval_duration\":50000000}",
          0, NULL);
    assert_true(r.done);
    assert_true(r.has_counts);
    assert_string_equal(r.content, "Hello");
    assert_string_equal(r.model, "phi3:mini");
    assert_string_equal(r.done_reason, "stop");
    assert_int_equal(r.eval_count, 2);
    assert_int_equal(r.prompt_eval_count, 12);
    assert_int_equal(r.eval_duration_ns, 50000000);
    assert_int_equal(r.total_duration_ns, 900000000);
    am_ollama_result_free(&r);
}

static void test_generate_lines_use_the_response_field(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"model\":\"m\",\"response\":\"42\",\"done\":false}", 0, "42");
    parse(&r, "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"length\"}", 0,
          NULL);
    assert_string_equal(r.content, "42");
    assert_string_equal(r.done_reason, "length");
    assert_false(r.has_counts);
    am_ollama_result_free(&r);
}

static void test_error_lines_and_malformed_lines_are_reported(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"error\":\"model runner crashed\"}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "backend_error");
    assert_string_equal(r.error, "model runner crashed");
    am_ollama_result_free(&r);

    memset(&r, 0, sizeof r);
    parse(&r, "not json", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    memset(&r, 0, sizeof r);
    parse(&r, "[1,2]", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    memset(&r, 0, sizeof r);
    parse(&r, "{\"response\":17}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    am_ollama_result_free(&r);
}

static void test_message_content_wins_over_response_in_either_order(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"response\":\"gen\",\"message\":{\"content\":\"chat\"}}", 0, "chat");
    parse(&r, "{\"message\":{\"content\":\"!\"},\"response\":\"gen\"}", 0, "!");
    assert_string_equal(r.content, "chat!");
    /* message.content that is not a string refuses the line, whatever "response" says */
    parse(&r, "{\"response\":\"gen\",\"message\":{\"content\":null}}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    assert_string_equal(r.content, "chat!");
    am_ollama_result_free(&r);

    /* a "message" that is not an object leaves the text to "response" */
    memset(&r, 0, sizeof r);
    parse(&r, "{\"message\":\"hi\",\"response\":\"gen\"} \t\r", 0, "gen");
    am_ollama_result_free(&r);
}

static void test_escaped_text_is_decoded(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"message\":{\"content\":\"a\\n\\\"b\\\" \\u00e9 \\ud83d\\ude00\"}}", 0,
          "a\n\"b\" \xc3\xa9 \xf0\x9f\x98\x80");
    /* lone surrogate escapes, raw bytes that are not UTF-8: refused, as jansson refuses them */
    parse(&r, "{\"message\":{\"content\":\"x\\ud83d\\u0041\"}}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    memset(r.error_type, 0, sizeof r.error_type);
    parse(&r, "{\"message\":{\"content\":\"x\\ude00\"}}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    memset(r.error_type, 0, sizeof r.error_type);
    parse(&r, "{\"message\":{\"content\":\"x\xff\"}}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    assert_int_equal(r.content_len, 13); /* the first line's text only */
    am_ollama_result_free(&r);
}

static void test_a_refused_line_leaves_the_text_gathered_so_far(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"message\":{\"content\":\"Hel\"},\"done\":false}", 0, "Hel");
    /* text first, then the line breaks off */
    parse(&r, "{\"message\":{\"content\":\"lo\"},\"done\":", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    assert_int_equal(r.content_len, 3);
    assert_string_equal(r.content, "Hel");
    /* text, then something after the object */
    parse(&r, "{\"message\":{\"content\":\"lo\"}} x", AM_EPROTO, NULL);
    parse(&r, "{\"message\":{\"content\":\"lo\"}}\":f", AM_EPROTO, NULL);
    assert_string_equal(r.content, "Hel");
    /* text, then an error member */
    parse(&r, "{\"message\":{\"content\":\"lo\"},\"error\":{\"code\":1}}", AM_EPROTO, NULL);
    assert_string_equal(r.content, "Hel");
    am_ollama_result_free(&r);
}

static void test_duplicate_fields_and_bad_counts_are_refused_or_ignored(void **state)
{
    struct am_ollama_result r;
    memset(&r, 0, sizeof r);
    parse(&r, "{\"response\":\"a\",\"response\":\"b\"}", AM_EPROTO, NULL);
    assert_string_equal(r.error_type, "bad_response");
    assert_int_equal(r.content_len, 0);
    am_ollama_result_free(&r);
    memset(&r, 0, sizeof r);
    parse(&r, "{\"message\":{\"content\":\"a\",\"content\":\"b\"}}", AM_EPROTO, NULL);
    am_ollama_result_free(&r);

    /* Counts count when they are non-negative integers, and eval_count and eval_duration both. */
    memset(&r, 0, sizeof r);
    parse(&r,
          "{\"done\":true,\"eval_count\":-1,\"eval_duration\":5,\"prompt_eval_count\":1.5,"
          "\"total_duration\":7,\"extra\":{\"eval_count\":9}}",
          0, NULL);
    assert_true(r.done);
    assert_false(r.has_counts);
    assert_int_equal(r.eval_count, 0);
    assert_int_equal(r.eval_duration_ns, 5);
    assert_int_equal(r.prompt_eval_count, 0);
    assert_int_equal(r.total_duration_ns, 7);
    /* counts on a line that is not the last are not taken */
    memset(&r, 0, sizeof r);
    parse(&r, "{\"done\":false,\"eval_count\":3,\"eval_duration\":5}", 0, NULL);
    assert_false(r.done);
    assert_int_equal(r.eval_count, 0);
    am_ollama_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_split_across_pieces_are_joined),
        cmocka_unit_test(test_a_line_past_the_bound_stops_the_stream),
        cmocka_unit_test(test_the_line_callback_can_stop_the_stream),
        cmocka_unit_test(test_chat_stream_lines_build_content_and_final_counts),
        cmocka_unit_test(test_generate_lines_use_the_response_field),
        cmocka_unit_test(test_error_lines_and_malformed_lines_are_reported),
        cmocka_unit_test(test_message_content_wins_over_response_in_either_order),
        cmocka_unit_test(test_escaped_text_is_decoded),
        cmocka_unit_test(test_a_refused_line_leaves_the_text_gathered_so_far),
        cmocka_unit_test(test_duplicate_fields_and_bad_counts_are_refused_or_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
