/*
 * The metric publisher: a bounded queue in front of an NNG PUB socket, and a
 * bounded replay ring of what was sent, resent when a collector asks.
 */
#ifndef AM_PUBLISHER_H
#define AM_PUBLISHER_H

#include "am_buf.h"
#include "am_metric.h"

#include "am_bus_tls.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct am_publisher am_publisher;

struct am_publisher_config {
    bool enabled;          /* false: every call is a no-op (METRICS_ENABLED=false) */
    const char *urls;      /* comma-separated bus URLs to dial (METRICS_BUS_URLS) */
    const char *source_id; /* publisher identity; NULL: "<program>@<hostname>" */
    size_t queue_max; /* metrics held at most; the oldest is dropped past it (default 100000) */
    size_t queue_max_bytes; /* bytes held at most, same policy (default 32 MiB) */
    unsigned batch_max;     /* metrics per bus message (default 512) */
    unsigned batch_ms;      /* a partial batch waits at most this long (default 50) */
    unsigned linger_ms; /* on close, time allowed to reach a subscriber and drain (default 2000) */
    int sendbuf;        /* NNG_OPT_SENDBUF, messages per subscriber (default 8192) */
    struct am_bus_tls tls; /* for tls+tcp:// URLs (METRICS_BUS_TLS_*); unset by default */
    /*
     * Collectors' replay request URLs to dial (METRICS_REPLAY_URLS); NULL or
     * empty: no replay, sent metrics are freed at once (the default here;
     * services get tcp://127.0.0.1:5557 from their settings).
     */
    const char *replay_urls;
    size_t replay_max_bytes; /* sent metrics kept to resend (default 16 MiB); 0: no replay */
    unsigned heartbeat_ms;   /* how often the stream's progress is announced (default 1000) */
};

/* Fills cfg with the defaults above (enabled, tcp://127.0.0.1:5556). */
void am_publisher_config_init(struct am_publisher_config *cfg);

/* The publisher's settings as a service reads them (see AM_PUBLISHER_SETTINGS). */
struct am_publisher_settings {
    bool enabled;
    long long queue_max;
    long long batch_max;
    long long batch_ms;
    long long linger_ms;
    long long replay_max_mib;
    const char *replay_urls;
    struct am_bus_tls tls;
};

/*
 * Rows of a service's settings table (am_config.h) for the publisher, the
 * same in every service: METRICS_ENABLED, METRICS_QUEUE_MAX,
 * METRICS_BATCH_MAX, METRICS_BATCH_MS, METRICS_LINGER_MS, the replay ring's
 * METRICS_REPLAY_MAX_MIB and METRICS_REPLAY_URLS, and the bus's TLS files (METRICS_BUS_TLS_CA,
 * _CERT, _KEY). s is a struct am_publisher_settings; the bus URLs stay a row of the service's own.
 */
#define AM_PUBLISHER_SETTINGS(s)                                                                   \
    {"metrics-enabled",                                                                            \
     "METRICS_ENABLED",                                                                            \
     AM_SET_BOOL,                                                                                  \
     "true",                                                                                       \
     0,                                                                                            \
     0,                                                                                            \
     "publish a metric for every LLM call (false: publishing is a no-op)",                         \
     &(s).enabled},                                                                                \
        {"metrics-queue-max",                                                                      \
         "METRICS_QUEUE_MAX",                                                                      \
         AM_SET_INT,                                                                               \
         "100000",                                                                                 \
         1,                                                                                        \
         100000000,                                                                                \
         "metrics held while the bus is slow or no collector listens; past it the oldest is "      \
         "dropped and counted",                                                                    \
         &(s).queue_max},                                                                          \
        {"metrics-batch-max",       "METRICS_BATCH_MAX", AM_SET_INT, "512", 1, 8192,               \
         "metrics per bus message", &(s).batch_max},                                               \
        {"metrics-batch-ms",                                                                       \
         "METRICS_BATCH_MS",                                                                       \
         AM_SET_INT,                                                                               \
         "50",                                                                                     \
         1,                                                                                        \
         60000,                                                                                    \
         "how long a partial batch waits before it is sent",                                       \
         &(s).batch_ms},                                                                           \
        {"metrics-linger-ms",                                                                      \
         "METRICS_LINGER_MS",                                                                      \
         AM_SET_INT,                                                                               \
         "2000",                                                                                   \
         0,                                                                                        \
         3600000,                                                                                  \
         "at shutdown, how long to wait for a collector and for the queue to drain",               \
         &(s).linger_ms},                                                                          \
        {"metrics-replay-max-mib",                                                                 \
         "METRICS_REPLAY_MAX_MIB",                                                                 \
         AM_SET_INT,                                                                               \
         "16",                                                                                     \
         0,                                                                                        \
         4096,                                                                                     \
         "memory for metrics already sent, kept to resend what a collector asks for again; "       \
         "past it the oldest are forgotten (0: no replay)",                                        \
         &(s).replay_max_mib},                                                                     \
        {"metrics-replay-urls",                                                                    \
         "METRICS_REPLAY_URLS",                                                                    \
         AM_SET_STRING,                                                                            \
         "tcp://127.0.0.1:5557",                                                                   \
         0,                                                                                        \
         0,                                                                                        \
         "comma-separated replay URLs of the collectors (their METRICS_REPLAY_LISTEN), where "     \
         "they ask for missing metrics (empty: no replay)",                                        \
         &(s).replay_urls},                                                                        \
        AM_BUS_TLS_SETTINGS((s).tls)

