/* The database writer: COPY into a staging table, then an idempotent insert, one transaction. */
#include "writer.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "cost.h"
#include "migrate.h"
#include "rowfmt.h"
#include "stats.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cl_writer {
    struct cl_writer_config cfg;
    struct cl_chunkq *q;
    pthread_t thread;
    PGconn *conn;
    _Atomic bool stopping;
    int64_t stop_deadline_ns;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    cl_prices *prices;    /* read at the start of each transaction */
    struct am_buf costed; /* one chunk's rows with their cost column */
};

enum { WRITE_OK, WRITE_RETRY, WRITE_DATA };

/* Same columns and types as the table, so one COPY text serves both. */
static const char stage_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS am_stage ("
    "  timestamp timestamptz, model text, backend text, latency_seconds double precision,"
    "  tokens integer, tokens_per_second double precision, prompt_tokens integer,"
    "  ttft_seconds double precision, status text, error_type text, request_id text,"
    "  session_id text, user_id text, zone text, intent text, device_id text, source text,"
    "  stage text, source_id text, epoch bigint, seq bigint, cost_usd numeric"
    ") ON COMMIT DELETE ROWS";

/* Rows staged without a cost column (no model has a price) cost 0. */
static const char insert_sql[] =
    "INSERT INTO llm_performance_metric (" CL_ROW_COLUMNS ", cost_usd) "
    "SELECT " CL_ROW_COLUMNS ", coalesce(cost_usd, 0) FROM am_stage "
    "ON CONFLICT (source_id, epoch, seq) DO NOTHING";

/*
 * Opens a write transaction, with the savepoint of the straight COPY, and
 * reads every price version for cl_prices, in one round trip: times in the
 * format of COPY rows (versions past year 9999 never apply to a call, whose
 * time is before 2100), prices as plain decimals.
 */
static const char begin_sql[] =
    "BEGIN; SAVEPOINT direct; SELECT model, to_char(valid_from AT TIME ZONE 'UTC', 'YYYY-MM-DD "
    "HH24:MI:SS.US') || '+00',"
    " input_usd_per_mtok::text, output_usd_per_mtok::text FROM llm_model_price"
    " WHERE valid_from < '9999-01-01'";

/* Server notices (e.g. "already exists, skipping") go to the debug log, not stderr. */
static void on_notice(void *arg, const char *message)
{
    am_log_debug("database notice: %s", message);
}

int cl_writer_connect(const char *database_url, PGconn **out)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "keepalives_idle", NULL};
    const char *vals[] = {database_url, "5", "athena-collector", "30", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        /* The message may carry the password only if the URL does; it never echoes it. */
        am_log_warn("database connection failed: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return AM_EDB;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    if (cl_migrate(conn)) {
        PQfinish(conn);
        return AM_EDB;
    }
    *out = conn;
    return AM_OK;
}

static int prepare_session(PGconn *conn)
{
    PGresult *res = PQexec(conn, stage_sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        am_log_warn("creating the staging table failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (!ok)
        return AM_EDB;
    res = PQprepare(conn, "am_insert", insert_sql, 0, NULL);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        am_log_warn("preparing the insert failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? AM_OK : AM_EDB;
}

/* Classifies a failed result: bad rows are not worth retrying, everything else is. */
static int classify(PGconn *conn, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(conn) != CONNECTION_OK)
        return WRITE_RETRY;
    if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
        return WRITE_DATA;
    return WRITE_RETRY;
}

static int simple(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int rc = WRITE_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        am_log_warn("%s failed: %s", sql, PQresultErrorMessage(res));
        rc = classify(conn, res);
    }
    PQclear(res);
    return rc;
}

/* Drains results left after an error so the connection can take the next command. */
static void drain(PGconn *conn)
{
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
}

/*
 * COPY of every chunk of list into table (its column list in sql, with
 * cost_usd last when w->prices holds any version: each chunk then gets its
 * cost column on the way); returns WRITE_OK or a failure class.
 */
static int copy_rows(cl_writer *w, const char *sql, struct cl_chunk *list, PGresult **failed)
{
    PGconn *conn = w->conn;
    bool priced = cl_prices_count(w->prices) > 0;
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        *failed = res;
        return classify(conn, res);
    }
    PQclear(res);
    for (struct cl_chunk *c = list; c; c = c->next) {
        const char *data = c->rows;
        size_t len = c->len;
        if (priced) {
            w->costed.len = 0;
            if (cl_prices_cost_rows(w->prices, c->rows, c->len, &w->costed)) {
                /* Only out of memory: the bound holds any chunk with its costs. */
                PQputCopyEnd(conn, "out of memory for the cost column");
                drain(conn);
                return WRITE_RETRY;
            }
            data = w->costed.data;
            len = w->costed.len;
        }
        if (PQputCopyData(conn, data, (int)len) != 1) {
            am_log_warn("COPY data failed: %s", PQerrorMessage(conn));
            return WRITE_RETRY;
        }
    }
    if (PQputCopyEnd(conn, NULL) != 1) {
        am_log_warn("COPY end failed: %s", PQerrorMessage(conn));
        return WRITE_RETRY;
    }
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        *failed = res;
        return classify(conn, res);
    }
    PQclear(res);
    drain(conn);
    return WRITE_OK;
}

