-- Nexmark q22: the directories of each bid's URL.
-- Deviation: Flink's SPLIT_INDEX(url, '/', 3) (0-based) is split_part(url, '/', 4) (1-based).
SELECT
    auction, bidder, price, channel,
    split_part(url, '/', 4) AS dir1,
    split_part(url, '/', 5) AS dir2,
    split_part(url, '/', 6) AS dir3
FROM bid;
