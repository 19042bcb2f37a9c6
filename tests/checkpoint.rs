//! Checkpoints against uninterrupted runs: a query over random out-of-order rows at random
//! batch cuts checkpoints after every batch, "crashes" (its source fails) at random points,
//! and is restarted from its newest checkpoint each time, in a fresh pipeline whose operators
//! take up the saved state. What its transactional sink committed must equal, row for row,
//! what an uninterrupted run emits. Every stateful operator is covered this way: window
//! aggregates (TUMBLE, HOP, CUMULATE, with lateness and early results), sessions, updating
//! aggregates, deduplication, Top-N, window Top-N and joins.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use datafusion::arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use weir_engine::RunOptions;
use weir_runtime::checkpoint::{CheckpointConfig, CheckpointStore, Guarantee};
use weir_runtime::Sink;
use weir_sql::StreamPlan;

/// A sink whose rows count only once a checkpoint commits them (its state outlives the
/// pipeline, as files on disk do; what was not committed is lost in a crash).
#[derive(Clone, Default)]
struct TxSink {
    state: Arc<Mutex<TxState>>,
    /// Checkpoints committed.
    commits: Arc<AtomicUsize>,
}

#[derive(Default)]
struct TxState {
    committed: Vec<RecordBatch>,
    pending: Vec<RecordBatch>,
    prepared: HashMap<u64, Vec<RecordBatch>>,
}

impl Sink for TxSink {
    fn write(&mut self, batch: &RecordBatch) -> weir_runtime::Result<()> {
        self.state.lock().unwrap().pending.push(batch.clone());
        Ok(())
    }

    fn finish(&mut self) -> weir_runtime::Result<()> {
        Ok(())
    }

    fn prepare_commit(&mut self, id: u64) -> weir_runtime::Result<serde_json::Value> {
        let mut s = self.state.lock().unwrap();
        let pending = std::mem::take(&mut s.pending);
        s.prepared.insert(id, pending);
        Ok(serde_json::json!(id))
    }

