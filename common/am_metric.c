/* The metric of one LLM call, its validation and its bus encoding. */
#include "am_metric.h"
#include "am_error.h"

#include <math.h>
#include <string.h>

bool am_utf8_valid_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (n < len) {
        unsigned char c = p[n];
        size_t extra;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            n++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (extra >= len - n)
            return false; /* cut short */
        for (size_t i = 1; i <= extra; i++) {
            if ((p[n + i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[n + i] & 0x3F);
        }
        /* Overlong forms, surrogates and values past Unicode are not text. */
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
            (extra == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        n += extra + 1;
    }
    return true;
}

bool am_utf8_valid(const char *s, size_t max)
{
    size_t n = max == SIZE_MAX ? strlen(s) : strnlen(s, max + 1);
    return n <= max && am_utf8_valid_len(s, n);
}

/* Timestamps must fall between 2000-01-01 and 2100-01-01. */
#define TS_MIN_US 946684800000000LL
#define TS_MAX_US 4102444800000000LL

static int check_text(const char *s, bool required, const char *missing, const char *bad,
                      const char **why)
{
    if (!s || !*s) {
        if (required) {
            *why = missing;
            return AM_EINVAL;
        }
        return AM_OK;
    }
    if (!am_utf8_valid(s, AM_METRIC_MAX_STRING)) {
        *why = bad;
        return AM_EINVAL;
    }
    return AM_OK;
}

static int check_number(double v, const char *bad, const char **why)
{
    if (!isfinite(v) || v < 0) {
        *why = bad;
        return AM_EINVAL;
    }
    return AM_OK;
}

/* Both representations are checked by one function over the same fields. */
struct fields {
    int64_t timestamp_us;
    const char *text[12];
    double latency, tps, ttft;
    bool has_ttft;
    int64_t tokens, prompt_tokens;
};

static const char *const text_names[12] = {
    "model", "backend", "error_type", "request_id", "session_id", "user_id",
    "zone",  "intent",  "device_id",  "source",     "stage",      NULL,
};

static int check_fields(const struct fields *f, const char **why)
{
    static const char *const bad_text[] = {
        "model is not UTF-8 text of at most 1024 bytes",
        "backend is not UTF-8 text of at most 1024 bytes",
        "error_type is not UTF-8 text of at most 1024 bytes",
        "request_id is not UTF-8 text of at most 1024 bytes",
        "session_id is not UTF-8 text of at most 1024 bytes",
        "user_id is not UTF-8 text of at most 1024 bytes",
        "zone is not UTF-8 text of at most 1024 bytes",
        "intent is not UTF-8 text of at most 1024 bytes",
        "device_id is not UTF-8 text of at most 1024 bytes",
        "source is not UTF-8 text of at most 1024 bytes",
        "stage is not UTF-8 text of at most 1024 bytes",
    };
    if (f->timestamp_us < TS_MIN_US || f->timestamp_us > TS_MAX_US) {
        *why = "timestamp is outside 2000-01-01 .. 2100-01-01";
        return AM_EINVAL;
    }
    if (check_text(f->text[0], true, "model is missing", bad_text[0], why) ||
        check_text(f->text[1], true, "backend is missing", bad_text[1], why))
        return AM_EINVAL;
    for (int i = 2; text_names[i]; i++) {
        if (check_text(f->text[i], false, NULL, bad_text[i], why))
            return AM_EINVAL;
    }
    if (check_number(f->latency, "latency_seconds is not a finite number >= 0", why) ||
        check_number(f->tps, "tokens_per_second is not a finite number >= 0", why) ||
        (f->has_ttft && check_number(f->ttft, "ttft_seconds is not a finite number >= 0", why)))
        return AM_EINVAL;
    if (f->tokens < 0 || f->prompt_tokens < 0) {
        *why = "token counts must be >= 0";
        return AM_EINVAL;
    }
    return AM_OK;
}

int am_metric_validate_pb(const Athena__Metrics__Metric *m, const char **why)
{
    struct fields f = {
        .timestamp_us = m->timestamp_us,
        .text = {m->model, m->backend, m->error_type, m->request_id, m->session_id, m->user_id,
                 m->zone, m->intent, m->device_id, m->source, m->stage, NULL},
        .latency = m->latency_seconds,
        .tps = m->has_tokens_per_second ? m->tokens_per_second : 0,
        .ttft = m->ttft_seconds,
        .has_ttft = m->has_ttft_seconds,
        .tokens = m->has_tokens ? m->tokens : 0,
        .prompt_tokens = m->has_prompt_tokens ? m->prompt_tokens : 0,
    };
    return check_fields(&f, why);
}

int am_metric_validate(const struct am_metric *m, const char **why)
{
    struct fields f = {
        .timestamp_us = m->timestamp_us,
        .text = {m->model, m->backend, m->error_type, m->request_id, m->session_id, m->user_id,
                 m->zone, m->intent, m->device_id, m->source, m->stage, NULL},
        .latency = m->latency_seconds,
        .tps = m->tokens_per_second,
        .ttft = m->ttft_seconds,
        .has_ttft = m->has_ttft,
        .tokens = m->tokens,
        .prompt_tokens = m->has_prompt_tokens ? m->prompt_tokens : 0,
    };
    return check_fields(&f, why);
}

/* protobuf-c wants char * for strings it only reads when packing. */
#define STR(s) ((char *)(uintptr_t)(s))

int am_metric_pack(const struct am_metric *m, uint8_t *out, size_t cap, size_t *len)
{
    Athena__Metrics__Metric pb = ATHENA__METRICS__METRIC__INIT;
    pb.timestamp_us = m->timestamp_us;
    pb.model = STR(m->model);
    pb.backend = STR(m->backend);
    pb.latency_seconds = m->latency_seconds;
    pb.has_tokens = 1;
    pb.tokens = m->tokens;
    pb.has_tokens_per_second = 1;
    pb.tokens_per_second = m->tokens_per_second;
    pb.has_prompt_tokens = m->has_prompt_tokens;
    pb.prompt_tokens = m->prompt_tokens;
    pb.has_ttft_seconds = m->has_ttft;
    pb.ttft_seconds = m->ttft_seconds;
    pb.has_error = m->error;
    pb.error = m->error;
    pb.error_type = STR(m->error_type);
    pb.request_id = STR(m->request_id);
    pb.session_id = STR(m->session_id);
    pb.user_id = STR(m->user_id);
    pb.zone = STR(m->zone);
    pb.intent = STR(m->intent);
    pb.device_id = STR(m->device_id);
    pb.source = STR(m->source);
    pb.stage = STR(m->stage);

    size_t need = athena__metrics__metric__get_packed_size(&pb);
    if (need > cap)
        return AM_ERANGE;
    *len = athena__metrics__metric__pack(&pb, out);
    return AM_OK;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t am_frame_header(uint8_t *out, size_t cap, const char *source_id, int64_t epoch,
                       int64_t first_seq, bool replay)
{
    Athena__Metrics__MetricBatch pb = ATHENA__METRICS__METRIC_BATCH__INIT;
    pb.source_id = STR(source_id);
    pb.epoch = epoch;
    pb.first_seq = first_seq;
    pb.has_replay = replay;
    pb.replay = replay;
    size_t need = 4 + athena__metrics__metric_batch__get_packed_size(&pb);
    if (need > cap)
        return 0;
    memcpy(out, AM_FRAME_MAGIC, 4);
    return 4 + athena__metrics__metric_batch__pack(&pb, out + 4);
}

size_t am_frame_metric(uint8_t *out, size_t cap, const uint8_t *packed, size_t len)
{
    /* Field 4, wire type 2 (length-delimited): the repeated Metric. */
    if (cap < 1 + 10 + len)
        return 0;
    size_t n = 0;
    out[n++] = (4 << 3) | 2;
    n += put_varint(out + n, len);
    memcpy(out + n, packed, len);
    return n + len;
}

int am_frame_decode(const uint8_t *data, size_t len, Athena__Metrics__MetricBatch **out,
                    const char **why)
{
    if (len > AM_FRAME_MAX) {
        *why = "oversize";
        return AM_EPROTO;
    }
    if (len < 4 || memcmp(data, AM_FRAME_MAGIC, 4) != 0) {
        *why = "bad_magic";
        return AM_EPROTO;
    }
    Athena__Metrics__MetricBatch *b =
        athena__metrics__metric_batch__unpack(NULL, len - 4, data + 4);
    if (!b) {
        *why = "not_protobuf";
        return AM_EPROTO;
    }
    if (!b->source_id || !*b->source_id || !am_utf8_valid(b->source_id, 256) || b->epoch < 0 ||
        b->first_seq < 0 || b->first_seq > INT64_MAX - (int64_t)b->n_metrics) {
        athena__metrics__metric_batch__free_unpacked(b, NULL);
        *why = "bad_header";
        return AM_EPROTO;
    }
    *out = b;
    return AM_OK;
}
