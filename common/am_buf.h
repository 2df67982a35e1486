/* A growable byte buffer with a hard size bound (curl's dynbuf). */
#ifndef AM_BUF_H
#define AM_BUF_H

#include <stddef.h>

struct am_buf {
    char *data; /* NUL-terminated while len < cap; owned, freed by am_buf_free */
    size_t len;
    size_t cap;
    size_t max; /* appends that would exceed max fail with AM_EFULL */
};

/* Initialises an empty buffer that never grows past max bytes. */
void am_buf_init(struct am_buf *b, size_t max);

/* Appends len bytes; returns 0, AM_EFULL (bound hit, nothing appended) or AM_ENOMEM. */
int am_buf_append(struct am_buf *b, const void *data, size_t len);

/* Appends a string literal, its length known at compile time. */
#define am_buf_lit(b, lit) am_buf_append((b), "" lit, sizeof(lit) - 1)

/* Appends formatted text; same returns as am_buf_append. */
int am_buf_printf(struct am_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends s (len bytes, UTF-8) as a quoted JSON string: '"', '\\' and the
 * control characters escaped (\n, \t and friends by name, the rest as
 * \u00XX), everything else copied as it is. Same returns as am_buf_append;
 * on an error b may hold part of the string.
 */
int am_buf_json_string(struct am_buf *b, const char *s, size_t len);

/* The same without the quotes: the escaped text, to join pieces into one JSON string. */
int am_buf_json_escaped(struct am_buf *b, const char *s, size_t len);

/* Hands the data to the caller (free() it) and leaves b empty. */
char *am_buf_take(struct am_buf *b, size_t *len);

/* Frees the data; accepts a buffer that was only initialised. */
void am_buf_free(struct am_buf *b);

#endif
