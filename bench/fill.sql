-- bench/fill.sql: synthetic metrics straight into llm_performance_metric,
-- for the benchmarks that need a table holding rows (bench/admin, bench/scale).
--
--   psql -v first=F -v last=L -v source_prefix=P -f bench/fill.sql
--
-- Rows F..L (seq = i, epoch 1, source_id P || source): 5 models on 2
-- backends, sources gateway and orchestrator (stages on the orchestrator's),
-- intents, 2% errors, ttft_seconds on half the rows, request and session
-- ids, and timestamps spread over the last 7 days in insertion order, the
-- last at now(), as a live table fills.
INSERT INTO llm_performance_metric (timestamp, model, backend, latency_seconds, tokens,
    tokens_per_second, prompt_tokens, ttft_seconds, status, error_type, request_id, session_id,
    user_id, zone, intent, device_id, source, stage, source_id, epoch, seq)
SELECT ts, m.model, m.backend,
    CASE WHEN err THEN CASE WHEN etype = 'timeout' THEN 30 ELSE 0.05 + r3 END
         ELSE 0.08 + prompt / 2000.0 + tok / m.tps END,
    CASE WHEN err THEN 0 ELSE tok END,
    CASE WHEN err THEN 0 ELSE m.tps END,
    prompt,
    CASE WHEN stream AND NOT err THEN 0.04 + prompt / 2500.0 + 0.2 * r3 END,
    CASE WHEN err THEN 'error' ELSE 'ok' END,
    CASE WHEN err THEN etype END,
    gen_random_uuid()::text,
    CASE WHEN i % 10 < 7 THEN 'sess-' || (i / 25) END,
    'user-' || (i::bigint * 7919 % 300),
    (ARRAY['kitchen', 'living_room', 'office', 'bedroom', NULL])[1 + i % 5],
    CASE WHEN src = 'gateway' THEN (ARRAY['chat', 'chat', 'code', NULL])[1 + floor(r4 * 4)::int]
         ELSE (ARRAY['question', 'command', 'search', 'summarize', 'smalltalk'])[1 + floor(r4 * 5)::int] END,
    CASE WHEN i % 4 <> 0 THEN 'device-' || (i % 40) END,
    src,
    CASE WHEN src = 'orchestrator' THEN (ARRAY['classify', 'synthesize', 'validate'])[1 + floor(r5 * 3)::int] END,
    :'source_prefix' || src, 1, i
FROM (
    SELECT i,
        -- as a live table fills: oldest first, the last row at now()
        now() - interval '7 days' * (1 - (i - :first + 1)::float8 / (:last - :first + 1))
            - interval '1 second' * random() AS ts,
        random() AS r1, random() AS r3, random() AS r4, random() AS r5,
        random() < 0.02 AS err,
        (ARRAY['timeout', 'backend_unavailable', 'http_502'])[1 + floor(random() * 3)::int] AS etype,
        20 + (random() * random() * 900)::int AS tok,
        50 + (random() * 1500)::int AS prompt,
        i % 2 = 0 AS stream,
        CASE WHEN i % 5 < 3 THEN 'gateway' ELSE 'orchestrator' END AS src
    FROM generate_series(:first, :last) AS i
) g
CROSS JOIN LATERAL (
    SELECT v.model, v.backend, v.speed * (0.75 + 0.5 * g.r3) AS tps
    FROM (VALUES
        (0.00, 0.35, 'phi3:mini',   'ollama', 38.0),
        (0.35, 0.60, 'llama3.1:8b', 'ollama', 21.0),
        (0.60, 0.75, 'qwen2.5:7b',  'ollama', 24.0),
        (0.75, 0.90, 'mistral:7b',  'mlx',    33.0),
        (0.90, 1.01, 'gemma2:9b',   'mlx',    19.0)) AS v(lo, hi, model, backend, speed)
    WHERE g.r1 >= v.lo AND g.r1 < v.hi
) m;
