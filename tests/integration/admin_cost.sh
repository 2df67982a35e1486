#!/usr/bin/env bash
# Per-call cost: prices are versioned per model through the admin-api (bad
# definitions get 400 naming the fault), every call stored over HTTP or the
# bus gets the cost of the price in force at its timestamp, and the summary
# and timeseries report cost by model, backend, user and session equal to an
# independent SQL computation over the rows and prices, on the rollup path
# too. A later price change does not rewrite stored costs.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
token=cost-test-token
admin_start admin ADMIN_API_TOKEN=$token ADMIN_RETENTION_DAYS=0 ADMIN_ROLLUP_INTERVAL_S=1
auth=(-H "Authorization: Bearer $token")
json=(-H 'Content-Type: application/json')

# put_price BODY: PUT the definition; prints the answer, fails unless 200.
put_price() {
	expect_status "PUT prices $1" 200 PUT /api/llm-backends/prices "${auth[@]}" "${json[@]}" -d "$1"
}

# sql_time SQL_EXPR: the time as ISO 8601 UTC with microseconds.
sql_time() { am_psql "SELECT to_char(($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"; }

# --- Bad definitions: 400 naming the fault, nothing stored. ---
bad() {
	local body
	body=$(expect_status "bad price $2" 400 PUT /api/llm-backends/prices "${auth[@]}" "${json[@]}" -d "$1")
	jq -e --arg want "$2" '.error | type == "string" and contains($want)' <<<"$body" >/dev/null ||
		am_fail "bad price $1: error does not say '$2': $body"
}
bad '{"model": "m", "input_usd_per_mtok": 1' "not valid JSON"
bad '[{"model": "m"}]' "must be a JSON object"
bad '{"input_usd_per_mtok": 1, "output_usd_per_mtok": 2}' "model is required"
bad '{"model": "", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2}' "model is required"
bad '{"model": "m", "output_usd_per_mtok": 2}' "input_usd_per_mtok and output_usd_per_mtok are required"
bad '{"model": "m", "input_usd_per_mtok": -1, "output_usd_per_mtok": 2}' "input_usd_per_mtok must be a number from 0"
bad '{"model": "m", "input_usd_per_mtok": 1, "output_usd_per_mtok": "2"}' "output_usd_per_mtok must be a number"
bad '{"model": "m", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2, "valid_from": "soon"}' "valid_from must be an ISO 8601 time"
bad '{"model": "m", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2, "currency": "EUR"}' "unknown field 'currency'"
expect_error "PUT prices without the token" 401 PUT /api/llm-backends/prices "${json[@]}" \
	-d '{"model": "m", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2}' >/dev/null
expect_error "PUT prices as text/plain" 415 PUT /api/llm-backends/prices "${auth[@]}" \
	-H 'Content-Type: text/plain' -d '{"model": "m", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2}' >/dev/null
expect_error "GET prices?model= too long" 400 GET "/api/llm-backends/prices?model=$(printf 'x%.0s' {1..1100})" >/dev/null
am_assert_eq "nothing stored by bad definitions" 0 "$(am_psql 'SELECT count(*) FROM llm_model_price')"

