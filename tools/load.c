/* athena-metrics-load: publishes synthetic, realistic metrics through the publisher library. */
#include "am_clock.h"
#include "am_config.h"
#include "am_error.h"
#include "am_log.h"
#include "am_publisher.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *urls;
static const char *source_id;
static long long count;
static long long rate;
static long long seed;
static struct am_publisher_settings pubset;
static bool measure;
static const char *dump_path;
static long long dump_every;
static long long threads;

static const struct am_setting settings[] = {
    {"url", "METRICS_BUS_URLS", AM_SET_STRING, "tcp://127.0.0.1:5556", 0, 0,
     "comma-separated bus URLs to publish to", &urls},
    {"count", NULL, AM_SET_INT, "10000", 0, 1000000000, "metrics to publish", &count},
    {"rate", NULL, AM_SET_INT, "0", 0, 100000000, "metrics per second (0: as fast as possible)",
     &rate},
    {"source-id", NULL, AM_SET_STRING, NULL, 0, 0,
     "publisher identity (default: athena-metrics-load@hostname)", &source_id},
    {"seed", NULL, AM_SET_INT, "1", 0, 1LL << 62, "seed of the synthetic data", &seed},
    {"measure", NULL, AM_SET_ACTION, NULL, 0, 0,
     "time every publish call and print its percentiles", &measure},
    {"dump", NULL, AM_SET_STRING, NULL, 0, 0,
     "write the published metrics as tab-separated rows to this file (for checks)", &dump_path},
    {"dump-every", NULL, AM_SET_INT, "1", 1, 1000000000, "with --dump, write every Nth metric",
     &dump_every},
    {"threads", NULL, AM_SET_INT, "1", 1, 1024,
     "publishing threads sharing the one publisher, as a service's request threads do; "
     "metric i is published by thread i modulo this",
     &threads},
    AM_PUBLISHER_SETTINGS(pubset),
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

/* xorshift64*: fast and good enough for synthetic data; one state per thread. */
static _Thread_local uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static double uniform(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    double u = uniform(), v = uniform();
    if (u < 1e-12)
        u = 1e-12;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

struct model {
    const char *name;
    double tps;    /* typical tokens per second */
    double load_s; /* typical time to first token */
};

static const struct model models[] = {
    {"phi3:mini", 62, 0.12},  {"llama3.1:8b", 34, 0.25}, {"mistral:7b", 38, 0.22},
    {"qwen2.5:7b", 36, 0.24}, {"gemma2:2b", 75, 0.09},
};
static const char *const backends[] = {"ollama", "ollama", "ollama", "mlx"};
static const char *const intents[] = {"weather_query", "music", "smart_home", "general", "timer"};
static const char *const stages[] = {"classify", "synthesize", "validate"};
static const char *const zones[] = {"kitchen", "living_room", "office", "bedroom"};
static const char *const errors[] = {"timeout", "backend_unavailable", "http_502"};

#define PICK(a) (a[rng() % (sizeof(a) / sizeof((a)[0]))])

static void make_metric(struct am_metric *m, long long i, char *rid, char *sid, char *uid,
                        char *dev)
{
    const struct model *md = &PICK(models);
    bool orchestrator = rng() % 3 != 0;
    int tokens = 20 + (int)(uniform() * uniform() * 600);
    double tps = md->tps * exp(0.15 * normal());
    double ttft = md->load_s * exp(0.3 * normal());
    double latency = ttft + tokens / tps;

    memset(m, 0, sizeof *m);
    m->timestamp_us = am_clock_now_us() - (int64_t)(latency * 1e6);
    m->model = md->name;
    m->backend = PICK(backends);
    m->latency_seconds = latency;
    m->tokens = tokens;
    m->tokens_per_second = tps;
    m->has_prompt_tokens = true;
    m->prompt_tokens = 30 + (int)(rng() % 400);
    m->has_ttft = rng() % 2 == 0;
    m->ttft_seconds = ttft;
    if (rng() % 50 == 0) {
        m->error = true;
        m->error_type = PICK(errors);
        m->tokens = 0;
        m->tokens_per_second = 0;
    }
    snprintf(rid, 40, "req-%llx-%lld", (unsigned long long)(seed & 0xffff), i / 3);
    snprintf(sid, 40, "sess-%llu", (unsigned long long)(rng() % 500));
    snprintf(uid, 40, "user-%llu", (unsigned long long)(rng() % 50));
    snprintf(dev, 40, "device-%llu", (unsigned long long)(rng() % 20));
    m->request_id = rid;
    m->session_id = sid;
    m->user_id = uid;
    m->device_id = dev;
    m->zone = PICK(zones);
    m->intent = PICK(intents);
    m->source = orchestrator ? "orchestrator" : "gateway";
    m->stage = orchestrator ? stages[i % 3] : NULL;
}

static void dump_text(FILE *f, const char *s, const char *sep)
{
    fputs(s ? s : "\\N", f);
    fputs(sep, f);
}

/* One row in the column order of tests/integration/exactly_once.sh's check table. */
static void dump_metric(FILE *f, long long seq, const struct am_metric *m)
{
    fprintf(f, "%lld\t%lld\t", seq, (long long)m->timestamp_us);
    dump_text(f, m->model, "\t");
    dump_text(f, m->backend, "\t");
    fprintf(f, "%.17g\t%d\t%.17g\t", m->latency_seconds, m->tokens, m->tokens_per_second);
    if (m->has_prompt_tokens)
        fprintf(f, "%d\t", m->prompt_tokens);
    else
        fputs("\\N\t", f);
    if (m->has_ttft)
        fprintf(f, "%.17g\t", m->ttft_seconds);
    else
        fputs("\\N\t", f);
    dump_text(f, m->error ? "error" : "ok", "\t");
    dump_text(f, m->error_type, "\t");
    dump_text(f, m->request_id, "\t");
    dump_text(f, m->session_id, "\t");
    dump_text(f, m->user_id, "\t");
    dump_text(f, m->zone, "\t");
    dump_text(f, m->intent, "\t");
    dump_text(f, m->device_id, "\t");
    dump_text(f, m->source, "\t");
    dump_text(f, m->stage, "\n");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One publishing thread: metrics first, first + threads, ... below count. */
struct worker {
    pthread_t tid;
    long long first;
    long long done; /* metrics it published */
    int64_t *lat;   /* with --measure, the time of each of its calls */
};

static am_publisher *pub;
static FILE *dump;
static int64_t start_ns;
static pthread_barrier_t go;

static void *publish_loop(void *arg)
{
    struct worker *w = arg;
    char rid[40], sid[40], uid[40], dev[40];
    struct am_metric m;

    /* Thread 0 draws the same data as a single-threaded run of the seed. */
    rng_state =
        (uint64_t)seed * 0x9E3779B97F4A7C15ULL + 1 + (uint64_t)w->first * 0xD1B54A32D192ED03ULL;
    pthread_barrier_wait(&go);
    for (long long i = w->first; i < count && !stop; i += threads) {
        if (rate > 0) {
            int64_t due = start_ns + (int64_t)((double)i * 1e9 / (double)rate);
            int64_t ahead = due - am_clock_mono_ns();
            if (ahead > 200000) {
                struct timespec ts = {ahead / 1000000000, ahead % 1000000000};
                nanosleep(&ts, NULL);
            }
        }
        make_metric(&m, i, rid, sid, uid, dev);
        if (dump && i % dump_every == 0)
            dump_metric(dump, i, &m);
        if (w->lat) {
            int64_t t0 = am_clock_mono_ns();
            am_publisher_send(pub, &m);
            w->lat[w->done] = am_clock_mono_ns() - t0;
        } else {
            am_publisher_send(pub, &m);
        }
        w->done++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct am_publisher_config cfg;
    struct am_publisher_stats st;
    struct worker *workers = NULL;
    int64_t *lat = NULL;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv,
                   "athena-metrics-load",
                   "Publishes synthetic LLM call metrics on the bus and prints what it sent.");
    if (dump_path && threads > 1) {
        /* The dump's seq column is the publishing order, which threads shuffle. */
        fprintf(stderr, "athena-metrics-load: --dump needs --threads 1\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    am_publisher_config_init(&cfg);
    am_publisher_settings_apply(&pubset, &cfg);
    cfg.urls = urls;
    cfg.source_id = source_id;
    int rc = am_publisher_open(&pub, &cfg);
    if (rc) {
        fprintf(stderr, "athena-metrics-load: cannot publish to %s: %s\n", urls, am_strerror(rc));
        return 2;
    }
    workers = calloc((size_t)threads, sizeof *workers);
    if (measure && count > 0)
        lat = malloc((size_t)count * sizeof *lat);
    if (!workers || (measure && count > 0 && !lat)) {
        fprintf(stderr, "athena-metrics-load: out of memory\n");
        return 1;
    }
    if (dump_path && !(dump = fopen(dump_path, "w"))) {
        fprintf(stderr, "athena-metrics-load: cannot write %s\n", dump_path);
        return 2;
    }

    /* Each thread's call times go to its own slice of lat. */
    long long offset = 0;
    for (long long t = 0; t < threads; t++) {
        workers[t].first = t;
        if (lat)
            workers[t].lat = lat + offset;
        offset += t < count ? (count - t + threads - 1) / threads : 0;
    }
    pthread_barrier_init(&go, NULL, (unsigned)threads + 1);
    long long started = 0;
    for (; started < threads; started++) {
        if (pthread_create(&workers[started].tid, NULL, publish_loop, &workers[started])) {
            fprintf(stderr, "athena-metrics-load: cannot start thread %lld of %lld\n", started + 1,
                    threads);
            return 1;
        }
    }
    start_ns = am_clock_mono_ns();
    pthread_barrier_wait(&go);
    long long i = 0;
    for (long long t = 0; t < threads; t++) {
        pthread_join(workers[t].tid, NULL);
        if (lat && workers[t].lat != lat + i)
            memmove(lat + i, workers[t].lat, (size_t)workers[t].done * sizeof *lat);
        i += workers[t].done;
    }
    pthread_barrier_destroy(&go);
    double publish_s = (double)(am_clock_mono_ns() - start_ns) / 1e9;
    if (dump)
        fclose(dump);
    am_publisher_close(pub, &st);
    double elapsed = (double)(am_clock_mono_ns() - start_ns) / 1e9;
    uint64_t dropped = st.dropped_queue_full + st.dropped_no_subscriber + st.dropped_invalid +
                       st.dropped_send_error + st.dropped_shutdown;

    printf("source_id=%s epoch=%lld published=%lld sent=%llu dropped=%llu "
           "dropped_queue_full=%llu dropped_no_subscriber=%llu dropped_shutdown=%llu "
           "replay_requests=%llu resent=%llu gone=%llu publish_s=%.3f elapsed_s=%.3f rate=%.0f "
           "threads=%lld\n",
           st.source_id, (long long)st.epoch, i, (unsigned long long)st.sent,
           (unsigned long long)dropped, (unsigned long long)st.dropped_queue_full,
           (unsigned long long)st.dropped_no_subscriber, (unsigned long long)st.dropped_shutdown,
           (unsigned long long)st.replay_requests, (unsigned long long)st.resent,
           (unsigned long long)st.gone, publish_s, elapsed,
           publish_s > 0 ? (double)i / publish_s : 0.0, threads);
    if (lat && i > 0) {
        qsort(lat, (size_t)i, sizeof *lat, cmp_i64);
        printf("publish_call_ns p50=%lld p90=%lld p99=%lld p999=%lld max=%lld\n",
               (long long)lat[i / 2], (long long)lat[i * 9 / 10], (long long)lat[i * 99 / 100],
               (long long)lat[i * 999 / 1000], (long long)lat[i - 1]);
    }
    free(lat);
    free(workers);
    return dropped ? 1 : 0;
}
