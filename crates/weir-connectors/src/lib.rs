//! # weir-connectors — sources and sinks
//!
//! The connectors a pipeline reads from and writes to: the `file` connector (CSV with a header
//! row, newline-delimited JSON, Parquet) as a source and a sink, `stdin` (the same formats) as a
//! source, `datagen` (rows made up in process, paced, for the shell and tests), `nexmark`
//! (the Nexmark benchmark's people, auctions and bids, generated in process), stdout in
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
mod json_source;
mod live;
pub mod nexmark;
mod options;
mod parquet_source;
mod part_sink;
mod sinks;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::datatypes::SchemaRef;

use weir_runtime::{
    input_columns, late_rows_schema, sink_schema, Metrics, Pipeline, Result, RuntimeError, Sink, Source,
};
use weir_sql::{SinkNode, SourceNode, StreamPlan, TableDef};

pub use channel::{ChannelSink, ChannelSource};
pub use column::{parse_timestamp, ColumnBuffer, ColumnType, Value};
pub use csv_source::CsvSource;
pub use datagen::{DatagenOptions, DatagenSource};
pub use dead_letter::BadRows;
pub use json_source::JsonSource;
pub use options::{BadRowPolicy, FileFormat, FileOptions};
pub use parquet_source::ParquetSource;
pub use part_sink::PartFileSink;
pub use sinks::{CollectSink, DiscardSink, FormatSink, OutputFormat, ParquetSink};

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
    /// published by the checkpoint that covers it ([`PartFileSink`]).
    pub checkpointing: bool,
    /// When the query started: read when its first source opens, so that all its sources
    /// agree on it (paced `nexmark` tables of one query, a join of `auction` and `person`,
    /// share one timeline). See [`ConnectorContext::start_time`].
    pub started: Arc<OnceLock<StartTime>>,
}

