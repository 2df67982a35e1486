/* athena-collector: flags, wiring and signals of the bus-to-PostgreSQL collector. */
#include "am_clock.h"
#include "am_config.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "chunkq.h"
#include "receiver.h"
#include "replay.h"
#include "spool.h"
#include "stats.h"
#include "writer.h"

#include <libpq-fe.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *database_url;
static const char *bus_listen;
static const char *replay_listen;
static long long replay_give_up_s;
static const char *listen_addr;
static long long queue_max_mib;
static long long batch_rows;
static long long recvbuf;
static long long backoff_max_ms;
static long long shutdown_timeout_ms;
static long long max_streams;
static const char *spool_dir;
static long long spool_max_mib;
static long long migrate_wait_s;
static bool migrate_only;
static struct am_bus_tls bus_tls;

static const struct am_setting settings[] = {
    {"database-url", "DATABASE_URL", AM_SET_STRING, "postgresql://localhost/athena", 0, 0,
     "PostgreSQL connection URL", &database_url},
    {"bus-listen", "METRICS_BUS_LISTEN", AM_SET_STRING, "tcp://0.0.0.0:5556", 0, 0,
     "bus URL the SUB socket listens on", &bus_listen},
    {"replay-listen", "METRICS_REPLAY_LISTEN", AM_SET_STRING, "tcp://0.0.0.0:5557", 0, 0,
     "bus URL where publishers (METRICS_REPLAY_URLS) take requests to resend missing metrics "
     "(empty: none)",
     &replay_listen},
    {"replay-give-up-s", "COLLECTOR_REPLAY_GIVE_UP_S", AM_SET_INT, "60", 1, 86400,
     "how long missing metrics are asked for before they are counted lost", &replay_give_up_s},
    {"listen", "LISTEN_ADDR", AM_SET_STRING, "0.0.0.0:9100", 0, 0,
     "host:port for /health, /ready and /metrics", &listen_addr},
    {"queue-max-mib", "COLLECTOR_QUEUE_MAX_MIB", AM_SET_INT, "8", 1, 4096,
     "memory for metrics waiting on the database; past it new batches go to the spool",
     &queue_max_mib},
    {"batch-rows", "COLLECTOR_BATCH_ROWS", AM_SET_INT, "10000", 1, 1000000,
     "metrics per insert transaction at most", &batch_rows},
    {"recv-buf", "COLLECTOR_RECV_BUF", AM_SET_INT, "8192", 1, 8192,
     "bus messages buffered by the SUB socket (NNG_OPT_RECVBUF)", &recvbuf},
    {"backoff-max-ms", "COLLECTOR_BACKOFF_MAX_MS", AM_SET_INT, "5000", 100, 600000,
     "cap of the database reconnect backoff", &backoff_max_ms},
    {"shutdown-timeout-ms", "COLLECTOR_SHUTDOWN_TIMEOUT_MS", AM_SET_INT, "30000", 0, 3600000,
     "on SIGTERM, how long to keep trying to store what is held", &shutdown_timeout_ms},
    {"max-streams", "COLLECTOR_MAX_STREAMS", AM_SET_INT, "65536", 16, 10000000,
     "publisher streams tracked for gap detection", &max_streams},
    {"migrate-wait-s", "COLLECTOR_MIGRATE_WAIT_S", AM_SET_INT, "0", 0, 3600,
     "with --migrate, how long to wait for PostgreSQL to accept connections (an init "
     "container started before the database)",
     &migrate_wait_s},
    {"spool-dir", "COLLECTOR_SPOOL_DIR", AM_SET_STRING, ".data/spool", 0, 0,
     "directory of the disk spool, used while the database cannot keep up; one collector each",
     &spool_dir},
    {"spool-max-mib", "COLLECTOR_SPOOL_MAX_MIB", AM_SET_INT, "512", 0, 1048576,
     "disk for the spool; past it new batches are dropped and counted (0: no spool)",
     &spool_max_mib},
    {"migrate", NULL, AM_SET_ACTION, NULL, 0, 0, "apply the schema migrations and exit",
     &migrate_only},
    AM_BUS_TLS_SETTINGS(bus_tls),
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static void handle_http(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        am_http_error(resp, 405, "method not allowed");
    } else if (!strcmp(req->path, "/health")) {
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ok\"}");
    } else if (!strcmp(req->path, "/ready")) {
        if (atomic_load(&cl_stats.db_up))
            am_http_reply(resp, 200, "application/json", "{\"status\": \"ready\"}");
        else
            am_http_error(resp, 503, "database unreachable");
    } else if (!strcmp(req->path, "/metrics")) {
        struct am_buf b;
        am_buf_init(&b, 1 << 20);
        cl_stats_write(&b);
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4";
        resp->body = am_buf_take(&b, &resp->body_len);
    } else {
        am_http_error(resp, 404, "not found");
    }
}

