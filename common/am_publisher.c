/*
 * The metric publisher: a bounded queue drained by a sender thread onto an
 * NNG PUB socket, and a replay ring of sent metrics that a second thread
 * resends when a collector asks for them on the replay socket.
 */
#include "am_publisher.h"
#include "am_clock.h"
#include "am_config.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"
#include "am_replay.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* One queued metric, already encoded. */
struct record {
    uint8_t *data;
    uint32_t len;
    union {
        int64_t enq_ns; /* in the queue: when it was accepted */
        int64_t seq;    /* in the replay ring: its sequence number */
    };
};

/* What one metric costs in the replay ring besides its bytes (the slot and malloc's overhead). */
#define REPLAY_OVERHEAD 48

struct am_publisher {
    struct am_publisher_config cfg;
    nng_socket sock;
    bool sock_open;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    pthread_cond_t work;  /* the sender waits on it */
    pthread_cond_t empty; /* am_publisher_flush waits on it */

    /* The queue: a ring of cfg.queue_max records, guarded by mu. */
    struct record *ring;
    size_t head; /* index of the oldest record */
    size_t count;
    size_t bytes;
    int64_t tail_seq; /* sequence number of the oldest record */
    int subscribers;
    uint32_t pipes[64]; /* ids of the counted subscriber pipes */
    bool closing;
    bool sending; /* the sender holds popped records not yet counted */

    struct am_publisher_stats st; /* counters, guarded by mu */

    /*
     * The replay ring: metrics handed to the bus, in sequence order, guarded
     * by rmu (never taken with mu, so am_publisher_send never waits on it).
     */
    pthread_mutex_t rmu;
    struct record *rring;
    size_t rcap, rhead, rcount, rbytes;
    int64_t sent_end;              /* one past the last sequence number handed to the bus */
    struct am_publisher_stats rst; /* the replay counters, guarded by rmu */
    bool replay;                   /* the ring and the replay socket are in use */
    nng_socket rsock;
    bool rsock_open;
    pthread_t rthread;
    bool rthread_started;
    atomic_bool rstop;
};

void am_publisher_config_init(struct am_publisher_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->enabled = true;
    cfg->urls = "tcp://127.0.0.1:5556";
    cfg->queue_max = 100000;
    cfg->queue_max_bytes = 32u << 20;
    cfg->batch_max = 512;
    cfg->batch_ms = 50;
    cfg->linger_ms = 2000;
    cfg->sendbuf = 8192;
    cfg->replay_max_bytes = 16u << 20;
    cfg->heartbeat_ms = 1000;
}

void am_publisher_settings_apply(const struct am_publisher_settings *s,
                                 struct am_publisher_config *cfg)
{
    cfg->enabled = s->enabled;
    cfg->queue_max = (size_t)s->queue_max;
    cfg->batch_max = (unsigned)s->batch_max;
    cfg->batch_ms = (unsigned)s->batch_ms;
    cfg->linger_ms = (unsigned)s->linger_ms;
    cfg->replay_max_bytes = (size_t)s->replay_max_mib << 20;
    cfg->replay_urls = s->replay_urls;
    cfg->tls = s->tls;
}

int am_publisher_open_settings(am_publisher **out, const struct am_publisher_settings *s,
                               const char *urls)
{
    struct am_publisher_config cfg;
    am_publisher_config_init(&cfg);
    am_publisher_settings_apply(s, &cfg);
    cfg.urls = urls;
    return am_publisher_open(out, &cfg);
}

