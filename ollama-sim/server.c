/* The HTTP side of the simulator: Ollama's routes over libmicrohttpd, streaming paced by wakeup. */
#include "server.h"
#include "am_buf.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "wakeup.h"
#include "stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The Ollama version /api/version claims; the API shapes follow it. */
#define OLLAMA_VERSION "0.5.7"

#define JSON_TYPE   "application/json; charset=utf-8"
#define NDJSON_TYPE "application/x-ndjson"
#define TEXT_TYPE   "text/plain; charset=utf-8"

struct sim_server {
    struct sim_server_config cfg;
    struct MHD_Daemon *daemon;
    sim_wakeup *wakeup;
    int port;
    int64_t started_us;   /* modified_at of every model */
    _Atomic bool serving; /* the daemon started */
    _Atomic bool stopping;
    _Atomic unsigned long long ids;      /* numbers the request ids we make up */
    _Atomic unsigned long long requests; /* numbers generation requests, for random faults */
};

/* What MHD keeps for one request between calls of the access handler. */
struct request {
    enum sim_endpoint ep;
    struct am_buf body;
    bool too_large;
    char rid[136];
    sim_gen *gen; /* a non-streamed answer waiting for its time; owned */
    int model;
};

/* One streamed answer: the response's content reader state. */
struct stream {
    sim_server *srv;
    struct MHD_Connection *conn;
    sim_gen *gen;
    int model;
    char *line; /* the line being sent, from off on */
    size_t len, off;
    bool last;     /* the line being sent is the last one */
    bool finished; /* the stream ended as planned */
    bool cut;      /* the disconnect fault ended it */
    char rid[136];
};

static enum MHD_Result reply(struct request *r, struct MHD_Connection *conn, int status,
                             const char *type, char *body, size_t len)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    sim_stats_request(r->ep, status);
    AM_LOG_REQ(AM_LOG_DEBUG, r->rid, "-> %d", status);
    return ret;
}

static enum MHD_Result reply_text(struct request *r, struct MHD_Connection *conn, int status,
                                  const char *type, const char *text)
{
    char *body = strdup(text);
    return reply(r, conn, status, type, body, body ? strlen(body) : 0);
}

/* Ollama's error shape: {"error": "..."}. */
static enum MHD_Result reply_error(struct request *r, struct MHD_Connection *conn, int status,
                                   const char *msg)
{
    json_t *obj = json_pack("{s:s}", "error", msg);
    if (!obj) {
        /* The message quoted bytes that are not UTF-8 (a header, a JSON parse error). */
        char clean[512];
        size_t i = 0;
        for (; msg[i] && i + 1 < sizeof clean; i++)
            clean[i] = (unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e ? '?' : msg[i];
        clean[i] = '\0';
        obj = json_pack("{s:s}", "error", clean);
    }
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    return reply(r, conn, status, JSON_TYPE, body, body ? strlen(body) : 0);
}

/* Reads an X-Sim-* header as a whole number in [min, max]; 0 when absent or good. */
static int header_int(struct MHD_Connection *conn, const char *name, long long min, long long max,
                      long long *out, char *err, size_t errlen)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    if (!v)
        return AM_OK;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max) {
        snprintf(err, errlen, "%s: '%.40s' is not a whole number in [%lld, %lld]", name, v, min,
                 max);
        return AM_EINVAL;
    }
    *out = n;
    return AM_OK;
}

