/* Unit tests of the orchestrator's parsers: POST /query bodies, registry entries, OpenAI answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "openai_client.h"
#include "pipeline.h"
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void query_bad(const char *body, const char *want_in_message)
{
    struct orch_query q;
    char err[512];
    assert_int_equal(orch_query_parse(body, strlen(body), &q, err, sizeof err), AM_EINVAL);
    if (!strstr(err, want_in_message))
        fail_msg("message '%s' does not mention '%s'", err, want_in_message);
    assert_null(q.json);
}

static void test_query_with_every_field(void **state)
{
    struct orch_query q;
    char err[512];
    const char *body = "{\"query\": \"turn on the lights\", \"session_id\": \"s-1\", \"user_id\": "
                       "\"u-\\u00e9\", \"zone\": \"kitchen\", \"device_id\": null, \"extra\": 5}";
    assert_int_equal(orch_query_parse(body, strlen(body), &q, err, sizeof err), AM_OK);
    assert_string_equal(q.query, "turn on the lights");
    assert_string_equal(q.session_id, "s-1");
    assert_string_equal(q.user_id, "u-\xc3\xa9");
    assert_string_equal(q.zone, "kitchen");
    assert_null(q.device_id); /* null is absent */
    orch_query_free(&q);
    orch_query_free(NULL);
}

static void test_query_only_query(void **state)
{
    struct orch_query q;
    char err[512];
    const char *body = "{\"query\":\"hi\"}";
    assert_int_equal(orch_query_parse(body, strlen(body), &q, err, sizeof err), AM_OK);
    assert_string_equal(q.query, "hi");
    assert_null(q.session_id);
    assert_null(q.user_id);
    orch_query_free(&q);
}

static void test_query_bad_bodies(void **state)
{
    query_bad("", "invalid JSON");
    query_bad("{\"query\": ", "invalid JSON");
    query_bad("[\"query\"]", "JSON object");
    query_bad("{}", "query is required");
    query_bad("{\"query\": null}", "query is required");
    query_bad("{\"query\": 5}", "query must be a string");
    query_bad("{\"query\": \" \\t\\n \"}", "blank");
    query_bad("{\"query\": \"a\\u0000b\"}", "NUL");
    query_bad("{\"query\": \"a\", \"zone\": 3}", "zone must be a string");
    query_bad("{\"query\": \"a\", \"session_id\": [\"x\"]}", "session_id must be a string");
    query_bad("{\"query\": \"a\", \"query\": \"b\"}", "duplicate");

    char big[1100 + 64];
    snprintf(big, sizeof big, "{\"query\": \"a\", \"user_id\": \"%01100d\"}", 0);
    query_bad(big, "user_id is longer than 1024 bytes");
}

static void test_registry_entry(void **state)
{
    struct orch_backend b;
    char why[128];
    const char *entry =
        "{\"id\": 1, \"model_name\": \"phi3:mini\", \"backend_type\": \"mlx\", "
        "\"endpoint_url\": \"http://mlx.local:9000/\", \"enabled\": true, \"priority\": 100, "
        "\"max_tokens\": 256, \"temperature_default\": 0.2, \"timeout_seconds\": 7, "
        "\"description\": null}";
    assert_int_equal(orch_registry_parse(entry, strlen(entry), &b, why, sizeof why), AM_OK);
    assert_true(b.registered);
    assert_int_equal(b.type, ORCH_BACKEND_MLX);
    assert_string_equal(b.url, "http://mlx.local:9000"); /* trailing slash dropped */
    assert_int_equal(b.max_tokens, 256);
    assert_true(b.has_temperature);
    assert_float_equal(b.temperature, 0.2, 1e-12);
    assert_int_equal(b.timeout_ms, 7000);

    const char *minimal = "{\"backend_type\": \"auto\", \"endpoint_url\": \"https://x\"}";
    assert_int_equal(orch_registry_parse(minimal, strlen(minimal), &b, why, sizeof why), AM_OK);
    assert_int_equal(b.type, ORCH_BACKEND_AUTO);
    assert_int_equal(b.max_tokens, 0);
    assert_false(b.has_temperature);
    assert_int_equal(b.timeout_ms, 0);
    assert_string_equal(orch_backend_type_name(b.type), "auto");
}

static void registry_bad(const char *entry, const char *want)
{
    struct orch_backend b;
    char why[128];
    assert_int_equal(orch_registry_parse(entry, strlen(entry), &b, why, sizeof why), AM_EPROTO);
    if (!strstr(why, want))
        fail_msg("reason '%s' does not mention '%s'", why, want);
    /* A refused entry leaves the default: Ollama, not registered. */
    assert_false(b.registered);
    assert_int_equal(b.type, ORCH_BACKEND_OLLAMA);
}

static void test_registry_bad_entries(void **state)
{
    registry_bad("nope", "not a JSON object");
    registry_bad("{\"endpoint_url\": \"http://x\"}", "backend_type");
    registry_bad("{\"backend_type\": \"vllm\", \"endpoint_url\": \"http://x\"}", "backend_type");
    registry_bad("{\"backend_type\": \"ollama\", \"endpoint_url\": \"file:///etc\"}",
                 "endpoint_url");
    registry_bad("{\"backend_type\": \"ollama\", \"endpoint_url\": \"http://x\", \"enabled\": "
                 "false}",
                 "disabled");
}

static void test_openai_completion(void **state)
{
    struct orch_openai_result res;
    memset(&res, 0, sizeof res);
    const char *body =
        "{\"id\": \"chatcmpl-1\", \"object\": \"chat.completion\", \"model\": \"llama3.1:8b\", "
        "\"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": "
        "\"It is sunny.\"}, \"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": 9, "
        "\"completion_tokens\": 4, \"total_tokens\": 13}}";
    assert_int_equal(orch_openai_parse(body, strlen(body), &res), AM_OK);
    assert_string_equal(res.content, "It is sunny.");
    assert_int_equal(res.content_len, 12);
    assert_string_equal(res.model, "llama3.1:8b");
    assert_string_equal(res.finish_reason, "stop");
    assert_true(res.has_usage);
    assert_int_equal(res.completion_tokens, 4);
    assert_int_equal(res.prompt_tokens, 9);
    orch_openai_result_free(&res);
    assert_null(res.content);

    /* No usage: tokens unknown, the text still counts. */
    memset(&res, 0, sizeof res);
    const char *bare = "{\"choices\": [{\"message\": {\"content\": null}}]}";
    assert_int_equal(orch_openai_parse(bare, strlen(bare), &res), AM_OK);
    assert_string_equal(res.content, "");
    assert_false(res.has_usage);
    orch_openai_result_free(&res);
}

static void test_openai_bad_answers(void **state)
{
    const char *bodies[] = {"", "[]", "{\"choices\": []}", "{\"choices\": [{\"text\": \"x\"}]}",
                            "{\"choices\": [{\"message\": {\"content\": 3}}]}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct orch_openai_result res;
        memset(&res, 0, sizeof res);
        assert_int_equal(orch_openai_parse(bodies[i], strlen(bodies[i]), &res), AM_EPROTO);
        assert_string_equal(res.error_type, "bad_response");
        assert_null(res.content);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_with_every_field), cmocka_unit_test(test_query_only_query),
        cmocka_unit_test(test_query_bad_bodies),       cmocka_unit_test(test_registry_entry),
        cmocka_unit_test(test_registry_bad_entries),   cmocka_unit_test(test_openai_completion),
        cmocka_unit_test(test_openai_bad_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
