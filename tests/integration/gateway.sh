#!/usr/bin/env bash
# The gateway answers OpenAI chat completions from Ollama (the simulator), plain
# and streamed, and every call, failed or not, becomes one stored metric.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1
collector_start collector
sim_start sim SIM_TOKENS_PER_SECOND=200 SIM_TTFT_MS=50 SIM_ANSWER_TOKENS=20
gateway_start gateway OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "gateway connected to the collector" 30 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_bus_subscribers 1'"

msgs='"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"what is the weather like"}]'

# 1. Plain call, mapped model, metadata from headers.
out=$(chat "{\"model\":\"gpt-3.5-turbo\",$msgs}" -D "$AM_TEST_TMP/h1" \
	-H 'X-Request-Id: req-plain-1' -H 'X-Session-Id: sess-1' -H 'X-User-Id: user-1' \
	-H 'X-Zone: kitchen' -H 'X-Device-Id: dev-1')
am_assert_eq "plain call status" 200 "$(http_status "$out")"
body=$(http_body "$out")
am_assert_eq "object" chat.completion "$(jq -r .object <<<"$body")"
am_assert_eq "model actually used" phi3:mini "$(jq -r .model <<<"$body")"
am_assert_eq "finish_reason" stop "$(jq -r '.choices[0].finish_reason' <<<"$body")"
am_assert_eq "completion tokens" 20 "$(jq -r .usage.completion_tokens <<<"$body")"
am_assert_eq "prompt tokens (words of the messages)" 7 "$(jq -r .usage.prompt_tokens <<<"$body")"
am_assert_eq "total tokens" 27 "$(jq -r .usage.total_tokens <<<"$body")"
[[ -n $(jq -r '.choices[0].message.content' <<<"$body") ]] || am_fail "empty answer"
grep -qi '^X-Request-Id: req-plain-1' "$AM_TEST_TMP/h1" || am_fail "request id not echoed"

# 2. Streamed call with usage: chunks with one id, a finish chunk, usage, [DONE].
out=$(chat "{\"model\":\"llama3.1:8b\",$msgs,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" \
	-N -H 'X-Request-Id: req-stream-1')
am_assert_eq "stream status" 200 "$(http_status "$out")"
events=$(http_body "$out" | grep '^data: ' | sed 's/^data: //')
am_assert_eq "last event" "[DONE]" "$(tail -n 1 <<<"$events")"
chunks=$(grep -v '^\[DONE\]$' <<<"$events")
am_assert_eq "one id on every chunk" 1 "$(jq -r .id <<<"$chunks" | sort -u | wc -l)"
am_assert_eq "one created on every chunk" 1 "$(jq -r .created <<<"$chunks" | sort -u | wc -l)"
am_assert_eq "first delta has the role" assistant "$(head -n 1 <<<"$chunks" | jq -r '.choices[0].delta.role')"
am_assert_eq "finish chunk" stop "$(jq -r 'select(.choices | length > 0) | .choices[0].finish_reason // empty' <<<"$chunks")"
am_assert_eq "usage chunk" 20 "$(jq -r 'select(.usage) | .usage.completion_tokens' <<<"$chunks")"
am_assert_eq "content chunks" 20 "$(jq -r 'select(.choices | length > 0) | .choices[0].delta.content // empty' <<<"$chunks" | grep -c .)"

# 3. A stream is relayed as it is generated: at 5 tokens/s the first chunk
# arrives well before the last.
sim_start slow SIM_TOKENS_PER_SECOND=5 SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=6
gateway_start gw-slow OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
curl -sN -H 'Content-Type: application/json' -d "{\"model\":\"phi3:mini\",$msgs,\"stream\":true}" \
	"$GATEWAY/v1/chat/completions" | while IFS= read -r line; do
	if [[ $line == data:* ]]; then printf '%s %s\n' "${EPOCHREALTIME/,/.}" "${line:0:40}"; fi
done >"$AM_TEST_TMP/arrivals"
first=$(head -n 1 "$AM_TEST_TMP/arrivals" | cut -d' ' -f1)
last=$(tail -n 1 "$AM_TEST_TMP/arrivals" | cut -d' ' -f1)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b - a > 0.6) }' ||
	am_fail "chunks were not relayed as generated (first $first, last $last)"

