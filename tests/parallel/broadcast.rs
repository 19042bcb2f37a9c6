//! Joins of a table read in splits with the results of a window without keys: the window's
//! rows are broadcast to every instance and each of the table's rows is joined in the instance
//! that read it (no exchange for the table's rows), with the result of one thread.

use super::*;

/// Bids out of order (groups of 40 events shuffled at 100 events/s: up to 0.4 s), and the
/// highest bid of each 1 s window. (Which rows are late behind a watermark tighter than that
/// depends, for a table read in splits, on how the splits' watermarks interleave, whatever the
/// exchange: see docs/parallel.md.)
fn script(query: &str, seed: u64) -> String {
    format!(
        "SET nexmark.events = '6000'; SET nexmark.rate = '100'; SET nexmark.seed = '{seed}';
         SET nexmark.out_of_order_group = '40';
         CREATE TABLE b (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
           WATERMARK FOR date_time AS date_time - INTERVAL '500' MILLISECOND)
           WITH (connector = 'nexmark', 'table' = 'bid');
         {}",
        query.replace("top_bids", TOP)
    )
}

/// The highest bid of each 1 s window, as `hi`.
const TOP: &str = "(SELECT MAX(price) AS maxprice, window_end AS w
    FROM TABLE(TUMBLE(TABLE b, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY window_start, window_end) hi";

/// An inner join with the window's side on the right and on the left, and a left outer join
/// (every bid, matched or not): each gives at parallelism 2 and 3 what it gives on one thread,
/// over several seeds.
#[test]
fn a_window_without_keys_is_broadcast_to_a_join_of_a_table_read_in_splits() {
    let queries = [
        "SELECT x.auction, x.price, x.bidder, x.date_time FROM b x JOIN top_bids
           ON x.price = hi.maxprice AND x.date_time BETWEEN hi.w - INTERVAL '1' SECOND AND hi.w",
        "SELECT x.auction, x.price, hi.w FROM top_bids JOIN b x
           ON x.price = hi.maxprice AND x.date_time BETWEEN hi.w - INTERVAL '1' SECOND AND hi.w",
        "SELECT x.auction, x.price, x.date_time, hi.w FROM b x LEFT JOIN top_bids
           ON x.price = hi.maxprice AND x.date_time BETWEEN hi.w - INTERVAL '1' SECOND AND hi.w",
    ];
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.set("parallelism", "2").unwrap();
    for (i, query) in queries.iter().enumerate() {
        let explained = engine.explain(&script(query, 3)).unwrap();
        for line in [
            "Exchange: forward (each split's rows to its own instance), 2 → 2 instances",
            "Exchange: broadcast (every row to every instance), 1 → 2 instances",
        ] {
            assert!(explained.contains(line), "query {i}: {line}: {explained}");
        }
        assert!(!explained.contains("Exchange: hash"), "query {i}: {explained}");
        for seed in [3, 8, 21] {
            let sql = script(query, seed);
            let one = nexmark_run(&sql, 1);
            assert!(one.0.len() > 10 && one.1 == 0, "query {i}, seed {seed}: rows joined, none late");
            for n in [2, 3] {
                let many = nexmark_run(&sql, n);
                assert!(many == one, "query {i}, seed {seed}: parallelism {n} differs from one thread: {} rows, {} late vs {} rows, {} late", many.0.len(), many.1, one.0.len(), one.1);
            }
        }
    }
}

/// A left outer join whose window side is on the left keeps its unmatched rows in one place:
/// it is hashed on its keys, not broadcast.
#[test]
fn a_left_outer_join_does_not_broadcast_its_left_side() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.set("parallelism", "2").unwrap();
    let explained = engine
        .explain(&script(
            "SELECT hi.w, x.auction FROM top_bids LEFT JOIN b x
               ON x.price = hi.maxprice AND x.date_time BETWEEN hi.w - INTERVAL '1' SECOND AND hi.w",
            3,
        ))
        .unwrap();
    assert!(!explained.contains("broadcast"), "{explained}");
    assert_eq!(explained.matches("Exchange: hash [").count(), 2, "{explained}");
}

/// The rows `sql` (a script) gives at `parallelism`, sorted, and the late rows it dropped.
fn nexmark_run(sql: &str, parallelism: usize) -> (Vec<String>, u64) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let plan = match engine.plan(sql).unwrap().pop() {
        Some(Planned::Query(p)) => p,
        _ => panic!("expected a query"),
    };
    let (batches, metrics) = run_plan(&engine, &plan, parallelism);
    (sorted(format_rows(&batches)), weir_runtime::Metrics::get(&metrics.late_rows))
}
