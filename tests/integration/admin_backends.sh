#!/usr/bin/env bash
# The backend registry over HTTP: create, list, look up by id and by model
# (names with ':'), update, toggle, delete, the errors of the existing admin
# backend (400 duplicate, 404, 415), and live figures equal to SQL's own.
# shellcheck disable=SC2016 # $names in single quotes are jq variables
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

am_fresh_db
admin_start admin

JSON=(-H 'Content-Type: application/json')

# jq_is DESC FILTER JSON [JQ_ARGS...]: FILTER must be true of JSON.
jq_is() {
	local desc=$1 filter=$2 json=$3
	shift 3
	# jq 1.6 -e succeeds on empty input, as when the request before already failed.
	[[ -n $json ]] || am_fail "$desc: no JSON to check"
	jq -e "$@" "$filter" <<<"$json" >/dev/null || am_fail "$desc: not ($filter) in $json"
}

rows() { am_psql 'SELECT count(*) FROM llm_backend'; }

# --- create ---------------------------------------------------------------
phi=$(expect_status "create phi3:mini" 201 POST /api/llm-backends "${JSON[@]}" -d '{
  "model_name": "phi3:mini", "backend_type": "ollama", "endpoint_url": "http://localhost:11434"}')
jq_is "create answers every column with the existing backend's defaults" '
  (.id | type == "number") and .model_name == "phi3:mini" and .backend_type == "ollama"
  and .endpoint_url == "http://localhost:11434" and .enabled == true and .priority == 100
  and .max_tokens == 2048 and .temperature_default == 0.7 and .timeout_seconds == 60
  and .description == null and .total_requests == 0 and .total_errors == 0
  and .avg_tokens_per_sec == null and .avg_latency_ms == null
  and (.created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+\\+00:00$"))
  and .created_at == .updated_at' "$phi"
phi_id=$(jq -r .id <<<"$phi")

mlx=$(expect_status "create an mlx backend with every field" 201 POST /api/llm-backends "${JSON[@]}" -d '{
  "model_name": "llama3.1:8b", "backend_type": "mlx", "endpoint_url": "https://mlx.local:8080/v1",
  "enabled": false, "priority": -3, "max_tokens": 512, "temperature_default": 1.25,
  "timeout_seconds": 120, "description": "MLX on the studio, \"quoted\" and ünïcode"}')
jq_is "create stores the given fields" '.backend_type == "mlx" and .enabled == false
  and .priority == -3 and .max_tokens == 512 and .temperature_default == 1.25
  and .timeout_seconds == 120 and .description == "MLX on the studio, \"quoted\" and ünïcode"' "$mlx"
mlx_id=$(jq -r .id <<<"$mlx")
am_assert_eq "the row as stored" "llama3.1:8b|mlx|https://mlx.local:8080/v1|f|-3|512|1.25|120" \
	"$(am_psql "SELECT model_name, backend_type, endpoint_url, enabled, priority, max_tokens,
	  temperature_default, timeout_seconds FROM llm_backend WHERE id = $mlx_id")"

expect_status "create auto" 201 POST /api/llm-backends "${JSON[@]}" -d '{
  "model_name": "hf.co/org/qwen2.5:7b-q4", "backend_type": "auto", "endpoint_url": "http://a"}' >/dev/null

# --- bad input: 4xx with {"error"} and nothing written -------------------
before=$(rows)
bad_create() {
	local desc=$1 body=$2 want=$3 out
	out=$(expect_status "$desc" 400 POST /api/llm-backends "${JSON[@]}" -d "$body")
	jq_is "$desc: error names the problem" '.error | contains($w)' "$out" --arg w "$want"
}
bad_create "duplicate model" \
	'{"model_name": "phi3:mini", "backend_type": "mlx", "endpoint_url": "http://x"}' \
	"already exists"
bad_create "bad backend_type" \
	'{"model_name": "new", "backend_type": "vllm", "endpoint_url": "http://x"}' "backend_type"
bad_create "missing model_name" '{"backend_type": "ollama", "endpoint_url": "http://x"}' \
	"model_name is required"
bad_create "missing endpoint_url" '{"model_name": "new", "backend_type": "ollama"}' \
	"endpoint_url is required"
bad_create "null model_name" '{"model_name": null, "backend_type": "ollama", "endpoint_url": "http://x"}' \
	"model_name must be a string"
bad_create "empty model_name" '{"model_name": "", "backend_type": "ollama", "endpoint_url": "http://x"}' \
	"model_name"
bad_create "priority as a string" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "priority": "5"}' \
	"priority must be a whole number"
