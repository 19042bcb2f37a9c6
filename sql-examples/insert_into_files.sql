-- A pipeline with two sinks: window results to CSV and alarms to JSON lines.
-- Sink paths are relative to the working directory (here: files under out/).
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

CREATE TABLE per_minute (sensor VARCHAR, minute TIMESTAMP(3), readings BIGINT, peak DOUBLE)
WITH (connector = 'file', path = 'out/per_minute.csv', format = 'csv');

CREATE TABLE alarms (sensor VARCHAR, site VARCHAR, reading DOUBLE, ts TIMESTAMP(3))
WITH (connector = 'file', path = 'out/alarms.json', format = 'json');

INSERT INTO per_minute
SELECT sensor, TUMBLE_START(ts, INTERVAL '1' MINUTE), COUNT(*), MAX(reading)
FROM events
GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), sensor;

INSERT INTO alarms
SELECT sensor, site, reading, ts FROM events WHERE reading > 95;
