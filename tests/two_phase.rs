//! Window aggregates in two phases: the partial aggregates of the rows (made where a split of
//! a table is read, held over batches until the watermark could close one of their windows or
//! until released, as before a checkpoint's barrier) merged by the window aggregate, as a
//! parallel run does for a window aggregate over a table read in splits, against the window
//! aggregate on its own. Random out-of-order rows, cut into batches at random points, late ones
//! included (tight watermarks, rows late for some of their hopping windows only): the same
//! windows with the same values, and the same number of late rows counted.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use weir_engine::{Engine, EngineConfig};
use weir_runtime::{
    build_ops, two_phase_window_operators, Message, Metrics, Operator, StreamBatch, WatermarkGenerator,
};
use weir_sql::{StreamOp, StreamPlan};

mod common;
use common::*;

const MS: i64 = 1_000_000;

fn plan(delay_ms: i64, sql: &str) -> StreamPlan {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    last_query(&engine, &format!("{} {sql}", ddl(delay_ms, "x.csv")))
}

/// The plan's operators, each window aggregate in two phases if `two_phase`.
fn operators(plan: &StreamPlan, two_phase: bool, metrics: &Arc<Metrics>) -> Vec<Box<dyn Operator>> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    for op in &plan.ops {
        match op {
            StreamOp::WindowAggregate(w) if two_phase => ops.extend(two_phase_window_operators(w, metrics).unwrap()),
            _ => ops.extend(build_ops(std::slice::from_ref(op), metrics).unwrap()),
        }
    }
    ops
}

/// The results and the late rows counted, the rows read in `batches` as a source does (each
/// row's watermark stamped, the watermark after each batch).
/// With `releases`, the operators send what they hold back (as before a checkpoint's barrier
/// or an idle input) after the batches numbered there.
fn run(
    plan: &StreamPlan,
    two_phase: bool,
    batches: &[Vec<Row>],
    delay_ms: i64,
    releases: &[usize],
) -> (Vec<String>, u64) {
    let metrics = Arc::new(Metrics::default());
    let mut ops = operators(plan, two_phase, &metrics);
    let columns = plan.sources()[0].output_schema.as_arrow().clone();
    let mut gen = WatermarkGenerator::new(delay_ms * MS);
    let mut results: Vec<RecordBatch> = Vec::new();
    let mut feed = |msgs: Vec<Message>, release: bool, results: &mut Vec<RecordBatch>| {
        let mut msgs = msgs;
        for op in ops.iter_mut() {
            let mut next = Vec::new();
            for m in msgs {
                match m {
                    Message::Data(b) => op.process_batch(b, &mut next).unwrap(),
                    Message::Watermark(w) => op.on_watermark(w, &mut next).unwrap(),
                    Message::EndOfStream => {
                        op.on_end_of_stream(&mut next).unwrap();
                        next.push(Message::EndOfStream);
                    }
                    other => next.push(other),
                }
            }
            if release {
                op.release(&mut next).unwrap();
            }
            msgs = next;
        }
        results.extend(msgs.into_iter().filter_map(|m| match m {
            Message::Data(b) => Some(b.batch),
            _ => None,
        }));
    };
    for (n, rows) in batches.iter().enumerate() {
        let all = to_batch(rows);
        let picked = columns.fields().iter().map(|f| all.schema().index_of(f.name()).unwrap()).collect::<Vec<_>>();
        let batch = all.project(&picked).unwrap();
        let times = datafusion::arrow::array::Int64Array::from_iter_values(rows.iter().map(|r| r.ts * MS));
        let row_watermarks = Some(Arc::new(gen.observe(&times)));
        let mut msgs = vec![Message::Data(StreamBatch { batch, row_watermarks, kinds: None, origin: None })];
        msgs.extend(gen.advance().map(Message::Watermark));
        feed(msgs, releases.contains(&n), &mut results);
    }
    feed(vec![Message::Watermark(i64::MAX), Message::EndOfStream], false, &mut results);
    (sorted(format_rows(&results)), Metrics::get(&metrics.late_rows))
}

