#!/usr/bin/env bash
# Bad input to the metrics API gets a 4xx naming what is wrong, and changes nothing.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/admin_metrics_lib.sh"

am_fresh_db
# Retention is off: the tests store metrics from 2024 and 2025 on purpose.
admin_start admin ADMIN_MAX_BODY_KIB=64 ADMIN_RETENTION_DAYS=0

good='{"model": "m", "backend": "ollama", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1}'
for i in 1 2 3; do
	expect_status "seed metric $i" 201 POST $M -H 'Content-Type: application/json' -d "$good" >/dev/null
done
before=$(rows)
am_assert_eq "seeded" 3 "$before"

# bad STATUS WORD DESC METHOD PATH [CURL_ARGS...]: answers STATUS with an error that mentions WORD.
bad() {
	local want=$1 word=$2 desc=$3 body
	shift 3
	body=$(expect_status "$desc" "$want" "$@")
	jq -e --arg w "$word" '.error | type == "string" and contains($w)' <<<"$body" >/dev/null ||
		am_fail "$desc: error does not mention '$word': $body"
}

# --- query parameters ------------------------------------------------------------
for v in -1 0 abc 1.5 "" 99999999999999999999 "10%20OR%201=1"; do
	bad 400 limit "limit=$v" GET "$M?limit=$v"
done
for v in abc 0 -3 1e3 ""; do
	bad 400 before_id "before_id=$v" GET "$M?before_id=$v"
done
for v in yesterday 2024-02-30 2023-02-29T00:00:00Z 2024-13-01 2024-01-01T25:00:00Z 1969-12-31 \
	-5 "" 2024-01-01T00:00:00%2B24:00 2024-01-01T12 1e9 "1.2.3" 2024-01-01T00:00:00Zjunk; do
	bad 400 since "since=$v" GET "$M?since=$v"
	bad 400 until "until=$v (summary)" GET "$M/summary?until=$v"
done
bad 400 since "since after until" GET "$M?since=2025-01-02&until=2025-01-01"
bad 400 since "since equal to until" GET "$M/summary?since=2025-01-01&until=2025-01-01"
for v in maybe OK 1 ""; do
	bad 400 status "status=$v" GET "$M?status=$v"
done
long=$(printf 'x%.0s' {1..1025})
bad 400 model "model of 1025 bytes" GET "$M?model=$long"
bad 400 session_id "session_id not UTF-8" GET "$M?session_id=%FF%FE"
for v in foo timestamp id "model;DROP" MODEL ""; do
	bad 400 group_by "summary group_by=$v" GET "$M/summary?group_by=$v"
	bad 400 group_by "timeseries group_by=$v" GET "$M/timeseries?group_by=$v"
done
for v in 2m 1M 1 1%20hour ""; do
	bad 400 bucket "bucket=$v" GET "$M/timeseries?bucket=$v"
done
bad 400 buckets "a year of minutes" GET "$M/timeseries?since=2024-01-01&until=2025-01-01&bucket=1m"

# --- one metric: types, missing fields, JSON -------------------------------------------
# bad_field FIELD JQ_EDIT: the good metric edited by JQ_EDIT is refused, naming FIELD.
bad_field() {
	local body
	body=$(jq -c "$2" <<<"$good")
	bad 400 "$1" "$1: $2" POST $M -H 'Content-Type: application/json' -d "$body"
}
for e in '.timestamp = true' '.timestamp = "yesterday"' '.timestamp = -1' \
	'.timestamp = 1732900000123' '.timestamp = [1]' '.timestamp = "2024-02-30T00:00:00Z"' \
	'.timestamp = "1999-12-31T23:59:59Z"' '.timestamp = {}'; do
	bad_field timestamp "$e"
done
for f in model backend; do
	for e in ".$f = 5" ".$f = \"\"" "del(.$f)" ".$f = null" ".$f = []" ".$f = (\"x\" * 1025)"; do
		bad_field $f "$e"
	done
done
for f in latency_seconds tokens_per_second; do
	for e in ".$f = \"1.2\"" ".$f = -1" "del(.$f)" ".$f = true" ".$f = null" ".$f = {}"; do
		bad_field $f "$e"
	done
