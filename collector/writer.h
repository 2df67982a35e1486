/* The database writer: takes row chunks off the queue and stores them with COPY. */
#ifndef CL_WRITER_H
#define CL_WRITER_H

#include "chunkq.h"
#include "replay.h"
#include "spool.h"

#include <libpq-fe.h>

typedef struct cl_writer cl_writer;

struct cl_writer_config {
    const char *database_url;
    size_t batch_rows;       /* rows per transaction at most */
    int backoff_max_ms;      /* reconnect backoff cap */
    int shutdown_timeout_ms; /* how long stop keeps trying to flush */
    cl_spool *spool;         /* replayed when the queue is empty; NULL: no spool */
    cl_replay *replay;       /* told of the gaps found below a stream's first message */
};

/*
 * Starts the writer thread on q. It writes what q holds first, then the
 * spool's segments oldest first, deleting each after its COMMIT.
 * *out is freed by cl_writer_stop.
 */
int cl_writer_start(cl_writer **out, const struct cl_writer_config *cfg, struct cl_chunkq *q);

/*
 * Stops the writer after it has written everything queued. When the
 * database cannot be reached, what is left goes to the spool (at once, for
 * the next start) or, without a spool, is counted as dropped after
 * shutdown_timeout_ms. What the spool already holds stays there. Close the
 * queue and stop the receiver first. Frees w; accepts NULL.
 */
void cl_writer_stop(cl_writer *w);

/*
 * Connects to database_url and applies the migrations. Returns 0, or
 * AM_EDB with the reason logged. *out is freed with PQfinish.
 */
int cl_writer_connect(const char *database_url, PGconn **out);

#endif
