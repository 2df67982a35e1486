/* A growable byte buffer with a hard size bound. */
#include "am_buf.h"
#include "am_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void am_buf_init(struct am_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static int reserve(struct am_buf *b, size_t extra)
{
    if (extra > b->max || b->len + extra > b->max)
        return AM_EFULL;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return AM_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return AM_ENOMEM;
    b->data = p;
    b->cap = cap;
    return AM_OK;
}

int am_buf_append(struct am_buf *b, const void *data, size_t len)
{
    int rc = reserve(b, len);
    if (rc)
        return rc;
    if (len > 0) /* data may be NULL then: an empty buffer's */
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return AM_OK;
}

int am_buf_printf(struct am_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return AM_EINVAL;
    if ((size_t)n < sizeof small)
        return am_buf_append(b, small, (size_t)n);

    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AM_OK;
}

int am_buf_json_escaped(struct am_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Most text needs no escaping: reserve for that and copy runs of plain bytes. */
    int rc = reserve(b, len);
    if (rc)
        return rc;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if ((rc = am_buf_append(b, s + run, i - run)))
            return rc;
        run = i + 1;
        char esc[6] = {'\\', (char)c};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if ((rc = am_buf_append(b, esc, n)))
            return rc;
    }
    return am_buf_append(b, s + run, len - run);
}

int am_buf_json_string(struct am_buf *b, const char *s, size_t len)
{
    int rc = reserve(b, len + 2);
    if (!rc)
        rc = am_buf_append(b, "\"", 1);
    if (!rc)
        rc = am_buf_json_escaped(b, s, len);
    return rc ? rc : am_buf_append(b, "\"", 1);
}

char *am_buf_take(struct am_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void am_buf_free(struct am_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
