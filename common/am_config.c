/* Table-driven settings: defaults, environment, flags, bounds and --help. */
#include "am_config.h"
#include "am_error.h"
#include "am_log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *log_level = "info";
static const char *log_format = "text";

static const struct am_setting log_settings[] = {
    {"log-level", "LOG_LEVEL", AM_SET_STRING, "info", 0, 0, "error, warn, info or debug",
     &log_level},
    {"log-format", "LOG_FORMAT", AM_SET_STRING, "text", 0, 0, "text, or json for one object a line",
     &log_format},
};

static int set_value(const struct am_setting *s, const char *origin, const char *value, char *err,
                     size_t errlen)
{
    switch (s->type) {
    case AM_SET_STRING:
        *(const char **)s->dest = value;
        return 0;
    case AM_SET_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            snprintf(err, errlen, "%s: '%s' is not a whole number", origin, value);
            return -1;
        }
        if (v < s->min || v > s->max) {
            snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", origin, v, s->min,
                     s->max);
            return -1;
        }
        *(long long *)s->dest = v;
        return 0;
    }
    case AM_SET_BOOL:
    case AM_SET_ACTION:
        if (!strcasecmp(value, "true") || !strcmp(value, "1") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "on")) {
            *(bool *)s->dest = true;
        } else if (!strcasecmp(value, "false") || !strcmp(value, "0") || !strcasecmp(value, "no") ||
                   !strcasecmp(value, "off")) {
            *(bool *)s->dest = false;
        } else {
            snprintf(err, errlen, "%s: '%s' is not true or false", origin, value);
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "%s: unknown setting type", origin);
    return -1;
}

static const struct am_setting *find_flag(const struct am_setting *table, size_t n,
                                          const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(table[i].flag) == len && strncmp(table[i].flag, name, len) == 0)
            return &table[i];
    }
    for (size_t i = 0; i < sizeof log_settings / sizeof log_settings[0]; i++) {
        if (strlen(log_settings[i].flag) == len && strncmp(log_settings[i].flag, name, len) == 0)
            return &log_settings[i];
    }
    return NULL;
}

static int load_defaults_and_env(const struct am_setting *s, char *err, size_t errlen)
{
    char origin[128];
    if (s->def) {
        snprintf(origin, sizeof origin, "default of --%s", s->flag);
        if (set_value(s, origin, s->def, err, errlen))
            return -1;
    } else if (s->type == AM_SET_STRING) {
        *(const char **)s->dest = NULL;
    } else if (s->type == AM_SET_BOOL || s->type == AM_SET_ACTION) {
        *(bool *)s->dest = false;
    }
    const char *v = s->env ? getenv(s->env) : NULL;
    if (v && s->type != AM_SET_ACTION) {
        snprintf(origin, sizeof origin, "%s", s->env);
        if (set_value(s, origin, v, err, errlen))
            return -1;
    }
    return 0;
}

int am_config_parse(const struct am_setting *table, size_t n, int argc, char **argv, char *err,
                    size_t errlen)
{
    for (size_t i = 0; i < sizeof log_settings / sizeof log_settings[0]; i++) {
        if (load_defaults_and_env(&log_settings[i], err, errlen))
            return AM_CONFIG_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        if (load_defaults_and_env(&table[i], err, errlen))
            return AM_CONFIG_ERROR;
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
            return AM_CONFIG_HELP;
        if (!strcmp(arg, "--version"))
            return AM_CONFIG_VERSION;
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
            return AM_CONFIG_ERROR;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct am_setting *s = find_flag(table, n, name, len);
        if (!s) {
            snprintf(err, errlen, "unknown flag '%.*s' (see --help)", (int)(len + 2), arg);
            return AM_CONFIG_ERROR;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (s->type == AM_SET_ACTION && !value) {
            value = "true";
        } else if (!value) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", s->flag);
                return AM_CONFIG_ERROR;
            }
            value = argv[++i];
        }
        char origin[128];
        snprintf(origin, sizeof origin, "--%s", s->flag);
        if (set_value(s, origin, value, err, errlen))
            return AM_CONFIG_ERROR;
    }

    if (am_log_set_level(log_level)) {
        snprintf(err, errlen, "LOG_LEVEL/--log-level: '%s' is not error, warn, info or debug",
                 log_level);
        return AM_CONFIG_ERROR;
    }
    if (am_log_set_format(log_format)) {
        snprintf(err, errlen, "LOG_FORMAT/--log-format: '%s' is not text or json", log_format);
        return AM_CONFIG_ERROR;
    }
    return AM_CONFIG_RUN;
}

static void usage_line(const struct am_setting *s)
{
    char left[64];
    snprintf(left, sizeof left, "--%s%s", s->flag, s->type == AM_SET_ACTION ? "" : " VALUE");
    printf("  %-28s %s", left, s->help);
    if (s->type == AM_SET_INT)
        printf(" [%lld..%lld]", s->min, s->max);
    if (s->def && s->type != AM_SET_ACTION)
        printf(" (default: %s)", s->def[0] ? s->def : "\"\"");
    if (s->env)
        printf(" [env %s]", s->env);
    printf("\n");
}

void am_config_usage(const struct am_setting *table, size_t n, const char *program,
                     const char *summary)
{
    printf("Usage: %s [OPTIONS]\n\n%s\n\nOptions (flags override environment variables):\n",
           program, summary);
    for (size_t i = 0; i < n; i++)
        usage_line(&table[i]);
    for (size_t i = 0; i < sizeof log_settings / sizeof log_settings[0]; i++)
        usage_line(&log_settings[i]);
    printf("  %-28s %s\n  %-28s %s\n", "--help", "print this help and exit", "--version",
           "print the version and exit");
}

void am_config_load(const struct am_setting *table, size_t n, int argc, char **argv,
                    const char *program, const char *summary)
{
    char err[512];
    am_log_set_program(program);
    switch (am_config_parse(table, n, argc, argv, err, sizeof err)) {
    case AM_CONFIG_HELP:
        am_config_usage(table, n, program, summary);
        exit(0);
    case AM_CONFIG_VERSION:
        printf("%s %s\n", program, AM_VERSION);
        exit(0);
    case AM_CONFIG_ERROR:
        fprintf(stderr, "%s: %s\n", program, err);
        exit(2);
    default:
        return;
    }
}

size_t am_config_split(char *list, char **items, size_t max)
{
    size_t count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok && count < max;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            *--end = '\0';
        if (*tok)
            items[count++] = tok;
    }
    return count;
}

void am_signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}
