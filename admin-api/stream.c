/* Server-Sent Events of newly stored metrics: one hub thread LISTENs and fans rows out. */
#include "stream.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_http.h"
#include "am_log.h"
#include "am_metric.h"
#include "am_prom.h"
#include "api.h"
#include "params.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Rows read by one live query; more are read by the next one at once. */
#define PAGE_ROWS   "1000"
#define PAGE_ROWS_N 1000
/* A gap younger than this is not judged: its writer may not have an xid yet. */
#define GAP_SETTLE_MS 100
/* How often the hub looks again while a gap holds delivery back. */
#define GAP_RECHECK_MS     100
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define CONNECT_TIMEOUT_MS 5000

/* The exact-match filters, in the order of their columns in ROW_COLUMNS. */
enum { F_MODEL, F_BACKEND, F_INTENT, F_SOURCE, F_STATUS, F_SESSION, F_REQUEST, F_STAGE, NFILTERS };
static const char *const filter_names[NFILTERS] = {
    "model", "backend", "intent", "source", "status", "session_id", "request_id", "stage",
};
static const char *const statuses[] = {"ok", "error", NULL};

/* The filter fields as columns of their own, then the event as JSON built by PostgreSQL. */
#define ROW_COLUMNS                                                                                \
    "id, model, backend, intent, source, status, session_id, request_id, stage, "                  \
    "json_build_object('id', id, 'timestamp', timestamp, 'model', model, 'backend', backend, "     \
    "'latency_seconds', latency_seconds, 'tokens_generated', tokens, 'tokens', tokens, "           \
    "'tokens_per_second', tokens_per_second, 'prompt_tokens', prompt_tokens, "                     \
    "'ttft_seconds', ttft_seconds, 'status', status, 'error_type', error_type, "                   \
    "'request_id', request_id, 'session_id', session_id, 'user_id', user_id, 'zone', zone, "       \
    "'intent', intent, 'device_id', device_id, 'source', source, 'stage', stage)::text AS doc"

/*
 * New rows after $1, with the snapshot the statement saw (to judge gaps in
 * the ids); the LEFT JOIN yields the snapshot even when there is no row.
 */
static const char live_sql[] =
    "SELECT s.snap, m.* FROM (SELECT pg_current_snapshot()::text AS snap) s "
    "LEFT JOIN LATERAL (SELECT " ROW_COLUMNS " FROM llm_performance_metric "
    "WHERE id > $1 ORDER BY id LIMIT " PAGE_ROWS ") m ON true";

/* The newest $3 rows in ($1, $2] that match the filters $4..$11, oldest first. */
static const char replay_sql[] =
    "SELECT * FROM (SELECT " ROW_COLUMNS " FROM llm_performance_metric "
    "WHERE id > $1 AND id <= $2 "
    "AND ($4::text IS NULL OR model = $4) AND ($5::text IS NULL OR backend = $5) "
    "AND ($6::text IS NULL OR intent = $6) AND ($7::text IS NULL OR source = $7) "
    "AND ($8::text IS NULL OR status = $8) AND ($9::text IS NULL OR session_id = $9) "
    "AND ($10::text IS NULL OR request_id = $10) AND ($11::text IS NULL OR stage = $11) "
    "ORDER BY id DESC LIMIT $3) r ORDER BY id";

enum { Q_NOTIFY, Q_POLL, Q_GAP, Q_REPLAY, NQUERY_KINDS };
static const char *const query_kinds[NQUERY_KINDS] = {"notify", "poll", "gap", "replay"};

struct client {
    struct client *next;
    am_http_stream *out;
    char *filter[NFILTERS]; /* owned; NULL matches anything */
    long long since;        /* resume after this id; -1 for none */
    long long last_id;      /* rows up to here were sent or passed over */
    uint64_t dropped;       /* events dropped since the last `dropped` event */
    long long drop_first, drop_last;
    bool gone;
};

/* One row of a result, borrowed from the PGresult. */
struct row {
    long long id;
    const char *field[NFILTERS]; /* NULL for SQL NULL */
    const char *doc;
};

/* Column numbers of a result, looked up by name. */
struct columns {
    int id, field[NFILTERS], doc, snap;
};

struct aa_stream {
    struct aa_stream_config cfg;
    pthread_t thread;
    int wake_fd;
    _Atomic bool stopping;

