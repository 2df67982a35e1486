#!/usr/bin/env bash
# Metrics older than ADMIN_RETENTION_DAYS are deleted in batches; newer ones stay.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/admin.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate >/dev/null 2>&1
# 12,000 metrics from 10 to 40 days ago, 3,000 from the last 6 days.
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, source, source_id, epoch, seq)
  SELECT now() - interval '10 days' - (i % 30) * interval '1 day', 'phi3:mini', 'ollama', 0.5,
         10, 20, 'api', 'retention', 0, i
  FROM generate_series(1, 12000) AS i"
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, source, source_id, epoch, seq)
  SELECT now() - (i % 6) * interval '1 day', 'phi3:mini', 'ollama', 0.5, 10, 20, 'api',
         'retention', 0, 100000 + i
  FROM generate_series(1, 3000) AS i"

old_left() {
	[[ $(am_psql "SELECT count(*) FROM llm_performance_metric WHERE timestamp < now() - interval '7 days'") == 0 ]]
}
admin_start admin ADMIN_RETENTION_DAYS=7 ADMIN_RETENTION_INTERVAL_S=1
am_wait_for "metrics older than 7 days deleted" 60 old_left
am_assert_eq "newer metrics kept" 3000 "$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
deleted=$(curl -fs "$ADMIN/metrics" | awk '$1 == "athena_admin_retention_deleted_total" { print $2 }')
am_assert_eq "deletions counted" 12000 "$deleted"

# With retention off nothing is deleted.
am_stop admin
am_psql "INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, source, source_id, epoch, seq)
  VALUES (now() - interval '400 days', 'phi3:mini', 'ollama', 0.5, 10, 20, 'api', 'retention', 0, 1)"
admin_start admin2 ADMIN_RETENTION_DAYS=0
am_assert_eq "no retention metrics when off" "" \
	"$(curl -fs "$ADMIN/metrics" | awk '$1 == "athena_admin_retention_runs_total" { print $2 }')"
am_assert_eq "old metric kept when retention is off" 3001 \
	"$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
echo "ok: retention deleted 12000 old metrics and kept 3000"
