-- Nexmark q14: calculation. Bids with a converted price in range, labelled by time of day,
-- with the number of 'c' characters in extra.
-- Deviations: Flink's HOUR(dateTime) is EXTRACT(HOUR FROM date_time); its count_char UDF is
-- written with character_length and replace; the price is a DOUBLE, not a DECIMAL.
SELECT
    auction,
    bidder,
    0.908 * price AS price,
    CASE
        WHEN EXTRACT(HOUR FROM date_time) >= 8 AND EXTRACT(HOUR FROM date_time) <= 18 THEN 'dayTime'
        WHEN EXTRACT(HOUR FROM date_time) <= 6 OR EXTRACT(HOUR FROM date_time) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bid_time_type,
    date_time,
    extra,
    character_length(extra) - character_length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
