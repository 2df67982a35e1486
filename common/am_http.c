/* A small HTTP server over libmicrohttpd. */
#include "am_http.h"
#include "am_buf.h"
#include "am_error.h"
#include "am_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* zlib's default level: nearly level 9's size on JSON, in a fraction of its time. */
#define GZIP_LEVEL 6

struct am_http_server {
    struct MHD_Daemon *daemon;
    am_http_handler handler;
    void *arg;
    size_t max_body;
    int port;
    uint32_t id_prefix; /* random, in generated request ids */
    pthread_mutex_t mu; /* guards streams, deferreds and stopping */
    am_http_stream *streams;
    am_http_deferred *deferreds; /* attached to a connection, waiting for the reply */
    bool stopping;
    bool thread_per_connection; /* stream readers wait on their own thread instead of suspending */
    /*
     * With an external loop, libmicrohttpd has no descriptor that a resume
     * from another thread wakes: wake_fd (an eventfd) is that, and loop_fd
     * an epoll set of it and libmicrohttpd's own epoll descriptor.
     */
    int wake_fd, loop_fd;
    atomic_bool woken; /* wake_fd was written and not yet read */
    /*
     * The thread that runs the loop, once am_http_run has run: a resume on
     * it needs no wake-up, only a flag its loop checks (am_http_pending)
     * before it waits again.
     */
    pthread_t runner;
    atomic_bool has_runner;
    bool pending; /* the runner resumed a connection since its last am_http_run */
};

/*
 * One long-lived response. Two references: the producer's and the
 * server's (held by the MHD response, dropped in stream_free). Lock order:
 * server mu, then stream mu; MHD's own locks come after both.
 */
struct am_http_stream {
    pthread_mutex_t mu;
    pthread_cond_t more; /* a write, the end or a stop, for a reader waiting on its own thread */
    struct am_buf out;   /* pending bytes are out.data[off .. out.len) */
    size_t off;
    am_http_server *srv;         /* set once the response is queued */
    struct MHD_Connection *conn; /* valid while attached and not finished */
    int fd;                      /* conn's socket, or -1 */
    bool suspended;              /* the reader suspended conn; a write resumes it */
    bool waiting;                /* the reader waits on more (thread per connection) */
    bool ended;                  /* the producer ended it: finish after the pending bytes */
    bool finished;               /* the connection is gone, or the server stopped it */
    _Atomic int refs;
    am_http_stream *prev, *next; /* in srv->streams */
};

/*
 * A response that comes later. Two references: the producer's (dropped by
 * am_http_deferred_reply) and the server's (dropped when the connection
 * takes the reply or ends). Lock order as for streams: server mu, then
 * deferred mu, then MHD's.
 */
struct am_http_deferred {
    pthread_mutex_t mu;
    struct am_http_response resp; /* the reply, once replied */
    am_http_server *srv;          /* valid while suspended */
    struct MHD_Connection *conn;  /* valid while suspended */
    bool suspended;               /* the server suspended conn; the reply resumes it */
    bool replied;
    bool finished; /* the connection took the reply, or is gone */
    _Atomic int refs;
    am_http_deferred *prev, *next; /* in srv->deferreds */
};

/* Per-request state kept by MHD between calls of the access handler. */
struct request_state {
    struct am_buf body;
    int too_large;
    am_http_deferred *deferred; /* the connection waits for this reply */
    char rid[129];              /* the request id, kept for the deferred reply */
};

static _Atomic unsigned long long request_counter;

int am_http_parse_addr(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= hostlen)
        return AM_EINVAL;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return AM_EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (int)p;
    return AM_OK;
}

