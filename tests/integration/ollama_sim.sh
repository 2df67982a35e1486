#!/usr/bin/env bash
# athena-ollama-sim speaks Ollama's API: streamed lines that really arrive over
# time, the same answer whole, generate, num_predict and stop, 404 and 400
# errors, every fault mode, the random failure rate, the body bound,
# /metrics, many streams at once on two threads, and the command line.
source "$AM_SOURCE_DIR/tests/lib.sh"

bin=$AM_BIN_DIR/athena-ollama-sim
[[ -x $bin ]] || am_fail "$bin is not built"

# --- command line -----------------------------------------------------------
help=$("$bin" --help)
for var in LISTEN_ADDR SIM_MODELS SIM_TOKENS_PER_SECOND SIM_TTFT_MS SIM_ANSWER_TOKENS \
	SIM_FAIL_RATE SIM_FAIL_MODES SIM_SEED SIM_MAX_BODY_KIB SIM_MAX_CONNECTIONS; do
	grep -q -- "$var" <<<"$help" || am_fail "--help does not name $var"
done
"$bin" --version | grep -Eq '^athena-ollama-sim [0-9]+\.[0-9]+\.[0-9]+$' || am_fail "--version"

expect_exit2() {
	local desc=$1
	shift
	local out rc=0
	out=$("$@" 2>&1 >/dev/null) || rc=$?
	am_assert_eq "$desc: exit code" 2 "$rc"
	am_assert_eq "$desc: one line" 1 "$(printf '%s\n' "$out" | wc -l)"
	grep -q -- "$EXPECT" <<<"$out" || am_fail "$desc: '$out' does not mention $EXPECT"
}
EXPECT=--bogus expect_exit2 "unknown flag" "$bin" --bogus
EXPECT=SIM_FAIL_RATE expect_exit2 "fail rate over 1" env SIM_FAIL_RATE=1.5 "$bin"
EXPECT=SIM_FAIL_RATE expect_exit2 "fail rate not a number" "$bin" --fail-rate often
EXPECT=SIM_TTFT_MS expect_exit2 "ttft not a number" env SIM_TTFT_MS=soon "$bin"
EXPECT=--tokens-per-second expect_exit2 "zero token rate" "$bin" --tokens-per-second 0
EXPECT=SIM_MODELS expect_exit2 "empty model list" env SIM_MODELS=" , " "$bin"
EXPECT=SIM_FAIL_MODES expect_exit2 "unknown fault" "$bin" --fail-modes http_500,explode
EXPECT=LISTEN_ADDR expect_exit2 "bad listen address" env LISTEN_ADDR=nowhere "$bin"

# --- a simulator --------------------------------------------------------------

# sim_start NAME [ENV=VALUE...]: start a simulator on a free port, wait until it
# answers; sets SIM (its base URL).
sim_start() {
	local name=$1 port
	shift
	port=$(am_free_port)
	SIM=http://127.0.0.1:$port
	am_bg "$name" env LISTEN_ADDR="127.0.0.1:$port" "$@" "$bin"
	am_wait_for "$name ready" 10 curl -fs "$SIM/ready"
}

# post PATH BODY [CURL_ARGS...]: POST BODY; prints the body, then the status
# on a line of its own.
post() {
	local path=$1 body=$2
	shift 2
	curl -sS -X POST -w '\n%{http_code}' "$@" -d "$body" "$SIM$path"
}
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }

