/* The collector's counters, shared by its threads and rendered on /metrics. */
#ifndef CL_STATS_H
#define CL_STATS_H

#include "am_buf.h"
#include "am_prom.h"

#include <stdatomic.h>
#include <stdint.h>

struct cl_stats {
    _Atomic uint64_t frames_received;
    _Atomic uint64_t frames_malformed_oversize;
    _Atomic uint64_t frames_malformed_bad_magic;
    _Atomic uint64_t frames_malformed_not_protobuf;
    _Atomic uint64_t frames_malformed_bad_header;
    _Atomic uint64_t metrics_received;
    _Atomic uint64_t metrics_invalid;
    _Atomic uint64_t metrics_inserted;
    _Atomic uint64_t metrics_duplicate;
    _Atomic uint64_t metrics_gap;
    _Atomic uint64_t metrics_gap_filled;
    _Atomic uint64_t metrics_recovered;
    _Atomic uint64_t replay_requests;
    _Atomic uint64_t replay_gone;
    _Atomic uint64_t replay_given_up;
    _Atomic uint64_t gap_pending;
    _Atomic uint64_t notices_received;
    _Atomic uint64_t dropped_queue_full;
    _Atomic uint64_t dropped_rejected;
    _Atomic uint64_t dropped_shutdown;
    _Atomic uint64_t dropped_spool_full;
    _Atomic uint64_t dropped_spool_error;
    _Atomic uint64_t dropped_spool_corrupt;
    _Atomic uint64_t metrics_spooled;
    _Atomic uint64_t metrics_replayed;
    _Atomic uint64_t spool_torn;
    _Atomic uint64_t spool_bytes;
    _Atomic uint64_t spool_rows;
    _Atomic uint64_t spool_segments;
    _Atomic uint64_t db_errors;
    _Atomic uint64_t db_reconnects;
    _Atomic int db_up;
    _Atomic uint64_t queue_rows;
    _Atomic uint64_t queue_bytes;
    _Atomic uint64_t streams;
    struct am_prom_histogram batch_rows;
    struct am_prom_histogram insert_seconds;
};

extern struct cl_stats cl_stats;

/* Appends every collector figure in Prometheus text format. */
void cl_stats_write(struct am_buf *b);

#endif
