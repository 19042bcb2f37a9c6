//! What a source does with a malformed row, by its table's policy: stop with the file and
//! line (`bad_data = 'fail'`), skip and count it (`'skip'`), or append it to a dead-letter
//! file (`'dead_letter' = 'FILE'`), one JSON object per line, with where it came from and why
//! it was refused:
//!
//! ```text
//! {"source":"data/events.csv","line":4,"error":"bad value 'zz' for column 'a' (BIGINT)","row":"zz,2024-01-01 00:00:04"}
//! ```
//!
//! The file is appended to (created on the first bad row), so it keeps the rows of earlier
//! runs, and a run resumed from a checkpoint adds to what it wrote before; delete it to start
//! afresh. Each row is one write of a whole line to a file opened for appending: nothing
//! waits in a buffer, and sources on other threads writing the same file do not mix lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use weir_runtime::{Metrics, Result, RuntimeError};

use crate::options::{BadRowPolicy, FileOptions};

// (a Kafka record's dead letter: {"topic":"bids","partition":0,"offset":42,"error":…,"row":…})

/// A source's policy for malformed rows, with its dead-letter file if it keeps them.
pub struct BadRows {
    policy: Policy,
    metrics: Arc<Metrics>,
}

enum Policy {
    Fail,
    Skip,
    DeadLetter(DeadLetter),
}

impl BadRows {
    /// The policy of a source with these options, counting in `metrics`.
    pub fn new(options: &FileOptions, metrics: &Arc<Metrics>) -> Self {
        Self::with_policy(&options.bad_rows, metrics)
    }

    /// A source's `policy`, counting in `metrics`.
    pub fn with_policy(policy: &BadRowPolicy, metrics: &Arc<Metrics>) -> Self {
        let policy = match policy {
            BadRowPolicy::Fail => Policy::Fail,
            BadRowPolicy::Skip => Policy::Skip,
            BadRowPolicy::DeadLetter(path) => Policy::DeadLetter(DeadLetter { path: path.clone(), file: None }),
        };
        Self { policy, metrics: Arc::clone(metrics) }
    }

    /// Row `line` of `source` is malformed for `why`; `row` gives its text (asked only when
    /// it is kept).
    pub fn handle(&mut self, source: &str, line: u64, why: &str, row: impl FnOnce() -> String) -> Result<()> {
        self.handle_at(&format!("{source}:{line}"), At::Line { source, line }, why, row)
    }

    /// The record at `offset` of `partition` of Kafka topic `topic` is malformed for `why`.
    pub fn handle_record(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        why: &str,
        row: impl FnOnce() -> String,
    ) -> Result<()> {
        let place = format!("topic '{topic}' partition {partition} offset {offset}");
        self.handle_at(&place, At::Record { topic, partition, offset }, why, row)
    }

    fn handle_at(&mut self, place: &str, at: At<'_>, why: &str, row: impl FnOnce() -> String) -> Result<()> {
        match &mut self.policy {
            Policy::DeadLetter(dead) => {
                dead.write(at, why, &row())?;
                Metrics::add(&self.metrics.bad_rows_dead_lettered, 1);
                Ok(())
            }
            Policy::Skip => {
                Metrics::add(&self.metrics.bad_rows_skipped, 1);
                Ok(())
            }
            Policy::Fail => Err(RuntimeError::Source(format!(
                "{place}: {why} (set bad_data = 'skip' on the table to skip such rows, or 'dead_letter' = 'FILE' to keep them there)"
            ))),
        }
    }
}

/// Where a source's malformed rows go.
struct DeadLetter {
    path: PathBuf,
    file: Option<File>,
}

/// Where a malformed row was read.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum At<'a> {
    /// A line of a file (or of standard input).
    Line { source: &'a str, line: u64 },
    /// A record of a Kafka topic.
    Record { topic: &'a str, partition: i32, offset: i64 },
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    at: At<'a>,
    error: &'a str,
    row: &'a str,
}

impl DeadLetter {
    fn error(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Source(format!("dead-letter file {}: {e}", self.path.display()))
    }

    fn write(&mut self, at: At<'_>, error: &str, row: &str) -> Result<()> {
        let mut text = serde_json::to_string(&Entry { at, error, row }).map_err(|e| self.error(e))?;
        text.push('\n');
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.error(e))?;
            self.file = Some(file);
        }
        match &mut self.file {
            Some(f) => f.write_all(text.as_bytes()).map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }
}
