#!/usr/bin/env bash
# 200,000 metrics from two load generators are stored exactly once, every field intact.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector COLLECTOR_QUEUE_MAX_MIB=256

# Two publishers at once, as fast as the publisher library goes; every 97th
# metric is also written to a file to compare field by field.
for n in 1 2; do
	am_bg "load$n" "$AM_BIN_DIR/athena-metrics-load" --url "$COLLECTOR_BUS" --count 100000 \
		--source-id "load-$n" --seed "$n" --dump "$AM_TEST_TMP/sent-$n.tsv" --dump-every 97
done
for n in 1 2; do
	am_wait "load$n" 120 || am_fail "load generator $n reported drops: $(cat "$(am_log_of "load$n")")"
	grep -q "sent=100000 dropped=0" "$(am_log_of "load$n")" ||
		am_fail "load generator $n did not send 100000: $(cat "$(am_log_of "load$n")")"
done

am_wait_for "200000 rows" 120 rows_are 200000
am_assert_eq "distinct idempotency keys" 200000 \
	"$(am_psql 'SELECT count(DISTINCT (source_id, epoch, seq)) FROM llm_performance_metric')"
am_assert_eq "rows per publisher" "load-1|100000 load-2|100000" \
	"$(am_psql 'SELECT source_id, count(*) FROM llm_performance_metric GROUP BY 1 ORDER BY 1' | tr '\n' ' ' | sed 's/ $//')"
am_assert_eq "sequence numbers 0..99999 per publisher" "0|99999|100000 0|99999|100000" \
	"$(am_psql 'SELECT min(seq), max(seq), count(DISTINCT seq) FROM llm_performance_metric GROUP BY source_id ORDER BY source_id' | tr '\n' ' ' | sed 's/ $//')"
collector_assert_nothing_dropped
am_assert_eq "gaps" 0 "$(collector_metric athena_collector_metrics_gap_total)"

# Field by field: the sampled metrics as sent against the rows as stored.
am_psql "CREATE TABLE sent (source_id text, seq bigint, ts_us bigint, model text, backend text,
  latency_seconds double precision, tokens integer, tokens_per_second double precision,
  prompt_tokens integer, ttft_seconds double precision, status text, error_type text,
  request_id text, session_id text, user_id text, zone text, intent text, device_id text,
  source text, stage text)"
for n in 1 2; do
	sed "s/^/load-$n\t/" "$AM_TEST_TMP/sent-$n.tsv" >"$AM_TEST_TMP/sent-$n.rows"
	am_psql "\\copy sent FROM '$AM_TEST_TMP/sent-$n.rows'"
done
sampled=$(am_psql 'SELECT count(*) FROM sent')
am_assert_eq "sampled metrics" $((2 * (100000 / 97 + 1))) "$sampled"
mismatched=$(am_psql "SELECT count(*) FROM sent s LEFT JOIN llm_performance_metric m
  ON m.source_id = s.source_id AND m.seq = s.seq
  WHERE m.id IS NULL
     OR m.timestamp IS DISTINCT FROM timestamptz 'epoch' + s.ts_us * interval '1 microsecond'
     OR (m.model, m.backend, m.latency_seconds, m.tokens, m.tokens_per_second, m.prompt_tokens,
         m.ttft_seconds, m.status, m.error_type, m.request_id, m.session_id, m.user_id, m.zone,
         m.intent, m.device_id, m.source, m.stage)
        IS DISTINCT FROM
        (s.model, s.backend, s.latency_seconds, s.tokens, s.tokens_per_second, s.prompt_tokens,
         s.ttft_seconds, s.status, s.error_type, s.request_id, s.session_id, s.user_id, s.zone,
         s.intent, s.device_id, s.source, s.stage)")
am_assert_eq "sampled metrics whose stored row differs" 0 "$mismatched"
echo "ok: 200000 stored once, $sampled sampled rows identical"
