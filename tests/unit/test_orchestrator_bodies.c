/* Unit tests of the JSON bodies the router sends to Ollama and to OpenAI-compatible servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bodies.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const struct orch_message two[] = {
    {"system", "You sort requests.\nIntents: music, general."},
    {"user", "Which room is the warmest right now?"},
};

static struct orch_call call_of(const struct orch_message *msgs, size_t n)
{
    return (struct orch_call){.model = "phi3:mini", .messages = msgs, .nmessages = n};
}

static void test_ollama_body_exact(void **state)
{
    struct orch_call call = call_of(two, 2);
    struct orch_plan p = {.max_tokens = 16, .has_temperature = true, .temperature = 0};
    char *s = orch_body_ollama(&call, &p);
    assert_non_null(s);
    assert_string_equal(
        s, "{\"model\":\"phi3:mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You sort "
           "requests.\\nIntents: music, general.\"},{\"role\":\"user\",\"content\":\"Which room "
           "is the warmest right now?\"}],\"stream\":false,\"options\":{\"num_predict\":16,"
           "\"temperature\":0.0}}");
    free(s);
}

static void test_options_only_when_planned(void **state)
{
    struct orch_call call = call_of(two + 1, 1);
    struct orch_plan none = {0}, temp_only = {.has_temperature = true, .temperature = 0.5};
    char *s = orch_body_ollama(&call, &none);
    assert_non_null(s);
    assert_non_null(strstr(s, ",\"stream\":false,\"options\":{}}"));
    free(s);
    s = orch_body_ollama(&call, &temp_only);
    assert_non_null(strstr(s, "\"options\":{\"temperature\":0.5}}"));
    free(s);
    s = orch_body_openai(&call, &none);
    assert_non_null(strstr(s, "}],\"stream\":false}"));
    free(s);
    s = orch_body_openai(&call, &temp_only);
    assert_non_null(strstr(s, "\"stream\":false,\"temperature\":0.5}"));
    free(s);
}

static void test_openai_body_exact(void **state)
{
    struct orch_call call = call_of(two + 1, 1);
    struct orch_plan p = {.max_tokens = 512, .has_temperature = true, .temperature = 0.7};
    char *s = orch_body_openai(&call, &p);
    assert_non_null(s);
    assert_string_equal(s, "{\"model\":\"phi3:mini\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"Which room is the warmest right now?\"}],\"stream\":false,"
                           "\"max_tokens\":512,\"temperature\":0.69999999999999996}");
    free(s);
}

/* The body jansson writes for the same call, as the router built it before. */
static char *jansson_ollama(const struct orch_call *call, const struct orch_plan *p)
{
    json_t *msgs = json_array();
    for (size_t i = 0; i < call->nmessages; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", call->messages[i].role,
                                              "content", call->messages[i].content));
    json_t *options = json_object();
    if (p->max_tokens > 0)
        json_object_set_new(options, "num_predict", json_integer(p->max_tokens));
    if (p->has_temperature)
        json_object_set_new(options, "temperature", json_real(p->temperature));
    json_t *o = json_pack("{s:s,s:o,s:b,s:o}", "model", call->model, "messages", msgs, "stream", 0,
                          "options", options);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void test_writes_what_jansson_writes(void **state)
{
    /* Quotes, backslashes, the control characters JSON names, '/', DEL and multi-byte UTF-8. */
    const struct orch_message msgs[] = {
        {"system", "say \"VALID\" or \"INVALID\"\\n is not a newline"},
        {"user", "\b\f\n\r\t"},
        {"assistant", "a/b \x7f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8c\xa7 \"end\\"},
        {"user", ""},
    };
    struct orch_call call = {.model = "llama3.1:8b\t\"x\"", .messages = msgs, .nmessages = 4};
    const double temps[] = {0, 0.1, 1, 1.5, 2, 1e-7, 2.5e-12, 1e300, 123456789.0};
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) {
        struct orch_plan p = {
            .max_tokens = (int)i * 100, .has_temperature = true, .temperature = temps[i]};
        char *mine = orch_body_ollama(&call, &p), *theirs = jansson_ollama(&call, &p);
        assert_non_null(mine);
        assert_non_null(theirs);
        assert_string_equal(mine, theirs);
        free(mine);
        free(theirs);
    }
}

static void test_reads_back(void **state)
{
    /* Every control character, written as \u00XX where JSON has no name for it. */
    char text[64] = "line one\nline \"two\" caf\xc3\xa9 ";
    size_t n = strlen(text);
    for (int c = 1; c < 0x20; c++)
        text[n++] = (char)c;
    text[n] = '\0';
    const struct orch_message msgs[] = {
        {"user", text},
    };
    struct orch_call call = {.model = "m", .messages = msgs, .nmessages = 1};
    struct orch_plan p = {.max_tokens = 64, .has_temperature = true, .temperature = 0.25};
    char *s = orch_body_openai(&call, &p);
    assert_non_null(strstr(s, "\\u0001\\u0002"));
    assert_non_null(strstr(s, "\\u001f\""));
    json_error_t err;
    json_t *o = json_loads(s, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(o);
    json_t *m = json_array_get(json_object_get(o, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m, "content")), msgs[0].content);
    assert_string_equal(json_string_value(json_object_get(m, "role")), "user");
    assert_true(json_is_false(json_object_get(o, "stream")));
    assert_int_equal(json_integer_value(json_object_get(o, "max_tokens")), 64);
    assert_true(json_real_value(json_object_get(o, "temperature")) == 0.25);
    json_decref(o);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ollama_body_exact), cmocka_unit_test(test_options_only_when_planned),
        cmocka_unit_test(test_openai_body_exact), cmocka_unit_test(test_writes_what_jansson_writes),
        cmocka_unit_test(test_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
