/* Unit tests of the metric publisher: its bounds, its counters, and what reaches a subscriber. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_publisher.h"
#include "am_replay.h"
#include "fixtures.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/pair0/pair.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/supplemental/util/platform.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000 /* upper bound on any wait for the network */

/*
 * What a test opened, closed by teardown even when an assertion fails
 * half-way (cmocka jumps out of the test body).
 */
struct fixture {
    am_publisher *pub;
    nng_socket sub;
    bool sub_open;
    int reserved_fd; /* a bound, never listening TCP socket holding a port */
    int port;
    char url[64];
    nng_socket req; /* a collector's replay request socket (PUB) */
    bool req_open;
    char req_url[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->reserved_fd = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    am_publisher_close(f->pub, NULL);
    if (f->sub_open)
        nng_close(f->sub);
    if (f->req_open)
        nng_close(f->req);
    if (f->reserved_fd >= 0)
        close(f->reserved_fd);
    free(f);
    return 0;
}

/*
 * Takes a free port and keeps it: the socket is bound but never listens, so
 * a dial to f->url is refused until release_port. No other process can
 * start listening there meanwhile.
 */
static void reserve_port(struct fixture *f)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t salen = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->reserved_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->reserved_fd >= 0);
    assert_int_equal(bind(f->reserved_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(f->reserved_fd, (struct sockaddr *)&sa, &salen), 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", f->port);
}

static void release_port(struct fixture *f)
{
    close(f->reserved_fd);
    f->reserved_fd = -1;
}

/* Opens the SUB socket, subscribed to everything, listening on port (0: any free port). */
static void start_sub(struct fixture *f, int port)
{
    nng_listener l;
    char url[64];
    int bound = 0;
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(nng_sub0_open(&f->sub), 0);
    f->sub_open = true;
    assert_int_equal(nng_socket_set(f->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
    assert_int_equal(nng_socket_set_ms(f->sub, NNG_OPT_RECVTIMEO, WAIT_MS), 0);
    /* Room for every frame a test sends, so none is dropped while the test is not reading. */
    assert_int_equal(nng_socket_set_int(f->sub, NNG_OPT_RECVBUF, 4096), 0);
    assert_int_equal(nng_socket_set_size(f->sub, NNG_OPT_RECVMAXSZ, AM_FRAME_MAX), 0);
    assert_int_equal(nng_listen(f->sub, url, &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &bound), 0);
    assert_true(port == 0 || bound == port);
    f->port = bound;
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", bound);
}

static void open_publisher(struct fixture *f, struct am_publisher_config *cfg)
{
    cfg->urls = f->url;
    cfg->source_id = "unit@test";
    assert_int_equal(am_publisher_open(&f->pub, cfg), 0);
    assert_non_null(f->pub);
}

/* Polls the publisher's counters until it sees want subscribers; false past WAIT_MS. */
static bool wait_subscribers(am_publisher *pub, int want)
{
    int64_t deadline = am_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    struct am_publisher_stats st;
    for (;;) {
        am_publisher_stats(pub, &st);
        if (st.subscribers == want)
            return true;
        if (am_clock_mono_ns() > deadline)
            return false;
        nng_msleep(5);
    }
}

/* A valid metric whose request_id carries i, so its position can be checked on arrival. */
static struct am_metric numbered_metric(char *rid, size_t cap, int i)
{
    struct am_metric m = fixture_full_metric();
    snprintf(rid, cap, "req-%d", i);
    m.request_id = rid;
    return m;
}

static void send_numbered(am_publisher *pub, int from, int to)
{
    char rid[32];
    for (int i = from; i < to; i++) {
        struct am_metric m = numbered_metric(rid, sizeof rid, i);
        assert_int_equal(am_publisher_send(pub, &m), 0);
    }
}

/*
 * Receives frames until the metrics with sequence numbers from .. to-1 have
 * arrived. Checks that each frame decodes, carries the publisher's identity,
 * holds at most batch_max metrics and continues the sequence exactly where
 * the previous one ended, and that the metric with sequence number s is the
 * one sent as "req-s". Returns the number of frames.
 */
static size_t receive_metrics(struct fixture *f, int64_t from, int64_t to, unsigned batch_max)
{
    struct am_publisher_stats st;
    int64_t next_seq = from;
    size_t frames = 0;
    char rid[32];

    am_publisher_stats(f->pub, &st);
    while (next_seq < to) {
        nng_msg *msg = NULL;
        int rv = nng_recvmsg(f->sub, &msg, 0);
        if (rv != 0)
            fail_msg("waiting for seq %lld of %lld..%lld: nng_recvmsg: %s", (long long)next_seq,
                     (long long)from, (long long)to - 1, nng_strerror(rv));
        Athena__Metrics__MetricBatch *b = NULL;
        const char *why = NULL;
        rv = am_frame_decode(nng_msg_body(msg), nng_msg_len(msg), &b, &why);
        nng_msg_free(msg);
        if (rv != 0)
            fail_msg("frame %zu does not decode: %s", frames, why);
        frames++;
        assert_string_equal(b->source_id, st.source_id);
        assert_int_equal(b->epoch, st.epoch);
        assert_int_equal(b->first_seq, next_seq);
        assert_true(b->n_metrics >= 1);
        assert_true(b->n_metrics <= batch_max);
        for (size_t i = 0; i < b->n_metrics; i++) {
            snprintf(rid, sizeof rid, "req-%lld", (long long)(next_seq + (int64_t)i));
            assert_string_equal(b->metrics[i]->request_id, rid);
        }
        next_seq += (int64_t)b->n_metrics;
        athena__metrics__metric_batch__free_unpacked(b, NULL);
    }
    assert_int_equal(next_seq, to);
    return frames;
}

/* The encoded size of m, which is what the queue's byte bound counts. */
static size_t packed_size(const struct am_metric *m)
{
    uint8_t buf[AM_METRIC_MAX_PACKED];
    size_t len = 0;
    assert_int_equal(am_metric_pack(m, buf, sizeof buf, &len), 0);
    return len;
}

static void test_disabled_publisher_ignores_sends_and_counts_nothing(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    am_publisher_config_init(&cfg);
    cfg.enabled = false;
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:1");
    open_publisher(f, &cfg);

    struct am_metric good = fixture_full_metric();
    struct am_metric bad = fixture_full_metric();
    bad.latency_seconds = -1;
    for (int i = 0; i < 10; i++)
        assert_int_equal(am_publisher_send(f->pub, &good), 0);
    assert_int_equal(am_publisher_send(f->pub, &bad), 0);
    assert_int_equal(am_publisher_flush(f->pub, 0), 0);

    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.dropped_invalid, 0);
    assert_int_equal(st.dropped_no_subscriber, 0);
    assert_int_equal(st.subscribers, 0);

    am_publisher_close(f->pub, &st);
    f->pub = NULL;
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.dropped_shutdown, 0);
}

static void test_send_to_null_publisher_is_a_no_op(void **state)
{
    struct am_metric m = fixture_full_metric();
    assert_int_equal(am_publisher_send(NULL, &m), 0);
    am_publisher_close(NULL, NULL);
}

static void test_open_rejects_zero_bounds(void **state)
{
    struct am_publisher_config cfg;
    am_publisher *pub = NULL;
    am_publisher_config_init(&cfg);
    cfg.queue_max = 0;
    assert_int_equal(am_publisher_open(&pub, &cfg), AM_EINVAL);
    am_publisher_config_init(&cfg);
    cfg.batch_max = 0;
    assert_int_equal(am_publisher_open(&pub, &cfg), AM_EINVAL);
    am_publisher_config_init(&cfg);
    cfg.queue_max_bytes = 0;
    assert_int_equal(am_publisher_open(&pub, &cfg), AM_EINVAL);
    assert_null(pub);
}

static void test_open_rejects_unusable_urls(void **state)
{
    struct am_publisher_config cfg;
    am_publisher *pub = NULL;
    am_publisher_config_init(&cfg);
    cfg.urls = "nope://127.0.0.1:1";
    assert_int_equal(am_publisher_open(&pub, &cfg), AM_EINVAL);
    cfg.urls = " , ,";
    assert_int_equal(am_publisher_open(&pub, &cfg), AM_EINVAL);
    assert_null(pub);
}

static void test_queue_without_subscriber_drops_oldest_past_queue_max(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.queue_max = 100;
    cfg.linger_ms = 50;
    open_publisher(f, &cfg);

    struct am_metric m = fixture_full_metric();
    for (int i = 0; i < 250; i++)
        assert_int_equal(am_publisher_send(f->pub, &m), 0);

    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.held, 100);
    assert_int_equal(st.held_bytes, 100 * packed_size(&m));
    assert_int_equal(st.queued, 250);
    assert_int_equal(st.dropped_no_subscriber, 150);
    assert_int_equal(st.dropped_queue_full, 0);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.batches, 0);
}

