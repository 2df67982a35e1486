/* A fixed-size pool of PostgreSQL connections, opened lazily, reopened when broken. */
#include "pool.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_prom.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct aa_pool {
    char *url;
    int size;
    pthread_mutex_t mu;
    pthread_cond_t freed;
    PGconn **idle; /* stack of idle open connections */
    int nidle;
    int open;   /* connections that exist, idle or borrowed */
    int in_use; /* borrowed now */
    uint64_t waits, timeouts, connect_failures;
};

int aa_pool_open(aa_pool **out, const char *url, int size)
{
    aa_pool *p = calloc(1, sizeof *p);
    if (!p)
        return AM_ENOMEM;
    p->url = strdup(url);
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (!p->url || !p->idle) {
        free(p->url);
        free(p->idle);
        free(p);
        return AM_ENOMEM;
    }
    p->size = size;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &ca);
    pthread_condattr_destroy(&ca);
    *out = p;
    return AM_OK;
}

static void on_notice(void *arg, const char *message)
{
    am_log_debug("database notice: %s", message);
}

static PGconn *connect_one(aa_pool *p)
{
    /*
     * Times leave the database as ISO 8601 in UTC, whatever the server's zone,
     * and no query holds a connection for more than 30 seconds. JIT is off:
     * the rollup summary's estimates are far above the rows it reads, and
     * compiling its expressions costs ten times the query itself.
     */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {p->url, "3", "athena-admin-api",
                          "-c TimeZone=UTC -c statement_timeout=30000 -c jit=off", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        am_log_warn("database connection failed: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, on_notice, NULL);
    return conn;
}

PGconn *aa_pool_get(aa_pool *p, int timeout_ms)
{
    struct timespec ts;
    am_clock_mono_deadline(&ts, timeout_ms);

    pthread_mutex_lock(&p->mu);
    bool waited = false;
    while (p->nidle == 0 && p->open >= p->size) {
        waited = true;
        if (pthread_cond_timedwait(&p->freed, &p->mu, &ts) == ETIMEDOUT) {
            p->timeouts++;
            pthread_mutex_unlock(&p->mu);
            am_log_warn("no database connection free within %d ms", timeout_ms);
            return NULL;
        }
    }
    if (waited)
        p->waits++;
    if (p->nidle > 0) {
        PGconn *conn = p->idle[--p->nidle];
        p->in_use++;
        pthread_mutex_unlock(&p->mu);
        return conn;
    }
    /* Reserve the slot, then connect without holding the lock. */
    p->open++;
    p->in_use++;
    pthread_mutex_unlock(&p->mu);

    PGconn *conn = connect_one(p);
    if (!conn) {
        pthread_mutex_lock(&p->mu);
        p->open--;
        p->in_use--;
        p->connect_failures++;
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->mu);
    }
    return conn;
}

void aa_pool_put(aa_pool *p, PGconn *conn)
{
    if (!conn)
        return;
    bool ok = PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
    if (!ok)
        PQfinish(conn);
    pthread_mutex_lock(&p->mu);
    p->in_use--;
    if (ok)
        p->idle[p->nidle++] = conn;
    else
        p->open--;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

bool aa_pool_ping(aa_pool *p)
{
    PGconn *conn = aa_pool_get(p, 1000);
    if (!conn)
        return false;
    PGresult *res = PQexec(conn, "SELECT 1");
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    aa_pool_put(p, conn);
    return ok;
}

void aa_pool_write_prom(aa_pool *p, struct am_buf *b)
{
    pthread_mutex_lock(&p->mu);
    int size = p->size, open = p->open, in_use = p->in_use;
    uint64_t waits = p->waits, timeouts = p->timeouts, failures = p->connect_failures;
    pthread_mutex_unlock(&p->mu);
    am_prom_gauge(b, "athena_admin_db_pool_size", "Database connections the pool may open.", size);
    am_prom_gauge(b, "athena_admin_db_pool_open", "Database connections open now.", open);
    am_prom_gauge(b, "athena_admin_db_pool_in_use", "Database connections borrowed now.", in_use);
    am_prom_counter(b, "athena_admin_db_pool_waits_total",
                    "Requests that waited for a free connection.", waits);
    am_prom_counter(b, "athena_admin_db_pool_timeouts_total",
                    "Requests that found no free connection in time.", timeouts);
    am_prom_counter(b, "athena_admin_db_connect_failures_total",
                    "Failed attempts to open a database connection.", failures);
}

void aa_pool_close(aa_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i]);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p->url);
    free(p);
}
