#!/usr/bin/env bash
# Alert rules: bad definitions get a 400 naming the field; against a scripted sequence of metrics,
# with two admin-api replicas evaluating every second, a rule fires once when it starts to hold
# (not again after a restart) and resolves once; webhooks receive the payloads; a failing webhook
# is retried within its bound and the failure is recorded in the history and on /metrics.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

TOKEN=alert-secret
AUTH=(-H "Authorization: Bearer $TOKEN")
JSON=(-H 'Content-Type: application/json')

# A bad variable: exit 2 with a one-line reason.
rc=0
out=$(ADMIN_ALERT_INTERVAL_S=soon "$AM_BIN_DIR/athena-admin-api" 2>&1) || rc=$?
am_assert_eq "bad ADMIN_ALERT_INTERVAL_S: exit" 2 "$rc"
grep -q ADMIN_ALERT_INTERVAL_S <<<"$out" || am_fail "bad ADMIN_ALERT_INTERVAL_S: reason: $out"
am_assert_eq "bad ADMIN_ALERT_INTERVAL_S: one line" 1 "$(wc -l <<<"$out")"

# sink_start NAME [ARGS...]: an am-webhook-sink recording to $AM_TEST_TMP/NAME.out; sets SINK.
sink_start() {
	local name=$1 log port
	shift
	am_bg "$name" "$AM_BIN_DIR/am-webhook-sink" --out "$AM_TEST_TMP/$name.out" "$@"
	log=$(am_log_of "$name")
	am_wait_for "$name listening" 10 grep -q '^port=' "$log"
	port=$(sed -n 's/^port=//p' "$log")
	SINK=http://127.0.0.1:$port/hook
}
# received NAME: lines the sink NAME recorded.
received() { if [[ -f $AM_TEST_TMP/$1.out ]]; then wc -l <"$AM_TEST_TMP/$1.out"; else echo 0; fi; }
received_is() { [[ $(received "$1") == "$2" ]]; }

am_fresh_db
sink_start sink_ok
SINK_OK=$SINK
sink_start sink_flaky --fail-first 2
SINK_FLAKY=$SINK
sink_start sink_down --fail-first 1000000
SINK_DOWN=$SINK

replica_env=(ADMIN_API_TOKEN=$TOKEN ADMIN_ALERT_INTERVAL_S=1 ADMIN_ALERT_WEBHOOK_RETRIES=3
	ADMIN_ALERT_WEBHOOK_BACKOFF_MS=50 ADMIN_ALERT_WEBHOOK_TIMEOUT_MS=2000 ADMIN_ROLLUP_INTERVAL_S=0)
admin_start admin2 "${replica_env[@]}"
ADMIN2=$ADMIN
admin_start admin "${replica_env[@]}"

# expect_bad DESC FRAGMENT BODY: POST BODY answers 400 with an error containing FRAGMENT.
expect_bad() {
	local body
	body=$(expect_status "$1" 400 POST /api/llm-backends/alerts "${AUTH[@]}" "${JSON[@]}" --data "$3")
	jq -e --arg f "$2" '.error | type == "string" and contains($f)' >/dev/null <<<"$body" ||
		am_fail "$1: expected an error containing '$2', got: $body"
}
good='{"name": "x", "metric": "latency_p95", "op": ">", "threshold": 1, "window_seconds": 60,
       "webhook_url": "http://127.0.0.1:1/"}'
with() { jq -c "$1" <<<"$good"; }
expect_bad "missing name" "name is required" "$(with 'del(.name)')"
expect_bad "empty name" "name must be" "$(with '.name = ""')"
expect_bad "unknown metric" "metric must be one of" "$(with '.metric = "latency_p42"')"
expect_bad "bad op" "op must be one of" "$(with '.op = "=>"')"
expect_bad "negative window" "window_seconds must be" "$(with '.window_seconds = -5')"
expect_bad "window not whole" "window_seconds must be" "$(with '.window_seconds = 1.5')"
expect_bad "negative min_calls" "min_calls must be" "$(with '.min_calls = -1')"
expect_bad "threshold not a number" "threshold must be a number" "$(with '.threshold = "high"')"
expect_bad "unknown scope key" "unknown scope key 'zone'" "$(with '.scope = {"zone": "eu"}')"
expect_bad "scope value not text" "scope.model must be" "$(with '.scope = {"model": 3}')"
expect_bad "scope not an object" "scope must be an object" "$(with '.scope = "phi3"')"
expect_bad "ftp webhook" "webhook_url must be an http:// or https:// URL" \
	"$(with '.webhook_url = "ftp://example.com/x"')"
expect_bad "webhook with a space" "webhook_url must be" "$(with '.webhook_url = "http://a b/"')"
expect_bad "unknown field" "unknown field 'severity'" "$(with '.severity = "page"')"
expect_bad "not JSON" "not valid JSON" '{"name": '
expect_bad "not an object" "must be a JSON object" '[1]'
expect_status "write without the token" 401 POST /api/llm-backends/alerts "${JSON[@]}" \
	--data "$good" >/dev/null
