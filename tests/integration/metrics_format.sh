#!/usr/bin/env bash
# Every service's /metrics is valid Prometheus text format (promtool check metrics),
# before and after traffic.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

command -v promtool >/dev/null || am_fail "promtool is missing (Debian package prometheus)"
am_fresh_db
collector_start collector
admin_start admin

check() {
	local name=$1 url=$2 out
	curl -fs "$url/metrics" >"$AM_TEST_TMP/$name.prom" || am_fail "$name: GET /metrics failed"
	out=$(promtool check metrics <"$AM_TEST_TMP/$name.prom" 2>&1) ||
		am_fail "$name: promtool rejects /metrics: $out"
	[[ -s $AM_TEST_TMP/$name.prom ]] || am_fail "$name: /metrics is empty"
}
check collector "$COLLECTOR_HTTP"
check admin-api "$ADMIN"

"$AM_BIN_DIR/athena-metrics-load" --url "$COLLECTOR_BUS" --count 2000 --source-id fmt >/dev/null 2>&1
curl -fs "$ADMIN/health" >/dev/null
curl -s "$ADMIN/nope" >/dev/null
am_wait_for "2000 metrics inserted" 30 collector_metric_is athena_collector_metrics_inserted_total "" 2000
check collector "$COLLECTOR_HTTP"
check admin-api "$ADMIN"
grep -q '^athena_admin_http_requests_total{method="GET",route="/health",status="200"} [1-9]' \
	"$AM_TEST_TMP/admin-api.prom" || am_fail "admin-api does not count requests by route and status"
echo "ok: /metrics of the collector and the admin-api pass promtool"