done
for e in '.tokens = 1.5' '.tokens = -1' '.tokens = "42"' 'del(.tokens)' '.tokens = 3000000000' \
	'.tokens = false'; do
	bad_field tokens "$e"
done
for e in '.prompt_tokens = -3' '.prompt_tokens = 2.5' '.prompt_tokens = "x"'; do
	bad_field prompt_tokens "$e"
done
for e in '.ttft_seconds = "x"' '.ttft_seconds = -0.1' '.ttft_seconds = [0]'; do
	bad_field ttft_seconds "$e"
done
for e in '.status = "maybe"' '.status = 1' '.status = "OK"'; do
	bad_field status "$e"
done
for f in error_type request_id session_id user_id zone intent device_id stage; do
	for e in ".$f = 5" ".$f = {}" ".$f = true" ".$f = (\"y\" * 1025)"; do
		bad_field $f "$e"
	done
done
am_assert_eq "the exact reason for a bad token count" \
	'{"error":"tokens must be a whole number >= 0"}' \
	"$(expect_status "tokens = -1" 400 POST $M -H 'Content-Type: application/json' \
		-d "$(jq -c '.tokens = -1' <<<"$good")" | jq -c .)"

bad 400 "line 1, column" "truncated JSON" POST $M -H 'Content-Type: application/json' \
	-d '{"model": "m",'
bad 400 "line 3" "a JSON error on line 3" POST $M -H 'Content-Type: application/json' \
	--data-binary $'{\n"model": "m",\n"backend": ollama}'
bad 400 "JSON" "trailing garbage" POST $M -H 'Content-Type: application/json' -d "$good x"
bad 400 "JSON" "empty body" POST $M -H 'Content-Type: application/json'
bad 400 "JSON" "NUL escape in a string" POST $M -H 'Content-Type: application/json' \
	-d "$(jq -c '.model = "a"' <<<"$good" | sed 's/"a"/"a\\u0000b"/')"
printf '{"model": "\xff\xfe", "backend": "b", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1}' \
	>"$AM_TEST_TMP/latin1.json"
bad 400 "JSON" "invalid UTF-8" POST $M -H 'Content-Type: application/json' \
	--data-binary "@$AM_TEST_TMP/latin1.json"
for doc in '[]' '42' '"metric"' 'null' "[$good]"; do
	bad 400 "JSON object" "body $doc" POST $M -H 'Content-Type: application/json' -d "$doc"
done

# --- content types and sizes ----------------------------------------------------------------
bad 415 "Content-Type" "form-encoded POST" POST $M -d "$good"
bad 415 "Content-Type" "text/plain POST" POST $M -H 'Content-Type: text/plain' -d "$good"
bad 415 "Content-Type" "POST without a content type" POST $M -H 'Content-Type:' -d "$good"
bad 415 "Content-Type" "text/csv batch" POST $M/batch -H 'Content-Type: text/csv' -d "[$good]"
bad 415 "Content-Type" "batch without a content type" POST $M/batch -H 'Content-Type:' -d "[$good]"
jq -c --arg pad "$(head -c 70000 /dev/zero | tr '\0' 'p')" '.request_id = $pad' <<<"$good" \
	>"$AM_TEST_TMP/big.json"
bad 413 "too large" "a 70 KB metric" POST $M -H 'Content-Type: application/json' \
	--data-binary "@$AM_TEST_TMP/big.json"
jq -c '[range(800) as $i | $m | .request_id = "r\($i)"]' --argjson m "$good" -n \
	>"$AM_TEST_TMP/big_batch.json"
bad 413 "too large" "a 90 KB batch" POST $M/batch -H 'Content-Type: application/json' \
	--data-binary "@$AM_TEST_TMP/big_batch.json"

# --- batches: one bad record stores nothing ----------------------------------------------------
jq -c '[range(30) as $i | $m | .request_id = "r\($i)"] | .[17].tokens = -1' --argjson m "$good" \
	-n >"$AM_TEST_TMP/bad17.json"
