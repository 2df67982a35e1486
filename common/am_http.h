/* A small HTTP server over libmicrohttpd: routes a request to one handler. */
#ifndef AM_HTTP_H
#define AM_HTTP_H

#include <stddef.h>

typedef struct am_http_server am_http_server;
struct MHD_Connection;

struct am_http_request {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated, body_len bytes; "" when there is none */
    size_t body_len;
    const char *request_id; /* from X-Request-Id, or generated */
    struct MHD_Connection *conn;
};

struct am_http_response {
    int status;
    const char *content_type; /* static string; default application/json */
    char *body;               /* malloc'd by the handler, freed by the server */
    size_t body_len;
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
};

/*
 * Starts serving listen_addr ("host:port"; port 0 picks one). opt may be
 * NULL. On success *out owns the server; stop it with am_http_stop.
 */
int am_http_start(am_http_server **out, const char *listen_addr, const struct am_http_options *opt,
                  am_http_handler handler, void *arg);

/* The port the server is bound to. */
int am_http_port(const am_http_server *srv);

/* Stops the server and frees it; accepts NULL. */
void am_http_stop(am_http_server *srv);

/* A query parameter of req, or NULL. */
const char *am_http_query(const struct am_http_request *req, const char *key);

/* A request header of req, or NULL. */
const char *am_http_header(const struct am_http_request *req, const char *name);

/* Sets resp to status with a copy of text. */
void am_http_reply(struct am_http_response *resp, int status, const char *content_type,
                   const char *text);

/* Sets resp to status with {"error": message}. */
void am_http_error(struct am_http_response *resp, int status, const char *message);

/* Splits "host:port" into a host (copied to host, hostlen bytes) and a port. */
int am_http_parse_addr(const char *addr, char *host, size_t hostlen, int *port);

#endif
