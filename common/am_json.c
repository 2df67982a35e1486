/* yajl's event parser with the checks it lacks; see am_json.h. */
#include "am_json.h"

#include <stdio.h>
#include <string.h>

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/*
 * The offset of the first escaped surrogate (D800 to DFFF) that is not
 * part of a pair, high half then low half; len when there is none. yajl
 * reads a lone high half as "?" and joins one with any escape that follows.
 */
static size_t unpaired_surrogate(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    while ((p = memchr(p, '\\', (size_t)(end - p)))) {
        if (end - p < 6 || p[1] != 'u') {
            /* another escape; one cut short is the parser's to report */
            if (end - p < 2)
                break;
            p += 2;
            continue;
        }
        const char *at = p;
        int u = hex4(p + 2);
        p += 6;
        if (u >= 0xDC00 && u <= 0xDFFF)
            return (size_t)(at - s);
        if (u < 0xD800 || u > 0xDBFF)
            continue;
        int low = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return (size_t)(at - s);
        p += 6;
    }
    return len;
}

void am_json_value_end(struct am_json_parse *p)
{
    p->end = yajl_get_bytes_consumed(p->parser);
}

int am_json_refuse(struct am_json_parse *p, const char *why)
{
    if (!p->refused) {
        p->refused = why;
        p->at = p->parser ? yajl_get_bytes_consumed(p->parser) : 0;
    }
    return 0;
}

int am_json_name(const char *const *names, int first, int last, const unsigned char *s, size_t len)
{
    for (int k = first; k <= last; k++)
        if (strlen(names[k]) == len && !memcmp(names[k], s, len))
            return k;
    return -1;
}

int am_json_key(struct am_json_parse *p, const char *const *names, int first, int last,
                unsigned *seen, const unsigned char *key, size_t len)
{
    int k = am_json_name(names, first, last, key, len);
    if (k < 0)
        return AM_JSON_KEY_OTHER;
    if (*seen & (1u << k)) {
        am_json_refuse(p, "duplicate object key");
        return AM_JSON_KEY_TWICE;
    }
    *seen |= 1u << k;
    return k;
}

const char *am_json_parse(struct am_json_parse *p, const yajl_callbacks *cb, void *ctx,
                          const char *text, size_t len)
{
    p->end = 0;
    p->refused = NULL;
    p->at = unpaired_surrogate(text, len);
    if (p->at < len)
        return "an escaped UTF-16 surrogate without its other half";
    p->at = 0;
    p->parser = yajl_alloc(cb, NULL, ctx);
    if (!p->parser)
        return "out of memory";
    const unsigned char *u = (const unsigned char *)text;
    yajl_status st = yajl_parse(p->parser, u, len);
    size_t at = yajl_get_bytes_consumed(p->parser);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(p->parser);
        at = len; /* what the end of the input showed to be wrong */
    }
    const char *bad = p->refused;
    if (!bad && st != yajl_status_ok) {
        unsigned char *e = yajl_get_error(p->parser, 0, u, len);
        /* "parse error: ..." or "lexical error: ...", ending in a newline */
        const char *m = e ? strstr((const char *)e, ": ") : NULL;
        snprintf(p->why, sizeof p->why, "%.*s", m ? (int)strcspn(m + 2, "\n") : 0, m ? m + 2 : "");
        yajl_free_error(p->parser, e);
        bad = p->why[0] ? p->why : "malformed JSON";
        p->at = at;
    } else if (!bad && p->end > 0) {
        /* yajl lets an unfinished token after the value pass. */
        for (size_t i = p->end; i < len && !bad; i++)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
                bad = "end of file expected", p->at = i;
    }
    yajl_free(p->parser);
    p->parser = NULL;
    return bad;
}
