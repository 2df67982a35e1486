#!/usr/bin/env bash
# Scenario 2: the only collector is killed with SIGKILL in the middle of a
# batch (its transaction waiting on a lock the test holds, more rows queued
# behind it) and started again, five times. What the killed process held is
# lost; each restarted run finds how far the stream was stored and reports
# the rest as a gap, one log line each. The missing ranges in the table must
# be exactly the logged gaps, and nothing is stored twice.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	kills=20 rate=5000
else
	kills=5 rate=4000
fi
# Publishing lasts the kills (about three seconds each with the restart) and ten seconds more.
count=$((rate * (kills * 3 + 10)))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
# Small transactions, so that a kill usually finds one open.
chaos_collector_start collector COLLECTOR_BATCH_ROWS=500
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "$(chaos_bus collector)" --count "$count" \
	--rate "$rate" --source-id chaos-crash --metrics-linger-ms 60000
load_pid=$(am_pid load)

am_on_cleanup chaos_unlock_table
for ((k = 1; k <= kills; k++)); do
	# The two seconds are the scenario's period, not a wait for a condition.
	sleep 2
	kill -0 "$load_pid" || am_fail "the publisher finished before kill $k; raise the count"
	# Hold the table so that the writer's transaction waits with rows in it and behind it.
	chaos_lock_table "locker$k"
	am_wait_for "rows held by the collector" 30 \
		chaos_metric_ge collector athena_collector_queue_rows "" 1000
	kill -KILL "$(am_pid collector)"
	wait "$(am_pid collector)" 2>/dev/null || true
	chaos_unlock_table
	am_wait "locker$k" 30 || true
	chaos_collector_start collector
done
run_start=$(grep -c "athena-collector [0-9.]*: http on" "$(am_log_of collector)")
am_assert_eq "collector runs" $((kills + 1)) "$run_start"

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
sent=$(chaos_field "$(am_log_of load)" sent)
am_assert_eq "publisher sent" "$count" "$sent"
COLLECTOR_HTTP=$(chaos_http collector)
am_wait_for "every message of the last run received and written" 60 bash -c \
	"[[ \$(curl -fs '$COLLECTOR_HTTP/metrics' | awk '\$1 == \"athena_collector_metrics_received_total\" { r = \$2 } \$1 == \"athena_collector_queue_rows\" { q = \$2 } END { print (q == 0 && r > 0) }') == 1 ]]"
# The last message sent is the last one stored: nothing at the end went missing unseen.
am_wait_for "the last metric stored" 60 bash -c \
	"[[ \$(psql -X -At '$DATABASE_URL' -c 'SELECT max(seq) FROM llm_performance_metric') == $((count - 1)) ]]"

stored=$(chaos_rows)
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
in_table=$(am_psql "SELECT coalesce(string_agg(m || ':' || n, ' ' ORDER BY m), '') FROM (
  SELECT min(s) AS m, count(*) AS n FROM (
    SELECT s, s - row_number() OVER (ORDER BY s) AS island
    FROM generate_series(0, $count - 1) s
    WHERE NOT EXISTS (SELECT 1 FROM llm_performance_metric WHERE source_id = 'chaos-crash' AND seq = s)
  ) x GROUP BY island) y")
gap_lines=$(sed -n 's/.*gap in chaos-crash epoch [0-9]*: \([0-9]*\) metrics missing from seq \([0-9]*\).*/\2:\1/p' \
	"$(am_log_of collector)" | sort -n)
in_log=$(tr '\n' ' ' <<<"$gap_lines" | sed 's/ $//')
am_assert_eq "missing ranges (from:count) against the logged gaps" "$in_table" "$in_log"
logged=$(awk -F: '{ s += $2 } END { printf "%d\n", s }' <<<"$gap_lines")
am_assert_eq "sent = stored + reported missing" "$sent" $((stored + logged))
am_assert_eq "one gap line per kill" "$kills" "$(grep -c . <<<"$gap_lines")"
# The last run's counter covers the gaps it logged itself.
last_run_logged=$(awk '/athena-collector [0-9.]*: http on/ { s = 0 } /gap in chaos-crash/ { match($0, /: [0-9]+ metrics missing/); s += substr($0, RSTART + 2, RLENGTH - 18) } END { printf "%d\n", s }' \
	"$(am_log_of collector)")
am_assert_eq "last run's gap counter" "$last_run_logged" \
	"$(chaos_metric collector athena_collector_metrics_gap_total)"
am_assert_eq "last run's drops" 0 "$(chaos_drops collector)"

chaos_report "kills=$kills sent=$sent publisher_dropped=0 stored=$stored duplicated_rows=0" \
	"missing=$((sent - stored)) reported_missing=$logged gap_lines=$(grep -c . <<<"$gap_lines" || true)"
