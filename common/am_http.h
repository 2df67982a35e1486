/* A small HTTP server over libmicrohttpd: routes a request to one handler. */
#ifndef AM_HTTP_H
#define AM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct am_http_server am_http_server;
typedef struct am_http_stream am_http_stream;
typedef struct am_http_deferred am_http_deferred;
struct MHD_Connection;

struct am_http_request {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated, body_len bytes; "" when there is none */
    size_t body_len;
    const char *request_id; /* from X-Request-Id, or generated */
    struct MHD_Connection *conn;
};

/* Extra headers a response can carry (Retry-After, ...). */
#define AM_HTTP_MAX_HEADERS 4

struct am_http_header {
    const char *name, *value; /* not copied: static, or alive until the server is stopped */
};

/*
 * Compression: a response body of at least AM_HTTP_GZIP_MIN bytes whose
 * content type is JSON or text is gzipped when the client accepts gzip
 * (Accept-Encoding), and every such response carries Vary: Accept-Encoding.
 * A handler that sets Content-Encoding itself (pre-compressed bytes) is left
 * alone. Streams are never compressed.
 */
#define AM_HTTP_GZIP_MIN 1024

struct am_http_response {
    int status;
    const char *content_type; /* static string; default application/json */
    char *body;               /* malloc'd by the handler, freed by the server */
    size_t body_len;
    am_http_stream *stream;     /* set by am_http_reply_stream: the body comes from it */
    am_http_deferred *deferred; /* set by am_http_defer: the reply comes later */
    struct am_http_header headers[AM_HTTP_MAX_HEADERS]; /* extra headers; name NULL: unused */
};

/* Fills resp for req. Called on the server's threads, concurrently. */
typedef void (*am_http_handler)(void *arg, const struct am_http_request *req,
                                struct am_http_response *resp);

struct am_http_options {
    size_t max_body;    /* larger bodies get 413; default 1 MiB */
    unsigned timeout_s; /* idle connections are closed after it; default 30 */
    unsigned threads;   /* worker threads; default 2 */
    unsigned max_conns; /* default 1024 */
    size_t conn_memory; /* per-connection memory (headers) limit; default 32 KiB */
    /*
     * A thread for each connection instead of a pool of threads sharing
     * them: for handlers that hold their thread for long (a whole query
     * pipeline), so that a connection never waits behind another one's
     * request. threads is then unused; max_conns bounds the threads. A
     * stream's reader then waits on its connection's thread for writes.
     */
    bool thread_per_connection;
    /*
     * No thread of the server's own: the caller runs it from its event
     * loop, calling am_http_run whenever am_http_fd is readable and at
     * least every am_http_timeout_ms. threads is then unused. Handlers
     * (and stream readers) run inside am_http_run.
     */
    bool external_loop;
    /*
     * With external_loop: accept connections from the listening socket of
     * this other server (listen_addr is then unused), so that several
     * loops serve one address; whichever loop is free first takes a new
     * connection. The other server must outlive this one's start.
     */
    const am_http_server *share_listener;
};

/*
 * Starts serving listen_addr ("host:port"; port 0 picks one). opt may be
 * NULL. On success *out owns the server; stop it with am_http_stop.
 */
int am_http_start(am_http_server **out, const char *listen_addr, const struct am_http_options *opt,
                  am_http_handler handler, void *arg);

/* The port the server is bound to. */
int am_http_port(const am_http_server *srv);

/* With external_loop: a descriptor that is readable when am_http_run has work. */
int am_http_fd(const am_http_server *srv);

/*
 * With external_loop: serves what is ready (new connections, requests,
 * resumed connections, timeouts) without waiting. Not thread-safe: one
 * thread runs it, always the same one (resumes on that thread rely on
 * am_http_pending instead of a wake-up), and am_http_stop only once that
 * thread no longer does.
 */
void am_http_run(am_http_server *srv);

/*
 * With external_loop: true when the thread that runs am_http_run has itself
 * resumed a connection (a deferred reply, a stream write) since its last
 * am_http_run. Such a resume writes no wake-up to am_http_fd: the loop
 * calls am_http_run again before it waits.
 */
bool am_http_pending(const am_http_server *srv);

/* With external_loop: the longest the caller may wait before am_http_run, in ms; -1: no limit. */
long am_http_timeout_ms(am_http_server *srv);

/* Stops the server and frees it; accepts NULL. */
void am_http_stop(am_http_server *srv);