static void test_queue_without_subscriber_keeps_within_queue_max_bytes(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    struct am_metric m = fixture_full_metric();
    size_t len = packed_size(&m);
    reserve_port(f);
    am_publisher_config_init(&cfg);
    /* Room for ten metrics and half of an eleventh. */
    cfg.queue_max_bytes = 10 * len + len / 2;
    cfg.linger_ms = 50;
    open_publisher(f, &cfg);

    for (int i = 0; i < 250; i++)
        assert_int_equal(am_publisher_send(f->pub, &m), 0);

    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.held, 10);
    assert_int_equal(st.held_bytes, 10 * len);
    assert_true(st.held_bytes <= cfg.queue_max_bytes);
    assert_int_equal(st.queued, 250);
    assert_int_equal(st.dropped_no_subscriber, 240);
}

static void test_dropped_metrics_keep_their_sequence_numbers(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.queue_max = 100;
    cfg.batch_max = 64;
    open_publisher(f, &cfg);

    /* The oldest 150 are dropped; the collector must see them as a gap, 0..149. */
    send_numbered(f->pub, 0, 250);
    int port = f->port;
    release_port(f);
    start_sub(f, port);
    receive_metrics(f, 150, 250, 64);

    assert_int_equal(am_publisher_flush(f->pub, WAIT_MS), 0);
    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.sent, 100);
    assert_int_equal(st.dropped_no_subscriber, 150);
}

