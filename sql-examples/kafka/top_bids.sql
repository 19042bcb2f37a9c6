-- Read the topic 'bids' (written by load_bids.sql) with Flink's DDL, unchanged: the highest bid
-- and the number of bids per auction and 10 seconds, with each partition's own watermark.
-- 'scan.bounded.mode' = 'latest-offset' makes the query end at the records there when it
-- starts; leave it out to keep reading as bids arrive (Ctrl-C stops it).
--   weir run sql-examples/kafka/top_bids.sql
CREATE TABLE bids (
    auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
    part INT METADATA FROM 'partition' VIRTUAL,
    WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'bids',
        'properties.bootstrap.servers' = 'localhost:9092', 'properties.group.id' = 'weir-examples',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
        'format' = 'json');

SELECT auction, TUMBLE_START(date_time, INTERVAL '10' SECOND) AS window_start,
       COUNT(*) AS bids, MAX(price) AS top_price, MIN(part) AS a_partition
FROM bids
GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction
HAVING COUNT(*) >= 20;