/* A query parameter of req, or NULL. */
const char *am_http_query(const struct am_http_request *req, const char *key);

/* A request header of req, or NULL. */
const char *am_http_header(const struct am_http_request *req, const char *name);

/* True when req's Accept-Encoding lists gzip (or "*") without q=0. */
bool am_http_accepts_gzip(const struct am_http_request *req);

/* Sets resp to status with a copy of text. */
void am_http_reply(struct am_http_response *resp, int status, const char *content_type,
                   const char *text);

/* Sets resp to status with {"error": message}. */
void am_http_error(struct am_http_response *resp, int status, const char *message);

/*
 * Long-lived responses (Server-Sent Events and the like). A handler calls
 * am_http_reply_stream; the server sends the headers, then whatever the
 * producer writes with am_http_stream_write, from any thread, until the
 * producer ends the stream, the client goes away or the server stops.
 * While nothing is pending the connection is suspended: it holds no server
 * thread and the idle timeout (am_http_options.timeout_s) does not run; it
 * runs again, from zero, while pending bytes wait for the client to read
 * them, so a client that stops reading is closed after timeout_s. A client
 * that disconnects while the stream is idle is noticed at the next write or
 * am_http_stream_closed.
 * am_http_stop resumes and closes every stream before it returns.
 */

/*
 * Makes resp a stream with status and content_type (static string), at
 * most max_pending bytes buffered for the client. On success *out is the
 * producer's reference (release it with am_http_stream_release); the
 * server holds another until the connection ends. AM_ENOMEM otherwise.
 */
int am_http_reply_stream(struct am_http_response *resp, int status, const char *content_type,
                         size_t max_pending, am_http_stream **out);

/*
 * Queues len bytes for the client, all or nothing. Thread-safe. Returns 0,
 * AM_EFULL when they do not fit in max_pending (nothing queued; the
 * producer decides what to drop), AM_ECLOSED when the stream has ended or
 * the client is gone, or AM_ENOMEM.
 */
int am_http_stream_write(am_http_stream *s, const void *data, size_t len);

/* Ends the response once the pending bytes are sent. Thread-safe; repeatable. */
void am_http_stream_end(am_http_stream *s);

/*
 * True once writes can no longer reach the client (ended, client gone,
 * server stopping). While the stream is idle it also checks whether the
 * client closed its socket. Thread-safe.
 */
bool am_http_stream_closed(am_http_stream *s);

/* Bytes written and not yet handed to the client (0 once closed). Thread-safe. */
size_t am_http_stream_pending(am_http_stream *s);

/* Ends the stream (as am_http_stream_end) and drops the producer's reference; accepts NULL. */
void am_http_stream_release(am_http_stream *s);

/*
 * Deferred responses, for a handler that waits on something slow (an
 * upstream call) without holding a server thread: the handler calls
 * am_http_defer and returns; the connection is suspended until
 * am_http_deferred_reply hands in the response, from any thread. Only for
 * a server with a pool of threads (not thread_per_connection). A client
 * that disconnects meanwhile is not noticed until the reply, unless the
 * caller watches its socket (am_http_deferred_fd). am_http_stop
 * ends every connection still waiting (with a 503 when a server thread
 * gets to it first, else by closing it); a reply that comes after that is
 * dropped.
 */

/*
 * Makes resp a deferred response. On success *out is the producer's
 * reference, which am_http_deferred_reply consumes; the handler must reply
 * exactly once. AM_ENOMEM otherwise (resp unchanged).
 */
int am_http_defer(struct am_http_response *resp, am_http_deferred **out);

/*
 * Hands in the response for d: r's status, content type, headers, body
 * and stream (made with am_http_reply_stream) move to the connection, and
 * r is left without a body or stream. Drops the producer's reference to d.
 * Thread-safe.
 */
void am_http_deferred_reply(am_http_deferred *d, struct am_http_response *r);

/*
 * The client's socket while d waits suspended for its reply, else -1: to
 * watch, on the server's own thread (an external loop's), for a client
 * that leaves before the reply. The server does not watch a suspended
 * connection; a watcher must let go of the socket before it replies, and
 * before am_http_stop (which resumes every waiting connection).
 */
int am_http_deferred_fd(am_http_deferred *d);

/* Splits "host:port" into a host (copied to host, hostlen bytes) and a port. */
int am_http_parse_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
