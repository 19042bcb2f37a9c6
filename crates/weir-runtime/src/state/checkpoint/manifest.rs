//! The manifest of a checkpoint: written last, it makes the checkpoint complete.

use serde::{Deserialize, Serialize};

use super::Guarantee;

/// The `format` every manifest names.
pub const FORMAT: &str = "weir-checkpoint";
/// The version of the layout this build writes and reads.
pub const VERSION: u32 = 1;

/// Everything a restart needs, except the state batches (which it lists).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version ([`VERSION`]).
    pub version: u32,
    /// Checkpoint number, increasing from 1.
    pub id: u64,
    /// The fingerprint of the query that took it.
    pub fingerprint: String,
    /// The query, as EXPLAIN prints it (for the error when another query finds it).
    pub query: String,
    /// When it completed, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The delivery guarantee it was taken under.
    pub guarantee: Guarantee,
    /// The query had read all of its input: nothing is left to run.
    pub finished: bool,
    /// Each source's position and watermark generator, in plan order.
    pub sources: Vec<serde_json::Value>,
    /// Each stage's state (union watermarks, join watermarks), in tree order.
    pub stages: Vec<serde_json::Value>,
    /// Which input the operator task reads next.
    pub turns: serde_json::Value,
    /// Each operator's state, in tree order.
    pub operators: Vec<OperatorEntry>,
    /// What the sink prepared for this checkpoint (committed once this manifest exists).
    pub sink: serde_json::Value,
    /// What the sink of dropped rows prepared.
    pub late_rows_sink: serde_json::Value,
    /// Bytes of state files.
    pub bytes: u64,
    /// Set when the query ran in parallel: its stages' instances. Then `sources` has one entry
    /// per source instance, `stages` and `operators` one run of entries per thread (source
    /// instances, then the instances of each later stage, then the sink's), in that order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ParallelShape>,
}

/// The shape of a parallel run, which a checkpoint of it is resumed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParallelShape {
    /// The parallelism it ran at.
    pub parallelism: usize,
    /// Each stage's instances, in data-flow order.
    pub stages: Vec<usize>,
    /// Key groups keys are hashed into.
    pub key_groups: usize,
    /// The splits each of the plan's sources is read in (kept when the parallelism changes).
    #[serde(default)]
    pub splits: Vec<usize>,
}

/// One operator's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// The operator's name (checked at restore).
    pub name: String,
    /// Its small state.
    pub meta: serde_json::Value,
    /// Its state batches.
    pub files: Vec<FileEntry>,
}

/// A state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// The batch's name within the operator's state.
    pub name: String,
    /// The file, relative to the checkpoint's directory.
    pub path: String,
    /// Its length.
    pub bytes: u64,
    /// CRC-32 of its bytes.
    pub crc32: u32,
}
