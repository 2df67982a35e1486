#!/usr/bin/env bash
# Scenario 1: two collectors subscribed to the same publishers; one of them
# is killed with SIGKILL every two seconds and started again. The other one
# receives everything, so nothing is lost, and the idempotency key keeps
# what both store to one row per metric.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	per_pub=250000 rate=5000
else
	per_pub=50000 rate=2500
fi
total=$((2 * per_pub))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
chaos_collector_start steady
chaos_collector_define victim
urls="$(chaos_bus steady),$(chaos_bus victim)"

for n in 1 2; do
	am_bg "load$n" "$AM_BIN_DIR/athena-metrics-load" --url "$urls" --count "$per_pub" \
		--rate "$rate" --source-id "chaos-kill-$n" --seed "$n" --metrics-linger-ms 30000
done
# A publisher sends once one collector listens. The steady one is that
# collector from the first metric on; the victim joins afterwards.
for n in 1 2; do
	am_wait_for "publisher $n connected to the steady collector" 30 \
		grep -q "bus subscriber connected (now 1)" "$(am_log_of "load$n")"
done
chaos_collector_start victim

# The publishers' pids, to know when they are done while the killing goes on.
load_pids=("$(am_pid load1)" "$(am_pid load2)")
publishing() {
	local pid
	for pid in "${load_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && return 0
	done
	return 1
}

kills=0
victim_stored=0
while publishing; do
	# The two seconds are the scenario's period, not a wait for a condition.
	sleep 2
	publishing || break
	# What the victim stored before this kill; the count of a killed process is lost with it.
	v=$(chaos_metric victim athena_collector_metrics_inserted_total) || v=0
	kill -KILL "$(am_pid victim)"
	wait "$(am_pid victim)" 2>/dev/null || true
	kills=$((kills + 1))
	victim_stored=$((victim_stored + v))
	chaos_collector_start victim
done

for n in 1 2; do
	am_wait "load$n" 120 || am_fail "publisher $n reported drops: $(cat "$(am_log_of "load$n")")"
	am_assert_eq "publisher $n sent" "$per_pub" "$(chaos_field "$(am_log_of "load$n")" sent)"
	am_assert_eq "publisher $n dropped" 0 "$(chaos_field "$(am_log_of "load$n")" dropped)"
done
((kills >= 5)) || am_fail "only $kills kills: the publishers finished too soon for the scenario"

am_wait_for "the steady collector to receive every metric" 60 \
	chaos_metric_ge steady athena_collector_metrics_received_total "" "$total"
am_wait_for "$total rows" 120 rows_are "$total"
am_wait_for "the steady collector to have written every metric" 60 bash -c \
	"[[ \$(( \$(curl -fs '$(chaos_http steady)/metrics' | awk '\$1 == \"athena_collector_metrics_inserted_total\" || \$1 == \"athena_collector_metrics_duplicate_total\" { s += \$2 } END { print s }') )) == $total ]]"

received=$(chaos_metric steady athena_collector_metrics_received_total)
stored=$(chaos_metric steady athena_collector_metrics_inserted_total)
dups=$(chaos_metric steady athena_collector_metrics_duplicate_total)
am_assert_eq "steady collector received" "$total" "$received"
am_assert_eq "steady collector: stored + duplicates" "$total" $((stored + dups))
am_assert_eq "steady collector gaps" 0 "$(chaos_metric steady athena_collector_metrics_gap_total)"
am_assert_eq "steady collector drops" 0 "$(chaos_drops steady)"
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "sequence numbers per publisher" \
	"chaos-kill-1|0|$((per_pub - 1))|$per_pub chaos-kill-2|0|$((per_pub - 1))|$per_pub" \
	"$(am_psql 'SELECT source_id, min(seq), max(seq), count(DISTINCT seq) FROM llm_performance_metric GROUP BY 1 ORDER BY 1' | tr '\n' ' ' | sed 's/ $//')"
# Every row was stored by one of the two: what the steady one did not store, the victim did.
((dups >= victim_stored)) || am_fail "steady duplicates $dups below what the victim was seen storing ($victim_stored)"

chaos_report "sent=$total publisher_dropped=0 stored=$(chaos_rows) duplicated_rows=0" \
	"kills=$kills steady_received=$received steady_stored=$stored steady_duplicates=$dups" \
	"victim_stored_at_least=$victim_stored steady_dropped=0 steady_gaps=0"
