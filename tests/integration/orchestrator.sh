#!/usr/bin/env bash
# The orchestrator answers POST /query with classify, synthesize and validate
# calls to Ollama (the simulator), each call one stored metric carrying the
# query's request id, stage, intent and metadata; bad input is refused without
# a call; unknown models are looked up once and cached; health, readiness,
# Prometheus and the router's window summary answer.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/orchestrator_lib.sh"

am_fresh_db
admin_start admin
collector_start collector
sim_start sim SIM_TOKENS_PER_SECOND=500 SIM_TTFT_MS=5 SIM_ANSWER_TOKENS=20
orch_start orch OLLAMA_URL="$SIM_URL" ADMIN_API_URL="$ADMIN" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected

# 1. One query: the answer, and three metrics sharing its request id.
out=$(ask '{"query": "what is the weather like in the kitchen", "session_id": "sess-1",
  "user_id": "user-1", "zone": "kitchen", "device_id": "dev-1"}' -H 'X-Request-Id: orch-q1' \
	-D "$AM_TEST_TMP/h1")
am_assert_eq "query status" 200 "$(http_status "$out")"
body=$(http_body "$out")
jq -e '(.answer | type == "string" and length > 0) and .validated == true
  and .validation == "accepted" and .resynthesized == false and .request_id == "orch-q1"
  and (.timings | (.classify_ms > 0) and (.synthesize_ms > 0) and (.validate_ms > 0)
       and (.queue_ms >= 0) and (.total_ms >= .classify_ms + .synthesize_ms + .validate_ms))' \
	<<<"$body" >/dev/null || am_fail "answer: $body"
intent=$(jq -r .intent <<<"$body")
case $intent in weather_query | music | smart_home | general) ;; *) am_fail "intent '$intent' is not listed" ;; esac
grep -qi '^X-Request-Id: orch-q1' "$AM_TEST_TMP/h1" || am_fail "request id not echoed"

am_wait_for "3 metrics of orch-q1" 30 metrics_are orch-q1 3
am_assert_eq "stages, models, backend, status and intent of each call" \
	"classify|phi3:mini|ollama|ok||$intent
synthesize|llama3.1:8b|ollama|ok||$intent
validate|phi3:mini|ollama|ok||$intent" "$(metrics_of orch-q1)"
am_assert_eq "metadata and measures on every call" 3 "$(am_psql "SELECT count(*)
  FROM llm_performance_metric WHERE request_id = 'orch-q1' AND source = 'orchestrator'
  AND session_id = 'sess-1' AND user_id = 'user-1' AND zone = 'kitchen' AND device_id = 'dev-1'
  AND tokens > 0 AND tokens_per_second > 0 AND prompt_tokens > 0 AND latency_seconds > 0
  AND ttft_seconds IS NULL")"
# The classifier may generate 16 tokens; the simulator's answers have 20.
am_assert_eq "classify is capped by ORCH_CLASSIFY_MAX_TOKENS" 16 \
	"$(am_psql "SELECT tokens FROM llm_performance_metric WHERE request_id = 'orch-q1' AND stage = 'classify'")"

# 2. Without X-Request-Id, one is made up and used everywhere.
out=$(ask '{"query": "play something calm"}' -D "$AM_TEST_TMP/h2")
am_assert_eq "query without request id" 200 "$(http_status "$out")"
rid=$(http_body "$out" | jq -r .request_id)
[[ -n $rid && $rid != null ]] || am_fail "no request id in the answer"
grep -qi "^X-Request-Id: $rid" "$AM_TEST_TMP/h2" || am_fail "header and body request ids differ"
am_wait_for "3 metrics of $rid" 30 metrics_are "$rid" 3

