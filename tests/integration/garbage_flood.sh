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
# short, a valid message under the wrong magic), one stream throughout.
# The bus is pub/sub: it drops what a subscriber has no room for, and a rate
# alone does not keep a loaded machine's collector within its buffers. So the
# flood goes in 20 rounds of 5,100 frames, fewer than the publisher's send
# buffer and the collector's receive buffer (8,192 messages each) hold, and
# the next round starts once the collector has counted every frame of the
# last: the buffers are not what is being tested.
rounds=20 per_round=100 garbage=50
frames_per_round=$((per_round * (1 + garbage)))
for ((r = 0; r < rounds; r++)); do
	am_bg inject "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id flood \
		--first-seq $((r * per_round * 10)) --batches "$per_round" --batch-size 10 \
		--garbage "$garbage" --seed $((11 + r)) --rate 40000 --hold
	am_wait_for "$(((r + 1) * frames_per_round)) frames received" 120 \
		collector_metric_is athena_collector_frames_received_total "" $(((r + 1) * frames_per_round))
	am_stop inject
done
am_wait_for "20000 rows" 60 rows_are 20000

# A frame is counted received before it is decoded and counted malformed.
malformed_is() { [[ $(collector_malformed_total) == "$1" ]]; }
am_wait_for "100000 malformed frames counted" 30 malformed_is 100000
am_assert_eq "collector still alive" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$COLLECTOR_HTTP/health")"
am_assert_eq "each valid metric stored once" 20000 \
	"$(am_psql "SELECT count(DISTINCT seq) FROM llm_performance_metric WHERE source_id = 'flood'")"
collector_assert_nothing_dropped
echo "ok: 100000 malformed frames counted, 20000 valid metrics stored once"
