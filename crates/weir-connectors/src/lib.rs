//! # weir-connectors — sources and sinks
//!
//! The connectors a pipeline reads from and writes to: the `file` connector (CSV with a header
//! row, newline-delimited JSON, Parquet) as a source and a sink, `stdin` (the same formats) as a
//! source, `datagen` (rows made up in process, paced, for the shell and tests), `nexmark`
//! (the Nexmark benchmark's people, auctions and bids, generated in process), `kafka` (a topic
//! read and written through librdkafka, exactly once with checkpoints: [`kafka`]), stdout in
//! table/csv/json form, and for
//! embedding the `channel` connector (batches sent by the host program over a tokio channel,
//! results sent back: [`ChannelSource`], [`ChannelSink`], [`build_pipeline_with`]) and an
//! in-memory collector. Files are read incrementally: memory is bounded by one
//! batch, never by the file. With checkpoints, sources report and seek to their position, and
//! a `file` table is written as part files published by checkpoints ([`PartFileSink`]).
//! Malformed rows follow the table's policy (`bad_data = 'fail'`,
//! the default, names file, line, column and value; `'skip'` skips and counts; a
//! `dead_letter` file keeps them, with where they came from and why: [`BadRows`]).

#![warn(missing_docs)]

mod channel;
mod column;
mod csv_source;
mod datagen;
mod dead_letter;
mod file;
mod file_splits;
mod json_source;
pub mod kafka;
mod live;
pub mod nexmark;
mod options;
mod parquet_source;
mod part_sink;
mod sinks;
mod stdin;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion_common::arrow::datatypes::SchemaRef;

use weir_plan::{SinkNode, SourceNode, StreamPlan, TableDef};
use weir_runtime::{
    input_columns, late_rows_schema, sink_schema, ConnectorRegistry, Pipeline, Result, RuntimeError, Sink, Source,
};

pub use channel::{ChannelConnector, ChannelSink, ChannelSource};
pub use column::{parse_timestamp, ColumnBuffer, ColumnType, Value};
pub use csv_source::CsvSource;
pub use datagen::DatagenConnector;
pub use datagen::{DatagenOptions, DatagenSource};
pub use dead_letter::BadRows;
pub use file::FileConnector;
pub use json_source::JsonSource;
pub use kafka::KafkaConnector;
pub use nexmark::NexmarkConnector;
pub use options::{BadRowPolicy, FileFormat, FileOptions};
pub use parquet_source::ParquetSource;
pub use part_sink::{PartFileSink, PartOptions};
pub use sinks::{CollectSink, DiscardSink, FormatSink, OutputFormat, ParquetSink};
pub use stdin::StdinConnector;
pub use weir_runtime::{ConnectorContext, StartTime};

/// A registry of the built-in connectors: `file`, `stdin`, `datagen`, `nexmark`, `channel`,
/// `kafka` and `upsert-kafka`.
/// Register more (user connectors) on it with [`ConnectorRegistry::register`].
pub fn registry() -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::new();
    registry.register(Arc::new(FileConnector));
    registry.register(Arc::new(StdinConnector));
    registry.register(Arc::new(DatagenConnector));
    registry.register(Arc::new(NexmarkConnector));
    registry.register(Arc::new(ChannelConnector));
    registry.register(Arc::new(KafkaConnector));
    registry.register(Arc::new(kafka::UpsertKafkaConnector));
    registry
}

/// The built-in connectors, made once.
fn builtin() -> &'static ConnectorRegistry {
    static BUILTIN: OnceLock<ConnectorRegistry> = OnceLock::new();
    BUILTIN.get_or_init(registry)
}

/// A table a query reads: its connector registered and able to read, its options valid.
fn check_readable(registry: &ConnectorRegistry, table: &TableDef) -> std::result::Result<(), String> {
    let (spec, _) = registry.lookup(table).map_err(|e| e.to_string())?;
    if !spec.source {
        return Err(format!("table '{}' has connector '{}': it cannot be read from", table.name, spec.name));
    }
    registry.check(table).map_err(|e| e.to_string())
}

/// A table rows are written to: its connector registered and able to write.
fn check_writable(registry: &ConnectorRegistry, table: &TableDef) -> std::result::Result<(), String> {
    let (spec, _) = registry.lookup(table).map_err(|e| e.to_string())?;
    if !spec.sink {
        return Err(format!("table '{}' has connector '{}': it cannot be written to", table.name, spec.name));
    }
    registry.check(table).map_err(|e| e.to_string())
}

/// Whether a table is read or written through [`FileOptions`] (its paths are checked for clashes).
fn is_file_table(table: &TableDef) -> bool {
    matches!(table.connector(), Some("file" | "stdin"))
}