# stream PATH BODY OUT [CURL_ARGS...]: POST BODY without buffering and write
# each line that arrives to OUT as "<microseconds since the request> <line>".
# Prints curl's exit status.
stream() {
	local path=$1 body=$2 out=$3 t0 line
	shift 3
	t0=${EPOCHREALTIME//[!0-9]/}
	{
		local rc=0
		curl -sSN -X POST "$@" -d "$body" "$SIM$path" 2>/dev/null || rc=$?
		printf '%s\n' "$rc" >"$out.rc"
	} | while IFS= read -r line; do
		printf '%s %s\n' "$((${EPOCHREALTIME//[!0-9]/} - t0))" "$line"
	done >"$out"
	cat "$out.rc"
}
lines_of() { cut -d' ' -f2- "$1"; }
arrival() { sed -n "${2}p" "$1" | cut -d' ' -f1; }

chat_body='{"model":"phi3:mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Why is the sky blue at noon?"}]}'
prompt_words=9 # "Be brief." (2) and "Why is the sky blue at noon?" (7)

sim_start sim SIM_TOKENS_PER_SECOND=50 SIM_TTFT_MS=100 SIM_ANSWER_TOKENS=40
main_sim=$SIM

# --- the fixed endpoints -------------------------------------------------------
am_assert_eq "GET /" "Ollama is running" "$(curl -fsS "$SIM/")"
curl -fsS "$SIM/api/version" | jq -e '.version | test("^[0-9]+\\.[0-9]+\\.[0-9]+")' >/dev/null ||
	am_fail "/api/version has no version"
tags=$(curl -fsS "$SIM/api/tags")
am_assert_eq "models listed" "phi3:mini llama3.1:8b mistral:7b" "$(jq -r '[.models[].name] | join(" ")' <<<"$tags")"
jq -e '.models | all(.model == .name and (.size > 0) and (.digest | length == 64)
	and (.modified_at | length > 0) and (.details.family | length > 0)
	and (.details.parameter_size | endswith("B")) and (.details.quantization_level | length > 0))' \
	<<<"$tags" >/dev/null || am_fail "/api/tags entries lack fields: $tags"
am_assert_eq "llama3.1:8b parameter size" "8.0B" "$(jq -r '.models[1].details.parameter_size' <<<"$tags")"
curl -fsS "$SIM/health" | jq -e '.status == "ok"' >/dev/null || am_fail "/health"
am_assert_eq "unknown path" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$SIM/api/nothing")"
am_assert_eq "GET /api/chat" 405 "$(curl -s -o /dev/null -w '%{http_code}' "$SIM/api/chat")"