impl ConnectorContext {
    /// Defaults: batches of 8192 rows, paths relative to the working directory.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { batch_size: 8192, base_dir: None, metrics, checkpointing: false, started: Arc::default() }
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

fn check_connector(table: &TableDef) -> std::result::Result<(), String> {
    match table.connector() {
        Some("file" | "stdin" | "datagen" | "nexmark") => Ok(()),
        Some("channel") => Err(format!(
            "table '{}' is read from the host program (connector 'channel'): run the query with build_pipeline_with, giving a ChannelSource for it",
            table.name
        )),
        Some(other) => {
            Err(format!("table '{}': unknown connector '{other}' (supported: file, stdin, datagen, nexmark, channel)", table.name))
        }
        None => Err(format!("table '{}' has no connector option", table.name)),
    }
}

/// A table rows are written to: a `file` table (not stdin, not generated rows).
fn check_writable(table: &TableDef) -> std::result::Result<(), String> {
    check_connector(table)?;
    match table.connector() {
        Some(c @ ("datagen" | "nexmark")) => {
            Err(format!("table '{}' has connector '{c}': its rows are generated, it cannot be written to", table.name))
        }
        _ => Ok(()),
    }
}

/// Check the connector options of a plan's source and sink before running anything.
pub fn validate(plan: &StreamPlan, ctx: &ConnectorContext) -> std::result::Result<(), String> {
    validate_with(plan, ctx, &[])
}

/// [`validate`], where the tables named in `host` are read from the host program.
pub fn validate_with(plan: &StreamPlan, ctx: &ConnectorContext, host: &[&str]) -> std::result::Result<(), String> {
    if plan.sources().iter().filter(|node| node.table.connector() == Some("stdin")).count() > 1 {
        return Err("a query can read standard input only once (two 'stdin' tables would split its lines)".into());
    }
    let mut inputs = Vec::new();
    for node in plan.sources() {
        let source = &node.table;
        if source.connector() == Some("channel") && host.contains(&source.name.as_str()) {
            continue;
        }
        check_connector(source)?;
        if source.connector() == Some("datagen") {
            DatagenOptions::parse(source)?;
        } else if source.connector() == Some("nexmark") {
            weir_sql::nexmark::NexmarkOptions::parse(source)?;
        } else {
            inputs.push(FileOptions::parse(source, ctx.base_dir.as_deref(), true)?);
        }
        let schema = source.require_schema().map_err(|e| e.to_string())?;
        for f in schema.fields() {
            ColumnType::new(f.data_type())
                .map_err(|e| format!("table '{}', column '{}': {e}", source.name, f.name()))?;
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    if let Some(t) = &plan.late_rows {
        check_writable(t)?;
        written.extend(FileOptions::parse(t, ctx.base_dir.as_deref(), false)?.path);
    }
    if let SinkNode::Table(t) = &plan.sink {
        check_writable(t)?;
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
    let table = &node.table;
    check_connector(table).map_err(RuntimeError::Source)?;
    let declared = table.require_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
    let cols = input_columns(node, whole_rows)?;
    // declared nullability is kept: sources refuse NULLs in NOT NULL columns
    let schema = Arc::new(declared.project(&cols.columns)?);
    if table.connector() == Some("datagen") {
        tracing::info!(table = %table.name, columns = schema.fields().len(), "generating rows");
        return Ok(Box::new(DatagenSource::open(table, schema, ctx.batch_size)?));
    }
    if table.connector() == Some("nexmark") {
        tracing::info!(table = %table.name, columns = schema.fields().len(), "generating nexmark events");
        return Ok(Box::new(nexmark::NexmarkSource::open(table, schema, ctx.batch_size, ctx.start_time())?));
    }
    let options = FileOptions::from_table(table, ctx.base_dir.as_deref(), true).map_err(RuntimeError::Source)?;
    tracing::info!(table = %table.name, input = %options.display(), format = ?options.format, columns = schema.fields().len(), "reading");
    // the table's other columns are checked too: a row is malformed whichever columns are read
    let physical = table.physical_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
    let unread = Arc::new(datafusion_common::arrow::datatypes::Schema::new(
        physical.fields().iter().filter(|f| schema.field_with_name(f.name()).is_err()).cloned().collect::<Vec<_>>(),
    ));
    let metrics = Arc::clone(&ctx.metrics);
    Ok(match options.format {
        FileFormat::Csv => Box::new(CsvSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
        FileFormat::Json => Box::new(JsonSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
        FileFormat::Parquet => Box::new(ParquetSource::open(&options, schema, ctx.batch_size)?),
    })
}

/// A runnable pipeline for `plan` whose `channel` tables are read from `host` (by table name),
/// results to `sink` (e.g. a [`ChannelSink`]); other tables are opened as usual.
pub fn build_pipeline_with(
    plan: &StreamPlan,
    sink: Box<dyn Sink>,
    ctx: &ConnectorContext,
    mut host: HashMap<String, ChannelSource>,
) -> Result<Pipeline> {
    let names: Vec<&str> = host.keys().map(String::as_str).collect();
    validate_with(plan, ctx, &names).map_err(RuntimeError::Source)?;
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
            None => sources.push(open_source(node, plan.late_rows.is_some(), ctx)?),
        }
    }
    let pipeline = Pipeline::new(plan, sources, sink, Arc::clone(&ctx.metrics))?;
    match open_late_rows(plan, ctx)? {
        Some(late) => pipeline.with_late_rows(plan, late),
        None => Ok(pipeline),
    }
}

/// Open the sink of `plan`: the declared table, or stdout in `client_format` for a query.
pub fn open_sink(plan: &StreamPlan, client_format: OutputFormat, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
    let schema = sink_schema(plan);
    match &plan.sink {
        SinkNode::Client => Ok(Box::new(FormatSink::new(std::io::stdout(), client_format, schema, "stdout", true))),
        SinkNode::Table(t) => open_file_sink(t, schema, ctx),
    }
}

/// A runnable pipeline for `plan`: its source opened, results to `sink`, dropped rows to the
/// source's `'late_rows'` table if it names one.
pub fn build_pipeline(plan: &StreamPlan, sink: Box<dyn Sink>, ctx: &ConnectorContext) -> Result<Pipeline> {
    let sources = open_sources(plan, ctx)?;
    let pipeline = Pipeline::new(plan, sources, sink, Arc::clone(&ctx.metrics))?;
    match open_late_rows(plan, ctx)? {
        Some(late) => pipeline.with_late_rows(plan, late),
        None => Ok(pipeline),
    }
}

/// Open the sink for the rows the operators drop, if the plan's source names one.
pub fn open_late_rows(plan: &StreamPlan, ctx: &ConnectorContext) -> Result<Option<Box<dyn Sink>>> {
    match &plan.late_rows {
        None => Ok(None),
        Some(t) => Ok(Some(open_file_sink(t, late_rows_schema(plan)?, ctx)?)),
    }
}

fn open_file_sink(t: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
    let options = FileOptions::from_table(t, ctx.base_dir.as_deref(), false).map_err(RuntimeError::Sink)?;
    let Some(path) = &options.path else {
        return Err(RuntimeError::Sink(format!("table '{}' cannot be written to", t.name)));
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| RuntimeError::Sink(format!("{}: {e}", parent.display())))?;
    }
    let label = options.display();
    if ctx.checkpointing {
        tracing::info!(table = %t.name, output = %path.display(), "writing part files");
        return Ok(Box::new(PartFileSink::new(path, options.format, schema, label)?));
    }
    let file = File::create(path).map_err(|e| RuntimeError::Sink(format!("{}: {e}", path.display())))?;
    tracing::info!(table = %t.name, output = %path.display(), "writing");
    let format = match options.format {
        FileFormat::Csv => OutputFormat::Csv,
        FileFormat::Json => OutputFormat::Json,
        FileFormat::Parquet => return Ok(Box::new(ParquetSink::new(file, schema, label)?)),
    };
    Ok(Box::new(FormatSink::new(BufWriter::with_capacity(1 << 20, file), format, schema, label, false)))
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