    pthread_mutex_t mu;     /* clients, joining, nclients */
    struct client *clients; /* receiving live rows */
    struct client *joining; /* admitted, not yet caught up by the hub */
    int nclients;           /* both lists */

    /* Only the hub thread touches these. */
    PGconn *conn;
    bool listening;    /* LISTEN worked on conn; else the hub polls */
    bool have_last;    /* last_id is known */
    bool init_warned;  /* the failure to learn last_id was logged */
    long long last_id; /* every row up to it was fanned out, or is a gap given up on */
    bool stalled;      /* the last query stopped at a gap */
    bool some_gone;    /* a write found a client gone: prune after the page */
    struct {
        bool active;
        int64_t seen_ms;  /* when gaps up to upto were first seen */
        long long upto;   /* the newest id visible then */
        bool xip_known;   /* xip_max was taken, GAP_SETTLE_MS after seen_ms */
        uint64_t xip_max; /* the newest transaction running then; 0 for none */
    } hold;
    struct am_buf ev;      /* the event text of one row */
    struct am_buf scratch; /* a `dropped` event and the text that follows it */

    _Atomic uint64_t delivered, dropped, notifications, reconnects, rejected, gaps_timed_out;
    _Atomic uint64_t queries[NQUERY_KINDS];
    _Atomic int connected, listening_now;
    _Atomic long long position;
};

static int64_t now_ms(void)
{
    return am_clock_mono_ns() / 1000000;
}

