/* am-bus-inject: a test publisher that sends hand-made bus messages (repeats, garbage). */
#include "am_clock.h"
#include "am_config.h"
#include "am_log.h"
#include "am_metric.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *url;
static const char *source_id;
static long long batches;
static long long batch_size;
static long long repeat;
static long long garbage;
static long long first_seq;
static long long epoch;
static long long seed;
static long long wait_ms;
static long long rate;
static bool hold;

static const struct am_setting settings[] = {
    {"url", NULL, AM_SET_STRING, "tcp://127.0.0.1:5556", 0, 0, "bus URL to dial", &url},
    {"source-id", NULL, AM_SET_STRING, "inject", 0, 0, "stream identity", &source_id},
    {"epoch", NULL, AM_SET_INT, "1", 0, 1LL << 62, "stream epoch", &epoch},
    {"first-seq", NULL, AM_SET_INT, "0", 0, 1LL << 62, "sequence number of the first metric",
     &first_seq},
    {"batches", NULL, AM_SET_INT, "10", 0, 10000000, "valid batches to send", &batches},
    {"batch-size", NULL, AM_SET_INT, "100", 1, 4096, "metrics per valid batch", &batch_size},
    {"repeat", NULL, AM_SET_INT, "1", 1, 100, "times each valid batch is sent", &repeat},
    {"garbage", NULL, AM_SET_INT, "0", 0, 1000000, "malformed frames sent after each valid batch",
     &garbage},
    {"seed", NULL, AM_SET_INT, "1", 0, 1LL << 62, "seed of the garbage", &seed},
    {"wait-ms", NULL, AM_SET_INT, "10000", 0, 600000,
     "how long to wait for a subscriber before sending", &wait_ms},
    {"rate", NULL, AM_SET_INT, "0", 0, 100000000,
     "frames per second at most (0: as fast as possible); keeps a flood within what a "
     "subscriber's buffers take",
     &rate},
    {"hold", NULL, AM_SET_ACTION, NULL, 0, 0,
     "after sending, keep the socket open until SIGTERM (the test then checks what arrived)",
     &hold},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int subscribers;
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    pthread_mutex_lock(&mu);
    subscribers += ev == NNG_PIPE_EV_ADD_POST ? 1 : -1;
    pthread_mutex_unlock(&mu);
}

static int64_t pace_start_ns;
static long long paced;

/* Waits until the next frame is due at --rate frames per second. */
static void pace(void)
{
    if (rate <= 0)
        return;
    int64_t due = pace_start_ns + (int64_t)((double)paced++ * 1e9 / (double)rate);
    int64_t ahead = due - am_clock_mono_ns();
    if (ahead > 1000000) {
        struct timespec ts = {ahead / 1000000000, ahead % 1000000000};
        nanosleep(&ts, NULL);
    }
}

static int send_bytes(nng_socket s, const uint8_t *data, size_t len)
{
    pace();
    int rv = nng_send(s, (void *)(uintptr_t)data, len, 0);
    if (rv != 0)
        fprintf(stderr, "am-bus-inject: send failed: %s\n", nng_strerror(rv));
    return rv;
}

/* Builds the valid frame of batch b into out; returns its length and the last metric's size. */
static size_t build_batch(uint8_t *out, size_t cap, long long b, size_t *last_len)
{
    char rid[64];
    int64_t seq0 = first_seq + b * batch_size;
    size_t len = am_frame_header(out, cap, source_id, epoch, seq0, false);
    for (long long i = 0; i < batch_size; i++) {
        uint8_t packed[AM_METRIC_MAX_PACKED];
        size_t plen = 0;
        snprintf(rid, sizeof rid, "inject-%lld", (long long)(seq0 + i));
        struct am_metric m = {
            .timestamp_us = am_clock_now_us(),
            .model = "phi3:mini",
            .backend = "ollama",
            .latency_seconds = 0.5 + (double)i / 1000,
            .tokens = (int32_t)(10 + i),
            .tokens_per_second = 40.0,
            .request_id = rid,
            .source = "gateway",
        };
        am_metric_pack(&m, packed, sizeof packed, &plen);
        len += am_frame_metric(out + len, cap - len, packed, plen);
        *last_len = plen;
    }
    return len;
}