static void test_invalid_metric_is_refused_and_counted(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.linger_ms = 50;
    open_publisher(f, &cfg);

    struct am_metric bad = fixture_full_metric();
    bad.model = NULL;
    assert_int_equal(am_publisher_send(f->pub, &bad), AM_EINVAL);
    bad = fixture_full_metric();
    bad.latency_seconds = -1;
    assert_int_equal(am_publisher_send(f->pub, &bad), AM_EINVAL);

    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.dropped_invalid, 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
}

static void test_metric_over_max_packed_is_refused_as_invalid(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    static char text[AM_METRIC_MAX_STRING + 1];
    memset(text, 'x', AM_METRIC_MAX_STRING);
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.linger_ms = 50;
    open_publisher(f, &cfg);

    /* Every field within its own bound, the whole over AM_METRIC_MAX_PACKED. */
    struct am_metric m = fixture_full_metric();
    m.model = m.backend = m.error_type = m.request_id = m.session_id = m.user_id = m.zone =
        m.intent = m.device_id = text;
    const char *why = NULL;
    assert_int_equal(am_metric_validate(&m, &why), 0);
    assert_int_equal(am_publisher_send(f->pub, &m), AM_EINVAL);

    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.dropped_invalid, 1);
    assert_int_equal(st.queued, 0);
}

static void test_invalid_metric_consumes_no_sequence_number(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    start_sub(f, 0);
    am_publisher_config_init(&cfg);
    cfg.batch_ms = 5;
    open_publisher(f, &cfg);
    assert_true(wait_subscribers(f->pub, 1));

    struct am_metric bad = fixture_full_metric();
    bad.timestamp_us = 0;
    assert_int_equal(am_publisher_send(f->pub, &bad), AM_EINVAL);
    send_numbered(f->pub, 0, 3);
    receive_metrics(f, 0, 3, cfg.batch_max);
}

static void test_subscriber_receives_every_metric_in_sequence(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    start_sub(f, 0);
    am_publisher_config_init(&cfg);
    cfg.batch_max = 64;
    open_publisher(f, &cfg);
    assert_true(wait_subscribers(f->pub, 1));

    send_numbered(f->pub, 0, 1000);
    size_t frames = receive_metrics(f, 0, 1000, 64);
    assert_true(frames >= 1000 / 64 + 1);

    /* Once the queue is empty and no batch is in flight, the counters are final. */
    assert_int_equal(am_publisher_flush(f->pub, WAIT_MS), 0);
    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.queued, 1000);
    assert_int_equal(st.sent, 1000);
    assert_int_equal(st.batches, frames);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.dropped_queue_full + st.dropped_no_subscriber + st.dropped_invalid +
                         st.dropped_send_error + st.dropped_shutdown,
                     0);

    am_publisher_close(f->pub, &st);
    f->pub = NULL;
    assert_int_equal(st.sent, 1000);
    assert_int_equal(st.dropped_shutdown, 0);
}