static bool is_unique_violation(PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && strcmp(state, "23505") == 0;
}

/*
 * Begins the transaction (begin_sql) and reads every price version into
 * w->prices: a price defined before the transaction starts applies to its
 * rows.
 */
static int begin_txn(cl_writer *w)
{
    PGresult *res = PQexec(w->conn, begin_sql);
    int rc = WRITE_OK;
    cl_prices_clear(w->prices);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        am_log_warn("beginning a transaction and reading the model prices failed: %s",
                    PQresultErrorMessage(res));
        rc = classify(w->conn, res);
        PQclear(res);
        return rc;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        int e = cl_prices_add(w->prices, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                              PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
        if (e == AM_ENOMEM) {
            rc = WRITE_RETRY;
            break;
        }
        /* The table's checks keep prices readable; one that is not costs nothing. */
        if (e)
            am_log_warn("price of %s from %s (%s, %s) cannot be read; its calls cost 0",
                        PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                        PQgetvalue(res, i, 3));
    }
    PQclear(res);
    return rc;
}

/*
 * Writes the chunks of list (rows in all) in one transaction. Rows go
 * straight into the table with COPY, as fast as PostgreSQL loads anything,
 * each with its cost computed here from the prices read at the start of the
 * transaction (no cost column while no model has a price: the default is 0).
 * When some are already stored (a redelivery, or another collector got
 * there first) that COPY fails on the unique key; then, inside the same
 * transaction, the rows go through the staging table and an insert that
 * skips the stored ones.
 */
static int write_txn(cl_writer *w, struct cl_chunk *list, size_t rows, uint64_t *inserted)
{
    PGconn *conn = w->conn;
    PGresult *failed = NULL;
    int rc;

    if ((rc = begin_txn(w)) != WRITE_OK)
        goto fail;
    bool priced = cl_prices_count(w->prices) > 0;
    rc = copy_rows(w,
                   priced ? "COPY llm_performance_metric (" CL_ROW_COLUMNS ", cost_usd) FROM STDIN"
                          : "COPY llm_performance_metric (" CL_ROW_COLUMNS ") FROM STDIN",
                   list, &failed);
    if (rc == WRITE_OK) {
        *inserted = rows;
    } else if (is_unique_violation(failed)) {
        PQclear(failed);
        failed = NULL;
        drain(conn);
        if ((rc = simple(conn, "ROLLBACK TO SAVEPOINT direct")) != WRITE_OK)
            goto fail;
        rc = copy_rows(w,
                       priced ? "COPY am_stage (" CL_ROW_COLUMNS ", cost_usd) FROM STDIN"
                              : "COPY am_stage (" CL_ROW_COLUMNS ") FROM STDIN",
                       list, &failed);
        if (rc != WRITE_OK)
            goto fail;
        PGresult *res = PQexecPrepared(conn, "am_insert", 0, NULL, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            failed = res;
            rc = classify(conn, res);
            goto fail;
        }
        *inserted = strtoull(PQcmdTuples(res), NULL, 10);
        PQclear(res);
    } else {
        goto fail;
    }
    /*
     * Wakes the admin-api's event stream at COMMIT (PostgreSQL delivers
     * notifications only then); it reads the new rows by id itself, so no
     * payload. One per transaction.
     */
    if (*inserted > 0 && (rc = simple(conn, "NOTIFY llm_metric")) != WRITE_OK)
        goto fail;
    if ((rc = simple(conn, "COMMIT")) != WRITE_OK)
        return rc;
    return WRITE_OK;

fail:
    if (failed)
        am_log_warn("writing %zu rows failed: %s", rows, PQresultErrorMessage(failed));
    PQclear(failed);
    drain(conn);
    if (PQstatus(conn) == CONNECTION_OK && simple(conn, "ROLLBACK") != WRITE_OK)
        rc = WRITE_RETRY;
    return rc;
}

