/* Unit tests of the table-driven settings: defaults, environment, flags and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_config.h"
#include "am_log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *name_v;
static const char *token_v;
static long long port_v;
static bool verbose_v;
static bool migrate_v;

static const struct am_setting table[] = {
    {"name", "AMT_NAME", AM_SET_STRING, "anon", 0, 0, "a name", &name_v},
    {"token", "AMT_TOKEN", AM_SET_STRING, NULL, 0, 0, "unset unless given", &token_v},
    {"port", "AMT_PORT", AM_SET_INT, "8080", 1, 65535, "a port", &port_v},
    {"verbose", "AMT_VERBOSE", AM_SET_BOOL, "false", 0, 0, "talk more", &verbose_v},
    {"migrate", "AMT_MIGRATE", AM_SET_ACTION, NULL, 0, 0, "migrate and exit", &migrate_v},
};

#define NTABLE (sizeof table / sizeof table[0])

static const char *const env_names[] = {
    "AMT_NAME", "AMT_TOKEN", "AMT_PORT", "AMT_VERBOSE", "AMT_MIGRATE", "LOG_LEVEL", "LOG_FORMAT",
};

static char err[256];

static int clean_env(void **state)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    memset(err, 0, sizeof err);
    return 0;
}

static int restore(void **state)
{
    clean_env(state);
    am_log_set_level("info");
    am_log_set_format("text");
    return 0;
}

/* Parses args (NULL-terminated) as if they followed the program name. */
static int parse_args(char **args)
{
    char *argv[16] = {"prog"};
    int argc = 1;
    while (args[argc - 1]) {
        assert_true(argc < 16);
        argv[argc] = args[argc - 1];
        argc++;
    }
    return am_config_parse(table, NTABLE, argc, argv, err, sizeof err);
}

#define PARSE(...)   parse_args((char *[]){__VA_ARGS__, NULL})
#define PARSE_NONE() parse_args((char *[]){NULL})

/* Expects an AM_CONFIG_ERROR whose message contains word. */
static void assert_error_names(int rc, const char *word)
{
    assert_int_equal(rc, AM_CONFIG_ERROR);
    if (!strstr(err, word))
        fail_msg("error '%s' does not name '%s'", err, word);
}

static void test_defaults_apply_with_no_arguments(void **state)
{
    name_v = "stale";
    token_v = "stale";
    port_v = -1;
    verbose_v = true;
    migrate_v = true;
    assert_int_equal(PARSE_NONE(), AM_CONFIG_RUN);
    assert_string_equal(name_v, "anon");
    assert_null(token_v);
    assert_int_equal(port_v, 8080);
    assert_false(verbose_v);
    assert_false(migrate_v);
    assert_int_equal(am_log_threshold, AM_LOG_INFO);
}

static void test_env_overrides_default(void **state)
{
    setenv("AMT_NAME", "from-env", 1);
    setenv("AMT_PORT", "9000", 1);
    setenv("AMT_VERBOSE", "yes", 1);
    setenv("AMT_TOKEN", "secret", 1);
    assert_int_equal(PARSE_NONE(), AM_CONFIG_RUN);
    assert_string_equal(name_v, "from-env");
    assert_string_equal(token_v, "secret");
    assert_int_equal(port_v, 9000);
    assert_true(verbose_v);

    /* Unset again, the default is back. */
    unsetenv("AMT_PORT");
    assert_int_equal(PARSE_NONE(), AM_CONFIG_RUN);
    assert_int_equal(port_v, 8080);
}

static void test_flag_overrides_env(void **state)
{
    setenv("AMT_NAME", "from-env", 1);
    setenv("AMT_PORT", "9000", 1);
    setenv("AMT_VERBOSE", "true", 1);
    assert_int_equal(PARSE("--name", "from-flag", "--port=9100", "--verbose=no"), AM_CONFIG_RUN);
    assert_string_equal(name_v, "from-flag");
    assert_int_equal(port_v, 9100);
    assert_false(verbose_v);
}