am_assert_eq "nothing stored by bad requests" 0 "$(am_psql 'SELECT count(*) FROM llm_alert_rule')"

# rule NAME BODY-JQ: create a rule from good changed by BODY-JQ; prints its id.
rule() {
	local body
	body=$(expect_status "create $1" 201 POST /api/llm-backends/alerts "${AUTH[@]}" "${JSON[@]}" \
		--data "$(with ".name = \"$1\" | $2")")
	jq -r .id <<<"$body"
}
slow=$(rule slow-m1 ".metric = \"latency_p95\" | .scope = {model: \"m1\"} | .threshold = 1.0 |
	.window_seconds = 600 | .min_calls = 5 | .webhook_url = \"$SINK_OK\"")
retry=$(rule errors-retried ".metric = \"error_rate\" | .scope = {model: \"m2\"} | .threshold = 0.5 |
	.window_seconds = 600 | .min_calls = 1 | .webhook_url = \"$SINK_FLAKY\"")
down=$(rule errors-undelivered ".metric = \"error_rate\" | .scope = {model: \"m2\"} | .threshold = 0.5 |
	.window_seconds = 600 | .min_calls = 1 | .webhook_url = \"$SINK_DOWN\"")
expect_status "duplicate name" 409 POST /api/llm-backends/alerts "${AUTH[@]}" "${JSON[@]}" \
	--data "$(with '.name = "slow-m1"')" >/dev/null
body=$(expect_status "bad update" 400 PUT "/api/llm-backends/alerts/$slow" "${AUTH[@]}" "${JSON[@]}" \
	--data '{"op": "!="}')
grep -q "op must be" <<<"$body" || am_fail "bad update: $body"
expect_error "update of an unknown rule" 404 PUT /api/llm-backends/alerts/999999 "${AUTH[@]}" \
	"${JSON[@]}" --data '{"threshold": 2}'
expect_error "bad id" 400 GET /api/llm-backends/alerts/abc
body=$(expect_status "rule as stored" 200 GET "/api/llm-backends/alerts/$slow")
am_assert_eq "rule fields" '{"name":"slow-m1","metric":"latency_p95","scope":{"model":"m1"},"op":">","threshold":1,"window_seconds":600,"min_calls":5,"state":"ok"}' \
	"$(jq -c '{name, metric, scope, op, threshold, window_seconds, min_calls, state}' <<<"$body")"

seq=0
# calls MODEL LATENCY STATUS N: store N calls made just now.
calls() {
	am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
	    tokens_per_second, status, source, source_id, epoch, seq)
	  SELECT now(), '$1', 'ollama', $2, 10, 20, '$3', 'api', 'alerts-test', 0, $seq + i
	  FROM generate_series(1, $4) AS i"
	seq=$((seq + $4))
}
# evaluated_twice: every rule has been evaluated twice since now (the first may have read its
# figures before the latest change).
all_evaluated_since() {
	[[ $(am_psql "SELECT count(*) FROM llm_alert_rule WHERE evaluated_at IS NULL OR evaluated_at <= '$1'") == 0 ]]
}
evaluated_twice() {
	local t
	t=$(am_psql "SELECT now()")
	am_wait_for "every rule evaluated" 30 all_evaluated_since "$t"
	t=$(am_psql "SELECT now()")
	am_wait_for "every rule evaluated again" 30 all_evaluated_since "$t"
}
events_of() { am_psql "SELECT string_agg(kind, ',' ORDER BY id) FROM llm_alert_event WHERE rule_id = $1"; }

# Fewer calls than min_calls: no alert, however slow.
calls m1 2.0 ok 3
evaluated_twice
am_assert_eq "below min_calls: state" ok "$(am_psql "SELECT state FROM llm_alert_rule WHERE id = $slow")"
am_assert_eq "below min_calls: calls seen" 3 "$(am_psql "SELECT last_calls FROM llm_alert_rule WHERE id = $slow")"
am_assert_eq "below min_calls: nothing sent" 0 "$(received sink_ok)"