/*
 * Waits up to COLLECTOR_MIGRATE_WAIT_S for the server to answer (it may be
 * starting, or not be up yet), backing off from 100 ms to 2 s. Returns
 * false when it did not answer in time.
 */
static bool wait_for_database(void)
{
    int64_t deadline = am_clock_mono_ns() + migrate_wait_s * 1000000000LL;
    long backoff_ms = 100;
    bool said = false;
    for (;;) {
        PGPing ping = PQping(database_url);
        if (ping == PQPING_OK || ping == PQPING_NO_ATTEMPT)
            return true; /* NO_ATTEMPT: a bad URL, which the connection itself reports */
        if (am_clock_mono_ns() >= deadline)
            return false;
        if (!said) {
            am_log_info("waiting up to %lld s for the database to accept connections",
                        migrate_wait_s);
            said = true;
        }
        struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
}

static int run_migrations(void)
{
    PGconn *conn = NULL;
    if (migrate_wait_s > 0 && !wait_for_database()) {
        fprintf(stderr, "athena-collector: the database did not accept connections within %lld s\n",
                migrate_wait_s);
        return 1;
    }
    if (cl_writer_connect(database_url, &conn) != AM_OK) {
        fprintf(stderr, "athena-collector: migrations failed (see the log above)\n");
        return 1;
    }
    PQfinish(conn);
    return 0;
}

/* Opens the spool and counts what an earlier run left in it; exits 2 when it cannot be used. */
static cl_spool *open_spool(void)
{
    cl_spool *spool = NULL;
    struct cl_spool_recovery rec;
    if (spool_max_mib == 0)
        return NULL;
    struct cl_spool_config cfg = {
        .dir = spool_dir,
        .max_bytes = (uint64_t)spool_max_mib << 20,
        .segment_bytes = 4u << 20,
        .segment_ms = 250,
    };
    char err[512];
    int rc = cl_spool_open(&spool, &cfg, &rec, err, sizeof err);
    if (rc != AM_OK) {
        fprintf(stderr, "athena-collector: COLLECTOR_SPOOL_DIR: %s\n",
                err[0] ? err : am_strerror(rc));
        exit(2);
    }
    atomic_fetch_add(&cl_stats.spool_torn, rec.torn);
    atomic_fetch_add(&cl_stats.dropped_spool_corrupt, rec.lost_rows);
    if (rec.segments > 0)
        am_log_info("spool %s: %llu metrics in %llu segments left by an earlier run, to replay",
                    spool_dir, (unsigned long long)rec.rows, (unsigned long long)rec.segments);
    return spool;
}

int main(int argc, char **argv)
{
    struct cl_chunkq q;
    cl_spool *spool = NULL;
    cl_replay *replay = NULL;
    cl_writer *writer = NULL;
    am_http_server *http = NULL;
    int status = 0;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "athena-collector",
                   "Subscribes to the metric bus and stores every metric in PostgreSQL, once.");
    if (migrate_only)
        return run_migrations();
    /* Bad TLS files are a bad setting: say which and stop before starting anything. */
    const char *tls_urls[] = {bus_listen, replay_listen};
    for (size_t i = 0; i < 2; i++) {
        if (!am_bus_url_tls(tls_urls[i]))
            continue;
        nng_tls_config *tls = NULL;
        char err[512];
        if (am_bus_tls_config(&bus_tls, true, tls_urls[i], &tls, err, sizeof err) != AM_OK) {
            fprintf(stderr, "athena-collector: %s\n", err);
            return 2;
        }
        nng_tls_config_free(tls);
    }

    /*
     * Rows are allocated on the receiver and NNG threads and freed on the
     * writer; with glibc's default of one arena per thread that leaves
     * memory stranded in several arenas. Two arenas keep the peak RSS
     * close to the queue's bound (docs/BENCHMARKS.md).
     */
    mallopt(M_ARENA_MAX, 2);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    spool = open_spool();
    struct cl_replay_config pcfg = {
        .listen_url = replay_listen,
        .tls = &bus_tls,
        .give_up_s = (int)replay_give_up_s,
    };
    char err[512] = "";
    if (cl_replay_open(&replay, &pcfg, err, sizeof err) != AM_OK) {
        fprintf(stderr, "athena-collector: METRICS_REPLAY_LISTEN: %s\n", err);
        cl_spool_close(spool);
        return 2;
    }
    if (am_http_start(&http, listen_addr, NULL, handle_http, NULL) != AM_OK) {
        fprintf(stderr, "athena-collector: cannot serve HTTP on %s\n", listen_addr);
        cl_replay_close(replay);
        cl_spool_close(spool);
        return 2;
    }
    cl_chunkq_init(&q, (size_t)queue_max_mib << 20);
    struct cl_writer_config wcfg = {
        .database_url = database_url,
        .batch_rows = (size_t)batch_rows,
        .backoff_max_ms = (int)backoff_max_ms,
        .shutdown_timeout_ms = (int)shutdown_timeout_ms,
        .spool = spool,
        .replay = replay,
    };
    if (cl_writer_start(&writer, &wcfg, &q) != AM_OK) {
        am_log_error("cannot start the writer");
        status = 1;
        goto out;
    }
    struct cl_receiver_config rcfg = {
        .listen_url = bus_listen,
        .tls = &bus_tls,
        .recvbuf = (int)recvbuf,
        .max_streams = (size_t)max_streams,
        .spool = spool,
        .replay = replay,
    };
    am_log_info("athena-collector %s: http on %s", AM_VERSION, listen_addr);
    if (cl_receiver_run(&rcfg, &q, &stop) != AM_OK)
        status = 2;

    am_log_info("flushing %llu queued metrics",
                (unsigned long long)atomic_load(&cl_stats.queue_rows));
    cl_chunkq_close(&q);
    cl_writer_stop(writer);
    am_log_info("stopped: received=%llu stored=%llu duplicates=%llu spooled=%llu replayed=%llu "
                "in_spool=%llu dropped_shutdown=%llu dropped_queue_full=%llu "
                "dropped_spool_full=%llu dropped_spool_error=%llu",
                (unsigned long long)atomic_load(&cl_stats.metrics_received),
                (unsigned long long)atomic_load(&cl_stats.metrics_inserted),
                (unsigned long long)atomic_load(&cl_stats.metrics_duplicate),
                (unsigned long long)atomic_load(&cl_stats.metrics_spooled),
                (unsigned long long)atomic_load(&cl_stats.metrics_replayed),
                (unsigned long long)atomic_load(&cl_stats.spool_rows),
                (unsigned long long)atomic_load(&cl_stats.dropped_shutdown),
                (unsigned long long)atomic_load(&cl_stats.dropped_queue_full),
                (unsigned long long)atomic_load(&cl_stats.dropped_spool_full),
                (unsigned long long)atomic_load(&cl_stats.dropped_spool_error));
out:
    am_http_stop(http);
    cl_replay_close(replay);
    cl_spool_close(spool);
    cl_chunkq_destroy(&q);
    return status;
}
