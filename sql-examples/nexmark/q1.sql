-- Nexmark q1: currency conversion (dollars to euros).
-- Deviation: Flink returns DECIMAL(23,3); weir computes a DOUBLE.
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid;
