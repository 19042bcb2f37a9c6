-- Nexmark q19: auction top-10 price. The 10 highest bids of each auction, with their rank: a
-- Top-N per key (a changelog: a bid entering an auction's top 10 moves the ones below it
-- down a rank and pushes the 10th out).
SELECT *
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
    FROM bid
)
WHERE rank_number <= 10;
