/*
 * The alert evaluator: a periodic job of the admin-api. It reads the rules,
 * computes each one's metric with the summary's figures, records state
 * changes as events in the same statement that changes the state, and
 * delivers the events to the webhooks with bounded retries.
 */
#include "alerts_eval.h"
#include "alerts.h"
#include "alerts_webhook.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "am_ollama.h"
#include "am_prom.h"
#include "metrics_filter.h"
#include "params.h"
#include "periodic.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any stable number; the same in every admin-api replica. */
#define ALERT_LOCK_KEY "7243521"

/* Events claimed for delivery at a time. */
#define CLAIM_BATCH 32

struct aa_alerts {
    struct aa_alerts_config cfg;
    aa_periodic *job;
    CURL *curl;
    char *value_sql;    /* aa_metrics_figures_sql reduced to (n, value) for one rule */
    long long stale_ms; /* a claim older than this was left by a replica that stopped */
    _Atomic uint64_t rules_evaluated, fired, resolved;
    _Atomic uint64_t attempts, delivered, delivery_failures, retries, pruned;
    _Atomic int64_t firing;
};

/* Rules in the order of their columns in rules_sql. */
enum {
    R_ID,
    R_METRIC,
    R_MODEL,
    R_BACKEND,
    R_INTENT,
    R_SOURCE,
    R_OP,
    R_THRESHOLD,
    R_WINDOW,
    R_MIN_CALLS,
    R_STATE
};

static const char rules_sql[] =
    "SELECT id, metric, scope_model, scope_backend, scope_intent, scope_source, op, threshold,"
    " window_seconds, min_calls, state FROM llm_alert_rule ORDER BY id";

/* %s: aa_metrics_figures_sql. $11 the metric, $12 the window in seconds. */
static const char value_fmt[] =
    "SELECT n, CASE $11::text WHEN 'latency_p95' THEN lat[2] WHEN 'latency_p99' THEN lat[3]"
    " WHEN 'error_rate' THEN errors::float8 / NULLIF(n, 0)::float8"
    " WHEN 'tokens_per_second_p50' THEN tps_p50 WHEN 'ttft_p95' THEN ttft[2]"
    " WHEN 'request_rate' THEN n::float8 / $12::float8 END FROM (%s) f";

static const char seen_sql[] =
    "UPDATE llm_alert_rule SET last_value = $2::float8, last_calls = $3::bigint,"
    " evaluated_at = now() WHERE id = $1::bigint";

/*
 * The state moves only from what this run read ($3), so two evaluators that
 * both see the change record it once: the second UPDATE finds nothing.
 */
static const char transition_sql[] =
    "WITH r AS (UPDATE llm_alert_rule SET state = $2, state_since = now()"
    " WHERE id = $1::bigint AND state = $3 RETURNING *)"
    " INSERT INTO llm_alert_event (rule_id, rule_name, kind, metric, scope, op, threshold,"
    " window_seconds, value, calls, webhook_url)"
    " SELECT r.id, r.name, CASE $2 WHEN 'firing' THEN 'firing' ELSE 'resolved' END, "
    "r.metric, " AA_ALERT_SCOPE_JSON(
        "r") ", r.op, r.threshold, r.window_seconds, $4::float8, $5::bigint,"
             " r.webhook_url FROM r";

/* Keeps the newest $1 events; pending deliveries stay whatever their age. */
static const char prune_sql[] =
    "DELETE FROM llm_alert_event WHERE delivery IN ('delivered', 'failed') AND id <"
    " (SELECT min(id) FROM (SELECT id FROM llm_alert_event ORDER BY id DESC LIMIT $1::bigint) k)";

/* Claims pending events, and ones a stopped replica left half-sent, oldest first. */
static const char claim_sql[] =
    "WITH c AS (UPDATE llm_alert_event e SET delivery = 'sending', claimed_at = now()"
    " WHERE e.id IN (SELECT id FROM llm_alert_event WHERE delivery = 'pending'"
    " OR (delivery = 'sending' AND claimed_at < now() - $1::bigint * interval '1 millisecond')"
    " ORDER BY id LIMIT $2::integer FOR UPDATE SKIP LOCKED)"
    " RETURNING e.id, e.webhook_url, json_build_object('alert', e.rule_name, 'rule_id',"
    " e.rule_id, 'event_id', e.id, 'state', e.kind, 'metric', e.metric, 'scope', e.scope,"
    " 'op', e.op, 'threshold', e.threshold, 'value', e.value, 'calls', e.calls,"
    " 'window_seconds', e.window_seconds, 'at', e.at)::text AS payload)"
    " SELECT id, webhook_url, payload FROM c ORDER BY id";