    fn commit(&mut self, prepared: &serde_json::Value) -> weir_runtime::Result<()> {
        self.commit_rows(prepared);
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn recover(&mut self, prepared: Option<&serde_json::Value>) -> weir_runtime::Result<()> {
        match prepared {
            Some(p) => self.commit_rows(p),
            None => self.state.lock().unwrap().committed.clear(),
        }
        let mut s = self.state.lock().unwrap();
        s.pending.clear();
        s.prepared.clear();
        Ok(())
    }

    fn transactional(&self) -> bool {
        true
    }
}

impl TxSink {
    /// Commit the rows of a prepared checkpoint (done, or found prepared on recovery).
    fn commit_rows(&self, prepared: &serde_json::Value) {
        let mut s = self.state.lock().unwrap();
        if let Some(rows) = prepared.as_u64().and_then(|id| s.prepared.remove(&id)) {
            s.committed.extend(rows);
        }
    }
}

/// The inputs of a query: `t` reads `rows` cut at `cuts`, its first `crash` batches then a
/// failure (once `commits` grew, when given); the second input (`u`, or the lookup table `d`)
/// runs 700 ms later in event time, is cut elsewhere, and ends sooner (checkpoints are taken
/// after it ended).
fn feed(rows: &[Row], cuts: &[usize], crash: Option<usize>, commits: Option<Arc<AtomicUsize>>) -> Arc<Feed> {
    let keep = rows.len() * 2 / 3;
    let shifted: Vec<Row> = rows[..keep].iter().map(|r| Row { ts: r.ts + 700, ..r.clone() }).collect();
    let later: Vec<usize> = cuts.iter().map(|c| c + 3).collect();
    Feed::with(vec![
        ("t", FeedTable { crash, crash_after_commit: commits, ..FeedTable::new(rows, cuts) }),
        ("u", FeedTable::new(&shifted, &later)),
        ("d", FeedTable::new(&shifted, &later)),
    ])
}

/// The rows of `batches`, led by their `op` when the plan is a changelog, replayed.
fn result(plan: &StreamPlan, batches: &[RecordBatch]) -> Vec<String> {
    let lines = format_rows(batches);
    if plan.is_updating() {
        replay(&lines).expect("a valid changelog")
    } else {
        sorted(lines)
    }
}

/// Run `script` to its end, crashing after each of `crashes` batches (counted from each
/// restart, each crash once a checkpoint was committed since), and return what the sink
/// committed, with the parallelism of each restart that resumed from a checkpoint.
fn run_with_crashes(
    script: &str,
    rows: &[Row],
    cuts: &[usize],
    crashes: &[usize],
    guarantee: Guarantee,
    parallelism: &[usize],
) -> (Vec<String>, Vec<Option<usize>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut resumed = Vec::new();
    let sink = TxSink::default();
    let mut crashes = crashes.iter().copied();
    let mut plan = None;
    for attempt in 0.. {
        assert!(attempt < 1000, "no progress");
        let store = CheckpointStore::open(dir.path().to_str().expect("utf-8")).expect("store");
        let restore = store.latest().expect("readable checkpoints");
        // each restart at the next parallelism of the list (the state moves between instances);
        // until a checkpoint exists, the first
        let parallelism = match &restore {
            Some(_) => parallelism.get(attempt % parallelism.len().max(1)).copied(),
            None => parallelism.first().copied(),
        };
        if restore.is_some() {
            resumed.push(parallelism);
        }
        let config =
            CheckpointConfig { store, interval: Duration::ZERO, guarantee, fingerprint: "test".into(), restore };
        // a restart is a new engine, as a new process would be
        let engine = feed_engine(feed(rows, cuts, crashes.next(), Some(Arc::clone(&sink.commits))));
        let p = last_query(&engine, script);
        let options = RunOptions {
            checkpoint: Some(config),
            checkpoints_from_config: false,
            parallelism,
            ..RunOptions::default()
        };
        let result = run_on(&engine, &p, Box::new(sink.clone()), options);
        plan = Some(p);
        match result {
            Ok(()) => break,
            Err(e) if e == "crash" => continue,
            Err(e) => panic!("failed: {e}"),
        }
    }
    let committed = sink.state.lock().unwrap().committed.clone();
    (result(&plan.expect("a run"), &committed), resumed)
}

/// The same query, uninterrupted and without checkpoints.
fn uninterrupted(script: &str, rows: &[Row], cuts: &[usize]) -> Vec<String> {
    let engine = feed_engine(feed(rows, cuts, None, None));
    let plan = last_query(&engine, script);
    let sink = weir_connectors::CollectSink::new();
    run_on(&engine, &plan, Box::new(sink.clone()), RunOptions::default()).expect("runs");
    result(&plan, &sink.batches())
}

const QUERIES: &[&str] = &[
    // tumbling, hopping and cumulating windows
    "SELECT k, COUNT(*) AS n, SUM(v) AS s, MAX(r) AS m FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
    "SELECT window_start, window_end, k, AVG(v) AS a FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)) GROUP BY window_start, window_end, k",
    "SELECT window_start, window_end, COUNT(DISTINCT k) AS keys, SUM(v) AS s FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)) GROUP BY window_start, window_end",
    // changelog windows: allowed lateness, early results
    "SET window.allowed_lateness = '2 s'; SELECT k, COUNT(*) AS n FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
    "SET window.emit_early = 'update'; SELECT k, SUM(v) AS s FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
    // sessions, plain and as a changelog
    "SELECT k, SESSION_START(ts, INTERVAL '1' SECOND) AS s, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY SESSION(ts, INTERVAL '1' SECOND), k",
    "SET window.allowed_lateness = '2 s'; SELECT k, SESSION_END(ts, INTERVAL '500' MILLISECOND) AS e, MIN(v) AS lo FROM t GROUP BY SESSION(ts, INTERVAL '500' MILLISECOND), k",
    // updating aggregates, over an append-only input and over a changelog
    "SELECT k, site, COUNT(*) AS n, SUM(v) AS s, MIN(r) AS lo, AVG(r) AS a, COUNT(DISTINCT v % 3) AS d FROM t GROUP BY k, site",
    "SELECT n, COUNT(*) AS keys, MAX(n) AS hi, MIN(n) AS lo FROM (SELECT k, COUNT(*) AS n FROM t GROUP BY k) GROUP BY n",
    // deduplication, Top-N, window Top-N
    "SELECT k, site, ts FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k, site ORDER BY ts DESC) AS rn FROM t) WHERE rn = 1",
    "SELECT k, v, ts, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC, ts DESC) AS rn FROM t) WHERE rn <= 3",
    "SELECT window_start, site, total, rn FROM (
       SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY total DESC) AS rn
       FROM (SELECT window_start, window_end, site, SUM(v) AS total
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, site))
     WHERE rn <= 2",
    "SELECT window_start, k, r, rn FROM (
       SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, k ORDER BY r ASC NULLS LAST) AS rn
       FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)))
     WHERE rn <= 2",
    // OVER aggregates: a range and a number of rows before each row
    "SELECT k, v, ts, SUM(v) OVER w AS s, COUNT(*) OVER w AS n, MAX(r) OVER w AS m FROM t
     WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND CURRENT ROW)",
    "SELECT k, v, ts, AVG(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS a FROM t",
    "SELECT k, v, ts, SUM(v) OVER w AS s, COUNT(DISTINCT site) OVER w AS sites, MIN(r) OVER w AS lo FROM t
     WINDOW w AS (PARTITION BY k ORDER BY ts)",
    // window joins of windowed rows: full outer and anti
    "SELECT a.k, a.v, b.k, b.v, a.window_start, b.window_end
     FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) a
     FULL JOIN TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '1' SECOND)) b
     ON a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end AND a.v < b.v",
    "SELECT a.k, a.v, a.ts FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) a
     WHERE NOT EXISTS (SELECT * FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '1' SECOND)) b
       WHERE a.k = b.k AND a.window_start = b.window_start AND a.window_end = b.window_end AND b.site = a.site)",
    // joins: interval (inner and left outer), window, regular with a TTL; and a union
    "SELECT t.k, t.v, u.v, t.ts, u.ts FROM t JOIN u ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '2' SECOND AND t.v <> u.v",
    "SELECT t.k, t.v, u.v FROM t LEFT JOIN u ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts AND t.site = u.site",
    "SELECT a.k, a.w, a.n, b.n FROM
       (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) a
     JOIN (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) b
     ON a.k = b.k AND a.w = b.w AND a.e = b.e",
    // Nexmark q5's shape: counts per key and window joined on the window with the highest count
    // of each window (whose aggregate runs in the join's instances, the counts hashed to them)
    "SELECT a.k, a.w, a.n FROM
       (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) a
     JOIN (SELECT w, e, MAX(n) AS m FROM (SELECT k, window_start AS w, window_end AS e, COUNT(*) AS n
             FROM TABLE(TUMBLE(TABLE u, DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end) GROUP BY w, e) b
     ON a.w = b.w AND a.e = b.e AND a.n >= b.m",
    "SET state.ttl = '2 s'; SELECT t.k, t.v, u.v, u.site FROM t LEFT JOIN u ON t.k = u.k AND t.v > u.v",
    "SELECT t.k, t.v, d.v, d.site FROM t LEFT JOIN d ON t.k = d.k AND t.v > d.v",
    // an aggregate on a join's key and another column, and a deduplication on a join's key
    // (each in the join's instances, in parallel)
    "SELECT u.site, t.k, COUNT(*) AS n, MAX(t.v - u.v) AS d FROM t JOIN u
       ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '1' SECOND
     GROUP BY u.site, t.k",
    "SELECT k, tv, uv, tts, uts FROM (SELECT t.k, t.v AS tv, u.v AS uv, t.ts AS tts, u.ts AS uts,
       ROW_NUMBER() OVER (PARTITION BY t.k ORDER BY u.v DESC, t.v, t.ts, u.ts) AS rn
       FROM t JOIN u ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '1' SECOND)
     WHERE rn = 1",
    // a join of two updating aggregates on one of their keys (in parallel: each side hashed
    // on it before its aggregate, which runs in the join's instances)
    "SET state.ttl = '1 h'; SELECT a.site, a.k, a.n, b.n FROM (SELECT k, site, COUNT(*) AS n FROM t GROUP BY k, site) a
     JOIN (SELECT site, COUNT(*) AS n FROM u GROUP BY site) b ON a.site = b.site",
    // rows joined with an updating aggregate on its key (in parallel: the aggregate runs in the
    // join's instances, the rows hashed to them)
    "SET state.ttl = '1 h'; SELECT t.k, t.v, b.n FROM t JOIN (SELECT k, COUNT(*) AS n FROM u GROUP BY k) b ON t.k = b.k",
    "SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, MAX(src) AS src
     FROM (SELECT k, ts, 'left' AS src FROM t UNION ALL SELECT k, ts, 'right' FROM u WHERE site <> 'site0')
     GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
];

