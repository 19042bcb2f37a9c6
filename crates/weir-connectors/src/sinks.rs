//! Writing results: csv (header line), json (one object per line) or a table for people, to
//! stdout or a file; and a sink that collects batches in memory for embedding and tests.

use std::io::Write;
use std::sync::{Arc, Mutex};

use datafusion_common::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::json::writer::{LineDelimited, Writer as JsonWriter, WriterBuilder as JsonWriterBuilder};
use datafusion_common::arrow::record_batch::RecordBatch;
use datafusion_common::arrow::util::pretty::pretty_format_batches;
use weir_runtime::{Result, RuntimeError, Sink};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Boxed tables, one per emitted batch (for people).
    Table,
    /// CSV with one header line.
    Csv,
    /// One JSON object per line, timestamps as ISO-8601 strings.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" | "ndjson" | "jsonl" => Ok(Self::Json),
            other => Err(format!("unknown format '{other}' (use table, csv or json)")),
        }
    }
}

enum EncodeError {
    Io(std::io::Error),
    Other(String),
}

/// A sink writing one of the [`OutputFormat`]s to any writer. Each batch is encoded whole and
/// then written, so rows become visible as soon as a window fires.
pub struct FormatSink<W: Write + Send> {
    out: W,
    format: OutputFormat,
    schema: SchemaRef,
    label: String,
    wrote: bool,
    flush_each_batch: bool,
    scratch: Vec<u8>,
}

impl<W: Write + Send> FormatSink<W> {
    /// Write `format` to `out`. `label` names the destination in errors; with
    /// `flush_each_batch`, `out` is flushed after every batch.
    pub fn new(
        out: W,
        format: OutputFormat,
        schema: SchemaRef,
        label: impl Into<String>,
        flush_each_batch: bool,
    ) -> Self {
        Self { out, format, schema, label: label.into(), wrote: false, flush_each_batch, scratch: Vec::new() }
    }

    fn encode(&mut self, batch: &RecordBatch, header: bool) -> Result<()> {
        match self.encode_inner(batch, header) {
            Ok(()) => Ok(()),
            Err(EncodeError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(RuntimeError::OutputClosed),
            Err(EncodeError::Io(e)) => Err(RuntimeError::Sink(format!("{}: {e}", self.label))),
            Err(EncodeError::Other(e)) => Err(RuntimeError::Sink(format!("{}: {e}", self.label))),
        }
    }

    fn encode_inner(&mut self, batch: &RecordBatch, header: bool) -> std::result::Result<(), EncodeError> {
        self.scratch.clear();
        match self.format {
            OutputFormat::Csv => {
                let mut w = CsvWriterBuilder::new().with_header(header).build(&mut self.scratch);
                w.write(batch).map_err(|e| EncodeError::Other(e.to_string()))?;
            }
            OutputFormat::Json => {
                let mut w: JsonWriter<_, LineDelimited> =
                    JsonWriterBuilder::new().with_explicit_nulls(true).build(&mut self.scratch);
                w.write(batch).map_err(|e| EncodeError::Other(e.to_string()))?;
                w.finish().map_err(|e| EncodeError::Other(e.to_string()))?;
            }
            OutputFormat::Table => {
                let text = pretty_format_batches(std::slice::from_ref(batch))
                    .map_err(|e| EncodeError::Other(e.to_string()))?;
                writeln!(self.scratch, "{text}").map_err(EncodeError::Io)?;
            }
        }
        self.out.write_all(&self.scratch).map_err(EncodeError::Io)?;
        if self.flush_each_batch {
            self.out.flush().map_err(EncodeError::Io)?;
        }
        Ok(())
    }
}

impl<W: Write + Send> Sink for FormatSink<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let header = !self.wrote;
        self.wrote = true;
        self.encode(batch, header)
    }

    fn finish(&mut self) -> Result<()> {
        if !self.wrote && self.format != OutputFormat::Json {
            // an empty result still gets its header line (csv) or header box (table)
            let empty = RecordBatch::new_empty(Arc::clone(&self.schema));
            self.encode(&empty, true)?;
        }
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(RuntimeError::OutputClosed),
            Err(e) => Err(RuntimeError::Sink(format!("{}: {e}", self.label))),
            Ok(()) => Ok(()),
        }
    }
}

/// Writes a Parquet file (snappy-compressed); the file is complete once the sink finishes.
pub struct ParquetSink<W: Write + Send = std::fs::File> {
    writer: Option<parquet::arrow::ArrowWriter<W>>,
    label: String,
    /// Where the file's size so far (written, and buffered for the row group in progress) is
    /// reported after each batch.
    size: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl<W: Write + Send> ParquetSink<W> {
    /// Write batches of `schema` to `out` (a file).
    pub fn new(out: W, schema: SchemaRef, label: String) -> Result<Self> {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(out, schema, Some(props))
            .map_err(|e| RuntimeError::Sink(format!("{label}: {e}")))?;
        Ok(Self { writer: Some(writer), label, size: None })
    }

    /// Report the file's size so far into `size` after each batch (to roll files by size).
    pub fn reporting_size(mut self, size: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.size = Some(size);
        self
    }
}

impl<W: Write + Send> Sink for ParquetSink<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => {
                w.write(batch).map_err(|e| RuntimeError::Sink(format!("{}: {e}", self.label)))?;
                if let Some(size) = &self.size {
                    let bytes = w.bytes_written() + w.in_progress_size();
                    size.store(bytes as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            }
            None => Err(RuntimeError::Sink(format!("{}: write after finish", self.label))),
        }
    }

    fn finish(&mut self) -> Result<()> {
        match self.writer.take() {
            Some(w) => w.close().map(|_| ()).map_err(|e| RuntimeError::Sink(format!("{}: {e}", self.label))),
            None => Ok(()),
        }
    }
}

/// Collects result batches in memory (for embedding and tests).
#[derive(Clone, Default)]
pub struct CollectSink {
    batches: Arc<Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches collected so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Sink for CollectSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.batches.lock().map_err(|_| RuntimeError::Internal("collector lock poisoned".into()))?.push(batch.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Drops every batch (`EXPLAIN ANALYZE` of a query, benchmarks): the pipeline still counts
/// the rows out.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