static void wake(aa_stream *h)
{
    uint64_t one = 1;
    /* A full counter still wakes the hub, so a failed write needs no handling. */
    if (write(h->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        am_log_warn("event stream: cannot wake the hub: %s", strerror(errno));
}

static void drain_wake(aa_stream *h)
{
    uint64_t n;
    while (read(h->wake_fd, &n, sizeof n) > 0)
        continue;
}

static void client_free(struct client *c)
{
    if (!c)
        return;
    am_http_stream_release(c->out);
    for (int i = 0; i < NFILTERS; i++)
        free(c->filter[i]);
    free(c);
}

/* Drops the clients of *list whose connection ended; called with h->mu held. */
static void prune_locked(aa_stream *h, struct client **list)
{
    struct client **pp = list;
    while (*pp) {
        struct client *c = *pp;
        if (c->gone || am_http_stream_closed(c->out)) {
            *pp = c->next;
            h->nclients--;
            client_free(c);
        } else {
            pp = &c->next;
        }
    }
}

static bool matches(const struct client *c, const struct row *r)
{
    for (int i = 0; i < NFILTERS; i++) {
        if (c->filter[i] && (!r->field[i] || strcmp(c->filter[i], r->field[i]) != 0))
            return false;
    }
    return true;
}

/*
 * Writes text to c. A full buffer drops it, counted when it is an event
 * (id > 0). A client that lost events hears of it in a `dropped` event
 * written together with the next text that fits, all or nothing, so it
 * never sees an event after a loss unannounced. A closed stream marks c
 * gone.
 */
static void send_text(aa_stream *h, struct client *c, const char *text, size_t len, long long id)
{
    int rc = AM_OK;
    if (c->dropped > 0) {
        h->scratch.len = 0;
        rc = am_buf_printf(&h->scratch,
                           "event: dropped\ndata: {\"reason\": \"slow_client\", \"count\": %" PRIu64
                           ", \"first_id\": %lld, \"last_id\": %lld}\n\n",
                           c->dropped, c->drop_first, c->drop_last);
        rc = rc ? rc : am_buf_append(&h->scratch, text, len);
        text = h->scratch.data;
        len = h->scratch.len;
    }
    if (rc == AM_OK)
        rc = am_http_stream_write(c->out, text, len);
    else
        rc = AM_EFULL; /* scratch holds at most one event; count it as dropped */
    if (rc == AM_OK) {
        c->dropped = 0;
        if (id > 0)
            atomic_fetch_add(&h->delivered, 1);
    } else if (rc == AM_EFULL) {
        /* Never block the hub on a slow client: drop, count, and tell it later. */
        if (id > 0) {
            if (c->dropped++ == 0)
                c->drop_first = id;
            c->drop_last = id;
            atomic_fetch_add(&h->dropped, 1);
        }
    } else {
        c->gone = true;
        h->some_gone = true;
    }
}

/* Formats the SSE event of r into h->ev; false if it does not fit (never for valid rows). */
static bool format_event(aa_stream *h, const struct row *r)
{
    h->ev.len = 0;
    return am_buf_printf(&h->ev, "id: %lld\nevent: metric\ndata: %s\n\n", r->id, r->doc) == AM_OK;
}

static int column(const PGresult *res, const char *name)
{
    int n = PQfnumber(res, name);
    if (n < 0)
        am_log_error("event stream: result has no column %s", name);
    return n;
}

static int lookup_columns(const PGresult *res, struct columns *col, bool with_snap)
{
    col->id = column(res, "id");
    col->doc = column(res, "doc");
    col->snap = with_snap ? column(res, "snap") : 0;
    int bad = col->id < 0 || col->doc < 0 || col->snap < 0;
    for (int i = 0; i < NFILTERS; i++) {
        col->field[i] = column(res, filter_names[i]);
        bad |= col->field[i] < 0;
    }
    return bad ? AM_EDB : AM_OK;
}

static void get_row(const PGresult *res, int i, const struct columns *col, struct row *r)
{
    r->id = strtoll(PQgetvalue(res, i, col->id), NULL, 10);
    for (int f = 0; f < NFILTERS; f++)
        r->field[f] = PQgetisnull(res, i, col->field[f]) ? NULL : PQgetvalue(res, i, col->field[f]);
    r->doc = PQgetvalue(res, i, col->doc);
}

/* Sends r to every live client whose filters match; called with h->mu held. */
static void fan_out_locked(aa_stream *h, const struct row *r)
{
    if (!format_event(h, r)) {
        am_log_warn("event stream: metric %lld too large for an event", r->id);
        return;
    }
    for (struct client *c = h->clients; c; c = c->next) {
        if (c->gone || r->id <= c->last_id)
            continue;
        c->last_id = r->id;
        if (matches(c, r))
            send_text(h, c, h->ev.data, h->ev.len, r->id);
    }
}

/* Drops the database connection; the main loop reconnects. */
static void hub_disconnect(aa_stream *h)
{
    PQfinish(h->conn);
    h->conn = NULL;
    h->listening = false;
    h->stalled = false;
    h->hold.active = false;
    atomic_store(&h->connected, 0);
    atomic_store(&h->listening_now, 0);
}

/* After a failed query: reconnect if the connection broke, else just log. */
static void query_failed(aa_stream *h, const char *what, PGresult *res)
{
    if (PQstatus(h->conn) != CONNECTION_OK) {
        am_log_warn("event stream: database connection lost during %s: %s", what,
                    PQerrorMessage(h->conn));
        hub_disconnect(h);
    } else {
        am_log_warn("event stream: %s failed: %s", what, PQresultErrorMessage(res));
    }
}

static void on_notice(void *arg, const char *message)
{
    am_log_debug("database notice: %s", message);
}

/* Opens the hub's connection without blocking past CONNECT_TIMEOUT_MS or a stop. */
static int hub_connect(aa_stream *h)
{
    const char *keys[] = {"dbname", "application_name", "options", NULL};
    const char *vals[] = {h->cfg.database_url, "athena-admin-api-stream",
                          "-c TimeZone=UTC -c statement_timeout=5000", NULL};
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    PGresult *res = NULL;
    int rc = AM_EDB;

    if (!conn)
        return AM_ENOMEM;
    int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            break;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            am_log_warn("event stream: database connection timed out");
            goto out;
        }
        struct pollfd p[2] = {
            {PQsocket(conn), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0},
            {h->wake_fd, POLLIN, 0},
        };
        if (poll(p, 2, (int)left) < 0 && errno != EINTR)
            goto out;
        if (atomic_load(&h->stopping))
            goto out;
        if (p[1].revents)
            drain_wake(h); /* joining clients are handled once connected */
        if (p[0].revents)
            st = PQconnectPoll(conn);
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        am_log_warn("event stream: database connection failed: %s", PQerrorMessage(conn));
        goto out;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);

    /* LISTEN fails on a standby, for one; then the hub polls instead. */
    res = PQexec(conn, "LISTEN " AA_STREAM_CHANNEL);
    h->listening = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!h->listening)
        am_log_warn("event stream: LISTEN failed, polling every %d ms instead: %s", h->cfg.poll_ms,
                    PQresultErrorMessage(res));
    h->conn = conn;
    conn = NULL;
    atomic_store(&h->connected, 1);
    atomic_store(&h->listening_now, h->listening ? 1 : 0);
    rc = AM_OK;
