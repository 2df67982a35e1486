#!/usr/bin/env bash
# Many queries at once: 100 concurrent queries are all answered and give 300
# stored metrics; with one worker and one queue place, a third query is
# refused at once with 503 and Retry-After while the queued one is served.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"
source "$AM_SOURCE_DIR/tests/integration/services.sh"
source "$AM_SOURCE_DIR/tests/integration/orchestrator_lib.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1
collector_start collector
sim_start sim SIM_TOKENS_PER_SECOND=400 SIM_TTFT_MS=20 SIM_ANSWER_TOKENS=20

# 1. 100 queries at once.
orch_start orch OLLAMA_URL="$SIM_URL" ADMIN_API_URL= METRICS_BUS_URLS="$COLLECTOR_BUS"
am_wait_for "orchestrator connected to the collector" 30 orch_connected
pids=()
for i in $(seq 1 100); do
	curl -s -o "$AM_TEST_TMP/q-$i.json" -w '%{http_code}' -H "X-Request-Id: load-$i" \
		-d "{\"query\": \"question $i about zone $i\", \"zone\": \"zone-$i\"}" \
		"$ORCH/query" >"$AM_TEST_TMP/q-$i.status" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || am_fail "a concurrent query failed"; done
for i in $(seq 1 100); do
	am_assert_eq "query $i status" 200 "$(cat "$AM_TEST_TMP/q-$i.status")"
	am_assert_eq "query $i answered as itself" "load-$i" "$(jq -r .request_id "$AM_TEST_TMP/q-$i.json")"
done
am_wait_for "300 metrics stored" 60 orch_rows_are 300
am_assert_eq "three calls per query, with the query's own zone" 100 "$(am_psql "SELECT count(*) FROM (
  SELECT request_id FROM llm_performance_metric WHERE source = 'orchestrator'
  GROUP BY request_id HAVING count(*) = 3
    AND count(DISTINCT stage) = 3 AND bool_and(zone = 'zone-' || substr(request_id, 6))) q")"
am_assert_eq "nothing failed" 0 "$(am_psql "SELECT count(*) FROM llm_performance_metric WHERE status <> 'ok'")"
am_assert_eq "nothing dropped by the publisher" 0 \
	"$(orch_sample athena_orchestrator_metrics_dropped_total 'reason="queue_full"')"
orch_stop orch

# 2. One worker, one queue place, calls of two seconds each: the first query
# holds the worker for six seconds, long enough to queue the second behind it.
sim_start slow SIM_TOKENS_PER_SECOND=1000 SIM_TTFT_MS=2000 SIM_ANSWER_TOKENS=5
orch_start orch-small OLLAMA_URL="$SIM_URL" ADMIN_API_URL= METRICS_ENABLED=false \
	ORCH_WORKERS=1 ORCH_QUEUE_MAX=1 ORCH_RETRY_AFTER_S=7
curl -s -o "$AM_TEST_TMP/a.json" -w '%{http_code}' -d '{"query": "first"}' "$ORCH/query" \
	>"$AM_TEST_TMP/a.status" &
pid_a=$!
am_wait_for "the first query running" 10 \
	bash -c "curl -fs '$ORCH/metrics' | grep -qx 'athena_orchestrator_queries_running 1'"
curl -s -o "$AM_TEST_TMP/b.json" -w '%{http_code}' -d '{"query": "second"}' "$ORCH/query" \
	>"$AM_TEST_TMP/b.status" &
pid_b=$!
am_wait_for "the second query waiting" 10 \
	bash -c "curl -fs '$ORCH/metrics' | grep -qx 'athena_orchestrator_queries_waiting 1'"
out=$(ask '{"query": "third"}' -D "$AM_TEST_TMP/h3" -H 'X-Request-Id: third')
am_assert_eq "queue full: status" 503 "$(http_status "$out")"
http_body "$out" | jq -e '(.error | length > 0) and .retry_after_s == 7 and .request_id == "third"' \
	>/dev/null || am_fail "queue full: body $(http_body "$out")"
grep -qi '^Retry-After: 7' "$AM_TEST_TMP/h3" || am_fail "no Retry-After header: $(cat "$AM_TEST_TMP/h3")"
wait "$pid_a" "$pid_b"
am_assert_eq "the running query" 200 "$(cat "$AM_TEST_TMP/a.status")"
am_assert_eq "the queued query" 200 "$(cat "$AM_TEST_TMP/b.status")"
jq -e '.timings.queue_ms > 500' "$AM_TEST_TMP/b.json" >/dev/null ||
	am_fail "the queued query did not wait: $(cat "$AM_TEST_TMP/b.json")"
am_assert_eq "503 counted" 1 "$(orch_sample athena_orchestrator_queries_total 'code="503"')"
am_assert_eq "no LLM call for the refused query" 6 \
	"$(orch_sample athena_orchestrator_backend_requests_total 'backend="ollama",status="ok"')"
orch_stop orch-small
echo "ok: 100 concurrent queries, 300 metrics; queue full answered 503 with Retry-After"