/*
 * am_publisher_open for a service: the defaults, then its loaded settings,
 * dialling urls under the default source id.
 */
int am_publisher_open_settings(am_publisher **out, const struct am_publisher_settings *s,
                               const char *urls);

/* Copies loaded settings into cfg. */
void am_publisher_settings_apply(const struct am_publisher_settings *s,
                                 struct am_publisher_config *cfg);

struct am_publisher_stats {
    uint64_t queued;                /* accepted by am_publisher_send */
    uint64_t sent;                  /* handed to the bus */
    uint64_t batches;               /* bus messages sent */
    uint64_t dropped_queue_full;    /* oldest dropped while subscribers were connected */
    uint64_t dropped_no_subscriber; /* oldest dropped while held with no subscriber */
    uint64_t dropped_invalid;       /* rejected by validation or over AM_METRIC_MAX_PACKED */
    uint64_t dropped_send_error;    /* the bus refused the message */
    uint64_t dropped_shutdown;      /* still held when close gave up */
    uint64_t held;                  /* in the queue now */
    uint64_t held_bytes;
    uint64_t replay_requests;  /* replay requests served */
    uint64_t replay_malformed; /* replay requests refused as malformed */
    uint64_t resent;           /* metrics resent from the replay ring */
    uint64_t gone;             /* requested metrics announced gone (not in the ring) */
    uint64_t replay_held;      /* metrics in the replay ring now */
    uint64_t replay_held_bytes;
    int subscribers; /* connected subscriber pipes now */
    int64_t epoch;
    char source_id[256];
};

/*
 * Starts a publisher: dials every URL (retrying in the background) and
 * starts the sender thread. With replay, it also dials every replay URL
 * and starts a thread that serves the collectors' requests from the ring
 * and announces the stream's progress every heartbeat_ms. On success *out is owned by the caller
 * and freed with am_publisher_close. With enabled false nothing is dialled.
 */
int am_publisher_open(am_publisher **out, const struct am_publisher_config *cfg);

/*
 * Copies m into the queue and returns without waiting on the network.
 * Thread-safe. Returns 0, AM_EINVAL (m rejected, counted as dropped_invalid)
 * or AM_ENOMEM; the caller's request never depends on it. A full queue
 * drops its oldest metric, not this one. pub may be NULL (a no-op).
 */
int am_publisher_send(am_publisher *pub, const struct am_metric *m);

/* Waits until the queue is empty or timeout_ms passes; returns 0 or AM_ETIMEDOUT. */
int am_publisher_flush(am_publisher *pub, int timeout_ms);

/* A consistent snapshot of the counters. */
void am_publisher_stats(am_publisher *pub, struct am_publisher_stats *st);

/* Appends the counters in Prometheus text format, names prefixed with prefix. */
void am_publisher_write_prom(am_publisher *pub, struct am_buf *b, const char *prefix);

/*
 * Sends what is held (waiting up to linger_ms for a subscriber), closes the
 * socket and frees pub. What could not be sent is counted as
 * dropped_shutdown, in *final when it is not NULL. Accepts NULL.
 */
void am_publisher_close(am_publisher *pub, struct am_publisher_stats *final);

#endif
