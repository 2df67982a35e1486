#!/usr/bin/env bash
# Metric list filters, keyset pages, summary and timeseries against figures computed in SQL here.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/admin_metrics_lib.sh"

am_fresh_db
# Retention is off: the tests store metrics from 2024 and 2025 on purpose.
admin_start admin ADMIN_RETENTION_DAYS=0

# 4,002 rows over about 47 hours from T0, three per timestamp (so pages must
# break ties by id), with known spreads of every column.
T0="2025-01-10 00:00:00+00"
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
	tokens_per_second, prompt_tokens, ttft_seconds, status, error_type, request_id, session_id,
	intent, source, stage, source_id, epoch, seq)
	SELECT timestamptz '$T0' + (g / 3) * interval '127 seconds',
	  (ARRAY['phi3:mini', 'llama3:8b', 'qwen2:7b'])[g % 3 + 1],
	  (ARRAY['ollama', 'mlx'])[(g / 5) % 2 + 1],
	  (g % 97) / 10.0 + 0.05, g % 500, (g % 53) * 1.5,
	  CASE WHEN g % 4 <> 0 THEN g % 100 END,
	  CASE WHEN g % 5 <> 0 THEN (g % 31) / 100.0 END,
	  CASE WHEN g % 11 = 0 THEN 'error' ELSE 'ok' END,
	  CASE WHEN g % 11 = 0 THEN 'timeout' END,
	  'req-' || g, 'sess-' || g % 13,
	  (ARRAY['chat', 'code', 'search', NULL])[g % 4 + 1],
	  CASE WHEN g % 5 < 3 THEN 'gateway' ELSE 'orchestrator' END,
	  CASE WHEN g % 5 >= 3 THEN (ARRAY['classify', 'synthesize', 'validate'])[g % 7 % 3 + 1] END,
	  'gen', 1, g
	FROM generate_series(0, 4001) g"
am_psql "CREATE FUNCTION close(a float8, b float8) RETURNS boolean LANGUAGE sql IMMUTABLE
	AS 'SELECT (a IS NULL AND b IS NULL) OR abs(a - b) <= 1e-9 * greatest(1, abs(b))'"
total=$(rows)
am_assert_eq "generated rows" 4002 "$total"

