-- Nexmark q12: bids per bidder per 10 s processing-time window.
-- The bid table gets a processing-time column; its other columns are filled in.
CREATE TABLE bid_pt (p_time AS PROCTIME()) WITH (connector = 'nexmark', 'table' = 'bid');

SELECT
    bidder,
    COUNT(*) AS bid_count,
    window_start AS starttime,
    window_end AS endtime
FROM TABLE(TUMBLE(TABLE bid_pt, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
