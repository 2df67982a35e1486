# shellcheck shell=bash
# scripts/lib/pg.sh: run a private PostgreSQL 15 cluster in a directory,
# for tests (throwaway) and the demo (persistent under .data/pg).
#
# Layout of a cluster directory DIR:
#   DIR/data   the data directory (initdb)
#   DIR/sock   unix socket directory (unused when the path would be too long)
#   DIR/log    server log
#   DIR/port   TCP port on 127.0.0.1, reused by every later start
# Clients connect over TCP as user postgres with trust authentication:
#   postgresql://postgres@127.0.0.1:PORT/athena
#
# initdb, pg_ctl and postgres refuse to run as root; as root the directory
# is handed to the postgres system user and they run under runuser.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

AM_PG_BIN=${AM_PG_BIN:-/usr/lib/postgresql/15/bin}
AM_PG_DB=${AM_PG_DB:-athena}

am_pg_free_port() { am_free_port; }

# Run a server program as the user that may run it, from / so that an
# unreadable working directory does not matter.
_am_pg_as_owner() {
	if ((EUID == 0)); then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

_am_pg_psql() {
	local port=$1
	shift
	"$AM_PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# am_pg_url PORT: print the URL of the athena database on PORT.
am_pg_url() { printf 'postgresql://postgres@127.0.0.1:%s/%s\n' "$1" "$AM_PG_DB"; }

# am_pg_running DIR: succeed when the cluster in DIR is running.
am_pg_running() {
	local dir
	dir=$(am_abs "$1")
	[[ -f $dir/data/PG_VERSION ]] || return 1
	_am_pg_as_owner "$AM_PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# am_pg_init DIR: create DIR and a cluster in it unless one is there.
am_pg_init() {
	local dir
	dir=$(am_abs "$1")
	[[ -x $AM_PG_BIN/initdb ]] || am_die "$AM_PG_BIN/initdb not found (apt-get install postgresql-15)"
	mkdir -p "$dir"
	if ((EUID == 0)); then
		id postgres >/dev/null 2>&1 || am_die "no postgres system user (apt-get install postgresql-15)"
		chown postgres:postgres "$dir"
		chmod 0700 "$dir"
		runuser -u postgres -- test -w "$dir" ||
			am_die "user postgres cannot write $dir; a parent directory is not searchable by others"
	fi
	[[ -f $dir/data/PG_VERSION ]] && return 0

	am_log "initdb $dir/data"
	if ! _am_pg_as_owner "$AM_PG_BIN/initdb" -D "$dir/data" -A trust -U postgres \
		--encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
		tail -n 20 "$dir/initdb.log" >&2
		am_die "initdb failed; see $dir/initdb.log"
	fi
	# Settings that change between starts (the port) live in athena.conf,
	# rewritten by am_pg_start, so no quoting passes through pg_ctl -o.
	printf "\ninclude_if_exists = 'athena.conf'\n" >>"$dir/data/postgresql.conf"
}

# am_pg_start DIR [PORT]: start the cluster in DIR (creating it if needed)
# on PORT, else the port it used last time, else a free port; wait until it
# accepts connections (60 s at most), create database athena if absent,
# export DATABASE_URL and AM_PG_PORT and print DATABASE_URL=... on stdout.
# Starting a running cluster only does the last three.
am_pg_start() {
	local dir port=${2:-}
	dir=$(am_abs "$1")
	am_pg_init "$dir"

	if am_pg_running "$dir"; then
		port=$(<"$dir/port")
		am_log "postgres already running in $dir on port $port"
	else
		if [[ -z $port && -f $dir/port ]]; then
			port=$(<"$dir/port")
		fi
		if [[ -z $port ]]; then
			port=$(am_free_port)
		fi
		[[ $port =~ ^[0-9]+$ ]] || am_die "bad port '$port'"
		printf '%s\n' "$port" >"$dir/port"

		# A unix socket path is limited to 107 bytes; without one the
		# server still listens on TCP, which is all the clients use.
		local sockdir="$dir/sock"
		if ((${#sockdir} > 80)); then
			sockdir=""
		else
			mkdir -p "$sockdir"
			((EUID != 0)) || chown postgres:postgres "$sockdir"
		fi
		printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
			"$port" "${sockdir//\'/\'\'}" >"$dir/data/athena.conf"
		((EUID != 0)) || chown postgres:postgres "$dir/data/athena.conf"

		am_log "starting postgres in $dir on 127.0.0.1:$port"
		if ! _am_pg_as_owner "$AM_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" \
			-w -t 60 -s start; then
			tail -n 20 "$dir/log" >&2 || true
			am_die "postgres did not start; see $dir/log"
		fi
	fi

	local deadline=$((SECONDS + 60))
	until "$AM_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
		((SECONDS < deadline)) || am_die "postgres on port $port not ready after 60 s; see $dir/log"
		sleep 0.1
	done

	if [[ -z $(_am_pg_psql "$port" -c "SELECT 1 FROM pg_database WHERE datname = '$AM_PG_DB'") ]]; then
		_am_pg_psql "$port" -c "CREATE DATABASE $AM_PG_DB"
	fi

	AM_PG_PORT=$port
	DATABASE_URL=$(am_pg_url "$port")
	export AM_PG_PORT DATABASE_URL
	printf 'DATABASE_URL=%s\n' "$DATABASE_URL"
}

# am_pg_stop DIR [fast|immediate|smart]: stop the cluster in DIR if it runs.
am_pg_stop() {
	local dir mode=${2:-fast}
	dir=$(am_abs "$1")
	case $mode in
	fast | immediate | smart) ;;
	*) am_die "bad stop mode '$mode' (fast, immediate or smart)" ;;
	esac
	if ! am_pg_running "$dir"; then
		am_log "postgres in $dir is not running"
		return 0
	fi
	am_log "stopping postgres in $dir ($mode)"
	_am_pg_as_owner "$AM_PG_BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 -s stop
}

# am_pg_status DIR: print running/stopped and the URL; fail when stopped.
am_pg_status() {
	local dir
	dir=$(am_abs "$1")
	if am_pg_running "$dir"; then
		printf 'running\nDATABASE_URL=%s\n' "$(am_pg_url "$(<"$dir/port")")"
		return 0
	fi
	printf 'stopped\n'
	return 3
}