/// Check the connector options of a plan's source and sink before running anything.
pub fn validate(plan: &StreamPlan, ctx: &ConnectorContext) -> std::result::Result<(), String> {
    validate_with(plan, ctx, &[])
}

/// [`validate`], where the tables named in `host` are read from the host program.
pub fn validate_with(plan: &StreamPlan, ctx: &ConnectorContext, host: &[&str]) -> std::result::Result<(), String> {
    validate_in(builtin(), plan, ctx, host)
}

/// [`validate_with`] against the connectors of `registry`.
pub fn validate_in(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    ctx: &ConnectorContext,
    host: &[&str],
) -> std::result::Result<(), String> {
    if plan.sources().iter().filter(|node| node.table.connector() == Some("stdin")).count() > 1 {
        return Err("a query can read standard input only once (two 'stdin' tables would split its lines)".into());
    }
    let mut inputs = Vec::new();
    for node in plan.sources() {
        let source = &node.table;
        if source.connector() == Some("channel") && host.contains(&source.name.as_str()) {
            continue;
        }
        if source.connector() == Some("channel") {
            return Err(channel::not_fed(source));
        }
        check_readable(registry, source)?;
        if is_file_table(source) {
            inputs.push(FileOptions::parse(source, ctx.base_dir.as_deref(), true)?);
        }
        let schema = source.require_schema().map_err(|e| e.to_string())?;
        // metadata columns are filled by the connector, and BYTES read whole (kafka's raw)
        let parsed = |f: &&Arc<datafusion_common::arrow::datatypes::Field>| {
            source.metadata_column(f.name()).is_none()
                && (is_file_table(source)
                    || !matches!(f.data_type(), datafusion_common::arrow::datatypes::DataType::Binary))
        };
        for f in schema.fields().iter().filter(parsed) {
            ColumnType::new(f.data_type())
                .map_err(|e| format!("table '{}', column '{}': {e}", source.name, f.name()))?;
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    if let Some(t) = &plan.late_rows {
        check_writable(registry, t)?;
        if is_file_table(t) {
            written.extend(FileOptions::parse(t, ctx.base_dir.as_deref(), false)?.path);
        }
    }
    if let SinkNode::Table(t) = &plan.sink {
        if !host.contains(&t.name.as_str()) {
            check_writable(registry, t)?;
        }
    }
    if let SinkNode::Table(t) = &plan.sink {
        if is_file_table(t) {
            let output = FileOptions::parse(t, ctx.base_dir.as_deref(), false)?;
            for (i, o) in inputs.iter().filter_map(|input| input.path.as_ref().zip(output.path.as_ref())) {
                if same_file(i, o) {
                    return Err(format!(
                        "INSERT INTO {} would overwrite '{}', the file it reads from",
                        t.name,
                        i.display()
                    ));
                }
            }
            written.extend(output.path);
        }
    }
    // nothing written inside a directory read as input (its files would be read back)
    let dead_letters = inputs.iter().filter_map(FileOptions::dead_letter).map(std::path::Path::to_path_buf);
    let outputs: Vec<PathBuf> = written.iter().cloned().chain(dead_letters).collect();
    for dir in inputs.iter().filter_map(|i| i.path.as_ref()).filter(|p| p.is_dir()) {
        if let Some(inside) = outputs.iter().find(|o| within(o, dir)) {
            return Err(format!(
                "'{}' is written inside '{}', a directory the query reads: it would read it back; name a file elsewhere",
                inside.display(),
                dir.display()
            ));
        }
    }
    // a dead-letter file is written: not over an input, nor where results or late rows go
    for dead in inputs.iter().filter_map(FileOptions::dead_letter) {
        let clashes = inputs.iter().filter_map(|i| i.path.as_ref()).chain(&written);
        for other in clashes {
            if same_file(dead, other) {
                return Err(format!(
                    "the dead-letter file '{}' is also read or written by the query: name another file",
                    dead.display()
                ));
            }
        }
    }
    Ok(())
}

/// Whether `path` lies inside the directory `dir` (both made absolute, without `.` parts).
fn within(path: &std::path::Path, dir: &std::path::Path) -> bool {
    let plain = |p: &std::path::Path| {
        let p = p.canonicalize().or_else(|_| std::path::absolute(p)).ok()?;
        Some(p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>())
    };
    match (plain(path), plain(dir)) {
        (Some(p), Some(d)) => p != d && p.starts_with(d),
        _ => false,
    }
}

/// Whether two paths name the same file (made absolute and without `.` parts when either
/// does not exist yet).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => {
            let plain = |p: &std::path::Path| {
                std::path::absolute(p)
                    .map(|p| p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>())
                    .ok()
            };
            plain(a).is_some_and(|x| Some(x) == plain(b))
        }
    }
}