# --- streaming chat: 20 tokens at 20 tokens/s after 200 ms --------------------
pace=(-H 'X-Sim-Answer-Tokens: 20' -H 'X-Sim-Tokens-Per-Second: 20' -H 'X-Sim-TTFT-Ms: 200')
out=$AM_TEST_TMP/chat.ndjson
am_assert_eq "streamed chat: curl exit" 0 "$(stream /api/chat "$chat_body" "$out" "${pace[@]}")"
am_assert_eq "streamed chat: lines" 21 "$(wc -l <"$out")"
lines_of "$out" >"$out.json"
head -n 20 "$out.json" | jq -se 'all(.done == false and .model == "phi3:mini"
	and .message.role == "assistant" and (.message.content | length > 0)
	and (.created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")))' >/dev/null ||
	am_fail "streamed chat: token lines malformed: $(head -n 3 "$out.json")"
final=$(tail -n 1 "$out.json")
jq -e --argjson words "$prompt_words" '.done == true and .done_reason == "stop" and .eval_count == 20
	and .prompt_eval_count == $words and .message.content == ""
	and ([.total_duration, .load_duration, .prompt_eval_duration, .eval_duration] | all(type == "number" and . >= 0))
	and .total_duration >= .load_duration + .prompt_eval_duration + .eval_duration - 1000000' \
	<<<"$final" >/dev/null || am_fail "streamed chat: final line wrong: $final"
# The schedule says 200 ms to the first token, then 20 tokens 50 ms apart:
# eval_duration near 1 s, total near 1.2 s (lower bounds are exact, upper ones loose).
jq -e '.eval_duration >= 950000000 and .eval_duration < 5000000000
	and .total_duration >= 1150000000 and .prompt_eval_duration + .load_duration >= 190000000' \
	<<<"$final" >/dev/null || am_fail "streamed chat: durations do not follow the schedule: $final"
# Behaviour, not a sleep: lines arrive as they are generated, not all at the end.
# The planned gaps are 1000 ms (first to last), 450 ms (first to tenth) and
# 550 ms (tenth to last); half of each leaves room for a loaded machine, while
# a burst would be a few milliseconds.
first=$(arrival "$out" 1)
last=$(arrival "$out" 21)
((first >= 190000)) || am_fail "first token after ${first} us, before the 200 ms TTFT"
((last - first >= 500000)) ||
	am_fail "lines arrived in a burst: first at ${first} us, last at ${last} us (expected ~1 s apart)"
tenth=$(arrival "$out" 10)
((tenth - first >= 200000 && last - tenth >= 250000)) ||
	am_fail "lines not spread over the stream: 1st ${first}, 10th ${tenth}, last ${last} us"
streamed=$(head -n 20 "$out.json" | jq -j '.message.content')

# --- the same request whole ---------------------------------------------------
resp=$(post /api/chat "${chat_body%\}},\"stream\":false}" "${pace[@]}" -D "$AM_TEST_TMP/whole.h")
am_assert_eq "whole chat: status" 200 "$(status_of "$resp")"
whole=$(body_of "$resp")
am_assert_eq "whole chat: one object" 1 "$(jq -c . <<<"$whole" | wc -l)"
am_assert_eq "whole chat = streamed tokens" "$streamed" "$(jq -r '.message.content' <<<"$whole")"
jq -e '.done == true and .done_reason == "stop" and .eval_count == 20 and .message.role == "assistant"
	and .total_duration >= 1150000000' <<<"$whole" >/dev/null ||
	am_fail "whole chat: final fields wrong: $whole"
grep -qi '^content-type: application/json' "$AM_TEST_TMP/whole.h" || am_fail "whole chat: content type"
# Deterministic: the same prompt gives the same answer; another seed another one.
again=$(post /api/chat "${chat_body%\}},\"stream\":false}" -H 'X-Sim-Answer-Tokens: 20' -H 'X-Sim-TTFT-Ms: 0' -H 'X-Sim-Tokens-Per-Second: 1000')
am_assert_eq "same prompt, same answer" "$streamed" "$(body_of "$again" | jq -r '.message.content')"
seeded=$(post /api/chat "${chat_body%\}},\"stream\":false,\"options\":{\"seed\":7}}" -H 'X-Sim-Answer-Tokens: 20' -H 'X-Sim-TTFT-Ms: 0')
[[ $(body_of "$seeded" | jq -r '.message.content') != "$streamed" ]] ||
	am_fail "options.seed does not change the answer"
# A stream is NDJSON.
ct=$(curl -sS -o /dev/null -D - -X POST -H 'X-Sim-Answer-Tokens: 1' -H 'X-Sim-TTFT-Ms: 0' \
	-d "$chat_body" "$SIM/api/chat" | tr -d '\r' | sed -n 's/^[Cc]ontent-[Tt]ype: //p')
am_assert_eq "stream content type" "application/x-ndjson" "$ct"
# "format": "json" or a schema makes the answer one JSON object, streamed too;
# anything else is refused as Ollama refuses it.
fast=(-H 'X-Sim-Answer-Tokens: 6' -H 'X-Sim-TTFT-Ms: 0' -H 'X-Sim-Tokens-Per-Second: 1000')
for format in '"json"' '{"type":"object","properties":{"text":{"type":"string"}}}'; do
	resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"format\":$format}" "${fast[@]}")
	am_assert_eq "format $format: status" 200 "$(status_of "$resp")"
	body_of "$resp" | jq -e '.message.content | fromjson | .text | length > 0' >/dev/null ||
		am_fail "format $format: the answer is not a JSON object: $(body_of "$resp")"
	am_assert_eq "format $format: tokens" 6 "$(body_of "$resp" | jq '.eval_count')"
