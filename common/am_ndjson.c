/* Splits a byte stream into newline-delimited lines, bounded. */
#include "am_ndjson.h"
#include "am_error.h"

#include <string.h>

void am_ndjson_init(struct am_ndjson *s, size_t max_line, am_ndjson_line_fn fn, void *arg)
{
    am_buf_init(&s->pending, max_line);
    s->fn = fn;
    s->arg = arg;
    s->overflow = 0;
}

/* Delivers the pending line without trailing CR or blanks; blank lines carry nothing. */
static int deliver(struct am_ndjson *s)
{
    char *line = s->pending.data;
    size_t len = s->pending.len;
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    s->pending.len = 0;
    if (len == 0)
        return AM_OK;
    line[len] = '\0';
    return s->fn(s->arg, line, len);
}

int am_ndjson_feed(struct am_ndjson *s, const char *data, size_t len)
{
    if (s->overflow)
        return AM_ERANGE;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        int rc = am_buf_append(&s->pending, data, take);
        if (rc == AM_EFULL) {
            s->overflow = 1;
            return AM_ERANGE;
        }
        if (rc)
            return rc;
        if (!nl)
            return AM_OK;
        rc = deliver(s);
        if (rc)
            return rc;
        data += take + 1;
        len -= take + 1;
    }
    return AM_OK;
}

int am_ndjson_finish(struct am_ndjson *s)
{
    if (s->overflow)
        return AM_ERANGE;
    if (s->pending.len == 0)
        return AM_OK;
    return deliver(s);
}

void am_ndjson_free(struct am_ndjson *s)
{
    am_buf_free(&s->pending);
}