fn queries(size_s: i64) -> Vec<String> {
    vec![
        format!(
            "SELECT k, TUMBLE_START(ts, INTERVAL '{size_s}' SECOND) AS w, COUNT(*), SUM(v), MIN(r), MAX(r), AVG(r),
                    COUNT(DISTINCT site), COUNT(*) FILTER (WHERE v > 500)
             FROM t GROUP BY TUMBLE(ts, INTERVAL '{size_s}' SECOND), k"
        ),
        format!(
            "SELECT window_start, window_end, site, COUNT(*), AVG(r), SUM(v)
             FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '{size_s}' SECOND))
             GROUP BY window_start, window_end, site"
        ),
        // two keys (a multi-column group table, refilled batch after batch)
        "SELECT window_start, window_end, k, site, SUM(v), MAX(r)
         FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '4' SECOND))
         GROUP BY window_start, window_end, k, site"
            .to_string(),
        // no keys (in parallel: one instance merging every split's partials)
        format!(
            "SELECT window_start, COUNT(*), SUM(v), MIN(r), COUNT(DISTINCT k)
             FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '{size_s}' SECOND))
             GROUP BY window_start, window_end"
        ),
        // hopping windows with gaps between them (size < slide)
        "SELECT window_start, k, COUNT(*)
         FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '3' SECOND, INTERVAL '1' SECOND))
         GROUP BY window_start, window_end, k"
            .to_string(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn two_phases_give_the_windows_and_late_rows_of_one(
        rows in rows_strategy(),
        delay_ms in prop::sample::select(vec![0i64, 300, 2000]),
        size_s in prop::sample::select(vec![1i64, 2, 5]),
        cuts in prop::collection::btree_set(0usize..260, 0..40),
        releases in prop::collection::vec(0usize..40, 0..4),
    ) {
        let cuts: Vec<usize> = cuts.into_iter().collect();
        let batches = batches(&rows, &cuts);
        for sql in queries(size_s) {
            let plan = plan(delay_ms, &sql);
            prop_assert!(plan.ops.iter().any(|op| matches!(op, StreamOp::WindowAggregate(_))), "{}", sql);
            let one = run(&plan, false, &batches, delay_ms, &[]);
            let two = run(&plan, true, &batches, delay_ms, &releases);
            prop_assert_eq!(two, one, "{}", sql);
        }
    }
}

/// A parallel run pre-aggregates a window aggregate over a table read in splits, and only
/// then: not over a table read whole, not with a side output for late rows, not for windows
/// that emit corrections, not when the setting `aggregate.phases` says one.
#[test]
fn explain_shows_which_window_aggregates_run_in_two_phases() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.set("parallelism", "2").unwrap();
    let q5 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql-examples/nexmark/q5.sql")).unwrap();
    let explained = engine.explain(&q5).unwrap();
    let partial = "Exchange: hash [bid.auction] over 128 key groups, 2 → 2 instances, of partial aggregates";
    assert_eq!(explained.matches(partial).count(), 2, "{explained}");
    let count = |setting: &str, sql: &str| {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        engine.set("parallelism", "2").unwrap();
        let explained = engine.explain(&format!("{setting} {sql}")).unwrap();
        assert!(explained.contains("Exchange: hash"), "{explained}");
        explained.matches("of partial aggregates").count()
    };
    let per_auction = "SELECT auction, COUNT(*) FROM bid GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction";
    assert_eq!(count("", per_auction), 1);
    // without keys: the partials go to the window aggregate's one instance
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.set("parallelism", "2").unwrap();
    let keyless =
        engine.explain("SELECT MAX(price) FROM bid GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND)").unwrap();
    assert!(keyless.contains("Exchange: single, 2 → 1 instance, of partial aggregates"), "{keyless}");
    assert_eq!(count("SET window.allowed_lateness = '30 s';", per_auction), 0, "windows with corrections");
    let late = "CREATE TABLE late WITH (connector = 'channel');
                CREATE TABLE b WITH (connector = 'nexmark', 'table' = 'bid', 'late_rows' = 'late');";
    let per_auction_of_b = per_auction.replace("FROM bid", "FROM b");
    assert_eq!(count(late, &per_auction_of_b), 0, "late rows to a side output");
    assert_eq!(count(&late.replace(", 'late_rows' = 'late'", ""), &per_auction_of_b), 1);
    // turned off by the setting (or Flink's key for it)
    assert_eq!(count("SET aggregate.phases = 'one';", per_auction), 0, "one phase asked for");
    assert_eq!(count("SET 'table.optimizer.agg-phase-strategy' = 'ONE_PHASE';", per_auction), 0);
    assert_eq!(count("SET 'table.optimizer.agg-phase-strategy' = 'TWO_PHASE';", per_auction), 1);
    let whole = format!("{} SELECT k, COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k", ddl(0, "x.csv"));
    assert_eq!(count("", &whole), 0, "a table read whole");
}

