/* Unit tests of the gateway's OpenAI <-> Ollama translation and its model map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "models.h"
#include "openai.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gw_models *models;

static int setup(void **state)
{
    char err[256];
    return gw_models_load(&models, NULL, "my-alias=mistral:7b, gpt-4 = qwen2.5:7b", err,
                          sizeof err);
}

static int teardown(void **state)
{
    gw_models_free(models);
    return 0;
}

static json_t *parse_ok(const char *body, struct gw_request *r)
{
    char err[512], param[512];
    int rc = gw_parse_request(body, strlen(body), models, r, err, param, sizeof err);
    if (rc)
        fail_msg("unexpected error: %s (param %s)", err, param);
    json_error_t jerr;
    json_t *o = json_loads(r->ollama_body, 0, &jerr);
    assert_non_null(o);
    return o;
}

static void parse_bad(const char *body, const char *want_param, const char *want_in_message)
{
    char err[512], param[512];
    struct gw_request r;
    assert_int_equal(gw_parse_request(body, strlen(body), models, &r, err, param, sizeof err),
                     AM_EINVAL);
    assert_string_equal(param, want_param);
    if (!strstr(err, want_in_message))
        fail_msg("message '%s' does not mention '%s'", err, want_in_message);
    assert_null(r.ollama_body);
}

static void test_defaults_map_gpt_35_and_unknown_names_pass_through(void **state)
{
    assert_string_equal(gw_models_resolve(models, "gpt-3.5-turbo"), "phi3:mini");
    assert_string_equal(gw_models_resolve(models, "gpt-4"), "qwen2.5:7b"); /* overridden */
    assert_string_equal(gw_models_resolve(models, "my-alias"), "mistral:7b");
    assert_string_equal(gw_models_resolve(models, "llama3.1:8b"), "llama3.1:8b");
}

static void test_a_malformed_model_map_is_refused_with_its_origin(void **state)
{
    gw_models *m = NULL;
    char err[256];
    assert_int_equal(gw_models_load(&m, NULL, "ok=a,broken", err, sizeof err), AM_EINVAL);
    assert_non_null(strstr(err, "GATEWAY_MODEL_MAP"));
    assert_non_null(strstr(err, "broken"));
    assert_int_equal(gw_models_load(&m, "/nonexistent/map", NULL, err, sizeof err), AM_EINVAL);
    assert_non_null(strstr(err, "GATEWAY_MODEL_MAP_FILE"));
}

static void test_request_maps_model_messages_and_options(void **state)
{
    struct gw_request r;
    json_t *o = parse_ok("{\"model\":\"gpt-3.5-turbo\",\"messages\":[{\"role\":\"system\","
                         "\"content\":\"be brief\"},{\"role\":\"user\",\"content\":[{\"type\":"
                         "\"text\",\"text\":\"hel\"},{\"type\":\"text\",\"text\":\"lo\"}]}],"
                         "\"temperature\":0.2,\"top_p\":0.9,\"max_tokens\":64,\"stop\":\"END\","
                         "\"seed\":7,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                         &r);
    assert_string_equal(r.requested_model, "gpt-3.5-turbo");
    assert_string_equal(r.model, "phi3:mini");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "phi3:mini");
    assert_true(json_is_true(json_object_get(o, "stream")));
    json_t *msgs = json_object_get(o, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "hello");
    json_t *opt = json_object_get(o, "options");
    assert_true(json_real_value(json_object_get(opt, "temperature")) == 0.2);
    assert_true(json_real_value(json_object_get(opt, "top_p")) == 0.9);
    assert_int_equal(json_integer_value(json_object_get(opt, "num_predict")), 64);
    assert_int_equal(json_integer_value(json_object_get(opt, "seed")), 7);
    assert_string_equal(json_string_value(json_array_get(json_object_get(opt, "stop"), 0)), "END");
    json_decref(o);
    gw_request_free(&r);
}

