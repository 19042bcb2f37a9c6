//! How an [`Engine`](crate::Engine) is set up: settings, where files are found, checkpoints.

use std::path::PathBuf;
use std::time::Duration;

use weir_plan::{Guarantee, Settings};

use crate::EngineError;

/// Settings of an engine. `Default` gives batches of 8192 rows, paths from the working
/// directory, and no checkpoints.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Session settings to start with, as `SET key = value` makes them (see
    /// [`EngineConfig::set`]).
    pub settings: Settings,
    /// Where relative source paths are also looked up (e.g. the directory of a SQL script).
    pub base_dir: Option<PathBuf>,
    /// Checkpoint every query, and resume each from its newest checkpoint.
    pub checkpoints: Option<CheckpointSettings>,
}

impl EngineConfig {
    /// The same, with a setting, as `SET key = value` (e.g. `("batch.size", "1024")`,
    /// `("state.ttl", "1 h")`, `("nexmark.events", "1000000")`). An unknown key or a bad value
    /// is an error naming the known keys.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, EngineError> {
        self.settings.set(key, value).map_err(|e| EngineError::Sql(e.into()))?;
        Ok(self)
    }

    /// The same, checkpointing into `dir` (a directory, or a `file://` or `s3://` URL).
    pub fn with_checkpoints(mut self, dir: impl Into<String>) -> Self {
        self.checkpoints = Some(CheckpointSettings::new(dir));
        self
    }
}

/// Checkpoints of an engine's queries. Each query gets a directory of its own under `dir`,
/// named by its fingerprint (the text of its plan), so running the same query again resumes
/// it; a query that had finished then has nothing left to do (delete its directory to run it
/// afresh). Two runs of the same query at once would share the directory: run one at a time.
/// Output tables become directories of part files, published by the checkpoint covering them
/// (exactly-once). `SET checkpoint.interval`, `checkpoint.guarantee` and `checkpoint.retain`
/// in the session go before these values.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Where checkpoints go: a directory, or a `file://` or `s3://` URL.
    pub dir: String,
    /// Time between the end of one checkpoint and the start of the next (default 10 s).
    pub interval: Duration,
    /// Exactly-once (the default), or Flink's at-least-once (which behaves the same here).
    pub guarantee: Guarantee,
    /// How many complete checkpoints to keep (default 3).
    pub retain: usize,
}

impl CheckpointSettings {
    /// Checkpoints into `dir` every 10 s, exactly-once, keeping 3.
    pub fn new(dir: impl Into<String>) -> Self {
        Self { dir: dir.into(), interval: Duration::from_secs(10), guarantee: Guarantee::ExactlyOnce, retain: 3 }
    }
}
