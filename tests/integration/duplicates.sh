#!/usr/bin/env bash
# The same batch delivered twice, or again by a restarted publisher, is stored once.
source "$AM_SOURCE_DIR/tests/lib.sh"
source "$AM_SOURCE_DIR/tests/integration/collector.sh"

am_fresh_db
"$AM_BIN_DIR/athena-collector" --migrate
collector_start collector

# 50 batches of 100, each sent twice in a row.
am_bg inject1 "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id dup --epoch 42 \
	--batches 50 --batch-size 100 --repeat 2 --hold
am_wait_for "100 frames received" 60 collector_metric_is athena_collector_frames_received_total "" 100
am_wait_for "5000 rows" 60 rows_are 5000
am_wait_for "5000 duplicates counted" 30 collector_metric_is athena_collector_metrics_duplicate_total "" 5000
am_stop inject1

# The whole stream again from a new process, as after a publisher-side replay.
am_bg inject2 "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id dup --epoch 42 \
	--batches 50 --batch-size 100 --hold
am_wait_for "150 frames received" 60 collector_metric_is athena_collector_frames_received_total "" 150
am_wait_for "10000 duplicates counted" 30 collector_metric_is athena_collector_metrics_duplicate_total "" 10000
am_stop inject2
am_assert_eq "rows after redelivery" 5000 "$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
am_assert_eq "inserted" 5000 "$(collector_metric athena_collector_metrics_inserted_total)"
am_assert_eq "gaps" 0 "$(collector_metric athena_collector_metrics_gap_total)"

# A second collector on the same database stores nothing twice either.
first_bus=$COLLECTOR_BUS
collector_start collector2
am_bg inject3 "$AM_BIN_DIR/am-bus-inject" --url "$COLLECTOR_BUS" --source-id dup --epoch 42 \
	--batches 50 --batch-size 100 --hold
am_wait_for "second collector saw 5000 duplicates" 60 \
	collector_metric_is athena_collector_metrics_duplicate_total "" 5000
am_stop inject3
am_assert_eq "rows after a second collector" 5000 "$(am_psql 'SELECT count(*) FROM llm_performance_metric')"
: "$first_bus"
echo "ok: duplicates stored once"
