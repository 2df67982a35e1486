#!/usr/bin/env bash
# Scenario 2 with a replay ring too small for what the collector lost: the
# only collector is killed with more rows held than the publisher's 1 MiB
# ring keeps, and started again. The publisher answers the replay request
# with what it still has and announces the rest gone; the restarted run
# counts exactly that as lost (one log line per gone range), and the table
# misses exactly the metrics in those ranges, nothing else.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

rate=8000
count=$((rate * 15))
held=20000 # rows the collector holds when killed: several times what 1 MiB of ring keeps

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
chaos_collector_start collector COLLECTOR_BATCH_ROWS=500
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "$(chaos_bus collector)" \
	--metrics-replay-urls "$(chaos_replay collector)" --metrics-replay-max-mib 1 \
	--count "$count" --rate "$rate" --source-id chaos-small --metrics-linger-ms 60000
load_pid=$(am_pid load)

declare -A total=([gap]=0 [recovered]=0 [gone]=0 [given_up]=0)
add_run_counters() {
	local k
	for k in gap:metrics_gap_total recovered:metrics_recovered_total gone:metrics_gone_total \
		given_up:metrics_given_up_total; do
		total[${k%%:*}]=$((total[${k%%:*}] + $(chaos_metric collector "athena_collector_${k#*:}")))
	done
}
run_settled() {
	chaos_metric_ge collector athena_collector_metrics_gap_total "" 1 &&
		chaos_metric_is collector athena_collector_metrics_gap_pending "" 0
}

am_on_cleanup chaos_unlock_table
# The second is the scenario's lead-in, not a wait for a condition.
sleep 1
chaos_lock_table locker
am_wait_for "$held rows held by the collector" 60 \
	chaos_metric_ge collector athena_collector_queue_rows "" "$held"
add_run_counters
kill -KILL "$(am_pid collector)"
wait "$(am_pid collector)" 2>/dev/null || true
chaos_unlock_table
am_wait locker 30 || true
chaos_collector_start collector
am_wait_for "the restarted run settled its gap" 60 run_settled
kill -0 "$load_pid" || am_fail "the publisher finished before the gap was settled; raise the count"

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
sent=$(chaos_field "$(am_log_of load)" sent)
am_assert_eq "publisher sent" "$count" "$sent"
am_wait_for "the last metric stored" 60 bash -c \
	"[[ \$(psql -X -At '$DATABASE_URL' -c 'SELECT max(seq) FROM llm_performance_metric') == $((count - 1)) ]]"
COLLECTOR_HTTP=$(chaos_http collector)
am_wait_for "the queue written" 60 chaos_metric_is collector athena_collector_queue_rows "" 0
add_run_counters

stored=$(chaos_rows)
missing=$((sent - stored))
((missing > 0)) || am_fail "nothing missing: the ring was not too small"
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "missing = counted gone" "$missing" "${total[gone]}"
am_assert_eq "gap = recovered + gone" "${total[gap]}" $((total[recovered] + total[gone]))
am_assert_eq "given up" 0 "${total[given_up]}"
gone_publisher=$(chaos_field "$(am_log_of load)" gone)
((gone_publisher >= total[gone])) || am_fail "publisher announced $gone_publisher gone, fewer than ${total[gone]}"

# Each gone range logged, against the sequence numbers missing from the table.
ranges=$(sed -n 's/.*lost in chaos-small epoch [0-9]*: \([0-9]*\) metrics of seq \([0-9]*\) to \([0-9]*\), gone.*/\2 \3 \1/p' \
	"$(am_log_of collector)")
[[ -n $ranges ]] || am_fail "no gone range logged"
logged=$(awk '{ s += $3 } END { printf "%d\n", s }' <<<"$ranges")
am_assert_eq "metrics in the logged gone ranges" "$missing" "$logged"
values=$(awk '{ printf "%s(%d,%d)", (NR > 1 ? "," : ""), $1, $2 }' <<<"$ranges")
outside=$(am_psql "SELECT count(*) FROM generate_series(0, $count - 1) s
  WHERE NOT EXISTS (SELECT 1 FROM llm_performance_metric WHERE source_id = 'chaos-small' AND seq = s)
    AND NOT EXISTS (SELECT 1 FROM (VALUES $values) r(a, b) WHERE s BETWEEN r.a AND r.b)")
am_assert_eq "missing metrics outside the logged gone ranges" 0 "$outside"
am_assert_eq "last run's drops" 0 "$(chaos_drops collector)"

chaos_report "sent=$sent stored=$stored missing=$missing duplicated_rows=0 gap=${total[gap]}" \
	"recovered=${total[recovered]} gone=${total[gone]} given_up=${total[given_up]}" \
	"gone_lines=$(grep -c . <<<"$ranges") publisher_gone=$gone_publisher"
