//! A session runs SQL statements in process and returns their results as Arrow batches:
//! what the sqllogictest runner and the tests use, and the simplest way to embed weir.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use weir_connectors::{build_pipeline, open_sink, validate, CollectSink, ConnectorContext, OutputFormat};
use weir_runtime::{sink_schema, Metrics, RuntimeError};
use weir_sql::{Planned, Planner, SinkNode, SqlError, StreamPlan};

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Bad SQL (syntax, names, types, unsupported constructs).
    #[error("{0}")]
    Sql(#[from] SqlError),
    /// Bad connector options.
    #[error("{0}")]
    Config(String),
    /// A failure while running (bad data, I/O).
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

/// The result of one statement.
#[derive(Debug)]
pub enum StatementResult {
    /// DDL or SET: nothing to show.
    Done,
    /// A query's rows, with the pipeline's counters.
    Rows {
        /// Output schema.
        schema: SchemaRef,
        /// Result batches in emission order.
        batches: Vec<RecordBatch>,
        /// Rows in/out, late rows, …
        metrics: Arc<Metrics>,
    },
    /// `INSERT INTO`: rows were written to the sink.
    Inserted {
        /// Rows in/out, late rows, …
        metrics: Arc<Metrics>,
    },
    /// `EXPLAIN`: the plan as text.
    Explain(String),
}

/// Statements sharing a catalog and settings.
pub struct Session {
    planner: Planner,
    settings: BTreeMap<String, String>,
    base_dir: Option<PathBuf>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session with an empty catalog; relative paths resolve against the working directory.
    pub fn new() -> Self {
        Self { planner: crate::planner(), settings: BTreeMap::new(), base_dir: None }
    }

    /// Also look for source files relative to `dir`.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Set a session setting (as `SET key = value`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SessionError> {
        crate::apply_setting(&mut self.settings, key, value).map_err(SessionError::Sql)?;
        self.planner.set(key, value).map_err(SessionError::Sql)
    }

    /// The planner (and through it the catalog).
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The settings given so far (`SET`, `--set`), by their stored names.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// Plan every statement of `sql` (DDL enters the catalog now; nothing runs).
    pub fn plan(&mut self, sql: &str) -> Result<Vec<Planned>, SqlError> {
        self.planner.plan_script(sql)
    }

    /// [`Session::plan`] on a thread of its own, given up when `stop` is set (Ctrl-C): `None`
    /// then, and the catalog is as it was (planning a huge statement can take long, and
    /// DataFusion's planner cannot be interrupted, so it is left to finish in the background).
    pub fn plan_until(&mut self, sql: &str, stop: &AtomicBool) -> Option<Result<Vec<Planned>, SqlError>> {
        let mut planner = self.planner.clone();
        let text = sql.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("weir-plan".into()).stack_size(64 << 20).spawn(move || {
            let planned = planner.plan_script(&text);
            let _ = tx.send((planner, planned));
        });
        if spawned.is_err() {
            return Some(self.plan(sql));
        }
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok((planner, planned)) => {
                    self.planner = planner;
                    return Some(planned);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if stop.load(std::sync::atomic::Ordering::Relaxed) => {
                    return None
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err(SqlError::plan("the planner stopped without an answer")));
                }
            }
        }
    }

    /// What the connectors of a query need: the settings, and where to look for files
    /// (`base_dir`, else the session's).
    pub fn connector_context(&self, base_dir: Option<PathBuf>) -> ConnectorContext {
        crate::connector_context(&self.settings, base_dir.or_else(|| self.base_dir.clone()))
    }

    /// Plan and run every statement of `sql` in order, on the calling thread.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<StatementResult>, SessionError> {
        let planned = self.planner.plan_script(sql)?;
        let mut out = Vec::new();
        for p in planned {
            out.push(match p {
                Planned::CreatedTable(_) => StatementResult::Done,
                Planned::Set { key, value } => {
                    self.set(&key, &value)?;
                    StatementResult::Done
                }
                Planned::Explain(plan) => StatementResult::Explain(plan.to_string()),
                Planned::ShowConnectors(specs) => {
                    let batch = crate::connectors::batch(&specs).map_err(|e| SessionError::Runtime(e.into()))?;
                    StatementResult::Rows {
                        schema: batch.schema(),
                        batches: vec![batch],
                        metrics: Arc::new(Metrics::default()),
                    }
                }
                Planned::ExplainAnalyze(plan) => {
                    let metrics = match self.run(&plan)? {
                        StatementResult::Rows { metrics, .. } | StatementResult::Inserted { metrics } => metrics,
                        _ => return Err(SessionError::Config("EXPLAIN ANALYZE ran no query".into())),
                    };
                    StatementResult::Explain(crate::explain_analyze(&plan, &metrics))
                }
                Planned::Query(plan) | Planned::Insert(plan) => self.run(&plan)?,
            });
        }
        Ok(out)
    }

    fn run(&self, plan: &StreamPlan) -> Result<StatementResult, SessionError> {
        let ctx = self.connector_context(None);
        let metrics = Arc::clone(&ctx.metrics);
        validate(plan, &ctx).map_err(SessionError::Config)?;
        let cancel = AtomicBool::new(false);
        match &plan.sink {
            SinkNode::Client => {
                let collector = CollectSink::new();
                build_pipeline(plan, Box::new(collector.clone()), &ctx)?.run_blocking(&cancel)?;
                Ok(StatementResult::Rows { schema: sink_schema(plan), batches: collector.batches(), metrics })
            }
            SinkNode::Table(_) => {
                let sink = open_sink(plan, OutputFormat::Csv, &ctx)?;
                build_pipeline(plan, sink, &ctx)?.run_blocking(&cancel)?;
                Ok(StatementResult::Inserted { metrics })
            }
        }
    }
}
