/* athena-admin-api: flags, wiring and signals of the HTTP API and performance page. */
#include "am_config.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "alerts.h"
#include "alerts_eval.h"
#include "api.h"
#include "pool.h"
#include "prices.h"
#include "retention.h"
#include "rollup.h"
#include "stream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *database_url;
static const char *listen_addr;
static const char *token;
static const char *token_file;
static long long pool_size;
static long long threads;
static long long max_body_kib;
static long long db_timeout_ms;
static long long http_timeout_s;
static long long max_conns;
static long long retention_days;
static long long retention_interval_s;
static long long rollup_interval_s;
static long long rollup_min_hours;
static long long stream_max_clients;
static long long stream_buffer_kib;
static long long stream_heartbeat_s;
static long long stream_replay_max;
static long long alert_interval_s;
static long long alert_timeout_ms;
static long long alert_retries;
static long long alert_backoff_ms;
static long long alert_history_max;

static const struct am_setting settings[] = {
    {"database-url", "DATABASE_URL", AM_SET_STRING, "postgresql://localhost/athena", 0, 0,
     "PostgreSQL connection URL", &database_url},
    {"listen", "LISTEN_ADDR", AM_SET_STRING, "0.0.0.0:8080", 0, 0, "host:port to serve HTTP on",
     &listen_addr},
    {"token", "ADMIN_API_TOKEN", AM_SET_STRING, NULL, 0, 0,
     "bearer token every write must carry (unset: writes are open)", &token},
    {"token-file", "ADMIN_API_TOKEN_FILE", AM_SET_STRING, NULL, 0, 0,
     "file holding the bearer token (its first line)", &token_file},
    {"pool-size", "ADMIN_DB_POOL_SIZE", AM_SET_INT, "8", 1, 256, "database connections at most",
     &pool_size},
    {"threads", "ADMIN_HTTP_THREADS", AM_SET_INT, "4", 1, 256, "HTTP worker threads", &threads},
    {"max-body-kib", "ADMIN_MAX_BODY_KIB", AM_SET_INT, "8192", 1, 1048576,
     "largest request body accepted; larger ones get 413", &max_body_kib},
    {"db-timeout-ms", "ADMIN_DB_TIMEOUT_MS", AM_SET_INT, "2000", 1, 600000,
     "how long a request waits for a database connection before 503", &db_timeout_ms},
    {"http-timeout-s", "ADMIN_HTTP_TIMEOUT_S", AM_SET_INT, "30", 1, 3600,
     "idle or slow connections are closed after this many seconds", &http_timeout_s},
    {"max-connections", "ADMIN_HTTP_MAX_CONNECTIONS", AM_SET_INT, "1024", 1, 100000,
     "concurrent HTTP connections at most", &max_conns},
    {"retention-days", "ADMIN_RETENTION_DAYS", AM_SET_INT, "90", 0, 36500,
     "metrics older than this many days are deleted (0 keeps everything)", &retention_days},
    {"retention-interval-s", "ADMIN_RETENTION_INTERVAL_S", AM_SET_INT, "600", 1, 86400,
     "time between retention runs", &retention_interval_s},
    {"rollup-interval-s", "ADMIN_ROLLUP_INTERVAL_S", AM_SET_INT, "10", 0, 86400,
     "time between refreshes of the hourly rollups (0: this replica does not refresh them)",
     &rollup_interval_s},
    {"summary-rollup-min-hours", "ADMIN_SUMMARY_ROLLUP_MIN_HOURS", AM_SET_INT, "6", 0, 100000,
     "summaries over at least this many hours read the hourly rollups, with approximate "
     "percentiles (0: always read every row)",
     &rollup_min_hours},
    {"stream-max-clients", "ADMIN_STREAM_MAX_CLIENTS", AM_SET_INT, "256", 1, 100000,
     "live-stream clients at once; past it 503", &stream_max_clients},
    {"stream-buffer-kib", "ADMIN_STREAM_BUFFER_KIB", AM_SET_INT, "1024", 16, 1048576,
     "events queued per live-stream client; past it the client's events are dropped and counted",
     &stream_buffer_kib},
    {"stream-heartbeat-s", "ADMIN_STREAM_HEARTBEAT_S", AM_SET_INT, "15", 1, 3600,
     "comment line sent to idle live-stream clients", &stream_heartbeat_s},
    {"stream-replay-max", "ADMIN_STREAM_REPLAY_MAX", AM_SET_INT, "1000", 0, 100000,
     "rows replayed to a live-stream client resuming with Last-Event-ID", &stream_replay_max},
    {"alert-interval-s", "ADMIN_ALERT_INTERVAL_S", AM_SET_INT, "30", 0, 86400,
     "time between evaluations of the alert rules (0: this replica does not evaluate them)",
     &alert_interval_s},
    {"alert-webhook-timeout-ms", "ADMIN_ALERT_WEBHOOK_TIMEOUT_MS", AM_SET_INT, "5000", 100, 60000,
     "one webhook POST, connection included", &alert_timeout_ms},
    {"alert-webhook-retries", "ADMIN_ALERT_WEBHOOK_RETRIES", AM_SET_INT, "3", 0, 10,
     "webhook attempts after the first (timeouts, no answer, 408, 429, 5xx); then the event is "
     "recorded as failed and counted",
     &alert_retries},
    {"alert-webhook-backoff-ms", "ADMIN_ALERT_WEBHOOK_BACKOFF_MS", AM_SET_INT, "1000", 0, 60000,
     "wait before the first webhook retry, doubled before each next one", &alert_backoff_ms},
    {"alert-history-max", "ADMIN_ALERT_HISTORY_MAX", AM_SET_INT, "10000", 1, 100000000,
     "alert events kept; older ones are deleted and counted", &alert_history_max},
};

