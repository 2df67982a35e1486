# shellcheck shell=bash
# Helpers for tests of the Ollama simulator and the gateway: source after tests/lib.sh.

# sim_start NAME [ENV=VALUE...]: start athena-ollama-sim on a free port; sets SIM_URL.
sim_start() {
	local name=$1 port
	shift
	port=$(am_free_port)
	SIM_URL=http://127.0.0.1:$port
	am_bg "$name" env LISTEN_ADDR="127.0.0.1:$port" "$@" "$AM_BIN_DIR/athena-ollama-sim"
	am_wait_for "$name up" 30 curl -fs "$SIM_URL/api/version"
}

# gateway_start NAME [ENV=VALUE...]: start athena-gateway on a free port, wait
# until it answers /health; sets GATEWAY. Pass OLLAMA_URL and METRICS_BUS_URLS.
gateway_start() {
	local name=$1 port
	shift
	port=$(am_free_port)
	GATEWAY=http://127.0.0.1:$port
	am_bg "$name" env LISTEN_ADDR="127.0.0.1:$port" "$@" "$AM_BIN_DIR/athena-gateway"
	am_wait_for "$name up" 30 curl -fs "$GATEWAY/health"
}

# chat BODY [CURL_ARGS...]: POST BODY to the gateway's chat completions; prints
# the body then the status on its own line (split with http_status/http_body).
chat() {
	local body=$1
	shift
	curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' "$@" \
		-d "$body" "$GATEWAY/v1/chat/completions"
}

http_status() { printf '%s\n' "$1" | tail -n 1; }
http_body() { printf '%s\n' "$1" | sed '$d'; }
