/* Hourly rollups: the refresher that keeps them current and the summary query that reads them. */
#ifndef AA_ROLLUP_H
#define AA_ROLLUP_H

#include "am_buf.h"

#include <stddef.h>

typedef struct aa_rollup aa_rollup;

struct aa_rollup_config {
    const char *database_url;
    int interval_s; /* time between refresh rounds; 0 disables the refresher */
};

/* Starts the refresher thread; *out is NULL when it is disabled. */
int aa_rollup_start(aa_rollup **out, const struct aa_rollup_config *cfg);

/* Appends the refresher's figures in Prometheus text format; accepts NULL. */
void aa_rollup_write_prom(aa_rollup *r, struct am_buf *b);

/* Stops the thread and frees r; accepts NULL. */
void aa_rollup_stop(aa_rollup *r);

/*
 * Builds the summary query that reads whole, refreshed hours from the
 * rollups and the rest (partial hours at both ends, hours not refreshed
 * yet) from the raw rows. It takes the parameters of the exact summary
 * ($1..$10 as AA_METRICS_FILTER_SQL, $11 the group_by name). group is the
 * grouping column (model, backend or source) or NULL; the caller must have
 * checked that no filter outside model, backend, source and status is set.
 * Returns 0, or AM_ERANGE when cap is too small.
 */
int aa_rollup_summary_sql(char *out, size_t cap, const char *group);

#endif