static struct aa_ctx ctx;
static char *token_buf;
static aa_retention *retention;
static aa_rollup *rollup;
static aa_alerts *alerts;

static void health(struct aa_ctx *c, const struct am_http_request *req,
                   struct am_http_response *resp, const char *arg)
{
    am_http_reply(resp, 200, "application/json", "{\"status\": \"ok\"}");
}

static void ready(struct aa_ctx *c, const struct am_http_request *req,
                  struct am_http_response *resp, const char *arg)
{
    if (aa_pool_ping(c->pool))
        am_http_reply(resp, 200, "application/json", "{\"status\": \"ready\"}");
    else
        am_http_error(resp, 503, "database unreachable");
}

static void metrics(struct aa_ctx *c, const struct am_http_request *req,
                    struct am_http_response *resp, const char *arg)
{
    struct am_buf b;
    am_buf_init(&b, 4 << 20);
    aa_api_write_prom(&b);
    aa_pool_write_prom(c->pool, &b);
    aa_stream_write_prom(c->stream, &b);
    aa_retention_write_prom(retention, &b);
    aa_rollup_write_prom(rollup, &b);
    aa_alerts_write_prom(alerts, &b);
    aa_reply_buf(resp, 200, &b);
    resp->content_type = "text/plain; version=0.0.4";
}

const struct aa_route aa_health_routes[] = {
    {"GET", "/health", health, 0},
    {"GET", "/ready", ready, 0},
    {"GET", "/metrics", metrics, 0},
    {0},
};

/* Alert and price routes come before the registry's, whose /api/llm-backends/{id} would take them.
 */
static const struct aa_route *const tables[] = {
    aa_health_routes, aa_metrics_routes, aa_stream_routes, aa_alert_routes,
    aa_price_routes,  aa_backend_routes, aa_page_routes,   NULL};

static void handle(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    aa_dispatch(&ctx, tables, req, resp);
}

