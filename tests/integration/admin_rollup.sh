#!/usr/bin/env bash
# Summaries and hourly timeseries over long ranges read the hourly rollups:
# counts, sums and averages stay exact, percentiles stay within the histograms'
# 12 % bins, and rows that arrive for an hour already rolled up count at once.
# Counts by intent and stage (figures=counts) read their own rollups, exactly.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1
# 30,000 metrics over the last 30 hours: 3 models, 2 backends, 2 sources, 3 % errors.
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, ttft_seconds, status, intent, source, stage, source_id, epoch, seq)
  SELECT now() - interval '30 hours' + i * interval '3.6 seconds',
    (ARRAY['phi3:mini', 'llama3.1:8b', 'mistral:7b'])[1 + i % 3],
    (ARRAY['ollama', 'mlx'])[1 + i % 2], 0.05 + (i % 997) / 200.0, 10 + i % 300,
    5 + (i % 89) * 0.8, CASE WHEN i % 2 = 0 THEN 0.01 + (i % 113) / 100.0 END,
    CASE WHEN i % 33 = 0 THEN 'error' ELSE 'ok' END, (ARRAY['music', 'weather', NULL])[1 + i % 7 % 3],
    (ARRAY['gateway', 'orchestrator'])[1 + i % 2],
    CASE WHEN i % 2 = 1 THEN (ARRAY['classify', 'synthesize', 'validate'])[1 + i % 5 % 3] END,
    'rollup', 0, i
  FROM generate_series(1, 30000) AS i"

admin_start admin ADMIN_RETENTION_DAYS=0 ADMIN_ROLLUP_INTERVAL_S=1
metric() { curl -fs "$ADMIN/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
rolled_up() { [[ $(metric athena_admin_rollup_refreshes_total) -ge 30 && $(metric athena_admin_rollup_backlog) == 0 ]]; }
am_wait_for "finished hours rolled up" 60 rolled_up
am_assert_eq "rollup rows exist" t "$(am_psql 'SELECT count(*) > 0 FROM llm_metric_rollup')"

since=$(am_psql "SELECT to_char((now() - interval '31 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
until=$(am_psql "SELECT to_char((now() + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
range="since=$since&until=$until"

# compare ENDPOINT QUERY GROUPCOL WHERE: the answer's figures per bucket and group against SQL over
# the rows: exact figures equal, percentiles within 13 % where the bucket holds 50 rows or more
# (between a few rows, percentile_cont interpolates differently from a histogram). The summary is
# one bucket.
compare() {
	local answer out key bucket list
	answer=$(curl -fs "$ADMIN/api/llm-backends/metrics/$1?$2")
	am_assert_eq "$1?$2: percentiles" approximate "$(jq -r .percentiles <<<"$answer")"
	if [[ $1 == timeseries ]]; then
		list=.points bucket="date_bin(interval '1 hour', timestamp, timestamptz '2000-01-01 00:00:00+00')"
		key="api.bucket = ref.bkt AND"
	else
		list=.groups bucket="NULL::timestamptz" key=""
	fi
	out=$(am_psql "WITH api AS (SELECT * FROM json_to_recordset('$(jq -c "$list" <<<"$answer")'::json)
	    AS a(bucket timestamptz, \"group\" text, count bigint, errors bigint, latency_avg float8,
	    latency_p50 float8, latency_p95 float8, latency_p99 float8, tokens_per_second_avg float8,
	    tokens_per_second_p50 float8, ttft_p50 float8, ttft_p95 float8, total_tokens bigint)),
	  ref AS (SELECT $bucket AS bkt, $3 AS grp, count(*) AS n,
	    count(*) FILTER (WHERE status = 'error') AS errors,
	    avg(latency_seconds) AS lavg, avg(tokens_per_second) AS tavg, sum(tokens) AS tk,
	    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_seconds) AS lat,
	    percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_per_second) AS tps,
	    percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY ttft_seconds) AS ttft
	    FROM llm_performance_metric WHERE timestamp >= '$since' AND timestamp < '$until' AND $4
	    GROUP BY 1, 2)
	SELECT (SELECT count(*) FROM api) || ' ' || (SELECT count(*) FROM ref) || ' ' || count(*)
	FROM ref JOIN api ON $key api.\"group\" IS NOT DISTINCT FROM ref.grp
	WHERE api.count = ref.n AND api.errors = ref.errors AND api.total_tokens = ref.tk
	  AND abs(api.latency_avg - ref.lavg) < 1e-9 * ref.lavg
	  AND abs(api.tokens_per_second_avg - ref.tavg) < 1e-9 * ref.tavg
	  AND (ref.n < 50 OR (coalesce(abs(api.latency_p50 - ref.lat[1]) <= 0.13 * ref.lat[1], api.latency_p50 IS NULL AND ref.lat[1] IS NULL)
	  AND coalesce(abs(api.latency_p95 - ref.lat[2]) <= 0.13 * ref.lat[2], api.latency_p95 IS NULL AND ref.lat[2] IS NULL)
	  AND coalesce(abs(api.latency_p99 - ref.lat[3]) <= 0.13 * ref.lat[3], api.latency_p99 IS NULL AND ref.lat[3] IS NULL)
	  AND coalesce(abs(api.tokens_per_second_p50 - ref.tps) <= 0.13 * ref.tps, api.tokens_per_second_p50 IS NULL AND ref.tps IS NULL)
	  AND coalesce(abs(api.ttft_p50 - ref.ttft[1]) <= 0.13 * ref.ttft[1], api.ttft_p50 IS NULL AND ref.ttft[1] IS NULL)
	  AND coalesce(abs(api.ttft_p95 - ref.ttft[2]) <= 0.13 * ref.ttft[2], api.ttft_p95 IS NULL AND ref.ttft[2] IS NULL)))")
	local n=${out%% *}
	((n > 0)) || am_fail "$1?$2: no groups in $answer"
	am_assert_eq "$1?$2: groups in the answer, in SQL, agreeing" "$n $n $n" "$out"
}

