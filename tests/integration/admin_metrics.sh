#!/usr/bin/env bash
# The metrics API keeps the Python backend's clients working: POST, GET, limits, order, batches.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/admin_metrics_lib.sh"

am_fresh_db
# Retention is off: the tests store metrics from 2024 and 2025 on purpose.
admin_start admin ADMIN_RETENTION_DAYS=0

# --- POST one metric, as the existing clients send it ---------------------
body=$(expect_status "post a metric" 201 POST $M -H 'Content-Type: application/json' \
	-d '{"timestamp": 1732900000.123, "model": "phi3:mini", "backend": "ollama",
	     "latency_seconds": 1.2, "tokens": 42, "tokens_per_second": 35.0,
	     "request_id": "req-1", "session_id": "sess-1", "user_id": "u-1", "zone": "eu",
	     "intent": "chat", "some_future_field": [1, 2]}')
am_assert_eq "201 body has exactly id and status" '["id","status"]' "$(jq -c 'keys' <<<"$body")"
am_assert_eq "201 body status" created "$(jq -r .status <<<"$body")"
id=$(jq -r '.id | numbers' <<<"$body")
am_assert_eq "201 body id is the stored row's id" "$id" \
	"$(am_psql "SELECT id FROM llm_performance_metric WHERE request_id = 'req-1'")"
am_assert_eq "stored with the api idempotency key and source" "api|api|0|1|ok" \
	"$(am_psql "SELECT source, source_id, epoch, seq, status FROM llm_performance_metric WHERE id = $id")"
am_assert_eq "stored time, to the microsecond" "2024-11-29 17:06:40.123+00" \
	"$(am_psql "SELECT timestamp AT TIME ZONE 'UTC' || '+00' FROM llm_performance_metric WHERE id = $id")"

# The line from the README, as written.
port=${ADMIN##*:}
list=$(curl -s "http://localhost:$port/api/llm-backends/metrics?model=phi3:mini&limit=50")
am_assert_eq "GET by model finds the posted metric" 1 "$(jq 'length' <<<"$list")"
am_assert_eq "item keys" \
	'["backend","cost_usd","device_id","error_type","id","intent","latency_seconds","model","prompt_tokens","request_id","session_id","source","stage","status","timestamp","tokens","tokens_generated","tokens_per_second","ttft_seconds","user_id","zone"]' \
	"$(jq -c '.[0] | keys' <<<"$list")"
am_assert_eq "item values" \
	"[$id,\"2024-11-29T17:06:40.123+00:00\",\"phi3:mini\",\"ollama\",1.2,42,42,35,null,null,\"ok\",null,\"req-1\",\"sess-1\",\"u-1\",\"eu\",\"chat\",null,\"api\",null]" \
	"$(jq -c '.[0] | [.id, .timestamp, .model, .backend, .latency_seconds, .tokens_generated,
		.tokens, .tokens_per_second, .prompt_tokens, .ttft_seconds, .status, .error_type,
		.request_id, .session_id, .user_id, .zone, .intent, .device_id, .source, .stage]' <<<"$list")"

# The new optional columns, an ISO 8601 time with an offset, and a charset parameter.
body=$(expect_status "post with the new columns" 201 POST $M \
	-H 'Content-Type: application/json; charset=utf-8' \
	-d '{"timestamp": "2024-11-29T19:06:40.5+02:00", "model": "llama3:8b", "backend": "mlx",
	     "latency_seconds": 2, "tokens": 0, "tokens_per_second": 0, "prompt_tokens": 17,
	     "ttft_seconds": 0.25, "status": "error", "error_type": "timeout", "device_id": "pi-4",
	     "stage": "synthesize", "zone": ""}')
id2=$(jq -r .id <<<"$body")
am_assert_eq "new columns stored" "2024-11-29 17:06:40.5|17|0.25|error|timeout|pi-4|synthesize||t" \
	"$(am_psql "SELECT timestamp AT TIME ZONE 'UTC',
		prompt_tokens, ttft_seconds, status, error_type, device_id, stage, zone, zone IS NULL
		FROM llm_performance_metric WHERE id = $id2")"
am_assert_eq "GET shows the new columns" '[17,0.25,"error","timeout","pi-4","synthesize",null]' \
	"$(curl -s "$ADMIN$M?model=llama3:8b" | jq -c '.[0] | [.prompt_tokens, .ttft_seconds,
		.status, .error_type, .device_id, .stage, .zone]')"

