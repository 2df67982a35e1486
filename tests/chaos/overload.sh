#!/usr/bin/env bash
# Scenario 5: publishers send more than the database takes (here: nothing,
# the table is locked) for a while. The collector's memory and its spool stay
# within their bounds, what does not fit is dropped and counted, and once the
# database takes rows again everything held is stored and new traffic flows,
# without a restart. The table holds exactly what was sent minus what was
# counted dropped.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	seconds=60 rate=5000
else
	seconds=15 rate=5000
fi
queue_mib=2 spool_mib=8
count=$((rate * seconds))
# The memory bound: as in db_restart.sh, the queue, twice a spool segment and
# a bus message, and the process itself with allocator slack.
rss_bound_kib=$(((queue_mib + 2 * (4 + 4) + 16) * 1024))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
chaos_collector_start collector COLLECTOR_QUEUE_MAX_MIB=$queue_mib COLLECTOR_SPOOL_MAX_MIB=$spool_mib
COLLECTOR_HTTP=$(chaos_http collector)

# The database takes nothing while this session holds the table.
chaos_lock_table locker

am_bg load1 "$AM_BIN_DIR/athena-metrics-load" --url "$(chaos_bus collector)" --count "$count" \
	--rate "$rate" --source-id chaos-over-1 --metrics-linger-ms 60000
# The spool's size, sampled while it fills: it must never pass its bound.
spool_max_seen=0
while kill -0 "$(am_pid load1)" 2>/dev/null; do
	b=$(chaos_metric collector athena_collector_spool_bytes) || b=0
	((b > spool_max_seen)) && spool_max_seen=$b
	on_disk=$(du -sb "$AM_TEST_TMP/spool-collector" | cut -f1)
	((on_disk <= (spool_mib << 20) + 65536)) || am_fail "spool uses $on_disk bytes on disk"
	sleep 0.5
done
am_wait load1 60 || am_fail "publisher 1 reported drops: $(cat "$(am_log_of load1)")"
am_wait_for "every metric received" 60 \
	chaos_metric_ge collector athena_collector_metrics_received_total "" "$count"
dropped=$(collector_metric athena_collector_metrics_dropped_total 'reason="spool_full"')
((dropped > 0)) || am_fail "nothing dropped: the overload did not pass the bounds"
((spool_max_seen <= spool_mib << 20)) || am_fail "spool reached $spool_max_seen bytes"
peak=$(chaos_peak_rss_kib "$(am_pid collector)")
chaos_assert_rss_within "peak RSS" "$peak" "$rss_bound_kib"

# The database takes rows again: what is held drains, and new traffic flows.
chaos_unlock_table
am_wait locker 30 || true
am_wait_for "what was held stored" 120 rows_are $((count - dropped))
am_wait_for "spool empty" 60 chaos_metric_is collector athena_collector_spool_rows "" 0
am_bg load2 "$AM_BIN_DIR/athena-metrics-load" --url "$(chaos_bus collector)" --count 20000 \
	--rate "$rate" --source-id chaos-over-2
am_wait load2 60 || am_fail "publisher 2 reported drops: $(cat "$(am_log_of load2)")"
am_wait_for "the new traffic stored" 60 rows_are $((count - dropped + 20000))

sent1=$(chaos_field "$(am_log_of load1)" sent)
am_assert_eq "publisher 1 sent" "$count" "$sent1"
received=$(collector_metric athena_collector_metrics_received_total)
stored=$(collector_metric athena_collector_metrics_inserted_total)
dups=$(collector_metric athena_collector_metrics_duplicate_total)
spooled=$(collector_metric athena_collector_metrics_spooled_total)
am_assert_eq "collector received" $((count + 20000)) "$received"
am_assert_eq "received = stored + duplicates + dropped" "$received" $((stored + dups + dropped))
am_assert_eq "other drops" "$dropped" "$(chaos_drops collector)"
am_assert_eq "drops after the overload" "$dropped" \
	"$(collector_metric athena_collector_metrics_dropped_total 'reason="spool_full"')"
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "rows of publisher 1 = sent - dropped" $((count - dropped)) \
	"$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source_id = 'chaos-over-1'")"
am_assert_eq "gaps" 0 "$(collector_metric athena_collector_metrics_gap_total)"

chaos_report "overload_s=$seconds sent=$((count + 20000)) publisher_dropped=0" \
	"stored=$(chaos_rows) duplicated_rows=0 dropped_spool_full=$dropped spooled=$spooled" \
	"spool_max_bytes_seen=$spool_max_seen spool_bound=$((spool_mib << 20))" \
	"peak_rss_kib=$peak bound_kib=$rss_bound_kib queue_mib=$queue_mib"