# ts N: the timestamp of the Nth generated time step, as ISO 8601.
ts() { am_psql "SELECT to_char((timestamptz '$T0' + $1 * interval '127 seconds') AT TIME ZONE 'UTC',
	'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"; }

# --- filters --------------------------------------------------------------------
# check_list DESC QUERY WHERE: GET ?QUERY&limit=1000 answers the rows WHERE selects, newest first.
check_list() {
	local want got
	want=$(am_psql "SELECT coalesce(json_agg(id), '[]') FROM (SELECT id FROM llm_performance_metric
		WHERE $3 ORDER BY timestamp DESC, id DESC LIMIT 1000) t" | jq -c .)
	got=$(curl -s "$ADMIN$M?$2&limit=1000" | jq -c 'map(.id)')
	[[ $want != "[]" || $4 == empty ]] || am_fail "$1: the test's filter selects nothing"
	am_assert_eq "$1" "$want" "$got"
}
since=$(ts 100)
until=$(ts 200)
check_list "model" "model=phi3:mini" "model = 'phi3:mini'"
check_list "backend and intent" "backend=mlx&intent=code" "backend = 'mlx' AND intent = 'code'"
check_list "source and stage" "source=orchestrator&stage=validate" \
	"source = 'orchestrator' AND stage = 'validate'"
check_list "status=error" "status=error" "status = 'error'"
check_list "status=ok with a model" "status=ok&model=qwen2:7b" "status = 'ok' AND model = 'qwen2:7b'"
check_list "session_id" "session_id=sess-3" "session_id = 'sess-3'"
check_list "request_id" "request_id=req-77" "request_id = 'req-77'"
check_list "since inclusive, until exclusive" "since=$since&until=$until" \
	"timestamp >= '$since' AND timestamp < '$until'"
check_list "empty filter values are ignored" "model=&backend=&since=$since&until=$until" \
	"timestamp >= '$since' AND timestamp < '$until'"
check_list "nothing matches" "model=nope" "false" empty
list=$(curl -s "$ADMIN$M?since=$since&until=$until&limit=1000")
am_assert_eq "the rows at since are in" 3 "$(jq --arg t "${since%Z}+00:00" '[.[] | select(.timestamp == $t)] | length' <<<"$list")"
am_assert_eq "the rows at until are out" 0 "$(jq --arg t "${until%Z}+00:00" '[.[] | select(.timestamp == $t)] | length' <<<"$list")"

# The same range as Unix seconds with a fraction, and as ISO 8601 with offsets.
since_unix=$(am_psql "SELECT extract(epoch FROM timestamptz '$since') - 0.25")
until_plus2=$(am_psql "SELECT to_char(timestamptz '$until' AT TIME ZONE 'Europe/Athens',
	'YYYY-MM-DD\"T\"HH24:MI:SS')")+02:00
check_list "since in Unix seconds, until with an encoded +02:00" \
	"since=$since_unix&until=${until_plus2/+/%2B}" \
	"timestamp >= '$since'::timestamptz - interval '0.25 s' AND timestamp < '$until'"
check_list "an unencoded + (read as a space) still means an offset" \
	"since=$since_unix&until=$until_plus2" \
	"timestamp >= '$since'::timestamptz - interval '0.25 s' AND timestamp < '$until'"
check_list "everything at once" \
	"model=llama3:8b&backend=ollama&status=ok&source=gateway&since=$(ts 50)&until=$(ts 900)" \
	"model = 'llama3:8b' AND backend = 'ollama' AND status = 'ok' AND source = 'gateway'
	 AND timestamp >= '$(ts 50)' AND timestamp < '$(ts 900)'"

# --- keyset pages -------------------------------------------------------------
# walk QUERY LIMIT: follow before_id from the first page to an empty one; prints the ids.
walk() {
	local page before="" n=0
	while true; do
		page=$(curl -s "$ADMIN$M?$1&limit=$2${before:+&before_id=$before}")
		[[ $(jq length <<<"$page") == 0 ]] && break
		jq -r '.[].id' <<<"$page"
		before=$(jq -r '.[-1].id' <<<"$page")
		n=$((n + 1))
		((n <= 100)) || am_fail "walk did not end after 100 pages"
	done
}
walk "" 250 >"$AM_TEST_TMP/walk_all"
am_psql "SELECT id FROM llm_performance_metric ORDER BY timestamp DESC, id DESC" >"$AM_TEST_TMP/want_all"
am_assert_eq "walking every page sees each row once" "$total $total" \
	"$(wc -l <"$AM_TEST_TMP/walk_all") $(sort -u "$AM_TEST_TMP/walk_all" | wc -l)"
cmp -s "$AM_TEST_TMP/walk_all" "$AM_TEST_TMP/want_all" || am_fail "pages out of order"
walk "model=qwen2:7b&status=ok" 97 >"$AM_TEST_TMP/walk_qwen"
am_psql "SELECT id FROM llm_performance_metric WHERE model = 'qwen2:7b' AND status = 'ok'
	ORDER BY timestamp DESC, id DESC" >"$AM_TEST_TMP/want_qwen"
cmp -s "$AM_TEST_TMP/walk_qwen" "$AM_TEST_TMP/want_qwen" || am_fail "filtered pages differ"
# A before_id in the middle of three rows sharing a timestamp.
mid=$(am_psql "SELECT id FROM llm_performance_metric WHERE seq = 301")
check_list "before_id among equal timestamps" "before_id=$mid" \
	"(timestamp, id) < (SELECT timestamp, id FROM llm_performance_metric WHERE id = $mid)"
am_assert_eq "an unknown before_id gives an empty list" "[]" \
	"$(curl -s "$ADMIN$M?before_id=99999999" | jq -c .)"

# --- summary and timeseries figures -------------------------------------------------
# exact=true: these compare percentiles to the digit; tests/integration/admin_rollup.sh
# checks the rollup path that long ranges take otherwise.
# ref_sql GROUP BUCKET WHERE: the figures computed here, one row per (bucket, group).
ref_sql() {
	printf '%s' "SELECT $1 AS grp, $2 AS bucket, count(*) AS count,
	  sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS errors,
	  avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END)::float8 AS error_rate,
	  sum(latency_seconds) / count(*) AS latency_avg,
	  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds) AS latency_p50,
	  percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds) AS latency_p95,
	  percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_seconds) AS latency_p99,
	  sum(tokens_per_second) / count(*) AS tps_avg,
	  percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_per_second) AS tps_p50,
	  percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_seconds) AS ttft_p50,
	  percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_seconds) AS ttft_p95,
	  sum(tokens::bigint) AS total_tokens
	FROM llm_performance_metric WHERE $3 GROUP BY 1, 2"
}

