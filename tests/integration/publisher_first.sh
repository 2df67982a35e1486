#!/usr/bin/env bash
# A publisher that starts before any collector holds its metrics and loses none.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
bus_port=$(am_free_port)

# The whole burst is published while nothing listens on the bus port.
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "tcp://127.0.0.1:$bus_port" --count 20000 \
	--source-id early --metrics-linger-ms 60000
am_wait_for "publisher to start" 30 grep -q "dialling" "$(am_log_of load)"

http_port=$(am_free_port)
COLLECTOR_HTTP=http://127.0.0.1:$http_port
am_bg collector env METRICS_BUS_LISTEN="tcp://127.0.0.1:$bus_port" LISTEN_ADDR="127.0.0.1:$http_port" \
	METRICS_REPLAY_LISTEN="tcp://127.0.0.1:$(am_free_port)" \
	COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/spool" "$AM_BIN_DIR/athena-collector"

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
grep -q "sent=20000 dropped=0" "$(am_log_of load)" || am_fail "publisher: $(cat "$(am_log_of load)")"
am_wait_for "20000 rows" 60 rows_are 20000
am_assert_eq "distinct sequence numbers" "20000|0|19999" \
	"$(am_psql 'SELECT count(DISTINCT seq), min(seq), max(seq) FROM llm_performance_metric')"
collector_assert_nothing_dropped
echo "ok: a publisher started first lost nothing"
