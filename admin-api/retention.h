/* Retention: deletes metrics older than a number of days, in small batches. */
#ifndef AA_RETENTION_H
#define AA_RETENTION_H

#include "am_buf.h"

typedef struct aa_retention aa_retention;

struct aa_retention_config {
    const char *database_url;
    int days;       /* metrics older than this go; 0 keeps everything */
    int interval_s; /* time between runs */
    int batch_rows; /* rows deleted per transaction */
};

/* Starts the retention thread (nothing when days is 0); *out may be NULL then. */
int aa_retention_start(aa_retention **out, const struct aa_retention_config *cfg);

/* Appends the retention figures in Prometheus text format; accepts NULL. */
void aa_retention_write_prom(aa_retention *r, struct am_buf *b);

/* Stops the thread (mid-run, between batches) and frees r; accepts NULL. */
void aa_retention_stop(aa_retention *r);

#endif