/* Applies the X-Sim-* headers to plan; *fault_given says whether X-Sim-Fail was there. */
static int read_overrides(struct MHD_Connection *conn, struct sim_plan *plan, bool *fault_given,
                          char *err, size_t errlen)
{
    if (header_int(conn, "X-Sim-Tokens-Per-Second", 1, SIM_MAX_TOKENS_PER_S,
                   &plan->tokens_per_second, err, errlen) ||
        header_int(conn, "X-Sim-TTFT-Ms", 0, SIM_MAX_TTFT_MS, &plan->ttft_ms, err, errlen) ||
        header_int(conn, "X-Sim-Answer-Tokens", 0, SIM_MAX_ANSWER_TOKENS, &plan->answer_tokens, err,
                   errlen) ||
        header_int(conn, "X-Sim-Fail-After-Tokens", 0, SIM_MAX_ANSWER_TOKENS,
                   &plan->fail_after_tokens, err, errlen) ||
        header_int(conn, "X-Sim-Stall-Ms", 0, SIM_MAX_STALL_MS, &plan->stall_ms, err, errlen))
        return AM_EINVAL;
    const char *f = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Sim-Fail");
    *fault_given = f != NULL;
    if (f && sim_fault_parse(f, &plan->fault)) {
        snprintf(err, errlen,
                 "X-Sim-Fail: '%.40s' is not none, http_500, error_line, disconnect or slow", f);
        return AM_EINVAL;
    }
    return AM_OK;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* SIM_FAIL_RATE: the n-th request fails or not as SIM_SEED decides, so runs repeat. */
static enum sim_fault random_fault(sim_server *srv, unsigned long long n)
{
    if (srv->cfg.fail_rate <= 0 || srv->cfg.nfail_modes == 0)
        return SIM_FAULT_NONE;
    uint64_t x = mix64((uint64_t)srv->cfg.defaults.seed ^ mix64(n));
    double u = (double)(x >> 11) / 9007199254740992.0;
    if (u >= srv->cfg.fail_rate)
        return SIM_FAULT_NONE;
    return srv->cfg.fail_modes[mix64(x) % srv->cfg.nfail_modes];
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;

    if (st->off == st->len) {
        free(st->line);
        st->line = NULL;
        st->len = st->off = 0;
        if (st->last) {
            st->finished = true;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        int64_t now = am_clock_mono_ns();
        int64_t due = sim_gen_next_due(st->gen);
        if (now < due) {
            int rc = sim_wakeup_at(st->srv->wakeup, st->conn, due);
            if (rc == AM_OK)
                return 0; /* suspended: called again once resumed */
            if (rc == AM_EFULL)
                sim_stats_wakeup_full();
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        enum sim_step step;
        if (sim_gen_step(st->gen, now, &step, &st->line, &st->len))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (step == SIM_STEP_CUT) {
            st->cut = true;
            AM_LOG_REQ(AM_LOG_INFO, st->rid, "disconnect fault: closing the stream");
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (step == SIM_STEP_TOKEN)
            sim_stats_tokens(st->model, 1);
        st->last = step == SIM_STEP_LAST;
    }
    size_t n = st->len - st->off;
    if (n > max)
        n = max;
    memcpy(buf, st->line + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    sim_stats_stream_ended(!st->finished && !st->cut);
    if (!st->finished && !st->cut)
        AM_LOG_REQ(AM_LOG_DEBUG, st->rid, "stream ended early (client gone or shutdown)");
    sim_gen_free(st->gen);
    free(st->line);
    free(st);
}

/* Queues a 200 NDJSON response whose lines stream_read writes as they fall due. Takes gen. */
static enum MHD_Result start_stream(sim_server *srv, struct MHD_Connection *conn, struct request *r,
                                    sim_gen *gen, int model)
{
    struct stream *st = calloc(1, sizeof *st);
    if (!st) {
        sim_gen_free(gen);
        return MHD_NO;
    }
    st->srv = srv;
    st->conn = conn;
    st->gen = gen;
    st->model = model;
    memcpy(st->rid, r->rid, sizeof st->rid);
    /* The block size bounds one call of stream_read; longer lines go out in pieces. */
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        sim_gen_free(gen);
        free(st);
        return MHD_NO;
    }
    /* From here on stream_free runs exactly once, and balances this. */
    sim_stats_stream_started();
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, NDJSON_TYPE);
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    sim_stats_request(r->ep, 200);
    return ret;
}

/* A non-streamed answer: sleep until it is due, then send it whole (or act out the fault). */
static enum MHD_Result finish_whole(sim_server *srv, struct MHD_Connection *conn, struct request *r)
{
    if (atomic_load(&srv->stopping))
        return MHD_NO;
    int64_t now = am_clock_mono_ns();
    int64_t due = sim_gen_whole_due(r->gen);
    if (now < due) {
        int rc = sim_wakeup_at(srv->wakeup, conn, due);
        if (rc == AM_OK)
            return MHD_YES; /* the access handler runs again once resumed */
        if (rc == AM_EFULL)
            sim_stats_wakeup_full();
        return MHD_NO;
    }
    if (sim_gen_fault(r->gen) == SIM_FAULT_DISCONNECT) {
        AM_LOG_REQ(AM_LOG_INFO, r->rid, "disconnect fault: closing without an answer");
        return MHD_NO;
    }
    int status;
    char *body = NULL;
    size_t len = 0;
    if (sim_gen_whole(r->gen, now, &status, &body, &len))
        return MHD_NO;
    if (status == 200)
        sim_stats_tokens(r->model, sim_gen_tokens(r->gen));
    return reply(r, conn, status, JSON_TYPE, body, len);
}

/* POST /api/chat and /api/generate. */
static enum MHD_Result generate(sim_server *srv, struct MHD_Connection *conn, struct request *r,
                                enum sim_api api)
{
    char err[512];
    sim_gen *gen = NULL;
    struct sim_plan plan = srv->cfg.defaults;
    bool fault_given = false;

    if (r->too_large)
        return reply_error(r, conn, 413, "request body too large");
    if (read_overrides(conn, &plan, &fault_given, err, sizeof err))
        return reply_error(r, conn, 400, err);
    int rc =
        sim_gen_parse(api, r->body.data ? r->body.data : "", r->body.len, &gen, err, sizeof err);
    if (rc == AM_ENOMEM)
        return MHD_NO;
    if (rc)
        return reply_error(r, conn, 400, err);
    int model = sim_models_find(srv->cfg.models, sim_gen_model(gen));
    if (model < 0) {
        snprintf(err, sizeof err, "model \"%s\" not found, try pulling it first",
                 sim_gen_model(gen));
        sim_gen_free(gen);
        return reply_error(r, conn, 404, err);
    }
    if (sim_gen_is_load(gen)) {
        size_t len = 0;
        char *body = sim_gen_load_reply(gen, &len);
        sim_gen_free(gen);
        return reply(r, conn, 200, JSON_TYPE, body, len);
    }
    if (!fault_given)
        plan.fault = random_fault(srv, atomic_fetch_add(&srv->requests, 1));
    sim_stats_fault(plan.fault);
    sim_stats_prompt_tokens(sim_gen_prompt_words(gen));
    if (plan.fault != SIM_FAULT_NONE)
        AM_LOG_REQ(AM_LOG_INFO, r->rid, "injecting fault %s", sim_fault_name(plan.fault));
    if (plan.fault == SIM_FAULT_HTTP_500) {
        sim_gen_free(gen);
        return reply_error(r, conn, 500, "simulated http_500 fault");
    }
    if (sim_gen_start(gen, &plan, am_clock_mono_ns())) {
        sim_gen_free(gen);
        return MHD_NO;
    }
    AM_LOG_REQ(AM_LOG_DEBUG, r->rid, "%s model=%s stream=%d prompt_words=%lld tokens=%lld",
               api == SIM_API_CHAT ? "chat" : "generate", sim_gen_model(gen),
               (int)sim_gen_stream(gen), sim_gen_prompt_words(gen), sim_gen_tokens(gen));
    if (sim_gen_stream(gen))
        return start_stream(srv, conn, r, gen, model);
    r->gen = gen;
    r->model = model;
    return finish_whole(srv, conn, r);
}

static bool is_get(const char *method)
{
    return !strcmp(method, "GET") || !strcmp(method, "HEAD");
}

static enum MHD_Result route(sim_server *srv, struct MHD_Connection *conn, struct request *r,
                             const char *method)
{
    size_t len = 0;
    char *body;

    switch (r->ep) {
    case SIM_EP_CHAT:
    case SIM_EP_GENERATE:
        if (strcmp(method, "POST") != 0)
            break;
        return generate(srv, conn, r, r->ep == SIM_EP_CHAT ? SIM_API_CHAT : SIM_API_GENERATE);
    case SIM_EP_ROOT:
        if (!is_get(method))
            break;
        return reply_text(r, conn, 200, TEXT_TYPE, "Ollama is running");
    case SIM_EP_VERSION:
        if (!is_get(method))
            break;
        return reply_text(r, conn, 200, JSON_TYPE, "{\"version\":\"" OLLAMA_VERSION "\"}");
    case SIM_EP_TAGS:
        if (!is_get(method))
            break;
        body = sim_models_tags_json(srv->cfg.models, srv->started_us, &len);
        return reply(r, conn, 200, JSON_TYPE, body, len);
    case SIM_EP_HEALTH:
        if (!is_get(method))
            break;
        return reply_text(r, conn, 200, JSON_TYPE, "{\"status\": \"ok\"}");
    case SIM_EP_READY:
        if (!is_get(method))
            break;
        if (atomic_load(&srv->stopping))
            return reply_error(r, conn, 503, "shutting down");
        return reply_text(r, conn, 200, JSON_TYPE, "{\"status\": \"ready\"}");
    case SIM_EP_METRICS: {
        if (!is_get(method))
            break;
        struct am_buf b;
        am_buf_init(&b, 1 << 20);
        sim_stats_write(&b, srv->cfg.models);
        body = am_buf_take(&b, &len);
        return reply(r, conn, 200, "text/plain; version=0.0.4", body, len);
    }
    default:
        /* Ollama's router answers unknown paths in plain text. */
        return reply_text(r, conn, 404, TEXT_TYPE, "404 page not found");
    }
    return reply_error(r, conn, 405, "method not allowed");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    sim_server *srv = cls;
    struct request *r = *con_cls;

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->ep = sim_stats_endpoint(url);
        am_buf_init(&r->body, srv->cfg.max_body);
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (rid && *rid && strlen(rid) < sizeof r->rid)
            snprintf(r->rid, sizeof r->rid, "%s", rid);
        else
            snprintf(r->rid, sizeof r->rid, "sim-%llu",
                     (unsigned long long)atomic_fetch_add(&srv->ids, 1) + 1);
        *con_cls = r;
        AM_LOG_REQ(AM_LOG_DEBUG, r->rid, "%s %s", method, url);
        return MHD_YES;
    }
    if (*upload_data_size) {
        /* Past the bound the rest is read and dropped; the answer is 413. */
        if (!r->too_large && am_buf_append(&r->body, upload_data, *upload_data_size))
            r->too_large = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->gen)
        return finish_whole(srv, conn, r);
    return route(srv, conn, r, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;
    if (!r)
        return;
    am_buf_free(&r->body);
    sim_gen_free(r->gen);
    free(r);
    *con_cls = NULL;
}

/*
 * libmicrohttpd's own messages go to our log: at start they explain a failed
 * bind (error); once serving they are about connections the simulator or the
 * client closed, which faults and shutdown do on purpose (debug).
 */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    sim_server *srv = cls;
    char msg[512];
    int level = atomic_load(&srv->serving) ? AM_LOG_DEBUG : AM_LOG_ERROR;
    if (level > am_log_threshold)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    am_log_write(level, NULL, "libmicrohttpd: %s", msg);
}

int sim_server_parse_addr(const char *addr, struct sockaddr_in *out)
{
    char host[256];
    int port;
    if (am_http_parse_addr(addr, host, sizeof host, &port))
        return AM_EINVAL;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (!strcmp(host, "*") || !strcmp(host, ""))
        out->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (!strcmp(host, "localhost"))
        out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return AM_EINVAL;
    return AM_OK;
}

int sim_server_start(sim_server **out, const struct sim_server_config *cfg)
{
    struct sockaddr_in sin;
    if (sim_server_parse_addr(cfg->listen_addr, &sin))
        return AM_EINVAL;
    sim_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return AM_ENOMEM;
    srv->cfg = *cfg;
    srv->started_us = am_clock_now_us();
    if (sim_wakeup_start(&srv->wakeup, cfg->max_conns)) {
        free(srv);
        return AM_ENOMEM;
    }
    /*
     * A small pool of threads serves every connection: an answer that waits
     * for its next token is suspended, not sleeping on a thread, and the
     * wake-up thread resumes it when the token is due.
     */
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY | MHD_ALLOW_SUSPEND_RESUME |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin, MHD_OPTION_THREAD_POOL_SIZE, cfg->threads,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s, MHD_OPTION_CONNECTION_LIMIT, cfg->max_conns,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        sim_wakeup_free(srv->wakeup);
        free(srv);
        return AM_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : ntohs(sin.sin_port);
    atomic_store(&srv->serving, true);
    *out = srv;
    return AM_OK;
}

int sim_server_port(const sim_server *s)
{
    return s->port;
}

void sim_server_stop(sim_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    /* Stop accepting first, then wake every sleeping answer so that it ends. */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    sim_wakeup_stop(s->wakeup);
    MHD_stop_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    sim_wakeup_free(s->wakeup);
    free(s);
}
