-- Nexmark q7: highest bid. The bids whose price is the highest of their 10 s tumbling
-- window: the windowed maximum joined back to the bids of that window (an interval join:
-- a bid can only match the maximum of the window it falls in, so each side's rows are kept
-- only until the watermark passes that window).
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid B
JOIN (
    SELECT MAX(price) AS maxprice, window_end AS date_time
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time;
