#!/usr/bin/env bash
# Scenario 3: PostgreSQL restarted with pg_ctl -m immediate mid-stream, then
# stopped for longer than the collector's memory holds. The collector spills
# to its disk spool, keeps the spool across its own restart, and replays it
# once the database is back: every metric stored once, the counts adding up.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

[[ -n ${AM_PG_DIR:-} ]] || am_skip "needs the cluster of scripts/test (AM_PG_DIR)"

if ((CHAOS_SOAK)); then
	n1=400000 n2=200000 rate=10000 queue_mib=8
else
	n1=40000 n2=20000 rate=8000 queue_mib=1
fi
# The collector's memory bound for this test: its queue, the spool segment
# being replayed (the file, then its records: twice 4 MiB and a bus
# message) and the process itself (about 10 MiB idle, docs/BENCHMARKS.md),
# with room for allocator slack.
rss_bound_kib=$(((queue_mib + 2 * (4 + 4) + 16) * 1024))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
chaos_collector_start collector COLLECTOR_QUEUE_MAX_MIB=$queue_mib COLLECTOR_SPOOL_MAX_MIB=256 \
	COLLECTOR_BACKOFF_MAX_MS=500
bus=$(chaos_bus collector)

db_start() {
	"$AM_PG_SCRIPT" status "$AM_PG_DIR" >/dev/null 2>&1 || "$AM_PG_SCRIPT" start "$AM_PG_DIR" >/dev/null
}
db_stop() { "$AM_PG_SCRIPT" stop "$AM_PG_DIR" immediate >/dev/null; }
# Other tests share the server: it is started again even when this test fails.
am_on_cleanup db_start

am_bg load1 "$AM_BIN_DIR/athena-metrics-load" --url "$bus" --count "$n1" --rate "$rate" \
	--source-id chaos-db-1 --metrics-linger-ms 60000
am_wait_for "first rows stored" 60 chaos_rows_at_least 2000

# 1. An immediate restart mid-stream: the collector reconnects and retries.
db_stop
db_start
rows=$(chaos_rows)
am_wait_for "rows stored after the restart" 60 chaos_rows_at_least $((rows + 2000))

# 2. A long outage: the queue fills, then the spool takes the rest.
db_stop
am_wait_for "the collector to notice" 30 bash -c "! curl -fs '$(chaos_http collector)/ready'"
am_wait load1 300 || am_fail "publisher 1 reported drops: $(cat "$(am_log_of load1)")"
am_wait_for "every metric of publisher 1 received" 60 \
	chaos_metric_ge collector athena_collector_metrics_received_total "" "$n1"
spooled_live=$(chaos_metric collector athena_collector_metrics_spooled_total)
((spooled_live > 0)) || am_fail "nothing was spooled: the outage did not pass the memory bound"
peak1=$(chaos_peak_rss_kib "$(am_pid collector)")

# 3. The collector stops while the database is away: what it holds joins the
# spool, and the next run starts from there.
am_stop collector 30 || am_fail "collector did not exit 0 on SIGTERM with the database down"
log1=$(am_log_of collector)
cp "$log1" "$AM_TEST_TMP/collector-run1.log"
: >"$log1"
run1=$AM_TEST_TMP/collector-run1.log
received1=$(chaos_field "$run1" received)
stored1=$(chaos_field "$run1" stored)
dup1=$(chaos_field "$run1" duplicates)
left1=$(chaos_field "$run1" in_spool)
spooled1=$(chaos_field "$run1" spooled)
replayed1=$(chaos_field "$run1" replayed)
for f in dropped_shutdown dropped_queue_full dropped_spool_full dropped_spool_error; do
	am_assert_eq "run 1 $f" 0 "$(chaos_field "$run1" "$f")"
done
am_assert_eq "run 1: received = stored + duplicates + left in the spool" "$received1" \
	$((stored1 + dup1 + left1))
am_assert_eq "run 1: left in the spool = spooled - replayed" "$left1" $((spooled1 - replayed1))

chaos_collector_start collector
am_assert_eq "spool found at start" "$left1" "$(chaos_metric collector athena_collector_spool_rows)"
am_bg load2 "$AM_BIN_DIR/athena-metrics-load" --url "$bus" --count "$n2" --rate "$rate" \
	--source-id chaos-db-2 --metrics-linger-ms 60000
am_wait load2 300 || am_fail "publisher 2 reported drops: $(cat "$(am_log_of load2)")"
am_wait_for "every metric of publisher 2 received" 60 \
	chaos_metric_ge collector athena_collector_metrics_received_total "" "$n2"

# 4. The database returns: the spool drains in order and its files go.
db_start
am_wait_for "all rows stored" 300 rows_are $((n1 + n2))
am_wait_for "spool empty" 60 chaos_metric_is collector athena_collector_spool_rows "" 0
am_wait_for "spool files deleted" 30 bash -c "! compgen -G '$AM_TEST_TMP/spool-collector/*.seg' && ! compgen -G '$AM_TEST_TMP/spool-collector/*.open'"
peak2=$(chaos_peak_rss_kib "$(am_pid collector)")

sent1=$(chaos_field "$(am_log_of load1)" sent)
sent2=$(chaos_field "$(am_log_of load2)" sent)
am_assert_eq "publisher 1 sent" "$n1" "$sent1"
am_assert_eq "publisher 2 sent" "$n2" "$sent2"
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
am_assert_eq "sequence numbers per publisher" "chaos-db-1|0|$((n1 - 1))|$n1 chaos-db-2|0|$((n2 - 1))|$n2" \
	"$(am_psql 'SELECT source_id, min(seq), max(seq), count(DISTINCT seq) FROM llm_performance_metric GROUP BY 1 ORDER BY 1' | tr '\n' ' ' | sed 's/ $//')"
am_assert_eq "collector drops (run 2)" 0 "$(chaos_drops collector)"
am_assert_eq "gaps (run 2)" 0 "$(chaos_metric collector athena_collector_metrics_gap_total)"
stored2=$(chaos_metric collector athena_collector_metrics_inserted_total)
dup2=$(chaos_metric collector athena_collector_metrics_duplicate_total)
replayed2=$(chaos_metric collector athena_collector_metrics_replayed_total)
received2=$(chaos_metric collector athena_collector_metrics_received_total)
am_assert_eq "run 2: stored + duplicates = the spool left + received" $((left1 + received2)) \
	$((stored2 + dup2))
am_assert_eq "stored by both runs = rows in the table" $((n1 + n2)) $((stored1 + stored2))
chaos_assert_rss_within "run 1 peak RSS" "$peak1" "$rss_bound_kib"
chaos_assert_rss_within "run 2 peak RSS" "$peak2" "$rss_bound_kib"

chaos_report "sent=$((sent1 + sent2)) publisher_dropped=0 stored=$((n1 + n2))" \
	"duplicated_rows=0 run1_received=$received1 run1_stored=$stored1 run1_duplicates=$dup1" \
	"run1_spooled=$spooled1 run1_replayed=$replayed1 run1_left_in_spool=$left1 run2_received=$received2" \
	"run2_stored=$stored2 run2_duplicates=$dup2 run2_replayed=$replayed2 dropped=0 gaps=0" \
	"peak_rss_kib=$peak1/$peak2 bound_kib=$rss_bound_kib queue_mib=$queue_mib"
