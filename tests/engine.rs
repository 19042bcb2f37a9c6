//! The embedding API end to end: a query as a stream of changes (rows with their kinds,
//! watermarks), dropping the stream stops the query, channel sinks, user functions (scalar
//! and aggregate) inside window aggregates, and a user connector whose query crashes and
//! resumes from the engine's checkpoints with the same output as an uninterrupted run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udaf, create_udf, Accumulator, ColumnarValue, Volatility};
use futures::StreamExt;
use weir_engine::{
    Change, CheckpointSettings, Connector, ConnectorContext, ConnectorSpec, Engine, EngineConfig, RowKind,
    RuntimeResult, Source, TableDef,
};

/// Rows `i = 0..n`: key `k{i % 3}`, value `i`, event time `i × 100 ms`.
fn rows(range: std::ops::Range<i64>) -> RecordBatch {
    let k = StringArray::from_iter_values(range.clone().map(|i| format!("k{}", i % 3)));
    let v = Int64Array::from_iter_values(range.clone());
    let ts = TimestampMillisecondArray::from_iter_values(range.map(|i| i * 100));
    RecordBatch::try_from_iter([
        ("k", Arc::new(k) as ArrayRef),
        ("v", Arc::new(v) as ArrayRef),
        ("ts", Arc::new(ts) as ArrayRef),
    ])
    .unwrap()
}

const TABLE: &str = "CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)";

/// An engine whose table `t` is fed `batches` over a channel that is then closed.
async fn engine_with(batches: Vec<RecordBatch>) -> Engine {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.sql(&format!("{TABLE} WITH (connector = 'channel')")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(batches.len() + 1);
    for b in batches {
        tx.send(b).await.unwrap();
    }
    engine.register_source("t", rx);
    engine
}

/// `double(x) = 2x`.
fn double() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "double",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let out: Int64Array = arrays[0].as_primitive::<Int64Type>().iter().map(|v| v.map(|v| 2 * v)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `sumsq(x)`: the sum of squares, an aggregate with its own accumulator and state.
#[derive(Debug, Default)]
struct SumSquares(i64);

impl Accumulator for SumSquares {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.0 += values[0].as_primitive::<Int64Type>().iter().flatten().map(|v| v * v).sum::<i64>();
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.0 += states[0].as_primitive::<Int64Type>().iter().flatten().sum::<i64>();
        Ok(())
    }
    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(Some(self.0))])
    }
    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.0)))
    }
    fn size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

fn sumsq() -> datafusion::logical_expr::AggregateUDF {
    create_udaf(
        "sumsq",
        vec![DataType::Int64],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(SumSquares::default()))),
        Arc::new(vec![DataType::Int64]),
    )
}

#[tokio::test]
async fn a_windowed_query_streams_its_rows_and_watermarks_with_user_functions_inside() {
    let engine = engine_with((0..10).map(|b| rows(b * 20..b * 20 + 20)).collect()).await;
    engine.register_udf(double());
    engine.register_udaf(sumsq());
    let mut changes = engine
        .query(
            "SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, SUM(double(v)) AS d, sumsq(v) AS s, COUNT(*) AS n
             FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
        )
        .await
        .unwrap();
    assert_eq!(changes.schema().fields().len(), 5);
    let (mut d, mut s, mut n, mut watermarks, mut last) = (0, 0, 0, 0, i64::MIN);
    while let Some(change) = changes.next().await {
        match change.unwrap() {
            Change::Rows { batch, kinds } => {
                assert!(kinds.iter().all(|k| *k == RowKind::Insert), "a window's final rows are inserts");
                d += batch.column(2).as_primitive::<Int64Type>().values().iter().sum::<i64>();
                s += batch.column(3).as_primitive::<Int64Type>().values().iter().sum::<i64>();
                n += batch.column(4).as_primitive::<Int64Type>().values().iter().sum::<i64>();
            }
            Change::Watermark(w) => {
                assert!(w > last, "watermarks only advance");
                (last, watermarks) = (w, watermarks + 1);
            }
        }
    }
    let expected_sq: i64 = (0..200i64).map(|i| i * i).sum();
    assert_eq!((d, s, n), (2 * (0..200i64).sum::<i64>(), expected_sq, 200));
    assert!(watermarks > 1, "the watermark is reported as it advances");
}

