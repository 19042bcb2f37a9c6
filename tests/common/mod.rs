//! Helpers shared by the property tests: random out-of-order rows, the `feed` connector that
//! hands them to a query cut into batches at given points, and runners for weir (through the
//! `Engine`, as every front end runs queries) and for DataFusion batch queries.

#![allow(dead_code)]

pub mod job;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use weir_connectors::CollectSink;
use weir_engine::{Connector, ConnectorContext, ConnectorSpec, Engine, EngineConfig, RunOptions, TableDef};
use weir_runtime::{RuntimeError, Sink, Source};
use weir_sql::{Planned, StreamPlan};

#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub site: String,
    pub value: i64,
    pub reading: Option<f64>,
    pub ts: i64,
}

pub const BASE_MS: i64 = 1_700_000_000_000;

pub fn rows_strategy() -> impl Strategy<Value = Vec<Row>> {
    // a coarse time granularity makes `window_end == watermark` (late, by definition) common
    (0usize..250, 1i64..400, 0i64..4000, 1usize..5, prop::sample::select(vec![1i64, 250])).prop_flat_map(
        |(n, step, disorder, keys, grain)| {
            prop::collection::vec(
                (
                    0..keys,
                    0..3usize,
                    -50i64..1000,
                    prop::option::weighted(0.9, -20i32..200),
                    0..=disorder,
                    prop::bool::weighted(0.05),
                ),
                n,
            )
            .prop_map(move |cols| {
                cols.into_iter()
                    .enumerate()
                    .map(|(i, (k, s, v, r, jitter, very_late))| Row {
                        key: format!("k{k}"),
                        site: format!("site{s}"),
                        value: v,
                        reading: r.map(|r| r as f64 / 4.0),
                        ts: BASE_MS
                            + (i as i64 * step - jitter - if very_late { 30_000 } else { 0 }).div_euclid(grain) * grain,
                    })
                    .collect()
            })
        },
    )
}

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("site", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("r", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

pub fn to_batch(rows: &[Row]) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key.clone()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.site.clone()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.value))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.reading))),
        Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.ts))),
    ];
    RecordBatch::try_new(schema(), cols).expect("valid batch")
}

pub fn ddl(delay_ms: i64, path: &str) -> String {
    format!(
        "CREATE TABLE t (k VARCHAR, site VARCHAR, v BIGINT, r DOUBLE, ts TIMESTAMP(3),
             WATERMARK FOR ts AS ts - INTERVAL '{delay_ms}' MILLISECOND)
         WITH (connector = 'file', path = '{path}', format = 'csv');"
    )
}