static const char delivered_sql[] =
    "UPDATE llm_alert_event SET delivery = $2, attempts = attempts + $3::integer,"
    " http_status = $4::integer, error = $5,"
    " delivered_at = CASE WHEN $2 = 'delivered' THEN now() END WHERE id = $1::bigint";

/* Runs sql with params and checks for want; logs and returns AM_EDB otherwise. res may be NULL. */
static int exec(PGconn *conn, const char *sql, int n, const char *const *params,
                ExecStatusType want, PGresult **res)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        am_log_warn("alerts: %s", PQresultErrorMessage(r));
        PQclear(r);
        return AM_EDB;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return AM_OK;
}

static bool compare(const char *op, double value, double threshold)
{
    if (!strcmp(op, ">"))
        return value > threshold;
    if (!strcmp(op, ">="))
        return value >= threshold;
    if (!strcmp(op, "<"))
        return value < threshold;
    return value <= threshold;
}

/* Evaluates row i of rules; a state change becomes an event. */
static int evaluate(aa_alerts *a, PGconn *conn, PGresult *rules, int i, int64_t now_us)
{
    char since[48], until[48];
    const char *params[12] = {since, until};
    PGresult *res = NULL;
    int window = atoi(PQgetvalue(rules, i, R_WINDOW));

    if (aa_format_unix((double)now_us / 1e6 - window, since, sizeof since) ||
        aa_format_unix((double)now_us / 1e6, until, sizeof until))
        return AM_ERANGE;
    for (int k = 0; k < 4; k++)
        params[2 + k] =
            PQgetisnull(rules, i, R_MODEL + k) ? NULL : PQgetvalue(rules, i, R_MODEL + k);
    params[10] = PQgetvalue(rules, i, R_METRIC);
    params[11] = PQgetvalue(rules, i, R_WINDOW);
    if (exec(conn, a->value_sql, 12, params, PGRES_TUPLES_OK, &res))
        return AM_EDB;

    const char *id = PQgetvalue(rules, i, R_ID), *state = PQgetvalue(rules, i, R_STATE);
    const char *calls = PQgetvalue(res, 0, 0);
    const char *value = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
    /* No value (no calls, or none with a time to first token) never holds. */
    bool holds = value && atoll(calls) >= atoll(PQgetvalue(rules, i, R_MIN_CALLS)) &&
                 compare(PQgetvalue(rules, i, R_OP), strtod(value, NULL),
                         strtod(PQgetvalue(rules, i, R_THRESHOLD), NULL));
    const char *want = holds ? "firing" : "ok";
    const char *seen[] = {id, value, calls};
    const char *move[] = {id, want, state, value, calls};
    PGresult *moved = NULL;
    int rc = exec(conn, seen_sql, 3, seen, PGRES_COMMAND_OK, NULL);
    if (rc == AM_OK && strcmp(want, state) != 0)
        rc = exec(conn, transition_sql, 5, move, PGRES_COMMAND_OK, &moved);
    if (moved && !strcmp(PQcmdTuples(moved), "1")) {
        atomic_fetch_add(holds ? &a->fired : &a->resolved, 1);
        am_log_info("alerts: rule %s %s (%s = %s over %d s, %s calls)", id,
                    holds ? "fires" : "resolves", PQgetvalue(rules, i, R_METRIC),
                    value ? value : "none", window, calls);
    }
    PQclear(moved);
    PQclear(res);
    return rc;
}

