/* The database writer: takes row chunks off the queue and stores them with COPY. */
#ifndef CL_WRITER_H
#define CL_WRITER_H

#include "chunkq.h"

#include <libpq-fe.h>

typedef struct cl_writer cl_writer;

struct cl_writer_config {
    const char *database_url;
    size_t batch_rows;       /* rows per transaction at most */
    int backoff_max_ms;      /* reconnect backoff cap */
    int shutdown_timeout_ms; /* how long stop keeps trying to flush */
};

/* Starts the writer thread on q. *out is freed by cl_writer_stop. */
int cl_writer_start(cl_writer **out, const struct cl_writer_config *cfg, struct cl_chunkq *q);

/*
 * Stops the writer after it has written everything queued, or after
 * shutdown_timeout_ms, counting what was left as dropped. Close the queue
 * first. Frees w; accepts NULL.
 */
void cl_writer_stop(cl_writer *w);

/*
 * Connects to database_url and applies the migrations. Returns 0, or
 * AM_EDB with the reason logged. *out is freed with PQfinish.
 */
int cl_writer_connect(const char *database_url, PGconn **out);

#endif
