-- The datagen connector: made-up clicks with no file or service, paced at 1000 rows a second,
-- event time from the wall clock up to 0.5 s out of order. Clicks per user in 1-second
-- tumbling windows, each printed when the watermark (ts - 1 s) passes its end.
-- 'number-of-rows' makes it end after about 2 s; without it the stream never ends (in the
-- shell, Ctrl-C stops the query).
CREATE TABLE clicks (
    user_id INT, url VARCHAR, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
    connector = 'datagen', 'rows-per-second' = '1000', 'number-of-rows' = '2000',
    'fields.user_id.min' = '1', 'fields.user_id.max' = '3',
    'fields.url.length' = '2', 'fields.ts.max-past' = '500 ms'
);

SELECT user_id,
       TUMBLE_START(ts, INTERVAL '1' SECOND) AS w_start,
       COUNT(*) AS clicks, COUNT(DISTINCT url) AS urls
FROM clicks
GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), user_id;