pub fn format_rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let cells: Vec<String> = b
                .columns()
                .iter()
                .map(|c| {
                    let f = ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable");
                    let text = f.value(i).to_string();
                    match c.data_type() {
                        // floats compared to rounding: 10 significant digits
                        DataType::Float64 | DataType::Float32 => match text.parse::<f64>() {
                            Ok(x) => format!("{x:.9e}"),
                            Err(_) => text,
                        },
                        _ => text,
                    }
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// The table `t` of the property tests, fed by the `feed` connector.
pub fn feed_ddl(delay_ms: i64) -> String {
    format!(
        "CREATE TABLE t (k VARCHAR, site VARCHAR, v BIGINT, r DOUBLE, ts TIMESTAMP(3),
             WATERMARK FOR ts AS ts - INTERVAL '{delay_ms}' MILLISECOND)
         WITH (connector = 'feed');"
    )
}

/// One table's input: its rows (every column of [`schema`]) in batches, and after how many
/// batches the first source opened for it fails with "crash" (`None`: never).
pub struct FeedTable {
    pub batches: Vec<RecordBatch>,
    pub crash: Option<usize>,
    /// A count of the checkpoints committed (the tests' sink counts them): when it is given,
    /// the crash waits until one was committed since the source opened (nothing to read
    /// meanwhile), so that a restart resumes from a checkpoint this run took rather than from
    /// the one before (a parallel run's sources read on before the sink's first checkpoint
    /// completes). It waits a few seconds at most.
    pub crash_after_commit: Option<Arc<AtomicUsize>>,
}

impl FeedTable {
    /// `rows` cut at `cuts`.
    pub fn new(rows: &[Row], cuts: &[usize]) -> Self {
        Self {
            batches: batches(rows, cuts).iter().map(|b| to_batch(b)).collect(),
            crash: None,
            crash_after_commit: None,
        }
    }
}

/// The `feed` connector: the tests' rows, by table name, read again from any batch (so queries
/// over them checkpoint), and possibly crashing. Its tables end: without a watermark, one is a
/// lookup table.
#[derive(Default)]
pub struct Feed {
    pub tables: Mutex<HashMap<String, FeedTable>>,
}

impl Feed {
    pub fn with(tables: Vec<(&str, FeedTable)>) -> Arc<Self> {
        Arc::new(Self { tables: Mutex::new(tables.into_iter().map(|(n, t)| (n.to_string(), t)).collect()) })
    }
}

impl Connector for Feed {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "feed",
            doc: "test rows",
            source: true,
            sink: false,
            loose_keys: false,
            options: vec![],
            metadata: vec![],
        }
    }

    fn bounded(&self, _: &TableDef) -> bool {
        true
    }

    fn open_source(
        &self,
        table: &TableDef,
        schema: datafusion::arrow::datatypes::SchemaRef,
        _: &ConnectorContext,
    ) -> weir_runtime::Result<Box<dyn Source>> {
        let mut tables = self.tables.lock().unwrap();
        let Some(feed) = tables.get_mut(&table.name) else {
            return Err(RuntimeError::Source(format!("no rows for table '{}'", table.name)));
        };
        let full = self::schema();
        let columns: Vec<usize> = schema.fields().iter().map(|f| full.index_of(f.name()).unwrap()).collect();
        let batches = feed
            .batches
            .iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.project(&columns).unwrap().columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let crash = feed.crash.take();
        let commits = feed.crash_after_commit.clone().filter(|_| crash.is_some()).map(|c| {
            let opened = c.load(Ordering::SeqCst);
            (c, opened)
        });
        Ok(Box::new(FeedSource { batches, schema, next: 0, crash, commits, waiting: None }))
    }
}

struct FeedSource {
    batches: Vec<RecordBatch>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    next: usize,
    crash: Option<usize>,
    /// The sink's count of committed checkpoints, and its value when this source opened.
    commits: Option<(Arc<AtomicUsize>, usize)>,
    /// Since when the crash waits for a checkpoint.
    waiting: Option<std::time::Instant>,
}

/// The longest a crash waits for a checkpoint.
const CRASH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Source for FeedSource {
    fn next_batch(&mut self) -> weir_runtime::Result<Option<RecordBatch>> {
        match &mut self.crash {
            Some(0) => {
                let committed = self.commits.as_ref().is_none_or(|(c, opened)| c.load(Ordering::SeqCst) > *opened);
                let since = *self.waiting.get_or_insert_with(std::time::Instant::now);
                if committed || since.elapsed() >= CRASH_WAIT {
                    return Err(RuntimeError::Source("crash".into()));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                return Ok(Some(RecordBatch::new_empty(Arc::clone(&self.schema))));
            }
            Some(n) => *n -= 1,
            None => {}
        }
        let batch = self.batches.get(self.next).cloned();
        self.next += 1;
        Ok(batch)
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!(self.next))
    }

    fn seek(&mut self, position: &serde_json::Value) -> weir_runtime::Result<()> {
        self.next = position.as_u64().unwrap_or_default() as usize;
        Ok(())
    }
}

/// An engine whose `feed` connector serves `feed`.
pub fn feed_engine(feed: Arc<Feed>) -> Engine {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.register_connector(feed);
    engine
}

/// The last query of `script`, planned by `engine`.
pub fn last_query(engine: &Engine, script: &str) -> StreamPlan {
    match engine.plan(script).expect("plans").pop() {
        Some(Planned::Query(plan)) => plan,
        _ => panic!("expected a query"),
    }
}

