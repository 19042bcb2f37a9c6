//! Window Top-N and deduplication against DataFusion's batch `ROW_NUMBER()`.
//!
//! Random out-of-order rows, cut into batches at random points. Window Top-N must equal the
//! batch query over the rows that were not late; deduplication's changelog, replayed, must
//! equal the batch `ROW_NUMBER() … = 1` over all rows. Only columns that ties in `ORDER BY`
//! cannot change are compared (the partition, the rank and the ordered value).

use proptest::prelude::*;

mod common;
use common::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn window_top_n_matches_batch_over_accepted_rows(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        size_s in prop::sample::select(vec![1i64, 2, 5]),
        n in 1usize..4,
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let keep = accepted(&rows, delay_ms, size_s * 1000);
        let bin = format!("date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00')");

        // over a window aggregate: the sites with the most rows per window
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT window_start, total, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY total DESC) AS rn
               FROM (SELECT window_start, window_end, site, SUM(v) AS total
                     FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{size_s}' SECOND))
                     GROUP BY window_start, window_end, site))
             WHERE rn <= {n}"), cuts.clone());
        let batch = run_datafusion(&keep, &format!(
            "SELECT ws, total, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY ws ORDER BY total DESC) AS rn
               FROM (SELECT {bin} AS ws, site, SUM(v) AS total FROM t GROUP BY 1, 2))
             WHERE rn <= {n}"));
        prop_assert_eq!(sorted(weir), sorted(batch));

        // straight over the table function's rows, per key, smallest readings first (NULLs last)
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT window_start, k, r, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY r ASC NULLS LAST) AS rn
               FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{size_s}' SECOND)))
             WHERE rn < {}", n + 1), cuts);
        let batch = run_datafusion(&keep, &format!(
            "SELECT ws, k, r, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY ws, k ORDER BY r ASC NULLS LAST) AS rn
               FROM (SELECT *, {bin} AS ws FROM t))
             WHERE rn <= {n}"));
        prop_assert_eq!(sorted(weir), sorted(batch));
    }

    #[test]
    fn deduplication_replays_to_the_batch_first_row(
        rows in rows_strategy(),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        for direction in ["", " DESC"] {
            let sql = format!(
                "SELECT k, site, ts FROM (
                   SELECT *, ROW_NUMBER() OVER (PARTITION BY k, site ORDER BY ts{direction}) AS rn FROM t)
                 WHERE rn = 1");
            let changes = run_weir(&rows, 1000, &sql, cuts.clone());
            let table = replay(&changes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(sorted(table), sorted(run_datafusion(&rows, &sql)), "{:?}", changes);
        }
    }

    #[test]
    fn top_n_per_key_replays_to_the_batch_top_n(
        rows in rows_strategy(),
        n in 2usize..5,
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        // values are distinct per row (v and ts together), so the ranking has no ties
        let sql = format!(
            "SELECT k, v, ts, rn FROM (
               SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, ts DESC) AS rn FROM t)
             WHERE rn <= {n}");
        let distinct: Vec<Row> = rows.iter().enumerate().map(|(i, r)| Row { value: r.value * 1000 + i as i64, ..r.clone() }).collect();
        let changes = run_weir(&distinct, 1000, &sql, cuts.clone());
        let table = replay(&changes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(sorted(table), sorted(run_datafusion(&distinct, &sql)), "{:?}", changes);
    }
}
