# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/ingest, bench/publish, bench/admin,
# bench/gateway and bench/run.
#
# Source it first; it sets -euo pipefail, creates BENCH_TMP and installs
# bench_cleanup as the EXIT trap (do not replace that trap; add to it with
# bench_on_cleanup). Everything a benchmark starts goes through bench_bg or
# bench_pg_start so that bench_cleanup can stop it, also on failure.
set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$BENCH_ROOT/scripts/lib/common.sh"
# shellcheck source=scripts/lib/pg.sh
source "$BENCH_ROOT/scripts/lib/pg.sh"

BENCH_NAME=$(basename "$0")
BENCH_BUILD=${AM_BUILD_DIR:-build}
case $BENCH_BUILD in
/*) ;;
*) BENCH_BUILD=$BENCH_ROOT/$BENCH_BUILD ;;
esac
BENCH_BIN=$BENCH_BUILD/bin
BENCH_PSQL=psql
[[ -x $AM_PG_BIN/psql ]] && BENCH_PSQL=$AM_PG_BIN/psql

# Only the shell that sourced this file cleans up, not children forked
# from it before they exec.
_bench_pid=$BASHPID
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/am-bench-$BENCH_NAME.XXXXXX")
BENCH_PG_DIR="" # throwaway cluster made by bench_pg_start
BENCH_DB_URL="" # the database the benchmark uses
BENCH_FAILED="" # set by bench_loud; the script exits 1 at the end
_bench_dropdb="" # a database made by bench_pg_start in AM_BENCH_CLUSTER_URL
_bench_bg_pids=()
_bench_cleanup_cmds=()

# bench_usage: print the script's header comment (its help).
bench_usage() {
	awk 'NR == 1 { next } /^# shellcheck/ || !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"
}

bench_log() { printf '[%s %ds] %s\n' "$BENCH_NAME" "$SECONDS" "$*" >&2; }

# bench_loud MSG: a problem that makes the figures suspect (drops, for
# example): printed in a banner, remembered, and the script exits 1.
bench_loud() {
	BENCH_FAILED+="$*"$'\n'
	printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
	printf '!!! [%s] %s\n' "$BENCH_NAME" "$*" >&2
	printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}

# bench_on_cleanup CMD...: run CMD (eval'd) at cleanup, before processes stop.
bench_on_cleanup() { _bench_cleanup_cmds+=("$*"); }

# bench_bg LOG CMD...: start CMD in the background, stdout and stderr to
# LOG; its pid is in BENCH_BG_PID. bench_cleanup stops it if it still runs.
bench_bg() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 </dev/null &
	BENCH_BG_PID=$!
	_bench_bg_pids+=("$BENCH_BG_PID")
}

# bench_stop PID [TIMEOUT_S]: SIGTERM PID, SIGKILL after TIMEOUT_S
# (default 10), reap it; returns its exit status.
bench_stop() {
	local pid=$1 deadline=$((SECONDS + ${2:-10})) status=0
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			bench_log "pid $pid ignored SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || status=$?
	return "$status"
}

# shellcheck disable=SC2317 # called from the EXIT trap
bench_cleanup() {
	local rc=$? pid cmd
	((BASHPID == _bench_pid)) || exit "$rc"
	set +e
	trap - EXIT
	trap '' INT TERM
	for cmd in "${_bench_cleanup_cmds[@]}"; do
		eval "$cmd"
	done
	for pid in "${_bench_bg_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && bench_stop "$pid" 5
	done
	if [[ -n $_bench_dropdb ]]; then
		"$BENCH_PSQL" -X -q "$AM_BENCH_CLUSTER_URL" -c "DROP DATABASE IF EXISTS $_bench_dropdb WITH (FORCE)" >/dev/null 2>&1
	fi
	if [[ -n $BENCH_PG_DIR ]]; then
		am_pg_stop "$BENCH_PG_DIR" immediate >/dev/null 2>&1
		rm -rf "$BENCH_PG_DIR"
	fi
	if [[ ${AM_KEEP_TMP:-0} == 1 ]]; then
		bench_log "kept $BENCH_TMP"
	else
		rm -rf "$BENCH_TMP"
	fi
	exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_build [BINARY...]: configure (RelWithDebInfo, the project default)
# when the build directory has not been configured yet, then build what is
# out of date; fail unless athena-collector, athena-metrics-load and every
# BINARY named are in BENCH_BIN afterwards.
# shellcheck disable=SC2120 # the arguments are optional
bench_build() {
	if [[ ! -f $BENCH_BUILD/CMakeCache.txt ]]; then
		bench_log "configure $BENCH_BUILD (RelWithDebInfo)"
		cmake -S "$BENCH_ROOT" -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
	fi
	local type sanitize
	type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BENCH_BUILD/CMakeCache.txt")
	sanitize=$(sed -n 's/^AM_SANITIZE:[A-Z]*=//p' "$BENCH_BUILD/CMakeCache.txt")
	case ${type:-RelWithDebInfo} in
	Release | RelWithDebInfo | MinSizeRel) ;;
	*) bench_loud "$BENCH_BUILD is a '$type' build; figures will be pessimistic (use AM_BUILD_DIR)" ;;
	esac
	[[ -z $sanitize ]] ||
		bench_loud "$BENCH_BUILD is built with sanitizers ($sanitize); figures will be pessimistic"
	# bench/run builds once for all the benchmarks.
	if [[ ${AM_BENCH_BUILT:-0} != 1 ]]; then
		bench_log "build $BENCH_BUILD"
		cmake --build "$BENCH_BUILD" -j"$(nproc)" >"$BENCH_TMP/build.log" 2>&1 || {
			tail -n 40 "$BENCH_TMP/build.log" >&2
			am_die "build failed"
		}
	fi
	local b
	for b in athena-collector athena-metrics-load "$@"; do
		[[ -x $BENCH_BIN/$b ]] || am_die "$BENCH_BIN/$b missing after the build"
	done
}

# bench_psql SQL [PSQL_ARGS...]: run SQL in the benchmark's database.
bench_psql() {
	local sql=$1
	shift
	"$BENCH_PSQL" -X -q -At -v ON_ERROR_STOP=1 "$BENCH_DB_URL" "$@" -c "$sql"
}

# bench_pg_start: use DATABASE_URL when it is set, else a throwaway database
# in AM_BENCH_CLUSTER_URL's cluster when that is set (bench/run starts one
# cluster for all the benchmarks), else start a throwaway cluster on a free
# port; sets BENCH_DB_URL. With DATABASE_URL given, the
# benchmarks add synthetic rows to llm_performance_metric and bench/ingest
# truncates it, so a table holding rows is refused unless
# AM_BENCH_TRUNCATE_OK=1.
bench_pg_start() {
	if [[ -n ${DATABASE_URL:-} ]]; then
		BENCH_DB_URL=$DATABASE_URL
		bench_log "using DATABASE_URL (not a throwaway cluster)"
		local rows=0
		if [[ $(bench_psql "SELECT to_regclass('llm_performance_metric') IS NOT NULL") == t ]]; then
			rows=$(bench_psql "SELECT count(*) FROM (SELECT 1 FROM llm_performance_metric LIMIT 1) t")
		fi
		if [[ $rows != 0 && ${AM_BENCH_TRUNCATE_OK:-0} != 1 ]]; then
			am_die "llm_performance_metric in DATABASE_URL holds rows; the benchmarks write synthetic rows there and bench/ingest truncates it; set AM_BENCH_TRUNCATE_OK=1 if that is fine"
		fi
		return 0
	fi
	if [[ -n ${AM_BENCH_CLUSTER_URL:-} ]]; then
		# bench/run's cluster: a database of our own in it, dropped at exit
		# (a plain identifier: gateway-streams becomes gateway_streams).
		local db=am_bench_${BENCH_NAME//[^a-z0-9_]/_}_$$
		"$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 "$AM_BENCH_CLUSTER_URL" -c "CREATE DATABASE $db" >&2
		_bench_dropdb=$db
		BENCH_DB_URL=${AM_BENCH_CLUSTER_URL%/*}/$db
		bench_log "throwaway database $db in bench/run's cluster"
		return 0
	fi
	# Its own directory under TMPDIR: as root, am_pg_start hands it to the
	# postgres user, which must be able to reach it.
	BENCH_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/am-bench-pg.XXXXXX")
	am_pg_start "$BENCH_PG_DIR" >/dev/null
	BENCH_DB_URL=$DATABASE_URL
	bench_log "throwaway postgres: $BENCH_DB_URL"
}

# bench_migrate: apply the schema to BENCH_DB_URL (athena-collector --migrate).
bench_migrate() {
	"$BENCH_BIN/athena-collector" --database-url "$BENCH_DB_URL" --migrate --log-level warn >&2
}

# bench_collector_start [FLAGS...]: migrate, then start a collector on free
# ports against BENCH_DB_URL and wait until it is ready. Sets COLLECTOR_PID,
# COLLECTOR_BUS (tcp URL), COLLECTOR_HTTP (base URL) and COLLECTOR_LOG.
bench_collector_start() {
	bench_migrate
	local bus_port http_port
	bus_port=$(am_free_port)
	http_port=$(am_free_port)
	while [[ $http_port == "$bus_port" ]]; do http_port=$(am_free_port); done
	COLLECTOR_BUS=tcp://127.0.0.1:$bus_port
	COLLECTOR_HTTP=http://127.0.0.1:$http_port
	COLLECTOR_LOG=$BENCH_TMP/collector.log
	mkdir -p "$BENCH_TMP/spool"
	bench_bg "$COLLECTOR_LOG" env COLLECTOR_SPOOL_DIR="$BENCH_TMP/spool" \
		"$BENCH_BIN/athena-collector" --database-url "$BENCH_DB_URL" \
		--bus-listen "$COLLECTOR_BUS" --listen "127.0.0.1:$http_port" \
		--replay-listen "tcp://127.0.0.1:$(am_free_port)" \
		--shutdown-timeout-ms 5000 "$@"
	COLLECTOR_PID=$BENCH_BG_PID
	local deadline=$((SECONDS + 30))
	until curl -fs -o /dev/null "$COLLECTOR_HTTP/ready"; do
		if ! kill -0 "$COLLECTOR_PID" 2>/dev/null || ((SECONDS >= deadline)); then
			tail -n 20 "$COLLECTOR_LOG" >&2
			am_die "collector did not become ready"
		fi
		sleep 0.1
	done
	bench_log "collector pid $COLLECTOR_PID, bus $COLLECTOR_BUS, http $COLLECTOR_HTTP"
}

# bench_need COMMAND=PACKAGE...: install (apt-get, as scripts/lib/deps.sh
# does) the Debian package of every COMMAND not found in PATH.
bench_need() {
	local pair missing=()
	for pair in "$@"; do
		am_have "${pair%%=*}" || missing+=("${pair#*=}")
	done
	((${#missing[@]} > 0)) || return 0
	bench_log "installing what the benchmark needs: ${missing[*]}"
	am_have apt-get || am_die "apt-get not found; install by hand: ${missing[*]}"
	local sudo=()
	if ((EUID != 0)); then
		am_have sudo || am_die "not root and no sudo; install by hand: ${missing[*]}"
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -q >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
	for pair in "$@"; do
		am_have "${pair%%=*}" || am_die "${pair%%=*} still missing after installing ${pair#*=}"
	done
}

# bench_wait_http URL PID LOG [TIMEOUT_S]: wait until URL answers 2xx; die
# (showing the end of LOG) if PID exits first or after TIMEOUT_S (default 30).
bench_wait_http() {
	local url=$1 pid=$2 log=$3 deadline=$((SECONDS + ${4:-30}))
	until curl -fs -o /dev/null --max-time 2 "$url"; do
		if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
			tail -n 20 "$log" >&2
			am_die "$url did not answer (pid $pid)"
		fi
		sleep 0.1
	done
}

# bench_cpu_ticks PID: user + system CPU time of process PID, all its
# threads, in clock ticks (getconf CLK_TCK a second).
bench_cpu_ticks() {
	# The command name, in parentheses, may hold spaces: count from after it.
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# bench_hwm_kb PID: peak resident set size (VmHWM) of PID in kB.
bench_hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# bench_collector_metrics: print the collector's /metrics text.
bench_collector_metrics() { curl -fsS --max-time 5 "$COLLECTOR_HTTP/metrics"; }

# bench_collector_dropped [LABEL]: bench_loud for every metric the collector
# dropped (each reason) or counted missing (gaps); sets BENCH_DROPPED (the
# drops, all reasons) and BENCH_GAPS.
# shellcheck disable=SC2120 # the argument is optional
bench_collector_dropped() {
	local m reason d
	m=$(bench_collector_metrics)
	BENCH_DROPPED=0
	for reason in invalid queue_full rejected shutdown; do
		d=$(bench_fmt '%.0f' "$(bench_metric "athena_collector_metrics_dropped_total{reason=\"$reason\"}" <<<"$m")")
		BENCH_DROPPED=$((BENCH_DROPPED + d))
		((d == 0)) || bench_loud "${1:+$1: }the collector dropped $d metrics (reason=$reason)"
	done
	BENCH_GAPS=$(bench_fmt '%.0f' "$(bench_metric athena_collector_metrics_gap_total <<<"$m")")
	((BENCH_GAPS == 0)) || bench_loud "${1:+$1: }the collector counted $BENCH_GAPS metrics missing (gaps in sequence)"
}

# bench_metric SERIES < METRICS_TEXT: print the value of one sample, e.g.
# 'athena_collector_metrics_dropped_total{reason="invalid"}'; 0 if absent.
bench_metric() {
	awk -v s="$1" '$1 == s && !found { print $2; found = 1 } END { if (!found) print 0 }'
}

# bench_now_us: wall clock in microseconds.
bench_now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; }

# bench_median N...: the median (mean of the middle two for an even count).
bench_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_min N... / bench_max N...
bench_min() { printf '%s\n' "$@" | sort -g | head -n 1; }
bench_max() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# bench_fmt FORMAT NUMBER: printf through awk (floats, whatever the locale).
bench_fmt() { awk -v f="$1" -v n="$2" 'BEGIN { printf f, n }'; }

# bench_us_to_ms US: microseconds as milliseconds, 2 decimals.
bench_us_to_ms() { bench_fmt '%.2f' "$(awk -v u="$1" 'BEGIN { print u / 1000 }')"; }

# bench_spread N... / bench_spread_ms US...: "min..max" (in ms for the second).
bench_spread() { printf '%s..%s' "$(bench_min "$@")" "$(bench_max "$@")"; }
bench_spread_ms() { printf '%s..%s' "$(bench_us_to_ms "$(bench_min "$@")")" "$(bench_us_to_ms "$(bench_max "$@")")"; }

# bench_ratio A B: A / B, 2 decimals (0 when B is 0).
bench_ratio() { bench_fmt '%.2f' "$(awk -v a="$1" -v b="$2" 'BEGIN { print b ? a / b : 0 }')"; }

# bench_cmp A OP B: succeed when the numeric comparison holds (floats).
bench_cmp() {
	awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
		if (op == "<") r = a < b; else if (op == "<=") r = a <= b
		else if (op == ">") r = a > b; else if (op == ">=") r = a >= b
		else r = a == b
		exit !r }'
}

# bench_yesno A OP B: print yes when the comparison holds, else no.
bench_yesno() { if bench_cmp "$@"; then echo yes; else echo no; fi; }

# bench_port: set BENCH_PORT to a TCP port free on 127.0.0.1 now and not
# handed out by bench_port before (a port handed out is not bound until its
# server starts, so am_free_port alone may give the same one twice).
_bench_ports=" "
# shellcheck disable=SC2034 # BENCH_PORT is for the caller
bench_port() {
	local p tries=0
	while true; do
		p=$(am_free_port) || am_die "no free TCP port on 127.0.0.1"
		[[ $_bench_ports == *" $p "* ]] || break
		((++tries < 100)) || am_die "no new free TCP port on 127.0.0.1"
	done
	_bench_ports+="$p "
	BENCH_PORT=$p
}

# bench_ticks_sum PID...: bench_cpu_ticks of every PID still running, summed
# (an nginx master and its workers, for example).
bench_ticks_sum() {
	local pid sum=0 t
	for pid in "$@"; do
		t=$(bench_cpu_ticks "$pid" 2>/dev/null) || continue
		sum=$((sum + t))
	done
	printf '%s\n' "$sum"
}

# bench_ctx_switches PID...: voluntary + involuntary context switches of
# every thread of every PID still running, summed.
bench_ctx_switches() {
	local pid
	for pid in "$@"; do
		cat "/proc/$pid/task/"*/status 2>/dev/null || true
	done | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { printf "%.0f\n", n }'
}

