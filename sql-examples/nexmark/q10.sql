-- Nexmark q10: log to file system. Every bid written as CSV part files into dt=<day>/hm=<HH:mm>
-- directories (the partition columns name the directories and are not in the files), a new file
-- every minute (Flink's 1 min rolling policy) and at every checkpoint. Run with a checkpoint
-- directory and the files are published exactly once, by checkpoints. The path is relative to the working
-- directory (here: out/nexmark-q10/).
CREATE TABLE fs_sink (
    auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), extra VARCHAR,
    dt VARCHAR, hm VARCHAR
) PARTITIONED BY (dt, hm) WITH (
    'connector' = 'file',
    'path' = 'out/nexmark-q10',
    'format' = 'csv',
    'sink.rolling-policy.rollover-interval' = '1 min'
);

INSERT INTO fs_sink
SELECT auction, bidder, price, date_time, extra,
    DATE_FORMAT(date_time, 'yyyy-MM-dd'), DATE_FORMAT(date_time, 'HH:mm')
FROM bid;