done
out=$AM_TEST_TMP/format.ndjson
am_assert_eq "streamed format: curl exit" 0 "$(stream /api/chat "${chat_body%\}},\"format\":\"json\"}" "$out" "${fast[@]}")"
lines_of "$out" | jq -sje '[.[] | .message.content] | join("") | fromjson | .text' >/dev/null ||
	am_fail "streamed format: the tokens do not make one JSON object: $(head -c 600 "$out")"
# A stop string cuts the text inside the object, not the object.
resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"format\":\"json\",\"options\":{\"stop\":[\".\",\"text\"]}}" \
	-H 'X-Sim-Answer-Tokens: 30' -H 'X-Sim-TTFT-Ms: 0' -H 'X-Sim-Tokens-Per-Second: 1000')
body_of "$resp" | jq -e '.message.content | fromjson | .text | length > 0 and (contains(".") | not)' >/dev/null ||
	am_fail "format with stop: $(body_of "$resp")"
resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"format\":\"yaml\"}" "${fast[@]}")
am_assert_eq "format yaml: status" 400 "$(status_of "$resp")"
body_of "$resp" | jq -e '.error | test("invalid format")' >/dev/null || am_fail "format yaml: $(body_of "$resp")"
resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"options\":{\"frequency_penalty\":\"x\"}}" "${fast[@]}")
am_assert_eq "frequency_penalty not a number: status" 400 "$(status_of "$resp")"

# --- generate ----------------------------------------------------------------
gen_body='{"model":"llama3.1:8b","prompt":"Name three colours of the evening sky"}'
out=$AM_TEST_TMP/gen.ndjson
am_assert_eq "streamed generate: curl exit" 0 \
	"$(stream /api/generate "$gen_body" "$out" -H 'X-Sim-Answer-Tokens: 6' -H 'X-Sim-TTFT-Ms: 0')"
lines_of "$out" >"$out.json"
am_assert_eq "streamed generate: lines" 7 "$(wc -l <"$out.json")"
head -n 6 "$out.json" | jq -se 'all(.done == false and .model == "llama3.1:8b" and (.response | length > 0))' \
	>/dev/null || am_fail "generate: token lines malformed: $(head -n 2 "$out.json")"
tail -n 1 "$out.json" | jq -e '.done == true and .done_reason == "stop" and .eval_count == 6
	and .prompt_eval_count == 7 and .response == ""' >/dev/null ||
	am_fail "generate: final line wrong: $(tail -n 1 "$out.json")"
resp=$(post /api/generate "${gen_body%\}},\"stream\":false}" -H 'X-Sim-Answer-Tokens: 6' -H 'X-Sim-TTFT-Ms: 0')
am_assert_eq "whole generate: status" 200 "$(status_of "$resp")"
am_assert_eq "whole generate = streamed" "$(head -n 6 "$out.json" | jq -j .response)" \
	"$(body_of "$resp" | jq -r .response)"
# No prompt: Ollama just loads the model.
resp=$(post /api/generate '{"model":"mistral:7b"}')
body_of "$resp" | jq -e '.done == true and .done_reason == "load"' >/dev/null ||
	am_fail "generate without a prompt: $(body_of "$resp")"
# A model named without its tag finds name:latest.
sim_start tagless SIM_MODELS=tinyllama SIM_TTFT_MS=0 SIM_TOKENS_PER_SECOND=1000
resp=$(post /api/generate '{"model":"tinyllama","prompt":"hi there","stream":false}')
am_assert_eq "tinyllama finds tinyllama:latest" 200 "$(status_of "$resp")"
am_assert_eq "tags name" "tinyllama:latest" "$(curl -fsS "$SIM/api/tags" | jq -r '.models[0].name')"
am_stop tagless || am_fail "tagless simulator did not exit 0"
SIM=$main_sim

# --- num_predict and stop -------------------------------------------------------
out=$AM_TEST_TMP/capped.ndjson
stream /api/chat "${chat_body%\}},\"options\":{\"num_predict\":5,\"temperature\":0.2}}" "$out" \
	-H 'X-Sim-Answer-Tokens: 20' -H 'X-Sim-TTFT-Ms: 0' >/dev/null
