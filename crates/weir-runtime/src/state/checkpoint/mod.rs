//! Checkpoints: consistent snapshots of a running pipeline, and recovery from them.
//!
//! ```text
//!   source task:   ── (batch, position after it) ── (batch, position) ──►
//!   operator task: between two batches, when the interval has passed:
//!                  each operator's state, each stage's watermarks, the reading turn, and
//!                  each input's position after the last batch taken from it
//!                  ──► state files + manifest (written last)
//!                  then the sinks commit what they prepared for this checkpoint
//! ```
//!
//! All operators run on the one operator task, where the inputs meet, and every batch it
//! takes carries its source's position after it. So any moment between two batches is a
//! consistent cut: nothing has to be aligned, no input waits for another, and the order the
//! inputs are read in (in turn, or lowest watermark first) is the same with checkpoints as
//! without. Batches still in the channels are read again after a restart.
//!
//! On disk (or in an object store), under the checkpoint directory:
//!
//! ```text
//!   chk-0000000007/op-3-slices.arrow   Arrow IPC, one file per named batch of an operator
//!   chk-0000000007/_manifest.json      written last, atomically: its presence completes it
//! ```
//!
//! The manifest holds the plan's fingerprint (a checkpoint of another query is refused), the
//! sources' positions, the small state of every operator as JSON, the size and CRC-32 of every
//! state file (a truncated or altered file is detected), and what each sink prepared.

mod codec;
mod coordinator;
mod manifest;
mod store;

use datafusion_common::arrow::record_batch::RecordBatch;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, RuntimeError};

pub use codec::{decode_batch, encode_batch};
pub(crate) use coordinator::{Coordinator, Input, Taken};
pub use manifest::{FileEntry, Manifest, OperatorEntry, ParallelShape, FORMAT, VERSION};
pub use store::{CheckpointStore, Restored};

pub use weir_plan::Guarantee;

/// How a pipeline checkpoints.
pub struct CheckpointConfig {
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// Time between the end of one checkpoint and the start of the next.
    pub interval: std::time::Duration,
    /// Aligned or not.
    pub guarantee: Guarantee,
    /// Identifies the query (a checkpoint of another query is refused).
    pub fingerprint: String,
    /// The checkpoint to resume from, if any.
    pub restore: Option<Restored>,
}

/// The state of one operator: small values as JSON, large ones as Arrow batches.
#[derive(Debug, Clone, Default)]
pub struct OperatorSnapshot {
    /// Scalars and small structures (watermarks, pending windows, counters).
    pub meta: serde_json::Value,
    /// Named batches (groups and their partial aggregates, kept rows, …).
    pub batches: Vec<(String, RecordBatch)>,
}

impl OperatorSnapshot {
    /// The snapshot of an operator without state.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A snapshot with `meta` and no batches.
    pub fn with_meta(meta: &impl Serialize) -> Result<Self> {
        Ok(Self { meta: to_json(meta)?, batches: Vec::new() })
    }

    /// Add a named batch.
    pub fn push(&mut self, name: impl Into<String>, batch: RecordBatch) {
        self.batches.push((name.into(), batch));
    }

    /// The meta value, decoded.
    pub fn meta<T: DeserializeOwned>(&self, operator: &str) -> Result<T> {
        from_json(&self.meta, operator)
    }

    /// Remove and return the batch `name` (`None`: the operator saved none, having no such
    /// state).
    pub fn take(&mut self, name: &str) -> Option<RecordBatch> {
        let i = self.batches.iter().position(|(n, _)| n == name)?;
        Some(self.batches.swap_remove(i).1)
    }

    /// Whether it holds nothing (an operator without state).
    pub fn is_empty(&self) -> bool {
        self.meta.is_null() && self.batches.is_empty()
    }
}

/// Which rows (given their key columns, as the exchange hashes them) an instance owns after a
/// change of parallelism (an operator's `rescale`).
pub type KeyFilter<'a> = dyn Fn(&[datafusion_common::arrow::array::ArrayRef]) -> Result<Vec<bool>> + 'a;

/// The rows of a saved batch that an instance owns after a change of parallelism, by the
/// values of its key columns `keys`.
pub fn owned_rows(batch: &RecordBatch, keys: &[usize], owned: &KeyFilter<'_>) -> Result<RecordBatch> {
    let columns = keys
        .iter()
        .map(|c| {
            batch
                .columns()
                .get(*c)
                .cloned()
                .ok_or_else(|| RuntimeError::Checkpoint("saved state lacks its key columns".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    let keep = datafusion_common::arrow::array::BooleanArray::from(owned(&columns)?);
    Ok(datafusion_common::arrow::compute::filter_record_batch(batch, &keep)?)
}

/// `batch` with the ids (`UInt32`) in column `column` moved up by `offset`, and the first id
/// after them: the state of several old instances merged keeps their ids apart.
pub fn shift_ids(batch: &RecordBatch, column: usize, offset: u32) -> Result<(RecordBatch, u32)> {
    use datafusion_common::arrow::array::{AsArray, UInt32Array};
    let Some(ids) = batch
        .columns()
        .get(column)
        .and_then(|c| c.as_primitive_opt::<datafusion_common::arrow::datatypes::UInt32Type>())
    else {
        return Err(RuntimeError::Checkpoint("saved state lacks its ids".into()));
    };
    let next = ids.values().iter().max().map_or(offset, |m| offset + m + 1);
    let mut columns = batch.columns().to_vec();
    columns[column] = std::sync::Arc::new(UInt32Array::from_iter_values(ids.values().iter().map(|i| i + offset)));
    Ok((RecordBatch::try_new(batch.schema(), columns)?, next))
}

/// `batches` as one (`None` when there are none).
pub fn concat_saved(batches: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else { return Ok(None) };
    Ok(Some(datafusion_common::arrow::compute::concat_batches(&first.schema(), batches)?))
}

/// `value` as JSON.
pub fn to_json(value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| RuntimeError::Checkpoint(format!("cannot encode state: {e}")))
}

/// Decode JSON state of `what`.
pub fn from_json<T: DeserializeOwned>(value: &serde_json::Value, what: &str) -> Result<T> {
    T::deserialize(value).map_err(|e| RuntimeError::Checkpoint(format!("the saved state of {what} is not valid: {e}")))
}

/// The error of an operator that cannot be checkpointed yet.
pub fn unsupported(operator: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "checkpoints are not supported yet for the {operator} operator: run this query without --checkpoint-dir"
    ))
}

/// Refuse a checkpoint another query took (its fingerprint differs from `fingerprint`).
pub fn check_fingerprint(restored: &Restored, fingerprint: &str) -> Result<()> {
    if restored.manifest.fingerprint == fingerprint {
        return Ok(());
    }
    Err(RuntimeError::Checkpoint(format!(
        "{} was taken by another query (fingerprint {}, this query's is {fingerprint}); its query was:\n{}\nUse another checkpoint directory, or delete this one to start afresh",
        restored.location, restored.manifest.fingerprint, restored.manifest.query
    )))
}

/// A stable 64-bit FNV-1a hash, as 16 hex digits (plan fingerprints).
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