# bench_kv KEY LINE: the value of KEY=value in LINE (space-separated pairs).
bench_kv() { awk -v k="$1" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2) }' <<<"$2"; }

# bench_wrk_us TIME: a time as wrk prints it (232.00us, 1.02ms, 1.20s,
# 2.00m, 1.00h) in microseconds.
bench_wrk_us() {
	awk -v t="$1" 'BEGIN {
		if (match(t, /^[0-9.]+/) == 0) { print "nan"; exit 1 }
		v = substr(t, 1, RLENGTH); u = substr(t, RLENGTH + 1)
		if (u == "us") m = 1; else if (u == "ms") m = 1e3; else if (u == "s") m = 1e6
		else if (u == "m") m = 6e7; else if (u == "h") m = 3.6e9; else { print "nan"; exit 1 }
		printf "%.2f\n", v * m }'
}

# bench_wrk_lua FILE [METHOD CONTENT_TYPE BODY]: write a wrk script whose
# done() hook prints, after wrk's own report, one line of exact figures:
# "AM requests=N duration_us=N bytes=N p50_us= p90_us= p99_us= mean_us=
# socket_errors=N status_errors=N" (latencies in microseconds, from wrk's
# histogram). With METHOD, every request is METHOD with that Content-Type
# and body.
bench_wrk_lua() {
	local file=$1 method=${2:-} ctype=${3:-} body=${4:-}
	[[ $body != *']==]'* ]] || am_die "bench_wrk_lua: the body may not hold ]==]"
	{
		if [[ -n $method ]]; then
			printf 'wrk.method = "%s"\n' "$method"
			printf 'wrk.headers["Content-Type"] = "%s"\n' "$ctype"
			printf 'wrk.body = [==[%s]==]\n' "$body"
		fi
		cat <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "AM requests=%d duration_us=%d bytes=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f mean_us=%.1f socket_errors=%d status_errors=%d\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
	} >"$file"
}