bad_create "priority as a fraction" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "priority": 1.5}' \
	"priority must be a whole number"
bad_create "priority beyond integer" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "priority": 2147483648}' \
	"priority must be between"
bad_create "enabled as a string" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "enabled": "yes"}' \
	"enabled must be true or false"
bad_create "temperature out of range" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "temperature_default": 3}' \
	"temperature_default"
bad_create "timeout of zero" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "timeout_seconds": 0}' \
	"timeout_seconds must be between 1 and"
bad_create "endpoint that is not a URL" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "localhost:11434"}' "endpoint_url"
bad_create "unknown field" \
	'{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x", "temprature": 1}' \
	"unknown field 'temprature'"
bad_create "duplicate key" \
	'{"model_name": "new", "model_name": "other", "backend_type": "ollama", "endpoint_url": "http://x"}' \
	"not valid JSON"
bad_create "malformed JSON" '{"model_name": "new", ' "not valid JSON"
bad_create "a list, not an object" '[1, 2]' "JSON object"
bad_create "empty body" '' "not valid JSON"
expect_error "text/plain body" 415 POST /api/llm-backends -H 'Content-Type: text/plain' \
	-d '{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x"}'
expect_error "no content type" 415 POST /api/llm-backends \
	-d '{"model_name": "new", "backend_type": "ollama", "endpoint_url": "http://x"}' -H 'Content-Type:'
am_assert_eq "rows after refused creates" "$before" "$(rows)"

# Read-only keys of an entry are accepted (a client may send back what it got).
echo "$phi" | jq '.model_name = "echoed" | .priority = 7' >"$AM_TEST_TMP/echo.json"
echoed=$(expect_status "create from an echoed entry" 201 POST /api/llm-backends "${JSON[@]}" \
	--data-binary "@$AM_TEST_TMP/echo.json")
jq_is "echoed entry gets its own id" '.id != $old and .priority == 7' "$echoed" --argjson old "$phi_id"

# --- read -----------------------------------------------------------------
# Created last but named last too, so neither id order matches name order.
zz=$(expect_status "create zz" 201 POST /api/llm-backends "${JSON[@]}" -d '{
  "model_name": "zz:1b", "backend_type": "ollama", "endpoint_url": "http://z"}' | jq -r .id)
list=$(expect_status "list" 200 GET /api/llm-backends)
am_assert_eq "list is ordered by model_name" "echoed hf.co/org/qwen2.5:7b-q4 llama3.1:8b phi3:mini zz:1b" \
	"$(jq -r '[.[].model_name] | join(" ")' <<<"$list")"
expect_status "delete zz" 204 DELETE "/api/llm-backends/$zz" >/dev/null
jq_is "list entries equal the single gets" '.[] | select(.model_name == "phi3:mini") == $one' \
	"$list" --argjson one "$(expect_status "get phi" 200 GET "/api/llm-backends/$phi_id")"
enabled=$(expect_status "enabled_only=true" 200 GET '/api/llm-backends?enabled_only=true')
am_assert_eq "enabled_only leaves out disabled" "echoed hf.co/org/qwen2.5:7b-q4 phi3:mini" \
	"$(jq -r '[.[].model_name] | join(" ")' <<<"$enabled")"
am_assert_eq "enabled_only=false lists all" 4 \
	"$(expect_status "enabled_only=false" 200 GET '/api/llm-backends?enabled_only=false' | jq length)"
expect_error "enabled_only=maybe" 400 GET '/api/llm-backends?enabled_only=maybe'

jq_is "get by id" '.model_name == "llama3.1:8b"' \
	"$(expect_status "get mlx" 200 GET "/api/llm-backends/$mlx_id")"
expect_error "unknown id" 404 GET /api/llm-backends/999999
expect_error "non-numeric id" 400 GET /api/llm-backends/abc
expect_error "negative id" 400 GET /api/llm-backends/-1
expect_error "id beyond bigint" 400 GET /api/llm-backends/99999999999999999999

jq_is "get by model with ':'" ".id == $phi_id" \
	"$(expect_status "model phi3:mini" 200 GET /api/llm-backends/model/phi3:mini)"
jq_is "get by model with %3A" ".id == $phi_id" \
	"$(expect_status "model phi3%3Amini" 200 GET /api/llm-backends/model/phi3%3Amini)"
expect_error "model of a disabled backend" 404 GET /api/llm-backends/model/llama3.1:8b
expect_error "unknown model" 404 GET /api/llm-backends/model/nope:1b
expect_error "model with a space" 400 GET /api/llm-backends/model/a%20b

