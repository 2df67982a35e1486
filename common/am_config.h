/* Table-driven settings: defaults, environment variables, flags, bounds, --help. */
#ifndef AM_CONFIG_H
#define AM_CONFIG_H

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>

enum am_setting_type {
    AM_SET_STRING, /* dest: const char ** (points into argv, environ or the default; not owned) */
    AM_SET_INT,    /* dest: long long *, checked against min and max */
    AM_SET_BOOL,   /* dest: bool *; true/false/1/0/yes/no/on/off */
    AM_SET_ACTION, /* dest: bool *; a flag without a value, e.g. --migrate */
};

struct am_setting {
    const char *flag; /* long option name without the dashes */
    const char *env;  /* environment variable, or NULL */
    enum am_setting_type type;
    const char *def; /* default as text, or NULL for unset */
    long long min, max;
    const char *help;
    void *dest;
};

enum {
    AM_CONFIG_RUN = 0, /* settings loaded, run the program */
    AM_CONFIG_HELP,    /* --help was given */
    AM_CONFIG_VERSION, /* --version was given */
    AM_CONFIG_ERROR,   /* a bad setting; err holds a one-line reason */
};

/*
 * Loads every setting of table: default, then environment, then flags.
 * LOG_LEVEL/--log-level and LOG_FORMAT/--log-format are handled for every
 * program. Returns one of the AM_CONFIG_ values; on AM_CONFIG_ERROR, err
 * (of errlen bytes) says what is wrong.
 */
int am_config_parse(const struct am_setting *table, size_t n, int argc, char **argv, char *err,
                    size_t errlen);

/* Prints the --help text generated from table to stdout. */
void am_config_usage(const struct am_setting *table, size_t n, const char *program,
                     const char *summary);

/*
 * am_config_parse for a main(): prints help or version and exits 0, prints
 * "program: reason" and exits 2 on a bad setting, returns when the program
 * should run.
 */
void am_config_load(const struct am_setting *table, size_t n, int argc, char **argv,
                    const char *program, const char *summary);

/*
 * Blocks SIGTERM and SIGINT in the calling thread (threads started later
 * inherit the mask) and ignores SIGPIPE; the service's main then waits with
 * sigwait(set, ...). Call before starting any thread.
 */
void am_signals_block(sigset_t *set);

/* Splits a comma-separated list in place into at most max items; returns the count. */
size_t am_config_split(char *list, char **items, size_t max);

#endif
