-- The same per-sensor statistics in the window table-valued-function form (Flink 1.13+):
-- TUMBLE(TABLE t, DESCRIPTOR(time_column), size) adds window_start, window_end and window_time.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT window_start, window_end, sensor,
       COUNT(*) AS n, SUM(bytes) AS total, AVG(reading) AS mean
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
WHERE reading > 0
GROUP BY window_start, window_end, sensor;