static void on_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    am_publisher *pub = arg;
    uint32_t id = nng_pipe_id(pipe);
    int n = (int)(sizeof pub->pipes / sizeof pub->pipes[0]);

    /*
     * NNG reports the removal of pipes it rejected before ADD_POST (a peer
     * that is not a SUB socket, say), so only pipes counted in are counted out.
     */
    pthread_mutex_lock(&pub->mu);
    if (ev == NNG_PIPE_EV_ADD_POST) {
        for (int i = 0; i < n; i++) {
            if (pub->pipes[i] == 0) {
                pub->pipes[i] = id;
                pub->subscribers++;
                break;
            }
        }
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        for (int i = 0; i < n; i++) {
            if (pub->pipes[i] == id) {
                pub->pipes[i] = 0;
                pub->subscribers--;
                break;
            }
        }
    }
    int now = pub->subscribers;
    pthread_cond_signal(&pub->work);
    pthread_mutex_unlock(&pub->mu);
    am_log_info("bus subscriber %s (now %d)",
                ev == NNG_PIPE_EV_ADD_POST ? "connected" : "disconnected", now);
}

/* Removes the oldest record; mu held. */
static void drop_oldest(am_publisher *pub)
{
    struct record *r = &pub->ring[pub->head];
    pub->bytes -= r->len;
    free(r->data);
    r->data = NULL;
    pub->head = (pub->head + 1) % pub->cfg.queue_max;
    pub->count--;
    pub->tail_seq++;
    if (pub->subscribers > 0)
        pub->st.dropped_queue_full++;
    else
        pub->st.dropped_no_subscriber++;
}

int am_publisher_send(am_publisher *pub, const struct am_metric *m)
{
    uint8_t tmp[AM_METRIC_MAX_PACKED];
    size_t len = 0;
    const char *why = NULL;

    if (!pub || !pub->cfg.enabled)
        return AM_OK;
    if (am_metric_validate(m, &why) || am_metric_pack(m, tmp, sizeof tmp, &len) ||
        len > pub->cfg.queue_max_bytes) {
        pthread_mutex_lock(&pub->mu);
        pub->st.dropped_invalid++;
        pthread_mutex_unlock(&pub->mu);
        return AM_EINVAL;
    }
    uint8_t *copy = malloc(len);
    if (!copy)
        return AM_ENOMEM;
    memcpy(copy, tmp, len);
    int64_t now = am_clock_mono_ns();

    pthread_mutex_lock(&pub->mu);
    while (pub->count > 0 &&
           (pub->count >= pub->cfg.queue_max || pub->bytes + len > pub->cfg.queue_max_bytes))
        drop_oldest(pub);
    size_t tail = (pub->head + pub->count) % pub->cfg.queue_max;
    pub->ring[tail] = (struct record){.data = copy, .len = (uint32_t)len, .enq_ns = now};
    pub->count++;
    pub->bytes += len;
    pub->st.queued++;
    /* Wake the sender only when its decision changes: a batch starts or fills. */
    if (pub->count == 1 || pub->count == pub->cfg.batch_max)
        pthread_cond_signal(&pub->work);
    pthread_mutex_unlock(&pub->mu);
    return AM_OK;
}