static _Atomic int pair_pipes_removed;

static void on_pair_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    atomic_fetch_add(&pair_pipes_removed, 1);
}

/*
 * A URL answered by a socket that is not a SUB (here PAIR) is rejected by
 * NNG again and again; those rejections must not count the real subscriber out.
 */
static void test_rejected_peers_do_not_count_out_the_real_subscriber(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    nng_socket pair;
    nng_listener l;
    int pair_port = 0;
    char urls[160];

    start_sub(f, 0);
    assert_int_equal(nng_pair0_open(&pair), 0);
    nng_pipe_notify(pair, NNG_PIPE_EV_REM_POST, on_pair_pipe_removed, NULL);
    assert_int_equal(nng_listen(pair, "tcp://127.0.0.1:0", &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &pair_port), 0);
    snprintf(urls, sizeof urls, "%s,tcp://127.0.0.1:%d", f->url, pair_port);

    am_publisher_config_init(&cfg);
    cfg.urls = urls;
    cfg.source_id = "unit@test";
    assert_int_equal(am_publisher_open(&f->pub, &cfg), 0);

    int64_t deadline = am_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    while (atomic_load(&pair_pipes_removed) < 3 && am_clock_mono_ns() < deadline)
        nng_msleep(5);
    assert_true(atomic_load(&pair_pipes_removed) >= 3);
    assert_true(wait_subscribers(f->pub, 1));

    send_numbered(f->pub, 0, 100);
    receive_metrics(f, 0, 100, 512);
    nng_close(pair);
}

static void test_publisher_holds_metrics_until_a_subscriber_connects(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.batch_max = 64;
    open_publisher(f, &cfg);

    send_numbered(f->pub, 0, 500);
    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.subscribers, 0);
    assert_int_equal(st.held, 500);
    assert_int_equal(st.sent, 0);

    int port = f->port;
    release_port(f);
    start_sub(f, port);
    receive_metrics(f, 0, 500, 64);

    assert_int_equal(am_publisher_flush(f->pub, WAIT_MS), 0);
    am_publisher_stats(f->pub, &st);
    assert_int_equal(st.sent, 500);
    assert_int_equal(st.dropped_no_subscriber, 0);
}

static void test_close_counts_what_it_could_not_send(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.queue_max = 100;
    cfg.linger_ms = 100;
    open_publisher(f, &cfg);

    struct am_metric m = fixture_full_metric();
    for (int i = 0; i < 130; i++)
        assert_int_equal(am_publisher_send(f->pub, &m), 0);
    struct am_metric bad = fixture_min_metric();
    bad.backend = NULL;
    assert_int_equal(am_publisher_send(f->pub, &bad), AM_EINVAL);

    int64_t t0 = am_clock_mono_ns();
    am_publisher_close(f->pub, &st);
    f->pub = NULL;
    int64_t took_ms = (am_clock_mono_ns() - t0) / 1000000;

    assert_int_equal(st.queued, 130);
    assert_int_equal(st.dropped_no_subscriber, 30);
    assert_int_equal(st.dropped_invalid, 1);
    assert_int_equal(st.dropped_shutdown, 100);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.held, 0);
    assert_int_equal(st.held_bytes, 0);
    assert_string_equal(st.source_id, "unit@test");
    assert_true(st.epoch > 0);
    /* It waited for a subscriber, but not much longer than linger_ms. */
    assert_true(took_ms >= 100);
    assert_true(took_ms < WAIT_MS);
}

static void test_close_delivers_what_is_held_to_a_subscriber(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    start_sub(f, 0);
    am_publisher_config_init(&cfg);
    /* A partial batch would wait an hour: only close can send it. */
    cfg.batch_ms = 3600 * 1000;
    cfg.batch_max = 512;
    open_publisher(f, &cfg);
    assert_true(wait_subscribers(f->pub, 1));

    send_numbered(f->pub, 0, 10);
    am_publisher_close(f->pub, &st);
    f->pub = NULL;
    assert_int_equal(st.sent, 10);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.dropped_shutdown, 0);

    nng_msg *msg = NULL;
    assert_int_equal(nng_recvmsg(f->sub, &msg, 0), 0);
    Athena__Metrics__MetricBatch *b = NULL;
    const char *why = NULL;
    int rv = am_frame_decode(nng_msg_body(msg), nng_msg_len(msg), &b, &why);
    nng_msg_free(msg);
    assert_int_equal(rv, 0);
    assert_int_equal(b->first_seq, 0);
    assert_int_equal(b->n_metrics, 10);
    athena__metrics__metric_batch__free_unpacked(b, NULL);
}

