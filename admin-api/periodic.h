/* A background job of the admin-api: a thread with its own database connection, run every period.
 */
#ifndef AA_PERIODIC_H
#define AA_PERIODIC_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct aa_periodic aa_periodic;

/* One run of the job on a working connection: AM_OK, or an error that counts the run as failed. */
typedef int (*aa_periodic_fn)(void *arg, aa_periodic *job, PGconn *conn);

/* The job's own record of its runs, for its module's /metrics rows. */
struct aa_periodic_stats {
    uint64_t runs, failures;
    int64_t last_success_unix; /* 0 until a run succeeds */
};

/*
 * Starts a thread that connects to database_url (as application_name name,
 * with the server options opts or NULL), reconnecting when the connection
 * breaks, and calls fn every interval_s seconds, the first time at once.
 * On success *out is freed by aa_periodic_stop.
 */
int aa_periodic_start(aa_periodic **out, const char *database_url, const char *name,
                      const char *opts, int interval_s, aa_periodic_fn fn, void *arg);

/* True once aa_periodic_stop was called: a long run should end between its steps. */
bool aa_periodic_stopping(aa_periodic *job);

/* Waits ms milliseconds, or less when the job is stopped; returns false when it is stopping. */
bool aa_periodic_sleep(aa_periodic *job, int ms);

/* The runs so far: started, failed, and when the last one succeeded. */
void aa_periodic_stats(aa_periodic *job, struct aa_periodic_stats *out);

/* Stops the thread, after the run in progress, and frees job; accepts NULL. */
void aa_periodic_stop(aa_periodic *job);

#endif
