/* Encoding and bounds-checked decoding of stream notices and replay requests. */
#include "am_replay.h"
#include "am_error.h"
#include "am_metric.h"

#include <stdlib.h>
#include <string.h>

#define STR(s) ((char *)(uintptr_t)(s))

static bool range_ok(const Athena__Metrics__SeqRange *r)
{
    return r && r->from >= 0 && r->from < r->to;
}

static bool source_ok(const char *id)
{
    return id && *id && am_utf8_valid(id, AM_SOURCE_ID_MAX);
}

/* Points each of n protobuf ranges at the caller's storage; false when one is out of bounds. */
static bool fill_ranges(Athena__Metrics__SeqRange *pb, Athena__Metrics__SeqRange **ptrs,
                        const struct am_seq_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        athena__metrics__seq_range__init(&pb[i]);
        pb[i].from = r[i].from;
        pb[i].to = r[i].to;
        if (!range_ok(&pb[i]))
            return false;
        ptrs[i] = &pb[i];
    }
    return true;
}

bool am_notice_is(const uint8_t *data, size_t len)
{
    return len >= 4 && memcmp(data, AM_NOTICE_MAGIC, 4) == 0;
}

size_t am_notice_encode(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                        int64_t next_seq, const struct am_seq_range *gone, size_t ngone)
{
    Athena__Metrics__SeqRange pb_r[AM_REPLAY_MAX_RANGES];
    Athena__Metrics__SeqRange *ptrs[AM_REPLAY_MAX_RANGES];
    Athena__Metrics__StreamNotice pb = ATHENA__METRICS__STREAM_NOTICE__INIT;

    if (ngone > AM_REPLAY_MAX_RANGES || !fill_ranges(pb_r, ptrs, gone, ngone))
        return 0;
    pb.source_id = STR(source_id);
    pb.epoch = epoch;
    pb.has_next_seq = next_seq >= 0;
    pb.next_seq = next_seq;
    pb.n_gone = ngone;
    pb.gone = ptrs;
    size_t need = 4 + athena__metrics__stream_notice__get_packed_size(&pb);
    if (need > cap || need > AM_REPLAY_MSG_MAX)
        return 0;
    memcpy(out, AM_NOTICE_MAGIC, 4);
    return 4 + athena__metrics__stream_notice__pack(&pb, out + 4);
}

int am_notice_decode(const uint8_t *data, size_t len, Athena__Metrics__StreamNotice **out,
                     const char **why)
{
    if (len > AM_REPLAY_MSG_MAX) {
        *why = "oversize";
        return AM_EPROTO;
    }
    if (!am_notice_is(data, len)) {
        *why = "bad_magic";
        return AM_EPROTO;
    }
    Athena__Metrics__StreamNotice *n =
        athena__metrics__stream_notice__unpack(NULL, len - 4, data + 4);
    if (!n) {
        *why = "not_protobuf";
        return AM_EPROTO;
    }
    bool ok = source_ok(n->source_id) && n->epoch >= 0 && (!n->has_next_seq || n->next_seq >= 0) &&
              n->n_gone <= AM_REPLAY_MAX_RANGES;
    for (size_t i = 0; ok && i < n->n_gone; i++)
        ok = range_ok(n->gone[i]);
    if (!ok) {
        athena__metrics__stream_notice__free_unpacked(n, NULL);
        *why = "bad_header";
        return AM_EPROTO;
    }
    *out = n;
    return AM_OK;
}

size_t am_request_encode(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                         const struct am_seq_range *ranges, size_t n)
{
    Athena__Metrics__SeqRange pb_r[AM_REPLAY_MAX_RANGES];
    Athena__Metrics__SeqRange *ptrs[AM_REPLAY_MAX_RANGES];
    Athena__Metrics__ReplayRequest pb = ATHENA__METRICS__REPLAY_REQUEST__INIT;

    if (!source_ok(source_id) || n == 0 || n > AM_REPLAY_MAX_RANGES ||
        !fill_ranges(pb_r, ptrs, ranges, n))
        return 0;
    pb.source_id = STR(source_id);
    pb.epoch = epoch;
    pb.n_ranges = n;
    pb.ranges = ptrs;
    size_t topic = strlen(source_id) + 1;
    size_t need = topic + 4 + athena__metrics__replay_request__get_packed_size(&pb);
    if (need > cap || need > AM_REPLAY_MSG_MAX)
        return 0;
    memcpy(out, source_id, topic);
    memcpy(out + topic, AM_REQUEST_MAGIC, 4);
    return topic + 4 + athena__metrics__replay_request__pack(&pb, out + topic + 4);
}

int am_request_decode(const uint8_t *data, size_t len, Athena__Metrics__ReplayRequest **out,
                      const char **why)
{
    if (len > AM_REPLAY_MSG_MAX) {
        *why = "oversize";
        return AM_EPROTO;
    }
    const uint8_t *nul =
        memchr(data, '\0', len < AM_SOURCE_ID_MAX + 1 ? len : AM_SOURCE_ID_MAX + 1);
    size_t topic = nul ? (size_t)(nul - data) + 1 : 0;
    if (!nul || len - topic < 4 || memcmp(data + topic, AM_REQUEST_MAGIC, 4) != 0) {
        *why = "bad_magic";
        return AM_EPROTO;
    }
    Athena__Metrics__ReplayRequest *r =
        athena__metrics__replay_request__unpack(NULL, len - topic - 4, data + topic + 4);
    if (!r) {
        *why = "not_protobuf";
        return AM_EPROTO;
    }
    bool ok = source_ok(r->source_id) && strcmp(r->source_id, (const char *)data) == 0 &&
              r->epoch >= 0 && r->n_ranges > 0 && r->n_ranges <= AM_REPLAY_MAX_RANGES;
    for (size_t i = 0; ok && i < r->n_ranges; i++)
        ok = range_ok(r->ranges[i]);
    if (!ok) {
        athena__metrics__replay_request__free_unpacked(r, NULL);
        *why = "bad_header";
        return AM_EPROTO;
    }
    *out = r;
    return AM_OK;
}