static void test_flag_value_after_equals_or_as_next_argument(void **state)
{
    assert_int_equal(PARSE("--name=a=b", "--port", "7"), AM_CONFIG_RUN);
    /* Only the first '=' separates: the value keeps the rest. */
    assert_string_equal(name_v, "a=b");
    assert_int_equal(port_v, 7);
    assert_int_equal(PARSE("--port=8", "--name", "--odd"), AM_CONFIG_RUN);
    assert_int_equal(port_v, 8);
    /* The argument after a flag that takes a value is that value, whatever it looks like. */
    assert_string_equal(name_v, "--odd");
    assert_int_equal(PARSE("--name="), AM_CONFIG_RUN);
    assert_string_equal(name_v, "");
}

static void test_later_flag_wins(void **state)
{
    assert_int_equal(PARSE("--port=1", "--port=2"), AM_CONFIG_RUN);
    assert_int_equal(port_v, 2);
}

static void test_bool_accepts_the_usual_words(void **state)
{
    static const struct {
        const char *word;
        bool value;
    } cases[] = {
        {"true", true},   {"TRUE", true},   {"yes", true}, {"1", true},  {"on", true},
        {"false", false}, {"False", false}, {"no", false}, {"0", false}, {"off", false},
    };
    char arg[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        verbose_v = !cases[i].value;
        snprintf(arg, sizeof arg, "--verbose=%s", cases[i].word);
        assert_int_equal(PARSE(arg), AM_CONFIG_RUN);
        if (verbose_v != cases[i].value)
            fail_msg("'%s' read as %d", cases[i].word, verbose_v);
    }
}

static void test_bad_bool_is_an_error_naming_its_source(void **state)
{
    assert_error_names(PARSE("--verbose=maybe"), "--verbose");
    assert_non_null(strstr(err, "maybe"));
    clean_env(state);
    setenv("AMT_VERBOSE", "2", 1);
    assert_error_names(PARSE_NONE(), "AMT_VERBOSE");
}

static void test_int_that_is_not_a_number_is_an_error(void **state)
{
    assert_error_names(PARSE("--port=abc"), "--port");
    assert_error_names(PARSE("--port=12x"), "--port");
    assert_error_names(PARSE("--port="), "--port");
    assert_error_names(PARSE("--port=99999999999999999999999"), "--port");
    setenv("AMT_PORT", "eighty", 1);
    assert_error_names(PARSE_NONE(), "AMT_PORT");
}

static void test_int_out_of_range_is_an_error(void **state)
{
    assert_error_names(PARSE("--port=0"), "--port");
    assert_non_null(strstr(err, "range"));
    assert_error_names(PARSE("--port=65536"), "--port");
    assert_error_names(PARSE("--port=-1"), "--port");
    setenv("AMT_PORT", "70000", 1);
    assert_error_names(PARSE_NONE(), "AMT_PORT");
    unsetenv("AMT_PORT");
    /* The bounds themselves are allowed. */
    assert_int_equal(PARSE("--port=1"), AM_CONFIG_RUN);
    assert_int_equal(port_v, 1);
    assert_int_equal(PARSE("--port=65535"), AM_CONFIG_RUN);
    assert_int_equal(port_v, 65535);
}

static void test_missing_value_is_an_error(void **state)
{
    assert_error_names(PARSE("--port"), "--port");
    assert_error_names(PARSE("--name"), "--name");
}

static void test_unknown_flag_is_an_error(void **state)
{
    assert_error_names(PARSE("--bogus"), "'--bogus'");
    /* The message names the flag, not its value. */
    assert_error_names(PARSE("--bogus=1"), "'--bogus'");
    assert_error_names(PARSE("--por=1"), "--por");
}

static void test_positional_argument_is_an_error(void **state)
{
    assert_error_names(PARSE("extra"), "'extra'");
    assert_error_names(PARSE("--port=1", "-p"), "'-p'");
}

