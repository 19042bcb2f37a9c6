//! The `file` connector: CSV with a header row, newline-delimited JSON or Parquet, read from a
//! file or a directory of files (followed as they grow with `'source.monitor-interval'`), and
//! written as one file, or as part files (in `PARTITIONED BY` directories, rolled by size and
//! age) published by checkpoints.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{Schema, SchemaRef};
use weir_plan::{ConnectorError, ConnectorSpec, OptionSpec, OptionType, TableDef};
use weir_runtime::{Connector, ConnectorContext, Result, RuntimeError, Sink, Source};

use crate::{
    CsvSource, FileFormat, FileOptions, FormatSink, JsonSource, OutputFormat, ParquetSink, ParquetSource, PartFileSink,
    PartOptions,
};

/// The options every file-format table takes (`file` and `stdin`).
pub(crate) fn format_options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new(
            "format",
            OptionType::Choice(&["csv", "json", "ndjson", "jsonl", "parquet"]),
            "`csv` (with a header row), `json` (one object per line) or `parquet`; inferred from the file's extension if omitted",
        ),
        OptionSpec::new(
            "bad_data",
            OptionType::Choice(&["fail", "skip", "drop", "dead_letter", "dead-letter"]),
            "a malformed row: `fail` stops with file, line, column and value; `skip` skips and counts it; `dead_letter` appends it to the `dead_letter` file",
        )
        .default("fail"),
        OptionSpec::new("dead_letter", OptionType::Path, "csv and json: malformed rows are appended to this file (and `bad_data` defaults to `dead_letter`), one JSON object per line with the source, line, error and row text; run after run, so delete it to start afresh"),
        OptionSpec::new("csv.ignore-parse-errors", OptionType::Bool, "`true`: skip and count malformed CSV rows (Flink's option)")
            .default("false"),
        OptionSpec::new("json.ignore-parse-errors", OptionType::Bool, "`true`: skip and count malformed JSON rows (Flink's option)")
            .default("false"),
        OptionSpec::new("csv.field-delimiter", OptionType::Char, "the CSV field delimiter (`'\\t'` for a tab)")
            .default(","),
        OptionSpec::new("delimiter", OptionType::Char, "the same as `csv.field-delimiter`").default(","),
    ]
}

/// Check a file-format table's options together (the path need not exist yet).
pub(crate) fn check_options(table: &TableDef) -> Result<(), ConnectorError> {
    FileOptions::parse_declared(table).map(|_| ()).map_err(ConnectorError::invalid)
}

/// The table's columns a query does not read (`schema` holds those it reads): they are checked
/// too, so a row is malformed whichever columns are read.
fn unread_columns(table: &TableDef, schema: &SchemaRef) -> Result<SchemaRef> {
    let physical = table.physical_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
    Ok(Arc::new(Schema::new(
        physical.fields().iter().filter(|f| schema.field_with_name(f.name()).is_err()).cloned().collect::<Vec<_>>(),
    )))
}

