/* Replay requests: asks publishers, with backoff, for the holes of their streams. */
#include "replay.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_replay.h"
#include "stats.h"

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Gaps reported by the writer and not yet taken in; past it they are given up, and counted. */
#define INBOX_MAX 65536
/* A new hole waits this long before the first request: the rest of a dropped connection may still
 * bring it. */
#define FIRST_ASK_NS (100 * 1000000LL)

struct gap {
    struct gap *next;
    int64_t epoch, from, to;
    char source_id[]; /* NUL-terminated */
};

struct cl_replay {
    nng_socket sock;
    bool sock_open;
    int64_t give_up_ns;
    int64_t last_walk_ns;
    pthread_mutex_t mu;
    struct gap *inbox, **inbox_tail; /* guarded by mu */
    size_t inbox_n;
};

int cl_replay_open(cl_replay **out, const struct cl_replay_config *cfg, char *err, size_t errlen)
{
    cl_replay *r = calloc(1, sizeof *r);
    int rv;

    if (!r)
        return AM_ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->inbox_tail = &r->inbox;
    r->give_up_ns = (int64_t)cfg->give_up_s * 1000000000LL;
    if (cfg->listen_url && *cfg->listen_url) {
        if ((rv = nng_pub0_open(&r->sock)) != 0) {
            snprintf(err, errlen, "cannot open the replay PUB socket: %s", nng_strerror(rv));
            cl_replay_close(r);
            return AM_ENET;
        }
        r->sock_open = true;
        /* Requests are small and re-sent until answered: a slow publisher loses some, not us. */
        nng_socket_set_int(r->sock, NNG_OPT_SENDBUF, 1024);
        int rc = am_bus_listen(r->sock, cfg->listen_url, cfg->tls, err, errlen);
        if (rc != AM_OK) {
            cl_replay_close(r);
            return rc;
        }
        am_log_info("asking publishers for missing metrics on %s", cfg->listen_url);
    }
    *out = r;
    return AM_OK;
}

void cl_replay_close(cl_replay *r)
{
    if (!r)
        return;
    if (r->sock_open)
        nng_close(r->sock);
    while (r->inbox) {
        struct gap *next = r->inbox->next;
        free(r->inbox);
        r->inbox = next;
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void cl_replay_count_given_up(const char *source_id, int64_t epoch, int64_t from, int64_t n,
                              const char *why)
{
    atomic_fetch_add(&cl_stats.replay_given_up, (uint64_t)n);
    if (from >= 0)
        am_log_warn("lost in %s epoch %lld: %lld metrics from seq %lld, given up (%s)", source_id,
                    (long long)epoch, (long long)n, (long long)from, why);
    else
        am_log_warn("lost in %s epoch %lld: %lld metrics of its oldest holes, given up (%s)",
                    source_id, (long long)epoch, (long long)n, why);
}

void cl_replay_report_gap(cl_replay *r, const char *source_id, int64_t epoch, int64_t from,
                          int64_t to)
{
    size_t idlen = strlen(source_id);
    struct gap *g = malloc(sizeof *g + idlen + 1);

    atomic_fetch_add(&cl_stats.metrics_gap, (uint64_t)(to - from));
    am_log_warn("gap in %s epoch %lld: %lld metrics missing from seq %lld (before this run's "
                "first message of the stream)",
                source_id, (long long)epoch, (long long)(to - from), (long long)from);
    if (!r) {
        free(g);
        return;
    }
    pthread_mutex_lock(&r->mu);
    bool room = g && r->inbox_n < INBOX_MAX;
    if (room) {
        g->next = NULL;
        g->epoch = epoch;
        g->from = from;
        g->to = to;
        memcpy(g->source_id, source_id, idlen + 1);
        *r->inbox_tail = g;
        r->inbox_tail = &g->next;
        r->inbox_n++;
    }
    pthread_mutex_unlock(&r->mu);
    if (!room) {
        free(g);
        cl_replay_count_given_up(source_id, epoch, from, to - from, "too many gaps at once");
    }
}

static void ask(void *arg, const char *source_id, int64_t epoch, const int64_t (*ranges)[2], int n)
{
    cl_replay *r = arg;
    struct am_seq_range rr[CL_STREAM_HOLES];
    uint8_t buf[AM_REPLAY_MSG_MAX];

    for (int i = 0; i < n; i++)
        rr[i] = (struct am_seq_range){ranges[i][0], ranges[i][1]};
    size_t len = am_request_encode(buf, sizeof buf, source_id, epoch, rr, (size_t)n);
    if (len == 0 || nng_send(r->sock, buf, len, NNG_FLAG_NONBLOCK) != 0) {
        am_log_debug("a replay request to %s was not sent", source_id);
        return;
    }
    atomic_fetch_add(&cl_stats.replay_requests, 1);
    am_log_debug("asked %s epoch %lld to resend %d ranges from seq %lld", source_id,
                 (long long)epoch, n, (long long)ranges[0][0]);
}

static void give_up(void *arg, const char *source_id, int64_t epoch, int64_t from, int64_t to)
{
    (void)arg;
    cl_replay_count_given_up(source_id, epoch, from, to - from, "no answer to replay requests");
}

void cl_replay_tick(cl_replay *r, cl_streams *s)
{
    pthread_mutex_lock(&r->mu);
    struct gap *list = r->inbox;
    r->inbox = NULL;
    r->inbox_tail = &r->inbox;
    r->inbox_n = 0;
    pthread_mutex_unlock(&r->mu);
    while (list) {
        struct gap *next = list->next;
        int64_t forgotten =
            cl_streams_add_hole(s, list->source_id, list->epoch, list->from, list->to);
        if (forgotten > 0)
            cl_replay_count_given_up(list->source_id, list->epoch, -1, forgotten,
                                     "too many holes in the stream");
        free(list);
        list = next;
    }

    int64_t now = am_clock_mono_ns();
    if (r->sock_open && now - r->last_walk_ns >= 50 * 1000000LL) {
        r->last_walk_ns = now;
        cl_streams_due(s, now, FIRST_ASK_NS, r->give_up_ns, ask, give_up, r);
    }
    atomic_store(&cl_stats.gap_pending, (uint64_t)cl_streams_pending(s));
}