/// Open the sources of `plan` (in [`StreamPlan::sources`] order), reading the columns the
/// pipeline needs.
pub fn open_sources(plan: &StreamPlan, ctx: &ConnectorContext) -> Result<Vec<Box<dyn Source>>> {
    plan.sources().into_iter().map(|node| open_source(node, plan.late_rows.is_some(), ctx)).collect()
}

/// Open one source, reading the columns the pipeline needs (all of them if `whole_rows`).
pub fn open_source(node: &SourceNode, whole_rows: bool, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
    open_source_in(builtin(), node, whole_rows, ctx)
}

/// [`open_source`] with the connectors of `registry`.
pub fn open_source_in(
    registry: &ConnectorRegistry,
    node: &SourceNode,
    whole_rows: bool,
    ctx: &ConnectorContext,
) -> Result<Box<dyn Source>> {
    let table = &node.table;
    let declared = table.require_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
    let cols = input_columns(node, whole_rows)?;
    // declared nullability is kept: sources refuse NULLs in NOT NULL columns
    let schema = Arc::new(declared.project(&cols.columns)?);
    registry.open_source(table, schema, ctx)
}

/// Tables the host program feeds or collects, by table name: `channel` sources, and sinks for
/// the table a query's dropped rows go to (its `'late_rows'` table).
#[derive(Default)]
pub struct Host {
    /// Sources of tables read from the program.
    pub sources: HashMap<String, ChannelSource>,
    /// Sinks of tables written to the program.
    pub sinks: HashMap<String, Box<dyn Sink>>,
}

impl From<HashMap<String, ChannelSource>> for Host {
    fn from(sources: HashMap<String, ChannelSource>) -> Self {
        Self { sources, sinks: HashMap::new() }
    }
}

/// A runnable pipeline for `plan` whose `channel` tables are read from `host` (by table name),
/// results to `sink` (e.g. a [`ChannelSink`]); other tables are opened as usual.
pub fn build_pipeline_with(
    plan: &StreamPlan,
    sink: Box<dyn Sink>,
    ctx: &ConnectorContext,
    host: HashMap<String, ChannelSource>,
) -> Result<Pipeline> {
    build_pipeline_in(builtin(), plan, sink, ctx, host.into())
}

/// [`build_pipeline_with`] with the connectors of `registry`: the one place a plan becomes a
/// runnable pipeline (sources opened, operators built, sinks attached).
pub fn build_pipeline_in(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    sink: Box<dyn Sink>,
    ctx: &ConnectorContext,
    host: Host,
) -> Result<Pipeline> {
    let Host { sources: mut host, sinks: mut host_sinks } = host;
    let mut names: Vec<&str> = host.keys().chain(host_sinks.keys()).map(String::as_str).collect();
    if let SinkNode::Table(t) = &plan.sink {
        // the caller gives the sink: the table's own connector does not open it
        names.push(&t.name);
    }
    validate_in(registry, plan, ctx, &names).map_err(RuntimeError::Source)?;
    if let Some(pipeline) = build_parallel(registry, plan, &mut host, ctx)? {
        let pipeline = pipeline(sink)?;
        let late = match plan.late_rows.as_ref().and_then(|t| host_sinks.remove(&t.name)) {
            Some(sink) => Some(sink),
            None => open_late_rows_in(registry, plan, ctx)?,
        };
        return match late {
            Some(late) => pipeline.with_late_rows(plan, late),
            None => Ok(pipeline),
        };
    }
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for node in plan.sources() {
        let table = &node.table;
        match host.remove(&table.name) {
            Some(source) if table.connector() == Some("channel") => {
                let declared = table.require_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
                let cols = input_columns(node, plan.late_rows.is_some())?;
                sources.push(Box::new(source.with_schema(Arc::new(declared.project(&cols.columns)?))));
            }
            Some(_) => {
                return Err(RuntimeError::Source(format!(
                    "table '{}' has connector '{}', not 'channel': it cannot be read from the host program",
                    table.name,
                    table.connector().unwrap_or("none")
                )))
            }
            None => sources.push(open_source_in(registry, node, plan.late_rows.is_some(), ctx)?),
        }
    }
    let pipeline = Pipeline::new(plan, sources, sink, Arc::clone(&ctx.metrics))?;
    let late = match plan.late_rows.as_ref().and_then(|t| host_sinks.remove(&t.name)) {
        Some(sink) => Some(sink),
        None => open_late_rows_in(registry, plan, ctx)?,
    };
    match late {
        Some(late) => pipeline.with_late_rows(plan, late),
        None => Ok(pipeline),
    }
}