/// `query` after the tables it reads (`t`; `u`, its rows 700 ms later; the lookup table `d`).
fn with_tables(query: &str) -> String {
    let t = feed_ddl(300);
    format!("{t} {} {LOOKUP_TABLE} {query}", t.replacen("CREATE TABLE t", "CREATE TABLE u", 1))
}

/// `query` crashed and restarted (restart `i` at `parallelism[i % len]`; none: the default)
/// commits what one uninterrupted thread emits.
fn check(
    query: &str,
    rows: &[Row],
    cuts: &[usize],
    crashes: &[usize],
    parallelism: &[usize],
) -> Result<(), TestCaseError> {
    let script = with_tables(query);
    let expected = uninterrupted(&script, rows, cuts);
    let (got, _) = run_with_crashes(&script, rows, cuts, crashes, Guarantee::ExactlyOnce, parallelism);
    prop_assert_eq!(got, expected, "query: {}; crashes after {:?} batches", query, crashes);
    Ok(())
}

/// Queries over two inputs, for the runs with a task per source.
const TWO_INPUTS: &[&str] = &[
    "SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, SUM(v) AS s
     FROM (SELECT k, v, ts FROM t UNION ALL SELECT k, v * 10, ts FROM u) GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
    "SELECT t.k, t.v, u.v FROM t JOIN u ON t.k = u.k AND u.ts BETWEEN t.ts - INTERVAL '1' SECOND AND t.ts + INTERVAL '1' SECOND",
    "SELECT t.k, t.v, d.v FROM t JOIN d ON t.k = d.k AND t.v > d.v",
];

