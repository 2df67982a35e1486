/* Per-call cost of the collector's COPY rows, from the model prices (migration 5). */
#ifndef CL_COST_H
#define CL_COST_H

#include "am_buf.h"

#include <stddef.h>

/* Every version of every model's price, as the writer read them for one transaction. */
typedef struct cl_prices cl_prices;

/* Makes an empty list in *out; free it with cl_prices_free. AM_ENOMEM on failure. */
int cl_prices_new(cl_prices **out);

/* Frees p; accepts NULL. */
void cl_prices_free(cl_prices *p);

/* Empties p, keeping its memory for the next load. */
void cl_prices_clear(cl_prices *p);

/* Versions p holds. */
size_t cl_prices_count(const cl_prices *p);

/*
 * Adds a version: model as stored (not escaped); valid_from as COPY rows
 * write times, "YYYY-MM-DD HH:MM:SS.ffffff+00" in UTC; input and output
 * in USD per million tokens as plain decimals of at most 12 decimals, from
 * 0 to 1000000 (what the table's checks allow). Versions may come in any
 * order. Returns AM_OK, AM_EINVAL when a value is not in that form, or
 * AM_ENOMEM.
 */
int cl_prices_add(cl_prices *p, const char *model, const char *valid_from, const char *input,
                  const char *output);

/*
 * Appends the COPY text rows (len bytes of whole lines in CL_ROW_COLUMNS
 * order) to out, each with one more column, cost_usd: (prompt_tokens x
 * input + tokens x output) / 1,000,000 at the version of its model in force
 * at its timestamp, exactly, as a plain decimal. A model without a version
 * in force costs 0, and so does a row whose fields cannot be read (rows
 * made by cl_rowfmt_batch always can). Returns AM_OK, or AM_EFULL when
 * out's bound is hit.
 */
int cl_prices_cost_rows(cl_prices *p, const char *rows, size_t len, struct am_buf *out);

#endif
