#!/usr/bin/env bash
# With ADMIN_API_TOKEN (or ADMIN_API_TOKEN_FILE) every write needs the bearer
# token and reads stay open; the token never reaches the log; a token file
# that is empty or unreadable stops the admin-api with exit code 2.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

am_fresh_db
admin_start admin ADMIN_API_TOKEN=s3cret LOG_LEVEL=debug

JSON=(-H 'Content-Type: application/json')
RIGHT=(-H 'Authorization: Bearer s3cret')
rows() { am_psql 'SELECT count(*) FROM llm_backend'; }
create_body='{"model_name": "phi3:mini", "backend_type": "ollama", "endpoint_url": "http://localhost:11434"}'

# --- writes without the right token: 401 and nothing written ---------------
expect_error "create without a token" 401 POST /api/llm-backends "${JSON[@]}" -d "$create_body"
for auth in 'Bearer wrong-token' 'Bearer s3cre' 'Bearer s3cretX' 'Bearer ' 'Basic s3cret' 's3cret'; do
	expect_error "create with Authorization: $auth" 401 POST /api/llm-backends "${JSON[@]}" \
		-H "Authorization: $auth" -d "$create_body"
done
am_assert_eq "no row after refused creates" 0 "$(rows)"

# --- the right token: the write happens ------------------------------------
id=$(expect_status "create with the token" 201 POST /api/llm-backends "${JSON[@]}" "${RIGHT[@]}" \
	-d "$create_body" | jq -r .id)
am_assert_eq "row after create" 1 "$(rows)"

for call in "PUT /api/llm-backends/$id" "POST /api/llm-backends/$id/toggle" "DELETE /api/llm-backends/$id"; do
	read -r method path <<<"$call"
	expect_error "$call without a token" 401 "$method" "$path" "${JSON[@]}" -d '{"priority": 1}'
	expect_error "$call with a wrong token" 401 "$method" "$path" "${JSON[@]}" \
		-H 'Authorization: Bearer nope' -d '{"priority": 1}'
done
am_assert_eq "refused writes changed nothing" "100|t" \
	"$(am_psql "SELECT priority, enabled FROM llm_backend WHERE id = $id")"

# --- reads stay open ---------------------------------------------------------
expect_status "list without a token" 200 GET /api/llm-backends | jq -e 'length == 1' >/dev/null ||
	am_fail "list without a token"
expect_status "get without a token" 200 GET "/api/llm-backends/$id" >/dev/null
expect_status "model look-up without a token" 200 GET /api/llm-backends/model/phi3:mini >/dev/null
expect_status "health without a token" 200 GET /health >/dev/null

expect_status "update with the token" 200 PUT "/api/llm-backends/$id" "${JSON[@]}" "${RIGHT[@]}" \
	-d '{"priority": 1}' | jq -e '.priority == 1' >/dev/null || am_fail "update with the token"
expect_status "toggle with the token" 200 POST "/api/llm-backends/$id/toggle" "${RIGHT[@]}" |
	jq -e '.enabled == false' >/dev/null || am_fail "toggle with the token"
expect_status "delete with the token" 204 DELETE "/api/llm-backends/$id" "${RIGHT[@]}" >/dev/null
am_assert_eq "row after delete" 0 "$(rows)"

# --- POST /api/llm-backends/metrics is a write too ----------------------------
metric='{"timestamp": 1700000000.5, "model": "phi3:mini", "backend": "ollama",
  "latency_seconds": 0.5, "tokens": 10, "tokens_per_second": 20.0}'
status=$(http_status "$(http POST /api/llm-backends/metrics "${JSON[@]}" -d "$metric")")
if [[ $status == 404 || $status == 405 ]]; then
	# The metrics endpoints belong to another module; until they exist the route is absent.
	echo "skipped: POST /api/llm-backends/metrics is not implemented yet ($status)"
else
	am_assert_eq "metric without a token: status" 401 "$status"
	expect_error "metric with a wrong token" 401 POST /api/llm-backends/metrics "${JSON[@]}" \
		-H 'Authorization: Bearer nope' -d "$metric"
	am_assert_eq "no metric stored without the token" 0 \
		"$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
	expect_status "metric with the token" 201 POST /api/llm-backends/metrics "${JSON[@]}" "${RIGHT[@]}" \
		-d "$metric" >/dev/null
fi

# --- the token never reaches the log, even at debug --------------------------
log=$(am_log_of admin)
grep -q "POST /api/llm-backends -> 401" "$log" || am_fail "debug request lines missing from $log"
for secret in s3cret wrong-token; do
	if grep -n -F "$secret" "$log"; then
		am_fail "the log holds the token text '$secret'"
	fi
done

# --- ADMIN_API_TOKEN_FILE ------------------------------------------------------
printf 'from-a-file \n' >"$AM_TEST_TMP/token"
# The file wins over ADMIN_API_TOKEN when both are set.
admin_start admin_file ADMIN_API_TOKEN_FILE="$AM_TEST_TMP/token" ADMIN_API_TOKEN=env-token \
	LOG_LEVEL=debug LOG_FORMAT=json
expect_error "file token: the variable's token is not it" 401 POST /api/llm-backends "${JSON[@]}" \
	-H 'Authorization: Bearer env-token' -d "$create_body"
expect_error "file token: no token" 401 POST /api/llm-backends "${JSON[@]}" -d "$create_body"
expect_error "file token: trailing blank is not part of it" 401 POST /api/llm-backends "${JSON[@]}" \
	-H 'Authorization: Bearer from-a-file ' -d "$create_body"
expect_status "file token: right token" 201 POST /api/llm-backends "${JSON[@]}" \
	-H 'Authorization: Bearer from-a-file' -d "$create_body" >/dev/null
expect_status "file token: reads open" 200 GET /api/llm-backends/model/phi3:mini >/dev/null
if grep -n -F "from-a-file" "$(am_log_of admin_file)"; then
	am_fail "the log holds the file's token"
fi

# --- a token file that yields no token: exit 2 with one line -----------------
expect_exit2() {
	local desc=$1 file=$2 out rc=0
	out=$(env ADMIN_API_TOKEN_FILE="$file" LISTEN_ADDR=127.0.0.1:0 \
		timeout 20 "$AM_BIN_DIR/athena-admin-api" 2>&1 >/dev/null) || rc=$?
	am_assert_eq "$desc: exit code" 2 "$rc"
	am_assert_eq "$desc: one line" 1 "$(printf '%s\n' "$out" | wc -l)"
	[[ $out == *ADMIN_API_TOKEN_FILE* ]] || am_fail "$desc: '$out' does not name ADMIN_API_TOKEN_FILE"
}
: >"$AM_TEST_TMP/empty"
printf '  \n' >"$AM_TEST_TMP/blank"
mkdir "$AM_TEST_TMP/a-directory"
expect_exit2 "empty token file" "$AM_TEST_TMP/empty"
expect_exit2 "blank token file" "$AM_TEST_TMP/blank"
expect_exit2 "missing token file" "$AM_TEST_TMP/no-such-file"
expect_exit2 "token file that is a directory" "$AM_TEST_TMP/a-directory"

echo "ok: writes need the token, reads are open, the token stays out of the log"
