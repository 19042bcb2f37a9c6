//! OVER aggregates against DataFusion's batch window functions.
//!
//! Random out-of-order rows, cut into batches at random points: the rows behind the watermark
//! when they come are late (dropped); over the rest, each row's aggregates must be what a batch
//! query computes over its frame, at parallelism 1, 2 and 4.

use proptest::prelude::*;

mod common;
use common::*;

/// The rows an OVER aggregate accepts: those not behind the watermark (the largest time seen
/// before, less the delay) when they come.
fn on_time(rows: &[Row], delay_ms: i64) -> Vec<Row> {
    let mut max = i64::MIN;
    let mut out = Vec::new();
    for r in rows {
        if max == i64::MIN || r.ts >= max - delay_ms {
            out.push(r.clone());
        }
        max = max.max(r.ts);
    }
    out
}

/// The first row of each key and time: without ties, the rows a ROWS frame reads do not
/// depend on the order ties are taken in.
fn without_ties(rows: &[Row]) -> Vec<Row> {
    let mut seen = std::collections::HashSet::new();
    rows.iter().filter(|r| seen.insert((r.key.clone(), r.ts))).cloned().collect()
}

fn at_parallelism(rows: &[Row], delay_ms: i64, sql: &str, cuts: &[usize], n: usize) -> Vec<String> {
    sorted(run_script_at(rows, &format!("{} {sql}", feed_ddl(delay_ms)), cuts.to_vec(), Some(n)).0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// `RANGE BETWEEN INTERVAL … PRECEDING AND CURRENT ROW` (or `UNBOUNDED PRECEDING`), per key
    /// and over all rows: the rows of the range before each row, and the rows of its time.
    #[test]
    fn range_frames_match_the_batch_window_functions(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        range in prop::sample::select(vec!["INTERVAL '0' SECOND", "INTERVAL '250' MILLISECOND", "INTERVAL '1' SECOND",
            "INTERVAL '3' SECOND", "UNBOUNDED"]),
        keyed in any::<bool>(),
        cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let partition = if keyed { "PARTITION BY k" } else { "" };
        let sql = format!(
            "SELECT k, v, ts, SUM(v) OVER w AS s, COUNT(*) OVER w AS n, MIN(r) OVER w AS lo, MAX(v) OVER w AS hi,
                    AVG(r) OVER w AS a
             FROM t WHERE v > 0
             WINDOW w AS ({partition} ORDER BY ts RANGE BETWEEN {range} PRECEDING AND CURRENT ROW)");
        let batch = sorted(run_datafusion(&on_time(&rows, delay_ms), &sql));
        for n in [1, 2, 4] {
            prop_assert_eq!(&at_parallelism(&rows, delay_ms, &sql, &cuts, n), &batch, "parallelism {}", n);
        }
    }

    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW` (or `UNBOUNDED PRECEDING`): each row and the
    /// n rows (or all rows) before it in time.
    #[test]
    fn rows_frames_match_the_batch_window_functions(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        preceding in prop::sample::select(vec!["0", "1", "3", "UNBOUNDED"]),
        cuts in prop::collection::btree_set(0usize..260, 0..30),
    ) {
        let rows = without_ties(&rows);
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let sql = format!(
            "SELECT k, v, ts, SUM(v) OVER w AS s, COUNT(r) OVER w AS n, MAX(r) OVER w AS hi, MIN(site) OVER w AS first
             FROM t WINDOW w AS (PARTITION BY k ORDER BY ts ROWS BETWEEN {preceding} PRECEDING AND CURRENT ROW)");
        let batch = sorted(run_datafusion(&on_time(&rows, delay_ms), &sql));
        for n in [1, 2] {
            prop_assert_eq!(&at_parallelism(&rows, delay_ms, &sql, &cuts, n), &batch, "parallelism {}", n);
        }
    }
}
