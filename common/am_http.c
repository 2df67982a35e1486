/* A small HTTP server over libmicrohttpd. */
#include "am_http.h"
#include "am_buf.h"
#include "am_error.h"
#include "am_log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct am_http_server {
    struct MHD_Daemon *daemon;
    am_http_handler handler;
    void *arg;
    size_t max_body;
    int port;
};

/* Per-request state kept by MHD between calls of the access handler. */
struct request_state {
    struct am_buf body;
    int too_large;
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

void am_http_reply(struct am_http_response *resp, int status, const char *content_type,
                   const char *text)
{
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

static enum MHD_Result send_response(struct MHD_Connection *conn, struct am_http_response *r,
                                     const char *request_id)
{
    struct MHD_Response *mr =
        MHD_create_response_from_buffer(r->body_len, r->body ? r->body : (char *)"",
                                        r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!mr) {
        free(r->body);
        return MHD_NO;
    }
    r->body = NULL;
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type ? r->content_type : "application/json");
    if (request_id)
        MHD_add_response_header(mr, "X-Request-Id", request_id);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    return ret;
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

    char rid_buf[48];
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (!rid || !*rid || strlen(rid) > 128) {
        snprintf(rid_buf, sizeof rid_buf, "req-%llx-%llu", (unsigned long long)srv->port,
                 (unsigned long long)atomic_fetch_add(&request_counter, 1) + 1);
        rid = rid_buf;
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
        if (!resp.body)
            am_http_error(&resp, 500, "internal error: no response");
    }
    AM_LOG_REQ(AM_LOG_DEBUG, rid, "%s %s -> %d", method, url, resp.status);
    return send_response(conn, &resp, rid);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request_state *st = *con_cls;
    if (st) {
        am_buf_free(&st->body);
        free(st);
        *con_cls = NULL;
    }
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

    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
        MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        am_log_error("cannot listen on %s", listen_addr);
        free(srv);
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

void am_http_stop(am_http_server *srv)
{
    if (!srv)
        return;
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    free(srv);
}