out:
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* Learns where the table ends, once: clients get what is stored after they connect. */
static int init_position(aa_stream *h)
{
    int rc = AM_EDB;
    PGresult *res =
        PQexec(h->conn, "SELECT coalesce(max(id), 0) AS id FROM llm_performance_metric");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        /* Before the migrations ran the table is missing: say so once, keep trying. */
        if (PQstatus(h->conn) != CONNECTION_OK || !h->init_warned)
            query_failed(h, "reading the newest id", res);
        h->init_warned = true;
        goto out;
    }
    h->last_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    h->have_last = true;
    atomic_store(&h->position, h->last_id);
    am_log_info("event stream: listening for metrics after id %lld", h->last_id);
    rc = AM_OK;
out:
    PQclear(res);
    return rc;
}

/*
 * Parses "xmin:xmax:xip,xip,..." (pg_current_snapshot): xmin is the oldest
 * transaction still running, *xip_max the newest, 0 when none runs.
 */
static void parse_snapshot(const char *snap, uint64_t *xmin, uint64_t *xip_max)
{
    char *end = NULL;
    *xmin = strtoull(snap, &end, 10);
    *xip_max = 0;
    const char *p = strchr(snap, ':');
    p = p ? strchr(p + 1, ':') : NULL;
    while (p && *++p) {
        uint64_t x = strtoull(p, &end, 10);
        if (x > *xip_max)
            *xip_max = x;
        p = strchr(p, ',');
    }
}

/*
 * Whether the ids missing below row id (a gap after last_id) are gone for
 * good. Ids are taken in one order and committed in another, so a missing
 * id may belong to a transaction still running. The first query that sees
 * gaps starts a hold over every id up to the newest row it saw (page_max).
 * Those gaps are final once the hold is GAP_SETTLE_MS old (a writer has an
 * xid by then) and every transaction running at that point has ended; or,
 * as a last resort, after gap_ms. A hold decides all its gaps at once, so
 * a stream of gaps (two collectors burn ids on duplicates) costs one hold
 * per round, not one per gap.
 */
static bool gap_is_final(aa_stream *h, const char *snap, long long id, long long page_max)
{
    uint64_t xmin, xip_max;
    int64_t now = now_ms();

    parse_snapshot(snap, &xmin, &xip_max);
    if (!h->hold.active || id > h->hold.upto) {
        h->hold.active = true;
        h->hold.seen_ms = now;
        h->hold.upto = page_max;
        h->hold.xip_known = false;
        return false;
    }
    if (now - h->hold.seen_ms < GAP_SETTLE_MS)
        return false;
    if (!h->hold.xip_known) {
        if (xip_max == 0)
            return true;
        h->hold.xip_known = true;
        h->hold.xip_max = xip_max;
        return false;
    }
    if (xmin > h->hold.xip_max)
        return true;
    if (now - h->hold.seen_ms >= h->cfg.gap_ms) {
        am_log_warn("event stream: stopped waiting for metric ids %lld to %lld after %d ms",
                    h->last_id + 1, id - 1, h->cfg.gap_ms);
        atomic_fetch_add(&h->gaps_timed_out, 1);
        h->hold.seen_ms = now - GAP_SETTLE_MS - h->cfg.gap_ms; /* the rest of this hold too */
        return true;
    }
    return false;
}

/*
 * With no client there is nothing to fan out: the hub only moves its
 * position to the newest id, with one cheap query instead of building
 * JSON for every row. A client that connects later and resumes gets the
 * rows from the table (replay).
 */
static int skip_to_newest(aa_stream *h, int kind)
{
    int rc = AM_EDB;
    atomic_fetch_add(&h->queries[kind], 1);
    PGresult *res =
        PQexec(h->conn, "SELECT coalesce(max(id), 0) AS id FROM llm_performance_metric");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        query_failed(h, "reading the newest id", res);
        goto out;
    }
    long long id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (id > h->last_id)
        h->last_id = id;
    h->stalled = false;
    h->hold.active = false;
    atomic_store(&h->position, h->last_id);
    rc = AM_OK;
out:
    PQclear(res);
    return rc;
}

/*
 * Reads one page of rows after last_id and fans it out in id order,
 * stopping at a gap that may still fill (h->stalled). *rows is the size of
 * the page.
 */
