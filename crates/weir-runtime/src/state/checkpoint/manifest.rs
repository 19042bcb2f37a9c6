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
    /// How each stage reads its input (`source`, `exchange`, `union`, `join`, `join
    /// co-partitioned`, `join broadcast`): a checkpoint is resumed only by a run whose stages
    /// read theirs the same way. Empty in checkpoints taken before it was recorded (when no
    /// join was co-partitioned or broadcast).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

impl ParallelShape {
    /// Why a run of this shape cannot resume a checkpoint of shape `saved`, if it cannot.
    pub fn cannot_resume(&self, saved: &ParallelShape) -> Option<String> {
        let legacy = saved.inputs.is_empty() && self.inputs.iter().all(|i| !i.starts_with("join "));
        if legacy || saved.inputs == self.inputs {
            return None;
        }
        let show = |inputs: &[String]| match inputs.is_empty() {
            true => "a layout of an earlier weir".to_string(),
            false => inputs.join(", "),
        };
        Some(format!(
            "the checkpoint was taken by a run whose stages read their inputs as [{}], this run's read them as [{}] \
             (a newer weir runs such joins differently): run the query from its start without the checkpoint",
            show(&saved.inputs),
            show(&self.inputs)
        ))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(inputs: &[&str]) -> ParallelShape {
        let inputs = inputs.iter().map(|i| i.to_string()).collect();
        ParallelShape { parallelism: 2, stages: vec![2, 2, 2], key_groups: 128, splits: vec![2, 2], inputs }
    }

    #[test]
    fn a_checkpoint_resumes_only_where_its_stages_read_their_inputs_the_same_way() {
        let broadcast = shape(&["source", "source", "join broadcast"]);
        let hashed = shape(&["source", "source", "join"]);
        assert_eq!(broadcast.cannot_resume(&broadcast.clone()), None);
        assert!(broadcast.cannot_resume(&hashed).is_some_and(|why| why.contains("[source, source, join]")));
        // taken before the inputs were recorded: fine where no join is laid out differently
        assert_eq!(hashed.cannot_resume(&shape(&[])), None);
        assert!(broadcast.cannot_resume(&shape(&[])).is_some_and(|why| why.contains("an earlier weir")));
    }
}
