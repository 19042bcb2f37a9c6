-- Nexmark q6: average selling price by seller. For each closed auction, the average final price
-- of its seller's closed auctions up to it: this one and the 10 before (ROWS 10 PRECEDING).
-- Flink's form (an OVER aggregate over the updating MAX per auction) cannot run in Flink
-- (FLINK-19059) nor in weir. Here an auction's final price is its highest bid made while it was
-- open, emitted once when the watermark passes its expiry (the GROUP BY includes the join's
-- `expires`, which closes as a window does), and the average is an OVER aggregate over those
-- rows, in expiry order.
SELECT seller, expires, final,
    AVG(final) OVER (PARTITION BY seller ORDER BY expires ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_price
FROM (
    SELECT A.seller, A.expires, MAX(B.price) AS final
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.seller, A.expires
);
