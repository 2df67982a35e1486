#!/usr/bin/env bash
# Failures and the validator's rejection, each measured: a backend that stalls
# past the timeout gives 504 and error metrics; Ollama down gives 502 after
# one safe retry per call; a classifier or validator that fails leaves the
# query answered (intent general, answer not validated); a validator that says
# INVALID makes the pipeline synthesize once more (four metrics).
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"
source "$AM_SOURCE_DIR/tests/integration/orchestrator_lib.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1
collector_start collector

# 1. A backend that stalls before its first token, and a 300 ms timeout.
sim_start slow SIM_FAIL_RATE=1 SIM_FAIL_MODES=slow SIM_FAIL_AFTER_TOKENS=0 SIM_STALL_MS=60000
orch_start orch-slow OLLAMA_URL="$SIM_URL" ADMIN_API_URL= METRICS_BUS_URLS="$COLLECTOR_BUS" \
	ORCH_OLLAMA_TIMEOUT_MS=300
am_wait_for "orchestrator connected to the collector" 30 orch_connected
t0=${EPOCHREALTIME/,/.}
out=$(ask '{"query": "is it going to rain"}' -H 'X-Request-Id: f-timeout')
t1=${EPOCHREALTIME/,/.}
am_assert_eq "timeout: status" 504 "$(http_status "$out")"
http_body "$out" | jq -e '.stage == "synthesize" and .error_type == "timeout"
  and .request_id == "f-timeout"' >/dev/null || am_fail "timeout: body $(http_body "$out")"
# Two calls of 300 ms each (classify, then synthesize), not the 60 s stall.
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 5) }' || am_fail "timeout took $t0 .. $t1"
am_wait_for "2 metrics of f-timeout" 30 metrics_are f-timeout 2
am_assert_eq "timeout: metrics" \
	"classify|phi3:mini|ollama|error|timeout|general
synthesize|llama3.1:8b|ollama|error|timeout|general" "$(metrics_of f-timeout)"
am_assert_eq "timeout: latency of each call" 2 "$(am_psql "SELECT count(*) FROM llm_performance_metric
  WHERE request_id = 'f-timeout' AND latency_seconds BETWEEN 0.29 AND 2 AND tokens = 0")"
am_assert_eq "504 counted" 1 "$(orch_sample athena_orchestrator_queries_total 'code="504"')"
orch_stop orch-slow
am_stop slow

# 2. Ollama refuses connections: each call is tried twice, then 502.
orch_start orch-down OLLAMA_URL="http://127.0.0.1:$(am_free_port)" ADMIN_API_URL= \
	METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "lights off"}' -H 'X-Request-Id: f-down')
am_assert_eq "Ollama down: status" 502 "$(http_status "$out")"
http_body "$out" | jq -e '.error_type == "backend_unavailable"' >/dev/null ||
	am_fail "Ollama down: body $(http_body "$out")"
am_wait_for "2 metrics of f-down" 30 metrics_are f-down 2
am_assert_eq "Ollama down: metrics" \
	"classify|phi3:mini|ollama|error|backend_unavailable|general
synthesize|llama3.1:8b|ollama|error|backend_unavailable|general" "$(metrics_of f-down)"
am_assert_eq "one retry per call" 2 "$(orch_sample athena_orchestrator_backend_retries_total)"
am_assert_eq "requests made" 4 \
	"$(orch_sample athena_orchestrator_backend_requests_total 'backend="ollama",status="error"')"
curl -s -o /dev/null -w '%{http_code}' "$ORCH/ready" | grep -qx 503 || am_fail "ready without Ollama"
orch_stop orch-down

sim_start sim SIM_TOKENS_PER_SECOND=1000 SIM_TTFT_MS=5 SIM_ANSWER_TOKENS=40

# 3. Classifier and validator models the backend does not have (404): the query
# is still answered, with the fallback intent and not validated.
orch_start orch-missing OLLAMA_URL="$SIM_URL" ADMIN_API_URL= METRICS_BUS_URLS="$COLLECTOR_BUS" \
	ORCH_CLASSIFY_MODEL=no-such-classifier ORCH_VALIDATE_MODEL=no-such-validator
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "turn up the heating"}' -H 'X-Request-Id: f-missing')
am_assert_eq "missing models: status" 200 "$(http_status "$out")"
http_body "$out" | jq -e '.intent == "general" and .validated == false and .validation == "error"
  and (.answer | length > 0)' >/dev/null || am_fail "missing models: body $(http_body "$out")"
am_wait_for "3 metrics of f-missing" 30 metrics_are f-missing 3
am_assert_eq "missing models: metrics" \
	"classify|no-such-classifier|ollama|error|http_404|general
synthesize|llama3.1:8b|ollama|ok||general
validate|no-such-validator|ollama|error|http_404|general" "$(metrics_of f-missing)"
orch_stop orch-missing

# 4. A validator that rejects. The simulator writes words from a fixed
# vocabulary plus, one word in six, words of the prompt's first 32 plain words
# (docs/OLLAMA-SIM.md). A system prompt made only of INVALID makes the
# validator say INVALID, as a real model told to reject everything would; one
# made only of music makes the classifier answer music. The default prompts
# quote their keywords ("VALID", music,), which the simulator never echoes.
invalid=$(printf 'INVALID %.0s' {1..40})
music=$(printf 'music %.0s' {1..40})
orch_start orch-reject OLLAMA_URL="$SIM_URL" ADMIN_API_URL= METRICS_BUS_URLS="$COLLECTOR_BUS" \
	ORCH_VALIDATE_PROMPT="$invalid" ORCH_VALIDATE_MAX_TOKENS=0 \
	ORCH_CLASSIFY_PROMPT="$music" ORCH_CLASSIFY_MAX_TOKENS=0
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "who wrote the moonlight sonata", "session_id": "sess-r"}' -H 'X-Request-Id: f-reject')
am_assert_eq "rejected: status" 200 "$(http_status "$out")"
body=$(http_body "$out")
jq -e '.intent == "music" and .validated == false and .validation == "rejected"
  and .resynthesized == true and (.answer | length > 0) and .timings.synthesize_ms > 0' \
	<<<"$body" >/dev/null || am_fail "rejected: body $body"
am_wait_for "4 metrics of f-reject" 30 metrics_are f-reject 4
am_assert_eq "rejected: four calls, the last a second synthesis" \
	"classify|phi3:mini|ollama|ok||music
synthesize|llama3.1:8b|ollama|ok||music
validate|phi3:mini|ollama|ok||music
synthesize|llama3.1:8b|ollama|ok||music" "$(metrics_of f-reject)"
am_assert_eq "rejected: session on every call" 4 "$(am_psql "SELECT count(*)
  FROM llm_performance_metric WHERE request_id = 'f-reject' AND session_id = 'sess-r'")"
# The second synthesis saw the rejected answer and the verdict: a longer prompt.
am_assert_eq "the second synthesis carries the first answer" t "$(am_psql "SELECT
  max(prompt_tokens) FILTER (WHERE id = (SELECT max(id) FROM llm_performance_metric WHERE request_id = 'f-reject'))
  > min(prompt_tokens) FILTER (WHERE stage = 'synthesize')
  FROM llm_performance_metric WHERE request_id = 'f-reject'")"
orch_stop orch-reject
echo "ok: timeouts, outages, failed steps and re-synthesis, all measured"
