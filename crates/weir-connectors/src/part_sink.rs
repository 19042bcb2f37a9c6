//! The exactly-once file sink: a directory of part files, published by checkpoints.
//!
//! ```text
//!   write ──► .inprogress-<run>-<n>.csv        (hidden; readers ignore it)
//!   checkpoint k prepares: close the file, fsync, name it part-<k>-<n>.csv in the manifest
//!   checkpoint k completes (manifest written): rename .inprogress-… ──► part-<k>-<n>.csv
//!   restart from checkpoint k: rename what k prepared if still in progress (the crash came
//!   between the manifest and the rename), delete every other in-progress file (rows after k,
//!   which the restart produces again)
//! ```
//!
//! Readers see only `part-*` files, and only rows covered by a completed checkpoint.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use weir_runtime::{Result, RuntimeError, Sink};

use crate::options::FileFormat;
use crate::sinks::{FormatSink, OutputFormat, ParquetSink};

const IN_PROGRESS: &str = ".inprogress-";
const PART: &str = "part-";

/// A file moved into place when its checkpoint completes.
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

/// Writes part files into a directory, each published by the checkpoint that covers it.
pub struct PartFileSink {
    dir: PathBuf,
    format: FileFormat,
    schema: SchemaRef,
    label: String,
    /// The file being written: its name and writer.
    current: Option<(String, Box<dyn Sink>)>,
    /// Files closed since the last checkpoint prepared.
    closed: Vec<String>,
    /// Distinguishes this run's in-progress files from a crashed run's.
    run: String,
    files: u64,
}

impl PartFileSink {
    /// Part files of `format` in `dir` (created if missing; `label` names the table in errors).
    pub fn new(dir: &Path, format: FileFormat, schema: SchemaRef, label: String) -> Result<Self> {
        if dir.is_file() {
            return Err(RuntimeError::Sink(format!(
                "{label}: with checkpoints a file table is written as a directory of part files, but '{}' is a file (remove it, or name a directory)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Sink(format!("{}: {e}", dir.display())))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let run = format!("{}-{nanos}", std::process::id());
        Ok(Self { dir: dir.to_path_buf(), format, schema, label, current: None, closed: Vec::new(), run, files: 0 })
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

    fn open(&mut self) -> Result<&mut Box<dyn Sink>> {
        if self.current.is_none() {
            self.files += 1;
            let name = format!("{IN_PROGRESS}{}-{}.{}", self.run, self.files, self.extension());
            let file = File::create(self.dir.join(&name)).map_err(|e| self.err(e))?;
            let schema = self.schema.clone();
            let label = format!("{} ({name})", self.label);
            let sink: Box<dyn Sink> = match self.format {
                FileFormat::Parquet => Box::new(ParquetSink::new(file, schema, label)?),
                FileFormat::Csv | FileFormat::Json => {
                    let format = if self.format == FileFormat::Csv { OutputFormat::Csv } else { OutputFormat::Json };
                    Box::new(FormatSink::new(BufWriter::with_capacity(1 << 20, file), format, schema, label, false))
                }
            };
            self.current = Some((name, sink));
        }
        match &mut self.current {
            Some((_, sink)) => Ok(sink),
            None => Err(RuntimeError::Internal("no part file open".into())),
        }
    }

    /// Close the file being written, made durable.
    fn close(&mut self) -> Result<()> {
        if let Some((name, mut sink)) = self.current.take() {
            sink.finish()?;
            let path = self.dir.join(&name);
            File::open(&path).and_then(|f| f.sync_all()).map_err(|e| self.err(e))?;
            self.closed.push(name);
        }
        Ok(())
    }

    /// Delete the files `doomed` picks by name.
    fn delete(&self, doomed: impl Fn(&str) -> bool) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.err(e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err(e))?;
            if doomed(&entry.file_name().to_string_lossy()) {
                std::fs::remove_file(entry.path()).map_err(|e| self.err(e))?;
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
        self.open()?.write(batch)
    }

    fn finish(&mut self) -> Result<()> {
        self.close()
    }

    fn prepare_commit(&mut self, id: u64) -> Result<serde_json::Value> {
        self.close()?;
        let ext = self.extension();
        let files: Vec<Publish> = std::mem::take(&mut self.closed)
            .into_iter()
            .enumerate()
            .map(|(n, from)| Publish { from, to: format!("{PART}{id:010}-{n:04}.{ext}") })
            .collect();
        serde_json::to_value(Prepared { checkpoint: id, files }).map_err(|e| self.err(e))
    }

    fn commit(&mut self, prepared: &serde_json::Value) -> Result<()> {
        if prepared.is_null() {
            return Ok(());
        }
        let prepared: Prepared = weir_runtime::checkpoint::from_json(prepared, &self.label)?;
        let publish = prepared.files;
        for p in &publish {
            let (from, to) = (self.dir.join(&p.from), self.dir.join(&p.to));
            if from.exists() {
                std::fs::rename(&from, &to).map_err(|e| self.err(e))?;
            } else if !to.exists() {
                return Err(self.err(format!(
                    "the checkpoint's part file {} is missing (neither {} nor {} exists)",
                    p.to, p.from, p.to
                )));
            }
        }
        if !publish.is_empty() {
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| self.err(e))?;
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
        true
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
        let mut sink = PartFileSink::new(&dir, FileFormat::Csv, Arc::clone(&schema), "t".into()).unwrap();
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
        let mut again = PartFileSink::new(&dir, FileFormat::Csv, Arc::clone(&schema), "t".into()).unwrap();
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
}