/// Run `plan` on `engine` into `sink`, as every front end does, waiting for it.
pub fn run_on(engine: &Engine, plan: &StreamPlan, sink: Box<dyn Sink>, options: RunOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(engine.run_with(plan, sink, Arc::new(AtomicBool::new(false)), options))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn run_weir(rows: &[Row], delay_ms: i64, sql: &str, cuts: Vec<usize>) -> Vec<String> {
    run_script(rows, &format!("{} {sql}", feed_ddl(delay_ms)), cuts).0
}

/// Plans `script` (whose source is `t`, fed from `rows` cut at `cuts`) and runs its last
/// query; returns its rows and, if the source names a `'late_rows'` table (declared with the
/// `channel` connector), the dropped rows.
pub fn run_script(rows: &[Row], script: &str, cuts: Vec<usize>) -> (Vec<String>, Vec<String>) {
    run_script_at(rows, script, cuts, None)
}

/// [`run_script`] at `parallelism` (`None`: the default, the number of cores).
pub fn run_script_at(
    rows: &[Row],
    script: &str,
    cuts: Vec<usize>,
    parallelism: Option<usize>,
) -> (Vec<String>, Vec<String>) {
    let engine = feed_engine(Feed::with(vec![("t", FeedTable::new(rows, &cuts))]));
    let plan = last_query(&engine, script);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 20);
    if let Some(late) = &plan.late_rows {
        engine.register_sink(&late.name, tx);
    }
    let sink = CollectSink::new();
    run_on(&engine, &plan, Box::new(sink.clone()), RunOptions { parallelism, ..RunOptions::default() }).expect("runs");
    let mut late = Vec::new();
    while let Ok(batch) = rx.try_recv() {
        late.push(batch);
    }
    (format_rows(&sink.batches()), format_rows(&late))
}

/// Replay a changelog (`op|col|col…` lines) into the multiset of rows it describes; a
/// retraction of a row that is not there is an error.
pub fn replay(changelog: &[String]) -> Result<Vec<String>, String> {
    let mut table: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (i, line) in changelog.iter().enumerate() {
        let (op, row) = line.split_once('|').unwrap_or((line.as_str(), ""));
        match op {
            "+I" | "+U" => *table.entry(row.to_string()).or_insert(0) += 1,
            "-U" | "-D" => match table.get_mut(row) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    table.remove(row);
                }
                None => return Err(format!("change {i} ({line}) retracts a row that is not in the result")),
            },
            other => return Err(format!("change {i} has op '{other}'")),
        }
    }
    Ok(table.into_iter().flat_map(|(row, n)| std::iter::repeat_n(row, n)).collect())
}

pub fn run_datafusion(rows: &[Row], sql: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema(), vec![vec![to_batch(rows)]]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        let batches = ctx.sql(sql).await.expect("plans").collect().await.expect("runs");
        format_rows(&batches)
    })
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Rows the streaming engine must accept: those whose window has not closed under the
/// watermark in force when they arrive.
pub fn accepted(rows: &[Row], delay_ms: i64, size_ms: i64) -> Vec<Row> {
    let mut max = i64::MIN;
    let mut out = Vec::new();
    for r in rows {
        let wm = if max == i64::MIN { i64::MIN } else { max - delay_ms };
        let end = r.ts - r.ts.rem_euclid(size_ms) + size_ms;
        if end > wm {
            out.push(r.clone());
        }
        max = max.max(r.ts);
    }
    out
}

/// Every (row, window) pair the streaming engine must accept: the windows containing the row
/// that had not ended `lateness_ms` before the watermark in force when it arrived.
pub fn accepted_pairs(
    rows: &[Row],
    delay_ms: i64,
    lateness_ms: i64,
    windows_of: impl Fn(i64) -> Vec<(i64, i64)>,
) -> Vec<(Row, i64, i64)> {
    let mut max = i64::MIN;
    let mut out = Vec::new();
    for r in rows {
        let wm = if max == i64::MIN { i64::MIN } else { max - delay_ms };
        for (s, e) in windows_of(r.ts) {
            if e + lateness_ms > wm {
                out.push((r.clone(), s, e));
            }
        }
        max = max.max(r.ts);
    }
    out
}