/// The layout `plan` runs with under `ctx`, each table split as its connector says it can be
/// (nothing is opened), or `None`: it runs on one thread. `fed(table)`: the host program feeds
/// that table (then the query runs on one thread). `EXPLAIN` and the run both ask here.
pub fn planned_layout(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    ctx: &ConnectorContext,
    fed: &dyn Fn(&str) -> bool,
) -> Option<weir_plan::parallel::Layout> {
    planned(registry, plan, ctx, fed).map(|(layout, _)| layout)
}

/// [`planned_layout`], with the splits each table would be opened in.
fn planned(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    ctx: &ConnectorContext,
    fed: &dyn Fn(&str) -> bool,
) -> Option<(weir_plan::parallel::Layout, Vec<usize>)> {
    let (n, nodes) = (ctx.parallelism, plan.sources());
    if nodes.iter().any(|node| fed(&node.table.name)) {
        return None;
    }
    if let Some(saved) = &ctx.splits {
        // resuming a parallel run: its tables in the splits it read them in
        let counts: Vec<usize> = (0..nodes.len()).map(|i| saved.get(i).copied().unwrap_or(1)).collect();
        let layout = weir_runtime::resumed_layout(plan, n, &|i| counts.get(i).copied().unwrap_or(1))?;
        return Some((layout, counts));
    }
    if n <= 1 {
        return None;
    }
    let counts: Vec<usize> = nodes.iter().map(|node| registry.split_count(&node.table, ctx, n)).collect();
    // by default, only a query reading a table in splits, without a join or a union (see
    // `weir_plan::parallel::merges_inputs`), runs in parallel
    if ctx.parallelism_by_default && (counts.iter().all(|c| *c <= 1) || weir_plan::parallel::merges_inputs(plan)) {
        return None;
    }
    let layout = weir_runtime::parallel_layout(plan, n, &|i| counts.get(i).copied().unwrap_or(1))?;
    Some((layout, counts))
}

/// The most rows a source of a parallel run reads at once (unless `batch.size` asks for more).
const MAX_READ_BATCH: usize = 1 << 18;

/// A pipeline finished with its sink.
type WithSink = Box<dyn FnOnce(Box<dyn Sink>) -> Result<Pipeline>>;

