-- Late corrections and early results for windows. With 'allowed_lateness' = '5 s' a 10-second
-- window fires when the watermark passes its end (+I), keeps its state 5 s longer, and rows
-- arriving meanwhile correct it (-U old row, +U new row). With window.emit_early = 'update'
-- each window also emits its running value after every batch that changes it, before it
-- closes. Both results are changelogs, with an op column.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv', 'allowed_lateness' = '5 s');

SELECT window_start, site, COUNT(*) AS readings, MAX(reading) AS peak
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, site;

SET window.emit_early = 'update';
SET window.allowed_lateness = '0 s';
SET batch.size = 50;

CREATE TABLE on_time (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE) AS minute, COUNT(*) AS readings
FROM on_time GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE);
