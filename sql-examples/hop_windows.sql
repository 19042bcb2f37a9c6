-- Hopping (sliding) windows: a 10-second window every 5 seconds, so each reading counts in two
-- windows. Both spellings: the group window HOP(ts, slide, size) and the table function.
-- Each (row, window) pair is judged late on its own: a row too late for one window can still
-- count in the next.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT sensor,
       HOP_START(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_start,
       HOP_END(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) AS window_end,
       COUNT(*) AS n, MAX(reading) AS peak
FROM events
GROUP BY HOP(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), sensor;

SELECT window_start, window_end, COUNT(*) AS n, AVG(reading) AS mean
FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
