/*
 * The gateway's event loop. One thread waits in epoll_wait on the sockets
 * of its libcurl multi handle, on the HTTP server's descriptor and on an
 * eventfd for jobs handed over from other threads, then serves what is
 * ready: the server's requests (whose handlers submit jobs), the jobs'
 * transfers and their callbacks, and the responses that finished calls
 * handed back. The transfers run through libcurl's socket interface
 * (curl_multi_socket_action): a wake-up costs what its ready sockets
 * cost, not what every open transfer does, so a thousand slow streams
 * cost no more per token than ten. Nothing waits for another thread on a
 * request's path, and many requests are served per wake-up. The
 * transfers share the multi handle's cache of kept-alive connections;
 * easy handles are kept for the next jobs.
 */
#include "loop.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ollama.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_SPARE       256 /* easy handles kept for the next jobs */
#define MAX_CONNECTIONS 256 /* kept-alive connections to Ollama */
#define TICK_MS         10
#define IDLE_MS         1000
#define MAX_EVENTS      256 /* epoll events taken per wake-up */

/* epoll tags of the loop's own descriptors; a libcurl socket's tag is the socket. */
#define TAG_HTTP   ((uint64_t)1 << 32)
#define TAG_WAKE   ((uint64_t)2 << 32)
#define TAG_CLIENT ((uint64_t)3 << 32) /* | the client's socket */

struct gw_loop {
    pthread_t thread;
    bool started, joined;
    CURLM *multi;
    am_http_server *http;
    int ep;             /* epoll: libcurl's sockets, the server's descriptor, wake */
    int wake;           /* eventfd: jobs were queued, or stopping began */
    pthread_mutex_t mu; /* guards the queue, stopping and deadline */
    struct gw_job *head, *tail;
    bool stopping;
    int64_t deadline_ns;
    /* The thread's own. */
    struct gw_job *running;
    int64_t curl_due_ns; /* when libcurl wants its timeout action; -1: no timer */
    int64_t tick_due_ns; /* the next look for paused transfers */
    struct fd_slot *fds; /* by descriptor */
    size_t nfds;
    void *spare[MAX_SPARE];
    int nspare;
};

/*
 * What the loop knows of a socket, by descriptor. A connection's socket
 * stays in the epoll set while it waits in libcurl's cache between
 * transfers, so that a call on a kept-alive connection costs no epoll_ctl;
 * that is safe only for sockets the loop saw opened and sees closed
 * (S_OWNED, by the callbacks below). Others (the resolver's wake-up
 * pipe) leave the set as libcurl lets go of them.
 */
enum {
    S_IN = 1,     /* registered for EPOLLIN */
    S_OUT = 2,    /* registered for EPOLLOUT */
    S_SET = 4,    /* in the epoll set */
    S_WANTED = 8, /* libcurl waits on it (not only cached) */
    S_OWNED = 16, /* opened through on_open; on_close will see it closed */
};

/* What the loop knows of a descriptor: a libcurl socket's S_* flags, or the job whose waiting
 * client it is. */
struct fd_slot {
    uint8_t sock;
    struct gw_job *client_of;
};

/* The slot of descriptor fd, the table grown to hold it; NULL when it cannot grow. */
static struct fd_slot *fd_slot(gw_loop *l, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= l->nfds) {
        size_t n = l->nfds ? l->nfds : 256;
        while (n <= (size_t)fd)
            n *= 2;
        struct fd_slot *t = realloc(l->fds, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + l->nfds, 0, (n - l->nfds) * sizeof *t);
        l->fds = t;
        l->nfds = n;
    }
    return &l->fds[fd];
}

/* The state of libcurl's socket s; NULL when the table cannot grow. */
static uint8_t *sock_state(gw_loop *l, curl_socket_t s)
{
    struct fd_slot *slot = fd_slot(l, s);
    return slot ? &slot->sock : NULL;
}

/* CURLOPT_OPENSOCKETFUNCTION: a new socket for a connection to Ollama. */
static curl_socket_t on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    gw_loop *l = clientp;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    uint8_t *st = s >= 0 ? sock_state(l, s) : NULL;
    if (st)
        *st = S_OWNED;
    return s >= 0 ? s : CURL_SOCKET_BAD;
}

