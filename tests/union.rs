//! `UNION ALL` of two sources against DataFusion's batch GROUP BY.
//!
//! Two tables get their own random out-of-order rows, cut into batches at random points. The
//! pipeline takes one batch from each input in turn; the merged watermark is the minimum of
//! the inputs' watermarks, and a row is judged late against its own source's watermark capped
//! by the other input's (never below the merged one). A reference replays the same turns to
//! find the accepted rows; the windowed aggregate over the union must equal the batch query
//! over them.

use proptest::prelude::*;
use weir_connectors::CollectSink;
use weir_runtime::NO_WATERMARK;

mod common;
use common::*;

/// Replays the pipeline's turns (one batch of each input in turn; an exhausted input's
/// watermark becomes +∞) and returns each input's accepted rows for tumbling windows of
/// `size_ms`.
fn accepted_union(inputs: [&[Row]; 2], cuts: [&[usize]; 2], delay_ms: i64, size_ms: i64) -> [Vec<Row>; 2] {
    let batches = [batches(inputs[0], cuts[0]), batches(inputs[1], cuts[1])];
    let mut max = [i64::MIN; 2];
    let mut wm = [NO_WATERMARK; 2];
    let mut merged = NO_WATERMARK;
    let mut accepted: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
    let rounds = batches[0].len().max(batches[1].len()) + 1;
    for round in 0..rounds {
        for i in 0..2 {
            let other = wm[1 - i];
            match batches[i].get(round) {
                Some(batch) => {
                    for r in batch {
                        let own = if max[i] == i64::MIN { NO_WATERMARK } else { max[i] - delay_ms };
                        let in_force = merged.max(own.min(other));
                        let end = r.ts - r.ts.rem_euclid(size_ms) + size_ms;
                        if end > in_force {
                            accepted[i].push(r.clone());
                        }
                        max[i] = max[i].max(r.ts);
                    }
                    if max[i] != i64::MIN {
                        wm[i] = wm[i].max(max[i] - delay_ms);
                    }
                }
                None => wm[i] = i64::MAX,
            }
            merged = merged.max(wm[0].min(wm[1]));
        }
    }
    accepted
}

fn run_union(inputs: [&[Row]; 2], cuts: [&[usize]; 2], script: &str) -> Vec<String> {
    let feed = Feed::with(vec![("t", FeedTable::new(inputs[0], cuts[0])), ("u", FeedTable::new(inputs[1], cuts[1]))]);
    let engine = feed_engine(feed);
    let plan = last_query(&engine, script);
    let sink = CollectSink::new();
    run_on(&engine, &plan, Box::new(sink.clone()), Default::default()).expect("runs");
    format_rows(&sink.batches())
}

fn ddl2(delay_ms: i64) -> String {
    format!(
        "{} CREATE TABLE u (k VARCHAR, site VARCHAR, v BIGINT, r DOUBLE, ts TIMESTAMP(3),
             WATERMARK FOR ts AS ts - INTERVAL '{delay_ms}' MILLISECOND)
         WITH (connector = 'feed');",
        feed_ddl(delay_ms)
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_window_over_a_union_uses_the_minimum_watermark(
        left in rows_strategy(),
        right in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        size_s in prop::sample::select(vec![1i64, 2, 5]),
        left_cuts in prop::collection::btree_set(0usize..260, 0..30),
        right_cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let (lc, rc): (Vec<usize>, Vec<usize>) = (left_cuts.into_iter().collect(), right_cuts.into_iter().collect());
        let weir = run_union([&left, &right], [&lc, &rc], &format!(
            "{} SELECT k, TUMBLE_START(ts, INTERVAL '{size_s}' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total, MAX(src) AS src
             FROM (SELECT k, v, ts, 'left' AS src FROM t UNION ALL SELECT k, v * 10, ts, 'right' FROM u WHERE site <> 'site0')
             GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND), k",
            ddl2(delay_ms)));
        let [l, r] = accepted_union([&left, &right], [&lc, &rc], delay_ms, size_s * 1000);
        // the reference as one table: the right input's rows marked by a site the query keeps
        let mut rows: Vec<Row> = l.into_iter().map(|r| Row { site: "left".into(), ..r }).collect();
        rows.extend(r.into_iter().filter(|r| r.site != "site0").map(|r| Row { site: "right".into(), value: r.value * 10, ..r }));
        let batch = run_datafusion(&rows, &format!(
            "SELECT k, date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS w, COUNT(*) AS n,
                    SUM(v) AS total, MAX(site) AS src
             FROM t GROUP BY 1, 2"));
        prop_assert_eq!(sorted(weir), sorted(batch));
    }
}

#[test]
fn batches_cover_every_row_once() {
    let rows: Vec<Row> =
        (0..5).map(|i| Row { key: "k".into(), site: "s".into(), value: i, reading: None, ts: i }).collect();
    let cut = batches(&rows, &[0, 2, 2, 9]);
    assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 3]);
}
