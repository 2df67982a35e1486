/*
 * The gateway's event loop. One thread waits in curl_multi_poll on the
 * transfers of its libcurl multi handle and on the HTTP server's epoll
 * descriptor, then serves what is ready: the server's requests (whose
 * handlers submit jobs), the jobs' transfers and their callbacks, and the
 * responses that finished calls handed back. Nothing waits for another
 * thread on a request's path, and many requests are served per wake-up.
 * The transfers share the multi handle's cache of kept-alive connections;
 * easy handles are kept for the next jobs.
 */
#include "loop.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ollama.h"

#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_SPARE       256 /* easy handles kept for the next jobs */
#define MAX_CONNECTIONS 256 /* kept-alive connections to Ollama */
#define TICK_MS         10
#define IDLE_MS         1000

struct gw_loop {
    pthread_t thread;
    bool started, joined;
    CURLM *multi;
    am_http_server *http;
    pthread_mutex_t mu; /* guards the queue, stopping and deadline */
    struct gw_job *head, *tail;
    bool stopping;
    int64_t deadline_ns;
    /* The thread's own. */
    struct gw_job *running;
    void *spare[MAX_SPARE];
    int nspare;
};

static void put_spare(gw_loop *l, void *easy)
{
    if (l->nspare < MAX_SPARE)
        l->spare[l->nspare++] = easy;
    else
        curl_easy_cleanup(easy);
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
    if (curl_multi_add_handle(l->multi, easy) != CURLM_OK) {
        put_spare(l, easy);
        job->done(job, CURLE_OUT_OF_MEMORY);
        return;
    }
    job->easy = easy;
    job->prev = NULL;
    job->next = l->running;
    if (l->running)
        l->running->prev = job;
    l->running = job;
}

static void finish_job(gw_loop *l, struct gw_job *job, int curl_code)
{
    void *easy = job->easy;
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

/* Runs the transfers and ends those that are over; returns how many ended. */
static int run_transfers(gw_loop *l)
{
    int still = 0, left = 0, ended = 0;
    CURLMsg *msg;
    curl_multi_perform(l->multi, &still);
    while ((msg = curl_multi_info_read(l->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        /* msg does not survive curl_multi_remove_handle. */
        CURLcode cc = msg->data.result;
        struct gw_job *job = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        finish_job(l, job, cc);
        ended++;
    }
    return ended;
}

static void *loop_main(void *arg)
{
    gw_loop *l = arg;
    struct curl_waitfd wfd = {.fd = l->http ? am_http_fd(l->http) : -1, .events = CURL_WAIT_POLLIN};
    for (;;) {
        /* Requests first: their jobs start in this same pass. */
        if (l->http)
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
        run_transfers(l);
        if (l->http && am_http_pending(l->http))
            am_http_run(l->http);

        bool ticking = false;
        for (struct gw_job *job = l->running; job; job = job->next) {
            if (job->wants_tick && job->tick)
                job->tick(job);
            ticking |= job->wants_tick;
        }

        long wait_ms = ticking ? TICK_MS : IDLE_MS;
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
            wait_ms = TICK_MS * 10;
        }
        if (l->http) {
            long t = am_http_timeout_ms(l->http);
            if (t >= 0 && t < wait_ms)
                wait_ms = t;
        }
        /*
         * Requests served by the second run above queued their jobs, and
         * the ticks may have resumed connections, without a wake-up.
         */
        pthread_mutex_lock(&l->mu);
        if (l->head)
            wait_ms = 0;
        pthread_mutex_unlock(&l->mu);
        if (l->http && am_http_pending(l->http))
            wait_ms = 0;
        curl_multi_poll(l->multi, &wfd, wfd.fd >= 0 ? 1 : 0, (int)wait_ms, NULL);
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
        curl_multi_wakeup(l->multi);
}

int gw_loop_new(gw_loop **out)
{
    gw_loop *l = calloc(1, sizeof *l);
    if (!l)
        return AM_ENOMEM;
    /* curl_multi_init needs libcurl's global set-up, which the first easy handle does. */
    curl_easy_cleanup(am_curl_easy_new());
    l->multi = curl_multi_init();
    if (!l->multi) {
        free(l);
        return AM_ENOMEM;
    }
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTIONS);
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return AM_OK;
}

int gw_loop_start(gw_loop *l, am_http_server *http)
{
    l->http = http;
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
    curl_multi_wakeup(l->multi);
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
    pthread_mutex_destroy(&l->mu);
    free(l);
}
