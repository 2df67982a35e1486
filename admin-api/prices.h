/* Model prices: the versioned table each stored call's cost is computed from. */
#ifndef AA_PRICES_H
#define AA_PRICES_H

#include "am_metric.h"
#include "api.h"

#include <stddef.h>
#include <stdint.h>

/* The most a price may be, in USD per million tokens. */
#define AA_PRICE_MAX 1000000

/* One price definition, checked, as text parameters for PostgreSQL. */
struct aa_price {
    char model[AM_METRIC_MAX_STRING + 1];
    char valid_from[48];          /* "YYYY-MM-DD HH:MM:SS.ffffff+00" */
    char input_usd_per_mtok[32];  /* the shortest decimal that reads back as the number sent */
    char output_usd_per_mtok[32]; /* likewise */
};

/*
 * Checks a price definition, a JSON object (body, len bytes): model
 * (required, a non-empty string as a metric's model), input_usd_per_mtok
 * and output_usd_per_mtok (required numbers from 0 to AA_PRICE_MAX) and
 * valid_from (optional, ISO 8601 or Unix seconds; now_us when absent).
 * Keys that a price carries when listed (valid_until, current, created,
 * created_at) are ignored; any other key is refused. Returns AM_OK, or
 * AM_EINVAL with a one-line reason naming the field in err (errlen bytes).
 */
int aa_price_parse(const char *body, size_t len, int64_t now_us, struct aa_price *out, char *err,
                   size_t errlen);

/*
 * Writes v (0 .. AA_PRICE_MAX) as the shortest fixed-point decimal, with at
 * most 20 decimals, that reads back as v; past that as "%.17g", which
 * PostgreSQL's numeric also reads exactly. outlen >= 32.
 */
void aa_price_decimal(double v, char *out, size_t outlen);

/* GET and PUT /api/llm-backends/prices: list them before aa_backend_routes. */
extern const struct aa_route aa_price_routes[];

#endif
