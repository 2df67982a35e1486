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
# The first run applies every migration of the binary and says which; the second applies none.
first=$("$bin" --migrate 2>&1)
second=$("$bin" --migrate 2>&1)
latest=$(sed -n 's/.*schema at version \([0-9]*\).*/\1/p' <<<"$first")
[[ -n $latest ]] || am_fail "--migrate did not say the schema version: $first"
am_assert_eq "each migration recorded once" "$(grep -c 'applied migration' <<<"$first")" \
	"$(am_psql 'SELECT count(*) FROM schema_migrations')"
am_assert_eq "every migration applied" "$latest" "$(am_psql 'SELECT max(version) FROM schema_migrations')"
am_assert_eq "nothing applied twice" 0 "$(grep -c 'applied migration' <<<"$second" || true)"
am_assert_eq "idempotency key is unique" 1 "$(am_psql "SELECT count(*) FROM pg_indexes
  WHERE tablename = 'llm_performance_metric' AND indexdef LIKE 'CREATE UNIQUE INDEX%(source_id, epoch, seq)'")"

# --migrate with COLLECTOR_MIGRATE_WAIT_S: nothing answers, so it gives up after the wait, exit 1;
# a server that comes up during the wait is migrated.
port=$(am_free_port)
url="postgresql://postgres@127.0.0.1:$port/postgres"
rc=0
out=$(DATABASE_URL=$url COLLECTOR_MIGRATE_WAIT_S=1 "$bin" --migrate 2>&1) || rc=$?
am_assert_eq "--migrate, no server within the wait: exit" 1 "$rc"
grep -q "did not accept connections within 1 s" <<<"$out" || am_fail "--migrate gave up without saying why: $out"
am_bg late_migrate env DATABASE_URL="$url" COLLECTOR_MIGRATE_WAIT_S=120 "$bin" --migrate
am_wait_for "--migrate waiting for the database" 30 grep -q "waiting up to 120 s" "$(am_log_of late_migrate)"
# The server runs as postgres, which cannot enter the test's own private directory.
late_pg=$(mktemp -d "${TMPDIR:-/tmp}/am-late-pg.XXXXXX")
chmod 755 "$late_pg"
am_on_cleanup "\"$AM_PG_SCRIPT\" stop \"$late_pg\" immediate >/dev/null 2>&1; rm -rf \"$late_pg\""
"$AM_PG_SCRIPT" start "$late_pg" "$port" >/dev/null
am_wait "late_migrate" 120 || am_fail "--migrate did not succeed once the database came up"
am_assert_eq "migrated once the database was up" "$latest" \
	"$("$AM_PSQL" -X -At "$url" -c 'SELECT max(version) FROM schema_migrations')"

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
