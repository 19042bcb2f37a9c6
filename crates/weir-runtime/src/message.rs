//! The message vocabulary: data and control travel on the same channel, in order.
//!
//! Invariants:
//! - Watermarks on one channel never decrease.
//! - After `Watermark(w)`, no row with event time whose window ends at or before `w` is
//!   accepted by a window operator: such rows are late (counted, not aggregated).
//! - `EndOfStream` is the last message. A bounded source sends `Watermark(i64::MAX)` before
//!   it, so every open window fires.

use std::sync::Arc;

use datafusion_common::arrow::array::{Int64Array, Int8Array};
use datafusion_common::arrow::record_batch::RecordBatch;

/// Event times and watermarks are nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// The watermark before any row has been seen.
pub const NO_WATERMARK: Nanos = i64::MIN;

/// What a row of a changelog does to the result it describes (Flink's `RowKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the old version of an updated row (retract it).
    UpdateBefore = 1,
    /// `+U`: the new version of an updated row.
    UpdateAfter = 2,
    /// `-D`: a row removed.
    Delete = 3,
}

impl RowKind {
    /// The printed form: `+I`, `-U`, `+U`, `-D`.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// `-U` and `-D` take a row away; `+I` and `+U` add one.
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }

    /// Decode the stored form.
    pub fn from_i8(v: i8) -> Self {
        match v {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }
}

/// A batch of rows plus, for each row, the watermark that was in force when the source
/// produced it (`max(event time of earlier rows) - delay`). Lateness is judged against that
/// per-row watermark, so it does not depend on where batch boundaries fall.
///
/// A batch of an updating result (a changelog) also carries each row's [`RowKind`]; `kinds`
/// is `None` when every row is an insert (an append-only stream).
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Per-row watermark (nanoseconds), `None` when no lateness applies (e.g. rows produced by
    /// a window aggregate).
    pub row_watermarks: Option<Arc<Int64Array>>,
    /// Per-row [`RowKind`] as `i8`; `None` = all inserts.
    pub kinds: Option<Arc<Int8Array>>,
}

impl StreamBatch {
    /// A batch of inserts without per-row watermarks.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch, row_watermarks: None, kinds: None }
    }

    /// A changelog batch.
    pub fn changelog(batch: RecordBatch, kinds: &[RowKind]) -> Self {
        let kinds = Int8Array::from_iter_values(kinds.iter().map(|k| *k as i8));
        Self { batch, row_watermarks: None, kinds: Some(Arc::new(kinds)) }
    }

    /// The kind of row `i`.
    pub fn kind(&self, i: usize) -> RowKind {
        match &self.kinds {
            Some(k) => RowKind::from_i8(k.value(i)),
            None => RowKind::Insert,
        }
    }

    /// Whether any row retracts (`-U`/`-D`).
    pub fn has_retractions(&self) -> bool {
        self.kinds.as_ref().is_some_and(|k| k.values().iter().any(|v| RowKind::from_i8(*v).is_retraction()))
    }
}

/// What flows between operators.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows.
    Data(StreamBatch),
    /// Event time has advanced to this point (nanoseconds).
    Watermark(Nanos),
    /// No more messages will follow.
    EndOfStream,
}
