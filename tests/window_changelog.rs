//! Windows that emit a changelog, against DataFusion's batch GROUP BY.
//!
//! With an allowed lateness L, a (row, window) pair is accepted when the window had not ended
//! L before the watermark in force when the row arrived. Each window fires once at its end,
//! then late rows correct it (`-U` old row, `+U` new row). Replaying the changelog must give
//! the batch query over the accepted pairs, and the first emission of each window (`+I`) must
//! hold exactly the rows it would have without lateness: corrections come only after it.
//!
//! With early results every batch emits the current value of the windows it changed; replaying
//! must give the same result as the final emission.
//!
//! Sessions are checked the same way against a row-by-row reference of which rows join which
//! session under the allowed lateness.

use proptest::prelude::*;

mod common;
use common::*;

/// The `+I` rows of a changelog, without the op.
fn inserts(changes: &[String]) -> Vec<String> {
    changes.iter().filter_map(|l| l.strip_prefix("+I|")).map(String::from).collect()
}

/// Whether `small` is a sub-multiset of `big` (both sorted).
fn contained(small: &[String], big: &[String]) -> bool {
    let mut big = big.iter().peekable();
    small.iter().all(|s| {
        while big.peek().is_some_and(|b| *b < s) {
            big.next();
        }
        big.next().is_some_and(|b| b == s)
    })
}

struct Case<'a> {
    rows: &'a [Row],
    delay_ms: i64,
    cuts: &'a [usize],
    windows_of: &'a dyn Fn(i64) -> Vec<(i64, i64)>,
    weir_query: String,
    batch_query: &'a str,
}

