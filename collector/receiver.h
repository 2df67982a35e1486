/* The bus receiver: a SUB socket whose frames become row chunks on the writer's queue. */
#ifndef CL_RECEIVER_H
#define CL_RECEIVER_H

#include "am_bus_tls.h"

#include "chunkq.h"
#include "replay.h"
#include "spool.h"

#include <signal.h>

struct cl_receiver_config {
    const char *listen_url;       /* METRICS_BUS_LISTEN */
    const struct am_bus_tls *tls; /* for a tls+tcp:// listen URL (METRICS_BUS_TLS_*) */
    int recvbuf;                  /* NNG_OPT_RECVBUF, messages */
    size_t max_streams;           /* publisher streams tracked for gaps */
    cl_spool *spool;              /* where chunks go when q is full; NULL: they are dropped */
    cl_replay *replay;            /* asks publishers for what is missing */
};

/*
 * Receives until *stop becomes non-zero, handing chunks to q; never waits on
 * the database. When q is full, chunks go to the spool, and keep going there
 * while it holds anything, so that rows reach the database in the order
 * they arrived. Holes in a stream are asked for again through replay
 * (replay.h); stream notices (heartbeats, gone ranges) settle them. Returns
 * 0, or AM_ENET when the socket cannot listen.
 */
int cl_receiver_run(const struct cl_receiver_config *cfg, struct cl_chunkq *q,
                    volatile sig_atomic_t *stop);

#endif
