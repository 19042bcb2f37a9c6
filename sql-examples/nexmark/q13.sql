-- Nexmark q13: bounded side-input join. Each bid with the value of a static table (10 000
-- rows of a file) whose key is the bid's auction modulo 10 000: a lookup join (the file is
-- read whole first, then every bid is matched against it; bids are not kept).
-- Deviation: Flink writes the join FOR SYSTEM_TIME AS OF B.p_time; weir takes a file table
-- without a watermark as a lookup table (the clause is accepted and means the same).
CREATE TABLE side_input (key BIGINT, value VARCHAR)
WITH (connector = 'file', path = '../data/side_input.csv', format = 'csv');

SELECT B.auction, B.bidder, B.price, B.date_time, S.value
FROM bid B
JOIN side_input S ON MOD(B.auction, 10000) = S.key;
