/* The bus receiver: decode, validate, track sequences, queue rows for the writer. */
#include "receiver.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_replay.h"
#include "rowfmt.h"
#include "stats.h"
#include "streams.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void count_malformed(const char *why)
{
    if (!strcmp(why, "oversize"))
        atomic_fetch_add(&cl_stats.frames_malformed_oversize, 1);
    else if (!strcmp(why, "bad_magic"))
        atomic_fetch_add(&cl_stats.frames_malformed_bad_magic, 1);
    else if (!strcmp(why, "not_protobuf"))
        atomic_fetch_add(&cl_stats.frames_malformed_not_protobuf, 1);
    else
        atomic_fetch_add(&cl_stats.frames_malformed_bad_header, 1);
}

/* Writes c to the spool, or counts it dropped; frees c either way. */
static void spill(cl_spool *spool, struct cl_chunk *c, const char *source_id)
{
    static uint64_t full_events;
    int rc = cl_spool_append(spool, c);
    if (rc == AM_OK) {
        atomic_fetch_add(&cl_stats.metrics_spooled, c->nrows);
    } else if (rc == AM_EFULL) {
        if (full_events++ % 1000 == 0)
            am_log_error("spool full: dropping %u metrics from %s (occurrence %llu)", c->nrows,
                         source_id, (unsigned long long)full_events);
        atomic_fetch_add(&cl_stats.dropped_spool_full, c->nrows);
    } else {
        atomic_fetch_add(&cl_stats.dropped_spool_error, c->nrows);
    }
    cl_chunk_free(c);
}

/* Counts and logs what cl_streams_see found; shared by batches and heartbeats. */
static void report_seen(const struct cl_seen *seen, const char *source_id, int64_t epoch,
                        int64_t first_seq, bool replay)
{
    if (seen->forgotten > 0)
        cl_replay_count_given_up(source_id, epoch, -1, seen->forgotten,
                                 "too many holes in the stream");
    if (seen->gap > 0) {
        atomic_fetch_add(&cl_stats.metrics_gap, (uint64_t)seen->gap);
        am_log_warn("gap in %s epoch %lld: %lld metrics missing from seq %lld", source_id,
                    (long long)epoch, (long long)seen->gap, (long long)seen->gap_from);
    } else if (seen->filled > 0) {
        atomic_fetch_add(&cl_stats.metrics_gap_filled, (uint64_t)seen->filled);
        if (replay) {
            atomic_fetch_add(&cl_stats.metrics_recovered, (uint64_t)seen->filled);
            am_log_debug("recovered in %s epoch %lld: %lld metrics resent, in the batch from seq "
                         "%lld",
                         source_id, (long long)epoch, (long long)seen->filled,
                         (long long)first_seq);
        } else {
            am_log_warn("gap filled in %s epoch %lld: %lld metrics arrived late, in the batch "
                        "from seq %lld",
                        source_id, (long long)epoch, (long long)seen->filled, (long long)first_seq);
        }
    } else if (seen->new_stream) {
        am_log_info("new stream %s epoch %lld at seq %lld", source_id, (long long)epoch,
                    (long long)first_seq);
    }
}

/*
 * A chunk with no rows that asks the writer, once what is queued before it
 * is committed, for the stream's last stored sequence number below seq
 * (see struct cl_chunk). NULL when out of memory.
 */
static struct cl_chunk *check_chunk(const char *source_id, int64_t epoch, int64_t seq)
{
    struct cl_chunk *c = calloc(1, sizeof *c);
    if (!c || !(c->check_source_id = strdup(source_id))) {
        free(c);
        return NULL;
    }
    c->check_epoch = epoch;
    c->check_seq = seq;
    return c;
}

/*
 * A stream notice: a heartbeat is handled like an empty batch at next_seq
 * (a gap at the end of a stream shows), gone ranges settle holes for good.
 */
static void handle_notice(const uint8_t *data, size_t len, struct cl_chunkq *q, cl_spool *spool,
                          cl_streams *streams)
{
    Athena__Metrics__StreamNotice *n = NULL;
    const char *why = NULL;

    if (am_notice_decode(data, len, &n, &why)) {
        count_malformed(why);
        am_log_debug("dropped a malformed stream notice of %zu bytes: %s", len, why);
        return;
    }
    atomic_fetch_add(&cl_stats.notices_received, 1);
    if (n->has_next_seq) {
        bool known = cl_streams_known(streams, n->source_id, n->epoch);
        /*
         * A stream first seen by its heartbeat needs the writer's look-up of
         * what is stored, in order behind what is queued. While the spool
         * holds rows, or the queue is full, the next heartbeat tries again.
         */
        struct cl_chunk *c = NULL;
        if (!known && n->next_seq > 0 && !(spool && cl_spool_holds(spool))) {
            c = check_chunk(n->source_id, n->epoch, n->next_seq);
            if (c && cl_chunkq_push(q, c) != AM_OK) {
                cl_chunk_free(c);
                c = NULL;
            }
        }
        if (known || c) {
            struct cl_seen seen;
            cl_streams_see(streams, n->source_id, n->epoch, n->next_seq, 0, &seen);
            atomic_store(&cl_stats.streams, cl_streams_count(streams));
            report_seen(&seen, n->source_id, n->epoch, n->next_seq, false);
        }
    }
    for (size_t i = 0; i < n->n_gone; i++) {
        int64_t from = n->gone[i]->from, to = n->gone[i]->to;
        int64_t settled = cl_streams_gone(streams, n->source_id, n->epoch, from, to);
        if (settled > 0) {
            atomic_fetch_add(&cl_stats.replay_gone, (uint64_t)settled);
            am_log_warn("lost in %s epoch %lld: %lld metrics of seq %lld to %lld, gone from the "
                        "publisher's replay ring",
                        n->source_id, (long long)n->epoch, (long long)settled, (long long)from,
                        (long long)to - 1);
        }
    }
    athena__metrics__stream_notice__free_unpacked(n, NULL);
}

