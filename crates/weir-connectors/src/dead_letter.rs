//! The dead-letter file of a source whose table says `bad_data = 'dead_letter'`: each
//! malformed row is appended to it as one JSON object per line, with where it came from and
//! why it was refused, instead of stopping the query or vanishing.
//!
//! ```text
//! {"source":"data/events.csv","line":4,"error":"bad value 'zz' for column 'a' (BIGINT)","row":"zz,2024-01-01 00:00:04"}
//! ```
//!
//! The file is appended to (created on the first bad row), so it keeps the rows of earlier
//! runs, and a run resumed from a checkpoint adds to what it wrote before; delete it to start
//! afresh. Rows are flushed at the end of each batch read.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use weir_runtime::{Metrics, Result, RuntimeError};

use crate::options::{BadRowPolicy, FileOptions};

/// The dead-letter file of a source with these options, if its policy is to keep bad rows.
pub fn dead_letter(options: &FileOptions, metrics: &Arc<Metrics>) -> Option<DeadLetter> {
    match (options.bad_rows, &options.dead_letter) {
        (BadRowPolicy::DeadLetter, Some(path)) => Some(DeadLetter::new(path.clone(), Arc::clone(metrics))),
        _ => None,
    }
}

/// Where a source's malformed rows go.
pub struct DeadLetter {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    metrics: Arc<Metrics>,
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    source: &'a str,
    line: u64,
    error: &'a str,
    row: &'a str,
}

impl DeadLetter {
    /// Rows to `path`, counted in `metrics`.
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self { path, file: None, metrics }
    }

    /// Append the malformed row `row` (its text as read) of `source` at `line`, refused for
    /// `error`.
    pub fn write(&mut self, source: &str, line: u64, error: &str, row: &str) -> Result<()> {
        let io = |e: std::io::Error| RuntimeError::Source(format!("dead-letter file {}: {e}", self.path.display()));
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
                self.file.insert(BufWriter::new(f))
            }
        };
        let text = serde_json::to_string(&Entry { source, line, error, row })
            .map_err(|e| RuntimeError::Source(format!("dead-letter file {}: {e}", self.path.display())))?;
        writeln!(file, "{text}").map_err(io)?;
        Metrics::add(&self.metrics.bad_rows_dead_lettered, 1);
        Ok(())
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        match &mut self.file {
            Some(f) => {
                f.flush().map_err(|e| RuntimeError::Source(format!("dead-letter file {}: {e}", self.path.display())))
            }
            None => Ok(()),
        }
    }
}

impl Drop for DeadLetter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