static void test_help_and_version_are_reported(void **state)
{
    assert_int_equal(PARSE("--help"), AM_CONFIG_HELP);
    assert_int_equal(PARSE("-h"), AM_CONFIG_HELP);
    assert_int_equal(PARSE("--port=1", "--help"), AM_CONFIG_HELP);
    assert_int_equal(PARSE("--version"), AM_CONFIG_VERSION);
}

static void test_action_flag_takes_no_value(void **state)
{
    assert_int_equal(PARSE("--migrate", "--port=5"), AM_CONFIG_RUN);
    assert_true(migrate_v);
    /* Not followed by a value: --port above was parsed as a flag of its own. */
    assert_int_equal(port_v, 5);
    assert_int_equal(PARSE("--migrate=false"), AM_CONFIG_RUN);
    assert_false(migrate_v);
    assert_int_equal(PARSE("--port=5"), AM_CONFIG_RUN);
    assert_false(migrate_v);
}

static void test_action_is_not_read_from_env(void **state)
{
    setenv("AMT_MIGRATE", "true", 1);
    assert_int_equal(PARSE("--port=5"), AM_CONFIG_RUN);
    assert_false(migrate_v);
}

static void test_log_settings_apply_to_every_program(void **state)
{
    assert_int_equal(PARSE("--log-level=debug"), AM_CONFIG_RUN);
    assert_int_equal(am_log_threshold, AM_LOG_DEBUG);
    setenv("LOG_LEVEL", "warn", 1);
    assert_int_equal(PARSE_NONE(), AM_CONFIG_RUN);
    assert_int_equal(am_log_threshold, AM_LOG_WARN);
    assert_int_equal(PARSE("--log-format", "json"), AM_CONFIG_RUN);
}

static void test_bad_log_level_or_format_is_an_error(void **state)
{
    setenv("LOG_LEVEL", "bogus", 1);
    assert_error_names(PARSE_NONE(), "LOG_LEVEL");
    assert_non_null(strstr(err, "bogus"));
    unsetenv("LOG_LEVEL");
    assert_error_names(PARSE("--log-level=loud"), "loud");
    assert_error_names(PARSE("--log-format=xml"), "LOG_FORMAT");
}

static void test_split_trims_and_skips_empty_items(void **state)
{
    char list[] = " tcp://a:1 ,, tcp://b:2,   ,tcp://c:3  ";
    char *items[8];
    assert_int_equal(am_config_split(list, items, 8), 3);
    assert_string_equal(items[0], "tcp://a:1");
    assert_string_equal(items[1], "tcp://b:2");
    assert_string_equal(items[2], "tcp://c:3");
}

static void test_split_stops_at_max(void **state)
{
    char list[] = "a,b,c,d";
    char *items[2];
    assert_int_equal(am_config_split(list, items, 2), 2);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
}

static void test_split_of_nothing_is_empty(void **state)
{
    char empty[] = "";
    char blanks[] = " , ,, ";
    char *items[4];
    assert_int_equal(am_config_split(empty, items, 4), 0);
    assert_int_equal(am_config_split(blanks, items, 4), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, clean_env, restore)
    const struct CMUnitTest tests[] = {
        T(test_defaults_apply_with_no_arguments),
        T(test_env_overrides_default),
        T(test_flag_overrides_env),
        T(test_flag_value_after_equals_or_as_next_argument),
        T(test_later_flag_wins),
        T(test_bool_accepts_the_usual_words),
        T(test_bad_bool_is_an_error_naming_its_source),
        T(test_int_that_is_not_a_number_is_an_error),
        T(test_int_out_of_range_is_an_error),
        T(test_missing_value_is_an_error),
        T(test_unknown_flag_is_an_error),
        T(test_positional_argument_is_an_error),
        T(test_help_and_version_are_reported),
        T(test_action_flag_takes_no_value),
        T(test_action_is_not_read_from_env),
        T(test_log_settings_apply_to_every_program),
        T(test_bad_log_level_or_format_is_an_error),
        T(test_split_trims_and_skips_empty_items),
        T(test_split_stops_at_max),
        T(test_split_of_nothing_is_empty),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