/* True when text has line as one whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    }
    return false;
}

static void assert_has_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fail_msg("missing line '%s' in:\n%s", line, text);
}

/* Opens the collector side of the replay channel: a PUB socket on a free port. */
static void start_requests(struct fixture *f)
{
    nng_listener l;
    int bound = 0;
    assert_int_equal(nng_pub0_open(&f->req), 0);
    f->req_open = true;
    assert_int_equal(nng_listen(f->req, "tcp://127.0.0.1:0", &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &bound), 0);
    snprintf(f->req_url, sizeof f->req_url, "tcp://127.0.0.1:%d", bound);
}

static void send_request(struct fixture *f, int64_t epoch, const struct am_seq_range *r, size_t n)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    size_t len = am_request_encode(buf, sizeof buf, "unit@test", epoch, r, n);
    assert_true(len > 0);
    assert_int_equal(nng_send(f->req, buf, len, 0), 0);
}

/* What came back on the data socket for a replay request. */
struct answer {
    struct am_seq_range runs[8]; /* the resent metrics, consecutive ones merged */
    size_t nruns;
    int64_t resent;
    size_t resent_frames;
    struct am_seq_range gone[AM_REPLAY_MAX_RANGES];
    size_t ngone;
    int64_t heartbeat; /* next_seq of the last heartbeat, -1: none */
};

/*
 * Receives one message on the data socket within timeout_ms and adds it to
 * a; false when none came. Batches must be marked as resent and carry the
 * metrics numbered as sent.
 */
static bool receive_answer(struct fixture *f, struct answer *a, int timeout_ms)
{
    nng_msg *msg = NULL;
    char rid[32];
    nng_socket_set_ms(f->sub, NNG_OPT_RECVTIMEO, timeout_ms);
    int rv = nng_recvmsg(f->sub, &msg, 0);
    nng_socket_set_ms(f->sub, NNG_OPT_RECVTIMEO, WAIT_MS);
    if (rv != 0)
        return false;
    const uint8_t *body = nng_msg_body(msg);
    size_t len = nng_msg_len(msg);
    const char *why = NULL;
    if (am_notice_is(body, len)) {
        Athena__Metrics__StreamNotice *n = NULL;
        if (am_notice_decode(body, len, &n, &why) != 0)
            fail_msg("notice does not decode: %s", why);
        if (n->has_next_seq)
            a->heartbeat = n->next_seq;
        for (size_t i = 0; i < n->n_gone && a->ngone < AM_REPLAY_MAX_RANGES; i++)
            a->gone[a->ngone++] = (struct am_seq_range){n->gone[i]->from, n->gone[i]->to};
        athena__metrics__stream_notice__free_unpacked(n, NULL);
    } else {
        Athena__Metrics__MetricBatch *b = NULL;
        if (am_frame_decode(body, len, &b, &why) != 0)
            fail_msg("frame does not decode: %s", why);
        assert_true(b->has_replay && b->replay);
        int64_t end = b->first_seq + (int64_t)b->n_metrics;
        if (a->nruns > 0 && a->runs[a->nruns - 1].to == b->first_seq) {
            a->runs[a->nruns - 1].to = end;
        } else {
            assert_true(a->nruns < 8);
            a->runs[a->nruns++] = (struct am_seq_range){b->first_seq, end};
        }
        for (size_t i = 0; i < b->n_metrics; i++) {
            snprintf(rid, sizeof rid, "req-%lld", (long long)(b->first_seq + (int64_t)i));
            assert_string_equal(b->metrics[i]->request_id, rid);
        }
        a->resent += (int64_t)b->n_metrics;
        a->resent_frames++;
        athena__metrics__metric_batch__free_unpacked(b, NULL);
    }
    nng_msg_free(msg);
    return true;
}

