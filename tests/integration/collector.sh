# shellcheck shell=bash
# Helpers for tests that run a collector: source after tests/lib.sh.

# collector_start NAME [ENV=VALUE...]: start a collector on free ports against
# DATABASE_URL; sets COLLECTOR_BUS (tcp URL), COLLECTOR_REPLAY (its replay
# request URL, for a publisher's METRICS_REPLAY_URLS) and COLLECTOR_HTTP
# (base URL), waits until it is ready.
collector_start() {
	local name=$1
	shift
	local bus_port http_port
	bus_port=$(am_free_port)
	http_port=$(am_free_port)
	COLLECTOR_BUS=tcp://127.0.0.1:$bus_port
	COLLECTOR_REPLAY=tcp://127.0.0.1:$(am_free_port)
	COLLECTOR_HTTP=http://127.0.0.1:$http_port
	am_bg "$name" env METRICS_BUS_LISTEN="$COLLECTOR_BUS" METRICS_REPLAY_LISTEN="$COLLECTOR_REPLAY" \
		LISTEN_ADDR="127.0.0.1:$http_port" \
		COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/spool-$name" "$@" "$AM_BIN_DIR/athena-collector"
	am_wait_for "$name ready" 30 curl -fs "$COLLECTOR_HTTP/ready"
}

# collector_metric NAME [LABELS]: print one sample of the collector's /metrics
# (LABELS as written inside the braces, e.g. 'reason="queue_full"').
collector_metric() {
	local series=$1
	[[ -n ${2:-} ]] && series="$1{$2}"
	curl -fs "$COLLECTOR_HTTP/metrics" | awk -v s="$series" '$1 == s { print $2; found = 1 } END { exit !found }'
}

# collector_metric_is NAME LABELS VALUE: true when the sample equals VALUE.
collector_metric_is() {
	local v
	v=$(collector_metric "$1" "$2") || return 1
	[[ $v == "$3" ]]
}

# rows_are N: true when the metric table holds N rows.
rows_are() {
	[[ $(am_psql 'SELECT count(*) FROM llm_performance_metric') == "$1" ]]
}

# collector_assert_nothing_dropped: every drop counter of the collector is 0.
# Every reason it exposes counts, so a reason added later is covered too.
collector_assert_nothing_dropped() {
	local samples
	samples=$(curl -fs "$COLLECTOR_HTTP/metrics" | grep '^athena_collector_metrics_dropped_total{') ||
		am_fail "the collector exposes no athena_collector_metrics_dropped_total"
	am_assert_eq "collector drops, every reason" "" "$(awk '$2 != 0' <<<"$samples")"
}

# collector_malformed_total: malformed frames the collector counted, all reasons.
collector_malformed_total() {
	local reason total=0
	for reason in oversize bad_magic not_protobuf bad_header; do
		total=$((total + $(collector_metric athena_collector_frames_malformed_total "reason=\"$reason\"")))
	done
	echo "$total"
}
