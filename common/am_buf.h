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

/* Appends formatted text; same returns as am_buf_append. */
int am_buf_printf(struct am_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the data to the caller (free() it) and leaves b empty. */
char *am_buf_take(struct am_buf *b, size_t *len);

/* Frees the data; accepts a buffer that was only initialised. */
void am_buf_free(struct am_buf *b);

#endif
