//! A session runs SQL statements one after another and returns their results as Arrow
//! batches: the shell's session, and what the sqllogictest runner and the tests use. It is
//! an [`Engine`] with a runtime to wait on, so statements run exactly as an embedding program
//! runs them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use weir_connectors::CollectSink;
use weir_engine::{Engine, EngineError, RunOptions};
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
    engine: Engine,
    base_dir: Option<PathBuf>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl From<EngineError> for SessionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Sql(e) => SessionError::Sql(e),
            EngineError::Runtime(e) => SessionError::Runtime(e),
            EngineError::Usage(m) => SessionError::Config(m),
        }
    }
}

impl Session {
    /// A session with an empty catalog; relative paths resolve against the working directory.
    pub fn new() -> Self {
        Self { engine: Engine::default(), base_dir: None }
    }

    /// Also look for source files relative to `dir`.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// The engine the session runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Set a session setting (as `SET key = value`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SessionError> {
        Ok(self.engine.set(key, value)?)
    }

    /// A copy of the planner (and through it the catalog) as it is now.
    pub fn planner(&self) -> Planner {
        self.engine.planner()
    }

    /// The settings given so far (`SET`, `--set`), by their stored names, as given.
    pub fn settings(&self) -> BTreeMap<String, String> {
        self.engine.settings().into_iter().collect()
    }

    /// Plan every statement of `sql` (DDL enters the catalog now; nothing runs).
    pub fn plan(&mut self, sql: &str) -> Result<Vec<Planned>, SqlError> {
        match self.engine.plan(sql) {
            Ok(p) => Ok(p),
            Err(EngineError::Sql(e)) => Err(e),
            Err(other) => Err(SqlError::plan(other.to_string())),
        }
    }

    /// [`Session::plan`] on a thread of its own, given up when `stop` is set (Ctrl-C): `None`
    /// then, and the catalog is as it was (planning a huge statement can take long, and
    /// DataFusion's planner cannot be interrupted, so it is left to finish in the background).
    pub fn plan_until(&mut self, sql: &str, stop: &AtomicBool) -> Option<Result<Vec<Planned>, SqlError>> {
        let mut planner = self.engine.planner();
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
                    self.engine.set_planner(planner);
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

    /// How a run of this session is set up: where to look for files (`base_dir`, else the
    /// session's), counting into `metrics`.
    pub fn run_options(&self, base_dir: Option<PathBuf>, metrics: Arc<Metrics>) -> RunOptions {
        RunOptions {
            base_dir: base_dir.or_else(|| self.base_dir.clone()),
            metrics: Some(metrics),
            ..RunOptions::default()
        }
    }

    /// Plan and run every statement of `sql` in order, waiting for each.
    pub fn execute(&mut self, sql: &str) -> Result<Vec<StatementResult>, SessionError> {
        let planned = self.plan(sql)?;
        let mut out = Vec::new();
        for p in planned {
            out.push(match p {
                Planned::CreatedTable(_) | Planned::CreatedView(_) => StatementResult::Done,
                Planned::Set { key, value } => {
                    self.set(&key, &value)?;
                    StatementResult::Done
                }
                Planned::Explain(plan) => {
                    let n = self.engine.typed_settings().parallelism;
                    StatementResult::Explain(self.engine.explain_plan(&plan, n))
                }
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

    fn run(&mut self, plan: &StreamPlan) -> Result<StatementResult, SessionError> {
        let metrics = Arc::new(Metrics::default());
        let options = self.run_options(None, Arc::clone(&metrics));
        self.engine.validate(plan, &options)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let (sink, collected) = match &plan.sink {
            SinkNode::Client => {
                let collector = CollectSink::new();
                (Box::new(collector.clone()) as Box<dyn weir_runtime::Sink>, Some(collector))
            }
            SinkNode::Table(_) => (self.engine.table_sink(plan, &options)?, None),
        };
        // on a runtime of its own, made and dropped where blocking is allowed: a thread of its
        // own when called from async code (a test, an embedding program)
        let run = || -> Result<Arc<Metrics>, SessionError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SessionError::Config(format!("cannot start the runtime: {e}")))?;
            Ok(runtime.block_on(self.engine.run_with(plan, sink, cancel, options))?)
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(run).join())
                .map_err(|_| SessionError::Config("the query's thread failed".into()))??;
        } else {
            run()?;
        }
        Ok(match collected {
            Some(c) => StatementResult::Rows { schema: sink_schema(plan), batches: c.batches(), metrics },
            None => StatementResult::Inserted { metrics },
        })
    }
}
