#!/usr/bin/env bash
# Scenario 6: the connection between a publisher and its collector drops 100
# times (a relay closes every connection and its listener, then listens
# again). The publisher reconnects with backoff; what was in flight at a
# drop is lost, and the collector reports exactly that as gaps, one log line
# each (less what arrives late after all, counted as filled). Neither side
# leaks file descriptors or memory.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/chaos/lib.sh"

if ((CHAOS_SOAK)); then
	flaps=1000 rate=3000
else
	flaps=100 rate=3000
fi
period_ms=300
# Publish for the flaps and ten seconds more, so that the last one is not at the end.
count=$((rate * (flaps * period_ms / 1000 + 12)))

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector
proxy_port=$(am_free_port)
am_bg proxy "$AM_BIN_DIR/am-flap-proxy" --listen-port "$proxy_port" \
	--target-port "${COLLECTOR_BUS##*:}" --flaps "$flaps" --period-ms "$period_ms" \
	--down-ms 50 --first-ms 1000
am_wait_for "relay listening" 10 grep -q "relaying" "$(am_log_of proxy)"
# The replay requests go straight to the collector, past the flapping relay. A
# 4 MiB ring fills within seven seconds, so the publisher's memory is steady
# long before the first RSS sample.
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "tcp://127.0.0.1:$proxy_port" --count "$count" \
	--metrics-replay-urls "$COLLECTOR_REPLAY" --metrics-replay-max-mib 4 \
	--rate "$rate" --source-id chaos-flap --metrics-linger-ms 30000
collector_pid=$(am_pid collector)
load_pid=$(am_pid load)

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }
received() { collector_metric athena_collector_metrics_received_total; }
# receiving_again: true once metrics arrive after the call that set $mark.
receiving_again() { (($(received) > mark)); }

# Halfway, both sides have long reached their working size (memory held by
# NNG and the allocators grows over the first few dozen reconnections and
# then stays): the figures to compare with at the end.
half=$((flaps / 2))
am_wait_for "$half flaps" $((half * period_ms / 1000 + 60)) grep -q "^flap=$half$" "$(am_log_of proxy)"
mark=$(received)
am_wait_for "reconnected after flap $half" 30 receiving_again
fds_c0=$(fds "$collector_pid") fds_p0=$(fds "$load_pid")
rss_c0=$(rss_kib "$collector_pid") rss_p0=$(rss_kib "$load_pid")

am_wait_for "all $flaps flaps" $((flaps * period_ms / 1000 + 60)) \
	grep -q "^flap=$flaps last$" "$(am_log_of proxy)"
mark=$(received)
am_wait_for "reconnected after the last flap" 30 receiving_again
fds_c1=$(fds "$collector_pid") fds_p1=$(fds "$load_pid")
rss_c1=$(rss_kib "$collector_pid") rss_p1=$(rss_kib "$load_pid")
kill -0 "$load_pid" || am_fail "the publisher finished before the last flap; raise the count"

am_wait load 120 || am_fail "publisher reported drops: $(cat "$(am_log_of load)")"
sent=$(chaos_field "$(am_log_of load)" sent)
am_assert_eq "publisher sent" "$count" "$sent"
am_assert_eq "publisher dropped" 0 "$(chaos_field "$(am_log_of load)" dropped)"

# Every frame that reached the collector is stored; then the table and the gaps must add up.
am_wait_for "collector idle" 60 collector_metric_is athena_collector_queue_rows "" 0
am_wait_for "no gap still asked for" 90 collector_metric_is athena_collector_metrics_gap_pending "" 0
gaps=$(collector_metric athena_collector_metrics_gap_total)
filled=$(collector_metric athena_collector_metrics_gap_filled_total)
recovered=$(collector_metric athena_collector_metrics_recovered_total)
gone=$(collector_metric athena_collector_metrics_gone_total)
given_up=$(collector_metric athena_collector_metrics_given_up_total)
stored=$(am_psql 'SELECT count(*) FROM llm_performance_metric')
collector_assert_nothing_dropped
am_assert_eq "duplicated rows in the table" 0 "$(chaos_table_duplicates)"
# The rest of a dropped connection can arrive after the new one started: a gap
# counted first and filled later (gap_filled) is not missing.
am_assert_eq "sent = stored + reported missing (gaps - filled)" "$sent" $((stored + gaps - filled))
am_assert_eq "reported missing = lost for good (gone + given up)" $((gaps - filled)) $((gone + given_up))

# Every metric missing from the table lies in a gap the collector logged.
ranges=$(sed -n 's/.*gap in chaos-flap epoch [0-9]*: \([0-9]*\) metrics missing from seq \([0-9]*\).*/(\2,\1)/p' \
	"$(am_log_of collector)" | paste -sd, -)
gap_lines=$(grep -c "gap in chaos-flap" "$(am_log_of collector)" || true)
uncovered=$(am_psql "SELECT count(*) FROM generate_series(0, $count - 1) s
  WHERE NOT EXISTS (SELECT 1 FROM llm_performance_metric WHERE source_id = 'chaos-flap' AND seq = s)
    AND NOT EXISTS (SELECT 1 FROM (VALUES ${ranges:-(0,0)}) g(f, n) WHERE s >= g.f AND s < g.f + g.n)")
am_assert_eq "missing metrics outside every logged gap" 0 "$uncovered"

# No descriptor or memory that grows with the flaps: one descriptor leaked
# per flap would be 50 more (500 in the soak). The slack covers a connection of the moment (an HTTP scrape, a
# pipe being set up).
((fds_c1 <= fds_c0 + 2)) || am_fail "collector fds grew from $fds_c0 to $fds_c1"
((fds_p1 <= fds_p0 + 2)) || am_fail "publisher fds grew from $fds_p0 to $fds_p1"
chaos_assert_rss_within "collector RSS after the flaps (from $rss_c0)" "$rss_c1" $((rss_c0 + 4096))
chaos_assert_rss_within "publisher RSS after the flaps (from $rss_p0)" "$rss_p1" $((rss_p0 + 4096))
am_stop collector 30 || am_fail "collector did not exit 0"

chaos_report "flaps=$flaps sent=$sent publisher_dropped=0 stored=$stored gaps=$gaps" \
	"gaps_filled=$filled recovered=$recovered gone=$gone given_up=$given_up gap_lines=$gap_lines" \
	"duplicated_rows=0 collector_dropped=0" \
	"fds_collector=$fds_c0/$fds_c1 fds_publisher=$fds_p0/$fds_p1" \
	"rss_kib_collector=$rss_c0/$rss_c1 rss_kib_publisher=$rss_p0/$rss_p1"
