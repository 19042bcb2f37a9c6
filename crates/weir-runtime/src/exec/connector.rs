//! Connectors as the runtime sees them: the [`Connector`] trait each one implements (its
//! declared options, its own checks, and how it opens sources and sinks), the
//! [`ConnectorRegistry`] they are registered in by name, and the [`ConnectorContext`] they open
//! with. The registry is the planner's [`ConnectorCatalog`], so `CREATE TABLE` is checked
//! against the same declarations the runtime opens tables with.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::datatypes::SchemaRef;
use weir_plan::connector::closest;
use weir_plan::{ConnectorCatalog, ConnectorError, ConnectorSpec, TableDef};

use crate::error::Result;
use crate::exec::metrics::Metrics;
use crate::exec::source::{Sink, Source};

/// A kind of table: reads rows from somewhere, writes them somewhere, or both.
///
/// Implement [`Connector::spec`] (the name and options, which `CREATE TABLE` is checked
/// against) and [`Connector::open_source`] and/or [`Connector::open_sink`]; then register it in
/// a [`ConnectorRegistry`]. Options are checked against the declarations before
/// [`Connector::check`] runs, so a connector sees only known, well-typed options.
pub trait Connector: Send + Sync {
    /// The name (`'connector' = '…'`), what it does, and its options.
    fn spec(&self) -> ConnectorSpec;