/*
 * A publisher whose replay ring holds the last 100 metrics sent, dialling
 * f's replay socket and beating every heartbeat_ms, after sending 0..299
 * and their arrival. Returns once a
 * request reaches it (one for another epoch, answered "gone", is repeated
 * until then, since a PUB socket drops what it sends before the dial
 * completes).
 */
static void replay_ready(struct fixture *f, struct am_publisher_config *cfg, unsigned heartbeat_ms)
{
    char rid[32];
    struct am_metric m = numbered_metric(rid, sizeof rid, 100);
    start_sub(f, 0);
    start_requests(f);
    am_publisher_config_init(cfg);
    cfg->batch_max = 64;
    cfg->replay_urls = f->req_url;
    cfg->replay_max_bytes = 100 * (packed_size(&m) + 48);
    cfg->heartbeat_ms = heartbeat_ms;
    open_publisher(f, cfg);
    assert_true(wait_subscribers(f->pub, 1));
    send_numbered(f->pub, 0, 300);
    receive_metrics(f, 0, 300, 64);
    assert_int_equal(am_publisher_flush(f->pub, WAIT_MS), 0);

    struct am_publisher_stats st;
    am_publisher_stats(f->pub, &st);
    struct am_seq_range probe = {0, 1};
    struct answer a = {.heartbeat = -1};
    int64_t deadline = am_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    do {
        assert_true(am_clock_mono_ns() < deadline);
        send_request(f, st.epoch + 1, &probe, 1);
    } while (!receive_answer(f, &a, 100));
    /*
     * Answers to repeated probes may still be on their way: take them until
     * 300 ms bring no more (heartbeats may keep coming meanwhile).
     */
    int64_t quiet_until = am_clock_mono_ns() + 300 * 1000000LL;
    while (am_clock_mono_ns() < quiet_until) {
        size_t before = a.ngone;
        if (receive_answer(f, &a, 100) && a.ngone > before)
            quiet_until = am_clock_mono_ns() + 300 * 1000000LL;
    }
    assert_true(a.ngone >= 1);
    assert_int_equal(a.gone[0].from, 0);
    assert_int_equal(a.gone[0].to, 1);
}

/*
 * A request is answered with what the ring holds, resent on the data
 * socket as marked batches, and a notice that the rest is gone.
 */
static void test_replay_resends_what_the_ring_holds_and_announces_the_rest_gone(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats before, after;
    replay_ready(f, &cfg, 3600000);
    am_publisher_stats(f->pub, &before);
    assert_int_equal(before.replay_held, 100);

    /* 150..259: 200..259 are held, 150..199 forgotten; 0..9 long gone; 290..310 past the end. */
    struct am_seq_range r[3] = {{150, 260}, {0, 10}, {290, 310}};
    send_request(f, before.epoch, r, 3);
    struct answer a = {.heartbeat = -1};
    while (a.resent < 70 || a.ngone < 2) {
        if (!receive_answer(f, &a, WAIT_MS))
            fail_msg("answer incomplete: resent %lld, %zu gone ranges", (long long)a.resent,
                     a.ngone);
    }
    /* 200..259, then 290..299 (300..309 not sent yet: neither resent nor gone). */
    assert_int_equal(a.nruns, 2);
    assert_int_equal(a.runs[0].from, 200);
    assert_int_equal(a.runs[0].to, 260);
    assert_int_equal(a.runs[1].from, 290);
    assert_int_equal(a.runs[1].to, 300);
    assert_int_equal(a.resent, 70);
    assert_int_equal(a.ngone, 2);
    assert_int_equal(a.gone[0].from, 150);
    assert_int_equal(a.gone[0].to, 200);
    assert_int_equal(a.gone[1].from, 0);
    assert_int_equal(a.gone[1].to, 10);

    am_publisher_stats(f->pub, &after);
    assert_int_equal(after.replay_requests - before.replay_requests, 1);
    assert_int_equal(after.resent - before.resent, 60 + 10);
    assert_int_equal(after.gone - before.gone, 50 + 10);
}

