/* The alert evaluator: checks every rule on a schedule and notifies its webhook on a change. */
#ifndef AA_ALERTS_EVAL_H
#define AA_ALERTS_EVAL_H

#include "am_buf.h"

typedef struct aa_alerts aa_alerts;

struct aa_alerts_config {
    const char *database_url; /* not copied: lives as long as the evaluator */
    int interval_s;           /* time between runs; 0: this replica does not evaluate */
    int webhook_timeout_ms;   /* one delivery attempt, connection included */
    int webhook_retries;      /* attempts after the first, for failures that may pass */
    int webhook_backoff_ms;   /* wait before the first retry; doubled before each next one */
    long long history_max;    /* events kept; older delivered or failed ones are deleted */
};

/*
 * Starts the evaluator thread (nothing when interval_s is 0: *out is NULL).
 * Each run, under an advisory lock that replicas take in turns, computes
 * every rule's metric over its window with the summary's figures, moves a
 * rule to firing when its condition starts to hold and back to ok when it
 * stops, records each move as an event, then delivers pending events to
 * their webhooks outside any lock or transaction. On success *out is freed
 * by aa_alerts_stop.
 */
int aa_alerts_start(aa_alerts **out, const struct aa_alerts_config *cfg);

/* Appends the evaluator's counters in Prometheus text format; nothing for NULL. */
void aa_alerts_write_prom(aa_alerts *a, struct am_buf *b);

/* Stops the thread after its current step and frees a; accepts NULL. */
void aa_alerts_stop(aa_alerts *a);

#endif