static void stream_unref(am_http_stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    am_buf_free(&s->out);
    pthread_cond_destroy(&s->more);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A reply that replaces a stream set earlier drops the server's reference to it. */
static void drop_stream(struct am_http_response *resp)
{
    am_http_stream *s = resp->stream;
    if (!s)
        return;
    resp->stream = NULL;
    pthread_mutex_lock(&s->mu);
    s->finished = true;
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

void am_http_reply(struct am_http_response *resp, int status, const char *content_type,
                   const char *text)
{
    drop_stream(resp);
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = strdup(text);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
}

void am_http_error(struct am_http_response *resp, int status, const char *message)
{
    struct am_buf b;
    am_buf_init(&b, 4096);
    am_buf_append(&b, "{\"error\": \"", 11);
    for (const char *p = message; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            am_buf_printf(&b, "\\%c", c);
        else if (c < 0x20)
            am_buf_printf(&b, "\\u%04x", c);
        else
            am_buf_append(&b, p, 1);
    }
    am_buf_append(&b, "\"}", 2);
    drop_stream(resp);
    free(resp->body);
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = am_buf_take(&b, &resp->body_len);
}

const char *am_http_query(const struct am_http_request *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *am_http_header(const struct am_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

/* Whether a q value ("0", "0.5", "1.000", ...) is above zero. */
static bool q_positive(const char *q)
{
    while (*q == '0' || *q == '.')
        q++;
    return *q >= '1' && *q <= '9';
}

/* Whether an Accept-Encoding value takes gzip: listed (or "*") with q > 0; RFC 9110 12.5.3. */
static bool gzip_accepted(const char *ae)
{
    int gzip = -1, any = -1; /* -1: not listed, 0: refused (q=0), 1: accepted */
    const char *p = ae;
    while (p && *p) {
        p += strspn(p, " \t,");
        const char *name = p;
        size_t n = strcspn(p, " \t;,");
        bool ok = true;
        p += n;
        while (*p && *p != ',') {
            p += strspn(p, " \t;");
            if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
                ok = q_positive(p + 2);
            p += strcspn(p, ";,");
        }
        if ((n == 4 && !strncasecmp(name, "gzip", 4)) ||
            (n == 6 && !strncasecmp(name, "x-gzip", 6)))
            gzip = ok;
        else if (n == 1 && *name == '*')
            any = ok;
    }
    return gzip == 1 || (gzip == -1 && any == 1);
}

bool am_http_accepts_gzip(const struct am_http_request *req)
{
    return gzip_accepted(am_http_header(req, "Accept-Encoding"));
}

static const char *find_header(const struct am_http_response *r, const char *name)
{
    for (int i = 0; i < AM_HTTP_MAX_HEADERS && r->headers[i].name; i++)
        if (!strcasecmp(r->headers[i].name, name))
            return r->headers[i].value;
    return NULL;
}

static void add_headers(struct MHD_Response *mr, const struct am_http_response *r)
{
    for (int i = 0; i < AM_HTTP_MAX_HEADERS && r->headers[i].name; i++)
        MHD_add_response_header(mr, r->headers[i].name, r->headers[i].value);
}

/* JSON and text shrink to a fraction; anything else (images, gzip) is sent as it is. */
static bool compressible(const char *content_type)
{
    return !strncasecmp(content_type, "application/json", 16) ||
           !strncasecmp(content_type, "text/", 5);
}

/*
 * Gzips in[0 .. len) into a malloc'd buffer of *out_len bytes. NULL when
 * zlib fails, memory runs out or the result would not be smaller.
 */
static char *gzip_bytes(const char *in, size_t len, size_t *out_len)
{
    z_stream z = {0};
    char *out = NULL;

    if (len > UINT_MAX ||
        deflateInit2(&z, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)len);
    out = malloc(cap);
    if (!out)
        goto out;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out >= len) {
        free(out);
        out = NULL;
        goto out;
    }
    *out_len = z.total_out;
out:
    deflateEnd(&z);
    return out;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct am_http_response *r,
                                     const char *request_id)
{
    const char *ct = r->content_type ? r->content_type : "application/json";
    /* A handler's own encoding (the page's pre-gzipped assets) and its own Vary stand. */
    bool negotiate = compressible(ct) && !find_header(r, "Content-Encoding");
    bool gzipped = false;
    if (negotiate && r->body && r->body_len >= AM_HTTP_GZIP_MIN &&
        gzip_accepted(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding"))) {
        size_t zlen = 0;
        char *z = gzip_bytes(r->body, r->body_len, &zlen);
        if (z) {
            free(r->body);
            r->body = z;
            r->body_len = zlen;
            gzipped = true;
        }
    }
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (char *)"",
                                        r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!mr) {
        free(r->body);
        return MHD_NO;
    }
    r->body = NULL;
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
    if (request_id)
        MHD_add_response_header(mr, "X-Request-Id", request_id);
    add_headers(mr, r);
    if (gzipped)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    /* Small answers go out plain, but a cache must still tell the encodings apart. */
    if (negotiate && !find_header(r, "Vary"))
        MHD_add_response_header(mr, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

int am_http_reply_stream(struct am_http_response *resp, int status, const char *content_type,
                         size_t max_pending, am_http_stream **out)
{
    am_http_stream *s = calloc(1, sizeof *s);
    if (!s)
        return AM_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->more, &ca);
    pthread_condattr_destroy(&ca);
    am_buf_init(&s->out, max_pending);
    s->fd = -1;
    atomic_init(&s->refs, 2);
    drop_stream(resp);
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
    resp->status = status;
    resp->content_type = content_type;
    resp->stream = s;
    *out = s;
    return AM_OK;
}

/* Lets MHD process a suspended connection again, and wakes an external loop to do it. */
static void resume(am_http_server *srv, struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
    if (!srv || srv->wake_fd < 0)
        return;
    if (atomic_load_explicit(&srv->has_runner, memory_order_acquire) &&
        pthread_equal(pthread_self(), srv->runner)) {
        srv->pending = true; /* the loop's own thread: it runs again before it waits */
        return;
    }
    /*
     * No write while one is waiting to be read: the loop's next
     * am_http_run comes after it and serves this resume too. The flag is
     * set after the write, so that the loop never sees it without the
     * write it stands for.
     */
    if (!atomic_load(&srv->woken)) {
        uint64_t one = 1;
        (void)!write(srv->wake_fd, &one, sizeof one);
        atomic_store(&srv->woken, true);
    }
}

/* Called with s->mu held: lets MHD process the connection again. */
static void wake_locked(am_http_stream *s)
{
    if (s->waiting)
        pthread_cond_signal(&s->more);
    if (s->suspended) {
        s->suspended = false;
        resume(s->srv, s->conn);
    }
}

int am_http_stream_write(am_http_stream *s, const void *data, size_t len)
{
    int rc;
    pthread_mutex_lock(&s->mu);
    if (s->finished || s->ended) {
        rc = AM_ECLOSED;
        goto out;
    }
    size_t pending = s->out.len - s->off;
    if (len > s->out.max - pending) {
        rc = AM_EFULL;
        goto out;
    }
    if (s->off > 0 && s->out.len + len > s->out.max) {
        memmove(s->out.data, s->out.data + s->off, pending);
        s->out.len = pending;
        s->off = 0;
    }
    rc = am_buf_append(&s->out, data, len);
    if (rc == AM_OK)
        wake_locked(s);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void am_http_stream_end(am_http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    if (!s->finished)
        wake_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/*
 * Whether the client closed (or reset) the socket. MHD does not watch a
 * suspended connection, so this peeks at it; a stream client sends
 * nothing after its request, so a readable socket means end of file.
 */
static bool peer_gone(int fd)
{
    char c;
    if (fd < 0)
        return false;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

bool am_http_stream_closed(am_http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    /* The socket is MHD's, but MHD leaves it alone while the connection is suspended. */
    if (!s->finished && !s->ended && (s->suspended || s->waiting) && peer_gone(s->fd)) {
        s->finished = true; /* the reader ends the response, and MHD closes it */
        wake_locked(s);
    }
    bool closed = s->finished || s->ended;
    pthread_mutex_unlock(&s->mu);
    return closed;
}

size_t am_http_stream_pending(am_http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->finished ? 0 : s->out.len - s->off;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void am_http_stream_release(am_http_stream *s)
{
    if (!s)
        return;
    am_http_stream_end(s);
    stream_unref(s);
}

static void free_response(struct am_http_response *r)
{
    drop_stream(r);
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

static void deferred_unref(am_http_deferred *d)
{
    if (atomic_fetch_sub(&d->refs, 1) != 1)
        return;
    free_response(&d->resp);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

int am_http_defer(struct am_http_response *resp, am_http_deferred **out)
{
    am_http_deferred *d = calloc(1, sizeof *d);
    if (!d)
        return AM_ENOMEM;
    pthread_mutex_init(&d->mu, NULL);
    atomic_init(&d->refs, 2);
    free_response(resp);
    resp->deferred = d;
    *out = d;
    return AM_OK;
}

int am_http_deferred_fd(am_http_deferred *d)
{
    int fd = -1;
    pthread_mutex_lock(&d->mu);
    if (d->suspended && !d->replied && !d->finished) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(d->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            fd = ci->connect_fd;
    }
    pthread_mutex_unlock(&d->mu);
    return fd;
}

void am_http_deferred_reply(am_http_deferred *d, struct am_http_response *r)
{
    pthread_mutex_lock(&d->mu);
    if (d->finished || d->replied) {
        free_response(r);
    } else {
        d->resp = *r;
        d->resp.deferred = NULL;
        r->body = NULL;
        r->body_len = 0;
        r->stream = NULL;
        d->replied = true;
        if (d->suspended) {
            d->suspended = false;
            resume(d->srv, d->conn);
        }
    }
    pthread_mutex_unlock(&d->mu);
    deferred_unref(d);
}

/* The connection has ended or taken its reply: the server lets go of d. */
static void deferred_detach(am_http_server *srv, am_http_deferred *d)
{
    pthread_mutex_lock(&srv->mu);
    if (d->prev)
        d->prev->next = d->next;
    else
        srv->deferreds = d->next;
    if (d->next)
        d->next->prev = d->prev;
    pthread_mutex_unlock(&srv->mu);
}

/*
 * MHD's content reader: hands over what is pending. With nothing pending
 * it suspends the connection (allowed from a content reader, and the only
 * way not to busy-wait with internal polling); the next write resumes it.
 * A server with a thread per connection waits here instead, on the
 * connection's own thread, looking at the socket every 200 ms for a client
 * that left (libmicrohttpd does not resume a suspended connection in that
 * mode).
 */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    am_http_stream *s = cls;
    ssize_t n;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        size_t pending = s->out.len - s->off;
        if (s->finished) {
            n = MHD_CONTENT_READER_END_OF_STREAM;
        } else if (pending > 0) {
            size_t take = pending < max ? pending : max;
            memcpy(buf, s->out.data + s->off, take);
            s->off += take;
            if (s->off == s->out.len)
                s->off = s->out.len = 0;
            n = (ssize_t)take;
        } else if (s->ended) {
            n = MHD_CONTENT_READER_END_OF_STREAM;
        } else if (s->srv && s->srv->thread_per_connection) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 200000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            s->waiting = true;
            if (pthread_cond_timedwait(&s->more, &s->mu, &ts) == ETIMEDOUT && peer_gone(s->fd))
                s->finished = true;
            s->waiting = false;
            continue;
        } else {
            MHD_suspend_connection(s->conn);
            s->suspended = true;
            n = 0;
        }
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* MHD is done with the response: the connection ended. */
static void stream_free(void *cls)
{
    am_http_stream *s = cls;
    am_http_server *srv = s->srv;

    pthread_mutex_lock(&srv->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&srv->mu);

    pthread_mutex_lock(&s->mu);
    s->finished = true;
    s->suspended = false;
    s->conn = NULL;
    s->fd = -1;
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

/* Queues the stream set in r; the server's reference moves to the MHD response. */
static enum MHD_Result send_stream(am_http_server *srv, struct MHD_Connection *conn,
                                   struct am_http_response *r, const char *request_id)
{
    am_http_stream *s = r->stream;

    pthread_mutex_lock(&srv->mu);
    if (srv->stopping) {
        pthread_mutex_unlock(&srv->mu);
        am_http_error(r, 503, "server stopping");
        return send_response(conn, r, request_id);
    }
    r->stream = NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    s->srv = srv;
    s->conn = conn;
    s->fd = ci ? ci->connect_fd : -1;
    s->prev = NULL;
    s->next = srv->streams;
    if (srv->streams)
        srv->streams->prev = s;
    srv->streams = s;
    pthread_mutex_unlock(&srv->mu);

    struct MHD_Response *mr =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!mr) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/octet-stream");
    /* A live stream must not be cached, nor buffered by a proxy (nginx reads this one). */
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(mr, "X-Accel-Buffering", "no");
    if (request_id)
        MHD_add_response_header(mr, "X-Request-Id", request_id);
    add_headers(mr, r);
    /* When queueing fails, destroying the response runs stream_free. */
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result send_any(am_http_server *srv, struct MHD_Connection *conn,
                                struct am_http_response *r, const char *rid, const char *method,
                                const char *url)
{
    AM_LOG_REQ(AM_LOG_DEBUG, rid, "%s %s -> %d", method, url, r->status);
    if (r->stream)
        return send_stream(srv, conn, r, rid);
    return send_response(conn, r, rid);
}

/* The connection was resumed: it sends the reply, or 503 when the server is stopping. */
static enum MHD_Result send_deferred(am_http_server *srv, struct MHD_Connection *conn,
                                     struct request_state *st, const char *method, const char *url)
{
    am_http_deferred *d = st->deferred;
    struct am_http_response r = {.status = 500, .content_type = "application/json"};

    st->deferred = NULL;
    deferred_detach(srv, d);
    pthread_mutex_lock(&d->mu);
    if (d->replied) {
        r = d->resp;
        memset(&d->resp, 0, sizeof d->resp);
    }
    d->finished = true;
    d->suspended = false;
    d->conn = NULL;
    pthread_mutex_unlock(&d->mu);
    deferred_unref(d);
    if (!r.body && !r.stream)
        am_http_error(&r, 503, "server stopping");
    return send_any(srv, conn, &r, st->rid, method, url);
}

/* The handler deferred its reply: the connection waits for it, suspended, unless it is in. */
static enum MHD_Result attach_deferred(am_http_server *srv, struct MHD_Connection *conn,
                                       struct request_state *st, struct am_http_response *resp,
                                       const char *method, const char *url)
{
    am_http_deferred *d = resp->deferred;

    resp->deferred = NULL;
    free_response(resp);
    pthread_mutex_lock(&srv->mu);
    d->prev = NULL;
    d->next = srv->deferreds;
    if (srv->deferreds)
        srv->deferreds->prev = d;
    srv->deferreds = d;
    st->deferred = d;
    pthread_mutex_lock(&d->mu);
    bool wait = !d->replied && !srv->stopping;
    if (wait) {
        d->srv = srv;
        d->conn = conn;
        d->suspended = true;
        MHD_suspend_connection(conn);
    }
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&srv->mu);
    if (wait)
        return MHD_YES;
    return send_deferred(srv, conn, st, method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    am_http_server *srv = cls;
    struct request_state *st = *con_cls;

    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        am_buf_init(&st->body, srv->max_body);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!st->too_large && am_buf_append(&st->body, upload_data, *upload_data_size))
            st->too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->deferred)
        return send_deferred(srv, conn, st, method, url);

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (!rid || !*rid || strlen(rid) > 128) {
        snprintf(st->rid, sizeof st->rid, "req-%08x-%llu", srv->id_prefix,
                 (unsigned long long)atomic_fetch_add(&request_counter, 1) + 1);
        rid = st->rid;
    }

    struct am_http_response resp = {.status = 500, .content_type = "application/json"};
    if (st->too_large) {
        am_http_error(&resp, 413, "request body too large");
    } else {
        struct am_http_request req = {
            .method = method,
            .path = url,
            .body = st->body.data ? st->body.data : "",
            .body_len = st->body.len,
            .request_id = rid,
            .conn = conn,
        };
        srv->handler(srv->arg, &req, &resp);
        if (resp.deferred) {
            if (rid != st->rid)
                snprintf(st->rid, sizeof st->rid, "%s", rid);
            return attach_deferred(srv, conn, st, &resp, method, url);
        }
        if (!resp.body && !resp.stream)
            am_http_error(&resp, 500, "internal error: no response");
    }
    return send_any(srv, conn, &resp, rid, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    am_http_server *srv = cls;
    struct request_state *st = *con_cls;
    if (st) {
        if (st->deferred) {
            am_http_deferred *d = st->deferred;
            deferred_detach(srv, d);
            pthread_mutex_lock(&d->mu);
            d->finished = true;
            d->suspended = false;
            d->conn = NULL;
            pthread_mutex_unlock(&d->mu);
            deferred_unref(d);
        }
        am_buf_free(&st->body);
        free(st);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own messages (a client gone mid-response, ...) go through the log, at debug. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    AM_LOG(AM_LOG_DEBUG, "libmicrohttpd: %s", line);
}

/* The wake-up eventfd and the epoll set the caller of an external loop waits on. */
static int loop_fds(am_http_server *srv)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->loop_fd = epoll_create1(EPOLL_CLOEXEC);
    if (!info || srv->wake_fd < 0 || srv->loop_fd < 0)
        return AM_EIO;
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(srv->loop_fd, EPOLL_CTL_ADD, info->epoll_fd, &ev) ||
        epoll_ctl(srv->loop_fd, EPOLL_CTL_ADD, srv->wake_fd, &ev))
        return AM_EIO;
    return AM_OK;
}

int am_http_start(am_http_server **out, const char *listen_addr, const struct am_http_options *opt,
                  am_http_handler handler, void *arg)
{
    char host[256];
    int port;
    struct sockaddr_in sin;
    am_http_server *srv = NULL;

    if (am_http_parse_addr(listen_addr, host, sizeof host, &port)) {
        am_log_error("bad listen address '%s' (want host:port)", listen_addr);
        return AM_EINVAL;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (!strcmp(host, "*") || !strcmp(host, "")) {
        sin.sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost")) {
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        am_log_error("bad listen address '%s': host must be an IPv4 address", listen_addr);
        return AM_EINVAL;
    }

    srv = calloc(1, sizeof *srv);
    if (!srv)
        return AM_ENOMEM;
    srv->handler = handler;
    srv->arg = arg;
    srv->max_body = opt && opt->max_body ? opt->max_body : 1 << 20;
    unsigned timeout = opt && opt->timeout_s ? opt->timeout_s : 30;
    unsigned threads = opt && opt->threads ? opt->threads : 2;
    unsigned max_conns = opt && opt->max_conns ? opt->max_conns : 1024;
    size_t conn_memory = opt && opt->conn_memory ? opt->conn_memory : 32 * 1024;

    /*
     * Generated request ids carry a random prefix, so they differ across
     * restarts and replicas. Set before the daemon starts: its threads read it.
     */
    if (getrandom(&srv->id_prefix, sizeof srv->id_prefix, 0) != (ssize_t)sizeof srv->id_prefix)
        srv->id_prefix = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    pthread_mutex_init(&srv->mu, NULL);
    srv->wake_fd = srv->loop_fd = -1;
    srv->thread_per_connection = opt && opt->thread_per_connection;
    if (opt && opt->external_loop) {
        /* A shared listening socket is dup'ed: each daemon closes its own at its stop. */
        int lfd = -1;
        if (opt->share_listener) {
            const union MHD_DaemonInfo *li =
                MHD_get_daemon_info(opt->share_listener->daemon, MHD_DAEMON_INFO_LISTEN_FD);
            lfd = li ? fcntl(li->listen_fd, F_DUPFD_CLOEXEC, 0) : -1;
            if (lfd < 0) {
                am_log_error("cannot share the listening socket: %s", strerror(errno));
                pthread_mutex_destroy(&srv->mu);
                free(srv);
                return AM_EIO;
            }
        }
        /* The listening socket is the only difference; the option takes no other type. */
        struct MHD_OptionItem listen[2] = {
            {MHD_OPTION_SOCK_ADDR, 0, &sin},
            {MHD_OPTION_END, 0, NULL},
        };
        if (lfd >= 0)
            listen[0] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, lfd, NULL};
        srv->daemon = MHD_start_daemon(
            MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request,
            srv, MHD_OPTION_ARRAY, listen, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
            MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            srv, MHD_OPTION_END);
        if (!srv->daemon && lfd >= 0)
            close(lfd);
    } else if (srv->thread_per_connection) {
        srv->daemon = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME,
            0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
            MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_LIMIT, max_conns,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory, MHD_OPTION_THREAD_STACK_SIZE,
            (size_t)(512 << 10), MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_END);
    } else {
        srv->daemon = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY | MHD_USE_ERROR_LOG |
                MHD_ALLOW_SUSPEND_RESUME,
            0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
            MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
            MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            srv, MHD_OPTION_END);
    }
    if (!srv->daemon) {
        am_log_error("cannot listen on %s", listen_addr);
        pthread_mutex_destroy(&srv->mu);
        free(srv);
        return AM_EIO;
    }
    if (opt && opt->external_loop && loop_fds(srv) != AM_OK) {
        am_log_error("cannot make the descriptors of an external loop: %s", strerror(errno));
        am_http_stop(srv);
        return AM_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : port;
    *out = srv;
    return AM_OK;
}

int am_http_port(const am_http_server *srv)
{
    return srv->port;
}

int am_http_fd(const am_http_server *srv)
{
    return srv->loop_fd;
}

void am_http_run(am_http_server *srv)
{
    uint64_t n;
    if (!atomic_load_explicit(&srv->has_runner, memory_order_relaxed)) {
        srv->runner = pthread_self();
        atomic_store_explicit(&srv->has_runner, true, memory_order_release);
    }
    srv->pending = false;
    if (srv->wake_fd >= 0 && atomic_exchange(&srv->woken, false))
        (void)!read(srv->wake_fd, &n, sizeof n);
    MHD_run(srv->daemon);
}

bool am_http_pending(const am_http_server *srv)
{
    return srv->pending;
}

long am_http_timeout_ms(am_http_server *srv)
{
    MHD_UNSIGNED_LONG_LONG t = 0;
    if (MHD_get_timeout(srv->daemon, &t) != MHD_YES)
        return -1;
    return t > LONG_MAX ? LONG_MAX : (long)t;
}

void am_http_stop(am_http_server *srv)
{
    if (!srv)
        return;
    /*
     * MHD_stop_daemon must not meet a suspended connection (it panics), so
     * every stream is resumed first; stopping keeps readers from
     * suspending again and makes them end the response.
     */
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    for (am_http_stream *s = srv->streams; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->finished = true;
        wake_locked(s);
        pthread_mutex_unlock(&s->mu);
    }
    /* A connection waiting for a deferred reply is resumed: it answers 503, or is closed. */
    for (am_http_deferred *d = srv->deferreds; d; d = d->next) {
        pthread_mutex_lock(&d->mu);
        if (d->suspended) {
            d->suspended = false;
            resume(srv, d->conn);
        }
        pthread_mutex_unlock(&d->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    if (srv->loop_fd >= 0)
        close(srv->loop_fd);
    if (srv->wake_fd >= 0)
        close(srv->wake_fd);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
