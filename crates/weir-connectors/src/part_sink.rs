//! The part-file sink: a directory of part files, optionally in `col=value/` partition
//! directories (`PARTITIONED BY`), rolled by size and age, published by checkpoints.
//!
//! ```text
//!   write ──► <partition>/.inprogress-<run>-<n>.csv   (hidden; readers ignore it), one open
//!             file per partition; rolled (closed, a new one opened) once it reaches
//!             'sink.rolling-policy.file-size' or has been open 'sink.rolling-policy.rollover-interval'
//!   checkpoint k prepares: close the open files, fsync, name each part-<k>-<n>.csv in the manifest
//!   checkpoint k completes (manifest written): rename .inprogress-… ──► part-<k>-<n>.csv
//!   restart from checkpoint k: rename what k prepared if still in progress (the crash came
//!   between the manifest and the rename), delete every other in-progress file (rows after k,
//!   which the restart produces again)
//! ```
//!
//! Readers see only `part-*` files, and only rows covered by a completed checkpoint. Without
//! checkpoints, a file is published as soon as it is closed (rolled, or at the end).
//!
//! A partition directory is named as Flink and Hive name them: `dt=2024-01-01/hm=10%3A00`
//! (characters that are special in paths escaped as `%XX`; a NULL or empty value is the
//! default partition name). The partition columns are not written into the files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::array::{Array, UInt32Array};
use datafusion_common::arrow::compute::{cast, take_record_batch};
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::record_batch::RecordBatch;
use weir_runtime::{Result, RuntimeError, Sink};

use crate::options::FileFormat;
use crate::sinks::{FormatSink, OutputFormat, ParquetSink};

const IN_PROGRESS: &str = ".inprogress-";
const PART: &str = "part-";
/// Files open at once: past this, the one written to longest ago is closed (rolled).
const MAX_OPEN_FILES: usize = 128;
/// Each open file's write buffer.
const BUFFER_BYTES: usize = 64 << 10;

/// How part files are cut and published.
#[derive(Debug, Clone)]
pub struct PartOptions {
    /// Columns (of the written rows) whose values name a row's directory, in order.
    pub partition_by: Vec<usize>,
    /// A file is rolled once it has this many bytes.
    pub file_size: u64,
    /// … or once it has been open this long.
    pub rollover: Duration,
    /// … or once nothing has been written to it for this long.
    pub inactivity: Duration,
    /// The directory name of a NULL or empty partition value.
    pub default_partition: String,
    /// Files published by checkpoints (exactly-once); otherwise each as soon as it is closed.
    pub transactional: bool,
}

impl Default for PartOptions {
    /// Flink's defaults: 128 MiB, 30 minutes open or idle, `__DEFAULT_PARTITION__`; published
    /// by checkpoints.
    fn default() -> Self {
        Self {
            partition_by: Vec::new(),
            file_size: 128 << 20,
            rollover: Duration::from_secs(30 * 60),
            inactivity: Duration::from_secs(30 * 60),
            default_partition: "__DEFAULT_PARTITION__".into(),
            transactional: true,
        }
    }
}

/// A file moved into place when its checkpoint completes (paths relative to the directory).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Publish {
    from: String,
    to: String,
}

/// What a checkpoint prepared: its number and the files it publishes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Prepared {
    checkpoint: u64,
    files: Vec<Publish>,
}

/// The checkpoint of a part file's name (`part-<checkpoint>-<n>.<ext>`).
fn checkpoint_of(name: &str) -> Option<u64> {
    name.strip_prefix(PART)?.split('-').next()?.parse().ok()
}

/// Counts the bytes written through it (to roll files by size).
struct Counted<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A file being written: its path (relative to the directory), writer, size and age.
struct OpenFile {
    name: String,
    /// The run's number of the file.
    number: u64,
    sink: Box<dyn Sink>,
    bytes: Arc<AtomicU64>,
    opened: Instant,
    written: Instant,
}