    /// Checks beyond each option's type: options that contradict each other, a value out of
    /// range. Runs at `CREATE TABLE` and again before a query opens the table; files need not
    /// exist yet. The default accepts what the declarations accept.
    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        let _ = table;
        Ok(())
    }

    /// Whether the input of `table` ends: without a watermark, such a table is read whole
    /// first when it is the lookup table of a join. The default: it never ends.
    fn bounded(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether reading `table` gives a changelog (+I/-U/+U/-D rows, each batch's kinds from
    /// [`Source::row_kinds`]) rather than only inserts. The default: inserts only.
    fn changelog_source(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether what [`Connector::changelog_source`] reads are upserts keyed by the table's
    /// primary key (a key's new row as `+I`, a removal as `-D` carrying only the key), which the
    /// planner turns into a proper changelog. The default: no.
    fn upsert_source(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether `table` takes an updating query's changes as they are (its sink's batches then
    /// start with the `op` column, see [`crate::is_row_kind_column`]). The default: no, only
    /// inserts (or `'changelog' = 'rows'`, which writes `op` as an ordinary column).
    fn changelog_sink(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Open `table` for reading, producing batches of exactly `schema`'s columns (the ones the
    /// query needs, in that order).
    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        let _ = (schema, ctx);
        Err(role_error(table, &self.spec(), "it cannot be read from"))
    }

    /// Whether [`Connector::open_splits`] can split `table` (for `EXPLAIN`, without opening it).
    /// The default: no.
    fn splittable(&self, table: &TableDef, ctx: &ConnectorContext) -> bool {
        let _ = (table, ctx);
        false
    }

    /// How many splits [`Connector::open_splits`] would open for `n` instances (for `EXPLAIN`
    /// and the layout, without opening anything; 1: read whole). The default: `n` when
    /// [`Connector::splittable`], else 1.
    fn split_count(&self, table: &TableDef, ctx: &ConnectorContext, n: usize) -> usize {
        if self.splittable(table, ctx) {
            n
        } else {
            1
        }
    }

    /// Whether each split [`Connector::open_splits`] opens holds rows from the whole of the
    /// table's event time, interleaved with the other splits' (the generator's event numbers;
    /// not a file's byte ranges, each a stretch of the file). A batch of such a split spans k
    /// times the event time of a batch of the same rows read whole (k splits), and the state
    /// a join keeps between watermarks grows with that span: in a plan that joins or unions
    /// its inputs, where such splits are hashed to keyed instances, each reads `batch.size / k`
    /// rows at a time (at least a quarter batch). The default: no.
    fn splits_interleave(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Open `table` as `n` sources that together read what [`Connector::open_source`] reads,
    /// each rows of its own (for `n` parallel instances; each keeps its own watermark), or
    /// `None` when the table cannot be split (it is then read whole, by one instance). The
    /// default: it cannot.
    fn open_splits(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &ConnectorContext,
        n: usize,
    ) -> Result<Option<Vec<Box<dyn Source>>>> {
        let _ = (table, schema, ctx, n);
        Ok(None)
    }

    /// Open `table` for writing rows of `schema`.
    fn open_sink(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
        let _ = (schema, ctx);
        Err(role_error(table, &self.spec(), "it cannot be written to"))
    }
}

fn role_error(table: &TableDef, spec: &ConnectorSpec, message: &str) -> crate::error::RuntimeError {
    ConnectorError::WrongRole { table: table.name.clone(), connector: spec.name.to_string(), message: message.into() }
        .into()
}

/// Connectors by name.
#[derive(Clone, Default)]
pub struct ConnectorRegistry {
    connectors: BTreeMap<String, (ConnectorSpec, Arc<dyn Connector>)>,
}

impl fmt::Debug for ConnectorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.connectors.keys()).finish()
    }
}

impl ConnectorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `connector` under the name its spec gives; it replaces one of the same name,
    /// which is returned.
    pub fn register(&mut self, connector: Arc<dyn Connector>) -> Option<Arc<dyn Connector>> {
        let spec = connector.spec();
        self.connectors.insert(spec.name.to_string(), (spec, connector)).map(|(_, c)| c)
    }

    /// The connector registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(name).map(|(_, c)| c)
    }

    /// The registered names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.connectors.keys().map(String::as_str).collect()
    }

    /// The connector of `table` with its declarations, or why there is none.
    pub fn lookup(&self, table: &TableDef) -> Result<(&ConnectorSpec, &Arc<dyn Connector>), ConnectorError> {
        let Some(name) = table.connector() else {
            return Err(ConnectorError::invalid(format!("table '{}' has no connector option", table.name)));
        };
        match self.connectors.get(name) {
            Some((spec, connector)) => Ok((spec, connector)),
            None => Err(ConnectorError::UnknownConnector {
                table: table.name.clone(),
                connector: name.to_string(),
                suggestion: closest(name, self.names()),
                known: self.names().into_iter().map(str::to_string).collect(),
            }),
        }
    }

    /// Check `table` as `CREATE TABLE` does (see [`ConnectorCatalog::check_table`]).
    pub fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        let (spec, connector) = self.lookup(table)?;
        spec.check(table)?;
        connector.check(table)
    }

    /// Open `table` for reading the columns of `schema`.
    pub fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        let (spec, connector) = self.lookup(table)?;
        if !spec.source {
            return Err(role_error(table, spec, "it cannot be read from"));
        }
        connector.open_source(table, schema, ctx)
    }

    /// [`Connector::splittable`] of `table`'s connector (false when it has none).
    pub fn splittable(&self, table: &TableDef, ctx: &ConnectorContext) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.splittable(table, ctx))
    }

    /// [`Connector::split_count`] of `table`'s connector (1 when it has none), at most `n`.
    pub fn split_count(&self, table: &TableDef, ctx: &ConnectorContext, n: usize) -> usize {
        self.lookup(table).map_or(1, |(_, c)| c.split_count(table, ctx, n).clamp(1, n.max(1)))
    }

    /// [`Connector::splits_interleave`] of `table`'s connector (false when it has none).
    pub fn splits_interleave(&self, table: &TableDef) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.splits_interleave(table))
    }

    /// [`Connector::open_splits`] of `table`'s connector.
    pub fn open_splits(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &ConnectorContext,
        n: usize,
    ) -> Result<Option<Vec<Box<dyn Source>>>> {
        let (spec, connector) = self.lookup(table)?;
        if !spec.source {
            return Err(role_error(table, spec, "it cannot be read from"));
        }
        connector.open_splits(table, schema, ctx, n)
    }

    /// Open `table` for writing rows of `schema`.
    pub fn open_sink(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
        let (spec, connector) = self.lookup(table)?;
        if !spec.sink {
            return Err(role_error(table, spec, "it cannot be written to"));
        }
        connector.open_sink(table, schema, ctx)
    }
}