static void test_stream_defaults_to_false_and_options_are_omitted_when_absent(void **state)
{
    struct gw_request r;
    json_t *o =
        parse_ok("{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    assert_false(r.stream);
    assert_true(json_is_false(json_object_get(o, "stream")));
    assert_null(json_object_get(o, "options"));
    json_decref(o);
    gw_request_free(&r);
}

static void test_bad_requests_name_the_field(void **state)
{
    parse_bad("{", "", "invalid JSON");
    parse_bad("[]", "", "JSON object");
    parse_bad("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model", "model");
    parse_bad("{\"model\":\"m\",\"messages\":[]}", "messages", "non-empty");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}",
              "messages[0].role", "system, user");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
              "messages[0].content", "string or an array");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"temperature\":\"hot\"}",
              "temperature", "between 0 and 2");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"max_tokens\":0}",
              "max_tokens", "whole number");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"stream\":\"yes\"}",
              "stream", "true or false");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}",
              "n", "n=1");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"stop\":[1]}",
              "stop", "stop");
}

static void test_completion_carries_usage_and_finish_reason(void **state)
{
    struct am_ollama_result res = {0};
    res.content = "four";
    res.content_len = 4;
    snprintf(res.done_reason, sizeof res.done_reason, "length");
    res.prompt_eval_count = 11;
    res.eval_count = 3;
    char *s = gw_completion_json("chatcmpl-1", 1700000000, "phi3:mini", &res);
    json_error_t jerr;
    json_t *o = json_loads(s, 0, &jerr);
    assert_string_equal(json_string_value(json_object_get(o, "object")), "chat.completion");
    assert_int_equal(json_integer_value(json_object_get(o, "created")), 1700000000);
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")), "length");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(choice, "message"), "content")), "four");
    json_t *usage = json_object_get(o, "usage");
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 11);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 3);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 14);
    json_decref(o);
    free(s);
}

static void test_chunks_are_sse_events_with_the_same_id_and_created(void **state)
{
    char *first = gw_chunk_event("chatcmpl-9", 42, "m", "Hi", 2, true, NULL);
    char *last = gw_chunk_event("chatcmpl-9", 42, "m", NULL, 0, false, "stop");
    assert_int_equal(strncmp(first, "data: {", 7), 0);
    assert_string_equal(first + strlen(first) - 2, "\n\n");
    json_error_t jerr;
    json_t *a = json_loads(first + 6, JSON_DISABLE_EOF_CHECK, &jerr);
    json_t *b = json_loads(last + 6, JSON_DISABLE_EOF_CHECK, &jerr);
    assert_string_equal(json_string_value(json_object_get(a, "id")), "chatcmpl-9");
    assert_string_equal(json_string_value(json_object_get(b, "id")), "chatcmpl-9");
    assert_int_equal(json_integer_value(json_object_get(b, "created")), 42);
    json_t *da = json_object_get(json_array_get(json_object_get(a, "choices"), 0), "delta");
    assert_string_equal(json_string_value(json_object_get(da, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(da, "content")), "Hi");
    json_t *cb = json_array_get(json_object_get(b, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(cb, "finish_reason")), "stop");
    assert_int_equal(json_object_size(json_object_get(cb, "delta")), 0);
    assert_true(json_is_null(
        json_object_get(json_array_get(json_object_get(a, "choices"), 0), "finish_reason")));
    json_decref(a);
    json_decref(b);
    free(first);
    free(last);
}

/* Every byte of a message and of an answer reaches the other side unchanged, escaped as JSON needs.
 */
static void test_text_needing_escapes_survives_both_directions(void **state)
{
    struct gw_request r;
    json_t *o = parse_ok(
        "{\"model\":\"m\\\"q\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"a\\\"b\\\\c\\n\"},{\"type\":\"text\",\"text\":\"\\t\\u0001\\u00e9\\u2028"
        "\\ud83d\\ude00/\"}]}],\"temperature\":1,\"top_p\":0.1,\"stop\":[\"x\\\"\",\"\\n\"]}",
        &r);
    static const char want[] = "a\"b\\c\n\t\x01\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80/";
    json_t *content = json_object_get(json_array_get(json_object_get(o, "messages"), 0), "content");
    assert_int_equal(json_string_length(content), sizeof want - 1);
    assert_memory_equal(json_string_value(content), want, sizeof want - 1);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "m\"q");
    json_t *opt = json_object_get(o, "options");
    assert_int_equal(json_integer_value(json_object_get(opt, "temperature")), 1);
    assert_true(json_real_value(json_object_get(opt, "top_p")) == 0.1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(opt, "stop"), 0)), "x\"");
    assert_string_equal(json_string_value(json_array_get(json_object_get(opt, "stop"), 1)), "\n");
    json_decref(o);
    gw_request_free(&r);

    struct am_ollama_result res = {0};
    res.content = (char *)want;
    res.content_len = sizeof want - 1;
    char *s = gw_completion_json("chatcmpl-\"1", 1, "m\\", &res);
    json_error_t jerr;
    o = json_loads(s, JSON_ALLOW_NUL, &jerr);
    assert_non_null(o);
    json_t *msg = json_object_get(json_array_get(json_object_get(o, "choices"), 0), "message");
    content = json_object_get(msg, "content");
    assert_int_equal(json_string_length(content), sizeof want - 1);
    assert_memory_equal(json_string_value(content), want, sizeof want - 1);
    assert_string_equal(json_string_value(json_object_get(o, "id")), "chatcmpl-\"1");
    assert_string_equal(json_string_value(json_object_get(o, "model")), "m\\");
    json_decref(o);
    free(s);

    s = gw_chunk_event("c", 1, "m", want, sizeof want - 1, false, NULL);
    o = json_loads(s + 6, JSON_ALLOW_NUL | JSON_DISABLE_EOF_CHECK, &jerr);
    assert_non_null(o);
    content = json_object_get(
        json_object_get(json_array_get(json_object_get(o, "choices"), 0), "delta"), "content");
    assert_memory_equal(json_string_value(content), want, sizeof want - 1);
    json_decref(o);
    free(s);
}