am_assert_eq "num_predict 5: lines" 6 "$(wc -l <"$out")"
lines_of "$out" | tail -n 1 | jq -e '.done == true and .eval_count == 5 and .done_reason == "length"' \
	>/dev/null || am_fail "num_predict 5: final line: $(tail -n 1 "$out")"
resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"options\":{\"num_predict\":5}}" -H 'X-Sim-Answer-Tokens: 20' -H 'X-Sim-TTFT-Ms: 0')
body_of "$resp" | jq -e '.eval_count == 5 and .done_reason == "length"' >/dev/null ||
	am_fail "num_predict 5, whole: $(body_of "$resp")"
# A stop string taken from the middle of the answer cuts the answer where it first appears.
stop_word=$(sed -n '12p' <(head -n 20 "$AM_TEST_TMP/chat.ndjson.json") | jq -r '.message.content')
stop_word=${stop_word# }
[[ -n $stop_word ]] || am_fail "no word to stop at"
resp=$(post /api/chat "${chat_body%\}},\"stream\":false,\"options\":{\"stop\":[\"$stop_word\"]}}" "${pace[@]}" -H 'X-Sim-TTFT-Ms: 0' -H 'X-Sim-Tokens-Per-Second: 1000')
am_assert_eq "stop: answer cut before the stop string" "${streamed%%"$stop_word"*}" \
	"$(body_of "$resp" | jq -r '.message.content')"
body_of "$resp" | jq -e '.done_reason == "stop" and .eval_count < 20' >/dev/null ||
	am_fail "stop: final fields: $(body_of "$resp")"

# --- errors ---------------------------------------------------------------------
resp=$(post /api/chat '{"model":"nope:1b","messages":[{"role":"user","content":"hi"}]}')
am_assert_eq "unknown model: status" 404 "$(status_of "$resp")"
am_assert_eq "unknown model: error" 'model "nope:1b" not found, try pulling it first' \
	"$(body_of "$resp" | jq -r .error)"
for bad in '{"model": "phi3:mini", "messages": [' 'not json' '[1,2]' '{"messages":[]}' \
	'{"model":"phi3:mini","stream":"yes"}' '{"model":"phi3:mini","messages":"hi"}' \
	'{"model":"phi3:mini","prompt":"x","options":{"num_predict":"many"}}'; do
	resp=$(post /api/chat "$bad")
	am_assert_eq "bad request '$bad': status" 400 "$(status_of "$resp")"
	body_of "$resp" | jq -e '.error | type == "string" and length > 0' >/dev/null ||
		am_fail "bad request '$bad': no {\"error\"}: $(body_of "$resp")"
done
resp=$(post /api/generate '' -H 'Content-Type: application/json')
am_assert_eq "empty body" 400 "$(status_of "$resp")"
resp=$(post /api/chat "$chat_body" -H 'X-Sim-TTFT-Ms: -5')
am_assert_eq "bad X-Sim header: status" 400 "$(status_of "$resp")"
body_of "$resp" | jq -r .error | grep -q 'X-Sim-TTFT-Ms' || am_fail "bad X-Sim header: $(body_of "$resp")"
resp=$(post /api/chat "$chat_body" -H 'X-Sim-Fail: explode')
am_assert_eq "unknown X-Sim-Fail" 400 "$(status_of "$resp")"

# --- faults, on request -------------------------------------------------------------
fast=(-H 'X-Sim-TTFT-Ms: 0' -H 'X-Sim-Tokens-Per-Second: 200')
resp=$(post /api/chat "$chat_body" "${fast[@]}" -H 'X-Sim-Fail: http_500')
am_assert_eq "http_500: status" 500 "$(status_of "$resp")"
body_of "$resp" | jq -e '.error | length > 0' >/dev/null || am_fail "http_500: body $(body_of "$resp")"

out=$AM_TEST_TMP/error_line.ndjson
resp=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "${fast[@]}" -H 'X-Sim-Fail: error_line' \
	-H 'X-Sim-Fail-After-Tokens: 2' -d "$chat_body" "$SIM/api/chat")
