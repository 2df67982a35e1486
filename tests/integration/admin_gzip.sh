#!/usr/bin/env bash
# HTTP compression: answers of 1 KiB or more (JSON and text) are gzipped when the client accepts
# gzip and sent plain otherwise, with the same bytes once decoded; every such answer says
# Vary: Accept-Encoding; the page's pre-compressed assets are not compressed twice.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

am_fresh_db
admin_start admin ADMIN_RETENTION_DAYS=0 ADMIN_ROLLUP_INTERVAL_S=0
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, status, source, source_id, epoch, seq)
  SELECT now() - i * interval '10 seconds', 'phi3:mini', 'ollama', 0.5 + i / 100.0, i, 30, 'ok',
    'gateway', 'gzip', 0, i FROM generate_series(1, 300) AS i"

# fetch NAME PATH [CURL_ARGS...]: the headers (lower-case names, no CR) to NAME.h, the body as
# sent on the wire to NAME.b.
fetch() {
	local name=$1 path=$2
	shift 2
	curl -s -D "$AM_TEST_TMP/$name.h" -o "$AM_TEST_TMP/$name.b" "$@" "$ADMIN$path" ||
		am_fail "GET $path failed"
	sed -i 's/\r$//; s/^\([^:]*\):/\L\1:/' "$AM_TEST_TMP/$name.h"
}
header() { awk -F': ' -v n="$2" '$1 == n { print $2 }' "$AM_TEST_TMP/$1.h" | paste -sd,; }
size() { wc -c <"$AM_TEST_TMP/$1.b"; }

L='/api/llm-backends/metrics?limit=300'
fetch plain "$L"
fetch gz "$L" -H 'Accept-Encoding: gzip'
am_assert_eq "no Accept-Encoding: sent plain" "" "$(header plain content-encoding)"
am_assert_eq "no Accept-Encoding: Vary" "Accept-Encoding" "$(header plain vary)"
am_assert_eq "the plain list is JSON" 300 "$(jq length "$AM_TEST_TMP/plain.b")"
am_assert_eq "Accept-Encoding: gzip: gzipped" gzip "$(header gz content-encoding)"
am_assert_eq "Accept-Encoding: gzip: Vary" "Accept-Encoding" "$(header gz vary)"
am_assert_eq "Content-Length is the gzipped size" "$(size gz)" "$(header gz content-length)"
am_assert_eq "gzipped list decodes to the plain bytes" "$(sha1sum <"$AM_TEST_TMP/plain.b")" \
	"$(gzip -dc "$AM_TEST_TMP/gz.b" | sha1sum)"
(($(size gz) * 4 < $(size plain))) || am_fail "gzip saves little: $(size gz) of $(size plain) bytes"

# Negotiation as RFC 9110 12.5.3 has it: q=0 refuses, "*" stands for gzip unless gzip is named.
check_encoding() {
	fetch neg "$2" -H "Accept-Encoding: $3"
	am_assert_eq "$1" "$4" "$(header neg content-encoding)"
}
check_encoding "gzip;q=0 refuses" "$L" "gzip;q=0" ""
check_encoding "gzip; q=0.000 with others refuses" "$L" "br, gzip; q=0.000, deflate" ""
check_encoding "gzip;q=0 wins over *" "$L" "*, gzip;q=0" ""
check_encoding "* accepts" "$L" "br;q=1.0, *;q=0.1" gzip
check_encoding "*;q=0 refuses" "$L" "*;q=0" ""
check_encoding "GZIP in capitals, with a weight" "$L" "deflate, GZIP;q=0.5" gzip
check_encoding "x-gzip" "$L" "x-gzip" gzip
check_encoding "identity only" "$L" "identity" ""
check_encoding "br only" "$L" "br" ""

# Small answers and errors go out plain, still with Vary.
fetch small /health -H 'Accept-Encoding: gzip'
am_assert_eq "small answer: plain" "" "$(header small content-encoding)"
am_assert_eq "small answer: Vary" "Accept-Encoding" "$(header small vary)"
fetch bad '/api/llm-backends/metrics?limit=x' -H 'Accept-Encoding: gzip'
am_assert_eq "error: plain JSON" "limit must be a whole number of at least 1" \
	"$(jq -r .error "$AM_TEST_TMP/bad.b")"

# Summary and timeseries too (PostgreSQL's JSON, any size over the threshold).
T="/api/llm-backends/metrics/timeseries?bucket=1m&since=$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)"
fetch tsplain "$T"
fetch tsgz "$T" -H 'Accept-Encoding: gzip'
am_assert_eq "timeseries gzipped" gzip "$(header tsgz content-encoding)"
am_assert_eq "timeseries decodes to the plain answer" "$(jq -c .points "$AM_TEST_TMP/tsplain.b")" \
	"$(gzip -dc "$AM_TEST_TMP/tsgz.b" | jq -c .points)"

# Prometheus text is compressed as well (scrapers send Accept-Encoding: gzip).
fetch prom /metrics -H 'Accept-Encoding: gzip'
am_assert_eq "/metrics gzipped" gzip "$(header prom content-encoding)"
gzip -dc "$AM_TEST_TMP/prom.b" | grep -q '^athena_admin_' || am_fail "/metrics does not decode"

# The page's assets are stored gzipped: served once-compressed, with their own ETag.
fetch jsgz /static/chart.min.js -H 'Accept-Encoding: gzip'
fetch js /static/chart.min.js
am_assert_eq "asset: one Content-Encoding" gzip "$(header jsgz content-encoding)"
am_assert_eq "asset: one Vary" "Accept-Encoding" "$(header jsgz vary)"
am_assert_eq "asset decodes (once) to the plain bytes" "$(sha1sum <"$AM_TEST_TMP/js.b")" \
	"$(gzip -dc "$AM_TEST_TMP/jsgz.b" | sha1sum)"
echo "ok: gzip negotiated"