impl ConnectorCatalog for ConnectorRegistry {
    fn specs(&self) -> Vec<ConnectorSpec> {
        self.connectors.values().map(|(spec, _)| spec.clone()).collect()
    }

    fn check_table(&self, table: &TableDef) -> Result<(), ConnectorError> {
        self.check(table)
    }

    fn bounded(&self, table: &TableDef) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.bounded(table))
    }

    fn changelog_source(&self, table: &TableDef) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.changelog_source(table))
    }

    fn changelog_sink(&self, table: &TableDef) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.changelog_sink(table))
    }

    fn upsert_source(&self, table: &TableDef) -> bool {
        self.lookup(table).is_ok_and(|(_, c)| c.upsert_source(table))
    }
}

/// What connectors need to know about the run.
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    /// Rows per batch read from sources.
    pub batch_size: usize,
    /// Directory of the SQL script, to find source files named relative to it.
    pub base_dir: Option<PathBuf>,
    /// Counters (skipped bad rows are counted here).
    pub metrics: Arc<Metrics>,
    /// The query checkpoints: file tables are written as directories of part files, each
    /// published by the checkpoint that covers it.
    pub checkpointing: bool,
    /// A local directory of the query's checkpoints, where sinks keep what they stage until
    /// a checkpoint commits it (`None`: no checkpoints, or not on the local disk).
    pub state_dir: Option<PathBuf>,
    /// When the query started: read when its first source opens, so that all its sources
    /// agree on it (paced generated tables of one query share one timeline). See
    /// [`ConnectorContext::start_time`].
    pub started: Arc<OnceLock<StartTime>>,
    /// Instances of each stage that can run in parallel (1: the query runs on one thread).
    pub parallelism: usize,
    /// `parallelism` is the default, not asked for: use it only when a table is read in splits
    /// (a query over tables read whole runs on one thread, in its one-thread order).
    pub parallelism_by_default: bool,
    /// Resuming a parallel run's checkpoint: the splits each of the plan's sources was read in
    /// (they are read in as many again, whatever the parallelism; keyed stages may change).
    pub splits: Option<Vec<usize>>,
}

impl ConnectorContext {
    /// Defaults: batches of 8192 rows, paths relative to the working directory.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            batch_size: 8192,
            base_dir: None,
            metrics,
            checkpointing: false,
            state_dir: None,
            started: Arc::default(),
            parallelism: 1,
            splits: None,
            parallelism_by_default: false,
        }
    }

    /// When the query started: now, the first time this is asked (its first source opens),
    /// and the same moment after that.
    pub fn start_time(&self) -> StartTime {
        *self.started.get_or_init(StartTime::now)
    }
}

/// A moment on both clocks: the wall clock (for event times) and the monotonic one (for pacing).
#[derive(Debug, Clone, Copy)]
pub struct StartTime {
    /// Milliseconds since the Unix epoch.
    pub wall_ms: i64,
    /// The same moment on the monotonic clock.
    pub instant: Instant,
}

impl StartTime {
    /// The current moment.
    pub fn now() -> Self {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Self { wall_ms, instant: Instant::now() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_starts_when_its_first_source_opens_and_every_source_agrees() {
        // a script plans every query first and runs them one after another: a later query
        // must not take the time it was planned as its start
        let ctx = ConnectorContext::new(Arc::new(Metrics::default()));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let opened = StartTime::now();
        let first = ctx.start_time();
        assert!(first.instant >= opened.instant, "the start is read when asked, not when planned");
        let other_source = ctx.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(other_source.start_time().wall_ms, first.wall_ms);
        assert_eq!(other_source.start_time().instant, first.instant);
    }
}