# bench_wrk_lua_cycle FILE PATH BODY...: like bench_wrk_lua with POST
# (application/json), but request N carries BODY number N modulo their
# count, each connection cycling through them in turn, all to PATH.
bench_wrk_lua_cycle() {
	local file=$1 path=$2 body
	shift 2
	{
		printf 'local bodies = {}\n'
		for body in "$@"; do
			[[ $body != *']==]'* ]] || am_die "bench_wrk_lua_cycle: a body may not hold ]==]"
			printf 'bodies[#bodies + 1] = [==[%s]==]\n' "$body"
		done
		printf 'local path = [==[%s]==]\n' "$path"
		cat <<'EOF2'
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, bodies[(n - 1) % #bodies + 1])
end
EOF2
		bench_wrk_lua "$file.done"
		cat "$file.done"
		rm -f "$file.done"
	} >"$file"
}

# bench_curl_loop OUT URL REPEAT BODY_FILE...: curl's own loop: one curl
# process, one kept-alive connection, REPEAT times each BODY_FILE in turn
# POSTed (application/json) to URL with --next; OUT gets one line per
# transfer: "INDEX HTTP_CODE NUM_CONNECTS TIME_TOTAL_US" (INDEX: which body,
# from 1). Dies when curl fails.
bench_curl_loop() {
	local out=$1 url=$2 repeat=$3 cfg i j n status=0
	shift 3
	cfg=$out.curlrc
	n=$#
	: >"$cfg"
	for ((i = 0; i < repeat; i++)); do
		for ((j = 1; j <= n; j++)); do
			printf 'url = "%s"\nheader = "Content-Type: application/json"\ndata-binary = "@%s"\noutput = "/dev/null"\nsilent\nshow-error\nwrite-out = "%s %%{http_code} %%{num_connects} %%{time_total}\\n"\nnext\n' \
				"$url" "${!j}" "$j" >>"$cfg"
		done
	done
	# No "next" after the last transfer (curl would want one more URL).
	sed -i '$d' "$cfg"
	curl -K "$cfg" >"$out.raw" 2>"$out.err" || status=$?
	((status == 0)) || am_die "curl loop on $url failed (exit $status): $(head -c 300 "$out.err")"
	awk '{ printf "%s %s %s %.0f\n", $1, $2, $3, $4 * 1e6 }' "$out.raw" >"$out"
}

# bench_wrk LABEL LUA THREADS CONNS SECONDS URL: run wrk --latency with a
# script made by bench_wrk_lua, in the background (so that a signal reaches
# the EXIT trap at once), its output in $BENCH_TMP/wrk.N.LABEL.log. Sets
# W_LOG, W_REQ, W_RPS, W_P50_US, W_P90_US, W_P99_US, W_MEAN_US (the done() hook's exact
# figures). Dies when wrk fails; bench_loud on socket or HTTP errors, on no
# request completed, or when the 50% line of wrk's --latency report does not
# match the hook's figure (a parsing problem).
_bench_nwrk=0
# shellcheck disable=SC2034 # W_* are for the caller
bench_wrk() {
	local label=$1 lua=$2 threads=$3 conns=$4 secs=$5 url=$6 line status=0 text_p50
	_bench_nwrk=$((_bench_nwrk + 1))
	W_LOG=$BENCH_TMP/wrk.$_bench_nwrk.$label.log
	bench_bg "$W_LOG" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$lua" "$url"
	wait "$BENCH_BG_PID" || status=$?
	line=$(grep '^AM ' "$W_LOG" || true)
	if ((status != 0)) || [[ -z $line ]]; then
		cat "$W_LOG" >&2
		am_die "wrk failed on $url (exit $status)"
	fi
	W_REQ=$(bench_kv requests "$line")
	W_P50_US=$(bench_kv p50_us "$line")
	W_P90_US=$(bench_kv p90_us "$line")
	W_P99_US=$(bench_kv p99_us "$line")
	W_MEAN_US=$(bench_kv mean_us "$line")
	W_RPS=$(bench_fmt '%.0f' "$(awk -v n="$W_REQ" -v us="$(bench_kv duration_us "$line")" 'BEGIN { print n / (us / 1e6) }')")
	local serr herr
	serr=$(bench_kv socket_errors "$line") herr=$(bench_kv status_errors "$line")
	if ((serr != 0 || herr != 0)); then
		bench_loud "$label: wrk saw $serr socket errors and $herr HTTP errors on $url ($W_LOG)"
	fi
	((W_REQ > 0)) || bench_loud "$label: wrk completed no request on $url"
	# wrk prints 50% rounded to its unit (0.01 us, 10 us, 10 ms): within 1% + 10 us.
	text_p50=$(awk '/Latency Distribution/ { d = 1 } d && $1 == "50%" { print $2; exit }' "$W_LOG")
	text_p50=$(bench_wrk_us "${text_p50:-none}") || text_p50=nan
	if [[ $text_p50 == nan ]] ||
		! awk -v a="$text_p50" -v b="$W_P50_US" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * b + 10) }'; then
		bench_loud "$label: wrk's printed median ($text_p50 us) and its done() hook's ($W_P50_US us) disagree ($W_LOG)"
	fi
}

