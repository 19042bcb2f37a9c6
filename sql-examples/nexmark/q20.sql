-- Nexmark q20: expand bid with auction. Each bid with the auction it is for, for auctions
-- of category 10: a regular join, its state bounded by a TTL.
-- Deviation: Flink keeps every row forever; weir asks for a bound (state_ttl). A minute is
-- plenty here: auctions are sold by people of the last 5 s and open for at most 1/3 s at the
-- default rate (10 000 events per second).
SET state.ttl = '1 min';

SELECT
    auction, bidder, price, channel, url, B.date_time AS bid_date_time, B.extra AS bid_extra,
    item_name, description, initial_bid, reserve, A.date_time AS auction_date_time, expires,
    seller, category, A.extra AS auction_extra
FROM bid AS B
INNER JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
