//! The message vocabulary: data and control travel on the same channel, in order.
//!
//! Invariants:
//! - Watermarks on one channel never decrease.
//! - After `Watermark(w)`, no row with event time whose window ends at or before `w` is
//!   accepted by a window operator: such rows are late (counted, not aggregated).
//! - `EndOfStream` is the last message. A bounded source sends `Watermark(i64::MAX)` before
//!   it, so every open window fires.

use std::sync::Arc;

use datafusion_common::arrow::array::Int64Array;
use datafusion_common::arrow::record_batch::RecordBatch;

/// Event times and watermarks are nanoseconds since the Unix epoch.
pub type Nanos = i64;

/// The watermark before any row has been seen.
pub const NO_WATERMARK: Nanos = i64::MIN;

/// A batch of rows plus, for each row, the watermark that was in force when the source
/// produced it (`max(event time of earlier rows) - delay`). Lateness is judged against that
/// per-row watermark, so it does not depend on where batch boundaries fall.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Per-row watermark (nanoseconds), `None` when no lateness applies (e.g. rows produced by
    /// a window aggregate).
    pub row_watermarks: Option<Arc<Int64Array>>,
}

impl StreamBatch {
    /// A batch without per-row watermarks.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch, row_watermarks: None }
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
