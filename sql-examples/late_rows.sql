-- The side output of late rows: every row a window drops (late, or without an event time)
-- goes unchanged to the table named by 'late_rows', with a reason column saying which window
-- had closed and under which watermark. Here they land in out/late_events.csv.
CREATE TABLE late_events WITH (connector = 'file', path = 'out/late_events.csv', format = 'csv');

CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv', 'late_rows' = 'late_events');

SELECT sensor, TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS n
FROM events
GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor;