/// Open a file-format source (`file` or `stdin`) for the columns of `schema`.
pub(crate) fn open_source(table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
    let options = FileOptions::from_table(table, ctx.base_dir.as_deref(), true).map_err(RuntimeError::Source)?;
    tracing::info!(table = %table.name, input = %options.display(), format = ?options.format, columns = schema.fields().len(), "reading");
    let unread = unread_columns(table, &schema)?;
    let metrics = Arc::clone(&ctx.metrics);
    Ok(match options.format {
        FileFormat::Csv => Box::new(CsvSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
        FileFormat::Json => Box::new(JsonSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
        FileFormat::Parquet => Box::new(ParquetSource::open(&options, schema, ctx.batch_size)?),
    })
}

/// The `file` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileConnector;

impl Connector for FileConnector {
    fn spec(&self) -> ConnectorSpec {
        let mut options = vec![OptionSpec::new("path", OptionType::Path, "the file, or a directory (csv and json: its files are read in name order, leaving out names starting with `.` or `_`); relative to the working directory, and a source file not found there is looked up next to the SQL script")
            .required()];
        options.extend(format_options());
        options.push(
            OptionSpec::new(
                "sink.rolling-policy.file-size",
                OptionType::MemorySize,
                "written as part files (a directory): a file is closed and the next one started once it has this many bytes (Flink's option)",
            )
            .default("128MB"),
        );
        options.push(
            OptionSpec::new(
                "sink.rolling-policy.rollover-interval",
                OptionType::Duration,
                "written as part files: … or once it has been open this long (wall clock; checked as rows are written)",
            )
            .default("30 min"),
        );
        options.push(
            OptionSpec::new(
                "sink.rolling-policy.inactivity-interval",
                OptionType::Duration,
                "written as part files: … or once nothing has been written to it for this long (checked as rows are written)",
            )
            .default("30 min"),
        );
        options.push(
            OptionSpec::new(
                "partition.default-name",
                OptionType::Text,
                "`PARTITIONED BY` tables: the directory of a NULL or empty partition value",
            )
            .default("__DEFAULT_PARTITION__"),
        );
        options.push(OptionSpec::new(
            "source.monitor-interval",
            OptionType::Duration,
            "csv and json (Flink's option): the input never ends; a file is followed as it grows, like `tail -f`; a directory is watched for new files, each read once; looked at this often",
        ));
        ConnectorSpec {
            name: "file",
            doc: "reads and writes CSV, JSON lines or Parquet files",
            source: true,
            sink: true,
            loose_keys: false,
            metadata: vec![],
            options,
        }
    }

    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        check_options(table)
    }

    fn bounded(&self, table: &TableDef) -> bool {
        // a followed file or a watched directory never ends
        table.option("source.monitor-interval").is_none()
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        if !table.partition_by.is_empty() {
            return Err(RuntimeError::Source(format!(
                "table '{}' is PARTITIONED BY (…): reading its partition directories is not supported yet (it can be written)",
                table.name
            )));
        }
        open_source(table, schema, ctx)
    }

    /// A file [`Connector::split_count`] opens in two splits or more at the parallelism.
    fn splittable(&self, table: &TableDef, ctx: &ConnectorContext) -> bool {
        self.split_count(table, ctx, ctx.parallelism.max(2)) > 1
    }

    /// A CSV or JSON-lines file (not followed) of at least 16 MiB per split: `n`; a Parquet file:
    /// as many runs of row groups as it has row groups and 16 MiB for (up to `n`); a directory
    /// of CSV or JSON-lines files (not watched): as many shares as it has files and 16 MiB for.
    fn split_count(&self, table: &TableDef, ctx: &ConnectorContext, n: usize) -> usize {
        let Ok(options) = FileOptions::from_table(table, ctx.base_dir.as_deref(), true) else { return 1 };
        let Some(path) = &options.path else { return 1 };
        let Ok(meta) = std::fs::metadata(path) else { return 1 };
        let min = crate::file_splits::MIN_SPLIT_BYTES;
        let count = if meta.is_dir() {
            let fixed = options.monitor.is_none() && options.format != FileFormat::Parquet;
            fixed.then(|| directory_shares(path, n, min).ok().flatten().map(|s| s.len())).flatten()
        } else if !meta.is_file() {
            None
        } else if options.format == FileFormat::Parquet {
            crate::parquet_source::most_row_group_runs(path, n, min).ok().flatten().map(|r| r.len())
        } else {
            (options.monitor.is_none() && meta.len() >= min * ctx.parallelism.max(2) as u64).then_some(n)
        };
        count.unwrap_or(1)
    }

    fn open_splits(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &ConnectorContext,
        n: usize,
    ) -> Result<Option<Vec<Box<dyn Source>>>> {
        if !self.splittable(table, ctx) {
            return Ok(None);
        }
        let options = FileOptions::from_table(table, ctx.base_dir.as_deref(), true).map_err(RuntimeError::Source)?;
        let Some(path) = &options.path else { return Ok(None) };
        if options.format == FileFormat::Parquet {
            return open_row_groups(table, &options, schema, ctx, n);
        }
        if path.is_dir() {
            return open_shares(table, &options, schema, ctx, n);
        }
        let cut = match options.format {
            FileFormat::Json => crate::file_splits::json_ranges,
            _ => crate::file_splits::csv_ranges,
        };
        let ranges = cut(path, n, crate::file_splits::MIN_SPLIT_BYTES)
            .map_err(|e| RuntimeError::Source(format!("{}: {e}", path.display())))?;
        let Some(ranges) = ranges else { return Ok(None) };
        let unread = unread_columns(table, &schema)?;
        tracing::info!(table = %table.name, input = %options.display(), splits = n, "reading in parallel ranges");
        let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(n);
        for range in ranges {
            let (schema, unread, metrics) = (Arc::clone(&schema), Arc::clone(&unread), Arc::clone(&ctx.metrics));
            sources.push(match options.format {
                FileFormat::Json => {
                    Box::new(JsonSource::open_range(&options, schema, unread, ctx.batch_size, metrics, range)?)
                }
                _ => Box::new(CsvSource::open_range(&options, schema, unread, ctx.batch_size, metrics, range)?),
            });
        }
        Ok(Some(sources))
    }

    fn open_sink(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
        let options = FileOptions::from_table(table, ctx.base_dir.as_deref(), false).map_err(RuntimeError::Sink)?;
        let Some(path) = &options.path else {
            return Err(RuntimeError::Sink(format!("table '{}' cannot be written to", table.name)));
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| RuntimeError::Sink(format!("{}: {e}", parent.display())))?;
        }
        let label = options.display();
        let rolling = [
            "sink.rolling-policy.file-size",
            "sink.rolling-policy.rollover-interval",
            "sink.rolling-policy.inactivity-interval",
        ];
        if ctx.checkpointing || !table.partition_by.is_empty() || rolling.iter().any(|k| table.option(k).is_some()) {
            tracing::info!(table = %table.name, output = %path.display(), "writing part files");
            let parts = part_options(table, &schema, ctx.checkpointing)?;
            return Ok(Box::new(PartFileSink::new(path, options.format, schema, label, parts)?));
        }
        let file = File::create(path).map_err(|e| RuntimeError::Sink(format!("{}: {e}", path.display())))?;
        tracing::info!(table = %table.name, output = %path.display(), "writing");
        let format = match options.format {
            FileFormat::Csv => OutputFormat::Csv,
            FileFormat::Json => OutputFormat::Json,
            FileFormat::Parquet => return Ok(Box::new(ParquetSink::new(file, schema, label)?)),
        };
        Ok(Box::new(FormatSink::new(BufWriter::with_capacity(1 << 20, file), format, schema, label, false)))
    }
}

