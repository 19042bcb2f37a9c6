-- Updating results: a GROUP BY without a window never closes, so every change is emitted as a
-- changelog row with an op column (+I insert, -U/+U update, -D delete). The second query is an
-- aggregate over the first (Nexmark q4's shape): it retracts a site's old maximum when a new
-- one arrives. 'state_ttl' forgets keys idle for 30 s of event time.
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'data/events.csv', format = 'csv', 'state_ttl' = '30 s');

SET batch.size = 100;

SELECT sensor, COUNT(*) AS readings, MAX(reading) AS peak FROM events GROUP BY sensor;

SELECT AVG(peak) AS average_site_peak, COUNT(*) AS sites
FROM (SELECT site, MAX(reading) AS peak FROM events GROUP BY site);