/* Evaluates every rule, under the lock replicas share. */
static int evaluate_all(aa_alerts *a, aa_periodic *job, PGconn *conn)
{
    PGresult *res = NULL, *rules = NULL;
    int rc;

    if ((rc = exec(conn, "SELECT pg_try_advisory_lock(" ALERT_LOCK_KEY ")", 0, NULL,
                   PGRES_TUPLES_OK, &res)))
        return rc;
    bool locked = !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!locked) {
        am_log_debug("alerts: another replica is evaluating");
        return AM_OK;
    }
    rc = exec(conn, rules_sql, 0, NULL, PGRES_TUPLES_OK, &rules);
    int64_t now_us = am_clock_now_us();
    for (int i = 0; rc == AM_OK && i < PQntuples(rules); i++) {
        if (aa_periodic_stopping(job))
            break;
        rc = evaluate(a, conn, rules, i, now_us);
        if (rc == AM_OK)
            atomic_fetch_add(&a->rules_evaluated, 1);
    }
    PQclear(rules);

    char keep[24];
    const char *params[] = {keep};
    snprintf(keep, sizeof keep, "%lld", a->cfg.history_max);
    if (rc == AM_OK && (rc = exec(conn, prune_sql, 1, params, PGRES_COMMAND_OK, &res)) == AM_OK) {
        atomic_fetch_add(&a->pruned, strtoull(PQcmdTuples(res), NULL, 10));
        PQclear(res);
    }
    if (rc == AM_OK &&
        (rc = exec(conn, "SELECT count(*) FROM llm_alert_rule WHERE state = 'firing'", 0, NULL,
                   PGRES_TUPLES_OK, &res)) == AM_OK) {
        atomic_store(&a->firing, atoll(PQgetvalue(res, 0, 0)));
        PQclear(res);
    }
    res = PQexec(conn, "SELECT pg_advisory_unlock(" ALERT_LOCK_KEY ")");
    PQclear(res);
    return rc;
}

/*
 * Sends one event's payload with retries. Returns the delivery state to
 * record: "delivered", "failed", or "pending" when the job is stopping
 * (the next run, here or in another replica, sends it again).
 */
static const char *deliver(aa_alerts *a, aa_periodic *job, const char *id, const char *url,
                           const char *payload, int *attempts, long *status, char *err,
                           size_t errlen)
{
    int backoff = a->cfg.webhook_backoff_ms;
    for (*attempts = 1;; (*attempts)++) {
        atomic_fetch_add(&a->attempts, 1);
        if (aa_webhook_post(a->curl, url, payload, a->cfg.webhook_timeout_ms, status, err,
                            errlen) == AM_OK)
            return "delivered";
        if (*attempts > a->cfg.webhook_retries || !aa_webhook_retryable(*status))
            break;
        am_log_debug("alerts: event %s: webhook attempt %d failed (%s); retrying in %d ms", id,
                     *attempts, err, backoff);
        atomic_fetch_add(&a->retries, 1);
        if (!aa_periodic_sleep(job, backoff))
            return "pending";
        backoff = backoff > 3600000 / 2 ? 3600000 : backoff * 2;
    }
    am_log_warn("alerts: event %s: webhook failed after %d attempts: %s", id, *attempts, err);
    return "failed";
}

/* Delivers what is pending, a claimed batch at a time, outside any transaction. */
static int deliver_pending(aa_alerts *a, aa_periodic *job, PGconn *conn)
{
    char stale[24], batch[16];
    const char *params[] = {stale, batch};
    snprintf(stale, sizeof stale, "%lld", a->stale_ms);
    snprintf(batch, sizeof batch, "%d", CLAIM_BATCH);

    for (;;) {
        PGresult *claimed = NULL;
        if (exec(conn, claim_sql, 2, params, PGRES_TUPLES_OK, &claimed))
            return AM_EDB;
        int n = PQntuples(claimed), rc = AM_OK;
        for (int i = 0; i < n && rc == AM_OK; i++) {
            char err[256] = "", tries[16], code[16];
            const char *id = PQgetvalue(claimed, i, 0);
            int attempts = 0;
            long status = 0;
            const char *outcome =
                aa_periodic_stopping(job)
                    ? "pending"
                    : deliver(a, job, id, PQgetvalue(claimed, i, 1), PQgetvalue(claimed, i, 2),
                              &attempts, &status, err, sizeof err);
            if (!strcmp(outcome, "delivered"))
                atomic_fetch_add(&a->delivered, 1);
            else if (!strcmp(outcome, "failed"))
                atomic_fetch_add(&a->delivery_failures, 1);
            snprintf(tries, sizeof tries, "%d", attempts);
            snprintf(code, sizeof code, "%ld", status);
            const char *done[] = {id, outcome, tries, status ? code : NULL, err[0] ? err : NULL};
            rc = exec(conn, delivered_sql, 5, done, PGRES_COMMAND_OK, NULL);
        }
        PQclear(claimed);
        if (rc || n < CLAIM_BATCH || aa_periodic_stopping(job))
            return rc;
    }
}

