-- Nexmark q4: average price per category. The winning (highest) bid of each auction among
-- the bids made while it was open, then the average winning price per category: an
-- interval join (a bid matches an auction between its start and its end, so each side is
-- kept only that long) under two updating aggregates.
SELECT
    Q.category,
    AVG(Q.final) AS avg_price
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
