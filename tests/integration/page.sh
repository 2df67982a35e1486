#!/usr/bin/env bash
# The performance page in headless Chromium: it loads without console errors, shows the summary's
# figures, takes a metric published on the bus into its live table within two seconds, filters
# through the URL (surviving a reload), says so when there is no data or no database, fits a phone;
# it also measures the first load's bytes and time. Screenshots go to build/test-artefacts/page.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[[ -x $CHROMIUM ]] || am_fail "$CHROMIUM not found: apt-get install chromium (scripts/lib/deps.sh)"
am_have node || am_fail "node not found: apt-get install nodejs npm (scripts/lib/deps.sh)"

# The test's one npm dependency (playwright-core, pinned in package-lock.json).
browser_dir=$AM_SOURCE_DIR/tests/browser
if [[ ! -f $browser_dir/node_modules/playwright-core/package.json ]]; then
	am_have npm || am_fail "npm not found: apt-get install npm"
	(cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error) ||
		am_fail "npm ci in tests/browser failed"
fi

artefacts=$(cd "$AM_BIN_DIR/.." && pwd)/test-artefacts/page
rm -rf "$artefacts"
mkdir -p "$artefacts"

am_fresh_db
collector_start collector
admin_start admin ADMIN_ALERT_INTERVAL_S=1 ADMIN_ALERT_WEBHOOK_RETRIES=0

# phi3:mini has a price (its calls cost something), llama3.1:8b none (0).
out=$(http PUT /api/llm-backends/prices -H 'Content-Type: application/json' \
	-d '{"model": "phi3:mini", "input_usd_per_mtok": 0.5, "output_usd_per_mtok": 1.5, "valid_from": 0}')
am_assert_eq "price of phi3:mini" 200 "$(http_status "$out")"

# Known metrics over the last 45 minutes: two models, two backends, three intents, every tenth
# call an error, requests of three calls (classify, synthesize, validate).
count=60
now=$(date +%s)
jq -n --argjson n "$count" --argjson now "$now" '
	[range(0; $n) as $k | {
		timestamp: ($now - 30 - $k * 45),
		model: (if $k % 3 == 0 then "llama3.1:8b" else "phi3:mini" end),
		backend: (if $k % 2 == 0 then "ollama" else "mlx" end),
		latency_seconds: (0.2 + ($k % 7) * 0.35),
		tokens: (20 + $k),
		tokens_per_second: (30 + ($k % 5) * 4.5),
		prompt_tokens: (100 + $k),
		ttft_seconds: (if $k % 2 == 0 then 0.05 + ($k % 4) * 0.02 else null end),
		status: (if $k % 10 == 9 then "error" else "ok" end),
		error_type: (if $k % 10 == 9 then "timeout" else null end),
		intent: (["chat", "search", "summarize"][$k % 3]),
		stage: (["classify", "synthesize", "validate"][$k % 3]),
		request_id: "req-page-\($k / 3 | floor)",
		session_id: "sess-\($k % 4)",
		user_id: "user-1"
	}]' >"$AM_TEST_TMP/metrics.json"
out=$(http POST /api/llm-backends/metrics/batch -H 'Content-Type: application/json' \
	--data-binary @"$AM_TEST_TMP/metrics.json")
am_assert_eq "batch insert" 201 "$(http_status "$out")"

# Two alert rules over the same calls: one fires (some calls in the last hour), one does not.
for rule in '"name": "page-busy", "threshold": 0.001' '"name": "page-quiet", "threshold": 1000'; do
	out=$(http POST /api/llm-backends/alerts -H 'Content-Type: application/json' --data "{$rule,
		\"metric\": \"request_rate\", \"op\": \">\", \"window_seconds\": 3600,
		\"webhook_url\": \"http://127.0.0.1:1/\"}")
	am_assert_eq "alert rule created" 201 "$(http_status "$out")"
done
alert_firing() { [[ $(curl -fs "$ADMIN/api/llm-backends/alerts?state=firing" | jq -r 'map(.name) | join(",")') == page-busy ]]; }
am_wait_for "alert page-busy firing" 30 alert_firing

# An admin-api whose database is down, for the error state.
down_port=$(am_free_port)
am_bg admin-down env LISTEN_ADDR="127.0.0.1:$down_port" DATABASE_URL=postgresql://127.0.0.1:1/none \
	ADMIN_DB_TIMEOUT_MS=500 ADMIN_ROLLUP_INTERVAL_S=0 "$AM_BIN_DIR/athena-admin-api"
am_wait_for "admin-down alive" 30 curl -fs "http://127.0.0.1:$down_port/health"

# The page and its assets, as any HTTP client sees them.
out=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$ADMIN/")
am_assert_eq "/ redirects" "302 $ADMIN/performance" "$out"
headers=$(curl -si "$ADMIN/static/app.js" | tr -d '\r')
grep -qi '^content-type: text/javascript' <<<"$headers" || am_fail "app.js content type: $headers"
etag=$(awk -F': ' 'tolower($1) == "etag" { print $2 }' <<<"$headers")
[[ -n $etag ]] || am_fail "app.js has no ETag"
am_assert_eq "revalidation by ETag" 304 \
	"$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$ADMIN/static/app.js")"
am_assert_eq "unknown asset" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/static/nope.js")"

ADMIN=$ADMIN ADMIN_DOWN=http://127.0.0.1:$down_port COLLECTOR_BUS=$COLLECTOR_BUS \
	LOAD_BIN=$AM_BIN_DIR/athena-metrics-load ARTEFACTS=$artefacts CHROMIUM=$CHROMIUM \
	EXPECT_COUNT=$count EXPECT_ALERT=page-busy EXPECT_REQUEST=req-page-0 EXPECT_REQUEST_CALLS=3 \
	timeout 300 node "$browser_dir/page.test.js" || am_fail "browser checks failed (screenshots in $artefacts)"
echo "screenshots: $artefacts"
