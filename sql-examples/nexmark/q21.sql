-- Nexmark q21: the channel id of each bid: 0-3 for the hot channels, else the URL's
-- channel_id parameter; bids with neither are left out.
-- Deviation: Flink's REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) is written with
-- regexp_replace (the same pattern, the second group kept), and rows without a match have
-- no channel_id.
SELECT auction, bidder, price, channel, channel_id
FROM (
    SELECT auction, bidder, price, channel,
        CASE
            WHEN lower(channel) = 'apple' THEN '0'
            WHEN lower(channel) = 'google' THEN '1'
            WHEN lower(channel) = 'facebook' THEN '2'
            WHEN lower(channel) = 'baidu' THEN '3'
            WHEN regexp_like(url, '(&|^)channel_id=') THEN regexp_replace(url, '^.*(&|^)channel_id=([^&]*).*$', '\2')
        END AS channel_id
    FROM bid
)
WHERE channel_id IS NOT NULL;