static int fetch_page(aa_stream *h, int kind, int *rows)
{
    char after[24];
    const char *params[1] = {after};
    struct columns col;
    PGresult *res = NULL;
    int rc = AM_EDB;

    *rows = 0;
    snprintf(after, sizeof after, "%lld", h->last_id);
    atomic_fetch_add(&h->queries[kind], 1);
    res = PQexecParams(h->conn, live_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        query_failed(h, "reading new metrics", res);
        goto out;
    }
    if (lookup_columns(res, &col, true) != AM_OK)
        goto out;
    int n = PQgetisnull(res, 0, col.id) ? 0 : PQntuples(res);
    long long page_max = n ? strtoll(PQgetvalue(res, n - 1, col.id), NULL, 10) : 0;
    h->stalled = false;
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < n; i++) {
        struct row r;
        get_row(res, i, &col, &r);
        if (r.id != h->last_id + 1 &&
            !gap_is_final(h, PQgetvalue(res, 0, col.snap), r.id, page_max)) {
            h->stalled = true;
            break;
        }
        fan_out_locked(h, &r);
        h->last_id = r.id;
    }
    if (h->some_gone) {
        h->some_gone = false;
        prune_locked(h, &h->clients);
    }
    pthread_mutex_unlock(&h->mu);
    atomic_store(&h->position, h->last_id);
    *rows = n;
    rc = AM_OK;
out:
    PQclear(res);
    return rc;
}

/* Reads what was stored after last_id, a page at a time, and fans it out. */
static int fetch_live(aa_stream *h, int kind)
{
    pthread_mutex_lock(&h->mu);
    bool nobody = h->nclients == 0;
    pthread_mutex_unlock(&h->mu);
    if (nobody)
        return skip_to_newest(h, kind);

    int rows, rc;
    do {
        rc = fetch_page(h, kind, &rows);
    } while (rc == AM_OK && !h->stalled && rows == PAGE_ROWS_N);
    return rc;
}

/*
 * Replays to c what matched its filters after c->since, up to the hub's
 * position and at most replay_max rows (the newest; an older remainder is
 * announced with a `dropped` event naming the first id replayed). On
 * failure c is told with a `dropped` event and goes on live.
 */
static int replay(aa_stream *h, struct client *c)
{
    char since[24], upto[24], limit[24];
    const char *params[3 + NFILTERS] = {since, upto, limit};
    struct columns col;
    PGresult *res = NULL;
    int rc = AM_EDB;

    if (c->since >= h->last_id)
        return AM_OK;
    snprintf(since, sizeof since, "%lld", c->since);
    snprintf(upto, sizeof upto, "%lld", h->last_id);
    snprintf(limit, sizeof limit, "%d", h->cfg.replay_max + 1);
    for (int i = 0; i < NFILTERS; i++)
        params[3 + i] = c->filter[i];
    atomic_fetch_add(&h->queries[Q_REPLAY], 1);
    res = PQexecParams(h->conn, replay_sql, 3 + NFILTERS, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        query_failed(h, "replaying metrics", res);
        goto out;
    }
    if (lookup_columns(res, &col, false) != AM_OK)
        goto out;
    int n = PQntuples(res), first = 0;
    if (n > h->cfg.replay_max) {
        struct row r;
        char note[160];
        get_row(res, 1, &col, &r);
        int len = snprintf(note, sizeof note,
                           "event: dropped\ndata: {\"reason\": \"replay_limit\", \"before_id\": "
                           "%lld}\n\n",
                           r.id);
        send_text(h, c, note, (size_t)len, 0);
        first = 1;
    }
    for (int i = first; i < n && !c->gone; i++) {
        struct row r;
        get_row(res, i, &col, &r);
        if (format_event(h, &r))
            send_text(h, c, h->ev.data, h->ev.len, r.id);
    }
    rc = AM_OK;
out:
    if (rc) {
        static const char note[] = "event: dropped\ndata: {\"reason\": \"replay_failed\"}\n\n";
        send_text(h, c, note, sizeof note - 1, 0);
    }
    PQclear(res);
    return rc;
}

/*
 * Moves admitted clients to the live list, replaying first for those that
 * resume. A resuming client waits while the hub has no connection.
 */
