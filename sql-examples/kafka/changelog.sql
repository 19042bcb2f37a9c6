-- An updating query into Kafka: the running number of bids and the top price per bidder,
-- written to the topic 'bidder_totals' as Debezium change events ('format' = 'debezium-json':
-- an update is a delete of the old row and a create of the new one, as Flink writes them).
-- Read back with the same format, the topic is a changelog table.
--   weir run sql-examples/kafka/changelog.sql
CREATE TABLE bids (bidder BIGINT, price BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = 'localhost:9092',
      'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');

CREATE TABLE bidder_totals (bidder BIGINT, bids BIGINT, top_price BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'bidder_totals',
      'properties.bootstrap.servers' = 'localhost:9092', 'format' = 'debezium-json');

INSERT INTO bidder_totals SELECT bidder, COUNT(*), MAX(price) FROM bids GROUP BY bidder;
