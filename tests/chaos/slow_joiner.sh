#!/usr/bin/env bash
# Scenario 4: publishers start ten seconds before any collector listens.
# They hold what they publish meanwhile (within their queue bound) and the
# collector, once up, gets all of it: nothing lost, nothing counted missing.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	per_pub=200000 rate=5000
else
	per_pub=30000 rate=2000
fi
total=$((2 * per_pub))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
bus=tcp://127.0.0.1:$(am_free_port)
# The replay port too is this test's own: the default (5557) is anyone's.
replay=tcp://127.0.0.1:$(am_free_port)
for n in 1 2; do
	am_bg "load$n" "$AM_BIN_DIR/athena-metrics-load" --url "$bus" --count "$per_pub" \
		--rate "$rate" --source-id "chaos-late-$n" --seed "$n" --metrics-linger-ms 60000 \
		--metrics-replay-urls "$replay"
done
for n in 1 2; do
	am_wait_for "publisher $n dialling" 30 grep -q "dialling" "$(am_log_of "load$n")"
done
# Ten seconds without a collector is the scenario itself, not a wait for something.
sleep 10
http_port=$(am_free_port)
COLLECTOR_HTTP=http://127.0.0.1:$http_port
am_bg collector env METRICS_BUS_LISTEN="$bus" METRICS_REPLAY_LISTEN="$replay" \
	LISTEN_ADDR="127.0.0.1:$http_port" COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/spool" \
	"$AM_BIN_DIR/athena-collector"

for n in 1 2; do
	am_wait "load$n" 120 || am_fail "publisher $n reported drops: $(cat "$(am_log_of "load$n")")"
	am_assert_eq "publisher $n sent" "$per_pub" "$(chaos_field "$(am_log_of "load$n")" sent)"
	am_assert_eq "publisher $n dropped" 0 "$(chaos_field "$(am_log_of "load$n")" dropped)"
done
am_wait_for "$total rows" 120 rows_are "$total"
# The writer counts a transaction's rows stored after its COMMIT returns, so
# the table can show them a moment before /metrics does.
am_wait_for "collector stored $total" 30 \
	collector_metric_is athena_collector_metrics_inserted_total "" "$total"
received=$(collector_metric athena_collector_metrics_received_total)
stored=$(collector_metric athena_collector_metrics_inserted_total)
am_assert_eq "collector received" "$total" "$received"
am_assert_eq "collector stored" "$total" "$stored"
am_assert_eq "collector duplicates" 0 "$(collector_metric athena_collector_metrics_duplicate_total)"
am_assert_eq "collector gaps" 0 "$(collector_metric athena_collector_metrics_gap_total)"
collector_assert_nothing_dropped
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "sequence numbers per publisher" \
	"chaos-late-1|0|$((per_pub - 1))|$per_pub chaos-late-2|0|$((per_pub - 1))|$per_pub" \
	"$(am_psql 'SELECT source_id, min(seq), max(seq), count(DISTINCT seq) FROM llm_performance_metric GROUP BY 1 ORDER BY 1' | tr '\n' ' ' | sed 's/ $//')"
grep -q "new stream chaos-late-1 epoch [0-9]* at seq 0" "$(am_log_of collector)" ||
	am_fail "the collector did not see publisher 1 from seq 0"

chaos_report "sent=$total publisher_dropped=0 stored=$stored duplicated_rows=0" \
	"collector_received=$received gaps=0 dropped=0 head_start_s=10"
