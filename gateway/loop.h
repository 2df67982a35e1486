/* The gateway's calls to Ollama: libcurl multi handles, each driven by a thread of its own. */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stdbool.h>

typedef struct gw_upstream gw_upstream;

/*
 * One transfer. The owner fills the callbacks and submits it; they run on
 * the upstream thread that took the job (done also on the submitter's,
 * when the job comes after gw_upstream_free began).
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
    /* Called about every 10 ms while wants_tick is set (a paused transfer); may be NULL. */
    void (*tick)(struct gw_job *job);
    bool wants_tick;            /* set and cleared by the owner, on the upstream thread */
    void *easy;                 /* the transfer's handle while it runs (for curl_easy_pause) */
    struct gw_job *prev, *next; /* the upstream's */
};

/* Starts threads upstream threads (at least 1). On success *out owns them; see gw_upstream_free. */
int gw_upstream_new(gw_upstream **out, int threads);

/* Hands job to an upstream thread. Thread-safe; never blocks on a transfer. */
void gw_upstream_submit(gw_upstream *u, struct gw_job *job);

/*
 * Stops: a job submitted from now on ends at once (done with -1); running
 * transfers have timeout_ms to finish, then are aborted (done with
 * CURLE_ABORTED_BY_CALLBACK). Joins the threads and frees u; accepts NULL.
 */
void gw_upstream_free(gw_upstream *u, int timeout_ms);

#endif
