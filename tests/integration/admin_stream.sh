#!/usr/bin/env bash
# GET /api/llm-backends/metrics/stream: stored metrics arrive as Server-Sent Events, filtered, in
# id order, resumable, to many clients for one query per notification, through gaps in the ids and
# a lost hub connection, past the HTTP idle timeout; slow clients lose events, not the others;
# the client limit answers 503; SIGTERM ends the streams.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

STREAM=/api/llm-backends/metrics/stream

# sse NAME: the file holding what stream client NAME received.
sse() { printf '%s/%s.sse\n' "$AM_TEST_TMP" "$1"; }

# stream_start NAME QUERY [CURL_ARGS...]: a curl client of $STREAM$QUERY, in the background.
stream_start() {
	local name=$1 query=$2
	shift 2
	am_bg "$name" curl -sN -o "$(sse "$name")" "$@" "$ADMIN$STREAM$query"
}

# stream_open NAME QUERY [CURL_ARGS...]: stream_start, then wait for the stream's first line.
stream_open() {
	stream_start "$@"
	am_wait_for "stream $1 open" 30 grep -q '^: athena-metrics event stream' "$(sse "$1")"
}

# metric_ids NAME: the ids of the metric events NAME received, in order.
metric_ids() { awk '/^id: / { id = $2 } /^event: metric$/ { print id }' "$(sse "$1")"; }

# metric_docs NAME: the JSON of the metric events NAME received, one a line.
metric_docs() {
	awk '/^event: / { ev = $2 } /^data: / && ev == "metric" { print substr($0, 7) } /^$/ { ev = "" }' \
		"$(sse "$1")"
}

# events_are NAME N: NAME received N metric events.
events_are() { [[ $(metric_ids "$1" | wc -l) == "$2" ]]; }

# accounted NAME: in stream order, the ids of the metric events NAME received and the ids its
# `dropped` events announced (slow_client: first_id..last_id, counted in full when unfiltered).
accounted() {
	awk '/^id: / { id = $2 } /^event: / { ev = $2 }
		/^data: / && ev == "metric" { print id }
		/^data: / && ev == "dropped" && /slow_client/ {
			match($0, /"first_id": [0-9]+/); f = substr($0, RSTART + 12, RLENGTH - 12)
			match($0, /"last_id": [0-9]+/); l = substr($0, RSTART + 11, RLENGTH - 11)
			for (i = f; i <= l; i++) print i
		}
		/^$/ { ev = "" }' "$(sse "$1")"
}
accounted_is() { [[ $(accounted "$1") == "$2" ]]; }

# dropped_count NAME: the events NAME's `dropped` events say it lost.
dropped_count() {
	grep -o '"reason": "slow_client", "count": [0-9]*' "$(sse "$1")" | awk '{ n += $NF } END { print n + 0 }'
}

# has_event NAME ID: NAME received the metric with id ID.
has_event() { metric_ids "$1" | grep -qx "$2"; }

# admin_metric NAME [LABELS]: one sample of the admin-api's /metrics.
admin_metric() {
	local series=$1
	[[ -n ${2:-} ]] && series="$1{$2}"
	curl -fs "$ADMIN/metrics" | awk -v s="$series" '$1 == s { print $2; found = 1 } END { exit !found }'
}
admin_metric_is() { [[ $(admin_metric "$1" "$2") == "$3" ]]; }
admin_metric_above() { (($(admin_metric "$1" "$2") > $3)); }

# db_ids [WHERE]: the ids of the stored metrics, in order.
db_ids() { am_psql "SELECT id FROM llm_performance_metric ${1:+WHERE $1} ORDER BY id"; }

# inject COUNT: COUNT phi3:mini metrics through the bus (am-bus-inject), one stream throughout.
inject_seq=0
inject() {
	"$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --first-seq "$inject_seq" --batches 1 \
		--batch-size "$1" >/dev/null
	inject_seq=$((inject_seq + $1))
}