# bench_alive PID LOG WHAT: die, showing the end of LOG and the exit status,
# when PID has exited.
bench_alive() {
	kill -0 "$1" 2>/dev/null && return 0
	local status=0
	wait "$1" || status=$?
	tail -n 20 "$2" >&2
	((status <= 128)) || status="$status (signal $((status - 128)))"
	am_die "$3 died (exit status $status)"
}

# bench_sim_start NAME ENV...: athena-ollama-sim with ENV on a free port,
# logging to $BENCH_TMP/NAME.log, once it is ready; sets STARTED_PID,
# STARTED_URL and STARTED_PORT.
# shellcheck disable=SC2034 # STARTED_* are for the caller
bench_sim_start() {
	local name=$1 log
	shift
	bench_port
	STARTED_PORT=$BENCH_PORT
	STARTED_URL=http://127.0.0.1:$BENCH_PORT
	log=$BENCH_TMP/$name.log
	bench_bg "$log" env "$@" "$BENCH_BIN/athena-ollama-sim" --listen "127.0.0.1:$STARTED_PORT"
	STARTED_PID=$BENCH_BG_PID
	bench_wait_http "$STARTED_URL/ready" "$STARTED_PID" "$log"
	bench_log "athena-ollama-sim ($name) pid $STARTED_PID on $STARTED_URL ($*)"
}

