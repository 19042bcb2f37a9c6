-- Nexmark q12: processing-time windows. Bids per bidder per 10 s window of the wall clock.
-- Deviation: Flink adds the processing-time column in a view (SELECT *, PROCTIME() AS p_time
-- FROM bid); weir declares it on a table over the generator (its other columns filled in).
CREATE TABLE bid_pt (p_time AS PROCTIME()) WITH (connector = 'nexmark', 'table' = 'bid');

SELECT
    bidder,
    COUNT(*) AS bid_count,
    window_start AS starttime,
    window_end AS endtime
FROM TABLE(TUMBLE(TABLE bid_pt, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