/// How a table's part files are cut: its `PARTITIONED BY` columns, Flink's rolling policy.
fn part_options(table: &TableDef, schema: &SchemaRef, transactional: bool) -> Result<PartOptions> {
    let bad = |e: String| RuntimeError::Sink(format!("table '{}': {e}", table.name));
    let mut parts = PartOptions { transactional, ..PartOptions::default() };
    for column in &table.partition_by {
        let i = schema.index_of(column).map_err(|_| bad(format!("PARTITIONED BY: no column named '{column}'")))?;
        parts.partition_by.push(i);
    }
    if let Some(v) = table.option("sink.rolling-policy.file-size") {
        parts.file_size = weir_plan::connector::parse_memory_size(v).map_err(bad)?;
    }
    let duration = |key: &str, default: std::time::Duration| match table.option(key) {
        Some(v) => weir_plan::duration::parse_duration(v)
            .map(|nanos| std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
            .map_err(bad),
        None => Ok(default),
    };
    parts.rollover = duration("sink.rolling-policy.rollover-interval", parts.rollover)?;
    parts.inactivity = duration("sink.rolling-policy.inactivity-interval", parts.inactivity)?;
    if let Some(v) = table.option("partition.default-name") {
        parts.default_partition = v.to_string();
    }
    Ok(parts)
}

/// A Parquet file in runs of consecutive row groups: as many as `n`, fewer when the file has
/// fewer row groups or under 16 MiB for each.
fn open_row_groups(
    table: &TableDef,
    options: &FileOptions,
    schema: SchemaRef,
    ctx: &ConnectorContext,
    n: usize,
) -> Result<Option<Vec<Box<dyn Source>>>> {
    let Some(path) = &options.path else { return Ok(None) };
    let runs = crate::parquet_source::most_row_group_runs(path, n, crate::file_splits::MIN_SPLIT_BYTES)
        .map_err(RuntimeError::Source)?;
    let Some(runs) = runs else { return Ok(None) };
    tracing::info!(table = %table.name, input = %options.display(), splits = runs.len(), "reading row groups in parallel");
    let open = |groups| ParquetSource::open_row_groups(options, Arc::clone(&schema), ctx.batch_size, groups);
    Ok(Some(
        runs.into_iter().map(|groups| open(groups).map(|s| Box::new(s) as Box<dyn Source>)).collect::<Result<_>>()?,
    ))
}

/// The files of `dir` shared among as many as `n` readers (see [`crate::live::shares`]):
/// fewer when it has fewer files or under `min` bytes for each; `None` under two.
fn directory_shares(dir: &std::path::Path, n: usize, min: u64) -> Result<Option<Vec<Vec<std::path::PathBuf>>>> {
    let files = crate::live::DirFiles::listing(dir).map_err(RuntimeError::Source)?;
    let bytes: u64 = files.iter().map(|(_, len)| len).sum();
    let k = n.min(files.len()).min((bytes / min.max(1)).min(usize::MAX as u64) as usize);
    Ok(crate::live::shares(&files, k))
}

/// A directory of CSV or JSON-lines files read by several instances, each its share of the
/// files.
fn open_shares(
    table: &TableDef,
    options: &FileOptions,
    schema: SchemaRef,
    ctx: &ConnectorContext,
    n: usize,
) -> Result<Option<Vec<Box<dyn Source>>>> {
    let Some(dir) = &options.path else { return Ok(None) };
    let Some(shares) = directory_shares(dir, n, crate::file_splits::MIN_SPLIT_BYTES)? else { return Ok(None) };
    tracing::info!(table = %table.name, input = %options.display(), splits = shares.len(), "reading the files in parallel");
    let unread = unread_columns(table, &schema)?;
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(shares.len());
    for share in shares {
        let options = FileOptions { only: Some(share.into()), ..options.clone() };
        let (schema, unread, metrics) = (Arc::clone(&schema), Arc::clone(&unread), Arc::clone(&ctx.metrics));
        sources.push(match options.format {
            FileFormat::Json => Box::new(JsonSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
            _ => Box::new(CsvSource::open(&options, schema, unread, ctx.batch_size, metrics)?),
        });
    }
    Ok(Some(sources))
}