/* CURLOPT_CLOSESOCKETFUNCTION: closing takes the socket out of the epoll set. */
static int on_close(void *clientp, curl_socket_t s)
{
    gw_loop *l = clientp;
    if (s >= 0 && (size_t)s < l->nfds)
        l->fds[s].sock = 0;
    return close(s);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl says which events of socket s it waits for. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    gw_loop *l = userp;
    uint8_t *st = sock_state(l, s);
    bool kept = st && (*st & (S_OWNED | S_SET)) == (S_OWNED | S_SET);
    if (what == CURL_POLL_REMOVE) {
        if (kept) {
            *st &= (uint8_t)~S_WANTED; /* back in the cache, or about to be closed */
            return 0;
        }
        /* The socket may be closed already, which took it out of the set. */
        (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, s, NULL);
        if (st)
            *st &= S_OWNED;
        return 0;
    }
    uint8_t want =
        (uint8_t)(((what & CURL_POLL_IN) ? S_IN : 0) | ((what & CURL_POLL_OUT) ? S_OUT : 0));
    if (kept && (*st & (S_IN | S_OUT)) == want) {
        *st |= S_WANTED;
        return 0;
    }
    struct epoll_event ev = {.data.u64 = (uint64_t)s};
    if (want & S_IN)
        ev.events |= EPOLLIN;
    if (want & S_OUT)
        ev.events |= EPOLLOUT;
    int op = kept ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(l->ep, op, s, &ev);
    if (rc && errno == (op == EPOLL_CTL_MOD ? ENOENT : EEXIST))
        rc = epoll_ctl(l->ep, op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev);
    if (rc) {
        /*
         * Out of kernel memory or epoll watches: the transfer waits for its
         * timeout. Nothing is recorded, so the next change tries again
         * (an error returned here would make libcurl give up the whole
         * multi handle).
         */
        am_log_warn("cannot watch a connection to Ollama: %s", strerror(errno));
        if (st)
            *st &= S_OWNED;
        return 0;
    }
    if (st)
        *st = (uint8_t)((*st & S_OWNED) | S_SET | S_WANTED | want);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl wants a timeout action in ms (0: at once; -1: none). */
static int on_timer(CURLM *multi, long ms, void *userp)
{
    (void)multi;
    gw_loop *l = userp;
    l->curl_due_ns = ms < 0 ? -1 : am_clock_mono_ns() + (int64_t)ms * 1000000;
    return 0;
}

static void wake_loop(gw_loop *l)
{
    uint64_t one = 1;
    (void)!write(l->wake, &one, sizeof one);
}

static void put_spare(gw_loop *l, void *easy)
{
    if (l->nspare < MAX_SPARE)
        l->spare[l->nspare++] = easy;
    else
        curl_easy_cleanup(easy);
}

/* Watches the client of a job that has run GW_WATCH_MS, if it has one (see gw_job.client_fd). */
static void watch(gw_loop *l, struct gw_job *job)
{
    int fd = job->client_fd(job);
    if (fd < 0)
        return;
    struct fd_slot *slot = fd_slot(l, fd);
    if (!slot)
        return;
    /* The end of the client's side only: a request it sends meanwhile is no departure. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = TAG_CLIENT | (uint32_t)fd};
    if (slot->client_of || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev)) {
        job->client_fd = NULL; /* cannot be watched: not tried again */
        return;
    }
    slot->client_of = job;
    job->watch_fd = fd;
}

static void unwatch(gw_loop *l, struct gw_job *job)
{
    if (job->watch_fd < 0)
        return;
    (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, job->watch_fd, NULL);
    l->fds[job->watch_fd].client_of = NULL;
    job->watch_fd = -1;
}

void gw_job_unwatch(struct gw_job *job)
{
    if (job->loop)
        unwatch(job->loop, job);
    job->client_fd = NULL;
}

static void finish_job(gw_loop *l, struct gw_job *job, int curl_code);

/*
 * Events on watched client sockets: a client whose side has ended (the
 * socket reads as closed, or fails) has left, and its transfer ends.
 */
static void client_events(gw_loop *l, const struct epoll_event *ev, int n)
{
    for (int i = 0; i < n; i++) {
        if ((ev[i].data.u64 & ~(uint64_t)UINT32_MAX) != TAG_CLIENT)
            continue;
        int fd = (int)(uint32_t)ev[i].data.u64;
        struct gw_job *job = (size_t)fd < l->nfds ? l->fds[fd].client_of : NULL;
        if (!job)
            continue; /* ended earlier in this pass */
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
            /*
             * Its side ended with bytes not yet read by the server (sent
             * after the request was suspended): left alone, not watched again.
             */
            gw_job_unwatch(job);
            continue;
        }
        job->client_left = true;
        finish_job(l, job, CURLE_ABORTED_BY_CALLBACK);
    }
}

