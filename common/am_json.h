/*
 * Reading JSON with yajl's event parser (no tree is built), with what yajl
 * lets through and jansson does not closed here once for every reader:
 * escaped UTF-16 surrogates that are not in pairs, an unfinished token
 * after the value, and nesting without a limit (AM_JSON_MAX_DEPTH, checked
 * by the readers' own start callbacks). Strings still need
 * am_utf8_valid_len: yajl passes overlong forms and NUL characters.
 */
#ifndef AM_JSON_H
#define AM_JSON_H

#include <stddef.h>
#include <yajl/yajl_parse.h>

/* Containers nested deeper than this are refused, as jansson refuses them. */
#define AM_JSON_MAX_DEPTH 2048

struct am_json_parse {
    yajl_handle parser;  /* while am_json_parse runs: callbacks may ask it where they are */
    size_t end;          /* where the top-level value ended (am_json_value_end); 0: not known */
    const char *refused; /* a callback's reason for stopping (am_json_refuse) */
    size_t at;           /* the fault's byte offset, when am_json_parse returns one */
    char why[160];
};

/* In a callback: the top-level value's closing bracket was just read. */
void am_json_value_end(struct am_json_parse *p);

/*
 * In a callback: refuses the text for why (a static string; the first one
 * is kept). Returns 0, what the callback returns to stop the parser.
 */
int am_json_refuse(struct am_json_parse *p, const char *why);

/*
 * In a map-key callback, for a reader that knows some of an object's keys:
 * which of names[first..last] key is, its bit (1 << index) set in *seen.
 * AM_JSON_KEY_OTHER: none of them. AM_JSON_KEY_TWICE: one already met in
 * this object, and the text is refused (the callback returns 0).
 */
/* Which of names[first..last] the len bytes at s are; -1: none. */
int am_json_name(const char *const *names, int first, int last, const unsigned char *s, size_t len);

#define AM_JSON_KEY_OTHER (-1)
#define AM_JSON_KEY_TWICE (-2)
int am_json_key(struct am_json_parse *p, const char *const *names, int first, int last,
                unsigned *seen, const unsigned char *key, size_t len);

/*
 * Parses the len bytes at text with cb, ctx being their argument. Returns
 * NULL when text is one JSON value followed by nothing but whitespace;
 * else why not (a callback's reason, yajl's, or one of the faults above),
 * with p->at its byte offset.
 */
const char *am_json_parse(struct am_json_parse *p, const yajl_callbacks *cb, void *ctx,
                          const char *text, size_t len);

#endif
