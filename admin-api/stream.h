/* Server-Sent Events of newly stored metrics, fed by one LISTEN connection. */
#ifndef AA_STREAM_H
#define AA_STREAM_H

#include "am_buf.h"

#include <libpq-fe.h>
#include <stddef.h>

typedef struct aa_stream aa_stream;

/* The channel every writer of llm_performance_metric notifies. */
#define AA_STREAM_CHANNEL "llm_metric"

/*
 * What a writer runs inside the transaction that inserts metrics, once,
 * before COMMIT (PostgreSQL delivers it at COMMIT, and not at all on
 * ROLLBACK). No payload: the hub reads the new rows by id. In a single
 * statement, `SELECT pg_notify('llm_metric', '')` does the same.
 */
#define AA_STREAM_NOTIFY_SQL "NOTIFY " AA_STREAM_CHANNEL

struct aa_stream_config {
    const char *database_url; /* not copied: must outlive the hub */
    int max_clients;          /* concurrent streams; past it 503 (default 256) */
    size_t client_buffer;     /* bytes queued per client; past it events are dropped (1 MiB) */
    int heartbeat_ms;         /* comment line to idle clients (15000) */
    int replay_max;           /* rows replayed on resume (1000) */
    int poll_ms;              /* polling period while LISTEN is impossible (1000) */
    int gap_ms;               /* longest wait for an id that is not visible yet (5000) */
};

/* Fills cfg with the defaults above for database_url. */
void aa_stream_config_defaults(struct aa_stream_config *cfg, const char *database_url);

/*
 * Starts the hub: a thread with one database connection that LISTENs on
 * AA_STREAM_CHANNEL and fans new rows out to the connected clients. It
 * connects in the background (and reconnects with backoff), so this fails
 * only for lack of memory or threads. On success *out owns the hub; free
 * it with aa_stream_close.
 */
int aa_stream_open_config(aa_stream **out, const struct aa_stream_config *cfg);

/* aa_stream_open_config with the default settings. */
int aa_stream_open(aa_stream **out, const char *database_url);

/*
 * Runs AA_STREAM_NOTIFY_SQL on conn, for a caller inside its insert
 * transaction. Returns 0 or AM_EDB (logged).
 */
int aa_stream_notify(PGconn *conn);

/* Appends the hub's figures (clients, events, queries) in Prometheus text format; hub may be NULL.
 */
void aa_stream_write_prom(aa_stream *hub, struct am_buf *b);

/* Stops the hub thread, ends every stream and frees the hub; accepts NULL. */
void aa_stream_close(aa_stream *hub);

#endif