static void admit_joining(aa_stream *h)
{
    pthread_mutex_lock(&h->mu);
    struct client *list = h->joining, *wait = NULL;
    h->joining = NULL;
    pthread_mutex_unlock(&h->mu);

    while (list) {
        struct client *c = list;
        list = c->next;
        if (c->since >= 0) {
            if (!h->conn || !h->have_last) {
                c->next = wait;
                wait = c;
                continue;
            }
            replay(h, c); /* a failure is announced to c, which goes on live */
        }
        c->last_id = c->since > h->last_id ? c->since : h->last_id;
        pthread_mutex_lock(&h->mu);
        c->next = h->clients;
        h->clients = c;
        pthread_mutex_unlock(&h->mu);
    }
    if (wait) {
        pthread_mutex_lock(&h->mu);
        struct client *last = wait;
        while (last->next)
            last = last->next;
        last->next = h->joining;
        h->joining = wait;
        pthread_mutex_unlock(&h->mu);
    }
}

/*
 * A comment line to every client, so that proxies keep idle streams open
 * (also to those waiting for the database to replay); finds gone clients.
 */
static void heartbeat(aa_stream *h)
{
    static const char beat[] = ": heartbeat\n\n";
    pthread_mutex_lock(&h->mu);
    struct client *lists[2] = {h->clients, h->joining};
    for (int l = 0; l < 2; l++) {
        for (struct client *c = lists[l]; c; c = c->next)
            send_text(h, c, beat, sizeof beat - 1, 0);
    }
    prune_locked(h, &h->clients);
    prune_locked(h, &h->joining);
    pthread_mutex_unlock(&h->mu);
}

/* True when a notification is queued (PQnotifies), counting and discarding them. */
static bool take_notifications(aa_stream *h)
{
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(h->conn)) != NULL) {
        atomic_fetch_add(&h->notifications, 1);
        PQfreemem(n);
        any = true;
    }
    return any;
}

/* Sleeps ms, or less when woken (a stop, a new client). */
static void nap(aa_stream *h, int ms)
{
    struct pollfd p = {h->wake_fd, POLLIN, 0};
    if (poll(&p, 1, ms) > 0)
        drain_wake(h);
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/*
 * The hub: connect (with backoff), learn the position, admit clients,
 * send heartbeats, and after each notification (or poll) read the new rows
 * once for all clients. It sleeps in poll() on the connection and wake_fd.
 */
static void *hub_main(void *arg)
{
    aa_stream *h = arg;
    int backoff = BACKOFF_MIN_MS, kind = Q_NOTIFY;
    bool ever_connected = false, fetch_due = false;
    int64_t start = now_ms();
    int64_t next_connect = start, next_poll = start, next_beat = start + h->cfg.heartbeat_ms;
    int64_t recheck_at = 0;

    while (!atomic_load(&h->stopping)) {
        int64_t now = now_ms();
        if (!h->conn && now >= next_connect) {
            if (hub_connect(h) == AM_OK) {
                backoff = BACKOFF_MIN_MS;
                if (ever_connected) {
                    atomic_fetch_add(&h->reconnects, 1);
                    am_log_info("event stream: database connection back, catching up after id %lld",
                                h->last_id);
                }
                ever_connected = true;
                /* Whatever was stored while the hub was away. */
                fetch_due = true;
                kind = Q_POLL;
            } else {
                next_connect = now_ms() + backoff;
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            }
            now = now_ms();
        }
        if (h->conn && !h->have_last && now >= next_poll) {
            next_poll = now + h->cfg.poll_ms;
            init_position(h); /* retried every poll_ms until it works */
            fetch_due = false;
        }
        admit_joining(h);
        if (now >= next_beat) {
            heartbeat(h);
            next_beat = now + h->cfg.heartbeat_ms;
            /* A cheap safety net for writers that do not notify. */
            fetch_due = true;
            kind = Q_POLL;
        }

        bool ready = h->conn && h->have_last;
        if (ready && !h->listening && now >= next_poll) {
            next_poll = now + h->cfg.poll_ms;
            fetch_due = true;
            kind = Q_POLL;
        }
        if (ready && h->stalled && now >= recheck_at && !fetch_due) {
            fetch_due = true;
            kind = Q_GAP;
        }
        if (ready && take_notifications(h)) {
            fetch_due = true;
            kind = Q_NOTIFY;
        }
        if (ready && fetch_due) {
            fetch_due = false;
            /* A failure was logged; a lost connection is reopened at the top. */
            fetch_live(h, kind);
            recheck_at = now_ms() + GAP_RECHECK_MS;
            /* Notifications that came in during the query are taken at the top. */
            continue;
        }

        int64_t until = next_beat;
        if (!h->conn)
            until = earliest(until, next_connect);
        else if (!h->have_last || !h->listening)
            until = earliest(until, next_poll);
        if (ready && h->stalled)
            until = earliest(until, recheck_at);
        int timeout = until > now ? (int)(until - now) : 0;
        struct pollfd p[2] = {{h->conn ? PQsocket(h->conn) : -1, POLLIN, 0},
                              {h->wake_fd, POLLIN, 0}};
        if (poll(p, 2, timeout) < 0 && errno != EINTR) {
            am_log_error("event stream: poll failed: %s", strerror(errno));
            nap(h, 100);
            continue;
        }
        if (p[1].revents)
            drain_wake(h);
        if (h->conn && p[0].revents && PQconsumeInput(h->conn) != 1) {
            am_log_warn("event stream: database connection lost: %s", PQerrorMessage(h->conn));
            hub_disconnect(h);
            next_connect = now_ms() + BACKOFF_MIN_MS;
        }
    }
    if (h->conn)
        hub_disconnect(h);
    return NULL;
}

void aa_stream_config_defaults(struct aa_stream_config *cfg, const char *database_url)
{
    *cfg = (struct aa_stream_config){
        .database_url = database_url,
        .max_clients = 256,
        .client_buffer = 1024 * 1024,
        .heartbeat_ms = 15000,
        .replay_max = 1000,
        .poll_ms = 1000,
        .gap_ms = 5000,
    };
}

int aa_stream_open_config(aa_stream **out, const struct aa_stream_config *cfg)
{
    aa_stream *h = calloc(1, sizeof *h);
    if (!h)
        return AM_ENOMEM;
    h->cfg = *cfg;
    h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->wake_fd < 0) {
        free(h);
        return AM_EIO;
    }
    /* JSON escaping can make each text field six times its 1 KiB. */
    am_buf_init(&h->ev, 256 * 1024);
    am_buf_init(&h->scratch, 257 * 1024);
    pthread_mutex_init(&h->mu, NULL);
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        close(h->wake_fd);
        free(h);
        return AM_ENOMEM;
    }
    *out = h;
    return AM_OK;
}

