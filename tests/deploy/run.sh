#!/usr/bin/env bash
# tests/deploy/run.sh: run one check file of deploy/ under node's test runner
# (run.sh k8s.test.js), or, with --install, install the checks' npm packages
# from the committed lockfile. ctest runs --install once before the checks.
# shellcheck source=tests/lib.sh
source "$AM_SOURCE_DIR/tests/lib.sh"

deploy_dir=$AM_SOURCE_DIR/tests/deploy
am_have node || am_fail "node not found: apt-get install nodejs npm (scripts/lib/deps.sh)"

if [[ ${1:-} == --install ]]; then
	# npm records what it installed in node_modules/.package-lock.json; a
	# newer package-lock.json means the pinned set changed.
	if [[ ! -f $deploy_dir/node_modules/.package-lock.json ||
		$deploy_dir/package-lock.json -nt $deploy_dir/node_modules/.package-lock.json ]]; then
		am_have npm || am_fail "npm not found: apt-get install npm"
		(cd "$deploy_dir" && npm ci --no-audit --no-fund --loglevel=error) ||
			am_fail "npm ci in tests/deploy failed"
	fi
	exit 0
fi

[[ -f $deploy_dir/node_modules/.package-lock.json ]] ||
	am_fail "tests/deploy/node_modules is missing: run tests/deploy/run.sh --install (ctest does)"
# kubectl renders the manifests; its kustomize must understand kustomization
# files of today (replicas, patches with paths, directories as resources).
KUBECTL=${KUBECTL:-kubectl}
am_have "$KUBECTL" || am_fail "kubectl not found: install kubectl 1.27 or later (docs/DEPLOY.md)"
kustomize_version=$("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p')
kustomize_major=${kustomize_version%%.*}
if [[ ! $kustomize_major =~ ^[0-9]+$ ]] || ((kustomize_major < 5)); then
	am_fail "kubectl's kustomize is '${kustomize_version:-unknown}', 5 or later is needed: install kubectl 1.27 or later"
fi
export KUBECTL

file=${1:?usage: run.sh FILE.test.js | --install}
cd "$deploy_dir" || am_fail "cannot enter $deploy_dir"
node --test --test-reporter=spec "$file"