# bench_wait_subscribed URL GAUGE PID LOG WHAT: wait (30 s at most) until the
# service at URL reports GAUGE >= 1 on its /metrics, i.e. until the
# collector has subscribed to its publisher: metrics published before that
# are dropped (no_subscriber).
bench_wait_subscribed() {
	local url=$1 gauge=$2 pid=$3 log=$4 what=$5 deadline=$((SECONDS + 30))
	until (($(bench_fmt '%.0f' "$(curl -fsS --max-time 5 "$url/metrics" | bench_metric "$gauge")") >= 1)); do
		bench_alive "$pid" "$log" "$what"
		((SECONDS < deadline)) || am_die "$what: its publisher did not connect to the collector at $COLLECTOR_BUS"
		sleep 0.1
	done
}

# bench_gateway_start OLLAMA_URL: athena-gateway with default settings on a
# free port in front of OLLAMA_URL, publishing to the collector, once it is
# ready and subscribed to; sets GW_PID, GW_URL and GW_LOG.
# shellcheck disable=SC2034 # GW_* are for the caller
bench_gateway_start() {
	bench_port
	GW_URL=http://127.0.0.1:$BENCH_PORT
	GW_LOG=$BENCH_TMP/gateway.log
	bench_bg "$GW_LOG" env LISTEN_ADDR="127.0.0.1:$BENCH_PORT" OLLAMA_URL="$1" \
		METRICS_BUS_URLS="$COLLECTOR_BUS" LOG_LEVEL=warn "$BENCH_BIN/athena-gateway"
	GW_PID=$BENCH_BG_PID
	bench_wait_http "$GW_URL/ready" "$GW_PID" "$GW_LOG"
	bench_wait_subscribed "$GW_URL" athena_gateway_bus_subscribers "$GW_PID" "$GW_LOG" "the gateway"
	bench_log "athena-gateway pid $GW_PID on $GW_URL (default settings), publishing to $COLLECTOR_BUS"
}