# --- Prices with history. big-a changes price 12 hours ago and has one scheduled
# for tomorrow; big-b has one price; local-c has none and costs 0. ---
t_a1=$(sql_time "now() - interval '40 hours'")
t_a2=$(sql_time "now() - interval '12 hours'")
t_a3=$(sql_time "now() + interval '1 day'")
put_price "{\"model\": \"big-a\", \"input_usd_per_mtok\": 2.5, \"output_usd_per_mtok\": 10, \"valid_from\": \"$t_a1\"}" >/dev/null
put_price "{\"model\": \"big-a\", \"input_usd_per_mtok\": 1.25, \"output_usd_per_mtok\": 7.5, \"valid_from\": \"$t_a2\"}" >/dev/null
put_price "{\"model\": \"big-a\", \"input_usd_per_mtok\": 0.5, \"output_usd_per_mtok\": 2, \"valid_from\": \"$t_a3\"}" >/dev/null
put_price "{\"model\": \"big-b\", \"input_usd_per_mtok\": 0.15, \"output_usd_per_mtok\": 0.6, \"valid_from\": \"$t_a1\"}" >/dev/null
# The same (model, valid_from) again replaces that version.
out=$(put_price "{\"model\": \"big-b\", \"input_usd_per_mtok\": 0.1575, \"output_usd_per_mtok\": 0.63, \"valid_from\": \"$t_a1\"}")
am_assert_eq "a second PUT of one version replaces it" "false 0.1575 0.63" \
	"$(jq -r '"\(.created) \(.input_usd_per_mtok) \(.output_usd_per_mtok)"' <<<"$out")"
prices=$(curl -fs "$ADMIN/api/llm-backends/prices")
am_assert_eq "price versions listed" 4 "$(jq length <<<"$prices")"
am_assert_eq "big-a: versions, each ending where the next starts, the middle one in force" \
	"2.5 10 false true|1.25 7.5 true true|0.5 2 false false" \
	"$(jq -r '[.[] | select(.model == "big-a") | "\(.input_usd_per_mtok) \(.output_usd_per_mtok) \(.current) \(.valid_until != null)"] | join("|")' <<<"$prices")"
am_assert_eq "GET prices?model=big-b" "big-b" "$(curl -fs "$ADMIN/api/llm-backends/prices?model=big-b" | jq -r '[.[].model] | join(",")')"

# --- Calls over HTTP: 6,000 over the last 30 hours, across big-a's change, with
# and without prompt tokens, 2 % failed, 10 users and 40 sessions. ---
now=$(date +%s)
awk -v now="$now" 'BEGIN {
	split("big-a big-b local-c", models, " "); split("ollama mlx", backends, " ")
	split("chat music weather", intents, " ")
	for (i = 0; i < 6000; i++) {
		prompt = i % 5 == 0 ? "" : sprintf(", \"prompt_tokens\": %d", 20 + (i * 37) % 900)
		status = i % 50 == 0 ? "error" : "ok"
		printf "{\"timestamp\": %.3f, \"model\": \"%s\", \"backend\": \"%s\", \"latency_seconds\": %.3f, \"tokens\": %d, \"tokens_per_second\": %.2f%s, \"status\": \"%s\", \"user_id\": \"user-%d\", \"session_id\": \"sess-%d\", \"intent\": \"%s\"}\n",
			now - 30 * 3600 + i * 18 + 0.5, models[1 + i % 3], backends[1 + int(i / 3) % 2],
			0.2 + (i % 97) / 50.0, status == "error" ? 0 : 10 + (i * 13) % 700, 5 + (i % 89) * 0.7,
			prompt, status, i % 10, (i * 7) % 40, intents[1 + i % 3]
	}
}' >"$AM_TEST_TMP/calls.ndjson"
expect_status "batch of 6000 calls" 201 POST /api/llm-backends/metrics/batch "${auth[@]}" \
	-H 'Content-Type: application/x-ndjson' --data-binary "@$AM_TEST_TMP/calls.ndjson" >/dev/null
expect_status "one call posted alone" 201 POST /api/llm-backends/metrics "${auth[@]}" "${json[@]}" \
	-d '{"model": "big-b", "backend": "mlx", "latency_seconds": 1, "tokens": 1000, "prompt_tokens": 3000,
	     "tokens_per_second": 50, "user_id": "user-x", "session_id": "sess-x"}' >/dev/null
am_assert_eq "a call of 3000 prompt and 1000 generated tokens at 0.1575/0.63 costs" 0.0011025 \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics?session_id=sess-x" | jq -r '.[0].cost_usd')"

