//! The window aggregate operator on its own, fed batch by batch: when a window fires, what
//! its allowed lateness corrects, what early results emit, and that fired state is freed.
//! (The planner builds the operators, so these tests live beside the workspace, not inside
//! `weir-runtime`, which never depends on the planner.)
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use weir_sql::{Planned, Planner};

use weir_runtime::{build_operators, Message, Metrics, Operator, StreamBatch, WatermarkGenerator};

const SEC: i64 = 1_000_000_000;

/// The operators of `SELECT k, COUNT(*), SUM(v) … GROUP BY TUMBLE(ts, 10 s), k`.
fn operators(metrics: &Arc<Metrics>) -> Vec<Box<dyn Operator>> {
    operators_with(metrics, "")
}

/// The same, after the statements `settings`.
fn operators_with(metrics: &Arc<Metrics>, settings: &str) -> Vec<Box<dyn Operator>> {
    let mut planner = Planner::new();
    let planned = planner
        .plan_script(&format!(
            "CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
             WITH (connector = 'file', path = 'x.csv'); {settings}
             SELECT k, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k;"
        ))
        .unwrap();
    let Some(Planned::Query(plan)) = planned.last() else { panic!("query expected") };
    build_operators(plan, metrics).unwrap()
}

fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1000))),
        ],
    )
    .unwrap()
}

/// Push one source batch (with its watermark) through the operators; return emitted rows
/// as (k, n, total).
fn push(
    ops: &mut [Box<dyn Operator>],
    gen: &mut WatermarkGenerator,
    rows: &[(&str, i64, i64)],
) -> Vec<(String, i64, i64)> {
    push_changes(ops, gen, rows).into_iter().map(|(_, k, n, t)| (k, n, t)).collect()
}

/// The same, with each row's kind.
fn push_changes(
    ops: &mut [Box<dyn Operator>],
    gen: &mut WatermarkGenerator,
    rows: &[(&str, i64, i64)],
) -> Vec<(&'static str, String, i64, i64)> {
    let b = batch(rows);
    let times = Int64Array::from_iter_values(rows.iter().map(|r| r.2 * SEC));
    let mut msgs = vec![Message::Data(StreamBatch {
        batch: b,
        row_watermarks: Some(Arc::new(gen.observe(&times))),
        kinds: None,
        origin: None,
    })];
    if let Some(w) = gen.advance() {
        msgs.push(Message::Watermark(w));
    }
    for op in ops.iter_mut() {
        let mut next = Vec::new();
        for m in msgs {
            match m {
                Message::Data(b) => op.process_batch(b, &mut next).unwrap(),
                Message::Watermark(w) => op.on_watermark(w, &mut next).unwrap(),
                Message::EndOfStream => next.push(Message::EndOfStream),
                Message::Dropped(_) => {}
            }
        }
        msgs = next;
    }
    let mut out = Vec::new();
    for m in msgs {
        if let Message::Data(sb) = m {
            let b = &sb.batch;
            for i in 0..b.num_rows() {
                out.push((
                    sb.kind(i).as_str(),
                    b.column(0).as_string::<i32>().value(i).to_string(),
                    b.column(1).as_primitive::<Int64Type>().value(i),
                    b.column(2).as_primitive::<Int64Type>().value(i),
                ));
            }
        }
    }
    out
}

#[test]
fn a_window_fires_exactly_when_the_watermark_reaches_its_end_and_frees_its_state() {
    let metrics = Arc::new(Metrics::default());
    let mut ops = operators(&metrics);
    let mut gen = WatermarkGenerator::new(0);
    assert!(push(&mut ops, &mut gen, &[("a", 1, 1), ("b", 2, 5), ("a", 3, 9)]).is_empty());
    assert_eq!(Metrics::get(&metrics.open_windows), 1);
    // 9.999 s: the watermark is below the end (10 s), nothing fires
    assert!(push(&mut ops, &mut gen, &[("a", 4, 8)]).is_empty());
    // 10 s reaches the end of [0 s, 10 s): it fires once, with every accepted row
    let fired = push(&mut ops, &mut gen, &[("c", 5, 10)]);
    assert_eq!(fired, vec![("a".into(), 3, 8), ("b".into(), 1, 2)]);
    assert_eq!(Metrics::get(&metrics.open_windows), 1, "only [10 s, 20 s) is open now");
    // a row for the closed window is late: counted, not emitted again
    assert!(push(&mut ops, &mut gen, &[("a", 100, 3)]).is_empty());
    assert_eq!(Metrics::get(&metrics.late_rows), 1);
    let fired = push(&mut ops, &mut gen, &[("c", 6, 25)]);
    assert_eq!(fired, vec![("c".into(), 1, 5)]);
    assert_eq!(Metrics::get(&metrics.windows_fired), 2);
}

fn changes(v: &[(&'static str, &str, i64, i64)]) -> Vec<(&'static str, String, i64, i64)> {
    v.iter().map(|(o, k, n, t)| (*o, k.to_string(), *n, *t)).collect()
}

#[test]
fn a_late_row_within_the_allowed_lateness_corrects_the_fired_window_until_end_plus_lateness() {
    let metrics = Arc::new(Metrics::default());
    let mut ops = operators_with(&metrics, "SET window.allowed_lateness = '5 s';");
    let mut gen = WatermarkGenerator::new(0);
    assert!(push_changes(&mut ops, &mut gen, &[("a", 1, 1), ("b", 2, 5)]).is_empty());
    // the window fires at its end, as without lateness
    assert_eq!(push_changes(&mut ops, &mut gen, &[("c", 5, 10)]), changes(&[("+I", "a", 1, 1), ("+I", "b", 1, 2)]));
    // 4 s after the end, a row for it corrects one key and adds another
    let fixed = push_changes(&mut ops, &mut gen, &[("a", 10, 14), ("a", 3, 2), ("d", 4, 9)]);
    assert_eq!(fixed, changes(&[("-U", "a", 1, 1), ("+U", "a", 2, 4), ("+I", "d", 1, 4)]));
    assert_eq!(Metrics::get(&metrics.late_rows), 0);
    // at 15 s (end + lateness) the window is gone: the row is late, counted, not emitted
    let fired = push_changes(&mut ops, &mut gen, &[("a", 20, 15), ("a", 6, 3)]);
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(Metrics::get(&metrics.late_rows), 1);
}

#[test]
fn early_results_emit_each_batch_s_changes_then_nothing_more_at_the_end() {
    let metrics = Arc::new(Metrics::default());
    let mut ops = operators_with(&metrics, "SET window.emit_early = 'update';");
    let mut gen = WatermarkGenerator::new(0);
    assert_eq!(
        push_changes(&mut ops, &mut gen, &[("a", 1, 1), ("b", 2, 5)]),
        changes(&[("+I", "a", 1, 1), ("+I", "b", 1, 2)])
    );
    assert_eq!(push_changes(&mut ops, &mut gen, &[("a", 3, 6)]), changes(&[("-U", "a", 1, 1), ("+U", "a", 2, 4)]));
    // closing the window emits nothing new: the last early result was final
    assert_eq!(push_changes(&mut ops, &mut gen, &[("c", 4, 12)]), changes(&[("+I", "c", 1, 4)]));
    assert!(push_changes(&mut ops, &mut gen, &[("a", 5, 9)]).is_empty(), "late without lateness");
    assert_eq!(Metrics::get(&metrics.late_rows), 1);
}