# bench_nginx_start DIR PORT HTTP_CONF SERVER_CONF: write DIR/nginx.conf
# (2 workers, no access log, keep-alive for as long as the client wants,
# temporary files under DIR) with HTTP_CONF inside its http {} block and one
# server {} listening on 127.0.0.1:PORT holding SERVER_CONF; start nginx on
# it (not daemonized) as a bench_bg job. Sets NGINX_PID (the master) and
# NGINX_URL; the caller waits for it (bench_wait_http). As root its workers
# run as nobody, who must reach DIR: BENCH_TMP becomes 0711, DIR readable.
# shellcheck disable=SC2034 # NGINX_* are for the caller
bench_nginx_start() {
	local dir=$1 port=$2 http_conf=$3 server_conf=$4
	mkdir -p "$dir/tmp"
	chmod 0711 "$BENCH_TMP"
	cat >"$dir/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
$http_conf
    server {
        listen 127.0.0.1:$port;
$server_conf
    }
}
EOF
	chmod -R a+rX "$dir"
	bench_bg "$dir/nginx.out" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	NGINX_PID=$BENCH_BG_PID
	NGINX_URL=http://127.0.0.1:$port
}

# Result rows: figure | value | reference | ratio | target | met, one per
# line, tab-separated, in BENCH_RESULTS (a file given by bench/run with
# --results) and always in the table the script prints at the end.
BENCH_ROWS=()
bench_row() {
	local IFS=$'\t'
	BENCH_ROWS+=("$*")
}

# bench_table [ROW...]: print rows (tab-separated) as a table whose cells are
# separated by " | ", header first; readable as is and valid Markdown.
bench_table() {
	{
		printf 'figure\tvalue\treference\tratio\ttarget\tmet\n'
		printf -- '---\t---\t---\t---\t---\t---\n'
		printf '%s\n' "$@"
	} | awk -F'\t' '
		{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
		  if (NF > nf) nf = NF }
		END {
			for (r = 1; r <= NR; r++) {
				line = ""
				for (i = 1; i <= nf; i++) {
					c = cell[r, i]
					if (r == 2) { c = ""; for (k = 0; k < w[i]; k++) c = c "-" }
					line = line (i > 1 ? " | " : "") (i < nf ? sprintf("%-" w[i] "s", c) : c)
				}
				print line
			}
		}'
}

# bench_finish: print the table, append the rows to --results, exit 1 when
# bench_loud was called.
bench_finish() {
	printf '\n'
	bench_table "${BENCH_ROWS[@]}"
	if [[ -n ${BENCH_RESULTS:-} ]]; then
		printf '%s\n' "${BENCH_ROWS[@]}" >>"$BENCH_RESULTS"
	fi
	if [[ -n $BENCH_FAILED ]]; then
		printf '\n[%s] PROBLEMS (figures suspect):\n%s' "$BENCH_NAME" "$BENCH_FAILED" >&2
		exit 1
	fi
}

