-- Kafka to Kafka, exactly once: bids per auction and 10 seconds from the topic 'bids' (written
-- by load_bids.sql) into the topic 'bid_counts', in one Kafka transaction per checkpoint.
-- Kill it at any moment and run it again: a reader with isolation.level = read_committed sees
-- every count once. Exactly-once needs checkpoints:
--   weir run sql-examples/kafka/exactly_once.sql --checkpoint-dir ck --checkpoint-interval 2s
CREATE TABLE bids (
    auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
    WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'bids',
        'properties.bootstrap.servers' = 'localhost:9092',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');

CREATE TABLE bid_counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top_price BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'bid_counts',
      'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'json',
      'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'weir-bid-counts');

INSERT INTO bid_counts
SELECT auction, TUMBLE_START(date_time, INTERVAL '10' SECOND), COUNT(*), MAX(price)
FROM bids
GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction;
