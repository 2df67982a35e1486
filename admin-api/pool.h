/* A fixed-size pool of PostgreSQL connections shared by the HTTP worker threads. */
#ifndef AA_POOL_H
#define AA_POOL_H

#include "am_buf.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct aa_pool aa_pool;

/* Creates a pool of at most size connections to url, opened on first use. */
int aa_pool_open(aa_pool **out, const char *url, int size);

/*
 * Borrows a connection, waiting up to timeout_ms for one to be free.
 * Returns NULL when none frees up in time or the database cannot be reached
 * (the reason is logged). Give it back with aa_pool_put.
 */
PGconn *aa_pool_get(aa_pool *pool, int timeout_ms);

/* Returns conn; a connection that is no longer OK is closed and reopened later. */
void aa_pool_put(aa_pool *pool, PGconn *conn);

/* True when a connection can be had and answers (for /ready). */
bool aa_pool_ping(aa_pool *pool);

/* Appends the pool's gauges and counters in Prometheus text format. */
void aa_pool_write_prom(aa_pool *pool, struct am_buf *b);

/* Closes every connection and frees pool; accepts NULL. */
void aa_pool_close(aa_pool *pool);

#endif
