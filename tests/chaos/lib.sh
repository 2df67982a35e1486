# shellcheck shell=bash
# Helpers of the chaos tests: source after tests/lib.sh and
# tests/integration/collector.sh.
#
# A chaos collector keeps its ports and spool across restarts, so that it can
# be killed and started again where the publishers dial it:
#
#   chaos_collector_start a             # first start: picks ports, spool under AM_TEST_TMP
#   kill -KILL "$(am_pid a)"; chaos_collector_start a   # the same ports and spool again
#   chaos_metric a athena_collector_metrics_gap_total

# AM_CHAOS_SOAK=1 selects the long versions of the scenarios.
CHAOS_SOAK=${AM_CHAOS_SOAK:-0}
[[ $CHAOS_SOAK == 0 || $CHAOS_SOAK == 1 ]] || am_fail "AM_CHAOS_SOAK must be 0 or 1"

# Under AddressSanitizer the process's memory is mostly the sanitizer's:
# memory bounds are then recorded but not asserted (LeakSanitizer checks
# leaks at exit instead, and a collector or publisher that leaks exits non-zero).
CHAOS_SANITIZED=0
[[ -n ${AM_SANITIZE:-} ]] && CHAOS_SANITIZED=1

# chaos_assert_rss_within DESC KIB BOUND_KIB: fail when KIB passes BOUND_KIB
# (not under sanitizers).
chaos_assert_rss_within() {
	((CHAOS_SANITIZED)) && return 0
	(($2 <= $3)) || am_fail "$1: ${2} KiB above ${3} KiB"
}

declare -A _chaos_bus=() _chaos_replay=() _chaos_http=() _chaos_env=()

# chaos_collector_define NAME [ENV=VALUE...]: pick collector NAME's ports
# (and its environment) without starting it, so that publishers can be
# given its address first.
chaos_collector_define() {
	local name=$1
	shift
	_chaos_bus[$name]=tcp://127.0.0.1:$(am_free_port)
	_chaos_replay[$name]=tcp://127.0.0.1:$(am_free_port)
	_chaos_http[$name]=127.0.0.1:$(am_free_port)
	_chaos_env[$name]="$*"
}

# chaos_collector_start NAME [ENV=VALUE...]: start (or restart) collector NAME
# against DATABASE_URL and wait for its /health (not /ready: the database
# may be away). ENV given at the first start (or definition) is kept for
# restarts.
chaos_collector_start() {
	local name=$1
	shift
	[[ -n ${_chaos_bus[$name]:-} ]] || chaos_collector_define "$name" "$@"
	local -a env
	read -r -a env <<<"${_chaos_env[$name]}"
	am_bg "$name" env METRICS_BUS_LISTEN="${_chaos_bus[$name]}" \
		METRICS_REPLAY_LISTEN="${_chaos_replay[$name]}" LISTEN_ADDR="${_chaos_http[$name]}" \
		COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/spool-$name" "${env[@]}" "$AM_BIN_DIR/athena-collector"
	am_wait_for "$name up" 30 curl -fs "http://${_chaos_http[$name]}/health"
}

# chaos_bus NAME / chaos_replay NAME / chaos_http NAME: the collector's bus
# URL, replay request URL (for METRICS_REPLAY_URLS) and HTTP base URL.
chaos_bus() { printf '%s\n' "${_chaos_bus[$1]}"; }
chaos_replay() { printf '%s\n' "${_chaos_replay[$1]}"; }
chaos_http() { printf 'http://%s\n' "${_chaos_http[$1]}"; }

# chaos_metric NAME SERIES [LABELS]: one sample of collector NAME's /metrics.
chaos_metric() {
	local COLLECTOR_HTTP
	COLLECTOR_HTTP=$(chaos_http "$1")
	collector_metric "$2" "${3:-}"
}

# chaos_metric_ge NAME SERIES LABELS MIN: true when the sample is at least MIN.
chaos_metric_ge() {
	local v
	v=$(chaos_metric "$1" "$2" "$3") || return 1
	((${v%.*} >= $4))
}

# chaos_drops NAME: the sum of collector NAME's metrics_dropped_total samples.
chaos_drops() {
	curl -fs "$(chaos_http "$1")/metrics" |
		awk '$1 ~ /^athena_collector_metrics_dropped_total\{/ { s += $2 } END { printf "%d\n", s }'
}

# chaos_peak_rss_kib PID: the process's peak resident memory (VmHWM) in KiB.
chaos_peak_rss_kib() {
	awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"
}

# chaos_field LOG KEY: the value of KEY=VALUE in the last line of LOG that has it.
chaos_field() {
	grep -o "\b$2=[^ ]*" "$1" | tail -n 1 | cut -d= -f2
}

# chaos_rows: rows in the metric table.
chaos_rows() { am_psql 'SELECT count(*) FROM llm_performance_metric'; }

# chaos_rows_at_least N: true when the table holds at least N rows.
chaos_rows_at_least() { (($(chaos_rows) >= $1)); }

# chaos_table_duplicates: rows whose idempotency key another row has too.
chaos_table_duplicates() {
	am_psql 'SELECT count(*) - count(DISTINCT (source_id, epoch, seq)) FROM llm_performance_metric'
}

# chaos_report KEY=VALUE...: the figures of a run, one line, for docs/RELIABILITY.md.
chaos_report() { printf 'chaos %s: %s\n' "$AM_TEST_NAME" "$*"; }

# chaos_metric_is NAME SERIES LABELS VALUE: true when the sample equals VALUE.
chaos_metric_is() {
	local v
	v=$(chaos_metric "$1" "$2" "$3") || return 1
	[[ $v == "$4" ]]
}

# chaos_lock_table NAME: start a session (am_bg NAME) that holds the metric
# table in ACCESS EXCLUSIVE mode, so that the database takes no row, and wait
# until it has the lock. chaos_unlock_table ends it. Both look only at this
# test's database: other tests share the server.
chaos_lock_table() {
	am_bg "$1" env PGAPPNAME=chaos-locker psql -X -q "$DATABASE_URL" -c \
		"BEGIN; LOCK TABLE llm_performance_metric IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3600); COMMIT;"
	am_wait_for "the table locked" 30 _chaos_table_locked
}
_chaos_table_locked() {
	[[ $(am_psql "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	  WHERE a.application_name = 'chaos-locker' AND a.datname = current_database()
	    AND l.mode = 'AccessExclusiveLock' AND l.granted") -ge 1 ]]
}
chaos_unlock_table() {
	am_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	  WHERE application_name = 'chaos-locker' AND datname = current_database()" >/dev/null
}
