#!/usr/bin/env bash
# PostgreSQL stopped for ten seconds mid-stream: the collector holds, reconnects,
# and stores everything once.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

[[ -n ${AM_PG_DIR:-} ]] || am_skip "needs the cluster of scripts/test (AM_PG_DIR)"
am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector COLLECTOR_BACKOFF_MAX_MS=1000

# 15 seconds of traffic at 4000 metrics/s.
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "$COLLECTOR_BUS" --count 60000 --rate 4000 \
	--source-id outage
am_wait_for "first rows stored" 30 bash -c "[[ \$(psql -X -At '$DATABASE_URL' -c 'SELECT count(*) FROM llm_performance_metric') -gt 2000 ]]"

restart_db() {
	"$AM_PG_SCRIPT" status "$AM_PG_DIR" >/dev/null 2>&1 || "$AM_PG_SCRIPT" start "$AM_PG_DIR" >/dev/null
}
# Other tests share the server: it is started again even when this test fails.
am_on_cleanup restart_db
"$AM_PG_SCRIPT" stop "$AM_PG_DIR" immediate
am_wait_for "collector to notice the outage" 30 \
	bash -c "! curl -fs '$COLLECTOR_HTTP/ready'"
received_before=$(collector_metric athena_collector_metrics_received_total)
# The outage itself lasts ten seconds: that is the scenario, not a wait for something.
sleep 10
received_after=$(collector_metric athena_collector_metrics_received_total)
((received_after > received_before)) || am_fail "the collector stopped receiving during the outage"
restart_db

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
am_wait_for "collector ready again" 60 curl -fs "$COLLECTOR_HTTP/ready"
am_wait_for "60000 rows" 120 rows_are 60000
am_assert_eq "distinct keys" 60000 \
	"$(am_psql 'SELECT count(DISTINCT (source_id, epoch, seq)) FROM llm_performance_metric')"
collector_assert_nothing_dropped
reconnects=$(collector_metric athena_collector_db_reconnects_total)
((reconnects >= 1)) || am_fail "no reconnect counted"
echo "ok: outage of 10 s, 60000 stored once, $reconnects reconnects"