fn script_of(query: &str) -> String {
    let t = feed_ddl(5_000);
    format!("{t} {} {LOOKUP_TABLE} {query}", t.replacen("CREATE TABLE t", "CREATE TABLE u", 1))
}

/// A table without a watermark: joined on the right, it is a lookup table, read whole first.
const LOOKUP_TABLE: &str = "CREATE TABLE d (k VARCHAR, site VARCHAR, v BIGINT, r DOUBLE, ts TIMESTAMP(3))
    WITH (connector = 'feed');";

fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..250, 0..30).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// With a task per source, barriers travel through the channels among the batches and the
    /// operator task aligns them: exactly-once holds.
    #[test]
    fn aligned_barriers_from_source_tasks_give_exactly_once(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..8, 1..5),
    ) {
        // the order two inputs are read in depends on thread timing (and on the alignment), so
        // no row may be near the watermark: disorder within 4.5 s, under the 5 s delay
        let mut max = i64::MIN;
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| {
                max = max.max(r.ts);
                r.ts >= max - 4_500
            })
            .collect();
        for query in TWO_INPUTS {
            let script = script_of(query);
            let expected = uninterrupted(&script, &rows, &cuts);
            let (got, _) = run_with_crashes(&script, &rows, &cuts, &crashes, Guarantee::ExactlyOnce, &[]);
            prop_assert_eq!(got, expected, "query: {}; crashes after {:?} batches", query, crashes);
        }
    }

    /// Not aligned: a restart may count rows twice, but loses none.
    #[test]
    fn unaligned_barriers_lose_no_row(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..8, 1..5),
    ) {
        let script = script_of("SELECT k, v, ts FROM t UNION ALL SELECT k, v, ts FROM u");
        let expected = uninterrupted(&script, &rows, &cuts);
        let (got, _) = run_with_crashes(&script, &rows, &cuts, &crashes, Guarantee::AtLeastOnce, &[]);
        let mut left: HashMap<&String, usize> = HashMap::new();
        for r in &got {
            *left.entry(r).or_default() += 1;
        }
        for r in &expected {
            let n = left.entry(r).or_default();
            prop_assert!(*n > 0, "row {} lost; crashes after {:?} batches", r, crashes);
            *n -= 1;
        }
    }

    /// In parallel at-least-once, barriers are counted, not aligned: a sender's rows after its
    /// barrier go on into the checkpoint's state and are read again after a restart. An
    /// interval join hashed over two instances may then join a row twice, but loses none.
    #[test]
    fn unaligned_parallel_barriers_lose_no_row(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..8, 1..5),
    ) {
        let script = script_of(TWO_INPUTS[1]);
        let expected = uninterrupted(&script, &rows, &cuts);
        let (got, _) = run_with_crashes(&script, &rows, &cuts, &crashes, Guarantee::AtLeastOnce, &[2]);
        let mut left: HashMap<&String, usize> = HashMap::new();
        for r in &got {
            *left.entry(r).or_default() += 1;
        }
        for r in &expected {
            let n = left.entry(r).or_default();
            prop_assert!(*n > 0, "row {} lost; crashes after {:?} batches", r, crashes);
            *n -= 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn restarts_from_checkpoints_emit_what_an_uninterrupted_run_does(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..6, 1..6),
    ) {
        for query in QUERIES {
            check(query, &rows, &cuts, &crashes, &[])?;
        }
    }
}

/// The queries of [`QUERIES`] that run in parallel with the result of one thread on any input:
/// all but the union (see [`parallel_unions_restart_from_checkpoints`]), the TTL join's TTL
/// longer than the input (which pairs further apart than its TTL a join still matches depends
/// on when each instance's watermark moves); the lookup join is the last.
fn parallel_queries() -> Vec<String> {
    let ttl_join = QUERIES.iter().position(|q| q.contains("state.ttl")).expect("a TTL join");
    let mut queries: Vec<String> = QUERIES[..UNION].iter().map(|q| q.to_string()).collect();
    queries[ttl_join] = queries[ttl_join].replace("state.ttl = '2 s'", "state.ttl = '1 h'");
    queries
}