# inject_stored COUNT: inject COUNT, wait until the collector committed them, and set NEW_ID
# to the newest id visible.
inject_stored() {
	local before
	before=$(am_psql 'SELECT count(*) FROM llm_performance_metric')
	inject "$1"
	am_wait_for "$1 injected metrics stored" 30 rows_are $((before + $1))
	NEW_ID=$(am_psql 'SELECT max(id) FROM llm_performance_metric')
}

# load SOURCE_ID COUNT: COUNT metrics of several models through the publisher library.
load() {
	"$AM_BIN_DIR/athena-metrics-load" --url "$COLLECTOR_BUS" --source-id "$1" --count "$2" \
		>/dev/null
}

am_fresh_db
collector_start collector
# An admin-api with a 1 s HTTP idle timeout, for a stream that stays idle: it must outlive it.
admin_start admin_idle ADMIN_HTTP_TIMEOUT_S=1
stream_open idle "?model=no-such-model"
admin_start admin

# Bad input is refused before anything streams.
expect_error "status outside ok/error" 400 GET "$STREAM?status=maybe"
expect_error "negative since_id" 400 GET "$STREAM?since_id=-1"
expect_error "since_id not a number" 400 GET "$STREAM?since_id=abc"
expect_error "model not UTF-8" 400 GET "$STREAM?model=%ff"
expect_error "Last-Event-ID not a number" 400 GET "$STREAM" -H "Last-Event-ID: 12x"

# Live events: one filtered client, one not.
stream_open phi "?model=phi3:mini"
stream_open all "" -D "$AM_TEST_TMP/all.headers"
grep -qi '^content-type: text/event-stream' "$AM_TEST_TMP/all.headers" ||
	am_fail "the stream is not text/event-stream: $(cat "$AM_TEST_TMP/all.headers")"
inject 5
load stream-load 300
am_wait_for "305 rows stored" 30 rows_are 305
am_wait_for "every row on the unfiltered stream" 30 events_are all 305
phi_rows=$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE model = 'phi3:mini'")
((phi_rows > 5 && phi_rows < 305)) || am_fail "the load sent no mix of models ($phi_rows phi3:mini)"
am_wait_for "every phi3:mini row on the filtered stream" 30 events_are phi "$phi_rows"
am_assert_eq "ids on the unfiltered stream, in order" "$(db_ids)" "$(metric_ids all)"
am_assert_eq "ids on the filtered stream" "$(db_ids "model = 'phi3:mini'")" "$(metric_ids phi)"
am_assert_eq "models on the filtered stream" "phi3:mini" "$(metric_docs phi | jq -r .model | sort -u)"

# An event carries the list endpoint's fields, with the row's values.
first_doc=$(metric_docs all | sed -n 1p)
last_doc=$(metric_docs all | sed -n '$p')
am_assert_eq "fields of an event" \
	"backend device_id error_type id intent latency_seconds model prompt_tokens request_id session_id source stage status timestamp tokens tokens_generated tokens_per_second ttft_seconds user_id zone" \
	"$(jq -r 'keys_unsorted | sort | join(" ")' <<<"$first_doc")"
am_assert_eq "the last event against its row" \
	"$(am_psql "SELECT model, backend, tokens, request_id, session_id, status FROM llm_performance_metric WHERE id = $(jq .id <<<"$last_doc")")" \
	"$(jq -r '[.model, .backend, .tokens_generated, .request_id, .session_id, .status] | map(. // "") | join("|")' <<<"$last_doc")"
jq -e '.timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+[+]00:00$")' <<<"$first_doc" >/dev/null ||
	am_fail "timestamp is not ISO 8601 in UTC: $first_doc"

# The idle stream outlives the 1 s HTTP timeout and gets a heartbeat (every 15 s).
am_wait_for "a heartbeat on the idle stream" 30 grep -q '^: heartbeat$' "$(sse idle)"
kill -0 "$(am_pid idle)" 2>/dev/null || am_fail "the 1 s HTTP idle timeout closed an idle stream"
events_are idle 0 || am_fail "the stream filtered on a model nobody uses got events"

