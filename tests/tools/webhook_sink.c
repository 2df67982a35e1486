/*
 * am-webhook-sink: a webhook receiver for tests. Every POST is appended to a
 * file as one line, "STATUS BODY", with the status it was answered; the
 * first --fail-first POSTs are answered --fail-status, the others 200. GET
 * answers 200 (for readiness checks) and is not recorded. Runs until SIGTERM.
 */
#include "am_config.h"
#include "am_http.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *listen_addr;
static const char *out_path;
static long long fail_first;
static long long fail_status;

static const struct am_setting settings[] = {
    {"listen", NULL, AM_SET_STRING, "127.0.0.1:0", 0, 0, "host:port to serve on", &listen_addr},
    {"out", NULL, AM_SET_STRING, NULL, 0, 0, "file the received POSTs are appended to", &out_path},
    {"fail-first", NULL, AM_SET_INT, "0", 0, 1000000000, "POSTs answered with --fail-status",
     &fail_first},
    {"fail-status", NULL, AM_SET_INT, "500", 200, 599, "status of the failed answers",
     &fail_status},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;
static long long received;

static void handle(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    (void)arg;
    if (strcmp(req->method, "POST") != 0) {
        am_http_reply(resp, 200, "text/plain", "ok\n");
        return;
    }
    pthread_mutex_lock(&mu);
    int status = received++ < fail_first ? (int)fail_status : 200;
    /* One line per request: a body's own newlines would split it. */
    fprintf(out, "%d ", status);
    for (size_t i = 0; i < req->body_len; i++)
        fputc(req->body[i] == '\n' ? ' ' : req->body[i], out);
    fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&mu);
    am_http_reply(resp, status, "application/json", "{}");
}

int main(int argc, char **argv)
{
    am_http_server *srv = NULL;
    sigset_t set;
    int sig;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "am-webhook-sink",
                   "Records webhook POSTs to a file, failing the first N.");
    if (!out_path || !*out_path) {
        fprintf(stderr, "am-webhook-sink: --out is required\n");
        return 2;
    }
    out = fopen(out_path, "a");
    if (!out) {
        fprintf(stderr, "am-webhook-sink: cannot open %s\n", out_path);
        return 2;
    }
    am_signals_block(&set);
    if (am_http_start(&srv, listen_addr, NULL, handle, NULL) != 0) {
        fprintf(stderr, "am-webhook-sink: cannot serve HTTP on %s\n", listen_addr);
        return 2;
    }
    printf("port=%d\n", am_http_port(srv));
    fflush(stdout);
    sigwait(&set, &sig);
    am_http_stop(srv);
    fclose(out);
    return 0;
}
