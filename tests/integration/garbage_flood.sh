#!/usr/bin/env bash
# 100,000 random and truncated frames interleaved with valid ones: every
# valid metric is stored once and every bad frame is counted by its reason.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector

# 2,000 valid batches of 10 metrics, each followed by 50 malformed frames
# (random bytes, the right magic over random bytes, a valid message cut
# short, a valid message under the wrong magic), at most 40,000 frames a
# second so the bus buffers are not what is being tested.
am_bg inject "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id flood --batches 2000 \
	--batch-size 10 --garbage 50 --seed 11 --rate 40000 --hold
am_wait_for "102000 frames received" 120 \
	collector_metric_is athena_collector_frames_received_total "" 102000
am_wait_for "20000 rows" 60 rows_are 20000
am_stop inject

am_assert_eq "malformed frames counted" 100000 "$(collector_malformed_total)"
am_assert_eq "collector still alive" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$COLLECTOR_HTTP/health")"
am_assert_eq "each valid metric stored once" 20000 \
	"$(am_psql "SELECT count(DISTINCT seq) FROM llm_performance_metric WHERE source_id = 'flood'")"
collector_assert_nothing_dropped
echo "ok: 100000 malformed frames counted, 20000 valid metrics stored once"