/* A frame the collector must reject; checked with the collector's own decoder. */
static size_t build_garbage(uint8_t *out, const uint8_t *valid, size_t valid_len, size_t last_len)
{
    for (;;) {
        size_t len;
        switch (rng() % 4) {
        case 0: /* random bytes */
            len = 1 + rng() % 512;
            for (size_t i = 0; i < len; i++)
                out[i] = (uint8_t)rng();
            break;
        case 1: /* the right magic, then random bytes */
            len = 5 + rng() % 512;
            memcpy(out, AM_FRAME_MAGIC, 4);
            for (size_t i = 4; i < len; i++)
                out[i] = (uint8_t)rng();
            break;
        case 2: /* a valid message cut inside its last metric */
            len = valid_len - 1 - rng() % (last_len > 1 ? last_len - 1 : 1);
            memcpy(out, valid, len);
            break;
        default: /* a valid message under the wrong magic */
            len = valid_len;
            memcpy(out, valid, len);
            out[0] = 'X';
            break;
        }
        Athena__Metrics__MetricBatch *b = NULL;
        const char *why = NULL;
        if (am_frame_decode(out, len, &b, &why) != 0)
            return len;
        athena__metrics__metric_batch__free_unpacked(b, NULL);
    }
}

int main(int argc, char **argv)
{
    nng_socket s;
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "am-bus-inject",
                   "Sends hand-made bus messages for tests: repeated batches and garbage.");
    rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 7;

    if (nng_pub0_open(&s) != 0)
        return 1;
    nng_socket_set_int(s, NNG_OPT_SENDBUF, 8192);
    nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, on_pipe, NULL);
    nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, on_pipe, NULL);
    if (nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK) != 0) {
        fprintf(stderr, "am-bus-inject: cannot dial %s\n", url);
        return 2;
    }
    int64_t give_up = am_clock_mono_ns() + wait_ms * 1000000;
    for (;;) {
        pthread_mutex_lock(&mu);
        int n = subscribers;
        pthread_mutex_unlock(&mu);
        if (n > 0)
            break;
        if (am_clock_mono_ns() > give_up) {
            fprintf(stderr, "am-bus-inject: no subscriber on %s\n", url);
            return 1;
        }
        nng_msleep(10);
    }

    pace_start_ns = am_clock_mono_ns();
    size_t cap = 4 + 64 + (size_t)batch_size * 200;
    uint8_t *valid = malloc(cap);
    uint8_t *bad = malloc(cap + 1024);
    long long sent_valid = 0, sent_garbage = 0;
    for (long long b = 0; b < batches; b++) {
        size_t last_len = 0;
        size_t len = build_batch(valid, cap, b, &last_len);
        for (long long r = 0; r < repeat; r++) {
            if (send_bytes(s, valid, len) == 0)
                sent_valid++;
        }
        for (long long g = 0; g < garbage; g++) {
            size_t blen = build_garbage(bad, valid, len, last_len);
            if (send_bytes(s, bad, blen) == 0)
                sent_garbage++;
        }
    }
    printf("valid_frames=%lld valid_metrics=%lld garbage_frames=%lld\n", sent_valid,
           batches * batch_size, sent_garbage);
    fflush(stdout);
    /*
     * NNG drops what its pipes still queue when the socket closes, so with
     * --hold the socket stays open until the test has seen everything arrive.
     */
    if (hold) {
        sigset_t set;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigwait(&set, &sig);
    }
    nng_close(s);
    free(valid);
    free(bad);
    return 0;
}
