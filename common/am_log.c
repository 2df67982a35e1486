/* Levelled logging to stderr, as text or JSON lines. */
#include "am_log.h"
#include "am_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

int am_log_threshold = AM_LOG_INFO;
static int log_json;
static const char *log_program = "athena";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int am_log_set_level(const char *name)
{
    for (int i = 0; i <= AM_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            am_log_threshold = i;
            return AM_OK;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        am_log_threshold = AM_LOG_WARN;
        return AM_OK;
    }
    return AM_EINVAL;
}

int am_log_set_format(const char *name)
{
    if (strcasecmp(name, "text") == 0)
        log_json = 0;
    else if (strcasecmp(name, "json") == 0)
        log_json = 1;
    else
        return AM_EINVAL;
    return AM_OK;
}

void am_log_set_program(const char *name)
{
    log_program = name;
}

/* Appends s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void am_log_write(int level, const char *request_id, const char *fmt, ...)
{
    char msg[2048];
    char stamp[40];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t len = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + len, sizeof stamp - len, ".%03dZ", (int)(tv.tv_usec / 1000));

    if (level < 0 || level > AM_LOG_DEBUG)
        level = AM_LOG_ERROR;
    if (log_json) {
        char emsg[4096];
        char erid[256];
        json_escape(emsg, sizeof emsg, msg);
        if (request_id) {
            json_escape(erid, sizeof erid, request_id);
            fprintf(stderr,
                    "{\"ts\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"request_id\":\"%s\","
                    "\"msg\":\"%s\"}\n",
                    stamp, level_names[level], log_program, erid, emsg);
        } else {
            fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"msg\":\"%s\"}\n",
                    stamp, level_names[level], log_program, emsg);
        }
    } else if (request_id) {
        fprintf(stderr, "%s %-5s %s [%s] %s\n", stamp, level_names[level], log_program, request_id,
                msg);
    } else {
        fprintf(stderr, "%s %-5s %s %s\n", stamp, level_names[level], log_program, msg);
    }
}