/// The union of [`QUERIES`].
const UNION: usize = 28;

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// At parallelism 2 (windows, sessions, updating aggregates, dedup, Top-N and joins hashed
    /// over two instances), a checkpoint after every batch with barriers aligned at each
    /// instance and at the sink, restarts included: what the sink committed is what one
    /// thread emits without a stop.
    #[test]
    fn parallel_restarts_from_aligned_checkpoints_emit_what_one_uninterrupted_thread_does(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..6, 1..4),
    ) {
        for query in &parallel_queries() {
            check(query, &rows, &cuts, &crashes, &[2])?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Each restart at another parallelism (2, 3, 1, 4, …): the state of every keyed operator
    /// and join (windows with allowed lateness and early results, sessions as changelogs
    /// included) taken apart and put together by key group at every resume, still what one
    /// uninterrupted thread emits.
    #[test]
    fn restarts_at_another_parallelism_each_time_emit_what_one_uninterrupted_thread_does(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..6, 1..5),
    ) {
        for query in &parallel_queries() {
            check(query, &rows, &cuts, &crashes, &[2, 3, 1, 4])?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Checkpointed on one thread first (parallelism 1), then resumed in parallel: a query
    /// reads its checkpoint as a run whose stages had one instance each (each union's and
    /// join's watermarks to the stage that runs it, each operator to its stage by number).
    #[test]
    fn one_thread_checkpoints_resume_in_parallel(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..6, 1..4),
    ) {
        // over one table, joins of two and a lookup join
        for query in &parallel_queries() {
            check(query, &rows, &cuts, &crashes, &[1, 2, 3])?;
        }
        // the union, its tables' rows in time order (see `parallel_unions_restart_from_checkpoints`)
        let mut rows = rows;
        rows.sort_by_key(|r| r.ts);
        check(QUERIES[UNION], &rows, &cuts, &crashes, &[1, 2, 3])?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// A union in parallel (its inputs' stages, the union's stage hashed into the window
    /// aggregate), checkpointed and restarted at 2, 3 and 1 instances in turn: what one
    /// uninterrupted thread emits. The rows come in time order: which row late in its own table
    /// a union keeps depends, in parallel, on how its inputs' rows interleave.
    #[test]
    fn parallel_unions_restart_from_checkpoints(
        rows in rows_strategy(),
        cuts in cuts_strategy(),
        crashes in prop::collection::vec(0usize..6, 1..4),
    ) {
        let mut rows = rows;
        rows.sort_by_key(|r| r.ts);
        prop_assert!(QUERIES[UNION].contains("UNION ALL"));
        check(QUERIES[UNION], &rows, &cuts, &crashes, &[2, 3, 1])?;
    }
}

/// Rows over many keys (forty, three sites), a few out of order, spanning a few windows: every
/// keyed operator holds state for most of them when a run stops, so state restored to an
/// instance that does not own its key group shows in the results (random inputs have at most
/// four keys, which two or three instances may well share).
fn many_keys() -> Vec<Row> {
    (0..300i64)
        .map(|i| Row {
            key: format!("k{}", i % 40),
            site: format!("site{}", i % 3),
            value: (i * 37) % 1000 - 50,
            reading: (i % 11 != 0).then(|| (i % 17) as f64 / 4.0),
            ts: BASE_MS + i * 15 - (i * 7) % 5 * 10,
        })
        .collect()
}

/// Every query run in parallel over [`many_keys`], stopped after a few batches each time (once
/// a checkpoint was committed) and resumed from its checkpoint at 3, 1, 4 and 2 instances in
/// turn: what one uninterrupted thread emits.
#[test]
fn restarts_at_another_parallelism_move_the_state_of_many_keys_to_their_owners() {
    let (rows, cuts): (Vec<Row>, Vec<usize>) = (many_keys(), (1..12).map(|c| c * 25).collect());
    for query in &parallel_queries() {
        let script = with_tables(query);
        let expected = uninterrupted(&script, &rows, &cuts);
        let (got, resumed) =
            run_with_crashes(&script, &rows, &cuts, &[3, 2, 2, 2], Guarantee::ExactlyOnce, &[2, 3, 1, 4]);
        assert!(resumed.len() >= 3, "{query}: resumed from a checkpoint at {resumed:?} only");
        assert_eq!(got, expected, "{query}");
    }
}
