-- Cumulating windows: running totals within each 30-second period, reported every 10 seconds
-- ([0, 10 s), [0, 20 s), [0, 30 s), then [30 s, 40 s), …), as Flink's CUMULATE.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT window_start, window_end, site, COUNT(*) AS n, SUM(bytes) AS bytes_so_far
FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '30' SECOND))
GROUP BY window_start, window_end, site;