am_assert_eq "error_line: HTTP status" 200 "$resp"
am_assert_eq "error_line: curl exit" 0 "$(stream /api/chat "$chat_body" "$out" "${fast[@]}" \
	-H 'X-Sim-Fail: error_line' -H 'X-Sim-Fail-After-Tokens: 2')"
am_assert_eq "error_line: lines" 3 "$(wc -l <"$out")"
lines_of "$out" | head -n 2 | jq -se 'all(.done == false)' >/dev/null || am_fail "error_line: tokens first"
lines_of "$out" | tail -n 1 | jq -e '.error | length > 0' >/dev/null ||
	am_fail "error_line: last line is not {\"error\"}: $(tail -n 1 "$out")"
resp=$(post /api/chat "${chat_body%\}},\"stream\":false}" "${fast[@]}" -H 'X-Sim-Fail: error_line')
am_assert_eq "error_line, whole: status" 500 "$(status_of "$resp")"

out=$AM_TEST_TMP/disconnect.ndjson
rc=$(stream /api/generate "$gen_body" "$out" "${fast[@]}" -H 'X-Sim-Fail: disconnect' -H 'X-Sim-Fail-After-Tokens: 4')
[[ $rc != 0 ]] || am_fail "disconnect: curl saw a complete answer"
am_assert_eq "disconnect: token lines before the cut" 4 "$(wc -l <"$out")"
lines_of "$out" | jq -se 'all(.done == false)' >/dev/null || am_fail "disconnect: a done line was sent"
rc=0
curl -sS -o /dev/null -X POST "${fast[@]}" -H 'X-Sim-Fail: disconnect' \
	-d "${gen_body%\}},\"stream\":false}" "$SIM/api/generate" 2>/dev/null || rc=$?
am_assert_eq "disconnect, whole: curl sees an empty reply" 52 "$rc"

out=$AM_TEST_TMP/slow.ndjson
am_assert_eq "slow: curl exit" 0 "$(stream /api/chat "$chat_body" "$out" "${fast[@]}" \
	-H 'X-Sim-Answer-Tokens: 4' -H 'X-Sim-Fail: slow' -H 'X-Sim-Fail-After-Tokens: 2' -H 'X-Sim-Stall-Ms: 1500')"
am_assert_eq "slow: lines" 5 "$(wc -l <"$out")"
gap=$(($(arrival "$out" 3) - $(arrival "$out" 2)))
((gap >= 1000000)) || am_fail "slow: the stall between token 2 and 3 was only ${gap} us"
rc=0
curl -sS -o /dev/null --max-time 0.8 -X POST "${fast[@]}" -H 'X-Sim-Fail: slow' \
	-H 'X-Sim-Fail-After-Tokens: 0' -H 'X-Sim-Stall-Ms: 5000' -d "$chat_body" "$SIM/api/chat" 2>/dev/null || rc=$?
am_assert_eq "slow: a client with a 0.8 s timeout gives up" 28 "$rc"

# --- /metrics -------------------------------------------------------------------------
curl -fsS "$SIM/metrics" >"$AM_TEST_TMP/sim.prom"
if command -v promtool >/dev/null; then
	promtool check metrics <"$AM_TEST_TMP/sim.prom" >/dev/null 2>&1 ||
		am_fail "promtool rejects /metrics: $(promtool check metrics <"$AM_TEST_TMP/sim.prom" 2>&1 | head -5)"
fi
metric() { awk -v k="$1" '$1 == k { print $2 }' "$AM_TEST_TMP/sim.prom"; }
(($(metric 'athena_ollama_sim_requests_total{endpoint="/api/chat",status="200"}') >= 5)) ||
	am_fail "chat requests not counted by status: $(grep requests_total "$AM_TEST_TMP/sim.prom")"
