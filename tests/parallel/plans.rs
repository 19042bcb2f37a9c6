//! How a parallel run is laid out for a plan: the drift its sources' watermark alignment
//! allows, and the join sides whose aggregates run in the join's instances.

use super::*;

/// Watermark alignment: the sources of a join (or union) of windows' results only (q5, q8) may
/// run the smallest of the inputs' windows apart, up to a minute (their rows reach the join a
/// window at a time); a join that takes rows themselves (q7's bids), sessions, windows with
/// late results and a union of rows keep a second.
#[test]
fn sources_of_a_join_of_windows_may_run_a_window_apart() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let drift = |sql: &str| match engine.plan(sql).unwrap().pop() {
        Some(Planned::Query(p)) => weir_plan::parallel::alignment_drift(&p) / 1_000_000_000,
        _ => panic!("expected a query"),
    };
    let q = |n: &str| std::fs::read_to_string(format!("{}/sql-examples/nexmark/{n}.sql", env!("CARGO_MANIFEST_DIR")));
    assert_eq!(drift(&q("q5").unwrap()), 10, "q5: hopping windows of 10 s on both sides");
    assert_eq!(drift(&q("q8").unwrap()), 10, "q8: tumbling windows of 10 s on both sides");
    assert_eq!(drift(&q("q7").unwrap()), 1, "q7: bids joined with their window's highest price");
    let window = |tvf: &str, args: &str| {
        format!(
            "SELECT auction, window_start AS s, window_end AS e FROM TABLE({tvf}(TABLE bid, DESCRIPTOR(date_time), {args}))
             GROUP BY auction, window_start, window_end"
        )
    };
    let join = |a: String, b: String| {
        format!("SELECT x.auction FROM ({a}) x JOIN ({b}) y ON x.auction = y.auction AND x.s = y.s AND x.e = y.e")
    };
    let tumble = |size: &str| window("TUMBLE", &format!("INTERVAL {size}"));
    assert_eq!(drift(&join(tumble("'30' SECOND"), tumble("'1' MINUTE"))), 30, "the smaller window");
    assert_eq!(drift(&join(tumble("'30' SECOND"), tumble("'500' MILLISECOND"))), 1, "never below a second");
    assert_eq!(drift(&join(tumble("'2' MINUTE"), tumble("'5' MINUTE"))), 60, "never above a minute");
    let cumulate = window("CUMULATE", "INTERVAL '5' SECOND, INTERVAL '1' MINUTE");
    assert_eq!(drift(&join(cumulate.clone(), cumulate)), 5, "a cumulating window emits at each step");
    let union = |a: &str, b: &str| format!("SELECT auction FROM ({a}) UNION ALL SELECT auction FROM ({b})");
    let sessions = "SELECT auction, SESSION_START(date_time, INTERVAL '30' SECOND) AS s FROM bid
                    GROUP BY SESSION(date_time, INTERVAL '30' SECOND), auction";
    let union_of_rows = union("SELECT auction FROM bid", "SELECT auction FROM bid");
    assert_eq!(drift(&union_of_rows), 1, "a union of rows (a union of windows' results is not planned)");
    let session_join = format!(
        "SET 'state.ttl' = '1 h'; SELECT x.auction FROM ({sessions}) x JOIN (SELECT auction, window_start AS s, window_end AS e FROM \
         TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '30' SECOND)) GROUP BY auction, window_start, window_end) y \
         ON x.auction = y.auction AND x.s BETWEEN y.s AND y.e"
    );
    assert_eq!(drift(&session_join), 1, "sessions close at any time");
    // (last: the settings stay with the engine)
    let late = format!(
        "SET 'window.allowed_lateness' = '5s'; SET 'state.ttl' = '1 h'; {}",
        join(tumble("'30' SECOND"), tumble("'1' MINUTE"))
    );
    assert_eq!(drift(&late), 1, "windows corrected later: their results do not come a window at a time");
}

/// When only one side of a join ends in an aggregate keyed on the join's keys, that aggregate
/// runs in the join's instances all the same, and the other side is hashed on the join's keys:
/// the highest count per window joined with the counts per key and window (Nexmark q5's
/// shape), an updating aggregate on `site` joined with rows on `site` (either side).
#[test]
fn an_aggregate_keyed_on_a_joins_keys_runs_in_its_instances_whatever_the_other_side() {
    let (engine, ddl) = two_tables_at_parallelism_2();
    let explain = |sql: &str| engine.explain(&format!("{ddl} EXPLAIN {sql}")).unwrap();
    let q5 = explain(
        "SELECT a.k, a.w, a.n FROM
           (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n
            FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) a
         JOIN (SELECT w, e, MAX(n) AS m FROM (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n
                 FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end)
               GROUP BY w, e) b
         ON a.w = b.w AND a.e = b.e AND a.n >= b.m",
    );
    assert_explains(
        &q5,
        &[
            "Exchange: hash [a.w, a.e] over 128 key groups, 2 → 2 instances",
            "Exchange: forward (rows already hashed on [b.w, b.e]), 2 → 2 instances",
            "Exchange: hash [w, e] over 128 key groups, 2 → 2 instances",
        ],
    );
    assert_eq!(q5.matches("Exchange: hash [").count(), 4, "{q5}");
    engine.set("state.ttl", "1 h").unwrap();
    let counts = "(SELECT site, COUNT(*) AS n FROM u GROUP BY site) b";
    for (sql, hashed, forward) in [
        (format!("SELECT t.k, b.n FROM t JOIN {counts} ON t.site = b.site"), "[t.site]", "[b.site]"),
        (format!("SELECT t.k, b.n FROM {counts} JOIN t ON b.site = t.site"), "[t.site]", "[b.site]"),
    ] {
        let hashed = format!("Exchange: hash {hashed} over 128 key groups, 1 → 2 instances");
        let forward = format!("Exchange: forward (rows already hashed on {forward}), 2 → 2 instances");
        let counted = "Exchange: hash [u.site] over 128 key groups, 1 → 2 instances";
        assert_explains(&explain(&sql), &[&hashed, &forward, counted]);
    }
}
