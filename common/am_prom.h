/* Writing the Prometheus text exposition format. */
#ifndef AM_PROM_H
#define AM_PROM_H

#include "am_buf.h"

#include <stdatomic.h>
#include <stdint.h>

/* Writes the HELP and TYPE lines of a family; type is "counter", "gauge" or "histogram". */
void am_prom_family(struct am_buf *b, const char *name, const char *type, const char *help);

/* Writes one sample; labels is the inside of {} (e.g. "reason=\"full\"") or NULL. */
void am_prom_sample(struct am_buf *b, const char *name, const char *labels, double value);

/* A family with a single unlabelled sample. */
void am_prom_counter(struct am_buf *b, const char *name, const char *help, uint64_t value);
void am_prom_gauge(struct am_buf *b, const char *name, const char *help, double value);

/* A fixed-bucket histogram that threads update with atomics. */
#define AM_PROM_MAX_BUCKETS 16
struct am_prom_histogram {
    const double *bounds; /* upper bounds, ascending, nbounds of them; +Inf is implied */
    int nbounds;
    _Atomic uint64_t counts[AM_PROM_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us; /* the sum in micro-units, kept integral for atomics */
};

/* Records one observation of value (in the histogram's unit). Thread-safe. */
void am_prom_observe(struct am_prom_histogram *h, double value);

/* Writes the whole histogram family. */
void am_prom_histogram_write(struct am_buf *b, const char *name, const char *help,
                             const struct am_prom_histogram *h);

#endif