static void test_replay_counts_a_malformed_request_and_keeps_serving(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    replay_ready(f, &cfg, 3600000);

    /* The right topic, then garbage. */
    assert_int_equal(nng_send(f->req, "unit@test\0AMQ1\xff\xff\xff", 17, 0), 0);
    int64_t deadline = am_clock_mono_ns() + (int64_t)WAIT_MS * 1000000;
    do {
        assert_true(am_clock_mono_ns() < deadline);
        nng_msleep(10);
        am_publisher_stats(f->pub, &st);
    } while (st.replay_malformed == 0);
    assert_int_equal(st.replay_malformed, 1);

    struct am_seq_range r = {290, 300};
    send_request(f, st.epoch, &r, 1);
    struct answer a = {.heartbeat = -1};
    while (a.resent < 10)
        assert_true(receive_answer(f, &a, WAIT_MS));
    assert_int_equal(a.runs[0].from, 290);
    assert_int_equal(a.runs[0].to, 300);
}

/* The heartbeat says how far the stream was sent, so a loss at its end shows. */
static void test_heartbeat_announces_the_next_sequence_number(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    replay_ready(f, &cfg, 50);
    struct answer a = {.heartbeat = -1};
    while (a.heartbeat < 0)
        assert_true(receive_answer(f, &a, WAIT_MS));
    assert_int_equal(a.heartbeat, 300);
}

static void test_write_prom_reports_the_counters(void **state)
{
    struct fixture *f = *state;
    struct am_publisher_config cfg;
    struct am_buf b;
    char line[128];
    reserve_port(f);
    am_publisher_config_init(&cfg);
    cfg.queue_max = 3;
    cfg.linger_ms = 50;
    open_publisher(f, &cfg);

    struct am_metric m = fixture_full_metric();
    struct am_metric bad = fixture_full_metric();
    bad.tokens = -1;
    for (int i = 0; i < 5; i++)
        assert_int_equal(am_publisher_send(f->pub, &m), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(am_publisher_send(f->pub, &bad), AM_EINVAL);

    am_buf_init(&b, 1 << 16);
    am_publisher_write_prom(f->pub, &b, "t");
    assert_non_null(b.data);
    assert_has_line(b.data, "# TYPE t_metrics_queued_total counter");
    assert_has_line(b.data, "t_metrics_queued_total 5");
    assert_has_line(b.data, "t_metrics_sent_total 0");
    assert_has_line(b.data, "t_bus_messages_sent_total 0");
    assert_has_line(b.data, "# TYPE t_metrics_dropped_total counter");
    assert_has_line(b.data, "t_metrics_dropped_total{reason=\"queue_full\"} 0");
    assert_has_line(b.data, "t_metrics_dropped_total{reason=\"no_subscriber\"} 2");
    assert_has_line(b.data, "t_metrics_dropped_total{reason=\"invalid\"} 2");
    assert_has_line(b.data, "t_metrics_dropped_total{reason=\"send_error\"} 0");
    assert_has_line(b.data, "t_metrics_dropped_total{reason=\"shutdown\"} 0");
    assert_has_line(b.data, "# TYPE t_metrics_held gauge");
    assert_has_line(b.data, "t_metrics_held 3");
    snprintf(line, sizeof line, "t_metrics_held_bytes %zu", 3 * packed_size(&m));
    assert_has_line(b.data, line);
    assert_has_line(b.data, "t_bus_subscribers 0");
    am_buf_free(&b);
}

int main(void)
{
    /* The publisher logs every subscriber and dial; the test output needs none of it. */
    am_log_set_level("error");
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_disabled_publisher_ignores_sends_and_counts_nothing),
        T(test_send_to_null_publisher_is_a_no_op),
        T(test_open_rejects_zero_bounds),
        T(test_open_rejects_unusable_urls),
        T(test_queue_without_subscriber_drops_oldest_past_queue_max),
        T(test_queue_without_subscriber_keeps_within_queue_max_bytes),
        T(test_dropped_metrics_keep_their_sequence_numbers),
        T(test_invalid_metric_is_refused_and_counted),
        T(test_metric_over_max_packed_is_refused_as_invalid),
        T(test_invalid_metric_consumes_no_sequence_number),
        T(test_subscriber_receives_every_metric_in_sequence),
        T(test_publisher_holds_metrics_until_a_subscriber_connects),
        T(test_rejected_peers_do_not_count_out_the_real_subscriber),
        T(test_close_counts_what_it_could_not_send),
        T(test_close_delivers_what_is_held_to_a_subscriber),
        T(test_write_prom_reports_the_counters),
        T(test_replay_resends_what_the_ring_holds_and_announces_the_rest_gone),
        T(test_replay_counts_a_malformed_request_and_keeps_serving),
        T(test_heartbeat_announces_the_next_sequence_number),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
