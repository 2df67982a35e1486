# shellcheck shell=bash
# Helpers for the orchestrator's tests: source after tests/lib.sh.

# orch_start NAME [ENV=VALUE...]: start athena-orchestrator on a free port and
# wait until it answers /health; sets ORCH (its base URL). Pass OLLAMA_URL,
# ADMIN_API_URL and METRICS_BUS_URLS.
orch_start() {
	local name=$1 port
	shift
	port=$(am_free_port)
	ORCH=http://127.0.0.1:$port
	am_bg "$name" env LISTEN_ADDR="127.0.0.1:$port" "$@" "$AM_BIN_DIR/athena-orchestrator"
	am_wait_for "$name up" 30 curl -fs "$ORCH/health"
}

# orch_connected: true once $ORCH's publisher has a collector to send to.
orch_connected() {
	curl -fs "$ORCH/metrics" | grep -q '^athena_orchestrator_bus_subscribers 1'
}

# ask BODY [CURL_ARGS...]: POST BODY to $ORCH/query; prints the body, then the
# status on a line of its own (split them with http_status and http_body).
ask() {
	local body=$1
	shift
	curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' "$@" -d "$body" "$ORCH/query"
}

http_status() { printf '%s\n' "$1" | tail -n 1; }
http_body() { printf '%s\n' "$1" | sed '$d'; }

# orch_sample NAME [LABELS]: print one sample of $ORCH/metrics (0 when absent).
orch_sample() {
	local series=$1
	[[ -n ${2:-} ]] && series="$1{$2}"
	curl -fs "$ORCH/metrics" | awk -v s="$series" '$1 == s { v = $2 } END { print v + 0 }'
}

# admin_lookups: GETs the admin-api answered on /api/llm-backends/model/{model}, all statuses.
admin_lookups() {
	curl -fs "$ADMIN/metrics" |
		awk '/^athena_admin_http_requests_total\{/ && /route="\/api\/llm-backends\/model\/\*"/ { n += $2 } END { print n + 0 }'
}

# metrics_of RID: the stored metrics of request RID, one line each, in call order:
# stage|model|backend|status|error_type|intent
metrics_of() {
	am_psql "SELECT stage, model, backend, status, coalesce(error_type, ''), coalesce(intent, '')
	  FROM llm_performance_metric WHERE request_id = '$1' ORDER BY timestamp, id"
}

# metrics_are RID N: true when N metrics of request RID are stored.
metrics_are() {
	[[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE request_id = '$1'") == "$2" ]]
}

# register MODEL TYPE URL: add MODEL to the admin-api's registry.
register() {
	local out
	out=$(curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' \
		-d "{\"model_name\": \"$1\", \"backend_type\": \"$2\", \"endpoint_url\": \"$3\"}" \
		"$ADMIN/api/llm-backends")
	[[ $(http_status "$out") == 201 ]] || am_fail "registering $1: $out"
	http_body "$out" | jq -r .id
}

# orch_rows_are N: true when N metrics with source orchestrator are stored.
orch_rows_are() {
	[[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source = 'orchestrator'") == "$1" ]]
}

# orch_stop NAME: stop the orchestrator started as NAME and fail the test unless
# it exits 0 (a sanitizer's report or a crash at shutdown makes it fail).
orch_stop() {
	local rc=0
	am_stop "$1" 30 || rc=$?
	((rc == 0)) || am_fail "$1 exited with status $rc"
}
