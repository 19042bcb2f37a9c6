-- UNION ALL of two tables (here two views of the same file: the east site's readings, and the
-- other sites' readings scaled), windowed together. The union's watermark is the minimum of
-- its inputs' watermarks; an input silent for longer than its 'idle_timeout' stops holding
-- it back.
CREATE TABLE east (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

CREATE TABLE others (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv', 'idle_timeout' = '5 s');

SELECT site, TUMBLE_START(ts, INTERVAL '30' SECOND) AS w, COUNT(*) AS n, AVG(reading) AS mean
FROM (
    SELECT site, reading, ts FROM east WHERE site = 'east'
    UNION ALL
    SELECT site, reading / 10 AS reading, ts FROM others WHERE site <> 'east'
)
GROUP BY TUMBLE(ts, INTERVAL '30' SECOND), site;