# Without a timestamp the metric is stamped now.
expect_status "post without a timestamp" 201 POST $M -H 'Content-Type: application/json' \
	-d '{"model": "now-model", "backend": "ollama", "latency_seconds": 0.5, "tokens": 1,
	     "tokens_per_second": 2}' >/dev/null
am_assert_eq "stamped within a minute of now" t \
	"$(am_psql "SELECT abs(extract(epoch FROM now() - timestamp)) < 60 FROM llm_performance_metric
		WHERE model = 'now-model'")"

# Awkward text comes back exactly as sent, alone and in a batch: quotes,
# backslashes, array punctuation, the word NULL, control characters, UTF-8.
awkward=$(jq -nc '{model: "odd", backend: "b\"q\\s", latency_seconds: 1, tokens: 1,
	tokens_per_second: 1, request_id: "NULL", session_id: "a,b{c}\"d\\e\nf\tg",
	user_id: "  spaced  ", zone: "\u00fcn\u00efc\u00f8d\u00e9 \ud83d\ude80", intent: "{}",
	device_id: "\\N", stage: "\u0001"}')
expect_status "post awkward text" 201 POST $M -H 'Content-Type: application/json' -d "$awkward" >/dev/null
expect_status "batch awkward text" 201 POST $M/batch -H 'Content-Type: application/json' \
	-d "[$awkward, $awkward]" >/dev/null
want=$(jq -c '[.backend, .request_id, .session_id, .user_id, .zone, .intent, .device_id, .stage]' <<<"$awkward")
got=$(curl -s "$ADMIN$M?model=odd" | jq -c 'map([.backend, .request_id, .session_id, .user_id,
	.zone, .intent, .device_id, .stage]) | unique')
am_assert_eq "awkward text round trip" "[$want]" "$got"
am_assert_eq "awkward rows stored" 3 "$(am_psql "SELECT count(*) FROM llm_performance_metric
	WHERE model = 'odd' AND request_id = 'NULL' AND zone = 'ünïcødé 🚀'")"
am_psql "DELETE FROM llm_performance_metric WHERE model = 'odd'"

# --- limit: default 100, clamp at 1000, newest first ------------------------
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
	tokens_per_second, source, source_id, epoch, seq)
	SELECT timestamptz '2025-06-01 00:00:00+00' + (g % 700) * interval '1 second', 'bulk', 'ollama',
	g / 1000.0, g, 1, 'gateway', 'gen', 1, g FROM generate_series(1, 1500) g"
total=$(rows)
am_assert_eq "rows in the table" 1503 "$total"

# expected_ids N: the ids of the N newest rows, newest first, as a JSON list.
expected_ids() {
	am_psql "SELECT coalesce(json_agg(id), '[]') FROM (SELECT id FROM llm_performance_metric
		ORDER BY timestamp DESC, id DESC LIMIT $1) t" | jq -c .
}
am_assert_eq "no limit: the 100 newest, newest first" "$(expected_ids 100)" \
	"$(curl -s "$ADMIN$M" | jq -c 'map(.id)')"
am_assert_eq "limit=1500 is clamped to the 1000 newest" "$(expected_ids 1000)" \
	"$(curl -s "$ADMIN$M?limit=1500" | jq -c 'map(.id)')"
am_assert_eq "limit=1000" 1000 "$(curl -s "$ADMIN$M?limit=1000" | jq length)"
am_assert_eq "limit=7" "$(expected_ids 7)" "$(curl -s "$ADMIN$M?limit=7" | jq -c 'map(.id)')"
am_assert_eq "timestamps never increase down the list" true \
	"$(curl -s "$ADMIN$M?limit=1000" | jq '[.[].timestamp] as $t | $t == ($t | sort | reverse)')"

# --- batches -------------------------------------------------------------------
body=$(expect_status "JSON array batch" 201 POST $M/batch -H 'Content-Type: application/json' \
	-d '[{"model": "b", "backend": "ollama", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1, "request_id": "b0"},
	     {"model": "b", "backend": "ollama", "latency_seconds": 1, "tokens": 2, "tokens_per_second": 1, "request_id": "b1", "timestamp": 1732900001},
	     {"model": "b", "backend": "ollama", "latency_seconds": 1, "tokens": 3, "tokens_per_second": 1, "request_id": "b2"}]')
