//! # weir-engine — weir inside a Rust program
//!
//! The way to embed weir, as DataFusion's `SessionContext` is for batch SQL: declare tables
//! and settings with [`Engine::sql`], start a continuous query with [`Engine::query`] and read
//! its changes as a stream, register in-memory sources and sinks, your own connectors and your
//! own functions. The `weir` command, its shell and the project's tests run queries through
//! this same API ([`Engine::run`]).
//!
//! ```no_run
//! use futures::StreamExt;
//! use weir_engine::{Change, Engine, EngineConfig};
//!
//! # async fn demo() -> Result<(), weir_engine::EngineError> {
//! let engine = Engine::new(EngineConfig::default().set("nexmark.events", "100000")?)?;
//! let mut changes = engine
//!     .query(
//!         "SELECT auction, COUNT(*) AS bids FROM bid
//!          GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction",
//!     )
//!     .await?;
//! while let Some(change) = changes.next().await {
//!     if let Change::Rows { batch, .. } = change? {
//!         println!("{} rows", batch.num_rows());
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! What it owns: the session (catalog, settings, functions, connectors), and turning a plan
//! into a running pipeline: sources opened through the connector registry, host channels
//! attached, checkpoints set up, and the pipeline driven on tokio's blocking threads.

#![warn(missing_docs)]

mod config;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion_common::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc::{Receiver, Sender};
use weir_connectors::{
    build_pipeline_in, open_sink_in, planned_layout, validate_in, ChannelSink, ChannelSource, Host, OutputFormat,
};
use weir_runtime::checkpoint::{check_fingerprint, fingerprint, CheckpointConfig, CheckpointStore};
use weir_runtime::{sink_schema, ConnectorRegistry};
use weir_sql::{Planned, Planner, SinkNode, SqlError, StreamPlan};

pub use config::{CheckpointSettings, EngineConfig};
pub use stream::{Change, QueryStream};

/// Arrow, as weir uses it (DataFusion's re-export, so versions agree).
pub use datafusion_common::arrow;
/// DataFusion's function types, for [`Engine::register_udf`] and [`Engine::register_udaf`].
pub use datafusion_expr::{AggregateUDF, ScalarUDF};
pub use weir_plan::duration::parse_duration;
/// Writing a connector: the trait, its context, and what it declares.
pub use weir_plan::{ConnectorError, ConnectorSpec, OptionSpec, OptionType, Settings, TableDef};
pub use weir_runtime::checkpoint::Guarantee;
pub use weir_runtime::{Connector, ConnectorContext, Metrics, Nanos, RowKind, RuntimeError, Sink, Source};

/// The result type of connector code ([`Source::next_batch`], [`Connector::open_source`], …).
pub type RuntimeResult<T> = std::result::Result<T, RuntimeError>;

/// Why a statement or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad SQL: syntax, names, types, options, or a shape weir cannot run. It carries the
    /// position in the SQL text and often a hint.
    #[error("{0}")]
    Sql(#[from] SqlError),
    /// A failure while running: bad input data, a sink that cannot be written, a checkpoint
    /// that cannot be read.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// The API was used in a way it does not support (e.g. a SELECT given to [`Engine::sql`]).
    #[error("{0}")]
    Usage(String),
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A weir session inside a program: tables, settings, functions and connectors, and the
/// queries run over them. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Engine {
    state: Mutex<State>,
}

struct State {
    planner: Planner,
    registry: ConnectorRegistry,
    /// Receivers of `channel` tables, by table name, taken by the next query reading them.
    sources: HashMap<String, ChannelSource>,
    /// Senders of `channel` tables, by table name, for `INSERT INTO`.
    sinks: HashMap<String, Sender<RecordBatch>>,
    config: EngineConfig,
}

