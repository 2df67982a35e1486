#!/usr/bin/env bash
# The router takes each model's backend from the admin-api's registry: mlx
# (an OpenAI-compatible server: the gateway in front of the simulator), auto
# (MLX first, Ollama when MLX is down, the metric saying ollama), and Ollama
# for unknown models or when the registry is unreachable. Answers are cached
# for ORCH_REGISTRY_TTL_S, then asked for again.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/orchestrator_lib.sh"

am_fresh_db
admin_start admin
collector_start collector
sim_start sim SIM_TOKENS_PER_SECOND=500 SIM_TTFT_MS=5 SIM_ANSWER_TOKENS=20
# The "MLX" server: OpenAI's API over the same simulator, measuring nothing itself.
gateway_start mlx OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false
mlx_url=$GATEWAY
dead_url=http://127.0.0.1:$(am_free_port)

register llama3.1:8b mlx "$mlx_url" >/dev/null
auto_id=$(register phi3:mini auto "$dead_url")

# 1. Synthesis on MLX; classify and validate on auto with MLX down, so Ollama.
orch_start orch OLLAMA_URL="$SIM_URL" ADMIN_API_URL="$ADMIN" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "dim the lights in the hall"}' -H 'X-Request-Id: be-1')
am_assert_eq "query status" 200 "$(http_status "$out")"
am_wait_for "3 metrics of be-1" 30 metrics_are be-1 3
intent=$(http_body "$out" | jq -r .intent)
am_assert_eq "backends actually used" \
	"classify|phi3:mini|ollama|ok||$intent
synthesize|llama3.1:8b|mlx|ok||$intent
validate|phi3:mini|ollama|ok||$intent" "$(metrics_of be-1)"
# The OpenAI answer's usage gives the tokens; the rate is over the request's time.
am_assert_eq "mlx tokens from usage.completion_tokens" "20|t|t" "$(am_psql "SELECT tokens,
  prompt_tokens > 0, tokens_per_second > 0 FROM llm_performance_metric
  WHERE request_id = 'be-1' AND stage = 'synthesize'")"
am_assert_eq "fallbacks from MLX to Ollama" 2 "$(orch_sample athena_orchestrator_backend_fallbacks_total)"
am_assert_eq "MLX requests that failed" 2 \
	"$(orch_sample athena_orchestrator_backend_requests_total 'backend="mlx",status="error"')"
am_assert_eq "MLX requests that answered" 1 \
	"$(orch_sample athena_orchestrator_backend_requests_total 'backend="mlx",status="ok"')"
am_assert_eq "synthesize calls on mlx" 1 \
	"$(orch_sample athena_orchestrator_llm_calls_total 'backend="mlx",stage="synthesize",status="ok"')"

# 2. The cache: one look-up per model for many calls.
for i in 1 2 3 4 5; do
	am_assert_eq "query $i" 200 "$(http_status "$(ask "{\"query\": \"question number $i\"}")")"
done
am_assert_eq "look-ups by the orchestrator" 2 \
	"$(orch_sample athena_orchestrator_registry_lookups_total 'result="found"')"
am_assert_eq "look-ups the admin-api answered" 2 "$(admin_lookups)"
am_assert_eq "cache hits" 16 "$(orch_sample athena_orchestrator_registry_cache_hits_total)"
summary=$(curl -fs "$ORCH/router/metrics")
jq -e '.by_backend.mlx.requests == 6 and .by_backend.ollama.requests == 12
  and .by_model["llama3.1:8b"].requests == 6 and .errors == 0' <<<"$summary" >/dev/null ||
	am_fail "/router/metrics: $summary"
orch_stop orch

# 3. With a TTL of 1 s the answers expire and are asked for again.
orch_start orch-ttl OLLAMA_URL="$SIM_URL" ADMIN_API_URL="$ADMIN" METRICS_ENABLED=false \
	ORCH_REGISTRY_TTL_S=1
am_assert_eq "first query" 200 "$(http_status "$(ask '{"query": "hello"}')")"
am_assert_eq "look-ups of the first query" 2 \
	"$(orch_sample athena_orchestrator_registry_lookups_total 'result="found"')"
asked_again() {
	[[ $(http_status "$(ask '{"query": "hello again"}')") == 200 ]] || return 1
	(($(orch_sample athena_orchestrator_registry_lookups_total 'result="found"') >= 4))
}
am_wait_for "look-ups after the TTL" 20 asked_again
orch_stop orch-ttl

# 4. A model registered as mlx whose server is down: the call fails, measured as mlx.
out=$(curl -s -w '\n%{http_code}' -X PUT -H 'Content-Type: application/json' \
	-d "{\"backend_type\": \"ollama\", \"endpoint_url\": \"$SIM_URL\"}" "$ADMIN/api/llm-backends/$auto_id")
am_assert_eq "phi3:mini moved to ollama" 200 "$(http_status "$out")"
gateway_start mlx-gone OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false
gone=$GATEWAY
am_stop mlx-gone
curl -s -o /dev/null -X DELETE "$ADMIN/api/llm-backends/$(curl -fs "$ADMIN/api/llm-backends/model/llama3.1:8b" | jq -r .id)"
register llama3.1:8b mlx "$gone" >/dev/null
orch_start orch-down OLLAMA_URL="$SIM_URL" ADMIN_API_URL="$ADMIN" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "what time is it"}' -H 'X-Request-Id: be-down')
am_assert_eq "MLX down: status" 502 "$(http_status "$out")"
http_body "$out" | jq -e '.stage == "synthesize" and .error_type == "backend_unavailable"
  and .request_id == "be-down" and (.error | length > 0)' >/dev/null ||
	am_fail "MLX down: body $(http_body "$out")"
am_wait_for "2 metrics of be-down" 30 metrics_are be-down 2
intent=$(am_psql "SELECT intent FROM llm_performance_metric WHERE request_id = 'be-down' AND stage = 'classify'")
am_assert_eq "MLX down: calls" \
	"classify|phi3:mini|ollama|ok||$intent
synthesize|llama3.1:8b|mlx|error|backend_unavailable|$intent" "$(metrics_of be-down)"
# The connection was refused, so the one retry was safe.
am_assert_eq "retries of the refused connection" 1 "$(orch_sample athena_orchestrator_backend_retries_total)"
orch_stop orch-down

# 5. The registry unreachable: every model goes to Ollama.
orch_start orch-noreg OLLAMA_URL="$SIM_URL" ADMIN_API_URL="$dead_url" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected
out=$(ask '{"query": "good night"}' -H 'X-Request-Id: be-noreg')
am_assert_eq "registry down: status" 200 "$(http_status "$out")"
am_wait_for "3 metrics of be-noreg" 30 metrics_are be-noreg 3
am_assert_eq "registry down: all on ollama" "ollama|3" "$(am_psql "SELECT backend, count(*)
  FROM llm_performance_metric WHERE request_id = 'be-noreg' GROUP BY backend")"
am_assert_eq "failed look-ups" 2 "$(orch_sample athena_orchestrator_registry_lookups_total 'result="error"')"
curl -fs "$ORCH/ready" | jq -e '.status == "ready" and .registry == "unreachable"' >/dev/null ||
	am_fail "/ready without the registry: $(curl -s "$ORCH/ready")"
orch_stop orch-noreg
echo "ok: registry backends mlx, auto and ollama, cache and expiry"