static void handle_frame(const uint8_t *data, size_t len, struct cl_chunkq *q, cl_spool *spool,
                         cl_streams *streams)
{
    Athena__Metrics__MetricBatch *batch = NULL;
    const char *why = NULL;
    struct am_buf rows;
    unsigned invalid = 0;

    atomic_fetch_add(&cl_stats.frames_received, 1);
    if (am_notice_is(data, len)) {
        handle_notice(data, len, q, spool, streams);
        return;
    }
    if (am_frame_decode(data, len, &batch, &why)) {
        count_malformed(why);
        am_log_debug("dropped a malformed bus message of %zu bytes: %s", len, why);
        return;
    }
    atomic_fetch_add(&cl_stats.metrics_received, batch->n_metrics);

    struct cl_seen seen;
    cl_streams_see(streams, batch->source_id, batch->epoch, batch->first_seq, batch->n_metrics,
                   &seen);
    atomic_store(&cl_stats.streams, cl_streams_count(streams));
    report_seen(&seen, batch->source_id, batch->epoch, batch->first_seq,
                batch->has_replay && batch->replay);

    /* Rows take about 1.5 times their packed size in COPY text. */
    am_buf_init(&rows, AM_FRAME_MAX * 4);
    long nrows = cl_rowfmt_batch(&rows, batch, &invalid);
    if (invalid) {
        atomic_fetch_add(&cl_stats.metrics_invalid, invalid);
        am_log_warn("dropped %u invalid metrics from %s", invalid, batch->source_id);
    }
    if (nrows < 0) {
        atomic_fetch_add(&cl_stats.dropped_queue_full, batch->n_metrics - invalid);
        am_log_error("a batch from %s did not fit its row buffer", batch->source_id);
        goto out;
    }
    if (nrows == 0)
        goto out;

    struct cl_chunk *c = calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_add(&cl_stats.dropped_queue_full, (uint64_t)nrows);
        goto out;
    }
    c->nrows = (uint32_t)nrows;
    c->rows = am_buf_take(&rows, &c->len);
    if (seen.new_stream && batch->first_seq > 0) {
        /* Without a copy the check is skipped: the metrics are stored regardless. */
        c->check_source_id = strdup(batch->source_id);
        c->check_epoch = batch->epoch;
        c->check_seq = batch->first_seq;
    }
    /* The buffer grew by doubling; the queue's bound counts what it really holds. */
    char *exact = realloc(c->rows, c->len + 1);
    if (exact)
        c->rows = exact;
    /* While the spool holds rows, newer ones queue behind them on disk, in arrival order. */
    bool to_spool = spool && cl_spool_holds(spool);
    if (!to_spool && cl_chunkq_push(q, c) == AM_OK)
        goto out;
    if (spool) {
        spill(spool, c, batch->source_id);
    } else {
        static uint64_t full_events;
        if (full_events++ % 1000 == 0)
            am_log_error("writer queue full: dropping %ld metrics from %s (occurrence %llu)", nrows,
                         batch->source_id, (unsigned long long)full_events);
        atomic_fetch_add(&cl_stats.dropped_queue_full, (uint64_t)nrows);
        cl_chunk_free(c);
    }
out:
    am_buf_free(&rows);
    athena__metrics__metric_batch__free_unpacked(batch, NULL);
}

int cl_receiver_run(const struct cl_receiver_config *cfg, struct cl_chunkq *q,
                    volatile sig_atomic_t *stop)
{
    nng_socket sock;
    cl_streams *streams = NULL;
    int rv;
    int rc = AM_OK;

    if (cl_streams_new(&streams, cfg->max_streams))
        return AM_ENOMEM;
    if ((rv = nng_sub0_open(&sock)) != 0) {
        am_log_error("cannot open SUB socket: %s", nng_strerror(rv));
        cl_streams_free(streams);
        return AM_ENET;
    }
    nng_socket_set(sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    /*
     * NNG drops the connection of a peer sending past RECVMAXSZ before reading
     * the frame; frames between AM_FRAME_MAX and it are read and counted.
     */
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 2 * AM_FRAME_MAX);
    nng_socket_set_int(sock, NNG_OPT_RECVBUF, cfg->recvbuf);
    nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 100);
    char err[512];
    if (am_bus_listen(sock, cfg->listen_url, cfg->tls, err, sizeof err) != AM_OK) {
        am_log_error("%s", err);
        rc = AM_ENET;
        goto out;
    }
    am_log_info("receiving metrics on %s", cfg->listen_url);

    while (!*stop) {
        nng_msg *msg = NULL;
        if (cfg->spool)
            cl_spool_tick(cfg->spool);
        if (cfg->replay)
            cl_replay_tick(cfg->replay, streams);
        rv = nng_recvmsg(sock, &msg, 0);
        if (rv == NNG_ETIMEDOUT)
            continue;
        if (rv != 0) {
            am_log_warn("bus receive failed: %s", nng_strerror(rv));
            continue;
        }
        handle_frame(nng_msg_body(msg), nng_msg_len(msg), q, cfg->spool, streams);
        nng_msg_free(msg);
    }
    am_log_info("stopped receiving");
out:
    nng_close(sock);
    cl_streams_free(streams);
    return rc;
}
