/* Writing the Prometheus text exposition format. */
#include "am_prom.h"

#include <math.h>
#include <stdatomic.h>

void am_prom_family(struct am_buf *b, const char *name, const char *type, const char *help)
{
    am_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void am_prom_sample(struct am_buf *b, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        am_buf_printf(b, "%s{%s} %.17g\n", name, labels, value);
    else
        am_buf_printf(b, "%s %.17g\n", name, value);
}

void am_prom_counter(struct am_buf *b, const char *name, const char *help, uint64_t value)
{
    am_prom_family(b, name, "counter", help);
    am_buf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

void am_prom_gauge(struct am_buf *b, const char *name, const char *help, double value)
{
    am_prom_family(b, name, "gauge", help);
    am_prom_sample(b, name, NULL, value);
}

void am_prom_observe(struct am_prom_histogram *h, double value)
{
    int i = 0;
    while (i < h->nbounds && value > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    if (value > 0)
        atomic_fetch_add_explicit(&h->sum_us, (uint64_t)llround(value * 1e6), memory_order_relaxed);
}

void am_prom_histogram_write(struct am_buf *b, const char *name, const char *help,
                             const struct am_prom_histogram *h)
{
    uint64_t cumulative = 0;
    am_prom_family(b, name, "histogram", help);
    for (int i = 0; i < h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        am_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
                      (unsigned long long)cumulative);
    }
    cumulative += atomic_load_explicit(&h->counts[h->nbounds], memory_order_relaxed);
    am_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    am_buf_printf(b, "%s_sum %.6f\n", name,
                  (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
    am_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cumulative);
}