/// When `plan` runs in parallel at `ctx.parallelism` (see [`weir_runtime::parallel_layout`]):
/// its table opened as splits (or whole, when its connector cannot split it), waiting for the
/// sink. `None`: it runs on one thread, and nothing was opened.
fn build_parallel(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    host: &mut HashMap<String, ChannelSource>,
    ctx: &ConnectorContext,
) -> Result<Option<WithSink>> {
    let Some((expected, counts)) = planned(registry, plan, ctx, &|table| host.contains_key(table)) else {
        return Ok(None);
    };
    let (n, nodes) = (ctx.parallelism, plan.sources());
    // a hash exchange shares each batch a split reads among n instances: such splits read n
    // times the batch size, so each instance still takes batches of about batch.size rows
    // (half-size batches cost a parallel run of Nexmark q5 6%: packets, wake-ups, watermark
    // merges); but in a plan that joins or unions its inputs, the k splits of a table whose
    // rows interleave in event time (the generator's) read batch.size / k rows (at least a
    // quarter batch), so that a batch spans no more event time than one reader's: a join keeps
    // each side's rows until the other side's watermark passes them, and one side runs a
    // batch's span ahead of the other (q8 at parallelism 2 kept 2.6 times one thread's join
    // state per instance); a split whose batches go on whole (a broadcast join's table) reads
    // batch.size
    let joins = weir_plan::parallel::merges_inputs(plan);
    let read_ctx: Vec<ConnectorContext> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let k = counts.get(i).copied().unwrap_or(1).max(1);
            let batch_size = match (expected.hashes_source(i), joins && registry.splits_interleave(&node.table)) {
                (false, _) => ctx.batch_size,
                (true, true) => (ctx.batch_size / k).max(ctx.batch_size / 4).max(1),
                (true, false) => ctx.batch_size.saturating_mul(n).clamp(1, MAX_READ_BATCH.max(ctx.batch_size)),
            };
            ConnectorContext { batch_size, ..ctx.clone() }
        })
        .collect();
    let split_ctx = |i: usize| read_ctx.get(i).unwrap_or(ctx);
    let splittable: Vec<bool> = counts.iter().map(|c| *c > 1).collect();
    let whole_rows = plan.late_rows.is_some();
    let mut sources: Vec<Vec<Box<dyn Source>>> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let declared = node.table.require_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
        let cols = input_columns(node, whole_rows)?;
        let schema = Arc::new(declared.project(&cols.columns)?);
        let split = match (&ctx.splits, splittable[i]) {
            (Some(saved), _) => match saved.get(i).copied().unwrap_or(1) {
                1 => None,
                k => match registry.open_splits(&node.table, schema, split_ctx(i), k)? {
                    Some(splits) if splits.len() == k => Some(splits),
                    _ => {
                        return Err(RuntimeError::Checkpoint(format!(
                            "table '{}' was read in {k} splits when the checkpoint was taken, and cannot be now",
                            node.table.name
                        )))
                    }
                },
            },
            (None, true) => {
                registry.open_splits(&node.table, schema, split_ctx(i), n)?.filter(|s| (2..=n).contains(&s.len()))
            }
            (None, false) => None,
        };
        sources.push(match split {
            Some(splits) => splits,
            None => vec![open_source_in(registry, node, whole_rows, ctx)?],
        });
    }
    let counts: Vec<usize> = sources.iter().map(Vec::len).collect();
    let (plan, metrics, batch_size) = (plan.clone(), Arc::clone(&ctx.metrics), ctx.batch_size);
    // by default, only a query over a table read in splits runs in parallel
    let split = counts.iter().any(|c| *c > 1);
    let layout = match (&ctx.splits, ctx.parallelism_by_default && !split) {
        (Some(_), _) => weir_runtime::resumed_layout(&plan, n, &|i| counts.get(i).copied().unwrap_or(1)),
        (None, true) => None,
        (None, false) => weir_runtime::parallel_layout(&plan, n, &|i| counts.get(i).copied().unwrap_or(1)),
    };
    let Some(layout) = layout else {
        // on one thread: each table read whole
        let mut whole: Vec<Box<dyn Source>> = Vec::with_capacity(nodes.len());
        for (node, mut opened) in nodes.iter().zip(sources) {
            whole.push(match opened.len() {
                1 => opened.remove(0),
                _ => open_source_in(registry, node, whole_rows, ctx)?,
            });
        }
        let sources = whole;
        return Ok(Some(Box::new(move |sink| Pipeline::new(&plan, sources, sink, metrics))));
    };
    tracing::info!(parallelism = n, stages = layout.stages.len(), "running in parallel");
    Ok(Some(Box::new(move |sink| Pipeline::parallel(&plan, &layout, sources, sink, metrics, batch_size))))
}

/// Open the sink of `plan`: the declared table, or stdout in `client_format` for a query.
pub fn open_sink(plan: &StreamPlan, client_format: OutputFormat, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
    open_sink_in(builtin(), plan, client_format, ctx)
}

/// [`open_sink`] with the connectors of `registry`.
pub fn open_sink_in(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    client_format: OutputFormat,
    ctx: &ConnectorContext,
) -> Result<Box<dyn Sink>> {
    let schema = sink_schema(plan);
    match &plan.sink {
        SinkNode::Client => Ok(Box::new(FormatSink::new(std::io::stdout(), client_format, schema, "stdout", true))),
        SinkNode::Table(t) => open_table_sink(registry, t, schema, ctx),
    }
}

/// A runnable pipeline for `plan`: its source opened, results to `sink`, dropped rows to the
/// source's `'late_rows'` table if it names one.
pub fn build_pipeline(plan: &StreamPlan, sink: Box<dyn Sink>, ctx: &ConnectorContext) -> Result<Pipeline> {
    build_pipeline_in(builtin(), plan, sink, ctx, Host::default())
}

/// Open the sink for the rows the operators drop, if the plan's source names one.
pub fn open_late_rows(plan: &StreamPlan, ctx: &ConnectorContext) -> Result<Option<Box<dyn Sink>>> {
    open_late_rows_in(builtin(), plan, ctx)
}

fn open_late_rows_in(
    registry: &ConnectorRegistry,
    plan: &StreamPlan,
    ctx: &ConnectorContext,
) -> Result<Option<Box<dyn Sink>>> {
    match &plan.late_rows {
        None => Ok(None),
        Some(t) => Ok(Some(open_table_sink(registry, t, late_rows_schema(plan)?, ctx)?)),
    }
}

fn open_table_sink(
    registry: &ConnectorRegistry,
    t: &TableDef,
    schema: SchemaRef,
    ctx: &ConnectorContext,
) -> Result<Box<dyn Sink>> {
    check_writable(registry, t).map_err(RuntimeError::Sink)?;
    registry.open_sink(t, schema, ctx)
}
