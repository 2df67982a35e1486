/* Splits a byte stream into newline-delimited JSON lines, with a bound on line length. */
#ifndef AM_NDJSON_H
#define AM_NDJSON_H

#include "am_buf.h"

#include <stddef.h>

/* Called for each complete line (without its newline, NUL-terminated); non-zero stops. */
typedef int (*am_ndjson_line_fn)(void *arg, const char *line, size_t len);

struct am_ndjson {
    struct am_buf pending; /* the unfinished last line */
    am_ndjson_line_fn fn;
    void *arg;
    int overflow; /* a line passed the bound */
};

/* Prepares a splitter calling fn for every line of at most max_line bytes. */
void am_ndjson_init(struct am_ndjson *s, size_t max_line, am_ndjson_line_fn fn, void *arg);

/*
 * Feeds bytes. Returns 0, AM_ERANGE when a line passes the bound (the stream
 * is then unusable), or what fn returned when it stopped the stream.
 */
int am_ndjson_feed(struct am_ndjson *s, const char *data, size_t len);

/* Ends the stream: a last line without a newline is delivered. Same returns. */
int am_ndjson_finish(struct am_ndjson *s);

/* Frees what the splitter holds. */
void am_ndjson_free(struct am_ndjson *s);

#endif
