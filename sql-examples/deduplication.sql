-- Deduplication (Flink's): the first reading of each sensor (ORDER BY ts), and its latest
-- (ORDER BY ts DESC). Keep-first emits a row per key once; keep-last replaces a key's row as
-- later readings arrive, so its result is a changelog (-U old row, +U new row).
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv', 'state_ttl' = '1 h');

SELECT sensor, site, reading, ts
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor ORDER BY ts) AS rn FROM events)
WHERE rn = 1;

SELECT sensor, site, reading, ts
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor ORDER BY ts DESC) AS rn FROM events)
WHERE rn = 1;