am_assert_eq "batch answer keys" '["ids","inserted"]' "$(jq -c keys <<<"$body")"
am_assert_eq "batch inserted" 3 "$(jq .inserted <<<"$body")"
am_assert_eq "batch ids are the records' ids, in record order" \
	"$(am_psql "SELECT json_agg(id ORDER BY request_id) FROM llm_performance_metric WHERE model = 'b'" | jq -c .)" \
	"$(jq -c .ids <<<"$body")"

printf '%s\n' \
	'{"model": "nd", "backend": "mlx", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1, "request_id": "n0"}' \
	'' \
	'{"model": "nd", "backend": "mlx", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1, "request_id": "n1"}' \
	>"$AM_TEST_TMP/batch.ndjson"
body=$(expect_status "NDJSON batch" 201 POST $M/batch -H 'Content-Type: application/x-ndjson' \
	--data-binary "@$AM_TEST_TMP/batch.ndjson")
am_assert_eq "NDJSON ids in record order" \
	"$(am_psql "SELECT json_agg(id ORDER BY request_id) FROM llm_performance_metric WHERE model = 'nd'" | jq -c .)" \
	"$(jq -c .ids <<<"$body")"

# 10,000 records in one request: all stored, each id where its record was.
jq -nc '[range(10000) | {model: "big", backend: "ollama", latency_seconds: (. / 1000),
	tokens: ., tokens_per_second: 3.5, request_id: "big-\(.)", timestamp: (1732900000 + .)}]' \
	>"$AM_TEST_TMP/big.json"
start=${EPOCHREALTIME/./}
body=$(expect_status "10,000-record batch" 201 POST $M/batch -H 'Content-Type: application/json' \
	--data-binary "@$AM_TEST_TMP/big.json")
elapsed_ms=$(((${EPOCHREALTIME/./} - start) / 1000))
am_assert_eq "10,000 inserted" 10000 "$(jq .inserted <<<"$body")"
am_assert_eq "10,000 distinct ids" 10000 "$(jq '.ids | unique | length' <<<"$body")"
am_assert_eq "each id is its record's row" 10000 "$(psql_with ids "$(jq -c .ids <<<"$body")" \
	"SELECT count(*) FROM llm_performance_metric m
	 JOIN json_array_elements_text(:'ids'::json) WITH ORDINALITY AS a(id, n) ON a.id::bigint = m.id
	 WHERE m.request_id = 'big-' || (a.n - 1) AND m.tokens = a.n - 1")"
echo "10,000-record batch took ${elapsed_ms} ms"

# One more than the limit is refused whole.
before=$(rows)
jq -c '. + [.[0]]' "$AM_TEST_TMP/big.json" >"$AM_TEST_TMP/too_big.json"
expect_error "10,001 records" 413 POST $M/batch -H 'Content-Type: application/json' \
	--data-binary "@$AM_TEST_TMP/too_big.json"
jq -c '.[]' "$AM_TEST_TMP/too_big.json" >"$AM_TEST_TMP/too_big.ndjson"
expect_error "10,001 NDJSON records" 413 POST $M/batch -H 'Content-Type: application/x-ndjson' \
	--data-binary "@$AM_TEST_TMP/too_big.ndjson"
am_assert_eq "nothing stored from refused batches" "$before" "$(rows)"

# --- writes need the bearer token when one is set --------------------------------
admin_start admin_token ADMIN_API_TOKEN=s3cret ADMIN_RETENTION_DAYS=0
one='{"model": "tok", "backend": "ollama", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1}'
expect_error "POST without token" 401 POST $M -H 'Content-Type: application/json' -d "$one"
expect_error "batch without token" 401 POST $M/batch -H 'Content-Type: application/json' -d "[$one]"
expect_error "POST with a wrong token" 401 POST $M -H 'Content-Type: application/json' \
	-H 'Authorization: Bearer nope' -d "$one"
expect_status "POST with the token" 201 POST $M -H 'Content-Type: application/json' \
	-H 'Authorization: Bearer s3cret' -d "$one" >/dev/null
expect_status "GET needs no token" 200 GET "$M?model=tok" >/dev/null
am_assert_eq "only the authorised write stored" 1 \
	"$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE model = 'tok'")"
echo "ok: metrics API compatible"