static void test_field_order_does_not_change_the_ollama_body(void **state)
{
    struct gw_request a, b;
    json_t *oa =
        parse_ok("{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                 "\"text\",\"text\":\"a\"}]}],\"stream\":true,\"seed\":3,\"top_p\":0.5}",
                 &a);
    json_t *ob = parse_ok("{\"top_p\":0.5,\"unknown\":{\"deep\":[1,[2,{\"x\":null}]]},\"seed\":3,"
                          "\"stream\":true,\"messages\":[{\"content\":[{\"text\":\"a\",\"type\":"
                          "\"text\"}],\"role\":\"user\",\"name\":\"n\"}],\"model\":\"x\"}",
                          &b);
    assert_string_equal(a.ollama_body, b.ollama_body);
    assert_string_equal(a.ollama_body, "{\"model\":\"x\",\"messages\":[{\"role\":\"user\","
                                       "\"content\":\"a\"}],\"stream\":true,\"options\":{"
                                       "\"top_p\":0.5,\"seed\":3}}");
    json_decref(oa);
    json_decref(ob);
    gw_request_free(&a);
    gw_request_free(&b);
}

static void test_the_first_fault_in_a_fixed_order_is_the_one_reported(void **state)
{
    /* n and model both bad, n first in the body: model is reported */
    parse_bad("{\"n\":2,\"model\":5,\"messages\":[]}", "model", "model");
    /* the second message's role and the first one's content: the first message is reported */
    parse_bad(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]},"
        "{\"role\":\"x\"}]}",
        "messages[0].content", "only text parts");
    /* within a message the role comes first, wherever it stands */
    parse_bad("{\"model\":\"m\",\"messages\":[{\"content\":7,\"role\":\"x\"}]}", "messages[0].role",
              "system, user");
    parse_bad("{\"model\":\"m\",\"messages\":[\"hi\"]}", "messages[0].role", "system, user");
}