# 3b. Concurrent streams do not mix: each streamed answer equals the plain
# answer to the same prompt (the simulator is deterministic per prompt).
measured_gateway=$GATEWAY
gateway_start gw-conc OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false
pids=()
for i in 1 2 3 4 5 6 7 8; do
	body="{\"model\":\"phi3:mini\",\"messages\":[{\"role\":\"user\",\"content\":\"question $i about zone $i\"}],\"stream\":true}"
	curl -sN -H 'Content-Type: application/json' -d "$body" "$GATEWAY/v1/chat/completions" \
		>"$AM_TEST_TMP/conc-$i.sse" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || am_fail "a concurrent stream failed"; done
for i in 1 2 3 4 5 6 7 8; do
	streamed=$(grep '^data: {' "$AM_TEST_TMP/conc-$i.sse" | sed 's/^data: //' |
		jq -j 'select(.choices | length > 0) | .choices[0].delta.content // empty')
	plain=$(chat "{\"model\":\"phi3:mini\",\"messages\":[{\"role\":\"user\",\"content\":\"question $i about zone $i\"}]}" |
		sed '$d' | jq -j '.choices[0].message.content')
	[[ -n $plain ]] || am_fail "empty plain answer for prompt $i"
	am_assert_eq "stream $i carries its own answer" "$plain" "$streamed"
done

# 3c. A call past GATEWAY_MAX_CALLS is refused at once with 503 in OpenAI's
# shape, and counted; the call running meanwhile is answered.
gateway_start gw-max OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false GATEWAY_MAX_CALLS=1
curl -sN -H 'Content-Type: application/json' -d "{\"model\":\"phi3:mini\",$msgs,\"stream\":true}" \
	"$GATEWAY/v1/chat/completions" >"$AM_TEST_TMP/max-first.sse" &
first_pid=$!
am_wait_for "one call running" 10 bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_calls 1'"
out=$(chat "{\"model\":\"phi3:mini\",$msgs}")
am_assert_eq "call over the bound" 503 "$(http_status "$out")"
am_assert_eq "refusal in OpenAI's shape" invalid_request_error "$(http_body "$out" | jq -r .error.type)"
wait "$first_pid" || am_fail "the running call failed"
grep -q '^data: \[DONE\]' "$AM_TEST_TMP/max-first.sse" || am_fail "the running call was not answered"
prom=$(curl -fs "$GATEWAY/metrics")
am_assert_eq "refusal counted" 1 "$(awk '/^athena_gateway_calls_rejected_total / { print $2 }' <<<"$prom")"

# 3d. A client that reads slower than Ollama writes still gets the whole
# stream: about 1.7 MiB of events at 100000 tokens/s, read at 512 KiB/s.
sim_start big SIM_TOKENS_PER_SECOND=100000 SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=10000
gateway_start gw-slow-reader OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false
curl -sN --limit-rate 512k -H 'Content-Type: application/json' \
	-d "{\"model\":\"phi3:mini\",$msgs,\"stream\":true}" "$GATEWAY/v1/chat/completions" \
	>"$AM_TEST_TMP/slow-reader.sse"
am_assert_eq "slow reader: last event" "data: [DONE]" "$(grep '^data: ' "$AM_TEST_TMP/slow-reader.sse" | tail -n 1)"
am_assert_eq "slow reader: every token" 10000 "$(grep '^data: {' "$AM_TEST_TMP/slow-reader.sse" |
	sed 's/^data: //' | jq -r 'select(.choices | length > 0) | .choices[0].delta.content // empty' | grep -c .)"
am_assert_eq "slow reader: the call succeeded" 1 \
	"$(curl -fs "$GATEWAY/metrics" | awk '/^athena_gateway_calls_ok_total / { print $2 }')"

# 3e. A client that stops reading gets its Ollama transfer held back once
# 1 MiB waits in the gateway: the answer (about 185 bytes of events a token)
# outgrows what the kernel buffers on the loopback connection (the
# gateway's send buffer grows up to tcp_wmem's maximum, 4 MiB by default,
# and the client's receive buffer holds about 128 KiB more). When the client
# then leaves, the call ends at once, not when GATEWAY_TIMEOUT_S runs out.
wmem_max=$(awk '{ print $3 }' /proc/sys/net/ipv4/tcp_wmem)
huge_tokens=$(((wmem_max + (4 << 20)) / 150))
# (100000, the simulator's most, about 18 MB of events, outgrows a maximum of up to 16 MiB)
((huge_tokens <= 100000)) || huge_tokens=100000
((huge_tokens >= 20000)) || huge_tokens=20000
sim_start huge SIM_TOKENS_PER_SECOND=100000 SIM_TTFT_MS=0 "SIM_ANSWER_TOKENS=$huge_tokens"
gateway_start gw-leaver OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false GATEWAY_TIMEOUT_S=120
body="{\"model\":\"phi3:mini\",$msgs,\"stream\":true}"
exec {leaver}<>"/dev/tcp/127.0.0.1/${GATEWAY##*:}"
printf 'POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
	"${#body}" "$body" >&"$leaver"