int aa_stream_open(aa_stream **out, const char *database_url)
{
    struct aa_stream_config cfg;
    aa_stream_config_defaults(&cfg, database_url);
    return aa_stream_open_config(out, &cfg);
}

int aa_stream_notify(PGconn *conn)
{
    PGresult *res = PQexec(conn, AA_STREAM_NOTIFY_SQL);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? AM_OK : AM_EDB;
    if (rc)
        am_log_warn("%s failed: %s", AA_STREAM_NOTIFY_SQL, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

void aa_stream_write_prom(aa_stream *h, struct am_buf *b)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    int clients = h->nclients;
    pthread_mutex_unlock(&h->mu);
    am_prom_gauge(b, "athena_admin_stream_clients", "Event stream clients connected.", clients);
    am_prom_counter(b, "athena_admin_stream_events_delivered_total",
                    "Metric events queued to stream clients.", atomic_load(&h->delivered));
    am_prom_counter(b, "athena_admin_stream_events_dropped_total",
                    "Metric events dropped because a client's buffer was full.",
                    atomic_load(&h->dropped));
    am_prom_counter(b, "athena_admin_stream_rejected_total",
                    "Stream requests refused because the client limit was reached.",
                    atomic_load(&h->rejected));
    am_prom_counter(b, "athena_admin_stream_notifications_total",
                    "Notifications received on the llm_metric channel.",
                    atomic_load(&h->notifications));
    am_prom_family(b, "athena_admin_stream_hub_queries_total", "counter",
                   "Queries of the stream hub, by what triggered them.");
    for (int k = 0; k < NQUERY_KINDS; k++) {
        char labels[32];
        snprintf(labels, sizeof labels, "trigger=\"%s\"", query_kinds[k]);
        am_prom_sample(b, "athena_admin_stream_hub_queries_total", labels,
                       (double)atomic_load(&h->queries[k]));
    }
    am_prom_counter(b, "athena_admin_stream_hub_reconnects_total",
                    "Times the stream hub reconnected to the database.",
                    atomic_load(&h->reconnects));
    am_prom_counter(b, "athena_admin_stream_gaps_timed_out_total",
                    "Missing ids the hub stopped waiting for after the gap timeout.",
                    atomic_load(&h->gaps_timed_out));
    am_prom_gauge(b, "athena_admin_stream_hub_connected",
                  "1 while the stream hub holds a database connection.",
                  atomic_load(&h->connected));
    am_prom_gauge(b, "athena_admin_stream_hub_listening",
                  "1 while the hub receives notifications; 0 means it polls.",
                  atomic_load(&h->listening_now));
    am_prom_gauge(b, "athena_admin_stream_position", "Highest metric id the hub has fanned out.",
                  (double)atomic_load(&h->position));
}

void aa_stream_close(aa_stream *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, true);
    wake(h);
    pthread_join(h->thread, NULL);
    struct client *lists[2] = {h->clients, h->joining};
    for (int l = 0; l < 2; l++) {
        while (lists[l]) {
            struct client *c = lists[l];
            lists[l] = c->next;
            client_free(c);
        }
    }
    am_buf_free(&h->ev);
    am_buf_free(&h->scratch);
    pthread_mutex_destroy(&h->mu);
    close(h->wake_fd);
    free(h);
}

