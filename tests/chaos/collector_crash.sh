#!/usr/bin/env bash
# Scenario 2: the only collector is killed with SIGKILL in the middle of a
# batch (its transaction waiting on a lock the test holds, more rows queued
# behind it) and started again, five times, while the publisher sends. What
# the killed process held is a gap that the restarted run finds below its
# first message of the stream (one log line each) and asks the publisher's
# replay ring for: every metric sent is stored, once, and the counters of
# each run say that the gap was recovered, none lost.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	kills=20 rate=5000 period=10
else
	kills=5 rate=4000 period=8
fi
# Publishing lasts the kills (up to period seconds each with the restart and
# the recovery stored; longer as the table grows) and ten seconds more.
count=$((rate * (kills * period + 10)))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
# Small transactions, so that a kill usually finds one open. A backlog past
# 8 MiB of rows goes to the spool, which a SIGKILL does not lose, so what a
# kill loses from memory stays within what the 16 MiB replay ring holds.
chaos_collector_start collector COLLECTOR_BATCH_ROWS=500 COLLECTOR_QUEUE_MAX_MIB=8
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "$(chaos_bus collector)" \
	--metrics-replay-urls "$(chaos_replay collector)" --count "$count" \
	--rate "$rate" --source-id chaos-crash --metrics-linger-ms 60000
load_pid=$(am_pid load)

# The replay counters of every run, added up (each run's start from 0).
declare -A total=([gap]=0 [filled]=0 [recovered]=0 [gone]=0 [given_up]=0 [requests]=0)
add_run_counters() {
	local k series
	for k in gap:metrics_gap_total filled:metrics_gap_filled_total recovered:metrics_recovered_total \
		gone:metrics_gone_total given_up:metrics_given_up_total requests:replay_requests_total; do
		series=athena_collector_${k#*:}
		total[${k%%:*}]=$((total[${k%%:*}] + $(chaos_metric collector "$series")))
	done
}
# run_settled: this run found the gap its start left, nothing is still asked
# for, and the table has every metric below the highest one stored.
run_settled() {
	chaos_metric_ge collector athena_collector_metrics_gap_total "" 1 &&
		chaos_metric_is collector athena_collector_metrics_gap_pending "" 0 &&
		[[ $(am_psql "SELECT max(seq) + 1 - count(*) FROM llm_performance_metric WHERE source_id = 'chaos-crash'") == 0 ]]
}

am_on_cleanup chaos_unlock_table
for ((k = 1; k <= kills; k++)); do
	# The two seconds are the scenario's period, not a wait for a condition.
	sleep 2
	kill -0 "$load_pid" || am_fail "the publisher finished before kill $k; raise the count"
	# Hold the table so that the writer's transaction waits with rows in it and behind it.
	chaos_lock_table "locker$k"
	am_wait_for "rows held by the collector" 30 \
		chaos_metric_ge collector athena_collector_queue_rows "" 1000
	add_run_counters
	kill -KILL "$(am_pid collector)"
	wait "$(am_pid collector)" 2>/dev/null || true
	chaos_unlock_table
	am_wait "locker$k" 30 || true
	chaos_collector_start collector
	# Recovered means stored: a kill before the resent metrics are committed
	# loses them again (the next run finds and asks for them again, but only
	# while the ring still has them).
	am_wait_for "run $((k + 1)) recovered and stored what kill $k lost" 60 run_settled
done
kill -0 "$load_pid" || am_fail "the publisher finished before the last run recovered; raise the count"
run_start=$(grep -c "athena-collector [0-9.]*: http on" "$(am_log_of collector)")
am_assert_eq "collector runs" $((kills + 1)) "$run_start"

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
sent=$(chaos_field "$(am_log_of load)" sent)
am_assert_eq "publisher sent" "$count" "$sent"
am_wait_for "every metric stored" 60 chaos_rows_at_least "$count"
COLLECTOR_HTTP=$(chaos_http collector)
am_wait_for "the last run's queue written" 60 chaos_metric_is collector athena_collector_queue_rows "" 0
add_run_counters

stored=$(chaos_rows)
am_assert_eq "stored = sent" "$sent" "$stored"
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "distinct sequence numbers, first, last" "$count|0|$((count - 1))" \
	"$(am_psql "SELECT count(DISTINCT seq), min(seq), max(seq) FROM llm_performance_metric WHERE source_id = 'chaos-crash'")"
gap_lines=$(grep -c "gap in chaos-crash epoch [0-9]*: [0-9]* metrics missing from seq [0-9]* (before this run's first message" \
	"$(am_log_of collector)" || true)
# A run killed after receiving what it asked for, before committing it, leaves a
# second hole below the next run's first message: that run logs both.
((gap_lines >= kills)) || am_fail "gap lines: $gap_lines, fewer than the $kills kills"
logged=$(sed -n 's/.*gap in chaos-crash epoch [0-9]*: \([0-9]*\) metrics missing.*/\1/p' \
	"$(am_log_of collector)" | awk '{ s += $1 } END { printf "%d\n", s }')
am_assert_eq "gaps counted = gaps logged" "$logged" "${total[gap]}"
am_assert_eq "gaps recovered from the replay ring" "${total[gap]}" "${total[recovered]}"
am_assert_eq "gaps filled (recovered ones included)" "${total[gap]}" "${total[filled]}"
am_assert_eq "lost: gone from the ring" 0 "${total[gone]}"
am_assert_eq "lost: given up" 0 "${total[given_up]}"
((total[requests] >= kills)) || am_fail "replay requests: ${total[requests]}, fewer than the $kills gaps"
resent=$(chaos_field "$(am_log_of load)" resent)
((resent >= total[recovered])) || am_fail "publisher resent $resent, fewer than the ${total[recovered]} recovered"
am_assert_eq "last run's drops" 0 "$(chaos_drops collector)"

chaos_report "kills=$kills sent=$sent publisher_dropped=0 stored=$stored duplicated_rows=0" \
	"gap=${total[gap]} recovered=${total[recovered]} gone=${total[gone]} given_up=${total[given_up]}" \
	"requests=${total[requests]} resent=$resent gap_lines=$gap_lines"
