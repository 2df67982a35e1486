/* Parsing and validating query parameters and request values; every failure names what is wrong. */
#ifndef AA_PARAMS_H
#define AA_PARAMS_H

#include "am_http.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

#define AA_ERR_MAX 256

/*
 * Each function reads parameter name of req. Absent: 0 and *present false
 * (where it has one) or the default. Present but bad: AM_EINVAL with a
 * one-line reason in err (AA_ERR_MAX bytes).
 */
int aa_param_int(const struct am_http_request *req, const char *name, long long def, long long min,
                 long long max, long long *out, char *err);

/* A whole number, clamped to max instead of refused when above it (limit=5000 -> 1000). */
int aa_param_limit(const struct am_http_request *req, const char *name, long long def,
                   long long max, long long *out, char *err);

/*
 * A point in time, as ISO 8601 with or without a zone (UTC when absent) or
 * as Unix seconds with an optional fraction. On success out holds it as
 * "YYYY-MM-DD HH:MM:SS.ffffff+00" (outlen >= 40), ready for ::timestamptz.
 */
int aa_param_time(const struct am_http_request *req, const char *name, char *out, size_t outlen,
                  bool *present, char *err);

/* Text of at most maxlen bytes of valid UTF-8; *out points into the request. */
int aa_param_text(const struct am_http_request *req, const char *name, size_t maxlen,
                  const char **out, char *err);

/* One of allowed (NULL-terminated); *out is the allowed entry, or def when absent. */
int aa_param_enum(const struct am_http_request *req, const char *name, const char *const *allowed,
                  const char *def, const char **out, char *err);

/* true/false/1/0; def when absent. */
int aa_param_bool(const struct am_http_request *req, const char *name, bool def, bool *out,
                  char *err);

/*
 * Parses req's body as a JSON object (duplicate keys refused) into *out,
 * freed with json_decref. AM_EINVAL with a one-line reason in err (invalid
 * JSON, with where; not an object), *out then NULL.
 */
int aa_body_object(const struct am_http_request *req, json_t **out, char *err);

/* Copies text to out (outlen bytes), replacing bytes outside printable ASCII with '?'. */
void aa_ascii_copy(char *out, size_t outlen, const char *text);

/* True when s holds no control character, space or DEL. */
bool aa_no_space(const char *s);

/* AM_OK when arg (a path segment, may be NULL) is a positive whole number fit for a bigint id. */
int aa_parse_id(const char *arg);

/* True when s is an http:// or https:// URL with something after the scheme and no spaces. */
bool aa_http_url_ok(const char *s);

/* The parsing behind aa_param_time, for JSON bodies too. */
int aa_parse_time(const char *text, char *out, size_t outlen);

/* Formats Unix seconds (with fraction) the same way; AM_ERANGE outside 1970..9999. */
int aa_format_unix(double seconds, char *out, size_t outlen);

#endif