# --- update ---------------------------------------------------------------
row_of() { am_psql "SELECT model_name, backend_type, endpoint_url, enabled, priority, max_tokens,
  temperature_default, timeout_seconds, coalesce(description, '<null>') FROM llm_backend WHERE id = $1"; }
am_psql "UPDATE llm_backend SET updated_at = updated_at - interval '1 minute' WHERE id = $phi_id"
updated=$(expect_status "partial update" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" \
	-d '{"priority": 5, "description": "fast classifier"}')
jq_is "update changes the given fields only" '.priority == 5 and .description == "fast classifier"
  and .backend_type == "ollama" and .endpoint_url == "http://localhost:11434" and .max_tokens == 2048
  and .updated_at > .created_at' "$updated"
am_assert_eq "updated_at is now" t \
	"$(am_psql "SELECT updated_at > now() - interval '30 seconds' FROM llm_backend WHERE id = $phi_id")"
jq_is "update enabled" '.enabled == false and .priority == 5' \
	"$(expect_status "disable by update" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" -d '{"enabled": false}')"
am_assert_eq "stored disabled by update" f "$(am_psql "SELECT enabled FROM llm_backend WHERE id = $phi_id")"
expect_status "enable by update" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" -d '{"enabled": true}' >/dev/null
expect_status "description back to null" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" \
	-d '{"description": null, "backend_type": "auto"}' | jq -e '.description == null and .backend_type == "auto"' >/dev/null ||
	am_fail "null clears description"

before_row=$(row_of "$phi_id")
bad_update() {
	local desc=$1 body=$2 want=$3 out
	out=$(expect_status "$desc" 400 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" -d "$body")
	jq_is "$desc: error names the problem" '.error | contains($w)' "$out" --arg w "$want"
}
bad_update "update to a taken model" '{"model_name": "llama3.1:8b", "priority": 1}' "already exists"
bad_update "update with a bad backend_type" '{"priority": 1, "backend_type": "gpu"}' "backend_type"
bad_update "update with a wrong type" '{"priority": 1, "max_tokens": "many"}' "max_tokens"
bad_update "update with null enabled" '{"enabled": null}' "enabled"
bad_update "update with bad JSON" '{"priority": }' "not valid JSON"
expect_error "update with a form body" 415 PUT "/api/llm-backends/$phi_id" -d 'priority=1'
am_assert_eq "refused updates change nothing" "$before_row" "$(row_of "$phi_id")"
expect_error "update of an unknown id" 404 PUT /api/llm-backends/999999 "${JSON[@]}" -d '{"priority": 1}'
expect_error "update of a non-numeric id" 400 PUT /api/llm-backends/x "${JSON[@]}" -d '{"priority": 1}'
jq_is "an empty update answers the entry" ".id == $phi_id" \
	"$(expect_status "empty update" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" -d '{}')"
renamed=$(expect_status "rename" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" \
	-d '{"model_name": "phi3:mini-renamed"}')
jq_is "rename" '.model_name == "phi3:mini-renamed"' "$renamed"
expect_status "rename back" 200 PUT "/api/llm-backends/$phi_id" "${JSON[@]}" \
	-d '{"model_name": "phi3:mini"}' >/dev/null

# --- toggle ---------------------------------------------------------------
jq_is "toggle enables" '.enabled == true' \
	"$(expect_status "toggle mlx" 200 POST "/api/llm-backends/$mlx_id/toggle")"
jq_is "enabled model is found" ".id == $mlx_id" \
	"$(expect_status "model llama3.1:8b" 200 GET /api/llm-backends/model/llama3.1:8b)"
jq_is "toggle disables" '.enabled == false' \
	"$(expect_status "toggle mlx again" 200 POST "/api/llm-backends/$mlx_id/toggle")"
am_assert_eq "stored disabled" f "$(am_psql "SELECT enabled FROM llm_backend WHERE id = $mlx_id")"
expect_error "toggle of an unknown id" 404 POST /api/llm-backends/999999/toggle
expect_error "GET on toggle" 405 GET "/api/llm-backends/$mlx_id/toggle"

# --- live figures ---------------------------------------------------------
# Calls in the last 24 hours count; older ones and other models do not.
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
  tokens_per_second, status, error_type, source_id, epoch, seq)
SELECT now() - v.age, v.model, 'ollama', v.lat, 10, v.tps, v.status, v.err, 'test', 1, v.seq
FROM (VALUES
  (interval '1 minute',  'phi3:mini',   0.25, 40.0, 'ok',    NULL,        1),
  (interval '2 hours',   'phi3:mini',   0.5,  20.0, 'ok',    NULL,        2),
  (interval '23 hours',  'phi3:mini',   0.125, 30.0, 'ok',   NULL,        3),
  (interval '5 minutes', 'phi3:mini',   30.0, 0.0,  'error', 'timeout',   4),
  (interval '3 hours',   'phi3:mini',   0.1,  0.0,  'error', 'http_502',  5),
  (interval '25 hours',  'phi3:mini',   9.0,  1.0,  'ok',    NULL,        6),
  (interval '30 days',   'phi3:mini',   9.0,  1.0,  'error', 'timeout',   7),
  (interval '1 minute',  'llama3.1:8b', 1.5,  12.0, 'ok',    NULL,        8),
  (interval '1 minute',  'phi3',        7.0,  99.0, 'ok',    NULL,        9)
) AS v(age, model, lat, tps, status, err, seq)"

expected=$(am_psql "SELECT json_build_object(
    'total_requests', count(*),
    'total_errors', sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END),
    'avg_tokens_per_sec', sum(tokens_per_second) FILTER (WHERE status = 'ok')
                          / nullif(sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0),
    'avg_latency_ms', 1000 * sum(latency_seconds) FILTER (WHERE status = 'ok')
                      / nullif(sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0))
  FROM llm_performance_metric
  WHERE model = 'phi3:mini' AND extract(epoch FROM now() - timestamp) < 86400")