am_wait_for "the transfer held back for the client that does not read ($huge_tokens tokens; tcp_wmem max $wmem_max)" 30 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_streams_paused 1'"
exec {leaver}>&-
am_wait_for "the call ended with its client" 10 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_calls 0'"
prom=$(curl -fs "$GATEWAY/metrics")
am_assert_eq "the left call counted as failed" 1 "$(awk '/^athena_gateway_calls_error_total / { print $2 }' <<<"$prom")"
am_assert_eq "no transfer held back" 0 "$(awk '/^athena_gateway_streams_paused / { print $2 }' <<<"$prom")"

# 3f. Ollama restarting closes the kept-alive connections the gateway holds;
# the calls after it open new ones (whose sockets may reuse the old
# descriptor numbers) and are answered, as many at once as before.
sim_start restart SIM_TOKENS_PER_SECOND=100000 SIM_TTFT_MS=300 SIM_ANSWER_TOKENS=5
restart_url=$SIM_URL
# By name: libcurl's resolver and its connection attempts open and close sockets of their own.
gateway_start gw-restart OLLAMA_URL="http://localhost:${restart_url##*:}" METRICS_ENABLED=false GATEWAY_THREADS=1
calls_at_once() {
	local label=$1 i pids=()
	for i in 1 2 3 4 5 6; do
		chat "{\"model\":\"phi3:mini\",$msgs}" >"$AM_TEST_TMP/restart-$label-$i" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || am_fail "$label: call $((i + 1)) failed"
		am_assert_eq "$label: call $((i + 1))" 200 "$(http_status "$(<"$AM_TEST_TMP/restart-$label-$((i + 1))")")"
	done
}
calls_at_once "before the restart"
kept=$(ss -Htn state established "( dport = :${restart_url##*:} )" | wc -l)
((kept >= 1)) || am_fail "the gateway kept no connection to Ollama after its calls"
am_stop restart
am_bg restart-again env LISTEN_ADDR="127.0.0.1:${restart_url##*:}" SIM_TOKENS_PER_SECOND=100000 \
	SIM_TTFT_MS=300 SIM_ANSWER_TOKENS=5 "$AM_BIN_DIR/athena-ollama-sim"
am_wait_for "Ollama back" 30 curl -fs "$restart_url/api/version"
calls_at_once "after the restart"
calls_at_once "after the restart, on the new connections"
GATEWAY=$measured_gateway

# 4. Failures are answered in OpenAI's shape and measured.
out=$(chat "{\"model\":\"no-such-model\",$msgs}" -H 'X-Request-Id: req-404')
am_assert_eq "unknown model status" 404 "$(http_status "$out")"
am_assert_eq "unknown model code" model_not_found "$(http_body "$out" | jq -r .error.code)"
out=$(chat '{"model":"gpt-4","messages":[]}' -H 'X-Request-Id: req-bad')
am_assert_eq "bad request status" 400 "$(http_status "$out")"
am_assert_eq "bad request names the field" messages "$(http_body "$out" | jq -r .error.param)"
out=$(curl -s -w '\n%{http_code}' -H 'Content-Type: text/plain' -d 'x' "$GATEWAY/v1/chat/completions")
am_assert_eq "wrong content type" 415 "$(http_status "$out")"

gateway_start gw-down OLLAMA_URL="http://127.0.0.1:$(am_free_port)" METRICS_BUS_URLS="$COLLECTOR_BUS"
out=$(chat "{\"model\":\"phi3:mini\",$msgs}" -H 'X-Request-Id: req-down')
am_assert_eq "backend down status" 502 "$(http_status "$out")"

sim_start broken SIM_FAIL_RATE=1 SIM_FAIL_MODES=error_line SIM_FAIL_AFTER_TOKENS=3
gateway_start gw-broken OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
out=$(chat "{\"model\":\"phi3:mini\",$msgs,\"stream\":true}" -N -H 'X-Request-Id: req-midstream')
am_assert_eq "mid-stream failure keeps 200" 200 "$(http_status "$out")"
http_body "$out" | grep -q '"error"' || am_fail "mid-stream failure not reported in the stream"

