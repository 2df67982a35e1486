/* The metric publisher: a bounded queue drained by a sender thread onto an NNG PUB socket. */
#include "am_publisher.h"
#include "am_clock.h"
#include "am_config.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
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
    int64_t enq_ns;
};

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
}

void am_publisher_settings_apply(const struct am_publisher_settings *s,
                                 struct am_publisher_config *cfg)
{
    cfg->enabled = s->enabled;
    cfg->queue_max = (size_t)s->queue_max;
    cfg->batch_max = (unsigned)s->batch_max;
    cfg->batch_ms = (unsigned)s->batch_ms;
    cfg->linger_ms = (unsigned)s->linger_ms;
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

/*
 * Pops up to batch_max records (bounded by the frame size), encodes them as
 * one bus message and sends it. Called with mu held; drops it while encoding
 * and sending.
 */
static void send_batch(am_publisher *pub, struct record *batch)
{
    size_t n = 0;
    size_t total = 4 + 16 + strlen(pub->st.source_id) + 32;
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

    nng_msg *msg = NULL;
    int rv = nng_msg_alloc(&msg, total);
    size_t used = 0;
    if (rv == 0) {
        uint8_t *body = nng_msg_body(msg);
        used = am_frame_header(body, total, pub->st.source_id, pub->st.epoch, first_seq);
        for (size_t i = 0; i < n && used; i++) {
            size_t w = am_frame_metric(body + used, total - used, batch[i].data, batch[i].len);
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
    } else {
        am_log_error("bus message allocation failed: %s", nng_strerror(rv));
    }
    for (size_t i = 0; i < n; i++)
        free(batch[i].data);

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

static int dial_all(am_publisher *pub, const char *urls)
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
        if (am_bus_dial(pub->sock, items[i], &pub->cfg.tls, err, sizeof err) != AM_OK) {
            am_log_error("publisher: %s", err);
            rc = AM_EINVAL;
        }
    }
    free(copy);
    return rc;
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
    if ((rc = dial_all(pub, cfg->urls ? cfg->urls : "")) != AM_OK)
        goto out;
    if (pthread_create(&pub->thread, NULL, sender_main, pub) != 0) {
        rc = AM_ENOMEM;
        goto out;
    }
    pub->thread_started = true;
    am_log_info("publisher %s epoch %lld dialling %s", pub->st.source_id, (long long)pub->st.epoch,
                cfg->urls);
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
    if (pub->sock_open)
        nng_close(pub->sock);
    if (final)
        am_publisher_stats(pub, final);
    if (pub->ring) {
        for (size_t i = 0; i < pub->count; i++)
            free(pub->ring[(pub->head + i) % pub->cfg.queue_max].data);
        free(pub->ring);
    }
    pthread_cond_destroy(&pub->work);
    pthread_cond_destroy(&pub->empty);
    pthread_mutex_destroy(&pub->mu);
    free(pub);
}