jq_is "independent computation is what the data says" '.total_requests == 5 and .total_errors == 2
  and .avg_tokens_per_sec == 30 and .avg_latency_ms == 291.6666666666667' "$expected"

close() { # the figures of $1 equal those in $2 (averages to 1e-9)
	[[ -n $1 ]] || am_fail "$3: no JSON to check"
	jq -e --argjson e "$2" '.total_requests == $e.total_requests and .total_errors == $e.total_errors
	  and ((.avg_tokens_per_sec - $e.avg_tokens_per_sec) | fabs) < 1e-9
	  and ((.avg_latency_ms - $e.avg_latency_ms) | fabs) < 1e-9' <<<"$1" >/dev/null ||
		am_fail "$3: live figures $(jq -c '{total_requests, total_errors, avg_tokens_per_sec, avg_latency_ms}' <<<"$1") differ from SQL's $2"
}
close "$(expect_status "phi by id" 200 GET "/api/llm-backends/$phi_id")" "$expected" "get by id"
close "$(expect_status "phi by model" 200 GET /api/llm-backends/model/phi3:mini)" "$expected" "get by model"
close "$(expect_status "list" 200 GET /api/llm-backends | jq '.[] | select(.model_name == "phi3:mini")')" \
	"$expected" "list"
close "$(expect_status "toggle phi" 200 POST "/api/llm-backends/$phi_id/toggle")" "$expected" "toggle"
jq_is "other model's figures" '.total_requests == 1 and .total_errors == 0
  and .avg_tokens_per_sec == 12 and .avg_latency_ms == 1500' \
	"$(expect_status "mlx figures" 200 GET "/api/llm-backends/$mlx_id")"
jq_is "a model without calls has zero counts and null averages" '.[] | select(.model_name == "echoed")
  | .total_requests == 0 and .total_errors == 0 and .avg_tokens_per_sec == null and .avg_latency_ms == null' \
	"$(expect_status "list" 200 GET /api/llm-backends)"

# --- delete ---------------------------------------------------------------
out=$(http DELETE "/api/llm-backends/$mlx_id")
am_assert_eq "delete: status" 204 "$(http_status "$out")"
am_assert_eq "delete: empty body" "" "$(http_body "$out")"
am_assert_eq "deleted row is gone" 0 "$(am_psql "SELECT count(*) FROM llm_backend WHERE id = $mlx_id")"
expect_error "get after delete" 404 GET "/api/llm-backends/$mlx_id"
expect_error "delete again" 404 DELETE "/api/llm-backends/$mlx_id"
expect_error "delete a non-numeric id" 400 DELETE /api/llm-backends/abc
am_assert_eq "metrics of a deleted backend stay" 1 \
	"$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE model = 'llama3.1:8b'")"
expect_status "the model can be configured again" 201 POST /api/llm-backends "${JSON[@]}" \
	-d '{"model_name": "llama3.1:8b", "backend_type": "ollama", "endpoint_url": "http://x"}' >/dev/null

echo "ok: backend registry CRUD, errors and live figures"