# --- Calls over the bus: the load generator's models, two of them priced; one
# price changes while the calls arrive. ---
collector_start collector
put_price '{"model": "phi3:mini", "input_usd_per_mtok": 0.03, "output_usd_per_mtok": 0.09, "valid_from": 0}' >/dev/null
put_price '{"model": "mistral:7b", "input_usd_per_mtok": 0.04, "output_usd_per_mtok": 0.12, "valid_from": 0}' >/dev/null
bus_rows() { am_psql "SELECT count(*) FROM llm_performance_metric WHERE source <> 'api'"; }
am_bg load "$AM_BIN_DIR/athena-metrics-load" --url "$COLLECTOR_BUS" --source-id cost-load --count 3000 --rate 500
some_stored() { (($(bus_rows) >= 100)); }
am_wait_for "the first calls from the bus stored" 60 some_stored
put_price '{"model": "phi3:mini", "input_usd_per_mtok": 0.3, "output_usd_per_mtok": 0.9}' >/dev/null
am_wait load 60 || am_fail "the load generator failed: $(tail -3 "$(am_log_of load)")"
all_stored() { (($(bus_rows) == 3000)); }
am_wait_for "3000 calls from the bus stored" 60 all_stored
# Messages delivered twice take the staging table (their rows are partly stored): costed too.
am_bg inject "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id cost-dup --epoch 7 \
	--batches 20 --batch-size 50 --repeat 2 --hold
