/* The collector's counters and their Prometheus rendering. */
#include "stats.h"

#include <stdio.h>

static const double batch_rows_bounds[] = {1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000};
static const double insert_seconds_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,   1,    2.5,   5,    10};

struct cl_stats cl_stats = {
    .batch_rows = {.bounds = batch_rows_bounds,
                   .nbounds = sizeof batch_rows_bounds / sizeof batch_rows_bounds[0]},
    .insert_seconds = {.bounds = insert_seconds_bounds,
                       .nbounds = sizeof insert_seconds_bounds / sizeof insert_seconds_bounds[0]},
};

#define LOAD(x) ((double)atomic_load_explicit(&cl_stats.x, memory_order_relaxed))

void cl_stats_write(struct am_buf *b)
{
    am_prom_family(b, "athena_collector_frames_received_total", "counter",
                   "Bus messages received, well-formed or not.");
    am_prom_sample(b, "athena_collector_frames_received_total", NULL, LOAD(frames_received));

    am_prom_family(b, "athena_collector_frames_malformed_total", "counter",
                   "Bus messages dropped as malformed, by reason.");
    am_prom_sample(b, "athena_collector_frames_malformed_total", "reason=\"oversize\"",
                   LOAD(frames_malformed_oversize));
    am_prom_sample(b, "athena_collector_frames_malformed_total", "reason=\"bad_magic\"",
                   LOAD(frames_malformed_bad_magic));
    am_prom_sample(b, "athena_collector_frames_malformed_total", "reason=\"not_protobuf\"",
                   LOAD(frames_malformed_not_protobuf));
    am_prom_sample(b, "athena_collector_frames_malformed_total", "reason=\"bad_header\"",
                   LOAD(frames_malformed_bad_header));

    am_prom_family(b, "athena_collector_metrics_received_total", "counter",
                   "Metrics carried by well-formed bus messages.");
    am_prom_sample(b, "athena_collector_metrics_received_total", NULL, LOAD(metrics_received));
    am_prom_family(b, "athena_collector_metrics_inserted_total", "counter",
                   "Metrics committed to PostgreSQL by this collector.");
    am_prom_sample(b, "athena_collector_metrics_inserted_total", NULL, LOAD(metrics_inserted));
    am_prom_family(b, "athena_collector_metrics_duplicate_total", "counter",
                   "Metrics already stored (redelivered, or stored by another collector).");
    am_prom_sample(b, "athena_collector_metrics_duplicate_total", NULL, LOAD(metrics_duplicate));
    am_prom_family(b, "athena_collector_metrics_gap_total", "counter",
                   "Metrics missing from a publisher's sequence (never received).");
    am_prom_sample(b, "athena_collector_metrics_gap_total", NULL, LOAD(metrics_gap));
    am_prom_family(b, "athena_collector_metrics_gap_filled_total", "counter",
                   "Metrics counted in a gap that arrived later after all (out of order, or "
                   "resent on request); missing = gap_total - gap_filled_total.");
    am_prom_sample(b, "athena_collector_metrics_gap_filled_total", NULL, LOAD(metrics_gap_filled));
    am_prom_family(b, "athena_collector_metrics_recovered_total", "counter",
                   "Missing metrics that a publisher resent from its replay ring on request "
                   "(also in gap_filled_total).");
    am_prom_sample(b, "athena_collector_metrics_recovered_total", NULL, LOAD(metrics_recovered));
    am_prom_family(b, "athena_collector_replay_requests_total", "counter",
                   "Replay requests sent to publishers for missing metrics.");
    am_prom_sample(b, "athena_collector_replay_requests_total", NULL, LOAD(replay_requests));
    am_prom_family(b, "athena_collector_metrics_gone_total", "counter",
                   "Missing metrics lost for good: their publisher no longer holds them.");
    am_prom_sample(b, "athena_collector_metrics_gone_total", NULL, LOAD(replay_gone));
    am_prom_family(b, "athena_collector_metrics_given_up_total", "counter",
                   "Missing metrics lost for good: unanswered for COLLECTOR_REPLAY_GIVE_UP_S, or "
                   "past the holes tracked per stream.");
    am_prom_sample(b, "athena_collector_metrics_given_up_total", NULL, LOAD(replay_given_up));
    am_prom_gauge(b, "athena_collector_metrics_gap_pending",
                  "Missing metrics still asked for: gap - gap_filled - gone - given_up.",
                  LOAD(gap_pending));
    am_prom_family(b, "athena_collector_stream_notices_total", "counter",
                   "Stream notices (heartbeats, gone ranges) received from publishers.");
    am_prom_sample(b, "athena_collector_stream_notices_total", NULL, LOAD(notices_received));

    am_prom_family(b, "athena_collector_metrics_dropped_total", "counter",
                   "Metrics received but not stored, by reason.");
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"invalid\"",
                   LOAD(metrics_invalid));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"queue_full\"",
                   LOAD(dropped_queue_full));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"rejected\"",
                   LOAD(dropped_rejected));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"shutdown\"",
                   LOAD(dropped_shutdown));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"spool_full\"",
                   LOAD(dropped_spool_full));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"spool_error\"",
                   LOAD(dropped_spool_error));
    am_prom_sample(b, "athena_collector_metrics_dropped_total", "reason=\"spool_corrupt\"",
                   LOAD(dropped_spool_corrupt));

    am_prom_family(b, "athena_collector_metrics_spooled_total", "counter",
                   "Metrics written to the disk spool while the database could not take them.");
    am_prom_sample(b, "athena_collector_metrics_spooled_total", NULL, LOAD(metrics_spooled));
    am_prom_family(b, "athena_collector_metrics_replayed_total", "counter",
                   "Spooled metrics committed to PostgreSQL (stored or found already stored).");
    am_prom_sample(b, "athena_collector_metrics_replayed_total", NULL, LOAD(metrics_replayed));
    am_prom_family(b, "athena_collector_spool_torn_segments_total", "counter",
                   "Spool segments found cut short by a crash and truncated at start.");
    am_prom_sample(b, "athena_collector_spool_torn_segments_total", NULL, LOAD(spool_torn));
    am_prom_gauge(b, "athena_collector_spool_rows", "Metrics in the disk spool.", LOAD(spool_rows));
    am_prom_gauge(b, "athena_collector_spool_bytes", "Bytes in the disk spool.", LOAD(spool_bytes));
    am_prom_gauge(b, "athena_collector_spool_segments", "Files in the disk spool.",
                  LOAD(spool_segments));

    am_prom_gauge(b, "athena_collector_queue_rows", "Metrics waiting for the database.",
                  LOAD(queue_rows));
    am_prom_gauge(b, "athena_collector_queue_bytes", "Bytes waiting for the database.",
                  LOAD(queue_bytes));
    am_prom_gauge(b, "athena_collector_streams", "Publisher streams tracked for gaps.",
                  LOAD(streams));
    am_prom_gauge(b, "athena_collector_db_up", "1 while the database connection works.",
                  LOAD(db_up));
    am_prom_family(b, "athena_collector_db_errors_total", "counter",
                   "Failed database transactions.");
    am_prom_sample(b, "athena_collector_db_errors_total", NULL, LOAD(db_errors));
    am_prom_family(b, "athena_collector_db_reconnects_total", "counter",
                   "Database connections made after the first.");
    am_prom_sample(b, "athena_collector_db_reconnects_total", NULL, LOAD(db_reconnects));

    am_prom_histogram_write(b, "athena_collector_batch_rows", "Rows per insert transaction.",
                            &cl_stats.batch_rows);
    am_prom_histogram_write(b, "athena_collector_insert_seconds",
                            "Time to copy and commit one insert transaction.",
                            &cl_stats.insert_seconds);
}
