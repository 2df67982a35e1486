#!/usr/bin/env bash
# Mutual TLS on the bus: a publisher with a certificate signed by the bus's
# CA is stored; one whose certificate another CA signed, one without a
# certificate, one that does not trust the collector and one speaking plain
# TCP are all refused during the handshake, before any frame of theirs is
# decoded. Missing TLS files are a bad setting: exit 2 and one line naming
# the variable.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

command -v openssl >/dev/null || am_fail "openssl is needed to make the test certificates"
pki=$AM_TEST_TMP/pki
mkdir -p "$pki"
# ca NAME: a self-signed CA.
ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=athena bus test $1" -keyout "$pki/$1.key" -out "$pki/$1.crt" 2>/dev/null
}
# cert NAME CA CN EXTENSION: a key and a certificate signed by CA.
cert() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$3" \
		-keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
	printf '%s\n' "$4" >"$pki/$1.ext"
	openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" -CAcreateserial \
		-days 2 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
ca bus
ca rogue
cert collector bus localhost "subjectAltName=DNS:localhost"
cert publisher bus publisher "extendedKeyUsage=clientAuth"
cert intruder rogue publisher "extendedKeyUsage=clientAuth"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate

# Bad settings first: no certificate to listen with, no CA to check the collector with.
out=$("$AM_BIN_DIR/athena-collector" --bus-listen tls+tcp://127.0.0.1:1 2>&1) && am_fail "collector started without a certificate"
am_assert_eq "collector without a certificate: exit" 2 "$(
	"$AM_BIN_DIR/athena-collector" --bus-listen tls+tcp://127.0.0.1:1 >/dev/null 2>&1
	echo $?
)"
[[ $out == *METRICS_BUS_TLS_CERT* && $(wc -l <<<"$out") == 1 ]] ||
	am_fail "collector without a certificate: want one line naming METRICS_BUS_TLS_CERT, got: $out"
# The replay socket takes the same files: listening on tls+tcp:// without a certificate is refused too.
out=$("$AM_BIN_DIR/athena-collector" --bus-listen tcp://127.0.0.1:1 --replay-listen tls+tcp://127.0.0.1:1 2>&1) &&
	am_fail "collector started a TLS replay socket without a certificate"
[[ $out == *METRICS_BUS_TLS_CERT* && $(wc -l <<<"$out") == 1 ]] ||
	am_fail "TLS replay socket without a certificate: want one line naming METRICS_BUS_TLS_CERT, got: $out"
am_assert_eq "publisher without a CA: exit" 2 "$(
	"$AM_BIN_DIR/athena-metrics-load" --url tls+tcp://localhost:1 --count 1 >/dev/null 2>&1
	echo $?
)"
out=$(METRICS_BUS_TLS_CERT=$pki/publisher.crt "$AM_BIN_DIR/athena-metrics-load" \
	--url tls+tcp://localhost:1 --count 1 2>&1) && am_fail "publisher started with a certificate but no key"
[[ $out == *METRICS_BUS_TLS_* ]] || am_fail "publisher with a certificate and no key: $out"

port=$(am_free_port)
replay_port=$(am_free_port)
collector_start collector METRICS_BUS_LISTEN="tls+tcp://127.0.0.1:$port" \
	METRICS_REPLAY_LISTEN="tls+tcp://127.0.0.1:$replay_port" \
	METRICS_BUS_TLS_CA="$pki/bus.crt" METRICS_BUS_TLS_CERT="$pki/collector.crt" \
	METRICS_BUS_TLS_KEY="$pki/collector.key"
# The collector's certificate names localhost: NNG's TLS checks host names, not addresses.
url=tls+tcp://localhost:$port

# publish NAME [ENV=VALUE...]: 500 metrics from source NAME; prints the
# publisher's summary line. Each publisher tries for METRICS_LINGER_MS (3 s)
# to reach a collector, then counts what it could not send as dropped and
# exits 1.
publish() {
	local name=$1 out
	shift
	out=$(env METRICS_LINGER_MS=3000 METRICS_REPLAY_URLS="${REPLAY-tls+tcp://localhost:$replay_port}" "$@" \
		"$AM_BIN_DIR/athena-metrics-load" --url "${URL:-$url}" \
		--count 500 --source-id "$name" 2>/dev/null) || true
	tail -n 1 <<<"$out"
}
for who in "intruder: signed by another CA|METRICS_BUS_TLS_CA=$pki/bus.crt METRICS_BUS_TLS_CERT=$pki/intruder.crt METRICS_BUS_TLS_KEY=$pki/intruder.key" \
	"no-certificate: presents none|METRICS_BUS_TLS_CA=$pki/bus.crt" \
	"distrustful: trusts another CA|METRICS_BUS_TLS_CA=$pki/rogue.crt METRICS_BUS_TLS_CERT=$pki/publisher.crt METRICS_BUS_TLS_KEY=$pki/publisher.key"; do
	desc=${who%%|*}
	read -r -a env_args <<<"${who#*|}"
	line=$(publish "${desc%%:*}" "${env_args[@]}")
	[[ $line == *" sent=0 "* && $line == *" dropped=500 "* ]] ||
		am_fail "${desc%%:*} (${desc#*: }) got through or did not count its drops: $line"
done
line=$(URL=tcp://127.0.0.1:$port REPLAY=tcp://127.0.0.1:$replay_port publish plain)
[[ $line == *" sent=0 "* ]] || am_fail "a plain TCP publisher got through: $line"

# Nothing of theirs was read as a frame, not even as a malformed one.
am_assert_eq "frames received from refused peers" 0 "$(collector_metric athena_collector_frames_received_total)"
am_assert_eq "malformed frames from refused peers" 0 "$(collector_malformed_total)"

# The collector was there all along: a publisher with the right certificate gets in.
line=$(publish trusted METRICS_BUS_TLS_CA="$pki/bus.crt" METRICS_BUS_TLS_CERT="$pki/publisher.crt" \
	METRICS_BUS_TLS_KEY="$pki/publisher.key")
[[ $line == *" sent=500 "* && $line == *" dropped=0 "* ]] || am_fail "the trusted publisher: $line"
am_wait_for "500 rows" 30 rows_are 500
am_assert_eq "rows from refused publishers" 0 \
	"$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE source_id <> 'trusted'")"
collector_assert_nothing_dropped
echo "ok: only the publisher with a certificate of the bus CA was stored; 4 others refused before any frame"
