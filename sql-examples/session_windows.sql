-- Session windows: per sensor, readings less than 3 seconds apart form one session
-- [first, last + 3 s), emitted when the watermark passes its end. An out-of-order reading can
-- join two sessions into one.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT sensor,
       SESSION_START(ts, INTERVAL '3' SECOND) AS session_start,
       SESSION_END(ts, INTERVAL '3' SECOND) AS session_end,
       COUNT(*) AS readings, MAX(reading) AS peak
FROM events
WHERE reading > 50
GROUP BY SESSION(ts, INTERVAL '3' SECOND), sensor;
