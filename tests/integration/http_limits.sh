#!/usr/bin/env bash
# The HTTP services against hostile clients: an oversized body gets 413 and
# an oversized header 431; 1,000 idle and slow connections do not stop
# normal requests from being answered in time, and the admin-api closes the
# idle ones after its idle timeout (a slow client that sends a byte a second
# is not idle; what bounds those is the connection limit); SQL in any query parameter of the admin-api gets a
# 400 or an empty answer and changes nothing.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"

am_fresh_db
admin_start admin ADMIN_MAX_BODY_KIB=64 ADMIN_HTTP_TIMEOUT_S=3 ADMIN_RETENTION_DAYS=0
sim_start sim SIM_TTFT_MS=0 SIM_TOKENS_PER_SECOND=100000
gateway_start gateway OLLAMA_URL="$SIM_URL" METRICS_ENABLED=false GATEWAY_MAX_BODY_KIB=64
port=$(am_free_port)
ORCH=http://127.0.0.1:$port
am_bg orchestrator env LISTEN_ADDR="127.0.0.1:$port" OLLAMA_URL="$SIM_URL" ADMIN_API_URL="" \
	METRICS_ENABLED=false "$AM_BIN_DIR/athena-orchestrator"
am_wait_for "orchestrator up" 30 curl -fs "$ORCH/health"

M=/api/llm-backends/metrics
metric='{"model": "m", "backend": "ollama", "latency_seconds": 1, "tokens": 1, "tokens_per_second": 1, "session_id": "s1"}'
for i in 1 2 3; do
	am_assert_eq "seed metric $i" 201 "$(curl -s -o /dev/null -w '%{http_code}' \
		-H 'Content-Type: application/json' -d "$metric" "$ADMIN$M")"
done

# fds_below NAME N: the process NAME has fewer than N open file descriptors.
fds_below() { (($(find "/proc/$(am_pid "$1")/fd" -mindepth 1 | wc -l) < $2)); }

status() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }

# --- oversized bodies and headers ---------------------------------------------------
big_body=$AM_TEST_TMP/big.json
{
	printf '{"query": "'
	head -c 70000 /dev/zero | tr '\0' a
	printf '", "model": "m", "messages": []}'
} >"$big_body"
big_header="X-Big: $(head -c 70000 /dev/zero | tr '\0' a)"
declare -A post_url=([admin]="$ADMIN$M" [gateway]="$GATEWAY/v1/chat/completions" [orchestrator]="$ORCH/query")
declare -A health_url=([admin]="$ADMIN/health" [gateway]="$GATEWAY/health" [orchestrator]="$ORCH/health")
for svc in admin gateway orchestrator; do
	am_assert_eq "$svc: a 70 KB body" 413 \
		"$(status -H 'Content-Type: application/json' --data-binary "@$big_body" "${post_url[$svc]}")"
	am_assert_eq "$svc: a 70 KB header" 431 "$(status -H "$big_header" "${health_url[$svc]}")"
	am_assert_eq "$svc: still answering" 200 "$(status "${health_url[$svc]}")"
done

# --- 1,000 idle and slow connections --------------------------------------------------
declare -A api_url=([admin]="$ADMIN$M?limit=1" [gateway]="$GATEWAY/v1/models" [orchestrator]="$ORCH/router/metrics")
for svc in admin gateway orchestrator; do
	url=${health_url[$svc]}
	svc_port=${url##*:}
	svc_port=${svc_port%%/*}
	am_bg "slow-$svc" "$AM_BIN_DIR/am-slow-clients" --port "$svc_port" --idle 500 --slow 500
	am_wait_for "1000 connections to $svc open" 30 grep -q '^open=1000$' "$(am_log_of "slow-$svc")"
	# Each request gets 5 s: far more than it needs, far less than an idle timeout.
	for i in $(seq 1 20); do
		am_assert_eq "$svc: request $i beside 1000 idle and slow connections" 200 \
			"$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${api_url[$svc]}")"
	done
	if [[ $svc == admin ]]; then
		# ADMIN_HTTP_TIMEOUT_S=3: the server itself closes the 500 that send nothing.
		am_wait_for "the admin-api closed its idle connections" 60 fds_below admin 600
	fi
	am_stop "slow-$svc"
done

# --- SQL in every query parameter -----------------------------------------------------
before=$(am_psql "SELECT count(*) || ':' || md5(string_agg(id::text || model || coalesce(session_id, ''), ',' ORDER BY id)) FROM llm_performance_metric")
payloads=(
	"' OR '1'='1"
	"1; DROP TABLE llm_performance_metric; --"
	"x' UNION SELECT version(), NULL --"
	"\\'; DELETE FROM llm_performance_metric WHERE ''='"
	"\$\$; TRUNCATE llm_backend; \$\$"
	"1) OR (1=1"
	"m%00' OR 1=1 --"
)
filters="since until model backend intent source status session_id request_id stage"
declare -A params=(
	["$M"]="limit before_id $filters"
	["$M/summary"]="group_by exact $filters"
	["$M/timeseries"]="bucket group_by $filters"
)
checked=0
for ep in "${!params[@]}"; do
	for p in ${params[$ep]}; do
		for v in "${payloads[@]}"; do
			out=$(curl -s -G -w '\n%{http_code}' --max-time 10 --data-urlencode "$p=$v" "$ADMIN$ep")
			code=$(http_status "$out")
			body=$(http_body "$out")
			case $code in
			400)
				jq -e '.error | type == "string"' <<<"$body" >/dev/null ||
					am_fail "$ep?$p=$v: 400 without an error: $body"
				;;
			200)
				# Taken as a value to compare with: no row has it.
				n=$(jq '[.. | objects | select(has("model") and has("latency_seconds"))] | length' <<<"$body")
				counts=$(jq '[.. | objects | .count? // empty | select(. > 0)] | length' <<<"$body")
				((n == 0 && counts == 0)) || am_fail "$ep?$p=$v: answered rows for a value no row has: $body"
				;;
			*) am_fail "$ep?$p=$v: status $code: $body" ;;
			esac
			checked=$((checked + 1))
		done
	done
done
# And in the path of the registry's model look-up.
for v in "${payloads[@]}"; do
	enc=$(jq -rn --arg v "$v" '$v | @uri')
	code=$(status "$ADMIN/api/llm-backends/model/$enc")
	[[ $code == 400 || $code == 404 ]] || am_fail "/api/llm-backends/model/$v: status $code"
	checked=$((checked + 1))
done
after=$(am_psql "SELECT count(*) || ':' || md5(string_agg(id::text || model || coalesce(session_id, ''), ',' ORDER BY id)) FROM llm_performance_metric")
am_assert_eq "the table is unchanged after $checked injection attempts" "$before" "$after"
am_assert_eq "the registry table is still there" 1 \
	"$(am_psql "SELECT count(*) FROM pg_tables WHERE tablename = 'llm_backend'")"
echo "ok: 413 and 431 on every service, 1000 idle and slow connections harmless, $checked injection attempts changed nothing"
