#!/usr/bin/env bash
# The collector's command line: help, version, bad settings, idempotent
# migrations, and a SIGTERM that flushes before exiting 0.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

bin=$AM_BIN_DIR/athena-collector
"$bin" --help | grep -q -- "--database-url" || am_fail "--help does not list --database-url"
"$bin" --help | grep -q "METRICS_BUS_LISTEN" || am_fail "--help does not name METRICS_BUS_LISTEN"
"$bin" --version | grep -Eq '^athena-collector [0-9]+\.[0-9]+\.[0-9]+$' || am_fail "--version"

expect_exit2() {
	local desc=$1
	shift
	local out rc=0
	out=$("$@" 2>&1 >/dev/null) || rc=$?
	am_assert_eq "$desc: exit code" 2 "$rc"
	am_assert_eq "$desc: one line" 1 "$(printf '%s\n' "$out" | wc -l)"
	printf '%s\n' "$out" | grep -q -- "$EXPECT" || am_fail "$desc: '$out' does not mention $EXPECT"
}
EXPECT=--bogus expect_exit2 "unknown flag" "$bin" --bogus
EXPECT=COLLECTOR_BATCH_ROWS expect_exit2 "bad variable" env COLLECTOR_BATCH_ROWS=many "$bin"
EXPECT=--queue-max-mib expect_exit2 "out of range" "$bin" --queue-max-mib 0
EXPECT=LOG_LEVEL expect_exit2 "bad log level" env LOG_LEVEL=loud "$bin"
EXPECT=COLLECTOR_SPOOL_MAX_MIB expect_exit2 "bad spool bound" env COLLECTOR_SPOOL_MAX_MIB=-1 "$bin"
: >"$AM_TEST_TMP/not-a-dir"
EXPECT=COLLECTOR_SPOOL_DIR expect_exit2 "spool directory not a directory" \
	env COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/not-a-dir/spool" "$bin"

am_fresh_db
"$bin" --migrate
"$bin" --migrate
am_assert_eq "each migration recorded once" "$(am_psql 'SELECT max(version) FROM schema_migrations')" \
	"$(am_psql 'SELECT count(*) FROM schema_migrations')"
am_assert_eq "every migration applied" 4 "$(am_psql 'SELECT max(version) FROM schema_migrations')"
am_assert_eq "idempotency key is unique" 1 "$(am_psql "SELECT count(*) FROM pg_indexes
  WHERE tablename = 'llm_performance_metric' AND indexdef LIKE 'CREATE UNIQUE INDEX%(source_id, epoch, seq)'")"

collector_start collector LOG_FORMAT=json
am_bg inject "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --batches 40 --batch-size 250 --hold
am_wait_for "40 frames received" 60 collector_metric_is athena_collector_frames_received_total "" 40
# One spool, one collector: a second one on the same directory says so and exits 2.
EXPECT="in use by another collector" expect_exit2 "spool in use" \
	env COLLECTOR_SPOOL_DIR="$AM_TEST_TMP/spool-collector" METRICS_BUS_LISTEN="tcp://127.0.0.1:$(am_free_port)" \
	LISTEN_ADDR="127.0.0.1:$(am_free_port)" "$bin"
am_stop collector 60 || am_fail "collector did not exit 0 on SIGTERM"
am_assert_eq "rows after SIGTERM" 10000 "$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
grep -q '"level":"info","program":"athena-collector"' "$(am_log_of collector)" ||
	am_fail "LOG_FORMAT=json did not produce JSON lines"
echo "ok: command line and shutdown"
