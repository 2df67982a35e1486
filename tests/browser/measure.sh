#!/usr/bin/env bash
# tests/browser/measure.sh: the performance page with a large table, for docs/BENCHMARKS.md (not
# part of ctest: filling the table takes about a minute). It fills a throwaway PostgreSQL with the
# rows bench/admin makes (its fill SQL, taken from the script: 5 models on 2 backends, gateway
# and orchestrator, intents and stages, 2 % errors, spread over the last 7 days), VACUUM ANALYZE,
# starts an admin-api, waits until every finished hour is rolled up, and runs measure.js.
#
#   tests/browser/measure.sh [--rows N]
#
#   --rows N        metrics in the table (default 1000000)
#   RUNS, RANGES, LIVE_SECONDS, LIVE_RATE   passed to measure.js (see there)
#   AM_BUILD_DIR    build directory (default: build)
#   DATABASE_URL    use this database instead of a throwaway cluster (as bench/admin: its
#                   llm_performance_metric is refilled)
#
# Exits as measure.js does: 1 when a target is missed.
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"

rows=1000000
while (($# > 0)); do
	case $1 in
	--rows) rows=${2:?--rows needs a value}; shift ;;
	-h | --help)
		bench_usage
		exit 0
		;;
	*)
		printf 'measure.sh: unknown argument %s (see --help)\n' "$1" >&2
		exit 2
		;;
	esac
	shift
done
[[ $rows =~ ^[1-9][0-9]*$ ]] || am_die "bad --rows '$rows'"
am_have node || am_die "node not found: apt-get install nodejs npm (scripts/lib/deps.sh)"

browser_dir=$BENCH_ROOT/tests/browser
if [[ ! -f $browser_dir/node_modules/playwright-core/package.json ]]; then
	(cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error) || am_die "npm ci in tests/browser failed"
fi
bench_build athena-admin-api
bench_pg_start
bench_migrate

# bench/admin's table, from its own fill SQL (a heredoc), so that both measure the same data.
fill_sql=$BENCH_TMP/fill.sql
awk '/^cat >"\$fill_sql" <<.EOF.$/ { on = 1; next } /^EOF$/ { on = 0 } on' "$BENCH_ROOT/bench/admin" >"$fill_sql"
grep -q 'INSERT INTO llm_performance_metric' "$fill_sql" || am_die "no fill SQL found in bench/admin"
bench_log "filling llm_performance_metric with $rows rows, then VACUUM ANALYZE"
bench_psql "TRUNCATE llm_performance_metric"
"$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -v rows="$rows" "$BENCH_DB_URL" -f "$fill_sql"
bench_psql "VACUUM ANALYZE llm_performance_metric"

port=$(am_free_port)
admin=http://127.0.0.1:$port
bench_bg "$BENCH_TMP/admin-api.log" env DATABASE_URL="$BENCH_DB_URL" LISTEN_ADDR="127.0.0.1:$port" \
	ADMIN_ROLLUP_INTERVAL_S=1 LOG_LEVEL=warn "$BENCH_BIN/athena-admin-api"
deadline=$((SECONDS + 300))
backlog() { curl -fs "$admin/metrics" | awk '$1 == "athena_admin_rollup_backlog" { print $2 }'; }
until [[ $(curl -fs -o /dev/null -w '%{http_code}' "$admin/ready" 2>/dev/null) == 200 && $(backlog) == 0 &&
	$(bench_psql "SELECT count(*) FROM llm_metric_rollup_dirty WHERE hour < date_trunc('hour', now(), 'UTC')") == 0 ]]; do
	((SECONDS < deadline)) || am_die "the rollups were not refreshed within 300 s"
	sleep 1
done
bench_log "$(bench_psql "SELECT count(*) FROM llm_performance_metric") rows, $(bench_psql "SELECT count(*) FROM llm_metric_rollup") rollup rows, $(bench_psql "SELECT count(*) FROM llm_metric_rollup_label") rollup rows by intent and stage"
bench_log "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); PostgreSQL $(bench_psql "SHOW server_version"); $(chromium --version 2>/dev/null || echo chromium)"
status=0
ADMIN=$admin node "$browser_dir/measure.js" || status=$?
bench_log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
