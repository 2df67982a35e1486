# shellcheck shell=bash
# scripts/lib/common.sh: logging, failure and port helpers shared by the
# scripts. Source it; it defines functions only.

[[ -n ${_AM_COMMON_SH:-} ]] && return 0
_AM_COMMON_SH=1

# Step and diagnostic lines go to stderr so that functions can print values
# on stdout.
am_log() { printf '==> %s\n' "$*" >&2; }
am_warn() { printf 'warning: %s\n' "$*" >&2; }
am_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

am_have() { command -v "$1" >/dev/null 2>&1; }

# am_abs PATH: print PATH made absolute (it need not exist).
am_abs() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$PWD" "${1#./}" ;;
	esac
}

# am_port_in_use PORT: succeed when something listens on 127.0.0.1:PORT.
am_port_in_use() {
	local port=$1
	if am_have ss && [[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]; then
		return 0
	fi
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# am_free_port: print a TCP port that is free on 127.0.0.1 right now. Let
# the kernel choose when python3 is there; otherwise probe random ports.
am_free_port() {
	local port=""
	if am_have python3; then
		port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) || port=""
	fi
	if [[ $port =~ ^[0-9]+$ ]] && ! am_port_in_use "$port"; then
		printf '%s\n' "$port"
		return 0
	fi
	local _
	for _ in {1..500}; do
		port=$((20000 + RANDOM % 30000))
		if ! am_port_in_use "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	printf 'error: no free TCP port found on 127.0.0.1\n' >&2
	return 1
}