am_assert_eq "404s counted" 1 "$(metric 'athena_ollama_sim_requests_total{endpoint="/api/chat",status="404"}')"
(($(metric 'athena_ollama_sim_tokens_generated_total{model="phi3:mini"}') >= 40)) ||
	am_fail "tokens not counted: $(grep tokens_generated "$AM_TEST_TMP/sim.prom")"
(($(metric 'athena_ollama_sim_faults_injected_total{mode="disconnect"}') == 2)) ||
	am_fail "faults not counted: $(grep faults_injected "$AM_TEST_TMP/sim.prom")"

# --- many streams at once, on two threads ------------------------------------------------
# 100 streams of 20 tokens at 20 tokens/s take ~1.2 s each: 2 minutes one after
# another, about a second side by side.
t0=${EPOCHREALTIME//[!0-9]/}
pids=()
for i in $(seq 1 100); do
	curl -sSN -X POST "${pace[@]}" -d "$chat_body" "$SIM/api/chat" >"$AM_TEST_TMP/many.$i" 2>&1 &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || am_fail "one of 100 concurrent streams failed"; done
elapsed=$((${EPOCHREALTIME//[!0-9]/} - t0))
((elapsed < 15000000)) || am_fail "100 concurrent streams took ${elapsed} us; they do not run side by side"
for i in $(seq 1 100); do
	tail -n 1 "$AM_TEST_TMP/many.$i" | jq -e '.done == true and .eval_count == 20' >/dev/null ||
		am_fail "concurrent stream $i did not finish: $(tail -n 2 "$AM_TEST_TMP/many.$i")"
done

# --- SIGTERM with a stream in flight --------------------------------------------------------
curl -sSN -X POST -H 'X-Sim-Answer-Tokens: 1000' -H 'X-Sim-Tokens-Per-Second: 10' -d "$chat_body" \
	"$SIM/api/chat" >"$AM_TEST_TMP/cut.ndjson" 2>/dev/null &
cut_pid=$!
am_wait_for "the long stream started" 10 test -s "$AM_TEST_TMP/cut.ndjson"
t0=$SECONDS
am_stop sim 10 || am_fail "the simulator did not exit 0 on SIGTERM"
((SECONDS - t0 <= 5)) || am_fail "SIGTERM took $((SECONDS - t0)) s with a stream in flight"
if wait "$cut_pid"; then am_fail "the cut stream ended as if complete"; fi

# --- random failures and the body bound ----------------------------------------------------
sim_start flaky SIM_FAIL_RATE=1 SIM_FAIL_MODES=http_500 SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=3 SIM_MAX_BODY_KIB=1
resp=$(post /api/chat "$chat_body")
am_assert_eq "fail rate 1: status" 500 "$(status_of "$resp")"
resp=$(post /api/chat "$chat_body" -H 'X-Sim-Fail: none')
am_assert_eq "X-Sim-Fail: none overrides the fail rate" 200 "$(status_of "$resp")"
big=$(head -c 3000 /dev/zero | tr '\0' 'a')
resp=$(post /api/generate "{\"model\":\"phi3:mini\",\"prompt\":\"$big\"}")
am_assert_eq "body over SIM_MAX_BODY_KIB" 413 "$(status_of "$resp")"
am_stop flaky || am_fail "flaky simulator did not exit 0"

sim_start half SIM_FAIL_RATE=0.5 SIM_FAIL_MODES=http_500,error_line SIM_TTFT_MS=0 SIM_ANSWER_TOKENS=3 \
	SIM_TOKENS_PER_SECOND=1000 SIM_SEED=11
failed=0
for _ in $(seq 1 40); do
	out=$(curl -sS -X POST -d "${chat_body%\}},\"stream\":false}" -w '\n%{http_code}' "$SIM/api/chat")
	[[ $(status_of "$out") == 200 ]] || failed=$((failed + 1))
done
((failed >= 8 && failed <= 32)) || am_fail "fail rate 0.5 failed $failed of 40 requests"
am_stop half || am_fail "half simulator did not exit 0"

echo "ok: athena-ollama-sim"