static void start_job(gw_loop *l, struct gw_job *job)
{
    void *easy = l->nspare > 0 ? l->spare[--l->nspare] : am_curl_easy_new();
    if (!easy) {
        job->done(job, -1);
        return;
    }
    if (job->start(job, easy)) {
        put_spare(l, easy);
        job->done(job, -1);
        return;
    }
    curl_easy_setopt(easy, CURLOPT_PRIVATE, job);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, l);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, l);
    if (curl_multi_add_handle(l->multi, easy) != CURLM_OK) {
        put_spare(l, easy);
        job->done(job, CURLE_OUT_OF_MEMORY);
        return;
    }
    job->easy = easy;
    job->loop = l;
    job->watch_fd = -1;
    job->client_left = false;
    job->started_ns = am_clock_mono_ns();
    job->prev = NULL;
    job->next = l->running;
    if (l->running)
        l->running->prev = job;
    l->running = job;
}

static void finish_job(gw_loop *l, struct gw_job *job, int curl_code)
{
    void *easy = job->easy;
    unwatch(l, job);
    curl_multi_remove_handle(l->multi, easy);
    if (job->prev)
        job->prev->next = job->next;
    else
        l->running = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->done(job, curl_code);
    /* Released only now: the job's state reads the handle until done returns. */
    put_spare(l, easy);
}

/* Ends the transfers that are over. */
static void end_transfers(gw_loop *l)
{
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(l->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg does not survive curl_multi_remove_handle. */
        CURLcode cc = msg->data.result;
        struct gw_job *job = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        finish_job(l, job, cc);
    }
}

/* Runs the transfers whose sockets are ready, then libcurl's timeout action if due. */
static void run_transfers(gw_loop *l, const struct epoll_event *ev, int n)
{
    int still = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 >= TAG_HTTP)
            continue;
        curl_socket_t s = (curl_socket_t)ev[i].data.u64;
        if ((size_t)s < l->nfds && (l->fds[s].sock & (S_SET | S_WANTED)) == S_SET) {
            /*
             * A cached connection that Ollama closed, or wrote to unasked:
             * libcurl finds out when it next takes it.
             */
            (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, s, NULL);
            l->fds[s].sock &= S_OWNED;
            continue;
        }
        int mask = 0;
        if (ev[i].events & EPOLLIN)
            mask |= CURL_CSELECT_IN;
        if (ev[i].events & EPOLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (ev[i].events & (EPOLLERR | EPOLLHUP))
            mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(l->multi, s, mask, &still);
    }
    if (l->curl_due_ns >= 0 && am_clock_mono_ns() >= l->curl_due_ns) {
        l->curl_due_ns = -1;
        curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
    end_transfers(l);
}

/* wait_ms shortened to reach due_ns (-1: none) from now. */
static long until(long wait_ms, int64_t due_ns, int64_t now)
{
    if (due_ns < 0)
        return wait_ms;
    int64_t ms = due_ns <= now ? 0 : (due_ns - now + 999999) / 1000000;
    return ms < wait_ms ? (long)ms : wait_ms;
}

static void *loop_main(void *arg)
{
    gw_loop *l = arg;
    struct epoll_event ev[MAX_EVENTS];
    int nev = 0;
    bool http_due = l->http != NULL; /* the server has work: ready, or its timeout came */
    for (;;) {
        /* Requests first: their jobs start in this same pass. */
        if (http_due)
            am_http_run(l->http);
        pthread_mutex_lock(&l->mu);
        struct gw_job *q = l->head;
        l->head = l->tail = NULL;
        bool stopping = l->stopping;
        int64_t deadline = l->deadline_ns;
        pthread_mutex_unlock(&l->mu);
        while (q) {
            struct gw_job *job = q;
            q = q->next;
            start_job(l, job);
        }
        /* The answers of the calls that ended, and streams' new events, go out in this same pass.
         */
        run_transfers(l, ev, nev);
        client_events(l, ev, nev);
        if (l->http && am_http_pending(l->http))
            am_http_run(l->http);

        /* Paused transfers are looked at every TICK_MS, not on every wake-up. */
        int64_t now = am_clock_mono_ns();
        if (l->running && now >= l->tick_due_ns) {
            for (struct gw_job *job = l->running, *next; job; job = next) {
                next = job->next; /* finish_job unlinks job */
                int cc = job->wants_tick && job->tick ? job->tick(job) : 0;
                if (cc) {
                    finish_job(l, job, cc);
                    continue;
                }
                if (job->client_fd && job->watch_fd < 0 &&
                    now - job->started_ns >= (int64_t)GW_WATCH_MS * 1000000)
                    watch(l, job);
            }
            l->tick_due_ns = now + (int64_t)TICK_MS * 1000000;
        }

        long wait_ms = l->running ? until(IDLE_MS, l->tick_due_ns, now) : IDLE_MS;
        if (stopping) {
            if (l->running && am_clock_mono_ns() >= deadline) {
                am_log_warn("aborting the calls to Ollama still running at shutdown");
                while (l->running)
                    finish_job(l, l->running, CURLE_ABORTED_BY_CALLBACK);
            }
            /* Jobs submitted from now on are ended by gw_loop_submit. */
            pthread_mutex_lock(&l->mu);
            bool idle = !l->running && !l->head;
            pthread_mutex_unlock(&l->mu);
            if (idle) {
                if (l->http)
                    am_http_run(l->http); /* what the last calls answered */
                break;
            }
            wait_ms = wait_ms < TICK_MS * 10 ? wait_ms : TICK_MS * 10;
        }
        wait_ms = until(wait_ms, l->curl_due_ns, now);
        long http_ms = l->http ? am_http_timeout_ms(l->http) : -1;
        if (http_ms >= 0 && http_ms < wait_ms)
            wait_ms = http_ms;
        /*
         * Requests served by the second run above queued their jobs, and
         * the ticks may have resumed connections, without a wake-up.
         */
        pthread_mutex_lock(&l->mu);
        if (l->head)
            wait_ms = 0;
        pthread_mutex_unlock(&l->mu);
        bool pending = l->http && am_http_pending(l->http);
        if (pending)
            wait_ms = 0;
        nev = epoll_wait(l->ep, ev, MAX_EVENTS, (int)wait_ms);
        if (nev < 0)
            nev = 0; /* EINTR */
        /* The server runs when its descriptor is ready or its timeout has come, not on every
         * wake-up. */
        http_due = pending || (http_ms >= 0 && http_ms <= wait_ms &&
                               am_clock_mono_ns() >= now + http_ms * 1000000);
        for (int i = 0; i < nev; i++) {
            if (ev[i].data.u64 == TAG_HTTP) {
                http_due = true;
            } else if (ev[i].data.u64 == TAG_WAKE) {
                uint64_t n;
                (void)!read(l->wake, &n, sizeof n);
            }
        }
    }
    return NULL;
}

