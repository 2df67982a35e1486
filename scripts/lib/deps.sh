# shellcheck shell=bash
# scripts/lib/deps.sh: install the Debian packages the project needs to
# build, test and run. Source it and call am_install_deps.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

AM_DEB_PACKAGES=(
	build-essential cmake pkg-config
	libnng-dev protobuf-c-compiler libprotobuf-c-dev
	libpq-dev postgresql-15 postgresql-client-15
	libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libyajl-dev zlib1g-dev libjemalloc-dev
	libcmocka-dev clang-format clang libclang-rt-14-dev
	curl procps iproute2 jq prometheus openssl
	chromium libjs-chart.js nodejs npm
)
# NodeSource's nodejs ships npm itself and conflicts with Debian's npm package:
# where an npm is already there, do not ask apt for one.
if am_have npm; then
	_am_pkgs=()
	for _am_pkg in "${AM_DEB_PACKAGES[@]}"; do
		[[ $_am_pkg == npm ]] || _am_pkgs+=("$_am_pkg")
	done
	AM_DEB_PACKAGES=("${_am_pkgs[@]}")
	unset _am_pkgs _am_pkg
fi

# am_install_deps: apt-get install whatever of AM_DEB_PACKAGES is missing;
# does nothing (and needs no privileges) when all are there. AM_SKIP_DEPS=1
# skips the check, for machines that are not Debian.
am_install_deps() {
	if [[ ${AM_SKIP_DEPS:-0} == 1 ]]; then
		am_log "skipping package check (AM_SKIP_DEPS=1)"
		return 0
	fi
	local pkg missing=()
	for pkg in "${AM_DEB_PACKAGES[@]}"; do
		if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		am_log "packages: all present"
		return 0
	fi

	am_log "installing packages: ${missing[*]}"
	am_have apt-get || am_die "apt-get not found; install by hand: ${missing[*]}"
	local sudo=()
	if ((EUID != 0)); then
		am_have sudo || am_die "not root and no sudo; install by hand: ${missing[*]}"
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}"
}