impl Engine {
    /// An engine with the built-in connectors (`file`, `stdin`, `datagen`, `nexmark`,
    /// `channel`) and tables (Nexmark's `person`, `auction`, `bid`), and `config`'s settings.
    /// Fails if a setting is refused.
    pub fn new(config: EngineConfig) -> Result<Self> {
        Ok(Self::with_config(config))
    }

    fn with_config(config: EngineConfig) -> Self {
        let registry = weir_connectors::registry();
        let planner = Planner::new().with_connectors(Arc::new(registry.clone())).with_settings(config.settings.clone());
        let state = State { planner, registry, sources: HashMap::new(), sinks: HashMap::new(), config };
        Self { state: Mutex::new(state) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // a panic while the lock was held (in a user connector opening a table) leaves the
        // session usable: its parts are each replaced whole
        // change is a single assignment, so the state is usable
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run statements: `CREATE TABLE`, `CREATE VIEW`, `SET`, and `INSERT INTO … SELECT` (which runs until its
    /// inputs end). A query (`SELECT`) goes to [`Engine::query`], `EXPLAIN` to
    /// [`Engine::explain`].
    pub async fn sql(&self, sql: &str) -> Result<()> {
        let planned = self.plan(sql)?;
        for p in planned {
            match p {
                Planned::CreatedTable(_) | Planned::CreatedView(_) | Planned::Set { .. } => {}
                Planned::Insert(plan) => {
                    // checked before the sink opens: opening a file sink empties the file
                    let options = RunOptions::default();
                    self.validate(&plan, &options)?;
                    let sink = self.table_sink(&plan, &options)?;
                    self.run_with(&plan, sink, Arc::new(AtomicBool::new(false)), options).await?;
                }
                Planned::Query(_) => {
                    return Err(EngineError::Usage("a SELECT returns rows: run it with Engine::query".into()))
                }
                Planned::Explain(_) | Planned::ExplainAnalyze(_) => {
                    return Err(EngineError::Usage("EXPLAIN returns text: use Engine::explain".into()))
                }
                Planned::ShowConnectors(_) => {
                    return Err(EngineError::Usage("SHOW CONNECTORS returns rows: use Engine::connectors".into()))
                }
            }
        }
        Ok(())
    }

    /// Parse and plan every statement of `sql` (DDL and settings take effect; nothing runs).
    /// The lower-level half of [`Engine::sql`], for front ends that show each statement's
    /// outcome themselves.
    pub fn plan(&self, sql: &str) -> Result<Vec<Planned>> {
        Ok(self.state().planner.plan_script(sql)?)
    }

    /// Start a continuous query and return its changes as a stream. The query runs on
    /// tokio's blocking threads until its inputs end, it fails, or the stream is dropped.
    pub async fn query(&self, sql: &str) -> Result<QueryStream> {
        let mut planned = self.plan(sql)?;
        let plan = match (planned.pop(), planned.is_empty()) {
            (Some(Planned::Query(plan)), true) => plan,
            _ => return Err(EngineError::Usage("Engine::query takes one SELECT statement".into())),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let cancel = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::default());
        let sink = Box::new(stream::StreamSink::new(tx.clone(), plan.is_updating()));
        let options = RunOptions::default().with_metrics(Arc::clone(&metrics));
        let running = self.start(&plan, sink, Arc::clone(&cancel), options)?;
        let schema = sink_schema(&plan);
        let schema = if plan.is_updating() {
            let mut fields = schema.fields().to_vec();
            fields.remove(0);
            Arc::new(arrow::datatypes::Schema::new(fields))
        } else {
            schema
        };
        tokio::spawn(async move {
            if let Err(e) = running.await {
                if !matches!(e, RuntimeError::OutputClosed) {
                    // the reader may have gone: then nobody is told, as intended
                    let _ = tx.send(Err(EngineError::Runtime(e))).await;
                }
            }
        });
        Ok(QueryStream::new(rx, schema, cancel, metrics))
    }

    /// The streaming plan of a query or `INSERT`, as `EXPLAIN` prints it. Nothing is run or
    /// declared.
    pub fn explain(&self, sql: &str) -> Result<String> {
        let mut planner = self.state().planner.clone();
        match planner.plan_script(sql)?.pop() {
            Some(Planned::Query(p) | Planned::Insert(p) | Planned::Explain(p) | Planned::ExplainAnalyze(p)) => {
                Ok(self.explain_plan(&p, planner.settings().parallelism))
            }
            _ => Err(EngineError::Usage("Engine::explain takes a query or an INSERT".into())),
        }
    }

    /// `EXPLAIN`'s text of `plan` run at `parallelism` (`None`: the default, the number of cores,
    /// used only when a table is read in splits): the plan, with the exchanges between its
    /// stages and their instances when it runs in parallel (see [`weir_plan::parallel`]).
    pub fn explain_plan(&self, plan: &StreamPlan, parallelism: Option<usize>) -> String {
        let state = self.state();
        let checkpointing = state.config.checkpoints.is_some();
        let n = match (parallelism, checkpointing) {
            (Some(n), _) => n,
            (None, true) => 1,
            (None, false) => weir_plan::settings::default_parallelism(),
        };
        let mut ctx = state.context(&RunOptions::default(), plan);
        (ctx.parallelism, ctx.parallelism_by_default) = (n, parallelism.is_none());
        let layout = planned_layout(&state.registry, plan, &ctx, &|table| state.source_key(table).is_some());
        weir_plan::parallel::explain(plan, layout.as_ref())
    }

    /// Run `plan` into `sink` until its inputs end or `cancel` is set: the one place a plan
    /// becomes running tasks, for the command line, the shell and the tests as for
    /// [`Engine::query`]. With [`EngineConfig::checkpoints`], the query checkpoints and
    /// resumes from its newest checkpoint. Returns the query's counters.
    pub async fn run(&self, plan: &StreamPlan, sink: Box<dyn Sink>, cancel: Arc<AtomicBool>) -> Result<Arc<Metrics>> {
        self.run_with(plan, sink, cancel, RunOptions::default()).await
    }

    /// [`Engine::run`] with options of this run: its own checkpoints, the directory relative
    /// paths are found in, and counters shared with the caller (a status line, a metrics
    /// endpoint).
    pub async fn run_with(
        &self,
        plan: &StreamPlan,
        sink: Box<dyn Sink>,
        cancel: Arc<AtomicBool>,
        options: RunOptions,
    ) -> Result<Arc<Metrics>> {
        let metrics = options.metrics.clone().unwrap_or_default();
        self.start(plan, sink, cancel, options.with_metrics(Arc::clone(&metrics)))?.await?;
        Ok(metrics)
    }

    /// Check what running `plan` needs before running anything: its tables' connectors and
    /// options, that no file is both read and written, that its channel sources are given.
    pub fn validate(&self, plan: &StreamPlan, options: &RunOptions) -> Result<()> {
        let state = self.state();
        let ctx = state.context(options, plan);
        let names = state.host_tables(plan);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        validate_in(&state.registry, plan, &ctx, &names).map_err(|e| EngineError::Runtime(RuntimeError::Source(e)))
    }

    /// Build the pipeline of `plan` now (so option and file errors come back at once) and
    /// return the future that drives it.
    fn start(
        &self,
        plan: &StreamPlan,
        sink: Box<dyn Sink>,
        cancel: Arc<AtomicBool>,
        options: RunOptions,
    ) -> Result<impl std::future::Future<Output = weir_runtime::Result<()>> + Send + 'static> {
        let mut options = options;
        let mut state = self.state();
        let checkpoint = match (options.checkpoint.take(), &state.config.checkpoints) {
            (Some(c), _) => Some(c),
            (None, Some(settings)) if options.checkpoints_from_config => {
                Some(checkpoint_config(settings, state.planner.settings(), plan)?)
            }
            (None, _) => None,
        };
        // the context sees the checkpoint (the parallelism it was taken at)
        options.checkpoint = checkpoint;
        let ctx = state.context(&options, plan);
        let checkpoint = options.checkpoint.take();
        let fed: Vec<String> = plan.sources().iter().filter_map(|node| state.source_key(&node.table.name)).collect();
        if checkpoint.is_some() && !fed.is_empty() {
            // checked before the receivers are taken, so that they stay registered
            return Err(EngineError::Usage(format!(
                "a query reading a table fed by the program ({}) cannot be checkpointed yet: its rows cannot be read again",
                fed.join(", ")
            )));
        }
        // the checks that can fail come before the receivers are taken, so they stay registered
        let names = state.host_tables(plan);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        validate_in(&state.registry, plan, &ctx, &names).map_err(|e| EngineError::Runtime(RuntimeError::Source(e)))?;
        let mut host = Host::default();
        for node in plan.sources() {
            if let Some(source) = state.source_key(&node.table.name).and_then(|k| state.sources.remove(&k)) {
                host.sources.insert(node.table.name.clone(), source);
            }
        }
        if let Some(late) = &plan.late_rows {
            if let Some(sender) = state.sink_key(&late.name).and_then(|k| state.sinks.get(&k)) {
                host.sinks.insert(late.name.clone(), Box::new(ChannelSink::new(sender.clone())));
            }
        }
        let mut pipeline = build_pipeline_in(&state.registry, plan, sink, &ctx, host)?;
        if let Some(config) = checkpoint {
            pipeline = pipeline.with_checkpoints(config, plan.to_string())?;
        }
        drop(state);
        Ok(pipeline.run(cancel))
    }

    /// The sink an `INSERT INTO` writes to: a registered channel, or the table's connector.
    pub fn table_sink(&self, plan: &StreamPlan, options: &RunOptions) -> Result<Box<dyn Sink>> {
        let state = self.state();
        if let SinkNode::Table(t) = &plan.sink {
            if let Some(sender) = state.sink_key(&t.name).and_then(|k| state.sinks.get(&k)) {
                return Ok(Box::new(ChannelSink::new(sender.clone())));
            }
        }
        let ctx = state.context(options, plan);
        Ok(open_sink_in(&state.registry, plan, OutputFormat::Csv, &ctx)?)
    }

    /// Apply a setting, as `SET key = value` would.
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        Ok(self.state().planner.set(key, value)?)
    }

    /// A copy of the planner: the catalog, settings and functions as they are now (for a
    /// front end that lists tables or completes names, or plans on a thread of its own).
    pub fn planner(&self) -> Planner {
        self.state().planner.clone()
    }

    /// Take `planner` (one returned by [`Engine::planner`], after planning with it) as the
    /// session's: the tables it declared and settings it made take effect.
    pub fn set_planner(&self, planner: Planner) {
        self.state().planner = planner;
    }

    /// Feed the table `table` (declared `WITH (connector = 'channel')`) from `receiver`: each
    /// batch received is a batch of its rows (columns matched by name), and its input ends
    /// when every sender is dropped. The next query reading the table takes the receiver.
    /// `table` is matched as SQL does: `"Orders"` (quoted) as written, otherwise in lower case.
    pub fn register_source(&self, table: &str, receiver: Receiver<RecordBatch>) {
        self.state().sources.insert(table.to_string(), ChannelSource::new(table, receiver));
    }

    /// Send the rows `INSERT INTO table` writes (a table declared `WITH (connector =
    /// 'channel')`) to `sender`; also the rows a query drops, when `table` is the
    /// `'late_rows'` table of its source.
    pub fn register_sink(&self, table: &str, sender: Sender<RecordBatch>) {
        self.state().sinks.insert(table.to_string(), sender);
    }

    /// Add a connector (or replace one of the same name): `CREATE TABLE … WITH (connector =
    /// 'name', …)` is checked against its declared options from now on, and queries open its
    /// tables through it.
    pub fn register_connector(&self, connector: Arc<dyn Connector>) {
        let mut state = self.state();
        state.registry.register(connector);
        let catalog = Arc::new(state.registry.clone());
        state.planner.set_connectors(catalog);
    }

    /// Make a scalar function (DataFusion's [`ScalarUDF`]) callable from SQL: in projections,
    /// filters, grouping keys and inside window aggregates.
    pub fn register_udf(&self, f: ScalarUDF) {
        self.state().planner.register_udf(f);
    }

    /// Make an aggregate function (DataFusion's [`AggregateUDF`]) callable from SQL, in window
    /// and updating aggregates. Its state is checkpointed through its accumulators' `state()`.
    pub fn register_udaf(&self, f: AggregateUDF) {
        self.state().planner.register_udaf(f);
    }

    /// What every registered connector declares (as `SHOW CONNECTORS` lists it).
    pub fn connectors(&self) -> Vec<ConnectorSpec> {
        weir_plan::ConnectorCatalog::specs(&self.state().registry)
    }

    /// The session's settings as typed values (what `SET key = value` made of them).
    pub fn typed_settings(&self) -> Settings {
        self.state().planner.settings().clone()
    }

    /// The session's settings (`SET key = value`), by name, as given.
    pub fn settings(&self) -> Vec<(String, String)> {
        self.state().planner.settings().entries().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl Default for Engine {
    /// An engine with the default configuration (see [`EngineConfig`]).
    fn default() -> Self {
        Self::with_config(EngineConfig::default())
    }
}

impl State {
    /// The key a program registered the channel source of table `name` under: the name as
    /// written, or one that is the same in lower case (an unquoted name).
    fn source_key(&self, name: &str) -> Option<String> {
        registered_key(self.sources.keys(), name)
    }

    /// The same for channel sinks.
    fn sink_key(&self, name: &str) -> Option<String> {
        registered_key(self.sinks.keys(), name)
    }

    /// The tables of `plan` the program feeds or collects (by their names in the plan).
    fn host_tables(&self, plan: &StreamPlan) -> Vec<String> {
        let mut names: Vec<String> = plan
            .sources()
            .iter()
            .map(|node| node.table.name.clone())
            .filter(|n| self.source_key(n).is_some())
            .collect();
        let written = plan.late_rows.iter().chain(match &plan.sink {
            SinkNode::Table(t) => Some(t),
            SinkNode::Client => None,
        });
        names.extend(written.map(|t| t.name.clone()).filter(|n| self.sink_key(n).is_some()));
        names
    }

    /// What the connectors of a run need: the batch size, where files are, whether output
    /// tables are written as part files, the counters.
    fn context(&self, options: &RunOptions, plan: &StreamPlan) -> ConnectorContext {
        let mut ctx = ConnectorContext::new(options.metrics.clone().unwrap_or_default());
        ctx.batch_size = options.batch_size.unwrap_or_else(|| self.planner.settings().batch_size());
        ctx.base_dir = options.base_dir.clone().or_else(|| self.config.base_dir.clone());
        ctx.checkpointing = options.checkpoint.is_some()
            || (options.checkpoints_from_config && self.config.checkpoints.is_some())
            || options.part_files;
        ctx.state_dir = match (&options.checkpoint, &self.config.checkpoints) {
            (Some(c), _) => c.store.local_dir().map(std::path::Path::to_path_buf),
            (None, Some(settings)) if options.checkpoints_from_config => {
                local_path(&settings.dir).map(|dir| std::path::Path::new(&dir).join(fingerprint(&plan.to_string())))
            }
            (None, _) => None,
        };
        let settings = self.planner.settings();
        // on resume, the parallelism the checkpoint was taken at, unless another is asked for
        let restored = options.checkpoint.as_ref().and_then(|c| c.restore.as_ref()).filter(|_| ctx.checkpointing);
        let saved = restored.and_then(|r| r.manifest.parallel.as_ref());
        // its tables are read in the splits they were, at any parallelism (keyed stages move
        // key groups between instances); a checkpoint taken on one thread, resumed in
        // parallel, reads them whole
        ctx.splits = saved.map(|p| p.splits.clone());
        let saved = saved.map(|p| p.parallelism);
        let asked = options.parallelism.or(settings.parallelism);
        ctx.parallelism_by_default = asked.is_none() && saved.is_none();
        ctx.parallelism = match (asked, saved) {
            (Some(n), _) | (None, Some(n)) => n,
            // a query that checkpoints runs in parallel only when asked to: its checkpoints
            // resume at the parallelism they were taken at, not at another machine's cores
            (None, None) if ctx.checkpointing => 1,
            (None, None) => settings.parallelism(),
        };
        if restored.is_some_and(|r| r.manifest.parallel.is_none() && !r.manifest.finished) && ctx.parallelism > 1 {
            ctx.splits = Some(vec![1; plan.sources().len()]);
        }
        ctx
    }
}

/// Options of one run ([`Engine::run_with`]). The default uses the engine's configuration.
pub struct RunOptions {
    /// Checkpoints of this run, instead of those of [`EngineConfig::checkpoints`].
    pub checkpoint: Option<CheckpointConfig>,
    /// Also look up relative paths here (instead of [`EngineConfig::base_dir`]).
    pub base_dir: Option<std::path::PathBuf>,
    /// Count into these counters (fresh ones if `None`).
    pub metrics: Option<Arc<Metrics>>,
    /// Rows per batch read from sources (instead of the `batch.size` setting).
    pub batch_size: Option<usize>,
    /// Use [`EngineConfig::checkpoints`] when `checkpoint` is not given (the default for
    /// [`RunOptions::default`]).
    pub checkpoints_from_config: bool,
    /// Write output tables as part files published by checkpoints, whether or not this run
    /// checkpoints (a front end checking a plan before its checkpoints are set up).
    pub part_files: bool,
    /// Instances per stage (instead of the `parallelism` setting; 1 runs on one thread; `None`
    /// with no setting: the number of cores where a table is read in splits, else 1).
    pub parallelism: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            checkpoint: None,
            base_dir: None,
            metrics: None,
            batch_size: None,
            checkpoints_from_config: true,
            part_files: false,
            parallelism: None,
        }
    }
}

impl RunOptions {
    fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

fn registered_key<'a>(mut keys: impl Iterator<Item = &'a String>, name: &str) -> Option<String> {
    keys.find(|k| k.as_str() == name || k.to_lowercase() == name).cloned()
}

/// The local directory a checkpoint location names (a path or a `file://` URL).
fn local_path(location: &str) -> Option<String> {
    match location.split_once("://") {
        None => Some(location.to_string()),
        Some(("file", path)) => Some(path.to_string()),
        Some(_) => None,
    }
}

/// Where a query's checkpoints go: a directory per query under the configured one, named by
/// the query's fingerprint, so the same query resumes from its own newest checkpoint.
fn checkpoint_config(settings: &CheckpointSettings, session: &Settings, plan: &StreamPlan) -> Result<CheckpointConfig> {
    let fingerprint = fingerprint(&plan.to_string());
    let dir = format!("{}/{}", settings.dir.trim_end_matches('/'), fingerprint);
    // `SET checkpoint.*` in the session goes before the configuration's values
    let interval = session.checkpoint_interval.unwrap_or(settings.interval);
    let guarantee = session.checkpoint_guarantee.unwrap_or(settings.guarantee);
    let retain = session.checkpoint_retain.unwrap_or(settings.retain);
    let store = CheckpointStore::open(&dir)?.with_retain(retain);
    let restore = store.latest()?;
    if let Some(r) = &restore {
        check_fingerprint(r, &fingerprint)?;
        tracing::info!(checkpoint = r.manifest.id, location = %r.location, "resuming");
    }
    Ok(CheckpointConfig { store, interval, guarantee, fingerprint, restore })
}