# bench_plot OUT TITLE XLABEL YLABEL SCALES DATA TITLE1 [TITLE2...]: draw
# with gnuplot a chart OUT (SVG, or PNG when OUT ends in .png) of DATA, one line per series with error bars.
# DATA has one line per x: "X V1 LO1 HI1 V2 LO2 HI2 ..." (a series' median
# and its spread; "-" where a series has no figure). SCALES: "logx", "logy",
# "logxy" or "lin". The SVG holds no date, so a rerun with the same figures
# gives the same file.
bench_plot() {
	local out=$1 title=$2 xlabel=$3 ylabel=$4 scales=$5 data=$6 i=0 t plots=() gp
	shift 6
	gp=$BENCH_TMP/$(basename "$out").gp
	for t in "$@"; do
		i=$((i + 1))
		plots+=("'$data' using 1:$((3 * i - 1)):$((3 * i)):$((3 * i + 1)) with yerrorlines lw 2 pt 7 title '${t//\'/\'\'}' noenhanced")
	done
	{
		case $out in
		*.png) printf 'set terminal pngcairo size 760,460 enhanced font "sans,11" background "white"\n' ;;
		*) printf 'set terminal svg size 760,460 enhanced font "sans,12" background "white"\n' ;;
		esac
		printf "set output '%s'\n" "$out"
		# Enhanced text for the 10^k tics only: names keep their underscores.
		printf "set title '%s' noenhanced\nset xlabel '%s' noenhanced\nset ylabel '%s' noenhanced\n" \
			"${title//\'/\'\'}" "${xlabel//\'/\'\'}" "${ylabel//\'/\'\'}"
		printf 'set datafile missing "-"\nset grid\nset key outside bottom center horizontal\nset yrange [0:*]\nset offsets graph 0.05, graph 0.05, 0, 0\n'
		case $scales in
		logx | logxy) printf 'set logscale x\n' ;;
		esac
		case $scales in
		logy | logxy) printf 'set logscale y\nset yrange [*:*]\n' ;;
		esac
		printf 'set xtics ('
		# Powers of ten from 1000 up are labelled 10^k.
		awk 'NR > 1 { printf ", " }
			{ l = $1; k = log($1) / log(10); if ($1 >= 1000 && 10 ^ int(k + 0.5) == $1) l = "10^" int(k + 0.5)
			  printf "\"%s\" %s", l, $1 }' "$data"
		printf ')\n'
		local IFS=,
		printf 'plot %s\n' "${plots[*]}"
	} >"$gp"
	gnuplot "$gp" 2>"$gp.log" || {
		cat "$gp.log" >&2
		bench_loud "gnuplot could not draw $out ($gp)"
		return 0
	}
	bench_log "plot: $out"
}

# bench_fill_args FIRST LAST PREFIX: set BENCH_FILL_ARGS to the psql
# arguments that add rows FIRST..LAST made by bench/fill.sql to
# llm_performance_metric (source_id PREFIX || source), to be put in order
# among other -c/-f arguments (psql runs them in turn).
bench_fill_args() {
	BENCH_FILL_ARGS=(-c "\\set first $1" -c "\\set last $2" -c "\\set source_prefix $3"
		-f "$BENCH_ROOT/bench/fill.sql")
}

# bench_fill FIRST LAST PREFIX: add those rows (bench_fill_args).
bench_fill() {
	bench_fill_args "$@"
	"$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 "$BENCH_DB_URL" "${BENCH_FILL_ARGS[@]}" >&2
}

# pgbench's session as the admin-api's pool connections are set up (pool.c),
# so that both build the same JSON (timestamps in UTC).
BENCH_PG_OPTIONS="-c TimeZone=UTC -c statement_timeout=30000"
BENCH_PGBENCH=$AM_PG_BIN/pgbench
[[ -x $BENCH_PGBENCH ]] || BENCH_PGBENCH=pgbench
bench_need_pgbench() {
	am_have "$BENCH_PGBENCH" || am_die "pgbench not found (apt-get install postgresql-15)"
}

# bench_endpoint_sql_init: compile a small program made of the list_sql,
# FIGURES_* and summary_fmt definitions of admin-api/metrics.c that prints
# them (the summary's as summary() formats it without group_by), so that
# the references run the endpoints' own SQL. Sets BENCH_SQL_PROG.
bench_endpoint_sql_init() {
	BENCH_SQL_PROG=$BENCH_TMP/endpoint-sql
	{
		printf '#include "metrics_filter.h"\n#include <stdio.h>\n#include <string.h>\n'
		awk '/^static const char list_sql\[\] =/, /;$/' "$BENCH_ROOT/admin-api/metrics.c"
		awk '/^#define FIGURES_(SQL|JSON)/ { on = 1 } on { print } on && !/\\$/ { on = 0 }' \
			"$BENCH_ROOT/admin-api/metrics.c"
		awk '/^static const char summary_fmt\[\] =/, /;$/' "$BENCH_ROOT/admin-api/metrics.c"
		cat <<'EOF2'
int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "summary"))
        printf(summary_fmt, "NULL::text", "");
    else
        fputs(list_sql, stdout);
    putchar('\n');
    return 0;
}
EOF2
	} >"$BENCH_SQL_PROG.c"
	cc -std=c11 -I "$BENCH_ROOT/admin-api" -I "$BENCH_ROOT/common" -o "$BENCH_SQL_PROG" \
		"$BENCH_SQL_PROG.c" 2>"$BENCH_SQL_PROG.log" || {
		cat "$BENCH_SQL_PROG.log" >&2
		am_die "cannot take list_sql and summary_fmt out of admin-api/metrics.c; bench/lib.sh needs updating"
	}
}