static void test_json_faults_are_invalid_json_with_a_position(void **state)
{
    parse_bad("{\"model\":\"m\",\"model\":\"n\",\"messages\":[]}", "", "duplicate object key");
    parse_bad("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"user\"}]}", "",
              "duplicate object key");
    parse_bad("{\"model\":\"m\"} x", "", "invalid JSON");
    parse_bad("{\"model\":\"m\"} \"x", "", "invalid JSON");
    parse_bad("\"just a string\"", "", "invalid JSON");
    parse_bad("{\"model\":\"\xc1\x84\"}", "", "not UTF-8");
    /* surrogate escapes come in pairs, high then low */
    parse_bad("{\"model\":\"a\\udc00\"}", "", "surrogate");
    parse_bad("{\"model\":\"a\\ud800\"}", "", "surrogate");
    parse_bad("{\"model\":\"a\\ud83d\\u0041\"}", "", "surrogate");
    parse_bad("{\"model\":\"a\\ud83d\"}", "", "surrogate");
    /* a body that ends in a backslash, or half an escape */
    parse_bad("{\"model\":\"a\\", "", "invalid JSON");
    parse_bad("{\"model\":\"a\\ud8", "", "invalid JSON");
    parse_bad("{\"model\":\"a\\u0000\"}", "", "not UTF-8");
    parse_bad("{\n  \"model\": tru\n}", "", "invalid JSON at line 2");
}

#define HI "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_json_mode_penalties_and_a_schema_reach_ollama(void **state)
{
    struct gw_request r;
    /* json_object is Ollama's "format": "json" */
    json_t *o = parse_ok("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_object\"},"
                         "\"frequency_penalty\":0.5,\"presence_penalty\":-1}",
                         &r);
    assert_string_equal(r.ollama_body,
                        "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        "\"stream\":false,\"format\":\"json\",\"options\":{\"frequency_penalty\":"
                        "0.5,\"presence_penalty\":-1}}");
    json_decref(o);
    gw_request_free(&r);

    /* json_schema: the schema is Ollama's "format", as it was written, whatever its keys */
    const char *schema = "{ \"type\": \"object\",\"properties\":{\"room\":{\"type\":\"string\","
                         "\"enum\":[\"a\\\"b\",\"\\u00e9\"]}},\"required\":[\"room\"],"
                         "\"x\":{\"type\":1,\"schema\":{}}}";
    char body[1024];
    snprintf(body, sizeof body,
             "{\"response_format\":{\"json_schema\":{\"name\":\"r\",\"schema\":%s,"
             "\"strict\":true},\"type\":\"json_schema\"},\"model\":\"x\"," HI "}",
             schema);
    o = parse_ok(body, &r);
    const char *at = strstr(r.ollama_body, ",\"format\":");
    assert_non_null(at);
    assert_memory_equal(at + 10, schema, strlen(schema));
    assert_string_equal(at + 10 + strlen(schema), "}");
    json_t *format = json_object_get(o, "format");
    assert_true(json_is_object(format));
    assert_string_equal(
        json_string_value(json_array_get(
            json_object_get(json_object_get(json_object_get(format, "properties"), "room"), "enum"),
            1)),
        "\xc3\xa9");
    json_decref(o);
    gw_request_free(&r);

    /* a json_schema without a schema (OpenAI's is optional) asks for JSON all the same */
    o = parse_ok("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_schema\","
                 "\"json_schema\":{\"name\":\"n\",\"schema\":null}}}",
                 &r);
    assert_string_equal(json_string_value(json_object_get(o, "format")), "json");
    json_decref(o);
    gw_request_free(&r);

    /* json_object asks for JSON, whatever json_schema says */
    o = parse_ok("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_object\","
                 "\"json_schema\":{\"schema\":{\"type\":\"object\"}}}}",
                 &r);
    assert_string_equal(json_string_value(json_object_get(o, "format")), "json");
    json_decref(o);
    gw_request_free(&r);

    /* text is what Ollama does anyway: no format */
    o = parse_ok("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"text\"}}", &r);
    assert_null(json_object_get(o, "format"));
    json_decref(o);
    gw_request_free(&r);
}

static void test_bad_response_formats_and_penalties_name_the_field(void **state)
{
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":\"json\"}", "response_format",
              "an object with a type");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{}}", "response_format.type",
              "json_schema");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"yaml\"}}",
              "response_format.type", "json_object");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_schema\"}}",
              "response_format.json_schema", "must be an object");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_schema\","
              "\"json_schema\":[]}}",
              "response_format.json_schema", "must be an object");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"json_schema\","
              "\"json_schema\":{\"schema\":true}}}",
              "response_format.json_schema.schema", "JSON schema object");
    parse_bad("{\"model\":\"x\"," HI ",\"response_format\":{\"type\":\"text\",\"type\":\"text\"}}",
              "", "duplicate object key");
    parse_bad("{\"model\":\"x\"," HI ",\"frequency_penalty\":3}", "frequency_penalty",
              "between -2 and 2");
    parse_bad("{\"model\":\"x\"," HI ",\"presence_penalty\":\"high\"}", "presence_penalty",
              "between -2 and 2");
    /* response_format comes before temperature in the fixed order */
    parse_bad("{\"model\":\"x\"," HI ",\"temperature\":9,\"response_format\":{\"type\":1}}",
              "response_format.type", "json_object");
}