/// `value` as a partition directory names it: the characters special in paths (and `%`, `=`)
/// as `%XX`, as Flink's and Hive's `escapePathName` do.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let special = c.is_control()
            || matches!(
                c,
                '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '\u{7f}' | '{' | '[' | ']' | '^'
            );
        if special {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes part files into a directory, each published by the checkpoint that covers it.
pub struct PartFileSink {
    dir: PathBuf,
    format: FileFormat,
    /// The rows' schema, and the files' (without the partition columns).
    schema: SchemaRef,
    file_schema: SchemaRef,
    /// The columns written into the files.
    file_columns: Vec<usize>,
    options: PartOptions,
    label: String,
    /// Per partition directory (`""` without partitions), the file being written.
    open: HashMap<String, OpenFile>,
    /// Files closed since the last checkpoint prepared.
    closed: Vec<String>,
    /// Directories whose entries changed since (new files, new partition directories): made
    /// durable before a checkpoint names their files.
    changed: std::collections::BTreeSet<PathBuf>,
    /// Distinguishes this run's in-progress files from a crashed run's.
    run: String,
    files: u64,
}

impl PartFileSink {
    /// Part files of `format` in `dir` (created if missing; `label` names the table in errors),
    /// cut and published as `options` say.
    pub fn new(dir: &Path, format: FileFormat, schema: SchemaRef, label: String, options: PartOptions) -> Result<Self> {
        if dir.is_file() {
            return Err(RuntimeError::Sink(format!(
                "{label}: part files are written into a directory, but '{}' is a file (remove it, or name a directory)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Sink(format!("{}: {e}", dir.display())))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run = format!("{}-{nanos}", std::process::id());
        let file_columns: Vec<usize> =
            (0..schema.fields().len()).filter(|c| !options.partition_by.contains(c)).collect();
        let file_schema = Arc::new(schema.project(&file_columns)?);
        let sink = Self {
            dir: dir.to_path_buf(),
            format,
            schema,
            file_schema,
            file_columns,
            options,
            label,
            open: HashMap::new(),
            closed: Vec::new(),
            changed: std::collections::BTreeSet::new(),
            run,
            files: 0,
        };
        if !sink.options.transactional {
            // a run without checkpoints replaces the table's rows, as writing one file does
            sink.delete(|name| name.starts_with(IN_PROGRESS) || name.starts_with(PART))?;
        }
        Ok(sink)
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
            FileFormat::Parquet => "parquet",
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Sink(format!("{}: {e}", self.label))
    }

    /// The partition directory of each row (`""` without partitions).
    fn partitions(&self, batch: &RecordBatch) -> Result<Vec<String>> {
        let n = batch.num_rows();
        let mut paths = vec![String::new(); n];
        for &c in &self.options.partition_by {
            let name = escape(self.schema.field(c).name());
            let values = cast(batch.column(c), &DataType::Utf8)?;
            let values = values.as_any().downcast_ref::<datafusion_common::arrow::array::StringArray>();
            for (i, path) in paths.iter_mut().enumerate() {
                let value = values.filter(|v| v.is_valid(i)).map(|v| v.value(i)).filter(|v| !v.is_empty());
                let value = value.map_or_else(|| escape(&self.options.default_partition), escape);
                path.push_str(&format!("{name}={value}/"));
            }
        }
        Ok(paths)
    }

    /// The open file of partition `partition`, opened if there is none.
    fn file(&mut self, partition: &str) -> Result<&mut OpenFile> {
        if !self.open.contains_key(partition) {
            if self.open.len() >= MAX_OPEN_FILES {
                let idle = self.open.iter().min_by_key(|(_, f)| f.written).map(|(p, _)| p.clone());
                if let Some(idle) = idle {
                    self.close(&idle)?;
                }
            }
            self.files += 1;
            let name = format!("{partition}{IN_PROGRESS}{}-{}.{}", self.run, self.files, self.extension());
            let path = self.dir.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| self.err(e))?;
                // the file's directory, and each partition directory up to the table's
                let mut dir = parent.to_path_buf();
                while dir.starts_with(&self.dir) && self.changed.insert(dir.clone()) {
                    match dir.parent() {
                        Some(up) => dir = up.to_path_buf(),
                        None => break,
                    }
                }
            }
            let file = File::create(&path).map_err(|e| self.err(e))?;
            let bytes = Arc::new(AtomicU64::new(0));
            let out = Counted { inner: BufWriter::with_capacity(BUFFER_BYTES, file), bytes: Arc::clone(&bytes) };
            let (schema, label) = (Arc::clone(&self.file_schema), format!("{} ({name})", self.label));
            let sink: Box<dyn Sink> = match self.format {
                // (a Parquet file holds its row group in memory: it reports its size itself)
                FileFormat::Parquet => {
                    let out = Counted { inner: out.inner, bytes: Arc::new(AtomicU64::new(0)) };
                    Box::new(ParquetSink::new(out, schema, label)?.reporting_size(Arc::clone(&bytes)))
                }
                FileFormat::Csv => Box::new(FormatSink::new(out, OutputFormat::Csv, schema, label, false)),
                FileFormat::Json => Box::new(FormatSink::new(out, OutputFormat::Json, schema, label, false)),
            };
            let number = self.files;
            let now = Instant::now();
            self.open.insert(partition.to_string(), OpenFile { name, number, sink, bytes, opened: now, written: now });
        }
        self.open.get_mut(partition).ok_or_else(|| RuntimeError::Internal("no part file open".into()))
    }

    /// Close partition `partition`'s file, made durable: published now without checkpoints,
    /// else by the next checkpoint.
    fn close(&mut self, partition: &str) -> Result<()> {
        let Some(mut file) = self.open.remove(partition) else { return Ok(()) };
        file.sink.finish()?;
        let path = self.dir.join(&file.name);
        File::open(&path).and_then(|f| f.sync_all()).map_err(|e| self.err(e))?;
        if self.options.transactional {
            self.closed.push(file.name);
        } else {
            let to = self.published_name(&file.name, 0, file.number);
            self.rename(&file.name, &to)?;
        }
        Ok(())
    }

    fn close_all(&mut self) -> Result<()> {
        let mut partitions: Vec<String> = self.open.keys().cloned().collect();
        partitions.sort();
        for p in partitions {
            self.close(&p)?;
        }
        Ok(())
    }

    /// `part-<checkpoint>-<n>.<ext>` in the directory of in-progress file `from`.
    fn published_name(&self, from: &str, checkpoint: u64, n: u64) -> String {
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        let slash = if dir.is_empty() { "" } else { "/" };
        format!("{dir}{slash}{PART}{checkpoint:010}-{n:04}.{}", self.extension())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to)).map_err(|e| self.err(e))?;
        let parent = self.dir.join(to);
        let parent = parent.parent().unwrap_or(&self.dir);
        File::open(parent).and_then(|d| d.sync_all()).map_err(|e| self.err(e))
    }

    /// Delete the files `doomed` picks by name, in the directory and its partition directories.
    fn delete(&self, doomed: impl Fn(&str) -> bool) -> Result<()> {
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| self.err(e))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.err(e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let kind = entry.file_type().map_err(|e| self.err(e))?;
                if kind.is_dir() && name.contains('=') {
                    dirs.push(entry.path());
                } else if kind.is_file() && doomed(&name) {
                    std::fs::remove_file(entry.path()).map_err(|e| self.err(e))?;
                }
            }
        }
        Ok(())
    }
}