# Enough slow calls on m1, and errors on m2: three rules start to hold.
calls m1 2.0 ok 3
calls m2 0.3 error 2
am_wait_for "firing payload received" 30 received_is sink_ok 1
line=$(head -n 1 "$AM_TEST_TMP/sink_ok.out")
am_assert_eq "firing payload answered" 200 "${line%% *}"
am_assert_eq "firing payload" "{\"alert\":\"slow-m1\",\"rule_id\":$slow,\"state\":\"firing\",\"metric\":\"latency_p95\",\"scope\":{\"model\":\"m1\"},\"op\":\">\",\"threshold\":1,\"value\":2,\"calls\":6,\"window_seconds\":600}" \
	"$(jq -c '{alert, rule_id, state, metric, scope, op, threshold, value, calls, window_seconds}' <<<"${line#* }")"
body=$(expect_status "firing list" 200 GET '/api/llm-backends/alerts?state=firing')
am_assert_eq "firing rules listed" "errors-retried,errors-undelivered,slow-m1" "$(jq -r 'map(.name) | sort | join(",")' <<<"$body")"
expect_error "bad state filter" 400 GET '/api/llm-backends/alerts?state=loud'

# The flaky webhook fails twice, then takes it: three attempts, delivered.
delivered() { [[ $(am_psql "SELECT delivery FROM llm_alert_event WHERE rule_id = $1") == "$2" ]]; }
am_wait_for "retried event delivered" 30 delivered "$retry" delivered
am_assert_eq "flaky webhook: requests" "500,500,200" "$(cut -d' ' -f1 "$AM_TEST_TMP/sink_flaky.out" | paste -sd,)"
am_assert_eq "flaky webhook: recorded" "3|200" \
	"$(am_psql "SELECT attempts, http_status FROM llm_alert_event WHERE rule_id = $retry")"
# The webhook that always fails: the first attempt and 3 retries, then recorded as failed.
am_wait_for "undelivered event recorded" 30 delivered "$down" failed
am_assert_eq "failing webhook: requests within the bound" 4 "$(received sink_down)"
body=$(expect_status "history of the failing rule" 200 GET "/api/llm-backends/alerts/history?rule_id=$down")
am_assert_eq "failure in the history" '[{"name":"errors-undelivered","state":"firing","delivery":"failed","attempts":4,"http_status":500,"error":"HTTP 500"}]' \
	"$(jq -c 'map({name, state, delivery, attempts, http_status, error})' <<<"$body")"

# prom_sum NAME: the sample NAME summed over both replicas.
prom_sum() {
	{ curl -fs "$ADMIN/metrics"; curl -fs "$ADMIN2/metrics"; } |
		awk -v n="$1" '$1 == n { s += $2 } END { print s + 0 }'
}
am_assert_eq "webhook failures on /metrics" 1 "$(prom_sum athena_admin_alert_webhook_failures_total)"
am_assert_eq "webhook deliveries on /metrics" 2 "$(prom_sum athena_admin_alert_webhook_delivered_total)"
am_assert_eq "webhook attempts on /metrics" 8 "$(prom_sum athena_admin_alert_webhook_attempts_total)"
am_assert_eq "firings on /metrics" 3 "$(prom_sum 'athena_admin_alert_transitions_total{state="firing"}')"
firing_gauge_is() { curl -fs "$1/metrics" | grep -qx 'athena_admin_alert_rules_firing 3'; }
am_wait_for "firing gauge" 30 firing_gauge_is "$ADMIN"
(($(prom_sum athena_admin_alert_rules_evaluated_total) >= 9)) || am_fail "rules evaluated not counted"

# Still holding: no second notification, not even after both replicas restart.
evaluated_twice
am_stop admin
am_stop admin2
admin_start admin2 "${replica_env[@]}"
ADMIN2=$ADMIN
admin_start admin "${replica_env[@]}"
evaluated_twice
am_assert_eq "no repeat while firing" 1 "$(received sink_ok)"
am_assert_eq "one event while firing" firing "$(events_of "$slow")"

# Fast calls bring m1's p95 under the threshold: one resolved notification.
calls m1 0.1 ok 200
am_wait_for "resolved payload received" 30 received_is sink_ok 2
am_assert_eq "resolved payload" "resolved 0.1 206" \
	"$(tail -n 1 "$AM_TEST_TMP/sink_ok.out" | cut -d' ' -f2- | jq -r '"\(.state) \(.value) \(.calls)"')"
evaluated_twice
am_assert_eq "no repeat once resolved" 2 "$(received sink_ok)"
am_assert_eq "events of the rule" firing,resolved "$(events_of "$slow")"
body=$(expect_status "history" 200 GET "/api/llm-backends/alerts/history?limit=2")
am_assert_eq "history newest first" "slow-m1 resolved delivered" "$(jq -r '.[0] | "\(.name) \(.state) \(.delivery)"' <<<"$body")"
am_assert_eq "history limit" 2 "$(jq length <<<"$body")"
am_assert_eq "rule state" ok "$(curl -fs "$ADMIN/api/llm-backends/alerts/$slow" | jq -r .state)"

# Deleting a rule keeps its history.
expect_status "delete" 204 DELETE "/api/llm-backends/alerts/$slow" "${AUTH[@]}" >/dev/null
expect_error "deleted rule" 404 GET "/api/llm-backends/alerts/$slow"
am_assert_eq "history kept" 2 "$(am_psql "SELECT count(*) FROM llm_alert_event WHERE rule_name = 'slow-m1'")"
echo "ok: rules validated, fired and resolved once each, webhooks retried within their bound"