static bool past_deadline(cl_writer *w)
{
    return atomic_load(&w->stopping) && am_clock_mono_ns() >= w->stop_deadline_ns;
}

/* Sleeps ms, or less when stop is called. */
static void nap(cl_writer *w, int ms)
{
    struct timespec ts;
    am_clock_mono_deadline(&ts, ms);
    pthread_mutex_lock(&w->mu);
    if (!atomic_load(&w->stopping)) {
        pthread_cond_timedwait(&w->wake, &w->mu, &ts);
        pthread_mutex_unlock(&w->mu);
        return;
    }
    pthread_mutex_unlock(&w->mu);
    /* Flushing at shutdown: keep trying, but not in a tight loop. */
    struct timespec short_nap = {0, (ms < 100 ? ms : 100) * 1000000L};
    nanosleep(&short_nap, NULL);
}

/* Connects with capped exponential backoff until it works or the stop deadline passes. */
static int ensure_connected(cl_writer *w)
{
    static bool connected_before;
    int backoff = 100;
    bool tried = false;

    while (!w->conn) {
        /* At shutdown, a spool keeps what is left at once; without one, we try till the deadline.
         */
        if (past_deadline(w) || (atomic_load(&w->stopping) && w->cfg.spool && tried))
            return AM_ETIMEDOUT;
        tried = true;
        PGconn *conn = NULL;
        if (cl_writer_connect(w->cfg.database_url, &conn) == AM_OK &&
            prepare_session(conn) == AM_OK) {
            w->conn = conn;
            if (connected_before)
                atomic_fetch_add(&cl_stats.db_reconnects, 1);
            connected_before = true;
            atomic_store(&cl_stats.db_up, 1);
            am_log_info("database connected");
            break;
        }
        PQfinish(conn);
        atomic_store(&cl_stats.db_up, 0);
        nap(w, backoff);
        backoff = backoff * 2 > w->cfg.backoff_max_ms ? w->cfg.backoff_max_ms : backoff * 2;
    }
    return AM_OK;
}

static void disconnect(cl_writer *w)
{
    PQfinish(w->conn);
    w->conn = NULL;
    atomic_store(&cl_stats.db_up, 0);
}

static size_t count_rows(const struct cl_chunk *list)
{
    size_t rows = 0;
    for (; list; list = list->next)
        rows += list->nrows;
    return rows;
}

/* Frees chunks, returning their room to q when they came from it (q NULL: from the spool). */
static void release_all(struct cl_chunkq *q, struct cl_chunk *list)
{
    while (list) {
        struct cl_chunk *next = list->next;
        if (q)
            cl_chunkq_release(q, list);
        else
            cl_chunk_free(list);
        list = next;
    }
}

/*
 * How far below a run's first message of a stream the look-up searches for
 * holes between stored rows: about what a publisher's default replay ring
 * holds, and an index range scan of at most this many rows.
 */
#define CHECK_WINDOW 131072

/*
 * The holes of a stream below $4 (this run's first message of it): gaps
 * between stored rows from $3 on, and what lies between the last stored
 * row and $4. Nothing when the stream has no row below $4 (a new stream).
 */
static const char holes_sql[] =
    "SELECT h.from_seq, h.to_seq FROM ("
    "  SELECT lag(seq) OVER (ORDER BY seq) + 1 AS from_seq, seq AS to_seq"
    "  FROM llm_performance_metric"
    "  WHERE source_id = $1 AND epoch = $2::bigint AND seq >= $3::bigint AND seq < $4::bigint"
    ") h WHERE h.to_seq > h.from_seq "
    "UNION ALL "
    "SELECT max(seq) + 1, $4::bigint FROM llm_performance_metric"
    "  WHERE source_id = $1 AND epoch = $2::bigint AND seq < $4::bigint"
    "  HAVING max(seq) + 1 < $4::bigint "
    "ORDER BY 1";

/*
 * For each committed chunk that opens a stream past seq 0 (see struct
 * cl_chunk), reports the holes of the stream below the chunk as gaps, to
 * be counted and asked for: what lies between the last stored sequence
 * number and the chunk, and holes between stored rows up to CHECK_WINDOW
 * below it (what an earlier run had asked for and received but not yet
 * committed when it was killed). Rows of a stream are committed in the
 * order they arrived, so nothing of this stream below the chunk is still
 * on its way through this collector. A stream with nothing stored is new
 * here.
 */