# compare_counts QUERY GROUPCOL WHERE: summary?figures=counts equals SQL over the rows exactly
# (averages to 1e-9).
compare_counts() {
	local answer out
	answer=$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?figures=counts&$1")
	am_assert_eq "counts $1: figures" counts "$(jq -r .figures <<<"$answer")"
	am_assert_eq "counts $1: no percentiles" null "$(jq -c '.groups[0].latency_p50' <<<"$answer")"
	out=$(am_psql "WITH api AS (SELECT * FROM json_to_recordset('$(jq -c .groups <<<"$answer")'::json)
	    AS a(\"group\" text, count bigint, errors bigint, error_rate float8, latency_avg float8,
	    tokens_per_second_avg float8, total_tokens bigint)),
	  ref AS (SELECT $2 AS grp, count(*) AS n, count(*) FILTER (WHERE status = 'error') AS errors,
	    avg(latency_seconds) AS lavg, avg(tokens_per_second) AS tavg, coalesce(sum(tokens), 0) AS tk
	    FROM llm_performance_metric WHERE timestamp >= '$since' AND timestamp < '$until' AND $3
	    GROUP BY 1)
	SELECT (SELECT count(*) FROM api) || ' ' || (SELECT count(*) FROM ref) || ' ' || count(*)
	FROM ref JOIN api ON api.\"group\" IS NOT DISTINCT FROM ref.grp
	WHERE api.count = ref.n AND api.errors = ref.errors AND api.total_tokens = ref.tk
	  AND abs(api.error_rate - ref.errors::float8 / ref.n) < 1e-12
	  AND abs(api.latency_avg - ref.lavg) < 1e-9 * ref.lavg
	  AND abs(api.tokens_per_second_avg - ref.tavg) < 1e-9 * ref.tavg")
	local n=${out%% *}
	((n > 0)) || am_fail "counts $1: no groups in $answer"
	am_assert_eq "counts $1: groups in the answer, in SQL, agreeing" "$n $n $n" "$out"
}

compare summary "$range" "NULL::text" "true"
compare summary "$range&group_by=model" model "true"
compare summary "$range&group_by=backend&source=gateway" backend "source = 'gateway'"
compare summary "$range&group_by=source&status=error" source "status = 'error'"
compare timeseries "$range&bucket=1h" "NULL::text" "true"
compare timeseries "$range&bucket=1h&group_by=model" model "true"
compare timeseries "$range&bucket=1h&group_by=backend&status=ok" backend "status = 'ok'"
compare_counts "$range" "NULL::text" "true"
compare_counts "$range&group_by=intent" intent "true"
compare_counts "$range&group_by=stage&model=phi3:mini" stage "model = 'phi3:mini'"
compare_counts "$range&group_by=model&intent=weather&stage=classify" model \
	"intent = 'weather' AND stage = 'classify'"
am_assert_eq "counts with nothing in range, grouped" '[]' \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?figures=counts&$range&group_by=intent&model=nope" | jq -c .groups)"
am_assert_eq "counts with nothing in range" '[{"group":null,"count":0,"errors":0,"error_rate":null,"latency_avg":null,"tokens_per_second_avg":null,"total_tokens":0,"cost_usd":0}]' \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?figures=counts&$range&model=nope" | jq -c .groups)"

