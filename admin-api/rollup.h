/* Hourly rollups: the refresher that keeps them current and the summary query that reads them. */
#ifndef AA_ROLLUP_H
#define AA_ROLLUP_H

#include "am_buf.h"

#include <stddef.h>

typedef struct aa_rollup aa_rollup;

/* Families of percentiles a timeseries computes (figures=...); counts and sums are always there. */
enum { AA_FIG_LATENCY = 1, AA_FIG_TPS = 2, AA_FIG_TTFT = 4, AA_FIG_ALL = 7 };

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

/*
 * The JSON of a summary with figures=counts, from a CTE g(grp, n, errors,
 * ls, ts, tk, cost): exact on every path. $11 is the group_by name, $12
 * the number of groups kept, those of highest cost (NULL: every group).
 */
#define AA_COUNTS_JSON                                                                             \
    "SELECT json_build_object('since', $1::timestamptz, 'until', $2::timestamptz,"                 \
    " 'group_by', $11::text, 'figures', 'counts', 'groups', coalesce(json_agg(json_build_object("  \
    "'group', grp, 'count', n, 'errors', errors,"                                                  \
    " 'error_rate', errors::float8 / NULLIF(n, 0)::float8, 'latency_avg', ls / NULLIF(n, 0),"      \
    " 'tokens_per_second_avg', ts / NULLIF(n, 0), 'total_tokens', tk,"                             \
    " 'cost_usd', trim_scale(cost))"                                                               \
    " ORDER BY grp NULLS LAST), '[]'::json))"                                                      \
    " FROM (SELECT * FROM g ORDER BY cost DESC, n DESC, grp NULLS LAST LIMIT $12::bigint) g"

/*
 * The summary with figures=counts over the rollups by intent and stage
 * (llm_metric_rollup_label) and the raw rows they do not cover. It takes
 * the exact summary's parameters; group is any group_by column or NULL;
 * every filter but session_id and request_id is allowed. Returns 0, or
 * AM_ERANGE when cap is too small.
 */
int aa_rollup_counts_sql(char *out, size_t cap, const char *group);

/*
 * The timeseries counterpart: the same figures per bucket and group, with
 * $12 the bucket as an interval, $13 its name and $14 the figures' name;
 * families (AA_FIG_*) says which percentiles to compute. The bucket must be
 * a whole number of hours aligned to UTC midnight (1 hour, 1 day), so that
 * every hour falls in one bucket. Returns 0, or AM_ERANGE when cap is too
 * small.
 */
int aa_rollup_timeseries_sql(char *out, size_t cap, const char *group, unsigned families);

#endif