# check_figures DESC QUERY KEY GROUP BUCKET WHERE: every item under KEY in the answer to
# QUERY equals one row of ref_sql, and no row is missing.
check_figures() {
	local desc=$1 query=$2 key=$3 answer out
	answer=$(curl -s "$ADMIN$query")
	out=$(psql_with api "$answer" "
	WITH api AS (SELECT * FROM json_to_recordset(:'api'::json -> '$key') AS a(\"group\" text,
	    bucket timestamptz, count bigint, errors bigint, error_rate float8, latency_avg float8,
	    latency_p50 float8, latency_p95 float8, latency_p99 float8,
	    tokens_per_second_avg float8, tokens_per_second_p50 float8, ttft_p50 float8,
	    ttft_p95 float8, total_tokens bigint)),
	  ref AS ($(ref_sql "$4" "$5" "$6"))
	SELECT (SELECT count(*) FROM api) || ' ' || (SELECT count(*) FROM ref) || ' ' || count(*)
	FROM ref JOIN api ON api.\"group\" IS NOT DISTINCT FROM ref.grp
	  AND api.bucket IS NOT DISTINCT FROM ref.bucket
	WHERE api.count = ref.count AND api.errors = ref.errors
	  AND close(api.error_rate, ref.error_rate) AND close(api.latency_avg, ref.latency_avg)
	  AND close(api.latency_p50, ref.latency_p50) AND close(api.latency_p95, ref.latency_p95)
	  AND close(api.latency_p99, ref.latency_p99)
	  AND close(api.tokens_per_second_avg, ref.tps_avg)
	  AND close(api.tokens_per_second_p50, ref.tps_p50)
	  AND close(api.ttft_p50, ref.ttft_p50) AND close(api.ttft_p95, ref.ttft_p95)
	  AND api.total_tokens = ref.total_tokens")
	local n=${out%% *}
	((n > 0)) || am_fail "$desc: no groups in $answer"
	am_assert_eq "$desc: groups in the answer, in SQL, equal" "$n $n $n" "$out"
	printf '%s' "$answer"
}

all="since=$(ts 0)&until=$(ts 2000)"
all_sql="timestamp >= '$(ts 0)' AND timestamp < '$(ts 2000)'"
for g in model backend intent source stage; do
	check_figures "summary by $g" "$M/summary?$all&group_by=$g&exact=true" groups "$g" "NULL::timestamptz" \
		"$all_sql" >/dev/null
done
answer=$(check_figures "summary, one group" "$M/summary?$all&exact=true" groups "NULL::text" \
	"NULL::timestamptz" "$all_sql")
am_assert_eq "summary echoes its range and grouping" \
	"[\"2025-01-10T00:00:00+00:00\",\"$(ts 2000 | sed 's/Z$/+00:00/')\",null,1,$total]" \
	"$(jq -c '[.since, .until, .group_by, (.groups | length), .groups[0].count]' <<<"$answer")"
check_figures "summary of a filtered subrange" \
	"$M/summary?since=$(ts 300)&until=$(ts 700)&backend=ollama&status=ok&group_by=model&exact=true" groups \
	model "NULL::timestamptz" \
	"timestamp >= '$(ts 300)' AND timestamp < '$(ts 700)' AND backend = 'ollama' AND status = 'ok'" \
	>/dev/null
answer=$(curl -s "$ADMIN$M/summary?$all&model=nope")
am_assert_eq "summary of nothing: one empty group" \
	'[{"group":null,"count":0,"errors":0,"error_rate":null,"latency_avg":null,"latency_p50":null,"latency_p95":null,"latency_p99":null,"tokens_per_second_avg":null,"tokens_per_second_p50":null,"ttft_p50":null,"ttft_p95":null,"total_tokens":0,"cost_usd":0}]' \
	"$(jq -c .groups <<<"$answer")"
am_assert_eq "grouped summary of nothing: no groups" "[]" \
	"$(curl -s "$ADMIN$M/summary?$all&model=nope&group_by=model" | jq -c .groups)"

hour_sql="date_trunc('hour', timestamp)"
five_sql="date_trunc('hour', timestamp) + floor(extract(minute FROM timestamp) / 5) * interval '5 minutes'"
answer=$(check_figures "timeseries 1h by backend" \
	"$M/timeseries?$all&bucket=1h&group_by=backend&exact=true" points backend "$hour_sql" "$all_sql")
am_assert_eq "timeseries echoes bucket and grouping" '["1h","backend"]' \
	"$(jq -c '[.bucket, .group_by]' <<<"$answer")"
am_assert_eq "timeseries points add up to every row" "$total" \
	"$(jq '[.points[].count] | add' <<<"$answer")"
check_figures "timeseries 5m by model, filtered" \
	"$M/timeseries?since=$(ts 100)&until=$(ts 400)&bucket=5m&group_by=model&intent=chat" points \
	model "$five_sql" \
	"timestamp >= '$(ts 100)' AND timestamp < '$(ts 400)' AND intent = 'chat'" >/dev/null
check_figures "timeseries 1d" "$M/timeseries?$all&bucket=1d&exact=true" points "NULL::text" \
	"date_trunc('day', timestamp)" "$all_sql" >/dev/null
check_figures "timeseries 1m by stage" \
	"$M/timeseries?since=$(ts 10)&until=$(ts 60)&bucket=1m&group_by=stage" points stage \
	"date_trunc('minute', timestamp)" "timestamp >= '$(ts 10)' AND timestamp < '$(ts 60)'" \
	>/dev/null

# 10,000 one-minute buckets are allowed, 10,001 are not.
expect_status "10,000 buckets" 200 GET \
	"$M/timeseries?since=2025-01-01T00:00:00Z&until=2025-01-07T22:40:00Z&bucket=1m" >/dev/null
expect_error "10,001 buckets" 400 GET \
	"$M/timeseries?since=2025-01-01T00:00:00Z&until=2025-01-07T22:40:01Z&bucket=1m"

# --- the default range is the last 24 hours --------------------------------------
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
	tokens_per_second, source, source_id, epoch, seq)
	SELECT now() - CASE WHEN g <= 5 THEN interval '1 hour' ELSE interval '25 hours' END,
	  'recent', 'ollama', g, g, 1, 'api', 'gen', 2, g FROM generate_series(1, 12) g"
answer=$(curl -s "$ADMIN$M/summary")
am_assert_eq "default summary counts the last 24 hours" 5 "$(jq '.groups[0].count' <<<"$answer")"
am_assert_eq "default range is 24 hours ending now" "t t" \
	"$(psql_with api "$answer" "SELECT (:'api'::json->>'until')::timestamptz -
		(:'api'::json->>'since')::timestamptz = interval '24 hours',
		abs(extract(epoch FROM now() - (:'api'::json->>'until')::timestamptz)) < 60" | tr '|' ' ')"
answer=$(curl -s "$ADMIN$M/timeseries?group_by=model")
am_assert_eq "default timeseries: the last 24 hours, hourly" '["1h",5]' \
	"$(jq -c '[.bucket, ([.points[].count] | add)]' <<<"$answer")"
echo "ok: filters, pages, summary and timeseries agree with SQL"
