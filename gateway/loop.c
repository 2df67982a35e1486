/*
 * The gateway's calls to Ollama. Each upstream thread drives a libcurl
 * multi handle: it starts the jobs handed to it, waits in curl_multi_poll
 * for any of its transfers (or curl_multi_wakeup, for a new job), and runs
 * the jobs' callbacks as data arrives. Its transfers share the multi
 * handle's cache of kept-alive connections, and its easy handles are kept
 * for the next jobs.
 */
#include "upstream.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ollama.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_SPARE       256 /* easy handles kept for the next jobs, per thread */
#define MAX_CONNECTIONS 256 /* kept-alive connections to Ollama, per thread */
#define TICK_MS         10

struct loop {
    pthread_t thread;
    CURLM *multi;
    pthread_mutex_t mu; /* guards the queue, stopping and deadline */
    struct gw_job *head, *tail;
    bool stopping;
    int64_t deadline_ns;
    /* The thread's own. */
    struct gw_job *running;
    void *spare[MAX_SPARE];
    int nspare;
};

struct gw_upstream {
    int n;
    _Atomic unsigned next;
    struct loop *loops;
};

static void put_spare(struct loop *l, void *easy)
{
    if (l->nspare < MAX_SPARE)
        l->spare[l->nspare++] = easy;
    else
        curl_easy_cleanup(easy);
}

static void start_job(struct loop *l, struct gw_job *job)
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

static void finish_job(struct loop *l, struct gw_job *job, int curl_code)
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

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    for (;;) {
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

        int still = 0, left = 0;
        curl_multi_perform(l->multi, &still);
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

        bool ticking = false;
        for (struct gw_job *job = l->running; job; job = job->next) {
            if (job->wants_tick && job->tick)
                job->tick(job);
            ticking |= job->wants_tick;
        }

        int wait_ms = ticking ? TICK_MS : 1000;
        if (stopping) {
            if (l->running && am_clock_mono_ns() >= deadline) {
                am_log_warn("aborting the calls to Ollama still running at shutdown");
                while (l->running)
                    finish_job(l, l->running, CURLE_ABORTED_BY_CALLBACK);
            }
            /* Jobs submitted from now on are ended by gw_upstream_submit. */
            pthread_mutex_lock(&l->mu);
            bool idle = !l->running && !l->head;
            pthread_mutex_unlock(&l->mu);
            if (idle)
                break;
            wait_ms = TICK_MS * 10;
        }
        curl_multi_poll(l->multi, NULL, 0, wait_ms, NULL);
    }
    return NULL;
}

void gw_upstream_submit(gw_upstream *u, struct gw_job *job)
{
    struct loop *l = &u->loops[atomic_fetch_add(&u->next, 1) % (unsigned)u->n];
    job->next = NULL;
    job->easy = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mu);
        job->done(job, -1);
        return;
    }
    /* The thread takes the whole queue at once: one wake-up per empty queue is enough. */
    bool wake = !l->head;
    if (l->tail)
        l->tail->next = job;
    else
        l->head = job;
    l->tail = job;
    pthread_mutex_unlock(&l->mu);
    if (wake)
        curl_multi_wakeup(l->multi);
}

static void loop_free(struct loop *l)
{
    while (l->nspare > 0)
        curl_easy_cleanup(l->spare[--l->nspare]);
    curl_multi_cleanup(l->multi);
    pthread_mutex_destroy(&l->mu);
}

int gw_upstream_new(gw_upstream **out, int threads)
{
    gw_upstream *u = calloc(1, sizeof *u);
    if (!u)
        return AM_ENOMEM;
    u->loops = calloc((size_t)(threads > 0 ? threads : 1), sizeof *u->loops);
    if (!u->loops) {
        free(u);
        return AM_ENOMEM;
    }
    /* curl_multi_init needs libcurl's global set-up, which the first easy handle does. */
    curl_easy_cleanup(am_curl_easy_new());
    for (int i = 0; i < (threads > 0 ? threads : 1); i++) {
        struct loop *l = &u->loops[i];
        l->multi = curl_multi_init();
        if (!l->multi)
            goto fail;
        curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTIONS);
        pthread_mutex_init(&l->mu, NULL);
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            loop_free(l);
            goto fail;
        }
        u->n++;
    }
    *out = u;
    return AM_OK;
fail:
    gw_upstream_free(u, 0);
    return AM_ENOMEM;
}

void gw_upstream_free(gw_upstream *u, int timeout_ms)
{
    if (!u)
        return;
    int64_t deadline = am_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (int i = 0; i < u->n; i++) {
        struct loop *l = &u->loops[i];
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        l->deadline_ns = deadline;
        pthread_mutex_unlock(&l->mu);
        curl_multi_wakeup(l->multi);
    }
    for (int i = 0; i < u->n; i++) {
        pthread_join(u->loops[i].thread, NULL);
        loop_free(&u->loops[i]);
    }
    free(u->loops);
    free(u);
}