am_assert_eq "record 17 named" '{"error":"record 17: tokens must be a whole number >= 0"}' \
	"$(expect_status "bad record 17" 400 POST $M/batch -H 'Content-Type: application/json' \
		--data-binary "@$AM_TEST_TMP/bad17.json" | jq -c .)"
{
	printf '%s\n' "$good" "$good" "" "$good"
	printf '%s\n' '{"model": "m", "backend": }' "$good"
} >"$AM_TEST_TMP/bad.ndjson"
bad 400 "record 3 (line 5): invalid JSON" "NDJSON bad line" POST $M/batch \
	-H 'Content-Type: application/x-ndjson' --data-binary "@$AM_TEST_TMP/bad.ndjson"
printf '%s\n' "$good" "$(jq -c '.stage = 7' <<<"$good")" >"$AM_TEST_TMP/bad_type.ndjson"
bad 400 "record 1 (line 2): stage must be a string" "NDJSON bad field" POST $M/batch \
	-H 'Content-Type: application/x-ndjson' --data-binary "@$AM_TEST_TMP/bad_type.ndjson"
bad 400 "record 1" "array with a non-object" POST $M/batch -H 'Content-Type: application/json' \
	-d "[$good, 7]"
bad 400 "JSON array" "batch of one object" POST $M/batch -H 'Content-Type: application/json' \
	-d "$good"
bad 400 "no records" "empty batch" POST $M/batch -H 'Content-Type: application/json' -d '[]'
bad 400 "no records" "blank NDJSON" POST $M/batch -H 'Content-Type: application/x-ndjson' \
	--data-binary $'\n \n'
bad 400 "invalid JSON" "batch that is not JSON" POST $M/batch -H 'Content-Type: application/json' \
	-d '[{"model"'
am_assert_eq "nothing stored by any bad request" "$before" "$(rows)"

# --- SQL injection ------------------------------------------------------------------------------
# shellcheck disable=SC2016 # a literal $1, as a placeholder would be
payloads=("' OR '1'='1" "x'; DROP TABLE llm_performance_metric; --" "1) OR (1=1" '$1'
	"m' --" "\\'; SELECT pg_sleep(5); --" "m\" OR \"\"=\"")
for p in "${payloads[@]}"; do
	for f in model backend intent source session_id request_id stage; do
		am_assert_eq "list $f=$p" "[]" \
			"$(expect_status "list $f" 200 GET $M -G --data-urlencode "$f=$p" | jq -c .)"
		am_assert_eq "summary $f=$p" "0" \
			"$(expect_status "summary $f" 200 GET $M/summary -G --data-urlencode "$f=$p" |
				jq -c '.groups[0].count')"
		am_assert_eq "timeseries $f=$p" "[]" \
			"$(expect_status "timeseries $f" 200 GET $M/timeseries -G --data-urlencode "$f=$p" |
				jq -c .points)"
	done
	for f in status limit before_id since until; do
		bad 400 "$f" "list $f=$p" GET $M -G --data-urlencode "$f=$p"
	done
	bad 400 group_by "group_by=$p" GET $M/summary -G --data-urlencode "group_by=$p"
	bad 400 bucket "bucket=$p" GET $M/timeseries -G --data-urlencode "bucket=$p"
done
am_assert_eq "injections changed nothing" "$before" "$(rows)"

# In a body they are just text, stored and found as sent.
for p in "${payloads[@]}"; do
	body=$(jq -c --arg p "$p" '.model = $p | .intent = $p | .stage = $p' <<<"$good")
	id=$(expect_status "post model=$p" 201 POST $M -H 'Content-Type: application/json' -d "$body" |
		jq .id)
	am_assert_eq "found by model=$p" "[[$id,$(jq -c --arg p "$p" -n '$p')]]" \
		"$(curl -s -G "$ADMIN$M" --data-urlencode "model=$p" --data-urlencode "stage=$p" |
			jq -c 'map([.id, .model])')"
done
am_assert_eq "one row per posted payload" $((before + ${#payloads[@]})) "$(rows)"
echo "ok: bad input refused, nothing changed"