duplicates_stored() {
	[[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source_id = 'cost-dup'") == 1000 ]] &&
		collector_metric_is athena_collector_metrics_duplicate_total "" 1000
}
am_wait_for "1000 rows sent twice stored once" 60 duplicates_stored
am_stop inject
am_assert_eq "rows sent twice all cost something" t \
	"$(am_psql "SELECT bool_and(cost_usd > 0) FROM llm_performance_metric WHERE source_id = 'cost-dup'")"
collector_assert_nothing_dropped
am_assert_eq "bus calls of phi3:mini at both prices" 2 \
	"$(am_psql "SELECT count(DISTINCT cost_usd * 1000000 / (coalesce(prompt_tokens, 0) * 0.03 + tokens * 0.09) > 5)
	  FROM llm_performance_metric WHERE model = 'phi3:mini' AND source <> 'api' AND tokens > 0")"

# The reference: the price in force at each row's timestamp, found by ranges of
# versions (not by the database's function), and the cost from the token counts.
ref_cte="pv AS (SELECT model, valid_from, input_usd_per_mtok AS pin, output_usd_per_mtok AS pout,
    lead(valid_from) OVER (PARTITION BY model ORDER BY valid_from) AS valid_until FROM llm_model_price),
  c AS (SELECT m.*, coalesce((coalesce(m.prompt_tokens, 0) * pv.pin + m.tokens * pv.pout) / 1000000, 0) AS ref_cost
    FROM llm_performance_metric m LEFT JOIN pv ON pv.model = m.model AND m.timestamp >= pv.valid_from
    AND (pv.valid_until IS NULL OR m.timestamp < pv.valid_until))"
am_assert_eq "rows whose stored cost differs from the reference" 0 \
	"$(am_psql "WITH $ref_cte SELECT count(*) FROM c WHERE cost_usd <> ref_cost")"
am_assert_eq "rows of each priced model cost something, local-c nothing" "big-a true|big-b true|local-c false|mistral:7b true|phi3:mini true" \
	"$(am_psql "SELECT string_agg(model || ' ' || (sum > 0), '|' ORDER BY model) FROM (SELECT model, sum(cost_usd)
	  FROM llm_performance_metric WHERE model IN ('big-a', 'big-b', 'local-c', 'phi3:mini', 'mistral:7b') GROUP BY 1) s")"
am_assert_eq "big-a calls at both of its past prices" 2 \
	"$(am_psql "SELECT count(DISTINCT timestamp >= '$t_a2') FROM llm_performance_metric WHERE model = 'big-a'")"

# --- The endpoints against the reference. ---
rolled_up() {
	[[ $(am_psql "SELECT count(*) FROM llm_metric_rollup_dirty WHERE hour < date_trunc('hour', now(), 'UTC')") == 0 &&
		$(am_psql "SELECT count(*) FROM llm_metric_rollup WHERE cost_sum > 0") -gt 20 ]]
}
am_wait_for "finished hours rolled up" 90 rolled_up
am_assert_eq "rollup cost sums equal the rows' costs, hour by hour" 0 \
	"$(am_psql "SELECT count(*) FROM (SELECT hour, sum(cost_sum) AS s FROM llm_metric_rollup GROUP BY 1) r
	  FULL JOIN (SELECT date_trunc('hour', timestamp, 'UTC') AS hour, sum(cost_usd) AS s
	  FROM llm_performance_metric GROUP BY 1) m USING (hour)
	  WHERE hour < date_trunc('hour', now(), 'UTC') AND r.s IS DISTINCT FROM m.s
	  AND hour NOT IN (SELECT hour FROM llm_metric_rollup_dirty)")"

since=$(sql_time "now() - interval '31 hours'")
until=$(sql_time "now() + interval '1 minute'")
range="since=$since&until=$until"

# compare ENDPOINT QUERY GROUPCOL BUCKET PERCENTILES: every point or group of the answer has
# the count and cost of the reference, exactly, and there are as many as in the reference.
# BUCKET is the SQL of a row's bucket (NULL for the summary); PERCENTILES what the answer says.
compare() {
	local answer list out
	answer=$(curl -fs "$ADMIN/api/llm-backends/metrics/$1?$2") || am_fail "$1?$2 failed"
	am_assert_eq "$1?$2: percentiles" "$5" "$(jq -r '.percentiles // "none"' <<<"$answer")"
	[[ $1 == timeseries ]] && list=points || list=groups
	# The answer goes to PostgreSQL as json, so the costs are read as the decimals sent.
	printf '%s' "$answer" >"$AM_TEST_TMP/answer.json"
	out=$("$AM_PSQL" -X -q -At -v ON_ERROR_STOP=1 "$AM_TEST_DB_URL" <<SQL
\\set answer \`cat $AM_TEST_TMP/answer.json\`
WITH $ref_cte,
	  api AS (SELECT * FROM json_to_recordset(:'answer'::json -> '$list')
	    AS a(bucket timestamptz, "group" text, count bigint, cost_usd numeric)),
	  ref AS (SELECT $4 AS bkt, $3 AS grp, count(*) AS n, sum(ref_cost) AS cost FROM c
	    WHERE timestamp >= '$since' AND timestamp < '$until' GROUP BY 1, 2)
	SELECT (SELECT count(*) FROM api) || ' ' || (SELECT count(*) FROM ref) || ' ' || count(*)
	FROM ref JOIN api ON api.bucket IS NOT DISTINCT FROM ref.bkt AND api."group" IS NOT DISTINCT FROM ref.grp
	WHERE api.count = ref.n AND api.cost_usd = ref.cost;
SQL
	)
	local n=${out%% *}
	((n > 0)) || am_fail "$1?$2: nothing in $answer"
	am_assert_eq "$1?$2: points in the answer, in the reference, agreeing on count and cost" "$n $n $n" "$out"
}
hour="date_bin(interval '1 hour', timestamp, timestamptz '2000-01-01 00:00:00+00')"
compare summary "$range&group_by=model" model NULL::timestamptz approximate
compare summary "$range&group_by=backend" backend NULL::timestamptz approximate
compare summary "$range" NULL::text NULL::timestamptz approximate
compare summary "$range&group_by=model&exact=true" model NULL::timestamptz exact
compare summary "$range&group_by=user_id" user_id NULL::timestamptz exact
compare summary "$range&group_by=session_id" session_id NULL::timestamptz exact
compare summary "$range&group_by=model&figures=counts" model NULL::timestamptz none
compare summary "$range&group_by=intent&figures=counts" intent NULL::timestamptz none
compare summary "$range&group_by=user_id&figures=counts" user_id NULL::timestamptz none
compare timeseries "$range&group_by=model&bucket=1h" model "$hour" approximate
compare timeseries "$range&group_by=backend&bucket=1h&figures=counts" backend "$hour" exact
compare timeseries "$range&group_by=user_id&bucket=1h" user_id "$hour" exact
compare timeseries "$range&group_by=model&bucket=1h&exact=true" model "$hour" exact

# top=N (figures=counts): the N groups of highest cost (then most calls), on the
# row path (sessions) and on the rollup path (models), against the reference
# (their costs are checked exactly above; here which groups and in what order).
top_of() {
	am_psql "WITH $ref_cte SELECT string_agg(coalesce(grp, 'null') || ' ' || n, '|' ORDER BY cost DESC, n DESC, grp)
	  FROM (SELECT $1 AS grp, count(*) AS n, sum(ref_cost) AS cost FROM c
	  WHERE timestamp >= '$since' AND timestamp < '$until' GROUP BY 1 ORDER BY cost DESC, n DESC, grp LIMIT $2) t"
}
top_api() {
	curl -fs "$ADMIN/api/llm-backends/metrics/summary?$range&group_by=$1&figures=counts&top=$2" |
		jq -r '.groups | sort_by(-(.cost_usd | tonumber), -.count, .group) | map("\(.group) \(.count)") | join("|")'
}
for by in session_id:2 model:2; do
	want=$(top_of "${by%%:*}" "${by##*:}")
	groups=$(am_psql "SELECT count(DISTINCT ${by%%:*}) FROM llm_performance_metric
	  WHERE timestamp >= '$since' AND timestamp < '$until'")
	((groups > ${by##*:})) || am_fail "top $by: only $groups groups in the range; top would keep them all"
	am_assert_eq "summary top=${by##*:} by ${by%%:*}: the groups of highest cost" "$want" "$(top_api "${by%%:*}" "${by##*:}")"
done
for bad in "top=0" "top=1001" "top=x" "top=3&figures=all" "top=3"; do
	out=$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/api/llm-backends/metrics/summary?$range&group_by=model&$bad")
	am_assert_eq "summary ?$bad is refused" 400 "$out"
done

# --- A price defined later, backdated into stored calls, does not rewrite them;
# calls stored after it get it. ---
before=$(am_psql "SELECT sum(cost_usd) FROM llm_performance_metric")
t_back=$(sql_time "now() - interval '20 hours'")
put_price "{\"model\": \"local-c\", \"input_usd_per_mtok\": 1, \"output_usd_per_mtok\": 1, \"valid_from\": \"$t_back\"}" >/dev/null
am_assert_eq "stored costs after a backdated price" "$before" "$(am_psql "SELECT sum(cost_usd) FROM llm_performance_metric")"
am_assert_eq "summary cost of local-c after a backdated price" 0 \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?$range&group_by=model&model=local-c" | jq -r '.groups[0].cost_usd')"
expect_status "a call of local-c stored after its price" 201 POST /api/llm-backends/metrics "${auth[@]}" "${json[@]}" \
	-d "{\"timestamp\": \"$(sql_time "now() - interval '19 hours'")\", \"model\": \"local-c\", \"backend\": \"ollama\",
	     \"latency_seconds\": 1, \"tokens\": 500000, \"prompt_tokens\": 250000, \"tokens_per_second\": 9}" >/dev/null
am_assert_eq "summary cost of local-c with that call" 0.75 \
	"$(curl -fs "$ADMIN/api/llm-backends/metrics/summary?$range&group_by=model&model=local-c" | jq -r '.groups[0].cost_usd')"