/* Reads the token from its file: the first line, without trailing white space. */
static int load_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        return AM_EIO;
    }
    fclose(f);
    size_t n = strcspn(line, "\r\n");
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    line[n] = '\0';
    if (n == 0)
        return AM_EINVAL;
    token_buf = strdup(line);
    return token_buf ? AM_OK : AM_ENOMEM;
}

int main(int argc, char **argv)
{
    am_http_server *http = NULL;
    aa_stream *hub = NULL;
    sigset_t set;
    int sig;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "athena-admin-api",
                   "Serves the metrics API and the performance page.");
    if (token_file && *token_file) {
        int rc = load_token_file(token_file);
        if (rc) {
            fprintf(stderr, "athena-admin-api: ADMIN_API_TOKEN_FILE: cannot read a token from %s\n",
                    token_file);
            return 2;
        }
        token = token_buf;
    }
    if (token && !*token)
        token = NULL;

    /* Signals are taken by sigwait below; the server threads inherit the mask. */
    am_signals_block(&set);

    if (aa_pool_open(&ctx.pool, database_url, (int)pool_size)) {
        fprintf(stderr, "athena-admin-api: out of memory\n");
        return 1;
    }
    ctx.token = token;
    ctx.db_timeout_ms = (int)db_timeout_ms;
    struct aa_stream_config scfg;
    aa_stream_config_defaults(&scfg, database_url);
    scfg.max_clients = (int)stream_max_clients;
    scfg.client_buffer = (size_t)stream_buffer_kib << 10;
    scfg.heartbeat_ms = (int)stream_heartbeat_s * 1000;
    scfg.replay_max = (int)stream_replay_max;
    if (aa_stream_open_config(&hub, &scfg) == AM_OK)
        ctx.stream = hub;
    else
        am_log_error("cannot start the live-stream hub");

    struct aa_retention_config rcfg = {
        .database_url = database_url,
        .days = (int)retention_days,
        .interval_s = (int)retention_interval_s,
        .batch_rows = 5000,
    };
    if (aa_retention_start(&retention, &rcfg) != AM_OK)
        am_log_error("cannot start the retention thread");
    struct aa_rollup_config ucfg = {.database_url = database_url,
                                    .interval_s = (int)rollup_interval_s};
    if (aa_rollup_start(&rollup, &ucfg) != AM_OK)
        am_log_error("cannot start the rollup refresher");
    ctx.rollup_min_hours = (int)rollup_min_hours;
    struct aa_alerts_config acfg = {.database_url = database_url,
                                    .interval_s = (int)alert_interval_s,
                                    .webhook_timeout_ms = (int)alert_timeout_ms,
                                    .webhook_retries = (int)alert_retries,
                                    .webhook_backoff_ms = (int)alert_backoff_ms,
                                    .history_max = alert_history_max};
    if (aa_alerts_start(&alerts, &acfg) != AM_OK)
        am_log_error("cannot start the alert evaluator");

    struct am_http_options opt = {
        .max_body = (size_t)max_body_kib << 10,
        .timeout_s = (unsigned)http_timeout_s,
        .threads = (unsigned)threads,
        .max_conns = (unsigned)max_conns,
    };
    if (am_http_start(&http, listen_addr, &opt, handle, NULL) != AM_OK) {
        fprintf(stderr, "athena-admin-api: cannot serve HTTP on %s\n", listen_addr);
        aa_alerts_stop(alerts);
        aa_rollup_stop(rollup);
        aa_retention_stop(retention);
        aa_stream_close(hub);
        aa_pool_close(ctx.pool);
        return 2;
    }
    am_log_info("athena-admin-api %s listening on %s (writes %s)", AM_VERSION, listen_addr,
                token ? "need a bearer token" : "open");
    sigwait(&set, &sig);
    am_log_info("stopping on signal %d", sig);
    am_http_stop(http);
    aa_alerts_stop(alerts);
    aa_rollup_stop(rollup);
    aa_retention_stop(retention);
    aa_stream_close(hub);
    aa_pool_close(ctx.pool);
    free(token_buf);
    return 0;
}
