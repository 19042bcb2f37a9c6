//! weir's incremental windows against DataFusion's batch GROUP BY.
//!
//! Random out-of-order data (with late rows) is cut into batches at random points and run
//! through the streaming pipeline; the reference computes, row by row, the watermark in force
//! (`max(earlier event times) - delay`), keeps the rows whose window has not closed, and runs
//! the same aggregation as a plain DataFusion batch query over them. A second property runs
//! the same CSV file through the real file connector at batch sizes 1, 7, 1000 and 8192 and
//! requires identical output.

use proptest::prelude::*;
use weir_cli::{Session, StatementResult};
use weir_runtime::Metrics;

mod common;
use common::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn windowed_aggregates_match_batch_over_accepted_rows(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        size_s in prop::sample::select(vec![1i64, 2, 5, 10]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let keep = accepted(&rows, delay_ms, size_s * 1000);
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT k, TUMBLE_START(ts, INTERVAL '{size_s}' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total,
                    MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean, COUNT(DISTINCT site) AS sites
             FROM t WHERE r > 0 OR r IS NULL
             GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND), k HAVING COUNT(*) > 1"), cuts.clone());
        let batch = run_datafusion(&keep, &format!(
            "SELECT k, date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS w,
                    COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean,
                    COUNT(DISTINCT site) AS sites
             FROM t WHERE r > 0 OR r IS NULL GROUP BY 1, 2 HAVING COUNT(*) > 1"));
        prop_assert_eq!(sorted(weir), sorted(batch));

        // keyless windows in the TVF form
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT window_start, window_end, COUNT(*), SUM(v), MAX(ts)
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{size_s}' SECOND))
             GROUP BY window_start, window_end"), cuts.clone());
        let batch = run_datafusion(&keep, &format!(
            "SELECT date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS ws,
                    date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') + INTERVAL '{size_s}' SECOND AS we,
                    COUNT(*), SUM(v), MAX(ts)
             FROM t GROUP BY 1, 2"));
        prop_assert_eq!(sorted(weir), sorted(batch));

        // a window over windowed results: 10-second windows over the per-key windows
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT TUMBLE_START(w, INTERVAL '10' SECOND) AS big, COUNT(*) AS windows, SUM(n) AS total, MAX(hi) AS hi
             FROM (SELECT k, TUMBLE_START(ts, INTERVAL '{size_s}' SECOND) AS w, COUNT(*) AS n, MAX(v) AS hi
                   FROM t GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND), k)
             GROUP BY TUMBLE(w, INTERVAL '10' SECOND)"), cuts);
        let batch = run_datafusion(&keep, &format!(
            "SELECT date_bin(INTERVAL '10' SECOND, w, TIMESTAMP '1970-01-01 00:00:00') AS big, COUNT(*) AS windows,
                    SUM(n) AS total, MAX(hi) AS hi
             FROM (SELECT k, date_bin(INTERVAL '{size_s}' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS w,
                          COUNT(*) AS n, MAX(v) AS hi
                   FROM t GROUP BY 1, 2)
             GROUP BY 1"));
        prop_assert_eq!(sorted(weir), sorted(batch));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hopping_windows_match_batch_over_accepted_pairs(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        (slide_s, size_s) in prop::sample::select(vec![(1i64, 3i64), (2, 5), (2, 4), (3, 2), (5, 5)]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let pairs = accepted_pairs(&rows, delay_ms, 0, |t| hop_windows(t, slide_s * 1000, size_s * 1000));
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT k, HOP_START(ts, INTERVAL '{slide_s}' SECOND, INTERVAL '{size_s}' SECOND) AS ws,
                    HOP_END(ts, INTERVAL '{slide_s}' SECOND, INTERVAL '{size_s}' SECOND) AS we,
                    COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean,
                    COUNT(DISTINCT site) AS sites
             FROM t WHERE r > 0 OR r IS NULL
             GROUP BY HOP(ts, INTERVAL '{slide_s}' SECOND, INTERVAL '{size_s}' SECOND), k HAVING COUNT(*) > 1"), cuts.clone());
        let batch = run_datafusion_pairs(&pairs,
            "SELECT k, ws, we, COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean,
                    COUNT(DISTINCT site) AS sites
             FROM tw WHERE r > 0 OR r IS NULL GROUP BY k, ws, we HAVING COUNT(*) > 1");
        prop_assert_eq!(sorted(weir), sorted(batch));

        // the TVF form, keyless, with window_time
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT window_start, window_end, window_time, COUNT(*), SUM(v), MAX(ts)
             FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '{slide_s}' SECOND, INTERVAL '{size_s}' SECOND))
             GROUP BY window_start, window_end, window_time"), cuts);
        let batch = run_datafusion_pairs(&pairs,
            "SELECT ws, we, we - INTERVAL '1' MILLISECOND, COUNT(*), SUM(v), MAX(ts) FROM tw GROUP BY ws, we");
        prop_assert_eq!(sorted(weir), sorted(batch));
    }

    #[test]
    fn cumulating_windows_match_batch_over_accepted_pairs(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        (step_s, max_s) in prop::sample::select(vec![(1i64, 3i64), (2, 6), (5, 5), (1, 10)]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let pairs = accepted_pairs(&rows, delay_ms, 0, |t| cumulate_windows(t, step_s * 1000, max_s * 1000));
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT window_start, window_end, k, COUNT(*) AS n, SUM(v) AS total, AVG(r) AS mean, MAX(ts) AS last
             FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '{step_s}' SECOND, INTERVAL '{max_s}' SECOND))
             WHERE v > 0
             GROUP BY window_start, window_end, k"), cuts);
        let batch = run_datafusion_pairs(&pairs,
            "SELECT ws, we, k, COUNT(*) AS n, SUM(v) AS total, AVG(r) AS mean, MAX(ts) AS last
             FROM tw WHERE v > 0 GROUP BY ws, we, k");
        prop_assert_eq!(sorted(weir), sorted(batch));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn session_windows_match_a_row_by_row_reference(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        gap_ms in prop::sample::select(vec![250i64, 1000, 3000]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let (weir, batch) = sessions_by_key(&rows, delay_ms, gap_ms, &cuts);
        prop_assert_eq!(weir, batch.clone());
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT k, window_start, window_end, COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, AVG(r) AS mean,
                    COUNT(DISTINCT site) AS sites
             FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '{gap_ms}' MILLISECOND))
             GROUP BY k, window_start, window_end"), cuts.clone());
        prop_assert_eq!(sorted(weir), sorted(batch));

        // one session sequence for all rows
        let pairs = session_pairs(&rows, delay_ms, gap_ms, false, 0);
        let weir = run_weir(&rows, delay_ms, &format!(
            "SELECT SESSION_START(ts, INTERVAL '{gap_ms}' MILLISECOND), SESSION_END(ts, INTERVAL '{gap_ms}' MILLISECOND),
                    COUNT(*), MAX(ts)
             FROM t GROUP BY SESSION(ts, INTERVAL '{gap_ms}' MILLISECOND)"), cuts);
        let batch = run_datafusion_pairs(&pairs, "SELECT ws, we, COUNT(*), MAX(ts) FROM tw GROUP BY ws, we");
        prop_assert_eq!(sorted(weir), sorted(batch));
    }
}

fn write_csv(rows: &[Row], path: &std::path::Path) {
    let mut text = String::from("k,site,v,r,ts\n");
    for r in rows {
        let reading = r.reading.map(|x| x.to_string()).unwrap_or_default();
        text.push_str(&format!("{},{},{},{},{}\n", r.key, r.site, r.value, reading, r.ts));
    }
    std::fs::write(path, text).expect("write csv");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn output_does_not_depend_on_batch_size(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 500, 3000]),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.csv");
        write_csv(&rows, &path);
        let sql = format!(
            "{} SELECT k, TUMBLE_END(ts, INTERVAL '2' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total,
                       AVG(r) AS mean, MAX(r) AS hi
                FROM t WHERE v > 0 GROUP BY TUMBLE(ts, INTERVAL '2' SECOND), k;",
            ddl(delay_ms, &path.display().to_string()));
        let mut outputs = Vec::new();
        for size in [1usize, 7, 1000, 8192] {
            let mut session = Session::new();
            session.set("batch.size", &size.to_string()).expect("setting");
            // in order: on one thread (in parallel the multiset is the same: tests/parallel.rs)
            session.set("parallelism", "1").expect("setting");
            let results = session.execute(&sql).expect("runs");
            let Some(StatementResult::Rows { batches, metrics, .. }) = results.last() else { panic!("rows expected") };
            let late = Metrics::get(&metrics.late_rows);
            outputs.push((size, format_rows(batches), late));
        }
        for (size, rows_out, late) in &outputs[1..] {
            prop_assert_eq!(rows_out, &outputs[0].1, "batch size {} differs from batch size 1", size);
            prop_assert_eq!(late, &outputs[0].2, "late count at batch size {} differs", size);
        }
    }
}

/// Runs `sql` over `t` whose dropped rows go to a side output; returns (results, dropped rows).
fn run_weir_with_late_rows(rows: &[Row], delay_ms: i64, sql: &str, cuts: Vec<usize>) -> (Vec<String>, Vec<String>) {
    let ddl = feed_ddl(delay_ms).replace("connector = 'feed')", "connector = 'feed', 'late_rows' = 'late')");
    let script = format!("CREATE TABLE late WITH (connector = 'channel'); {ddl} {sql}");
    run_script(rows, &script, cuts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every row is either aggregated or in the side output, whole, exactly once.
    #[test]
    fn dropped_rows_are_exactly_the_late_rows(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        size_s in prop::sample::select(vec![1i64, 2, 5]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let (out, late) = run_weir_with_late_rows(&rows, delay_ms, &format!(
            "SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND)"), cuts.into_iter().collect());
        let keep = accepted(&rows, delay_ms, size_s * 1000);
        let counted: i64 = out.iter().map(|n| n.parse::<i64>().expect("a count")).sum();
        prop_assert_eq!(counted as usize, keep.len());
        // the side output has each late row whole (all five columns) plus a reason
        let mut expected: Vec<Row> = rows.clone();
        for k in &keep {
            if let Some(i) = expected.iter().position(|r| r.key == k.key && r.ts == k.ts && r.value == k.value && r.site == k.site) {
                expected.remove(i);
            }
        }
        let expected = sorted(format_rows(&[to_batch(&expected)]));
        let got: Vec<String> = late.iter().map(|l| {
            let (row, reason) = l.rsplit_once('|').expect("a reason column");
            assert!(reason.starts_with("late: window ["), "{reason}");
            row.to_string()
        }).collect();
        prop_assert_eq!(sorted(got), expected);
    }
}

/// Keyed sessions of `rows` by weir (`cuts` its batches) and by DataFusion over the row-by-row
/// reference's sessions, each sorted.
fn sessions_by_key(rows: &[Row], delay_ms: i64, gap_ms: i64, cuts: &[usize]) -> (Vec<String>, Vec<String>) {
    let pairs = session_pairs(rows, delay_ms, gap_ms, true, 0);
    let weir = run_weir(
        rows,
        delay_ms,
        &format!(
            "SELECT k, SESSION_START(ts, INTERVAL '{gap_ms}' MILLISECOND) AS ws,
                SESSION_END(ts, INTERVAL '{gap_ms}' MILLISECOND) AS we,
                COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, AVG(r) AS mean, COUNT(DISTINCT site) AS sites
         FROM t GROUP BY SESSION(ts, INTERVAL '{gap_ms}' MILLISECOND), k"
        ),
        cuts.to_vec(),
    );
    let batch = run_datafusion_pairs(
        &pairs,
        "SELECT k, ws, we, COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, AVG(r) AS mean,
                COUNT(DISTINCT site) AS sites
         FROM tw GROUP BY k, ws, we",
    );
    (sorted(weir), sorted(batch))
}

/// Sessions bridged by out-of-order rows (k2's at 1.106 s absorbs the one at 1.355 s, and
/// more) while other keys' sessions fire first: each keeps every row. The case that found
/// sessions losing the rows of an absorbed session when another fired first (the shared slots
/// moved the survivor to one new slot, dropping the absorbed one's).
#[test]
fn a_bridged_session_keeps_every_row_when_others_fire_first() {
    let keyed_ms: [(u8, i64); 42] = [
        (0, 0),
        (0, 79),
        (0, -141),
        (2, 100),
        (0, 171),
        (0, 171),
        (0, 474),
        (1, 553),
        (1, 632),
        (0, 711),
        (2, 186),
        (0, 869),
        (0, 948),
        (0, 1027),
        (2, 1106),
        (2, 478),
        (0, 1264),
        (0, 1343),
        (0, 1422),
        (2, 1355),
        (2, 1580),
        (0, 1659),
        (0, 1738),
        (0, 1817),
        (0, 1896),
        (0, 1975),
        (2, 2054),
        (0, 2133),
        (0, 2212),
        (0, 2291),
        (2, 1867),
        (0, 2435),
        (2, 1829),
        (0, 2607),
        (0, 2686),
        (0, 2727),
        (2, 2844),
        (0, 2923),
        (2, 2303),
        (2, 2683),
        (2, 2552),
        (0, 3239),
    ];
    let rows: Vec<Row> = keyed_ms
        .iter()
        .map(|(k, t)| Row { key: format!("k{k}"), site: "site0".into(), value: 0, reading: None, ts: BASE_MS + t })
        .collect();
    let cuts = [12, 36, 39, 40, 41, 45, 49, 50, 51, 52, 53, 55, 57, 74, 82, 103, 140, 143, 154, 163, 166];
    let (weir, batch) = sessions_by_key(&rows, 2000, 250, &cuts);
    assert!(batch.iter().any(|r| r.starts_with("k2|2023-11-14T22:13:21.106|2023-11-14T22:13:23.094|10|")), "{batch:?}");
    assert_eq!(weir, batch);
}