/// Windows `[k·slide, k·slide + size)` containing `t` (brute force).
pub fn hop_windows(t: i64, slide: i64, size: i64) -> Vec<(i64, i64)> {
    let mut k = (t - size).div_euclid(slide);
    let mut out = Vec::new();
    while k * slide <= t {
        if t < k * slide + size {
            out.push((k * slide, k * slide + size));
        }
        k += 1;
    }
    out
}

/// Windows `[k·max, k·max + j·step)` containing `t`.
pub fn cumulate_windows(t: i64, step: i64, max: i64) -> Vec<(i64, i64)> {
    let base = t - t.rem_euclid(max);
    (1..=max / step).map(|j| (base, base + j * step)).filter(|w| t < w.1).collect()
}

/// The rows paired with their windows as table `tw` (the columns of `t` plus `ws`, `we`), and
/// `sql` run over it as a batch query.
pub fn run_datafusion_pairs(pairs: &[(Row, i64, i64)], sql: &str) -> Vec<String> {
    let rows: Vec<Row> = pairs.iter().map(|p| p.0.clone()).collect();
    let base = to_batch(&rows);
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("ws", DataType::Timestamp(TimeUnit::Millisecond, None), false));
    fields.push(Field::new("we", DataType::Timestamp(TimeUnit::Millisecond, None), false));
    let mut cols = base.columns().to_vec();
    cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(pairs.iter().map(|p| p.1))));
    cols.push(Arc::new(TimestampMillisecondArray::from_iter_values(pairs.iter().map(|p| p.2))));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("valid batch");
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new();
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("table");
        ctx.register_table("tw", Arc::new(table)).expect("register");
        let batches = ctx.sql(sql).await.expect("plans").collect().await.expect("runs");
        format_rows(&batches)
    })
}

/// Session windows, simulated row by row: the accepted rows with the bounds of the session each
/// one ends up in. Before a row, sessions whose end + `lateness` the row's watermark has
/// reached close; the row's window `[t, t + gap)` merges with every open session of its key it
/// overlaps or touches (as in Flink), or starts a new one unless it ended `lateness` or more before the watermark (late).
pub fn session_pairs(rows: &[Row], delay_ms: i64, gap: i64, keyed: bool, lateness: i64) -> Vec<(Row, i64, i64)> {
    struct Open {
        key: String,
        start: i64,
        end: i64,
        rows: Vec<Row>,
    }
    let mut max = i64::MIN;
    let mut open: Vec<Open> = Vec::new();
    let mut out = Vec::new();
    let close = |s: Open, out: &mut Vec<(Row, i64, i64)>| {
        for r in s.rows {
            out.push((r, s.start, s.end));
        }
    };
    for r in rows {
        let wm = if max == i64::MIN { i64::MIN } else { max - delay_ms };
        let (closed, still): (Vec<Open>, Vec<Open>) = open.into_iter().partition(|s| s.end + lateness <= wm);
        open = still;
        for s in closed {
            close(s, &mut out);
        }
        let key = if keyed { r.key.clone() } else { String::new() };
        let (lo, hi) = (r.ts, r.ts + gap);
        let (mut touching, rest): (Vec<Open>, Vec<Open>) =
            open.into_iter().partition(|s| s.key == key && s.start <= hi && lo <= s.end);
        open = rest;
        if touching.is_empty() && hi + lateness > wm {
            touching.push(Open { key: key.clone(), start: lo, end: hi, rows: Vec::new() });
        }
        if !touching.is_empty() {
            let mut merged = Open { key, start: lo, end: hi, rows: vec![r.clone()] };
            for s in touching {
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.rows.extend(s.rows);
            }
            open.push(merged);
        }
        max = max.max(r.ts);
    }
    for s in open {
        close(s, &mut out);
    }
    out
}

/// The rows of an input cut into batches at `cuts`.
pub fn batches(rows: &[Row], cuts: &[usize]) -> Vec<Vec<Row>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&rows.len())) {
        let c = c.min(rows.len());
        if c > start {
            out.push(rows[start..c].to_vec());
            start = c;
        }
    }
    out
}
