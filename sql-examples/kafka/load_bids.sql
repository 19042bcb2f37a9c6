-- Write 200,000 Nexmark bids into the Kafka topic 'bids' as JSON records, to read them back
-- with the other examples here. Start a local broker first (scripts/kafka-broker.sh), then:
--   weir run sql-examples/kafka/load_bids.sql
SET nexmark.events = '200000';
SET nexmark.base_time = '2024-01-01 00:00:00';

CREATE TABLE bids_topic (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3))
WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = 'localhost:9092',
      'format' = 'json', 'sink.delivery-guarantee' = 'at-least-once');

INSERT INTO bids_topic SELECT auction, bidder, price, date_time FROM bid;
