/* Unit tests of how the orchestrator reads the classifier's intent and the validator's verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "answers.h"

#include <string.h>

static char *intents[] = {"weather_query", "music", "smart_home", "general"};
#define NINTENTS (sizeof intents / sizeof intents[0])

static char *rejects[] = {"INVALID", "REJECT", "REJECTED"};
#define NREJECTS (sizeof rejects / sizeof rejects[0])

static void test_intent_is_the_name_in_the_answer(void **state)
{
    assert_string_equal(orch_answers_intent("music", intents, NINTENTS), "music");
    assert_string_equal(orch_answers_intent("weather_query", intents, NINTENTS), "weather_query");
    assert_string_equal(orch_answers_intent("  Intent: SMART_HOME.\n", intents, NINTENTS),
                        "smart_home");
    assert_string_equal(orch_answers_intent("**Music**", intents, NINTENTS), "music");
}

static void test_intent_underscore_matches_space_and_dash(void **state)
{
    assert_string_equal(orch_answers_intent("This is a smart home request.", intents, NINTENTS),
                        "smart_home");
    assert_string_equal(orch_answers_intent("weather-query", intents, NINTENTS), "weather_query");
}

static void test_intent_needs_a_whole_word(void **state)
{
    /* "musical" is not "music", "generally" is not "general". */
    assert_string_equal(orch_answers_intent("a musical request", intents, NINTENTS), "general");
    assert_string_equal(orch_answers_intent("nonmusic", intents, NINTENTS), "general");
    assert_string_equal(orch_answers_intent("music_box", intents, NINTENTS), "general");
}

static void test_intent_first_listed_wins(void **state)
{
    /* Both appear; music is listed before smart_home whatever the order in the text. */
    assert_string_equal(orch_answers_intent("smart_home or maybe music", intents, NINTENTS),
                        "music");
}

static void test_intent_falls_back_to_general(void **state)
{
    assert_string_equal(orch_answers_intent("I cannot tell.", intents, NINTENTS), "general");
    assert_string_equal(orch_answers_intent("", intents, NINTENTS), "general");
    assert_string_equal(orch_answers_intent(NULL, intents, NINTENTS), "general");
    char *only[] = {"lights"};
    assert_string_equal(orch_answers_intent("music", only, 1), ORCH_INTENT_FALLBACK);
}

static void test_validator_accepts_unless_a_rejection_word(void **state)
{
    assert_false(orch_answers_rejects("VALID", rejects, NREJECTS));
    assert_false(orch_answers_rejects("Valid. The answer is correct.", rejects, NREJECTS));
    assert_false(orch_answers_rejects("", rejects, NREJECTS));
    assert_false(orch_answers_rejects(NULL, rejects, NREJECTS));
    /* "INVALIDATED" and "REJECTION" are other words. */
    assert_false(orch_answers_rejects("nothing INVALIDATED it, no REJECTION", rejects, NREJECTS));

    assert_true(orch_answers_rejects("INVALID: Paris is not in Spain.", rejects, NREJECTS));
    assert_true(orch_answers_rejects("invalid", rejects, NREJECTS));
    assert_true(orch_answers_rejects("I would reject this answer.", rejects, NREJECTS));
    assert_true(orch_answers_rejects("Rejected - wrong unit", rejects, NREJECTS));
    assert_true(orch_answers_rejects("\"INVALID\"", rejects, NREJECTS));
}

static void test_has_word_edges(void **state)
{
    assert_true(orch_answers_has_word("a b", "b"));
    assert_true(orch_answers_has_word("b", "b"));
    assert_false(orch_answers_has_word("ab", "b"));
    assert_false(orch_answers_has_word("b", ""));
    assert_false(orch_answers_has_word("smart", "smart_home"));
    assert_false(orch_answers_has_word("Smart  home", "smart_home"));
    assert_true(orch_answers_has_word("x smart_home", "smart-home"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intent_is_the_name_in_the_answer),
        cmocka_unit_test(test_intent_underscore_matches_space_and_dash),
        cmocka_unit_test(test_intent_needs_a_whole_word),
        cmocka_unit_test(test_intent_first_listed_wins),
        cmocka_unit_test(test_intent_falls_back_to_general),
        cmocka_unit_test(test_validator_accepts_unless_a_rejection_word),
        cmocka_unit_test(test_has_word_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