static void check_gaps(cl_writer *w, const struct cl_chunk *list)
{
    for (const struct cl_chunk *c = list; c; c = c->next) {
        if (!c->check_source_id)
            continue;
        char epoch[24], from[24], seq[24];
        int64_t lo = c->check_seq > CHECK_WINDOW ? c->check_seq - CHECK_WINDOW : 0;
        snprintf(epoch, sizeof epoch, "%lld", (long long)c->check_epoch);
        snprintf(from, sizeof from, "%lld", (long long)lo);
        snprintf(seq, sizeof seq, "%lld", (long long)c->check_seq);
        const char *params[4] = {c->check_source_id, epoch, from, seq};
        PGresult *res = PQexecParams(w->conn, holes_sql, 4, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            am_log_warn("cannot look up what %s epoch %s stored before seq %s: %s",
                        c->check_source_id, epoch, seq, PQresultErrorMessage(res));
            PQclear(res);
            continue;
        }
        int cf = PQfnumber(res, "from_seq"), ct = PQfnumber(res, "to_seq");
        for (int i = 0; i < PQntuples(res); i++) {
            long long hf = strtoll(PQgetvalue(res, i, cf), NULL, 10);
            long long ht = strtoll(PQgetvalue(res, i, ct), NULL, 10);
            if (hf < ht)
                cl_replay_report_gap(w->cfg.replay, c->check_source_id, c->check_epoch, hf, ht);
        }
        PQclear(res);
    }
}

/*
 * Writes *listp, retrying through outages, and frees what it wrote (q as
 * for release_all). Returns false when the writer is stopping and the
 * database is out of reach; *listp is then what was not written, the
 * caller's to deal with.
 */
static bool write_list(cl_writer *w, struct cl_chunk **listp, struct cl_chunkq *q)
{
    struct cl_chunk *list = *listp;
    size_t rows = count_rows(list);

    for (;;) {
        if (ensure_connected(w) != AM_OK)
            return false;
        if (rows == 0) {
            /* Only look-ups (a stream first seen by its heartbeat): nothing to commit. */
            check_gaps(w, list);
            release_all(q, list);
            *listp = NULL;
            return true;
        }
        uint64_t inserted = 0;
        int64_t t0 = am_clock_mono_ns();
        int rc = write_txn(w, list, rows, &inserted);
        if (rc == WRITE_OK) {
            am_prom_observe(&cl_stats.insert_seconds, (double)(am_clock_mono_ns() - t0) / 1e9);
            am_prom_observe(&cl_stats.batch_rows, (double)rows);
            atomic_fetch_add(&cl_stats.metrics_inserted, inserted);
            atomic_fetch_add(&cl_stats.metrics_duplicate, rows - inserted);
            check_gaps(w, list);
            release_all(q, list);
            *listp = NULL;
            return true;
        }
        atomic_fetch_add(&cl_stats.db_errors, 1);
        if (rc == WRITE_DATA) {
            if (!list->next) {
                am_log_error("dropping %u rows the database rejected", list->nrows);
                atomic_fetch_add(&cl_stats.dropped_rejected, list->nrows);
                release_all(q, list);
                *listp = NULL;
                return true;
            }
            /* Find the bad chunk by writing them one at a time. */
            while (list) {
                struct cl_chunk *next = list->next;
                list->next = NULL;
                if (!write_list(w, &list, q)) {
                    list->next = next;
                    *listp = list;
                    return false;
                }
                list = next;
            }
            *listp = NULL;
            return true;
        }
        disconnect(w);
        nap(w, 200);
    }
}

/*
 * The writer is stopping and the database is out of reach: list (and,
 * when it came from q, everything still queued) goes to the spool for the
 * next start, or is counted as dropped. Frees list.
 */
static void give_up(cl_writer *w, struct cl_chunk *list, struct cl_chunkq *q)
{
    uint64_t spooled = 0, lost = 0;
    struct cl_chunk *rest = NULL;

    for (;;) {
        for (struct cl_chunk *c = list; c; c = c->next) {
            if (c->nrows == 0)
                continue; /* a look-up only; the next run's first message makes its own */
            int rc = w->cfg.spool ? cl_spool_append(w->cfg.spool, c) : AM_ECLOSED;
            if (rc == AM_OK) {
                spooled += c->nrows;
                continue;
            }
            lost += c->nrows;
            if (rc == AM_EFULL)
                atomic_fetch_add(&cl_stats.dropped_spool_full, c->nrows);
            else if (rc == AM_EIO)
                atomic_fetch_add(&cl_stats.dropped_spool_error, c->nrows);
            else
                atomic_fetch_add(&cl_stats.dropped_shutdown, c->nrows);
        }
        release_all(q, list);
        if (!q || cl_chunkq_take(q, (size_t)-1, 0, &rest) == 0)
            break;
        list = rest;
    }
    if (w->cfg.spool && spooled > 0 && cl_spool_seal(w->cfg.spool) == AM_OK) {
        atomic_fetch_add(&cl_stats.metrics_spooled, spooled);
        am_log_warn("database unreachable at shutdown: %llu metrics spooled for the next start",
                    (unsigned long long)spooled);
    } else if (spooled > 0) {
        /* Written but not synced: the next start still finds and checks the open segment. */
        atomic_fetch_add(&cl_stats.metrics_spooled, spooled);
    }
    if (lost > 0)
        am_log_error("shutting down with the database unreachable: %llu metrics not stored",
                     (unsigned long long)lost);
}