/* Reads Last-Event-ID or since_id: -1 when neither is there. */
static int resume_point(const struct am_http_request *req, long long *since, char *err)
{
    const char *hdr = am_http_header(req, "Last-Event-ID");
    if (hdr && *hdr) {
        /* Sent by a reconnecting EventSource, so it wins over the since_id of the URL. */
        size_t len = strlen(hdr);
        if (len > 18 || strspn(hdr, "0123456789") != len) {
            snprintf(err, AA_ERR_MAX, "Last-Event-ID must be a metric id (a whole number >= 0)");
            return AM_EINVAL;
        }
        *since = strtoll(hdr, NULL, 10);
        return AM_OK;
    }
    return aa_param_int(req, "since_id", -1, 0, LLONG_MAX, since, err);
}

static void handle_stream(struct aa_ctx *ctx, const struct am_http_request *req,
                          struct am_http_response *resp, const char *arg)
{
    aa_stream *h = ctx->stream;
    char err[AA_ERR_MAX];
    const char *vals[NFILTERS];
    long long since = -1;
    struct client *c = NULL;

    for (int i = 0; i < NFILTERS; i++) {
        int rc = i == F_STATUS
                     ? aa_param_enum(req, "status", statuses, NULL, &vals[i], err)
                     : aa_param_text(req, filter_names[i], AM_METRIC_MAX_STRING, &vals[i], err);
        if (rc) {
            am_http_error(resp, 400, err);
            return;
        }
    }
    if (resume_point(req, &since, err)) {
        am_http_error(resp, 400, err);
        return;
    }
    if (!h) {
        am_http_error(resp, 503, "event stream unavailable");
        return;
    }

    c = calloc(1, sizeof *c);
    if (!c)
        goto nomem;
    c->since = since;
    for (int i = 0; i < NFILTERS; i++) {
        if (vals[i] && !(c->filter[i] = strdup(vals[i])))
            goto nomem;
    }

    pthread_mutex_lock(&h->mu);
    if (h->nclients >= h->cfg.max_clients) {
        prune_locked(h, &h->clients);
        prune_locked(h, &h->joining);
    }
    if (h->nclients >= h->cfg.max_clients) {
        pthread_mutex_unlock(&h->mu);
        atomic_fetch_add(&h->rejected, 1);
        snprintf(err, sizeof err, "too many event stream clients (at most %d)", h->cfg.max_clients);
        AM_LOG_REQ(AM_LOG_WARN, req->request_id, "%s", err);
        am_http_error(resp, 503, err);
        client_free(c);
        return;
    }
    if (am_http_reply_stream(resp, 200, "text/event-stream", h->cfg.client_buffer, &c->out)) {
        pthread_mutex_unlock(&h->mu);
        goto nomem;
    }
    /* The first bytes go out at once, so the client sees the 200 before any event. */
    static const char hello[] = ": athena-metrics event stream\nretry: 2000\n\n";
    am_http_stream_write(c->out, hello, sizeof hello - 1);
    c->next = h->joining;
    h->joining = c;
    h->nclients++;
    pthread_mutex_unlock(&h->mu);
    wake(h);
    AM_LOG_REQ(AM_LOG_DEBUG, req->request_id, "event stream opened (since %lld)", since);
    return;

nomem:
    client_free(c);
    am_http_error(resp, 500, "out of memory");
}

const struct aa_route aa_stream_routes[] = {
    {"GET", "/api/llm-backends/metrics/stream", handle_stream, 0},
    {0},
};