impl Case<'_> {
    fn run(&self, settings: &str) -> Vec<String> {
        let script = format!("{} {settings} {}", feed_ddl(self.delay_ms), self.weir_query);
        run_script(self.rows, &script, self.cuts.to_vec()).0
    }

    fn batch(&self, lateness_ms: i64) -> Vec<String> {
        sorted(run_datafusion_pairs(
            &accepted_pairs(self.rows, self.delay_ms, lateness_ms, self.windows_of),
            self.batch_query,
        ))
    }

    /// Allowed lateness: replay = batch over the pairs accepted with it; first emissions =
    /// the result without it.
    fn check_lateness(&self, lateness_ms: i64) -> Result<(), TestCaseError> {
        let changes = self.run(&format!("SET window.allowed_lateness = '{lateness_ms} ms';"));
        let table = replay(&changes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(sorted(table), self.batch(lateness_ms), "changelog: {:?}", changes);
        let on_time = self.batch(0);
        let first = sorted(inserts(&changes));
        prop_assert!(contained(&on_time, &first), "first emissions {:?} miss some of {:?}", first, on_time);
        prop_assert!(!changes.iter().any(|l| l.starts_with("-D|")), "a window group was deleted: {:?}", changes);
        Ok(())
    }

    /// Early results on every update: replay = the final result.
    fn check_early(&self, lateness_ms: i64) -> Result<(), TestCaseError> {
        let changes =
            self.run(&format!("SET window.emit_early = 'update'; SET window.allowed_lateness = '{lateness_ms} ms';"));
        let table = replay(&changes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(sorted(table), self.batch(lateness_ms), "changelog: {:?}", changes);
        Ok(())
    }
}

fn tumble_windows(t: i64, size: i64) -> Vec<(i64, i64)> {
    let start = t - t.rem_euclid(size);
    vec![(start, start + size)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn late_rows_within_the_allowed_lateness_correct_fired_windows(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        lateness_ms in prop::sample::select(vec![1i64, 700, 3000, 45_000]),
        size_s in 1i64..6,
        (slide_s, hop_s) in prop::sample::select(vec![(1i64, 3i64), (2, 5), (3, 2)]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let tumble = move |t| tumble_windows(t, size_s * 1000);
        Case {
            rows: &rows, delay_ms, cuts: &cuts, windows_of: &tumble,
            weir_query: format!(
                "SELECT k, TUMBLE_START(ts, INTERVAL '{size_s}' SECOND) AS ws, COUNT(*) AS n, SUM(v) AS total,
                        MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean, COUNT(DISTINCT site) AS sites
                 FROM t WHERE v <> 7 GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND), k"),
            batch_query: "SELECT k, ws, COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, MAX(r) AS hi, AVG(r) AS mean,
                                 COUNT(DISTINCT site) AS sites
                          FROM tw WHERE v <> 7 GROUP BY k, ws",
        }.check_lateness(lateness_ms)?;

        let hop = move |t| hop_windows(t, slide_s * 1000, hop_s * 1000);
        Case {
            rows: &rows, delay_ms, cuts: &cuts, windows_of: &hop,
            weir_query: format!(
                "SELECT window_start, window_end, site, COUNT(*), SUM(v), MAX(ts)
                 FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '{slide_s}' SECOND, INTERVAL '{hop_s}' SECOND))
                 GROUP BY window_start, window_end, site"),
            batch_query: "SELECT ws, we, site, COUNT(*), SUM(v), MAX(ts) FROM tw GROUP BY ws, we, site",
        }.check_lateness(lateness_ms)?;

        let cumulate = |t| cumulate_windows(t, 1000, 3000);
        Case {
            rows: &rows, delay_ms, cuts: &cuts, windows_of: &cumulate,
            weir_query: "SELECT window_start, window_end, COUNT(*), SUM(v)
                 FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND))
                 GROUP BY window_start, window_end".into(),
            batch_query: "SELECT ws, we, COUNT(*), SUM(v) FROM tw GROUP BY ws, we",
        }.check_lateness(lateness_ms)?;
    }

    #[test]
    fn early_results_replay_to_the_final_result(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        lateness_ms in prop::sample::select(vec![0i64, 3000]),
        size_s in 1i64..6,
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let tumble = move |t| tumble_windows(t, size_s * 1000);
        Case {
            rows: &rows, delay_ms, cuts: &cuts, windows_of: &tumble,
            weir_query: format!(
                "SELECT window_start, k, COUNT(*) AS n, SUM(v) AS total, MAX(r) AS hi
                 FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{size_s}' SECOND))
                 GROUP BY window_start, window_end, k HAVING COUNT(*) > 1"),
            batch_query: "SELECT ws, k, COUNT(*) AS n, SUM(v) AS total, MAX(r) AS hi FROM tw GROUP BY ws, k HAVING COUNT(*) > 1",
        }.check_early(lateness_ms)?;

        let hop = |t| hop_windows(t, 1000, 3000);
        Case {
            rows: &rows, delay_ms, cuts: &cuts, windows_of: &hop,
            weir_query: "SELECT HOP_END(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND), COUNT(*), AVG(v)
                 FROM t GROUP BY HOP(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)".into(),
            batch_query: "SELECT we, COUNT(*), AVG(v) FROM tw GROUP BY we",
        }.check_early(lateness_ms)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Sessions: a late row can join a fired session (moving its bounds: -D, +I) or start one
    /// already ended; early results replace a growing session's row. Either way, replaying the
    /// changelog gives the batch sessions of the rows accepted with the allowed lateness.
    #[test]
    fn session_changelogs_replay_to_the_batch_sessions(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        lateness_ms in prop::sample::select(vec![0i64, 1, 700, 3000]),
        gap_ms in prop::sample::select(vec![250i64, 1000, 3000]),
        early in any::<bool>(),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        prop_assume!(early || lateness_ms > 0);
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let settings = format!(
            "SET window.allowed_lateness = '{lateness_ms} ms'; SET window.emit_early = '{}';",
            if early { "update" } else { "off" }
        );
        let batch = |keyed| {
            let pairs = session_pairs(&rows, delay_ms, gap_ms, keyed, lateness_ms);
            sorted(run_datafusion_pairs(&pairs, if keyed {
                "SELECT k, ws, we, COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, COUNT(DISTINCT site) AS sites
                 FROM tw GROUP BY k, ws, we"
            } else {
                "SELECT ws, we, COUNT(*), MAX(ts) FROM tw GROUP BY ws, we"
            }))
        };
        let check = |query: String, keyed: bool| -> Result<(), TestCaseError> {
            let script = format!("{} {settings} {query}", feed_ddl(delay_ms));
            let changes = run_script(&rows, &script, cuts.clone()).0;
            let table = replay(&changes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(sorted(table), batch(keyed), "changelog: {:?}", changes);
            Ok(())
        };
        check(format!(
            "SELECT k, SESSION_START(ts, INTERVAL '{gap_ms}' MILLISECOND) AS ws,
                    SESSION_END(ts, INTERVAL '{gap_ms}' MILLISECOND) AS we,
                    COUNT(*) AS n, SUM(v) AS total, MIN(r) AS lo, COUNT(DISTINCT site) AS sites
             FROM t GROUP BY SESSION(ts, INTERVAL '{gap_ms}' MILLISECOND), k"), true)?;
        check(format!(
            "SELECT window_start, window_end, COUNT(*), MAX(ts)
             FROM TABLE(SESSION(TABLE t, DESCRIPTOR(ts), INTERVAL '{gap_ms}' MILLISECOND))
             GROUP BY window_start, window_end"), false)?;
    }
}

#[test]
fn contained_is_a_multiset_check() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(contained(&s(&["a", "b"]), &s(&["a", "a", "b", "c"])));
    assert!(!contained(&s(&["a", "a"]), &s(&["a", "b"])));
    assert!(!contained(&s(&["d"]), &s(&["a", "b"])));
}
