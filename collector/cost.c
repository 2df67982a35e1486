/* Per-call cost of the collector's COPY rows, from the model prices (migration 5). */
#include "cost.h"
#include "am_error.h"
#include "rowfmt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prices are kept in units of 1e-12 USD per million tokens, costs in 1e-18 USD. */
#define PRICE_DECIMALS 12
#define PRICE_MAX      1000000
#define TIME_LEN       29 /* "YYYY-MM-DD HH:MM:SS.ffffff+00" */

__extension__ typedef unsigned __int128 u128;

struct version {
    char *model; /* escaped as in COPY text */
    size_t model_len;
    char valid_from[TIME_LEN + 1];
    uint64_t input, output; /* 1e-12 USD per million tokens */
};

struct cl_prices {
    struct version *v;
    size_t n, cap;
    bool sorted;
};

int cl_prices_new(cl_prices **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? AM_OK : AM_ENOMEM;
}

void cl_prices_clear(cl_prices *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].model);
    p->n = 0;
    p->sorted = true;
}

void cl_prices_free(cl_prices *p)
{
    if (!p)
        return;
    cl_prices_clear(p);
    free(p->v);
    free(p);
}

size_t cl_prices_count(const cl_prices *p)
{
    return p->n;
}

/* A plain decimal of at most PRICE_DECIMALS decimals, 0 .. PRICE_MAX, in 1e-12 units. */
static int parse_price(const char *s, uint64_t *out)
{
    uint64_t whole = 0, frac = 0;
    size_t n = strspn(s, "0123456789"), d = 0;
    if (n == 0 || n > 7)
        return AM_EINVAL;
    for (size_t i = 0; i < n; i++)
        whole = whole * 10 + (uint64_t)(s[i] - '0');
    s += n;
    if (*s == '.') {
        s++;
        d = strspn(s, "0123456789");
        if (d == 0 || d > PRICE_DECIMALS)
            return AM_EINVAL;
        for (size_t i = 0; i < d; i++)
            frac = frac * 10 + (uint64_t)(s[i] - '0');
        s += d;
    }
    if (*s || whole > PRICE_MAX || (whole == PRICE_MAX && frac))
        return AM_EINVAL;
    for (; d < PRICE_DECIMALS; d++)
        frac *= 10;
    *out = whole * 1000000000000ULL + frac;
    return AM_OK;
}

int cl_prices_add(cl_prices *p, const char *model, const char *valid_from, const char *input,
                  const char *output)
{
    struct version v = {0};
    struct am_buf esc;

    if (strlen(valid_from) != TIME_LEN || parse_price(input, &v.input) ||
        parse_price(output, &v.output))
        return AM_EINVAL;
    memcpy(v.valid_from, valid_from, TIME_LEN + 1);
    am_buf_init(&esc, 2 * strlen(model) + 8);
    if (cl_rowfmt_text(&esc, model)) {
        am_buf_free(&esc);
        return AM_ENOMEM;
    }
    v.model = am_buf_take(&esc, &v.model_len);
    if (!v.model)
        return AM_ENOMEM;
    v.model_len--; /* the field's tab */
    v.model[v.model_len] = '\0';
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        struct version *nv = realloc(p->v, cap * sizeof *nv);
        if (!nv) {
            free(v.model);
            return AM_ENOMEM;
        }
        p->v = nv;
        p->cap = cap;
    }
    p->v[p->n++] = v;
    p->sorted = false;
    return AM_OK;
}

static int cmp_model(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

/* By model, then valid_from: the versions of a model in the order they take effect. */
static int cmp_version(const void *x, const void *y)
{
    const struct version *a = x, *b = y;
    int c = cmp_model(a->model, a->model_len, b->model, b->model_len);
    return c ? c : strcmp(a->valid_from, b->valid_from);
}

/* The version of model in force at ts (TIME_LEN bytes), or NULL. */
static const struct version *in_force(const cl_prices *p, const char *model, size_t len,
                                      const char *ts)
{
    size_t lo = 0, hi = p->n;
    /* The first version past (model, ts); the one before it is in force if it is model's. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct version *v = &p->v[mid];
        int c = cmp_model(v->model, v->model_len, model, len);
        if (c < 0 || (c == 0 && memcmp(v->valid_from, ts, TIME_LEN) <= 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct version *v = &p->v[lo - 1];
    return cmp_model(v->model, v->model_len, model, len) == 0 ? v : NULL;
}

/* A count field: digits, or \N (0). */
static uint64_t count_of(const char *f, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len && i < 10 && f[i] >= '0' && f[i] <= '9'; i++)
        n = n * 10 + (uint64_t)(f[i] - '0');
    return n;
}

/* Writes cost (1e-18 USD) as a plain decimal into out (at least 48 bytes). */
static void format_cost(u128 cost, char *out, size_t outlen)
{
    const uint64_t unit = 1000000000000000000ULL;
    uint64_t whole = (uint64_t)(cost / unit), frac = (uint64_t)(cost % unit);
    if (!frac) {
        snprintf(out, outlen, "%llu", (unsigned long long)whole);
        return;
    }
    int n =
        snprintf(out, outlen, "%llu.%018llu", (unsigned long long)whole, (unsigned long long)frac);
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
}

/* The cost of one row (without its newline), as text; "0" when it cannot be read. */
static void row_cost(const cl_prices *p, const char *row, size_t len, char *out, size_t outlen)
{
    /* Fields 0 timestamp, 1 model, 4 tokens, 6 prompt_tokens: find where each starts. */
    const char *f[8];
    size_t flen[8], k = 0;
    const char *s = row, *end = row + len;
    while (k < 8 && s <= end) {
        const char *tab = memchr(s, '\t', (size_t)(end - s));
        f[k] = s;
        flen[k] = tab ? (size_t)(tab - s) : (size_t)(end - s);
        k++;
        if (!tab)
            break;
        s = tab + 1;
    }
    snprintf(out, outlen, "0");
    if (k < 8 || flen[0] != TIME_LEN)
        return;
    const struct version *v = in_force(p, f[1], flen[1], f[0]);
    if (!v)
        return;
    u128 cost =
        (u128)count_of(f[6], flen[6]) * v->input + (u128)count_of(f[4], flen[4]) * v->output;
    /* Prices per million tokens in 1e-12 units: the product is in 1e-18 USD. */
    format_cost(cost, out, outlen);
}

int cl_prices_cost_rows(cl_prices *p, const char *rows, size_t len, struct am_buf *out)
{
    char cost[64];
    if (!p->sorted) {
        qsort(p->v, p->n, sizeof *p->v, cmp_version);
        p->sorted = true;
    }
    for (const char *s = rows, *end = rows + len; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        row_cost(p, s, n, cost, sizeof cost);
        if (am_buf_append(out, s, n) || am_buf_append(out, "\t", 1) ||
            am_buf_append(out, cost, strlen(cost)) || am_buf_append(out, "\n", 1))
            return AM_EFULL;
        s += n + 1;
    }
    return AM_OK;
}
