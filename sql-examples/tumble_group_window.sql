-- Per-sensor statistics over 10-second tumbling windows (Flink's group-window syntax).
-- Each window is printed once, when the watermark (max event time - 2 s) passes its end;
-- rows arriving after that are late: dropped and counted in the summary on stderr.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT sensor,
       TUMBLE_START(ts, INTERVAL '10' SECOND) AS w_start,
       TUMBLE_END(ts, INTERVAL '10' SECOND)   AS w_end,
       COUNT(*) AS n, SUM(bytes) AS total, MIN(reading) AS lo, MAX(reading) AS hi,
       AVG(reading) AS mean, COUNT(DISTINCT site) AS sites
FROM events
WHERE reading > 0
GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor
HAVING COUNT(*) > 1;
