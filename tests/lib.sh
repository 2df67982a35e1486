# shellcheck shell=bash
# tests/lib.sh: helpers for the bash integration tests that ctest runs.
#
# Source it first thing; it sets -euo pipefail, creates AM_TEST_TMP and
# installs am_cleanup as the EXIT trap (do not replace that trap). scripts/test
# exports AM_TEST_DATABASE_URL, AM_PG_DIR, AM_PG_SCRIPT, AM_BIN_DIR and
# AM_SOURCE_DIR; the last three have defaults for running a test by hand.
#
#   am_fresh_db                          # own database; exports DATABASE_URL
#   am_bg collector "$AM_BIN_DIR/athena-collector"
#   am_wait_for "collector ready" 10 curl -fs "http://127.0.0.1:$port/ready"
#   am_assert_eq "rows stored" 100 "$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
set -euo pipefail

AM_SOURCE_DIR=${AM_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
AM_BIN_DIR=${AM_BIN_DIR:-$AM_SOURCE_DIR/build/bin}
AM_PG_SCRIPT=${AM_PG_SCRIPT:-$AM_SOURCE_DIR/scripts/pg}
export AM_SOURCE_DIR AM_BIN_DIR AM_PG_SCRIPT

# shellcheck source=scripts/lib/common.sh
source "$AM_SOURCE_DIR/scripts/lib/common.sh"

AM_PSQL=psql
[[ -x /usr/lib/postgresql/15/bin/psql ]] && AM_PSQL=/usr/lib/postgresql/15/bin/psql

# A child forked by am_bg inherits the traps until it execs; am_cleanup
# must only ever run in the test's own shell.
_am_test_pid=$BASHPID
AM_TEST_NAME=$(basename "$0" .sh)
AM_TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/am-$AM_TEST_NAME.XXXXXX")
export AM_TEST_NAME AM_TEST_TMP

AM_TEST_DB=""     # database made by am_fresh_db, dropped at cleanup
AM_TEST_DB_URL="" # its URL
_am_bg_names=()   # every process am_bg started, in order
_am_bg_pids=()
declare -A _am_bg_pid_of=() # NAME -> pid of the latest process of that name

# am_fail MSG: fail the test.
am_fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

# am_skip MSG: end the test as skipped (exit 77; register the test with
# SKIP_RETURN_CODE 77).
am_skip() {
	printf 'SKIP: %s\n' "$*" >&2
	exit 77
}

# am_assert_eq DESC EXPECTED ACTUAL
am_assert_eq() {
	if [[ $2 != "$3" ]]; then
		am_fail "$1: expected '$2', got '$3'"
	fi
}

# am_wait_for DESC TIMEOUT_S CMD...: run CMD every 0.1 s until it succeeds;
# fail the test with DESC when TIMEOUT_S (may be fractional) passes first.
# CMD's output is kept out of the way and shown on timeout. CMD runs as an
# if-condition, so a shell function given as CMD must return its status
# explicitly (set -e does not apply inside it).
am_wait_for() {
	local desc=$1 timeout=$2
	shift 2
	local out=$AM_TEST_TMP/.wait_for.out now deadline
	deadline=$(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000000 }')
	now=${EPOCHREALTIME//[!0-9]/}
	deadline=$((now + deadline))
	while true; do
		if "$@" >"$out" 2>&1; then
			return 0
		fi
		now=${EPOCHREALTIME//[!0-9]/}
		if ((now >= deadline)); then
			printf 'last output of: %s\n' "$*" >&2
			tail -n 20 "$out" >&2
			am_fail "timed out after ${timeout}s waiting for $desc"
		fi
		sleep 0.1
	done
}

_am_require_db() {
	[[ -n ${AM_TEST_DATABASE_URL:-} ]] ||
		am_fail "AM_TEST_DATABASE_URL is not set; run the tests through scripts/test"
}

# _am_psql_server SQL: run SQL on the test server's own database.
_am_psql_server() {
	"$AM_PSQL" -X -q -At -v ON_ERROR_STOP=1 "$AM_TEST_DATABASE_URL" -c "$1"
}

# am_psql SQL [PSQL_ARGS...]: run SQL and print the rows unaligned, fields
# separated by |. Runs in this test's database after am_fresh_db, else in
# AM_TEST_DATABASE_URL.
am_psql() {
	_am_require_db
	local sql=$1
	shift
	"$AM_PSQL" -X -q -At -v ON_ERROR_STOP=1 "${AM_TEST_DB_URL:-$AM_TEST_DATABASE_URL}" "$@" -c "$sql"
}

# am_fresh_db: create an empty database for this test alone (tests run in
# parallel), export DATABASE_URL pointing at it; it is dropped at cleanup.
am_fresh_db() {
	_am_require_db
	local name
	name=${AM_TEST_NAME,,}
	name=${name//[!a-z0-9]/_}
	name="t_${name:0:40}_$$_$RANDOM"
	_am_psql_server "CREATE DATABASE \"$name\""
	AM_TEST_DB=$name

	# Replace the database name in the URL, keeping any ?parameters.
	local base=${AM_TEST_DATABASE_URL%%\?*}
	local params=${AM_TEST_DATABASE_URL#"$base"}
	AM_TEST_DB_URL=${base%/*}/$name$params
	DATABASE_URL=$AM_TEST_DB_URL
	export AM_TEST_DB AM_TEST_DB_URL DATABASE_URL
}

# am_bg NAME CMD...: start CMD in the background, output appended to
# $AM_TEST_TMP/NAME.log; its pid is in AM_BG_PID and `am_pid NAME`.
# am_cleanup stops it if it still runs.
am_bg() {
	local name=$1 log=$AM_TEST_TMP/$1.log
	shift
	# Create the log here, not in the child, so it exists even if the test
	# fails before the child runs.
	: >>"$log"
	"$@" >>"$log" 2>&1 </dev/null &
	AM_BG_PID=$!
	_am_bg_names+=("$name")
	_am_bg_pids+=("$AM_BG_PID")
	_am_bg_pid_of[$name]=$AM_BG_PID
}

# am_pid NAME: print the pid of the latest process started as NAME.
am_pid() {
	[[ -n ${_am_bg_pid_of[$1]:-} ]] || am_fail "no background process named $1"
	printf '%s\n' "${_am_bg_pid_of[$1]}"
}

# am_log_of NAME: print the path of NAME's log.
am_log_of() { printf '%s\n' "$AM_TEST_TMP/$1.log"; }

# am_stop NAME [TIMEOUT_S]: SIGTERM the latest process started as NAME,
# wait for it (SIGKILL after TIMEOUT_S, default 10) and return its exit
# status, e.g. `am_stop collector || status=$?`.
# am_wait NAME [TIMEOUT_S]: wait for the latest process started as NAME to
# exit by itself (default 120 s, then the test fails) and return its status.
am_wait() {
	local pid status=0 deadline=$((SECONDS + ${2:-120}))
	pid=$(am_pid "$1")
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || am_fail "$1 did not exit within ${2:-120}s"
		sleep 0.1
	done
	wait "$pid" || status=$?
	return "$status"
}

# am_on_cleanup CMD...: run CMD at cleanup, before the processes are stopped
# (for example to restart a database the test stopped).
_am_cleanup_cmds=()
am_on_cleanup() { _am_cleanup_cmds+=("$*"); }

am_stop() {
	local pid status=0
	pid=$(am_pid "$1")
	kill -TERM "$pid" 2>/dev/null || true
	_am_wait_gone "${2:-10}" "$pid"
	wait "$pid" || status=$?
	return "$status"
}

# _am_wait_gone TIMEOUT_S PID...: wait until the PIDs have exited, SIGKILL
# what remains after TIMEOUT_S.
_am_wait_gone() {
	local deadline=$((SECONDS + $1)) pid alive
	shift
	while true; do
		alive=()
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive+=("$pid")
		done
		((${#alive[@]} > 0)) || return 0
		if ((SECONDS >= deadline)); then
			printf 'killing pids that ignored SIGTERM: %s\n' "${alive[*]}" >&2
			kill -KILL "${alive[@]}" 2>/dev/null || true
			return 0
		fi
		sleep 0.1
	done
}

# am_cleanup: the EXIT trap. Stops every am_bg process (SIGTERM, SIGKILL
# after 5 s), prints the tail of each log when the test failed, drops the
# test database and removes AM_TEST_TMP (kept when AM_KEEP_TMP=1).
am_cleanup() {
	local rc=$? name pid
	((BASHPID == _am_test_pid)) || exit "$rc"
	set +e
	trap - EXIT
	trap '' INT TERM

	local cmd
	for cmd in "${_am_cleanup_cmds[@]}"; do
		eval "$cmd"
	done

	local pids=()
	for pid in "${_am_bg_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && pids+=("$pid")
	done
	if ((${#pids[@]} > 0)); then
		kill -TERM "${pids[@]}" 2>/dev/null
		_am_wait_gone 5 "${pids[@]}"
		for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
	fi

	if ((rc != 0 && rc != 77)); then
		local -A shown=()
		for name in "${_am_bg_names[@]}"; do
			[[ -z ${shown[$name]:-} ]] || continue
			shown[$name]=1
			printf '\n---- last lines of %s.log ----\n' "$name" >&2
			tail -n 40 "$AM_TEST_TMP/$name.log" >&2
		done
	fi

	if [[ -n $AM_TEST_DB ]]; then
		_am_psql_server "DROP DATABASE IF EXISTS \"$AM_TEST_DB\" WITH (FORCE)" ||
			printf 'warning: could not drop database %s\n' "$AM_TEST_DB" >&2
	fi

	if [[ ${AM_KEEP_TMP:-0} == 1 ]]; then
		printf 'kept %s\n' "$AM_TEST_TMP" >&2
	else
		rm -rf "$AM_TEST_TMP"
	fi
	exit "$rc"
}

trap am_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