# Rows for an hour already rolled up count at once (read raw until refreshed).
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, status, source, source_id, epoch, seq)
  SELECT date_trunc('hour', now()) - interval '20 hours' + i * interval '1 second', 'phi3:mini',
    'ollama', 9.5, 1, 1, 'ok', 'gateway', 'late', 0, i FROM generate_series(1, 500) AS i"
am_assert_eq "the late hour is dirty" 1 "$(am_psql 'SELECT count(*) FROM llm_metric_rollup_dirty
  WHERE hour = date_trunc('"'"'hour'"'"', now(), '"'"'UTC'"'"') - interval '"'"'20 hours'"'"'')"
compare summary "$range&group_by=model" model "true"
compare timeseries "$range&bucket=1h&group_by=model" model "true"
compare_counts "$range&group_by=intent" intent "true"
am_wait_for "the late hour refreshed" 60 bash -c "[[ \$(psql -X -At '$DATABASE_URL' -c \"SELECT count(*) FROM llm_metric_rollup_dirty WHERE hour < date_trunc('hour', now(), 'UTC')\") == 0 ]]"
compare summary "$range&group_by=model" model "true"
compare timeseries "$range&bucket=1h&group_by=model" model "true"
compare_counts "$range&group_by=intent" intent "true"

# Groupings and filters the rollups do not keep, short ranges and exact=true read every row.
for q in "$range&group_by=intent" "$range&intent=music" "$range&exact=true" \
	"since=$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)"; do
	am_assert_eq "$q: percentiles" exact \
		"$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?$q" | jq -r .percentiles)"
done
# Timeseries: buckets shorter than an hour, filters the rollups do not keep and exact=true.
for q in "$range&bucket=5m" "$range&bucket=1h&intent=music" "$range&bucket=1h&group_by=stage" \
	"$range&bucket=1h&exact=true"; do
	am_assert_eq "timeseries $q: percentiles" exact \
		"$(curl -fs "$ADMIN/api/llm-backends/metrics/timeseries?$q" | jq -r .percentiles)"
done
# The same figures either way: counts per bucket equal, exact against rollups.
am_assert_eq "timeseries counts, rollups against every row" \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/timeseries?$range&bucket=1h&exact=true" | jq -c '[.points[] | [.bucket, .count, .errors, .total_tokens]]')" \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/timeseries?$range&bucket=1h" | jq -c '[.points[] | [.bucket, .count, .errors, .total_tokens]]')"
# figures=<families>: the answer has just those percentiles, equal to the full answer's, on the
# rollup path and on the exact one.
subset() {
	jq -c --arg k "$2" '[.points[] | {bucket, group, count, errors, total_tokens}
		+ with_entries(select(.key as $x | $k | split(",") | index($x)))]' <<<"$1"
}
for path in "" "&exact=true"; do
	full=$(curl -fs "$ADMIN/api/llm-backends/metrics/timeseries?$range&bucket=1h&group_by=model$path")
	for spec in "tokens_per_second|tokens_per_second_p50" "latency|latency_p50,latency_p95,latency_p99" \
		"ttft,latency|latency_p50,latency_p95,latency_p99,ttft_p50,ttft_p95" "counts|"; do
		fam=${spec%%|*} keys=${spec#*|}
		answer=$(curl -fs "$ADMIN/api/llm-backends/metrics/timeseries?$range&bucket=1h&group_by=model&figures=$fam$path")
		am_assert_eq "figures=$fam$path: echoed in order" "$(tr , '\n' <<<"$fam" | sort | paste -sd,)" \
			"$(jq -r .figures <<<"$answer")"
		am_assert_eq "figures=$fam$path: just those percentiles" "$keys" \
			"$(jq -r '[.points[0] | keys_unsorted[] | select(test("_p[0-9]+$"))] | join(",")' <<<"$answer")"
		am_assert_eq "figures=$fam$path: the full answer's figures" "$(subset "$full" "$keys")" \
			"$(subset "$answer" "$keys")"
	done
done
am_assert_eq "timeseries figures=bad" \
	"figures must be all, counts, or a comma-separated list of latency, tokens_per_second and ttft" \
	"$(curl -s "$ADMIN/api/llm-backends/metrics/timeseries?figures=latency,bad" | jq -r .error)"
am_assert_eq "figures=bad" "figures must be one of all, counts" \
	"$(curl -s "$ADMIN/api/llm-backends/metrics/summary?figures=bad" | jq -r .error)"
am_assert_eq "figures=bad status" 400 \
	"$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/api/llm-backends/metrics/summary?figures=bad")"
echo "ok: rollup summaries, timeseries and counts agree with SQL"