static void deadline_in(struct timespec *ts, int64_t ns_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t ns = ts->tv_nsec + ns_from_now;
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

/* Bytes of a bus message's header at most, before its metrics. */
static size_t frame_overhead(const am_publisher *pub)
{
    return 4 + 16 + strlen(pub->st.source_id) + 32;
}

/*
 * Encodes recs[(start + k) % cap] for k < n as one bus message whose first
 * sequence number is first_seq, and sends it without waiting. The records
 * stay the caller's. Returns 0 or an NNG error (logged).
 */
static int send_frame(am_publisher *pub, const struct record *recs, size_t cap, size_t start,
                      size_t n, int64_t first_seq, bool replay)
{
    size_t total = frame_overhead(pub);
    for (size_t i = 0; i < n; i++)
        total += recs[(start + i) % cap].len + 11;

    nng_msg *msg = NULL;
    int rv = nng_msg_alloc(&msg, total);
    if (rv != 0) {
        am_log_error("bus message allocation failed: %s", nng_strerror(rv));
        return rv;
    }
    uint8_t *body = nng_msg_body(msg);
    size_t used = am_frame_header(body, total, pub->st.source_id, pub->st.epoch, first_seq, replay);
    for (size_t i = 0; i < n && used; i++) {
        const struct record *r = &recs[(start + i) % cap];
        size_t w = am_frame_metric(body + used, total - used, r->data, r->len);
        used = w ? used + w : 0;
    }
    if (used) {
        nng_msg_chop(msg, total - used);
        rv = nng_sendmsg(pub->sock, msg, NNG_FLAG_NONBLOCK);
        if (rv != 0)
            am_log_warn("bus send of %zu metrics failed: %s", n, nng_strerror(rv));
    } else {
        rv = NNG_EINVAL;
        am_log_error("bus frame of %zu metrics did not fit %zu bytes", n, total);
    }
    if (rv != 0)
        nng_msg_free(msg);
    return rv;
}

/* Forgets the replay ring's oldest metric; rmu held. */
static void ring_evict(am_publisher *pub)
{
    struct record *r = &pub->rring[pub->rhead];
    pub->rbytes -= r->len + REPLAY_OVERHEAD;
    free(r->data);
    r->data = NULL;
    pub->rhead = (pub->rhead + 1) % pub->rcap;
    pub->rcount--;
}

/* Room for one more metric in the replay ring: grows it, or forgets the oldest; rmu held. */
static bool ring_make_room(am_publisher *pub)
{
    if (pub->rcount < pub->rcap)
        return true;
    size_t ncap = pub->rcap ? pub->rcap * 2 : 1024;
    struct record *grown = malloc(ncap * sizeof *grown);
    if (grown) {
        for (size_t i = 0; i < pub->rcount; i++)
            grown[i] = pub->rring[(pub->rhead + i) % pub->rcap];
        free(pub->rring);
        pub->rring = grown;
        pub->rcap = ncap;
        pub->rhead = 0;
        return true;
    }
    if (pub->rcount == 0)
        return false;
    ring_evict(pub);
    return true;
}

/*
 * Takes the n records of batch (sequence numbers first_seq onwards) after
 * the sender handed them to the bus (sent true) or failed to: kept in the
 * replay ring when sent, freed otherwise. Either way the stream has moved
 * past them, which the next heartbeat announces.
 */
static void ring_keep(am_publisher *pub, struct record *batch, size_t n, int64_t first_seq,
                      bool sent)
{
    pthread_mutex_lock(&pub->rmu);
    pub->sent_end = first_seq + (int64_t)n;
    for (size_t i = 0; i < n; i++) {
        size_t cost = batch[i].len + REPLAY_OVERHEAD;
        if (!sent || !pub->replay || cost > pub->cfg.replay_max_bytes) {
            free(batch[i].data);
            continue;
        }
        while (pub->rcount > 0 && pub->rbytes + cost > pub->cfg.replay_max_bytes)
            ring_evict(pub);
        if (!ring_make_room(pub)) {
            free(batch[i].data);
            continue;
        }
        struct record *r = &pub->rring[(pub->rhead + pub->rcount) % pub->rcap];
        *r = (struct record){
            .data = batch[i].data, .len = batch[i].len, .seq = first_seq + (int64_t)i};
        pub->rcount++;
        pub->rbytes += cost;
    }
    pthread_mutex_unlock(&pub->rmu);
}

/*
 * Pops up to batch_max records (bounded by the frame size), encodes them as
 * one bus message and sends it. Called with mu held; drops it while encoding
 * and sending.
 */
static void send_batch(am_publisher *pub, struct record *batch)
{
    size_t n = 0;
    size_t total = frame_overhead(pub);
    while (n < pub->count && n < pub->cfg.batch_max) {
        struct record *r = &pub->ring[(pub->head + n) % pub->cfg.queue_max];
        if (n > 0 && total + r->len + 11 > AM_FRAME_MAX)
            break;
        total += r->len + 11;
        batch[n] = *r;
        r->data = NULL;
        n++;
    }
    int64_t first_seq = pub->tail_seq;
    for (size_t i = 0; i < n; i++)
        pub->bytes -= batch[i].len;
    pub->head = (pub->head + n) % pub->cfg.queue_max;
    pub->count -= n;
    pub->tail_seq += n;
    pub->sending = true;
    pthread_mutex_unlock(&pub->mu);

    int rv = send_frame(pub, batch, n, 0, n, first_seq, false);
    ring_keep(pub, batch, n, first_seq, rv == 0);

    pthread_mutex_lock(&pub->mu);
    pub->sending = false;
    if (rv == 0) {
        pub->st.sent += n;
        pub->st.batches++;
    } else {
        pub->st.dropped_send_error += n;
    }
    if (pub->count == 0)
        pthread_cond_broadcast(&pub->empty);
}

static void *sender_main(void *arg)
{
    am_publisher *pub = arg;
    struct record *batch = calloc(pub->cfg.batch_max, sizeof *batch);
    struct timespec ts;
    int64_t batch_ns = (int64_t)pub->cfg.batch_ms * 1000000;

    if (!batch) {
        am_log_error("publisher: out of memory for the sender");
        abort();
    }
    pthread_mutex_lock(&pub->mu);
    while (!pub->closing) {
        if (pub->count == 0 || pub->subscribers == 0) {
            deadline_in(&ts, 1000000000);
            pthread_cond_timedwait(&pub->work, &pub->mu, &ts);
            continue;
        }
        if (pub->count < pub->cfg.batch_max) {
            int64_t wait = pub->ring[pub->head].enq_ns + batch_ns - am_clock_mono_ns();
            if (wait > 0) {
                deadline_in(&ts, wait);
                pthread_cond_timedwait(&pub->work, &pub->mu, &ts);
                continue;
            }
        }
        send_batch(pub, batch);
    }

    /* Closing: send what is held, waiting up to linger for a subscriber. */
    int64_t give_up = am_clock_mono_ns() + (int64_t)pub->cfg.linger_ms * 1000000;
    bool sent_any = false;
    while (pub->count > 0 && am_clock_mono_ns() < give_up) {
        if (pub->subscribers == 0) {
            deadline_in(&ts, 20000000);
            pthread_cond_timedwait(&pub->work, &pub->mu, &ts);
            continue;
        }
        send_batch(pub, batch);
        sent_any = true;
    }
    while (pub->count > 0) {
        struct record *r = &pub->ring[pub->head];
        free(r->data);
        r->data = NULL;
        pub->bytes -= r->len;
        pub->head = (pub->head + 1) % pub->cfg.queue_max;
        pub->count--;
        pub->st.dropped_shutdown++;
    }
    pthread_cond_broadcast(&pub->empty);
    int64_t left_ms = (give_up - am_clock_mono_ns()) / 1000000;
    pthread_mutex_unlock(&pub->mu);

    /*
     * NNG discards what its pipes still queue when the socket closes and
     * offers no way to see that queue, so give the transport a bounded time
     * to deliver what it accepted.
     */
    if (sent_any && left_ms > 0)
        nng_msleep((nng_duration)(left_ms < 500 ? left_ms : 500));
    free(batch);
    return NULL;
}

/* Sends one stream notice on the data socket; gone ranges at most AM_REPLAY_MAX_RANGES. */
static void send_notice(am_publisher *pub, int64_t next_seq, const struct am_seq_range *gone,
                        size_t ngone)
{
    uint8_t buf[AM_REPLAY_MSG_MAX];
    size_t len =
        am_notice_encode(buf, sizeof buf, pub->st.source_id, pub->st.epoch, next_seq, gone, ngone);
    if (len == 0 || nng_send(pub->sock, buf, len, NNG_FLAG_NONBLOCK) != 0)
        am_log_debug("a stream notice was not sent");
}

/* Gone ranges gathered while serving one request, sent in notices of AM_REPLAY_MAX_RANGES. */
struct gone_list {
    struct am_seq_range r[AM_REPLAY_MAX_RANGES];
    size_t n;
    uint64_t metrics;
};

static void gone_add(am_publisher *pub, struct gone_list *g, int64_t from, int64_t to)
{
    if (from >= to)
        return;
    if (g->n == AM_REPLAY_MAX_RANGES) {
        send_notice(pub, -1, g->r, g->n);
        g->n = 0;
    }
    g->r[g->n++] = (struct am_seq_range){from, to};
    g->metrics += (uint64_t)(to - from);
}

/* Logical index of the first record of the ring with seq >= want; rmu held. */
static size_t ring_lower_bound(const am_publisher *pub, int64_t want)
{
    size_t lo = 0, hi = pub->rcount;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pub->rring[(pub->rhead + mid) % pub->rcap].seq < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Resends what the ring holds of [from, to) in runs of consecutive sequence
 * numbers, at most batch_max metrics and one frame each, and adds the rest
 * to g; rmu held. Sequence numbers not yet handed to the bus are neither:
 * they are still on their way.
 */
static void resend_range(am_publisher *pub, int64_t from, int64_t to, struct gone_list *g)
{
    if (to > pub->sent_end)
        to = pub->sent_end;
    size_t i = ring_lower_bound(pub, from);
    int64_t cur = from;
    while (cur < to) {
        int64_t next = i < pub->rcount ? pub->rring[(pub->rhead + i) % pub->rcap].seq : to;
        if (next >= to) {
            gone_add(pub, g, cur, to);
            break;
        }
        gone_add(pub, g, cur, next);
        cur = next;
        size_t n = 0, bytes = frame_overhead(pub);
        while (i + n < pub->rcount && n < pub->cfg.batch_max) {
            const struct record *x = &pub->rring[(pub->rhead + i + n) % pub->rcap];
            if (x->seq != cur + (int64_t)n || x->seq >= to ||
                (n > 0 && bytes + x->len + 11 > AM_FRAME_MAX))
                break;
            bytes += x->len + 11;
            n++;
        }
        if (send_frame(pub, pub->rring, pub->rcap, (pub->rhead + i) % pub->rcap, n, cur, true) == 0)
            pub->rst.resent += n;
        i += n;
        cur += (int64_t)n;
    }
}

/* Answers one replay request: resends what the ring holds, announces the rest gone. */
static void serve_request(am_publisher *pub, const uint8_t *data, size_t len)
{
    Athena__Metrics__ReplayRequest *req = NULL;
    const char *why = NULL;
    struct gone_list g;

    g.n = 0;
    g.metrics = 0;
    if (am_request_decode(data, len, &req, &why) != AM_OK) {
        pthread_mutex_lock(&pub->rmu);
        pub->rst.replay_malformed++;
        pthread_mutex_unlock(&pub->rmu);
        am_log_debug("refused a replay request of %zu bytes: %s", len, why);
        return;
    }
    pthread_mutex_lock(&pub->rmu);
    pub->rst.replay_requests++;
    for (size_t i = 0; i < req->n_ranges; i++) {
        int64_t from = req->ranges[i]->from, to = req->ranges[i]->to;
        /* Another epoch of this source id is an earlier run: nothing of it is left here. */
        if (req->epoch != pub->st.epoch)
            gone_add(pub, &g, from, to);
        else
            resend_range(pub, from, to, &g);
    }
    pub->rst.gone += g.metrics;
    pthread_mutex_unlock(&pub->rmu);
    if (g.n > 0)
        send_notice(pub, -1, g.r, g.n);
    if (g.metrics > 0)
        am_log_warn("a collector asked for %llu metrics of epoch %lld no longer held for replay",
                    (unsigned long long)g.metrics, (long long)req->epoch);
    athena__metrics__replay_request__free_unpacked(req, NULL);
}

/*
 * The replay thread: serves requests as they come and announces, every
 * heartbeat_ms, how far the stream has been sent, so that a collector
 * notices metrics lost at the end of a stream with nothing sent after them.
 */
static void *replay_main(void *arg)
{
    am_publisher *pub = arg;
    int64_t beat_ns = (int64_t)(pub->cfg.heartbeat_ms ? pub->cfg.heartbeat_ms : 1000) * 1000000;
    int64_t next_beat = am_clock_mono_ns() + beat_ns;

    while (!atomic_load(&pub->rstop)) {
        nng_msg *msg = NULL;
        int rv = nng_recvmsg(pub->rsock, &msg, 0);
        if (rv == 0) {
            serve_request(pub, nng_msg_body(msg), nng_msg_len(msg));
            nng_msg_free(msg);
        } else if (rv != NNG_ETIMEDOUT && rv != NNG_ECLOSED) {
            am_log_debug("replay receive failed: %s", nng_strerror(rv));
        }
        if (am_clock_mono_ns() >= next_beat) {
            pthread_mutex_lock(&pub->rmu);
            int64_t end = pub->sent_end;
            pthread_mutex_unlock(&pub->rmu);
            if (end > 0)
                send_notice(pub, end, NULL, 0);
            next_beat = am_clock_mono_ns() + beat_ns;
        }
    }
    return NULL;
}

static void default_source_id(char *out, size_t cap)
{
    char host[128] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(out, cap, "%s@%s", program_invocation_short_name, host);
}

static int64_t random_epoch(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint64_t)am_clock_now_us() ^ ((uint64_t)getpid() << 40);
    v &= (uint64_t)INT64_MAX;
    return v ? (int64_t)v : 1;
}

static int dial_all(am_publisher *pub, nng_socket sock, const char *urls)
{
    char *copy = strdup(urls);
    char *items[64];
    int rc = AM_OK;

    if (!copy)
        return AM_ENOMEM;
    size_t n = am_config_split(copy, items, 64);
    if (n == 0) {
        am_log_error("publisher: no bus URL in '%s'", urls);
        rc = AM_EINVAL;
    }
    for (size_t i = 0; i < n && rc == AM_OK; i++) {
        char err[512];
        if (am_bus_dial(sock, items[i], &pub->cfg.tls, err, sizeof err) != AM_OK) {
            am_log_error("publisher: %s", err);
            rc = AM_EINVAL;
        }
    }
    free(copy);
    return rc;
}

/* Opens the replay socket: a SUB socket that dials every replay URL, for requests to this source.
 */
static int open_replay(am_publisher *pub, const char *urls)
{
    int rv;
    if ((rv = nng_sub0_open(&pub->rsock)) != 0) {
        am_log_error("publisher: cannot open the replay SUB socket: %s", nng_strerror(rv));
        return AM_ENET;
    }
    pub->rsock_open = true;
    /* The topic is the source id and its NUL, so "gw" does not also receive "gw2"'s requests. */
    nng_socket_set(pub->rsock, NNG_OPT_SUB_SUBSCRIBE, pub->st.source_id,
                   strlen(pub->st.source_id) + 1);
    nng_socket_set_size(pub->rsock, NNG_OPT_RECVMAXSZ, 2 * AM_REPLAY_MSG_MAX);
    nng_socket_set_ms(pub->rsock, NNG_OPT_RECVTIMEO, 100);
    nng_socket_set_ms(pub->rsock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(pub->rsock, NNG_OPT_RECONNMAXT, 2000);
    int rc = dial_all(pub, pub->rsock, urls);
    if (rc != AM_OK)
        return rc;
    if (pthread_create(&pub->rthread, NULL, replay_main, pub) != 0)
        return AM_ENOMEM;
    pub->rthread_started = true;
    return AM_OK;
}

int am_publisher_open(am_publisher **out, const struct am_publisher_config *cfg)
{
    am_publisher *pub = calloc(1, sizeof *pub);
    int rc = AM_OK;
    int rv;

    if (!pub)
        return AM_ENOMEM;
    pub->cfg = *cfg;
    if (pub->cfg.queue_max == 0 || pub->cfg.batch_max == 0 || pub->cfg.queue_max_bytes == 0) {
        free(pub);
        return AM_EINVAL;
    }
    pthread_mutex_init(&pub->mu, NULL);
    pthread_mutex_init(&pub->rmu, NULL);
    atomic_init(&pub->rstop, false);
    pub->replay = pub->cfg.replay_max_bytes > 0 && pub->cfg.replay_urls && *pub->cfg.replay_urls;
    pub->cfg.replay_urls = NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pub->work, &ca);
    pthread_cond_init(&pub->empty, &ca);
    pthread_condattr_destroy(&ca);
    if (cfg->source_id && *cfg->source_id)
        snprintf(pub->st.source_id, sizeof pub->st.source_id, "%s", cfg->source_id);
    else
        default_source_id(pub->st.source_id, sizeof pub->st.source_id);
    pub->st.epoch = random_epoch();
    pub->cfg.source_id = pub->st.source_id;
    pub->cfg.urls = NULL;

    if (!cfg->enabled) {
        *out = pub;
        return AM_OK;
    }

    pub->ring = calloc(pub->cfg.queue_max, sizeof *pub->ring);
    if (!pub->ring) {
        rc = AM_ENOMEM;
        goto out;
    }
    if ((rv = nng_pub0_open(&pub->sock)) != 0) {
        am_log_error("publisher: cannot open PUB socket: %s", nng_strerror(rv));
        rc = AM_ENET;
        goto out;
    }
    pub->sock_open = true;
    nng_socket_set_int(pub->sock, NNG_OPT_SENDBUF, cfg->sendbuf > 0 ? cfg->sendbuf : 8192);
    nng_socket_set_ms(pub->sock, NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(pub->sock, NNG_OPT_RECONNMAXT, 2000);
    nng_pipe_notify(pub->sock, NNG_PIPE_EV_ADD_POST, on_pipe, pub);
    nng_pipe_notify(pub->sock, NNG_PIPE_EV_REM_POST, on_pipe, pub);
    if ((rc = dial_all(pub, pub->sock, cfg->urls ? cfg->urls : "")) != AM_OK)
        goto out;
    if (pub->replay && (rc = open_replay(pub, cfg->replay_urls)) != AM_OK)
        goto out;
    if (pthread_create(&pub->thread, NULL, sender_main, pub) != 0) {
        rc = AM_ENOMEM;
        goto out;
    }
    pub->thread_started = true;
    am_log_info("publisher %s epoch %lld dialling %s (replay: %s)", pub->st.source_id,
                (long long)pub->st.epoch, cfg->urls, pub->replay ? cfg->replay_urls : "off");
    *out = pub;
    return AM_OK;

out:
    am_publisher_close(pub, NULL);
    return rc;
}

int am_publisher_flush(am_publisher *pub, int timeout_ms)
{
    struct timespec ts;
    int rc = AM_OK;

    if (!pub || !pub->cfg.enabled)
        return AM_OK;
    deadline_in(&ts, (int64_t)timeout_ms * 1000000);
    pthread_mutex_lock(&pub->mu);
    while (pub->count > 0 || pub->sending) {
        pthread_cond_signal(&pub->work);
        if (pthread_cond_timedwait(&pub->empty, &pub->mu, &ts) == ETIMEDOUT) {
            rc = AM_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&pub->mu);
    return rc;
}

void am_publisher_stats(am_publisher *pub, struct am_publisher_stats *st)
{
    pthread_mutex_lock(&pub->mu);
    *st = pub->st;
    st->held = pub->count;
    st->held_bytes = pub->bytes;
    st->subscribers = pub->subscribers;
    pthread_mutex_unlock(&pub->mu);
    pthread_mutex_lock(&pub->rmu);
    st->replay_requests = pub->rst.replay_requests;
    st->replay_malformed = pub->rst.replay_malformed;
    st->resent = pub->rst.resent;
    st->gone = pub->rst.gone;
    st->replay_held = pub->rcount;
    st->replay_held_bytes = pub->rbytes;
    pthread_mutex_unlock(&pub->rmu);
}

void am_publisher_write_prom(am_publisher *pub, struct am_buf *b, const char *prefix)
{
    struct am_publisher_stats st;
    char name[128];
    char lbl[64];

    if (!pub)
        return;
    am_publisher_stats(pub, &st);
    snprintf(name, sizeof name, "%s_metrics_queued_total", prefix);
    am_prom_counter(b, name, "Metrics accepted into the publish queue.", st.queued);
    snprintf(name, sizeof name, "%s_metrics_sent_total", prefix);
    am_prom_counter(b, name, "Metrics handed to the bus.", st.sent);
    snprintf(name, sizeof name, "%s_bus_messages_sent_total", prefix);
    am_prom_counter(b, name, "Bus messages (batches) sent.", st.batches);
    snprintf(name, sizeof name, "%s_metrics_dropped_total", prefix);
    am_prom_family(b, name, "counter", "Metrics dropped by the publisher, by reason.");
    const struct {
        const char *reason;
        uint64_t v;
    } drops[] = {
        {"queue_full", st.dropped_queue_full}, {"no_subscriber", st.dropped_no_subscriber},
        {"invalid", st.dropped_invalid},       {"send_error", st.dropped_send_error},
        {"shutdown", st.dropped_shutdown},
    };
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
        snprintf(lbl, sizeof lbl, "reason=\"%s\"", drops[i].reason);
        am_prom_sample(b, name, lbl, (double)drops[i].v);
    }
    snprintf(name, sizeof name, "%s_metrics_held", prefix);
    am_prom_gauge(b, name, "Metrics in the publish queue now.", (double)st.held);
    snprintf(name, sizeof name, "%s_metrics_held_bytes", prefix);
    am_prom_gauge(b, name, "Bytes in the publish queue now.", (double)st.held_bytes);
    snprintf(name, sizeof name, "%s_bus_subscribers", prefix);
    am_prom_gauge(b, name, "Collectors connected to the publisher now.", st.subscribers);
    snprintf(name, sizeof name, "%s_replay_requests_total", prefix);
    am_prom_counter(b, name, "Replay requests from collectors served.", st.replay_requests);
    snprintf(name, sizeof name, "%s_replay_requests_malformed_total", prefix);
    am_prom_counter(b, name, "Replay requests refused as malformed.", st.replay_malformed);
    snprintf(name, sizeof name, "%s_metrics_resent_total", prefix);
    am_prom_counter(b, name, "Metrics resent from the replay ring.", st.resent);
    snprintf(name, sizeof name, "%s_metrics_gone_total", prefix);
    am_prom_counter(b, name, "Requested metrics no longer in the replay ring, announced gone.",
                    st.gone);
    snprintf(name, sizeof name, "%s_replay_held", prefix);
    am_prom_gauge(b, name, "Sent metrics kept in the replay ring now.", (double)st.replay_held);
    snprintf(name, sizeof name, "%s_replay_held_bytes", prefix);
    am_prom_gauge(b, name, "Bytes of the replay ring now, with per-metric overhead.",
                  (double)st.replay_held_bytes);
}

void am_publisher_close(am_publisher *pub, struct am_publisher_stats *final)
{
    if (!pub)
        return;
    if (pub->thread_started) {
        pthread_mutex_lock(&pub->mu);
        pub->closing = true;
        pthread_cond_signal(&pub->work);
        pthread_mutex_unlock(&pub->mu);
        pthread_join(pub->thread, NULL);
    }
    if (pub->rthread_started) {
        atomic_store(&pub->rstop, true);
        pthread_join(pub->rthread, NULL);
    }
    if (pub->rsock_open)
        nng_close(pub->rsock);
    if (pub->sock_open)
        nng_close(pub->sock);
    if (final)
        am_publisher_stats(pub, final);
    if (pub->ring) {
        for (size_t i = 0; i < pub->count; i++)
            free(pub->ring[(pub->head + i) % pub->cfg.queue_max].data);
        free(pub->ring);
    }
    while (pub->rcount > 0)
        ring_evict(pub);
    free(pub->rring);
    pthread_mutex_destroy(&pub->rmu);
    pthread_cond_destroy(&pub->work);
    pthread_cond_destroy(&pub->empty);
    pthread_mutex_destroy(&pub->mu);
    free(pub);
}
