//! Updating results against DataFusion's batch GROUP BY.
//!
//! Random out-of-order rows are cut into batches at random points and run through a
//! non-windowed aggregate (and aggregates, filters and projections over it). The changelog the
//! sink receives is replayed into a table: `+I`/`+U` add a row, `-U`/`-D` must remove a row
//! that is there. The final table must equal the batch query over all rows (an updating
//! aggregate has no windows, so no row is late).

use proptest::prelude::*;

mod common;
use common::*;

fn check(rows: &[Row], cuts: &[usize], weir_sql: &str, batch_sql: &str) -> Result<(), TestCaseError> {
    let changes = run_weir(rows, 1000, weir_sql, cuts.to_vec());
    let table = replay(&changes).map_err(TestCaseError::fail)?;
    prop_assert_eq!(sorted(table), sorted(run_datafusion(rows, batch_sql)), "changelog: {:?}", changes);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn updating_aggregates_replay_to_the_batch_result(
        rows in rows_strategy(),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        // one level: every aggregate kind, a FILTER clause and a HAVING over the changelog
        let q = "SELECT k, site, COUNT(*), SUM(v), MIN(r), MAX(r), AVG(r), COUNT(DISTINCT v % 3),
                        COUNT(*) FILTER (WHERE v > 500)
                 FROM t WHERE v <> 7 GROUP BY k, site HAVING SUM(v) > 0";
        check(&rows, &cuts, q, q)?;

        // an aggregate over an updating aggregate (Nexmark q4's shape): it must retract
        let q = "SELECT site, COUNT(*), SUM(hi), MIN(hi), MAX(hi), AVG(n), MIN(lo)
                 FROM (SELECT k, site, MAX(v) AS hi, MIN(r) AS lo, COUNT(*) AS n FROM t GROUP BY k, site)
                 GROUP BY site";
        check(&rows, &cuts, q, q)?;

        // groups emptied by retractions are deleted; a global aggregate on top
        let q = "SELECT n, COUNT(*) AS keys FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n";
        check(&rows, &cuts, q, q)?;
        // (over no rows at all a streaming global aggregate emits nothing, as in Flink, where
        // a batch one gives a row of zero and NULLs)
        if !rows.is_empty() {
            let q = "SELECT COUNT(*), SUM(n), MAX(n) FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k)";
            check(&rows, &cuts, q, q)?;
        }

        // a filter and a projection over a changelog
        let q = "SELECT k, n * 10 AS n10 FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) WHERE n % 2 = 0";
        check(&rows, &cuts, q, q)?;
    }
}

#[test]
fn replay_refuses_a_retraction_of_a_missing_row() {
    let changes = ["+I|a|1", "-U|a|2"].map(String::from);
    assert!(replay(&changes).is_err());
    let changes = ["+I|a|1", "-U|a|1", "+U|a|2"].map(String::from);
    assert_eq!(replay(&changes), Ok(vec!["a|2".to_string()]));
}
