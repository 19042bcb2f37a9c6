-- Processing-time windows: `p AS PROCTIME()` is filled with the wall clock as rows arrive,
-- and a window over it closes on the wall clock, not on event time. Over this file every row
-- arrives within a moment, so each site's rows land in one or two 5-second windows, all
-- printed when the file ends. Over a live input, e.g.
--   CREATE TABLE live (k VARCHAR, v BIGINT, p AS PROCTIME()) WITH (connector = 'stdin', format = 'csv')
-- run with `--set batch.size=1` (stdin stamps a batch when it is full), each window is printed
-- about 0.1 s after its end on the wall clock, whether rows keep coming or not.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    p AS PROCTIME()
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv');

SELECT site,
       TUMBLE_START(p, INTERVAL '5' SECOND) AS arrived_from,
       COUNT(*) AS readings, SUM(bytes) AS bytes
FROM events
GROUP BY TUMBLE(p, INTERVAL '5' SECOND), site;