static void test_the_end_user_id_is_kept_for_the_metric_and_checked(void **state)
{
    struct gw_request r;
    /* OpenAI's end-user id is kept for the metric, not sent to Ollama */
    json_t *o = parse_ok("{\"model\":\"x\"," HI ",\"user\":\"user-42\"}", &r);
    assert_string_equal(r.user, "user-42");
    assert_null(json_object_get(o, "user"));
    json_decref(o);
    gw_request_free(&r);

    char user[256];
    snprintf(user, sizeof user, "{\"model\":\"x\"," HI ",\"user\":\"%0129d\"}", 7);
    parse_bad(user, "user", "at most 128 bytes");
    snprintf(user, sizeof user, "{\"model\":\"x\"," HI ",\"user\":\"%0128d\"}", 7);
    json_decref(parse_ok(user, &r));
    assert_int_equal(strlen(r.user), 128);
    gw_request_free(&r);
    parse_bad("{\"model\":\"x\"," HI ",\"user\":42}", "user", "a string");
}

static void test_escapes_depth_and_an_empty_stop_list(void **state)
{
    struct gw_request r;
    /* a pair is one character; an escaped backslash before "ud800" is no escape */
    json_t *o = parse_ok("{\"model\":\"a\\ud83d\\ude00\\\\ud800\",\"messages\":[{\"role\":\"user\","
                         "\"content\":\"hi\"}],\"stop\":[]}",
                         &r);
    assert_string_equal(r.requested_model, "a\xf0\x9f\x98\x80\\ud800");
    json_t *stop = json_object_get(json_object_get(o, "options"), "stop");
    assert_true(json_is_array(stop));
    assert_int_equal(json_array_size(stop), 0);
    json_decref(o);
    gw_request_free(&r);

    /* 2048 containers deep is read (and skipped), one more is refused */
    char body[8192];
    for (int depth = 2047; depth <= 2048; depth++) {
        int n = snprintf(body, sizeof body, "{\"model\":\"m\",\"x\":");
        for (int i = 0; i < depth; i++)
            body[n++] = '[';
        for (int i = 0; i < depth; i++)
            body[n++] = ']';
        n += snprintf(body + n, sizeof body - (size_t)n,
                      ",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        if (depth == 2047) {
            json_decref(parse_ok(body, &r));
            gw_request_free(&r);
        } else {
            parse_bad(body, "", "maximum parsing depth");
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_map_gpt_35_and_unknown_names_pass_through),
        cmocka_unit_test(test_a_malformed_model_map_is_refused_with_its_origin),
        cmocka_unit_test(test_request_maps_model_messages_and_options),
        cmocka_unit_test(test_stream_defaults_to_false_and_options_are_omitted_when_absent),
        cmocka_unit_test(test_bad_requests_name_the_field),
        cmocka_unit_test(test_field_order_does_not_change_the_ollama_body),
        cmocka_unit_test(test_the_first_fault_in_a_fixed_order_is_the_one_reported),
        cmocka_unit_test(test_json_faults_are_invalid_json_with_a_position),
        cmocka_unit_test(test_escapes_depth_and_an_empty_stop_list),
        cmocka_unit_test(test_json_mode_penalties_and_a_schema_reach_ollama),
        cmocka_unit_test(test_bad_response_formats_and_penalties_name_the_field),
        cmocka_unit_test(test_the_end_user_id_is_kept_for_the_metric_and_checked),
        cmocka_unit_test(test_completion_carries_usage_and_finish_reason),
        cmocka_unit_test(test_chunks_are_sse_events_with_the_same_id_and_created),
        cmocka_unit_test(test_text_needing_escapes_survives_both_directions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
