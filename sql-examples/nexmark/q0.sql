-- Nexmark q0: pass-through. Measures the generator and the engine's own overhead.
-- Run: weir run --set nexmark.events=1000000 sql-examples/nexmark/q0.sql
SELECT auction, bidder, price, date_time, extra FROM bid;
