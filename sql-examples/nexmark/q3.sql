-- Nexmark q3: local item suggestion. Auctions of category 10 with their seller, for sellers
-- in Oregon, Idaho or California: a regular join of two unbounded inputs, whose state is
-- bounded by a TTL (rows are forgotten a minute of event time after they arrive).
-- Deviation: Flink keeps every row forever; weir asks for a bound (state_ttl). A minute is
-- plenty here: auctions are sold by people of the last 5 s and open for at most 1/3 s at the
-- default rate (10 000 events per second).
SET state.ttl = '1 min';

SELECT P.name, P.city, P.state, A.id
FROM auction AS A
INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
