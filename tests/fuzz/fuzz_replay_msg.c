/*
 * The replay protocol's messages from the network: any bytes as a stream
 * notice (what a collector reads on the bus) and as a replay request (what
 * a publisher reads on its replay socket). A refused message says why; an
 * accepted one has its bounds (source id, at most AM_REPLAY_MAX_RANGES
 * ranges, each non-empty and non-negative), and encodes again to a message
 * that decodes to the same fields.
 */
#include "am_error.h"
#include "am_replay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_ranges(Athena__Metrics__SeqRange **pb, size_t n, struct am_seq_range *out)
{
    if (n > AM_REPLAY_MAX_RANGES)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (pb[i]->from < 0 || pb[i]->from >= pb[i]->to)
            abort();
        out[i] = (struct am_seq_range){pb[i]->from, pb[i]->to};
    }
}

static void notice(const uint8_t *data, size_t size)
{
    Athena__Metrics__StreamNotice *n = NULL, *again = NULL;
    const char *why = NULL;
    struct am_seq_range r[AM_REPLAY_MAX_RANGES];
    uint8_t buf[AM_REPLAY_MSG_MAX];

    if (am_notice_decode(data, size, &n, &why) != AM_OK) {
        if (!why)
            abort();
        return;
    }
    check_ranges(n->gone, n->n_gone, r);
    size_t len = am_notice_encode(buf, sizeof buf, n->source_id, n->epoch,
                                  n->has_next_seq ? n->next_seq : -1, r, n->n_gone);
    if (len == 0 || am_notice_decode(buf, len, &again, &why) != AM_OK)
        abort();
    if (strcmp(again->source_id, n->source_id) != 0 || again->epoch != n->epoch ||
        again->n_gone != n->n_gone || again->has_next_seq != n->has_next_seq)
        abort();
    athena__metrics__stream_notice__free_unpacked(again, NULL);
    athena__metrics__stream_notice__free_unpacked(n, NULL);
}

static void request(const uint8_t *data, size_t size)
{
    Athena__Metrics__ReplayRequest *q = NULL, *again = NULL;
    const char *why = NULL;
    struct am_seq_range r[AM_REPLAY_MAX_RANGES];
    uint8_t buf[AM_REPLAY_MSG_MAX];

    if (am_request_decode(data, size, &q, &why) != AM_OK) {
        if (!why)
            abort();
        return;
    }
    if (q->n_ranges == 0 || strcmp((const char *)data, q->source_id) != 0)
        abort(); /* the topic a publisher subscribed to is the request's own source */
    check_ranges(q->ranges, q->n_ranges, r);
    size_t len = am_request_encode(buf, sizeof buf, q->source_id, q->epoch, r, q->n_ranges);
    if (len == 0 || am_request_decode(buf, len, &again, &why) != AM_OK)
        abort();
    if (strcmp(again->source_id, q->source_id) != 0 || again->epoch != q->epoch ||
        again->n_ranges != q->n_ranges)
        abort();
    athena__metrics__replay_request__free_unpacked(again, NULL);
    athena__metrics__replay_request__free_unpacked(q, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    notice(data, size);
    request(data, size);
    return 0;
}
