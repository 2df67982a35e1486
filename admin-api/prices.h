/* Model prices: the versioned table each stored call's cost is computed from. */
#ifndef AA_PRICES_H
#define AA_PRICES_H

#include "am_metric.h"
#include "api.h"

#include <jansson.h>

#include <stddef.h>
#include <stdint.h>

/* The most a price may be, in USD per million tokens, and its decimals at most (migration 5). */
#define AA_PRICE_MAX      1000000
#define AA_PRICE_DECIMALS 12

/* One price definition, checked, as text parameters for PostgreSQL. */
struct aa_price {
    char model[AM_METRIC_MAX_STRING + 1];
    char valid_from[48];          /* "YYYY-MM-DD HH:MM:SS.ffffff+00" */
    char input_usd_per_mtok[32];  /* the decimal sent, as aa_price_decimal writes it */
    char output_usd_per_mtok[32]; /* likewise */
};

/*
 * Checks a price definition, the JSON object root: model (required, a
 * non-empty string as a metric's model), input_usd_per_mtok and
 * output_usd_per_mtok (required numbers from 0 to AA_PRICE_MAX, with at
 * most AA_PRICE_DECIMALS decimals) and valid_from (optional, ISO 8601 or
 * Unix seconds; now_us when absent or null). Keys that a price carries
 * when listed (valid_until, current, created, created_at) are ignored; any
 * other key is refused. Returns AM_OK, or AM_EINVAL with a one-line reason
 * naming the field in err (errlen bytes). root stays the caller's.
 */
int aa_price_parse(json_t *root, int64_t now_us, struct aa_price *out, char *err, size_t errlen);

/*
 * Writes v (0 .. AA_PRICE_MAX) as the shortest fixed-point decimal that
 * reads back as v, into out (outlen >= 32). Returns AM_OK, or AM_EINVAL when
 * that takes more than AA_PRICE_DECIMALS decimals.
 */
int aa_price_decimal(double v, char *out, size_t outlen);

/* GET and PUT /api/llm-backends/prices: list them before aa_backend_routes. */
extern const struct aa_route aa_price_routes[];

#endif