# 3. Bad input: 4xx with {"error": ...} and no LLM call.
calls_before=$(orch_sample athena_orchestrator_backend_requests_total 'backend="ollama",status="ok"')
expect_bad() {
	local desc=$1 want=$2 out
	shift 2
	out=$(curl -s -w '\n%{http_code}' "$@" "$ORCH/query")
	am_assert_eq "$desc: status" "$want" "$(http_status "$out")"
	http_body "$out" | jq -e '.error | type == "string" and length > 0' >/dev/null ||
		am_fail "$desc: body is not {\"error\": ...}: $(http_body "$out")"
}
expect_bad "no query" 400 -d '{"session_id": "s"}'
expect_bad "query not a string" 400 -d '{"query": 42}'
expect_bad "blank query" 400 -d '{"query": "   "}'
expect_bad "zone not a string" 400 -d '{"query": "hi", "zone": ["a"]}'
expect_bad "not JSON" 400 -d 'query=hello'
expect_bad "empty body" 400 -X POST
expect_bad "a JSON array" 400 -d '["hi"]'
expect_bad "GET" 405
head -c 70000 /dev/zero | tr '\0' 'a' | sed 's/^/{"query": "/; s/$/"}/' >"$AM_TEST_TMP/big.json"
expect_bad "body over ORCH_MAX_BODY_KIB" 413 --data-binary "@$AM_TEST_TMP/big.json"
am_assert_eq "no LLM call for bad input" "$calls_before" \
	"$(orch_sample athena_orchestrator_backend_requests_total 'backend="ollama",status="ok"')"
am_assert_eq "bad input counted" 7 "$(orch_sample athena_orchestrator_queries_total 'code="400"')"

# 4. The registry does not know these models (404): two look-ups, then the cache.
for i in 1 2 3 4; do
	am_assert_eq "query $i" 200 "$(http_status "$(ask "{\"query\": \"question number $i\"}")")"
done
am_assert_eq "look-ups by the orchestrator" 2 \
	"$(orch_sample athena_orchestrator_registry_lookups_total 'result="not_found"')"
am_assert_eq "look-ups the admin-api answered" 2 "$(admin_lookups)"
am_assert_eq "cache hits" 16 "$(orch_sample athena_orchestrator_registry_cache_hits_total)"
am_wait_for "18 orchestrator metrics" 30 orch_rows_are 18

# 5. Health, readiness, Prometheus text, and the window summary.
curl -fs "$ORCH/health" | jq -e '.status == "ok"' >/dev/null || am_fail "/health"
curl -fs "$ORCH/ready" | jq -e '.status == "ready" and .ollama == "ok" and .registry == "ok"' \
	>/dev/null || am_fail "/ready: $(curl -s "$ORCH/ready")"
if command -v promtool >/dev/null; then
	curl -fs "$ORCH/metrics" | promtool check metrics || am_fail "promtool rejects /metrics"
fi
am_assert_eq "queries answered" 6 "$(orch_sample athena_orchestrator_queries_total 'code="200"')"
am_assert_eq "classify calls" 6 \
	"$(orch_sample athena_orchestrator_llm_calls_total 'backend="ollama",stage="classify",status="ok"')"
am_assert_eq "call histogram" 18 "$(orch_sample athena_orchestrator_llm_call_duration_seconds_count)"
am_assert_eq "metrics published" 18 "$(orch_sample athena_orchestrator_metrics_queued_total)"
summary=$(curl -fs "$ORCH/router/metrics")
jq -e '.total_requests == 18 and .errors == 0 and .window_seconds == 300
  and .by_model["phi3:mini"].requests == 12 and .by_model["llama3.1:8b"].requests == 6
  and .by_backend.ollama.requests == 18 and .avg_tokens_per_second > 100
  and .by_backend.ollama.avg_latency_seconds > 0' <<<"$summary" >/dev/null ||
	am_fail "/router/metrics: $summary"

# 6. Ollama gone: not ready.
am_stop sim
am_wait_for "not ready without Ollama" 10 \
	bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' '$ORCH/ready') == 503 ]]"
orch_stop orch
echo "ok: orchestrator pipeline, metrics, bad input, registry cache, health"