void gw_loop_submit(gw_loop *l, struct gw_job *job)
{
    job->next = NULL;
    job->easy = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mu);
        job->done(job, -1);
        return;
    }
    /*
     * The loop takes the whole queue at once, right after serving the
     * requests: from its own thread, or into a queue that already has a
     * wake-up coming, no wake-up is needed.
     */
    bool wake = !l->head && !(l->started && pthread_equal(pthread_self(), l->thread));
    if (l->tail)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
    pthread_mutex_unlock(&l->mu);
    if (wake)
        wake_loop(l);
}

int gw_loop_new(gw_loop **out)
{
    gw_loop *l = calloc(1, sizeof *l);
    if (!l)
        return AM_ENOMEM;
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    if (l->ep < 0 || l->wake < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &ev))
        goto fail;
    /* curl_multi_init needs libcurl's global set-up, which the first easy handle does. */
    curl_easy_cleanup(am_curl_easy_new());
    l->multi = curl_multi_init();
    if (!l->multi)
        goto fail;
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTIONS);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    l->curl_due_ns = -1;
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return AM_OK;
fail:
    if (l->ep >= 0)
        close(l->ep);
    if (l->wake >= 0)
        close(l->wake);
    free(l);
    return AM_ENOMEM;
}

int gw_loop_start(gw_loop *l, am_http_server *http)
{
    l->http = http;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_HTTP};
    if (http && epoll_ctl(l->ep, EPOLL_CTL_ADD, am_http_fd(http), &ev))
        return AM_ENOMEM;
    /* Set under the lock: gw_loop_submit compares the caller's thread with it. */
    pthread_mutex_lock(&l->mu);
    int rc = pthread_create(&l->thread, NULL, loop_main, l);
    l->started = rc == 0;
    pthread_mutex_unlock(&l->mu);
    return rc == 0 ? AM_OK : AM_ENOMEM;
}

void gw_loop_stop_begin(gw_loop *l, int timeout_ms)
{
    pthread_mutex_lock(&l->mu);
    if (!l->stopping) {
        l->stopping = true;
        l->deadline_ns = am_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    }
    pthread_mutex_unlock(&l->mu);
    wake_loop(l);
}

void gw_loop_stop(gw_loop *l, int timeout_ms)
{
    gw_loop_stop_begin(l, timeout_ms);
    pthread_mutex_lock(&l->mu);
    bool join = l->started && !l->joined;
    l->joined = true;
    pthread_mutex_unlock(&l->mu);
    if (join)
        pthread_join(l->thread, NULL);
}

void gw_loop_free(gw_loop *l)
{
    if (!l)
        return;
    gw_loop_stop(l, 0);
    /* Jobs of a loop that never ran end here. */
    for (struct gw_job *job = l->head, *next; job; job = next) {
        next = job->next;
        job->done(job, -1);
    }
    while (l->nspare > 0)
        curl_easy_cleanup(l->spare[--l->nspare]);
    curl_multi_cleanup(l->multi);
    close(l->ep);
    close(l->wake);
    free(l->fds);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