#[tokio::test]
async fn an_updating_query_retracts_what_it_replaces() {
    let engine = engine_with(vec![rows(0..6), rows(6..12)]).await;
    let mut changes = engine.query("SELECT k, COUNT(*) AS n FROM t GROUP BY k").await.unwrap();
    let mut table: BTreeMap<String, i64> = BTreeMap::new();
    let mut kinds_seen = Vec::new();
    while let Some(change) = changes.next().await {
        if let Change::Rows { batch, kinds } = change.unwrap() {
            for (i, kind) in kinds.iter().enumerate() {
                let key = batch.column(0).as_string::<i32>().value(i).to_string();
                let n = batch.column(1).as_primitive::<Int64Type>().value(i);
                match kind {
                    RowKind::Insert | RowKind::UpdateAfter => assert!(table.insert(key, n).is_none()),
                    RowKind::UpdateBefore | RowKind::Delete => assert_eq!(table.remove(&key), Some(n)),
                }
                kinds_seen.push(*kind);
            }
        }
    }
    assert_eq!(table, BTreeMap::from([("k0".into(), 4), ("k1".into(), 4), ("k2".into(), 4)]));
    assert!(kinds_seen.contains(&RowKind::UpdateBefore), "{kinds_seen:?}");
}

#[tokio::test]
async fn dropping_the_stream_stops_the_query() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine
        .sql("CREATE TABLE g (id BIGINT) WITH (connector = 'datagen', 'rows-per-second' = '2000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1')")
        .await
        .unwrap();
    let mut changes = engine.query("SELECT id FROM g").await.unwrap();
    let metrics = Arc::clone(changes.metrics());
    assert!(matches!(changes.next().await, Some(Ok(Change::Rows { .. }))));
    drop(changes);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let read = metrics.rows_in.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(metrics.rows_in.load(Ordering::Relaxed), read, "the generator is no longer read");
}

#[tokio::test]
async fn insert_into_a_channel_table_sends_the_rows_to_the_program() {
    let engine = engine_with(vec![rows(0..30)]).await;
    engine.sql("CREATE TABLE big (k VARCHAR, v BIGINT) WITH (connector = 'channel')").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    engine.register_sink("big", tx);
    engine.sql("INSERT INTO big SELECT k, v FROM t WHERE v >= 20").await.unwrap();
    let mut got = 0;
    while let Ok(batch) = rx.try_recv() {
        got += batch.num_rows();
    }
    assert_eq!(got, 10);
}

/// A connector of this test: `rows` makes the rows of [`rows`], ten per batch, up to
/// `'count'`, and can be read again from a position; `crash_after` makes its next source fail
/// after that many batches (once).
struct RowsConnector {
    crash_after: Arc<AtomicUsize>,
}

impl Connector for RowsConnector {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "rows",
            doc: "test rows",
            source: true,
            sink: false,
            loose_keys: false,
            metadata: vec![],
            options: vec![weir_engine::OptionSpec::new("count", weir_engine::OptionType::Positive, "rows").required()],
        }
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, _: &ConnectorContext) -> RuntimeResult<Box<dyn Source>> {
        let count = table.option("count").and_then(|c| c.parse().ok()).unwrap_or(0);
        let crash = self.crash_after.swap(usize::MAX, Ordering::SeqCst);
        Ok(Box::new(RowsSource { schema, next: 0, count, crash }))
    }
}

struct RowsSource {
    schema: SchemaRef,
    next: i64,
    count: i64,
    crash: usize,
}

impl Source for RowsSource {
    fn next_batch(&mut self) -> RuntimeResult<Option<RecordBatch>> {
        if self.crash == 0 {
            return Err(weir_engine::RuntimeError::Source("crash".into()));
        }
        self.crash = self.crash.saturating_sub(1);
        if self.next >= self.count {
            return Ok(None);
        }
        let batch = rows(self.next..(self.next + 10).min(self.count));
        self.next += 10;
        let columns: Vec<usize> =
            self.schema.fields().iter().map(|f| batch.schema().index_of(f.name()).unwrap()).collect();
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), batch.project(&columns)?.columns().to_vec())?))
    }

    fn position(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!(self.next))
    }

    fn seek(&mut self, position: &serde_json::Value) -> RuntimeResult<()> {
        self.next = position.as_i64().unwrap_or(0);
        Ok(())
    }
}

