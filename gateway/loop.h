/* The gateway's event loop: one thread serves the HTTP connections and runs the calls to Ollama. */
#ifndef GW_LOOP_H
#define GW_LOOP_H

#include "am_http.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_loop gw_loop;

/*
 * One transfer. The owner fills the callbacks and submits it; they run on
 * the loop's thread (done also on the submitter's, when the job comes
 * after gw_loop_stop began).
 */
struct gw_job {
    /*
     * Sets up easy (an am_curl_easy_new handle, which may carry options of
     * an earlier job: set every one the transfer needs) for the transfer.
     * Non-zero: the job is not run, and done follows with curl_code -1.
     */
    int (*start)(struct gw_job *job, void *easy);
    /*
     * The transfer ended with curl_code (a CURLcode; -1 when it never
     * started). The job belongs to its owner again; done may free it.
     */
    void (*done)(struct gw_job *job, int curl_code);
    /*
     * Called about every 10 ms while wants_tick is set (a paused transfer);
     * may be NULL. Non-zero (a CURLcode): the transfer ends with it, and
     * done follows at once.
     */
    int (*tick)(struct gw_job *job);
    bool wants_tick; /* set and cleared by the owner, on the loop's thread */
    /*
     * May be NULL. The socket of the client waiting for the job's answer,
     * or -1 (none, or no longer). Once the transfer has run for
     * GW_WATCH_MS the loop watches it: a client that leaves ends the
     * transfer (done follows with CURLE_ABORTED_BY_CALLBACK and
     * client_left set), instead of Ollama generating an answer nobody
     * reads. An owner that answers while the transfer runs (a stream's
     * first token) calls gw_job_unwatch first.
     */
    int (*client_fd)(struct gw_job *job);
    bool client_left;           /* set by the loop */
    void *easy;                 /* the transfer's handle while it runs (for curl_easy_pause) */
    struct gw_job *prev, *next; /* the loop's */
    gw_loop *loop;              /* the loop's */
    int64_t started_ns;         /* the loop's */
    int watch_fd;               /* the loop's: the client socket watched, -1: none */
};

/* How long a transfer runs before its client's socket is watched. */
#define GW_WATCH_MS 100

/* Stops watching the job's client, for good; on the loop's thread. */
void gw_job_unwatch(struct gw_job *job);

/* A loop, not yet running. On success *out owns it; free with gw_loop_free. */
int gw_loop_new(gw_loop **out);

/*
 * Starts the loop's thread. From then on it also runs http (started with
 * external_loop; may be NULL), whose handlers therefore run on it. 0 or
 * AM_ENOMEM.
 */
int gw_loop_start(gw_loop *l, am_http_server *http);

/* Hands job to the loop. Thread-safe; never waits for a transfer. */
void gw_loop_submit(gw_loop *l, struct gw_job *job);

/* Starts stopping the loop (as gw_loop_stop) without waiting for it. */
void gw_loop_stop_begin(gw_loop *l, int timeout_ms);

/*
 * Stops the loop: a job submitted from now on ends at once (done with
 * -1); running transfers have timeout_ms to finish, then are aborted (done
 * with CURLE_ABORTED_BY_CALLBACK), and the server gets a last run to send
 * what they answered. Joins the thread; http may be stopped after it. A
 * timeout_ms already given to gw_loop_stop_begin stands.
 */
void gw_loop_stop(gw_loop *l, int timeout_ms);

/* Stops the loop if it runs (at once), and frees it; accepts NULL. */
void gw_loop_free(gw_loop *l);

#endif