# A backend slower than GATEWAY_TIMEOUT_S is a 504.
sim_start stalled SIM_TTFT_MS=10000
gateway_start gw-timeout OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS" GATEWAY_TIMEOUT_S=1
out=$(chat "{\"model\":\"phi3:mini\",$msgs}" -H 'X-Request-Id: req-timeout')
am_assert_eq "backend timeout status" 504 "$(http_status "$out")"

# A client that leaves mid-stream stops the upstream call: 50 tokens at 5/s
# would take 10 s, the client leaves after 1 s.
sim_start long SIM_TOKENS_PER_SECOND=5 SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=50
gateway_start gw-leave OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
curl -sN --max-time 1 -H 'Content-Type: application/json' -H 'X-Request-Id: req-left' \
	-d "{\"model\":\"phi3:mini\",$msgs,\"stream\":true}" "$GATEWAY/v1/chat/completions" \
	>/dev/null || true

# 5. Every call above is one metric (the bad request and 415 are not calls).
stored() { [[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source = 'gateway'") == 8 ]]; }
am_wait_for "8 gateway metrics" 30 stored
am_assert_eq "timeout metric" "error|timeout" \
	"$(am_psql "SELECT status, error_type FROM llm_performance_metric WHERE request_id = 'req-timeout'")"
am_assert_eq "client left: recorded and the upstream call stopped early" "error|client_closed|t" \
	"$(am_psql "SELECT status, error_type, latency_seconds < 5 FROM llm_performance_metric WHERE request_id = 'req-left'")"
row=$(am_psql "SELECT model, backend, tokens, prompt_tokens, status, session_id, user_id, zone, device_id,
  ttft_seconds IS NULL, tokens_per_second > 0 FROM llm_performance_metric WHERE request_id = 'req-plain-1'")
am_assert_eq "plain call metric" "phi3:mini|ollama|20|7|ok|sess-1|user-1|kitchen|dev-1|t|t" "$row"
row=$(am_psql "SELECT model, tokens, status, ttft_seconds > 0 AND ttft_seconds < latency_seconds
  FROM llm_performance_metric WHERE request_id = 'req-stream-1'")
am_assert_eq "stream metric with time to first token" "llama3.1:8b|20|ok|t" "$row"
am_assert_eq "unknown model metric" "error|http_404" \
	"$(am_psql "SELECT status, error_type FROM llm_performance_metric WHERE request_id = 'req-404'")"
am_assert_eq "backend down metric" "error|backend_unavailable" \
	"$(am_psql "SELECT status, error_type FROM llm_performance_metric WHERE request_id = 'req-down'")"
am_assert_eq "mid-stream failure metric" "error|backend_error" \
	"$(am_psql "SELECT status, error_type FROM llm_performance_metric WHERE request_id = 'req-midstream'")"
am_assert_eq "a request id was generated when none was sent" 0 \
	"$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source = 'gateway' AND request_id IS NULL")"

# 6. /metrics is valid Prometheus text with the GenAI histograms and publisher counters.
if command -v promtool >/dev/null; then
	curl -fs "$GATEWAY/metrics" | promtool check metrics || am_fail "promtool rejects the gateway's /metrics"
fi
# Read once, then grep the text: grep -q closing a pipe early would fail curl under pipefail.
prom=$(curl -fs "$GATEWAY/metrics")
grep -q '^athena_gateway_operation_duration_seconds_bucket{le="81.92"}' <<<"$prom" ||
	am_fail "no GenAI operation duration histogram"
grep -q '^athena_gateway_metrics_queued_total' <<<"$prom" || am_fail "no publisher counters"

# 7. /v1/models lists Ollama's models and the aliases.
gateway_start gw-models OLLAMA_URL="$SIM_URL" GATEWAY_MODEL_MAP="house-model=mistral:7b" METRICS_ENABLED=false
models=$(curl -fs "$GATEWAY/v1/models")
jq -e '.object == "list" and ([.data[].id] | index("phi3:mini") and index("gpt-4") and index("house-model"))' \
	<<<"$models" >/dev/null || am_fail "/v1/models: $models"
# 8. JSON mode reaches Ollama: response_format json_object and json_schema
# give an answer that is one JSON object (the simulator answers
# {"text": ...} when Ollama's "format" is set), plain and streamed; the
# penalties are forwarded as numbers (the simulator refuses anything else).
sim_start json SIM_TOKENS_PER_SECOND=1000 SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=8
gateway_start gw-json OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false
for rf in '{"type":"json_object"}' \
	'{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"object","properties":{"text":{"type":"string"}}}}}'; do
	out=$(chat "{\"model\":\"phi3:mini\",$msgs,\"response_format\":$rf,\"frequency_penalty\":0.5,\"presence_penalty\":-0.5}")
	am_assert_eq "response_format $rf: status" 200 "$(http_status "$out")"
	http_body "$out" | jq -e '.choices[0].message.content | fromjson | .text | length > 0' >/dev/null ||
		am_fail "response_format $rf: the answer is not a JSON object: $(http_body "$out")"
done
out=$(chat "{\"model\":\"phi3:mini\",$msgs,\"stream\":true,\"response_format\":{\"type\":\"json_object\"}}" -N)
am_assert_eq "streamed JSON mode: status" 200 "$(http_status "$out")"
http_body "$out" | sed -n 's/^data: //p' | grep -v '^\[DONE\]$' |
	jq -sje '[.[].choices[0].delta.content // empty] | join("") | fromjson | .text' >/dev/null ||
	am_fail "streamed JSON mode: the deltas do not make one JSON object"
out=$(chat "{\"model\":\"phi3:mini\",$msgs,\"response_format\":{\"type\":\"xml\"}}")
am_assert_eq "unknown response_format: status" 400 "$(http_status "$out")"
am_assert_eq "unknown response_format: param" response_format.type "$(http_body "$out" | jq -r .error.param)"
# OpenAI's "user" is the metric's user_id when no X-User-Id header says otherwise.
gateway_start gw-user OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "gw-user connected to the collector" 30 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_bus_subscribers 1'"
chat "{\"model\":\"phi3:mini\",$msgs,\"user\":\"body-user\"}" -H 'X-Request-Id: req-user-body' >/dev/null
chat "{\"model\":\"phi3:mini\",$msgs,\"user\":\"body-user\"}" -H 'X-Request-Id: req-user-header' \
	-H 'X-User-Id: header-user' >/dev/null
users() { [[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE request_id LIKE 'req-user-%'") == 2 ]]; }
am_wait_for "both user calls measured" 30 users
am_assert_eq "user_id from the body's user, unless X-User-Id says" $'header-user\nbody-user' \
	"$(am_psql "SELECT user_id FROM llm_performance_metric WHERE request_id LIKE 'req-user-%' ORDER BY request_id DESC")"

# 9. A client that leaves before its answer begins ends the call to Ollama
# too, plain or streamed: the simulator would take 30 s to the first token,
# each client leaves after 1 s, and soon no call runs (the gateway watches a
# waiting client's socket once its call has run 100 ms). Both are measured.
sim_start waiting SIM_TTFT_MS=30000
gateway_start gw-watch OLLAMA_URL="$SIM_URL" METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "gw-watch connected to the collector" 30 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_bus_subscribers 1'"
for stream in false true; do
	curl -s --max-time 1 -H 'Content-Type: application/json' -H "X-Request-Id: req-gone-$stream" \
		-d "{\"model\":\"phi3:mini\",$msgs,\"stream\":$stream}" "$GATEWAY/v1/chat/completions" \
		>/dev/null || true
done
am_wait_for "no call running once the clients left" 10 \
	bash -c "curl -fs '$GATEWAY/metrics' | grep -q '^athena_gateway_calls 0'"
gone() { [[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE request_id LIKE 'req-gone-%'") == 2 ]]; }
am_wait_for "both calls measured" 30 gone
am_assert_eq "clients that left: measured, the calls ended early" $'error|client_closed|t\nerror|client_closed|t' \
	"$(am_psql "SELECT status, error_type, latency_seconds < 5 FROM llm_performance_metric
	  WHERE request_id LIKE 'req-gone-%' ORDER BY request_id")"
# Their answers, which nobody read, are 499s (as nginx counts them), not 5xx.
prom=$(curl -fs "$GATEWAY/metrics")
am_assert_eq "clients that left: 4xx responses" 2 \
	"$(awk '/^athena_gateway_responses_total\{code="4xx"\}/ { print $2 }' <<<"$prom")"
am_assert_eq "clients that left: no 5xx response" 0 \
	"$(awk '/^athena_gateway_responses_total\{code="5xx"\}/ { print $2 }' <<<"$prom")"
echo "ok: gateway plain, streamed, failed and measured"