# Resume: what a client missed is replayed after Last-Event-ID (which wins over since_id).
last_phi=$(metric_ids phi | sed -n '$p')
am_stop phi || true
inject 3
load stream-load-2 50
am_wait_for "358 rows stored" 30 rows_are 358
missed=$(db_ids "model = 'phi3:mini' AND id > $last_phi")
stream_open phi2 "?model=phi3:mini&since_id=0" -H "Last-Event-ID: $last_phi"
am_wait_for "the missed phi3:mini rows replayed" 30 events_are phi2 "$(wc -l <<<"$missed")"
am_assert_eq "replayed ids" "$missed" "$(metric_ids phi2)"
stream_open since "?since_id=300"
am_wait_for "the rows after since_id=300 replayed" 30 events_are since 58
am_assert_eq "ids replayed after since_id=300" "$(db_ids "id > 300")" "$(metric_ids since)"
am_wait_for "every row on the unfiltered stream" 30 events_are all 358

# 50 more clients get the next event, and the hub still reads it once per notification.
for i in $(seq 1 50); do stream_start "many$i" ""; done
for i in $(seq 1 50); do
	am_wait_for "stream many$i open" 30 grep -q '^: athena-metrics event stream' "$(sse "many$i")"
done
n0=$(admin_metric athena_admin_stream_notifications_total)
q0=$(admin_metric athena_admin_stream_hub_queries_total 'trigger="notify"')
d0=$(admin_metric athena_admin_stream_events_delivered_total)
inject_stored 1
for i in $(seq 1 50); do am_wait_for "metric $NEW_ID on stream many$i" 30 has_event "many$i" "$NEW_ID"; done
n1=$(admin_metric athena_admin_stream_notifications_total)
q1=$(admin_metric athena_admin_stream_hub_queries_total 'trigger="notify"')
d1=$(admin_metric athena_admin_stream_events_delivered_total)
((n1 > n0)) || am_fail "no notification reached the hub"
((q1 - q0 >= 1 && q1 - q0 <= n1 - n0)) ||
	am_fail "the hub made $((q1 - q0)) queries for $((n1 - n0)) notifications and 54 clients"
((d1 - d0 >= 50)) || am_fail "only $((d1 - d0)) events delivered to 50 clients"
pids=()
for i in $(seq 1 50); do pids+=("$(am_pid "many$i")"); done
kill -TERM "${pids[@]}"
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done

# The client limit (256 by default): raw connections until one is refused with 503; a client
# that leaves frees its slot at once, even while its stream is idle. (No process is started
# while raw connections are open: it would inherit them and keep them open.)
raw_open() {
	exec {RAW_FD}<>"/dev/tcp/127.0.0.1/${ADMIN##*:}"
	printf 'GET %s HTTP/1.0\r\n\r\n' "$STREAM$1" >&"$RAW_FD"
	IFS=$' \r' read -r -t 10 -u "$RAW_FD" _ RAW_STATUS _ || RAW_STATUS="no answer"
}
raw_fds=()
for ((i = 0; i < 300; i++)); do
	raw_open "?model=no-such-model"
	[[ $RAW_STATUS == 200 ]] || break
	raw_fds+=("$RAW_FD")
done
am_assert_eq "status past the client limit" 503 "$RAW_STATUS"
exec {RAW_FD}>&-
am_assert_eq "clients at the limit" 256 "$(admin_metric athena_admin_stream_clients)"
expect_error "a stream over the limit" 503 GET "$STREAM"
fd=${raw_fds[0]}
exec {fd}>&-
raw_open "?model=no-such-model"
am_assert_eq "status once a client left" 200 "$RAW_STATUS"
raw_fds[0]=$RAW_FD
am_assert_eq "refused stream requests" 2 "$(admin_metric athena_admin_stream_rejected_total)"
for fd in "${raw_fds[@]}"; do exec {fd}>&-; done

# A gap in the ids: a row whose transaction commits after a later row's still comes, in order.
mkfifo "$AM_TEST_TMP/tx.sql"
am_bg tx "$AM_PSQL" -X -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$AM_TEST_TMP/tx.sql"
exec {tx}>"$AM_TEST_TMP/tx.sql"
# Three hours back: inserts into one hour wait for each other (they mark the hour for the rollups).
printf '%s\n' "BEGIN;" "INSERT INTO llm_performance_metric (timestamp, model, backend,
  latency_seconds, source_id, epoch, seq) VALUES (now() - interval '3 hours', 'phi3:mini', 'ollama',
  1, 'gap-test', 1, 1) RETURNING id;" >&"$tx"