/// Nexmark q5 (two window aggregates over the same windows, each in two phases at parallelism
/// 2, and a third over their results) counts as many windows fired at parallelism 2 as on one
/// thread: each plan node's window once, however many of its instances fire it.
#[test]
fn windows_fired_are_counted_once_per_window_aggregate_in_parallel() {
    let q5 = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sql-examples/nexmark/q5.sql")).unwrap();
    let fired = |parallelism: usize| {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        engine.set("nexmark.events", "50000").unwrap();
        let Some(weir_sql::Planned::Query(plan)) = engine.plan(&q5).unwrap().pop() else { panic!("a query") };
        let metrics = Arc::new(Metrics::default());
        let options = weir_engine::RunOptions {
            parallelism: Some(parallelism),
            metrics: Some(Arc::clone(&metrics)),
            ..weir_engine::RunOptions::default()
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = Box::new(weir_connectors::CollectSink::new());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(engine.run_with(&plan, sink, stop, options)).unwrap();
        let instances = metrics.operators().iter().filter(|o| o.name == "WindowAggregate").count();
        (Metrics::get(&metrics.windows_fired), instances, weir_cli::explain_analyze(&plan, &metrics))
    };
    let (one, two) = (fired(1), fired(2));
    assert_eq!((one.1, two.1), (3, 6), "window aggregate instances");
    // 5 s of event time: ~7 windows of each HOP aggregate, and the third's of their results
    assert!(one.0 >= 15, "{}", one.2);
    assert_eq!(two.0, one.0);
    // EXPLAIN ANALYZE shows each HOP aggregate's first phase under it, per split: every bid in,
    // fewer partials out, and those partials are what the window aggregate takes in
    let numbers = |line: &str, what: &str| -> u64 {
        let at = line.find(what).unwrap_or_else(|| panic!("{what} in {line}")) + what.len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let lines: Vec<&str> = two.2.lines().collect();
    let firsts: Vec<usize> =
        (0..lines.len()).filter(|i| lines[*i].contains("metrics of its LocalWindowAggregate")).collect();
    assert_eq!(firsts.len(), 2, "{}", two.2);
    for i in firsts {
        let (bids, partials) = (numbers(lines[i], "rows in "), numbers(lines[i], "rows out "));
        assert!(partials > 0 && partials < bids, "{}", lines[i]);
        assert!(lines[i + 1].contains("instance 0: ") && lines[i + 2].contains("instance 1: "), "{}", two.2);
        // the aggregate's own line, just above its instances', takes in those partials
        assert_eq!(numbers(lines[i - 3], "rows in "), partials, "{}", two.2);
        assert!(lines[i - 4].contains("WindowAggregate: window: HOP"), "{}", two.2);
    }
}
