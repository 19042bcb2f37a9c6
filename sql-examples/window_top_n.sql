-- Window Top-N (Flink's): the two sensors with the most bytes in each 10-second window.
-- ROW_NUMBER() over the window's bounds in an outer query; each window's top rows are emitted
-- once, when the watermark passes the window's end.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT window_start, sensor, total, rn
FROM (
    SELECT window_start, window_end, sensor, total,
           ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY total DESC) AS rn
    FROM (
        SELECT window_start, window_end, sensor, SUM(bytes) AS total
        FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, sensor
    )
)
WHERE rn <= 2;
