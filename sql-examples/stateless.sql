-- A stateless query: rows stream through as they are read (no window, so nothing is late).
-- Any DataFusion scalar function works: arithmetic, CASE, string and date functions.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT ts, upper(sensor) AS sensor, bytes / 1024.0 AS kib,
       CASE WHEN reading < 0 THEN 'invalid' WHEN reading > 90 THEN 'alarm' ELSE 'ok' END AS status,
       date_trunc('second', ts) AS second
FROM events
WHERE reading < 0 OR reading > 90;