impl Sink for PartFileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // the rows of each partition, in the order they first come
        let paths = self.partitions(batch)?;
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let g = *at.entry(p.as_str()).or_insert_with(|| {
                groups.push((p.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i as u32);
        }
        let rows = batch.project(&self.file_columns)?;
        let whole = groups.len() == 1;
        for (partition, indices) in groups {
            let part = if whole { rows.clone() } else { take_record_batch(&rows, &UInt32Array::from(indices))? };
            let file = self.file(&partition)?;
            file.sink.write(&part)?;
            file.written = Instant::now();
            if file.bytes.load(Ordering::Relaxed) >= self.options.file_size {
                self.close(&partition)?;
            }
        }
        // files open longer than the rollover interval, or idle longer than the inactivity one
        let (rollover, inactivity) = (self.options.rollover, self.options.inactivity);
        let old: Vec<String> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= rollover || f.written.elapsed() >= inactivity)
            .map(|(p, _)| p.clone())
            .collect();
        for p in old {
            self.close(&p)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.close_all()
    }

    fn prepare_commit(&mut self, id: u64) -> Result<serde_json::Value> {
        self.close_all()?;
        // the in-progress files' names (and new partition directories) made durable before
        // the checkpoint's manifest names them
        for dir in std::mem::take(&mut self.changed).iter().rev() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| self.err(e))?;
        }
        let files: Vec<Publish> = std::mem::take(&mut self.closed)
            .into_iter()
            .enumerate()
            .map(|(n, from)| Publish { to: self.published_name(&from, id, n as u64), from })
            .collect();
        serde_json::to_value(Prepared { checkpoint: id, files }).map_err(|e| self.err(e))
    }

    fn commit(&mut self, prepared: &serde_json::Value) -> Result<()> {
        if prepared.is_null() {
            return Ok(());
        }
        let prepared: Prepared = weir_runtime::checkpoint::from_json(prepared, &self.label)?;
        for p in &prepared.files {
            let (from, to) = (self.dir.join(&p.from), self.dir.join(&p.to));
            if from.exists() {
                self.rename(&p.from, &p.to)?;
            } else if !to.exists() {
                return Err(self.err(format!(
                    "the checkpoint's part file {} is missing (neither {} nor {} exists)",
                    p.to, p.from, p.to
                )));
            }
        }
        Ok(())
    }

    fn recover(&mut self, prepared: Option<&serde_json::Value>) -> Result<()> {
        match prepared {
            Some(p) if !p.is_null() => {
                self.commit(p)?;
                let checkpoint = weir_runtime::checkpoint::from_json::<Prepared>(p, &self.label)?.checkpoint;
                // rows written after the checkpoint (in progress, or published by a later
                // checkpoint that is being skipped): the restart writes them again
                self.delete(|name| name.starts_with(IN_PROGRESS) || checkpoint_of(name).is_some_and(|c| c > checkpoint))
            }
            // a fresh start replaces the table's rows, as writing a single file does
            _ => self.delete(|name| name.starts_with(IN_PROGRESS) || name.starts_with(PART)),
        }
    }

    fn transactional(&self) -> bool {
        self.options.transactional
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::Int64Array;
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn rows_become_visible_only_when_their_checkpoint_commits_and_a_restart_drops_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let mut sink =
            PartFileSink::new(&dir, FileFormat::Csv, Arc::clone(&schema), "t".into(), PartOptions::default()).unwrap();
        sink.recover(None).unwrap();
        sink.write(&batch).unwrap();
        let prepared = sink.prepare_commit(1).unwrap();
        assert!(names(&dir).iter().all(|n| n.starts_with(IN_PROGRESS)), "{:?}", names(&dir));
        sink.commit(&prepared).unwrap();
        assert_eq!(names(&dir), vec!["part-0000000001-0000.csv"]);
        assert_eq!(std::fs::read_to_string(dir.join("part-0000000001-0000.csv")).unwrap(), "v\n1\n2\n");
        // rows after checkpoint 1, then checkpoint 2 prepared but the process dies before it
        // commits, and rows after that
        sink.write(&batch).unwrap();
        let prepared2 = sink.prepare_commit(2).unwrap();
        sink.write(&batch).unwrap();
        drop(sink);
        // restart from checkpoint 2 (its manifest was written): its file is published, the rest go
        let mut again =
            PartFileSink::new(&dir, FileFormat::Csv, Arc::clone(&schema), "t".into(), PartOptions::default()).unwrap();
        again.recover(Some(&prepared2)).unwrap();
        assert_eq!(names(&dir), vec!["part-0000000001-0000.csv", "part-0000000002-0000.csv"]);
        // recovering twice is harmless
        again.recover(Some(&prepared2)).unwrap();
        assert_eq!(names(&dir).len(), 2);
        // falling back to checkpoint 1 (2 was found damaged) takes back what 2 published
        again.recover(Some(&prepared)).unwrap();
        assert_eq!(names(&dir), vec!["part-0000000001-0000.csv"]);
        // a fresh start empties the directory
        again.recover(None).unwrap();
        assert!(names(&dir).is_empty());
    }

    fn all_files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    fn rows(day: &[Option<&str>], v: &[i64]) -> RecordBatch {
        use datafusion_common::arrow::array::StringArray;
        let schema =
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true), Field::new("dt", DataType::Utf8, true)]));
        let columns: Vec<datafusion_common::arrow::array::ArrayRef> =
            vec![Arc::new(Int64Array::from(v.to_vec())), Arc::new(StringArray::from(day.to_vec()))];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn partitions_are_directories_and_their_column_is_not_in_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let batch = rows(&[Some("2024-01-01"), Some("10:00/x"), None, Some("2024-01-01")], &[1, 2, 3, 4]);
        let options = PartOptions { partition_by: vec![1], ..PartOptions::default() };
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        sink.recover(None).unwrap();
        sink.write(&batch).unwrap();
        let prepared = sink.prepare_commit(3).unwrap();
        sink.commit(&prepared).unwrap();
        let files = all_files(&dir);
        assert_eq!(
            files,
            vec![
                "dt=10%3A00%2Fx/part-0000000003-0000.csv",
                "dt=2024-01-01/part-0000000003-0001.csv",
                "dt=__DEFAULT_PARTITION__/part-0000000003-0002.csv",
            ],
        );
        assert_eq!(std::fs::read_to_string(dir.join(&files[1])).unwrap(), "v\n1\n4\n");
        // a restart from no checkpoint empties every partition
        let options = PartOptions { partition_by: vec![1], ..PartOptions::default() };
        let mut again = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        again.recover(None).unwrap();
        assert!(all_files(&dir).is_empty());
    }

    #[test]
    fn files_roll_by_size_and_age_and_without_checkpoints_are_published_when_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let batch = rows(&[Some("a"), Some("a")], &[10, 20]);
        // a file of more than 8 bytes is rolled: each batch ("v\n10\n20\n") makes one file
        let options = PartOptions { file_size: 8, transactional: false, ..PartOptions::default() };
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        sink.write(&batch).unwrap();
        sink.write(&batch).unwrap();
        assert_eq!(all_files(&dir), vec!["part-0000000000-0001.csv", "part-0000000000-0002.csv"]);
        assert_eq!(std::fs::read_to_string(dir.join("part-0000000000-0001.csv")).unwrap(), "v,dt\n10,a\n20,a\n");
        // a zero rollover interval rolls after every write; the end publishes the last one
        let options = PartOptions { rollover: Duration::ZERO, transactional: false, ..PartOptions::default() };
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        assert!(all_files(&dir).is_empty(), "a run without checkpoints replaces the files");
        sink.write(&batch).unwrap();
        sink.write(&batch).unwrap();
        sink.finish().unwrap();
        assert_eq!(all_files(&dir).len(), 2);
        // a file idle for the inactivity interval is closed at the next write, to any partition
        let options = PartOptions {
            partition_by: vec![1],
            inactivity: Duration::from_millis(50),
            transactional: false,
            ..PartOptions::default()
        };
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        sink.write(&rows(&[Some("idle")], &[1])).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        sink.write(&rows(&[Some("busy")], &[2])).unwrap();
        assert_eq!(sink.open.len(), 1, "the idle partition's file is closed");
        assert!(all_files(&dir).iter().any(|f| f.starts_with("dt=idle/part-")), "{:?}", all_files(&dir));
        sink.finish().unwrap();
        // with checkpoints, rolled files wait for the checkpoint
        let options = PartOptions { file_size: 8, ..PartOptions::default() };
        let mut sink = PartFileSink::new(&dir, FileFormat::Parquet, batch.schema(), "t".into(), options).unwrap();
        sink.recover(None).unwrap();
        sink.write(&batch).unwrap();
        sink.write(&batch).unwrap();
        assert!(all_files(&dir).iter().all(|n| n.starts_with(IN_PROGRESS)), "{:?}", all_files(&dir));
        let prepared = sink.prepare_commit(1).unwrap();
        sink.commit(&prepared).unwrap();
        assert_eq!(all_files(&dir), vec!["part-0000000001-0000.parquet", "part-0000000001-0001.parquet"]);
    }

    #[test]
    fn at_most_so_many_files_are_open_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let days: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
        let batch = rows(&days.iter().map(|d| Some(d.as_str())).collect::<Vec<_>>(), &[7; 200]);
        let options = PartOptions { partition_by: vec![1], transactional: false, ..PartOptions::default() };
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, batch.schema(), "t".into(), options).unwrap();
        sink.write(&batch).unwrap();
        assert_eq!(sink.open.len(), MAX_OPEN_FILES);
        assert_eq!(all_files(&dir).iter().filter(|f| f.contains("/part-")).count(), 200 - MAX_OPEN_FILES);
        sink.finish().unwrap();
        assert_eq!(all_files(&dir).len(), 200);
        assert!(all_files(&dir).iter().all(|f| f.contains("/part-")));
    }
}
