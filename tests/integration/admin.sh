# shellcheck shell=bash
# Helpers for tests of the admin-api: source after tests/lib.sh.

# admin_start NAME [ENV=VALUE...]: migrate DATABASE_URL, start an admin-api on a
# free port and wait until it is ready; sets ADMIN (its base URL).
admin_start() {
	local name=$1
	shift
	"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1 ||
		am_fail "migrations failed: $("$AM_BIN_DIR/athena-collector" --migrate 2>&1 | tail -3)"
	local port
	port=$(am_free_port)
	ADMIN=http://127.0.0.1:$port
	am_bg "$name" env LISTEN_ADDR="127.0.0.1:$port" "$@" "$AM_BIN_DIR/athena-admin-api"
	am_wait_for "$name ready" 30 curl -fs "$ADMIN/ready"
}

# http METHOD PATH [CURL_ARGS...]: request $ADMIN$PATH; prints the body, then
# the status code on a line of its own (read both with http_status/http_body).
http() {
	local method=$1 path=$2
	shift 2
	curl -s -X "$method" -w '\n%{http_code}' "$@" "$ADMIN$path"
}

# http_status OUTPUT / http_body OUTPUT: split what http printed.
http_status() { printf '%s\n' "$1" | tail -n 1; }
http_body() { printf '%s\n' "$1" | sed '$d'; }

# expect_status DESC STATUS METHOD PATH [CURL_ARGS...]: the request answers
# STATUS; prints the body.
expect_status() {
	local desc=$1 want=$2 out
	shift 2
	out=$(http "$@")
	am_assert_eq "$desc: status" "$want" "$(http_status "$out")"
	http_body "$out"
}

# expect_error DESC STATUS METHOD PATH [CURL_ARGS...]: the request answers
# STATUS with a JSON body {"error": "..."}.
expect_error() {
	local desc=$1 want=$2 body
	shift 2
	body=$(expect_status "$desc" "$want" "$@")
	# jq -e accepts empty input, so an empty body is refused here first.
	[[ -n $body ]] || am_fail "$desc: empty body, expected {\"error\": ...}"
	printf '%s' "$body" | jq -e '.error | type == "string" and length > 0' >/dev/null ||
		am_fail "$desc: body is not {\"error\": ...}: $body"
}
