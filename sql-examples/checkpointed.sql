-- A pipeline to stop and resume: 30 seconds of Nexmark bids, generated in real time (10,000
-- events a second), counted per auction and second into out/bids/ (a directory of part files
-- when checkpoints are on). Run it with checkpoints, stop it with Ctrl-C, run it again:
--   weir run sql-examples/checkpointed.sql --checkpoint-dir ck --checkpoint-interval 2s
SET nexmark.events = '300000';
SET nexmark.rate = '10000';
SET nexmark.max_emit_speed = 'false';
SET nexmark.base_time = '2024-01-01 00:00:00';

CREATE TABLE bids_per_second (auction BIGINT, second TIMESTAMP(3), bids BIGINT, top_price BIGINT)
WITH (connector = 'file', path = 'out/bids', format = 'csv');

INSERT INTO bids_per_second
SELECT auction, TUMBLE_START(date_time, INTERVAL '1' SECOND), COUNT(*), MAX(price)
FROM bid
GROUP BY TUMBLE(date_time, INTERVAL '1' SECOND), auction;