# bench_bind_sql SQL VALUE...: SQL with $1, $2, ... replaced by the VALUEs
# (SQL literals or NULL), the highest first so that $1 does not eat $12.
bench_bind_sql() {
	local sql=$1 i
	shift
	for ((i = $#; i >= 1; i--)); do
		sql=${sql//\$$i/${!i}}
	done
	[[ $sql != *'$'[0-9]* ]] || am_die "unbound parameter left in: $sql"
	printf '%s\n' "$sql"
}

# bench_list_sql FILE LIMIT: the list as the endpoint runs it for
# ?limit=LIMIT (filters $1..$10 NULL, $11 the limit, $12 (before_id) NULL).
bench_list_sql() {
	bench_bind_sql "$("$BENCH_SQL_PROG" list)" NULL NULL NULL NULL NULL NULL NULL NULL NULL NULL "$2" NULL |
		sed 's/$/;/' >"$1"
}

# bench_summary_sql FILE: the exact-path summary (summary_fmt) as the
# endpoint runs it now without parameters: since = until - 24 h, until = now
# (as text, like the admin-api's), the other filters and group_by NULL.
bench_summary_sql() {
	local until since
	until=$(bench_psql "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	since=$(bench_psql "SELECT to_char((now() - interval '24 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	bench_bind_sql "$("$BENCH_SQL_PROG" summary)" "'$since'" "'$until'" NULL NULL NULL NULL NULL NULL NULL NULL NULL |
		sed 's/$/;/' >"$1"
}

# bench_pgbench LABEL SECONDS SQLFILE: pgbench -c1 -M extended (the protocol
# of PQexecParams) on SQLFILE for SECONDS in the admin-api's session
# settings; sets P_N and P_P50_US (the median of the per-transaction times
# of its --log). Dies when a transaction fails.
_bench_npgbench=0
# shellcheck disable=SC2034 # P_* are for the caller
bench_pgbench() {
	local label=$1 secs=$2 file=$3 prefix status=0 lat
	_bench_npgbench=$((_bench_npgbench + 1))
	prefix=$BENCH_TMP/pgbench.$_bench_npgbench.$label
	bench_bg "$prefix.out" env PGOPTIONS="$BENCH_PG_OPTIONS" "$BENCH_PGBENCH" -n -M extended -c 1 -j 1 \
		-T "$secs" -f "$file" --log --log-prefix="$prefix.log" "$BENCH_DB_URL"
	wait "$BENCH_BG_PID" || status=$?
	if ((status != 0)) || ! grep -q '^number of failed transactions: 0 ' "$prefix.out"; then
		cat "$prefix.out" >&2
		am_die "pgbench failed on $file (exit $status)"
	fi
	mapfile -t lat < <(cat "$prefix".log.* | awk '{ print $3 }')
	P_N=${#lat[@]}
	((P_N > 0)) || am_die "pgbench logged no transaction ($prefix.log.*)"
	P_P50_US=$(bench_median "${lat[@]}")
}

# bench_admin_start [ENV=VALUE...]: start the admin-api on a free port
# against BENCH_DB_URL (retention off, and the ENV given) and wait until it
# is ready. Sets ADMIN_PID, ADMIN_URL and ADMIN_LOG.
# shellcheck disable=SC2120 # the arguments are optional
bench_admin_start() {
	bench_port
	ADMIN_URL=http://127.0.0.1:$BENCH_PORT
	ADMIN_LOG=$BENCH_TMP/admin-api.log
	bench_bg "$ADMIN_LOG" env DATABASE_URL="$BENCH_DB_URL" LISTEN_ADDR="127.0.0.1:$BENCH_PORT" \
		ADMIN_RETENTION_DAYS=0 LOG_LEVEL=warn "$@" "$BENCH_BIN/athena-admin-api"
	ADMIN_PID=$BENCH_BG_PID
	bench_wait_http "$ADMIN_URL/ready" "$ADMIN_PID" "$ADMIN_LOG"
	bench_log "admin-api pid $ADMIN_PID on $ADMIN_URL"
}

# bench_admin_alive: die, with its exit status and the end of its log, when
# the admin-api is gone.
bench_admin_alive() { bench_alive "$ADMIN_PID" "$ADMIN_LOG" "the admin-api"; }

# bench_rollups_settle [TIMEOUT_S]: with a schema that has hourly rollups
# (llm_metric_rollup_dirty lists the hours to redo), wait until the
# admin-api's refresher has worked through the hours marked dirty (all but
# the current one), as it would have long before on a live system; at most
# TIMEOUT_S (default 300).
# shellcheck disable=SC2120 # the argument is optional
bench_rollups_settle() {
	[[ $(bench_psql "SELECT to_regclass('llm_metric_rollup_dirty') IS NOT NULL") == t ]] || return 0
	local t0=$SECONDS deadline=$((SECONDS + ${1:-300})) dirty
	while true; do
		dirty=$(bench_psql "SELECT count(*) FROM llm_metric_rollup_dirty")
		((dirty > 1 && SECONDS < deadline)) || break
		bench_admin_alive
		sleep 1
	done
	bench_log "hourly rollups: $dirty hour(s) still marked dirty after $((SECONDS - t0)) s"
}
