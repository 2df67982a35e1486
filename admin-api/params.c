/* Parsing and validating query parameters. */
#include "params.h"
#include "am_error.h"
#include "am_metric.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static int parse_ll(const char *s, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return AM_EINVAL;
    *out = v;
    return AM_OK;
}

int aa_param_int(const struct am_http_request *req, const char *name, long long def, long long min,
                 long long max, long long *out, char *err)
{
    const char *s = am_http_query(req, name);
    long long v;
    if (!s) {
        *out = def;
        return AM_OK;
    }
    if (parse_ll(s, &v)) {
        snprintf(err, AA_ERR_MAX, "%s must be a whole number", name);
        return AM_EINVAL;
    }
    if (v < min || v > max) {
        snprintf(err, AA_ERR_MAX, "%s must be between %lld and %lld", name, min, max);
        return AM_EINVAL;
    }
    *out = v;
    return AM_OK;
}

int aa_param_limit(const struct am_http_request *req, const char *name, long long def,
                   long long max, long long *out, char *err)
{
    const char *s = am_http_query(req, name);
    long long v;
    if (!s) {
        *out = def;
        return AM_OK;
    }
    if (parse_ll(s, &v) || v < 1) {
        snprintf(err, AA_ERR_MAX, "%s must be a whole number of at least 1", name);
        return AM_EINVAL;
    }
    *out = v > max ? max : v;
    return AM_OK;
}

int aa_format_unix(double seconds, char *out, size_t outlen)
{
    if (!isfinite(seconds) || seconds < 0 || seconds >= 253402300800.0)
        return AM_ERANGE;
    double whole = floor(seconds);
    time_t t = (time_t)whole;
    long us = lround((seconds - whole) * 1e6);
    if (us >= 1000000) {
        t++;
        us -= 1000000;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    return AM_OK;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int aa_parse_time(const char *s, char *out, size_t outlen)
{
    /* Unix seconds: digits with an optional fraction. */
    if (strspn(s, "0123456789.") == strlen(s) && *s && strchr(s, '.') == strrchr(s, '.')) {
        char *end = NULL;
        double v = strtod(s, &end);
        if (end == s || *end)
            return AM_EINVAL;
        return aa_format_unix(v, out, outlen);
    }
    /* ISO 8601: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|(+|-)HH[:]MM] */
    int y, mo, d, h = 0, mi = 0, sec = 0, tzh = 0, tzm = 0, sign = 0;
    long us = 0;
    size_t len = strlen(s);
    if (len < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d))
        return AM_EINVAL;
    const char *p = s + 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(p, 2, &h) || p[2] != ':' || digits(p + 3, 2, &mi))
            return AM_EINVAL;
        p += 5;
        if (*p == ':') {
            if (digits(p + 1, 2, &sec))
                return AM_EINVAL;
            p += 3;
            if (*p == '.' || *p == ',') {
                p++;
                int n = 0;
                long scale = 100000;
                while (*p >= '0' && *p <= '9') {
                    if (n < 6)
                        us += (*p - '0') * scale;
                    scale /= 10;
                    n++;
                    p++;
                }
                if (n == 0)
                    return AM_EINVAL;
            }
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (digits(p, 2, &tzh))
            return AM_EINVAL;
        p += 2;
        if (*p == ':')
            p++;
        if (*p) {
            if (digits(p, 2, &tzm))
                return AM_EINVAL;
            p += 2;
        }
    }
    if (*p)
        return AM_EINVAL;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 60 || tzh > 23 || tzm > 59)
        return AM_EINVAL;
    double t = (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) -
               sign * (tzh * 3600 + tzm * 60);
    return aa_format_unix(t + (double)us / 1e6, out, outlen) ? AM_EINVAL : AM_OK;
}

int aa_param_time(const struct am_http_request *req, const char *name, char *out, size_t outlen,
                  bool *present, char *err)
{
    const char *s = am_http_query(req, name);
    *present = false;
    if (!s)
        return AM_OK;
    if (aa_parse_time(s, out, outlen)) {
        snprintf(err, AA_ERR_MAX,
                 "%s must be an ISO 8601 time (2026-01-31T12:00:00Z) or Unix seconds", name);
        return AM_EINVAL;
    }
    *present = true;
    return AM_OK;
}

int aa_param_text(const struct am_http_request *req, const char *name, size_t maxlen,
                  const char **out, char *err)
{
    const char *s = am_http_query(req, name);
    *out = NULL;
    if (!s)
        return AM_OK;
    if (!am_utf8_valid(s, maxlen)) {
        snprintf(err, AA_ERR_MAX, "%s must be UTF-8 text of at most %zu bytes", name, maxlen);
        return AM_EINVAL;
    }
    *out = s;
    return AM_OK;
}

int aa_param_enum(const struct am_http_request *req, const char *name, const char *const *allowed,
                  const char *def, const char **out, char *err)
{
    const char *s = am_http_query(req, name);
    if (!s) {
        *out = def;
        return AM_OK;
    }
    for (int i = 0; allowed[i]; i++) {
        if (!strcmp(s, allowed[i])) {
            *out = allowed[i];
            return AM_OK;
        }
    }
    size_t n = (size_t)snprintf(err, AA_ERR_MAX, "%s must be one of", name);
    for (int i = 0; allowed[i] && n < AA_ERR_MAX; i++)
        n += (size_t)snprintf(err + n, AA_ERR_MAX - n, "%s %s", i ? "," : "", allowed[i]);
    return AM_EINVAL;
}

int aa_param_bool(const struct am_http_request *req, const char *name, bool def, bool *out,
                  char *err)
{
    const char *s = am_http_query(req, name);
    if (!s) {
        *out = def;
        return AM_OK;
    }
    if (!strcasecmp(s, "true") || !strcmp(s, "1")) {
        *out = true;
    } else if (!strcasecmp(s, "false") || !strcmp(s, "0")) {
        *out = false;
    } else {
        snprintf(err, AA_ERR_MAX, "%s must be true or false", name);
        return AM_EINVAL;
    }
    return AM_OK;
}

void aa_ascii_copy(char *out, size_t outlen, const char *text)
{
    size_t n = 0;
    for (; text[n] && n + 1 < outlen; n++)
        out[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
    out[n] = '\0';
}

bool aa_no_space(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return false;
    return true;
}

int aa_parse_id(const char *arg)
{
    size_t n = arg ? strspn(arg, "0123456789") : 0;
    if (n == 0 || arg[n] != '\0' || n > 18 || strspn(arg, "0") == n)
        return AM_EINVAL;
    return AM_OK;
}

bool aa_http_url_ok(const char *s)
{
    bool scheme = (!strncmp(s, "http://", 7) && s[7]) || (!strncmp(s, "https://", 8) && s[8]);
    return scheme && aa_no_space(s);
}

int aa_body_object(const struct am_http_request *req, json_t **out, char *err)
{
    json_error_t jerr;
    char text[160];

    *out = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out) {
        aa_ascii_copy(text, sizeof text, jerr.text);
        snprintf(err, AA_ERR_MAX, "body is not valid JSON: %s (line %d, column %d)", text,
                 jerr.line, jerr.column);
        return AM_EINVAL;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        snprintf(err, AA_ERR_MAX, "body must be a JSON object");
        return AM_EINVAL;
    }
    return AM_OK;
}
