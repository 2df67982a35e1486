#!/usr/bin/env bash
# Malformed bus messages are counted and dropped; the valid ones around them are stored.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector

# 200 valid batches of 50 metrics, each followed by 5 malformed frames.
am_bg inject "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id mixed --batches 200 \
	--batch-size 50 --garbage 5 --seed 7 --hold
am_wait_for "1200 frames received" 60 collector_metric_is athena_collector_frames_received_total "" 1200
am_wait_for "10000 rows" 60 rows_are 10000
am_stop inject

am_assert_eq "malformed frames counted" 1000 "$(collector_malformed_total)"
am_assert_eq "collector still alive" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$COLLECTOR_HTTP/health")"
am_assert_eq "distinct keys" 10000 \
	"$(am_psql 'SELECT count(DISTINCT seq) FROM llm_performance_metric')"
collector_assert_nothing_dropped
echo "ok: 1000 malformed frames counted, 10000 valid metrics stored"
