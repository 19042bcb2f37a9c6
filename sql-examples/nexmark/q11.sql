-- Nexmark q11: user sessions. Bids per bidder per session (a 10 s gap closes a session).
SELECT
    bidder,
    COUNT(*) AS bid_count,
    SESSION_START(date_time, INTERVAL '10' SECOND) AS starttime,
    SESSION_END(date_time, INTERVAL '10' SECOND) AS endtime
FROM bid
GROUP BY bidder, SESSION(date_time, INTERVAL '10' SECOND);