/*
 * Replays the spool's oldest segment in transactions of batch_rows, and
 * deletes it after the last COMMIT. Returns false when the writer is
 * stopping and the database is out of reach (the segment stays on disk).
 */
static bool replay_segment(cl_writer *w)
{
    struct cl_spool_segment *seg = NULL;
    int rc = cl_spool_take(w->cfg.spool, &seg);
    if (rc == AM_ENOTFOUND)
        return true;
    if (rc == AM_EIO) {
        /* Kept, it would block every segment behind it for good. */
        uint64_t lost = cl_spool_discard_oldest(w->cfg.spool);
        atomic_fetch_add(&cl_stats.dropped_spool_error, lost);
        am_log_error("dropped a spool segment that cannot be read back: %llu metrics",
                     (unsigned long long)lost);
        return true;
    }
    if (rc != AM_OK) {
        /* Out of memory: the segment stays; try again later. */
        nap(w, 1000);
        return !atomic_load(&w->stopping);
    }
    if (seg->lost_rows > 0)
        atomic_fetch_add(&cl_stats.dropped_spool_corrupt, seg->lost_rows);
    while (seg->chunks) {
        /* Detach the next slice of at most batch_rows rows (at least one chunk). */
        struct cl_chunk *slice = seg->chunks, *last = slice;
        size_t rows = last->nrows;
        while (last->next && rows + last->next->nrows <= w->cfg.batch_rows) {
            last = last->next;
            rows += last->nrows;
        }
        seg->chunks = last->next;
        last->next = NULL;
        if (!write_list(w, &slice, NULL)) {
            /* The whole segment is replayed next time; the stored part counts as duplicates. */
            release_all(NULL, slice);
            cl_spool_release(w->cfg.spool, seg);
            return false;
        }
        atomic_fetch_add(&cl_stats.metrics_replayed, rows);
    }
    cl_spool_done(w->cfg.spool, seg);
    return true;
}

static void *writer_main(void *arg)
{
    cl_writer *w = arg;
    struct cl_chunk *list = NULL;

    for (;;) {
        bool spooled = w->cfg.spool && cl_spool_holds(w->cfg.spool);
        /* What is queued is older than what is spooled (see cl_receiver_run), so it goes first. */
        size_t n = cl_chunkq_take(w->q, w->cfg.batch_rows, spooled ? 0 : 200, &list);
        if (n > 0) {
            if (!write_list(w, &list, w->q)) {
                give_up(w, list, w->q);
                break;
            }
            continue;
        }
        if (atomic_load(&w->stopping))
            break; /* the spool keeps what it holds for the next start */
        if (spooled) {
            if (!replay_segment(w))
                break;
            continue;
        }
        if (!w->conn)
            ensure_connected(w); /* connect early so /ready tells the truth */
    }
    if (w->conn)
        disconnect(w);
    return NULL;
}

int cl_writer_start(cl_writer **out, const struct cl_writer_config *cfg, struct cl_chunkq *q)
{
    cl_writer *w = calloc(1, sizeof *w);
    if (!w)
        return AM_ENOMEM;
    if (cl_prices_new(&w->prices)) {
        free(w);
        return AM_ENOMEM;
    }
    /*
     * One chunk's rows (the receiver bounds them at 4 x AM_FRAME_MAX) and a
     * cost column for each: at most 32 bytes for each of the fewer than
     * 150,000 metrics a message can hold.
     */
    am_buf_init(&w->costed, 6 * AM_FRAME_MAX);
    w->cfg = *cfg;
    w->q = q;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
        cl_prices_free(w->prices);
        free(w);
        return AM_ENOMEM;
    }
    *out = w;
    return AM_OK;
}

void cl_writer_stop(cl_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop_deadline_ns = am_clock_mono_ns() + (int64_t)w->cfg.shutdown_timeout_ms * 1000000;
    atomic_store(&w->stopping, true);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
    cl_prices_free(w->prices);
    am_buf_free(&w->costed);
    free(w);
}