static int alerts_run(void *arg, aa_periodic *job, PGconn *conn)
{
    aa_alerts *a = arg;
    int rc = evaluate_all(a, job, conn);
    if (deliver_pending(a, job, conn) != AM_OK)
        rc = AM_EDB;
    return rc;
}

int aa_alerts_start(aa_alerts **out, const struct aa_alerts_config *cfg)
{
    *out = NULL;
    if (cfg->interval_s <= 0)
        return AM_OK;
    aa_alerts *a = calloc(1, sizeof *a);
    size_t len = sizeof value_fmt + strlen(aa_metrics_figures_sql);
    if (!a || !(a->value_sql = malloc(len)) || !(a->curl = am_curl_easy_new())) {
        if (a)
            free(a->value_sql);
        free(a);
        return AM_ENOMEM;
    }
    a->cfg = *cfg;
    snprintf(a->value_sql, len, value_fmt, aa_metrics_figures_sql);
    /* The longest a delivery can take, every retry and backoff included, and a minute more. */
    long long backoffs = 0, b = cfg->webhook_backoff_ms;
    for (int i = 0; i < cfg->webhook_retries; i++, b *= 2)
        backoffs += b;
    a->stale_ms =
        (long long)(cfg->webhook_retries + 1) * cfg->webhook_timeout_ms + backoffs + 60000;
    int rc = aa_periodic_start(&a->job, cfg->database_url, "athena-admin-api-alerts", NULL,
                               cfg->interval_s, alerts_run, a);
    if (rc) {
        curl_easy_cleanup(a->curl);
        free(a->value_sql);
        free(a);
        return rc;
    }
    *out = a;
    return AM_OK;
}

void aa_alerts_write_prom(aa_alerts *a, struct am_buf *b)
{
    if (!a)
        return;
    struct aa_periodic_stats st;
    aa_periodic_stats(a->job, &st);
    am_prom_counter(b, "athena_admin_alert_runs_total", "Alert evaluator runs started.", st.runs);
    am_prom_counter(b, "athena_admin_alert_run_failures_total",
                    "Alert evaluator runs that met a database error.", st.failures);
    am_prom_counter(b, "athena_admin_alert_rules_evaluated_total",
                    "Alert rules evaluated, summed over runs.", atomic_load(&a->rules_evaluated));
    am_prom_gauge(b, "athena_admin_alert_rules_firing", "Alert rules firing after the last run.",
                  (double)atomic_load(&a->firing));
    am_prom_family(b, "athena_admin_alert_transitions_total", "counter",
                   "Alert rules that started to fire or resolved.");
    am_prom_sample(b, "athena_admin_alert_transitions_total", "state=\"firing\"",
                   (double)atomic_load(&a->fired));
    am_prom_sample(b, "athena_admin_alert_transitions_total", "state=\"resolved\"",
                   (double)atomic_load(&a->resolved));
    am_prom_counter(b, "athena_admin_alert_webhook_attempts_total", "Webhook POSTs attempted.",
                    atomic_load(&a->attempts));
    am_prom_counter(b, "athena_admin_alert_webhook_retries_total",
                    "Webhook POSTs tried again after a failure.", atomic_load(&a->retries));
    am_prom_counter(b, "athena_admin_alert_webhook_delivered_total",
                    "Alert events their webhook accepted.", atomic_load(&a->delivered));
    am_prom_counter(b, "athena_admin_alert_webhook_failures_total",
                    "Alert events not delivered: every attempt failed (recorded in the history).",
                    atomic_load(&a->delivery_failures));
    am_prom_counter(b, "athena_admin_alert_history_pruned_total",
                    "Alert events deleted past ADMIN_ALERT_HISTORY_MAX.", atomic_load(&a->pruned));
    am_prom_gauge(b, "athena_admin_alert_last_success_timestamp_seconds",
                  "When an alert evaluator run last finished without error.",
                  (double)st.last_success_unix);
}

void aa_alerts_stop(aa_alerts *a)
{
    if (!a)
        return;
    aa_periodic_stop(a->job);
    curl_easy_cleanup(a->curl);
    free(a->value_sql);
    free(a);
}