/// The data lines of every committed part file under `dir`, as a multiset.
fn published(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")) {
            for line in std::fs::read_to_string(&p).unwrap().lines().skip(1) {
                *out.entry(line.to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Run the windowed INSERT over `rows` with checkpoints in `checkpoints`, its source crashing
/// after `crash` batches; returns whether it finished.
async fn insert(checkpoints: &std::path::Path, out: &std::path::Path, crash: usize) -> bool {
    let mut settings = CheckpointSettings::new(checkpoints.to_str().unwrap());
    settings.interval = Duration::ZERO;
    let engine = Engine::new(EngineConfig { checkpoints: Some(settings), ..EngineConfig::default() }).unwrap();
    engine.register_connector(Arc::new(RowsConnector { crash_after: Arc::new(AtomicUsize::new(crash)) }));
    engine.register_udaf(sumsq());
    let ddl = format!(
        "{TABLE} WITH (connector = 'rows', count = '200');
         CREATE TABLE out (k VARCHAR, w TIMESTAMP(3), s BIGINT, n BIGINT)
           WITH (connector = 'file', path = '{}', format = 'csv');",
        out.display()
    );
    engine.sql(&ddl).await.unwrap();
    let result = engine
        .sql(
            "INSERT INTO out SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND), sumsq(v), COUNT(*)
             FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k",
        )
        .await;
    match result {
        Ok(()) => true,
        Err(e) if e.to_string().contains("crash") => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_user_connector_crashes_and_resumes_from_the_engines_checkpoints_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    assert!(insert(&dir.path().join("ck-plain"), &dir.path().join("plain"), usize::MAX).await);
    let expected = published(&dir.path().join("plain"));
    assert_eq!(expected.values().sum::<usize>(), 60, "20 windows of 3 keys: {expected:?}");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    assert!(!insert(&ck, &out, 7).await, "the first run crashes");
    let partial = published(&out).values().sum::<usize>();
    assert!(partial > 0 && partial < 60, "its checkpoints published some windows: {partial}");
    assert!(!insert(&ck, &out, 5).await, "so does the second, from the first's checkpoint");
    assert!(insert(&ck, &out, usize::MAX).await);
    assert_eq!(published(&out), expected, "each window once, with the aggregate's state restored");
}

#[tokio::test]
async fn a_refused_insert_leaves_its_output_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.csv");
    std::fs::write(&path, "k,v\na,1\n").unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let p = path.display();
    engine
        .sql(&format!(
            "CREATE TABLE src (k VARCHAR, v BIGINT) WITH (connector = 'file', path = '{p}', format = 'csv');
             CREATE TABLE dst (k VARCHAR, v BIGINT) WITH (connector = 'file', path = '{p}', format = 'csv')"
        ))
        .await
        .unwrap();
    let err = engine.sql("INSERT INTO dst SELECT k, v FROM src").await.unwrap_err();
    assert!(err.to_string().contains("would overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "k,v\na,1\n", "checked before the file is opened");
}

#[tokio::test]
async fn dropping_the_stream_stops_a_query_whose_program_is_quiet() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.sql(&format!("{TABLE} WITH (connector = 'channel')")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    engine.register_source("t", rx);
    tx.send(rows(0..10)).await.unwrap();
    let mut changes = engine.query("SELECT k, v FROM t").await.unwrap();
    assert!(matches!(changes.next().await, Some(Ok(Change::Rows { .. }))));
    drop(changes);
    // the program keeps its sender and sends nothing: the query still lets go of the channel
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while !tx.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    closed.await.expect("the cancelled query dropped its receiver");
}

#[tokio::test]
async fn a_channel_table_is_refused_with_checkpoints_and_stays_registered() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig::default().with_checkpoints(dir.path().to_str().unwrap())).unwrap();
    engine.sql(&format!("{TABLE} WITH (connector = 'channel')")).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    engine.register_source("t", rx);
    let err = engine.query("SELECT k, v FROM t").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("cannot be checkpointed yet"), "{err}");
    assert!(!tx.is_closed(), "the receiver is still registered");
}