am_wait_for "an id taken by the open transaction" 30 grep -qE '^[0-9]+$' "$(am_log_of tx)"
gap_id=$(grep -E '^[0-9]+$' "$(am_log_of tx)" | sed -n '$p')
g0=$(admin_metric athena_admin_stream_hub_queries_total 'trigger="gap"')
inject_stored 1
later_id=$NEW_ID
((later_id > gap_id)) || am_fail "the collector's row $later_id is not after $gap_id"
am_wait_for "the hub holding at the gap" 30 \
	admin_metric_above athena_admin_stream_hub_queries_total 'trigger="gap"' "$g0"
has_event all "$later_id" && am_fail "metric $later_id was sent while $gap_id could still commit"
printf '%s\n' "NOTIFY llm_metric;" "COMMIT;" >&"$tx"
exec {tx}>&-
am_wait_for "both rows of the gap on the stream" 30 has_event all "$later_id"
am_assert_eq "ids on the unfiltered stream across the gap" "$(db_ids)" "$(metric_ids all)"
am_assert_eq "gaps given up on" 0 "$(admin_metric athena_admin_stream_gaps_timed_out_total)"

# The hub reconnects when its connection drops, and streams go on.
am_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
  WHERE application_name = 'athena-admin-api-stream' AND datname = current_database()" >/dev/null
am_wait_for "the hub reconnected" 20 admin_metric_is athena_admin_stream_hub_reconnects_total "" 1
inject_stored 1
am_wait_for "a metric after the reconnect on the stream" 30 has_event all "$NEW_ID"
am_assert_eq "ids on the unfiltered stream after the reconnect" "$(db_ids)" "$(metric_ids all)"

# A client that does not read loses events, counted and then announced; a reading client of the
# same hub gets every row, or (on a starved machine) an announcement for what it lost. On a
# second admin-api whose idle timeout cannot close the client that reads nothing.
admin1=$ADMIN
base=$(am_psql 'SELECT max(id) FROM llm_performance_metric')
before=$(am_psql 'SELECT count(*) FROM llm_performance_metric')
admin_start admin2 ADMIN_HTTP_TIMEOUT_S=600
stream_open fast ""
raw_open ""
am_assert_eq "status of the slow client" 200 "$RAW_STATUS"
slow=$RAW_FD
load stream-bulk 40000
am_wait_for "40000 more rows stored" 120 rows_are $((before + 40000))
am_wait_for "events dropped for the slow client" 60 \
	admin_metric_above athena_admin_stream_events_dropped_total "" 0
am_bg slow bash -c "exec cat <&$slow"
exec {slow}>&-
inject_stored 1
am_wait_for "the slow client told of its loss" 60 grep -q '"reason": "slow_client"' "$(am_log_of slow)"
am_wait_for "the slow client given the next metric" 30 grep -q "^id: $NEW_ID\$" "$(am_log_of slow)"
am_wait_for "every row on the reading client, delivered or announced" 60 \
	accounted_is fast "$(db_ids "id > $base")"
slow_dropped=$(grep -o '"reason": "slow_client", "count": [0-9]*' "$(am_log_of slow)" |
	awk '{ n += $NF } END { print n + 0 }')
am_assert_eq "events dropped (both clients) against those announced" \
	"$(admin_metric athena_admin_stream_events_dropped_total)" $((slow_dropped + $(dropped_count fast)))
am_stop admin2 || true
ADMIN=$admin1

# SIGTERM ends the open streams at once.
t0=$SECONDS
status=0
am_stop admin 10 || status=$?
am_assert_eq "admin-api exit status on SIGTERM" 0 "$status"
am_wait all 5 || true
am_wait since 5 || true
((SECONDS - t0 <= 8)) || am_fail "stopping with open streams took $((SECONDS - t0)) s"
echo "ok: streams filtered, ordered, resumed, fanned out once per notification, bounded, stopped"
