//! The message vocabulary: data and control travel on the same channel, in order.
//!
//! Invariants:
//! - Watermarks on one channel never decrease.
//! - After `Watermark(w)`, no row with event time whose window ends at or before `w` is
//!   accepted by a window operator: such rows are late (counted, not aggregated).
//! - `EndOfStream` is the last message. A bounded source sends `Watermark(i64::MAX)` before
//!   it, so every open window fires.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int8Array, UInt32Array};
use datafusion_common::arrow::compute::{filter, take, take_record_batch, FilterPredicate};
use datafusion_common::arrow::datatypes::{Int64Type, Int8Type, UInt32Type};
use datafusion_common::arrow::error::ArrowError;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};

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
    /// Where each row came from, when the source's dropped rows go to a side output.
    pub origin: Option<Origin>,
}

/// The source rows behind a batch's rows: row `i` of the batch was read as row `rows[i]` of
/// `batch` (all of the table's columns). Kept only when dropped rows are routed to a sink.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The batch as the source read it.
    pub batch: Arc<RecordBatch>,
    /// For each row of the derived batch, its row in `batch`.
    pub rows: Arc<UInt32Array>,
}

impl Origin {
    /// The rows of a freshly read batch.
    pub fn whole(batch: RecordBatch) -> Self {
        let n = batch.num_rows() as u32;
        Self { batch: Arc::new(batch), rows: Arc::new(UInt32Array::from_iter_values(0..n)) }
    }

    /// The origin of the rows a filter kept.
    pub fn filter(&self, mask: &datafusion_common::arrow::array::BooleanArray) -> crate::error::Result<Self> {
        let rows = filter(self.rows.as_ref(), mask)?;
        let rows = rows.as_primitive::<UInt32Type>().clone();
        Ok(Self { batch: Arc::clone(&self.batch), rows: Arc::new(rows) })
    }

    /// The source rows behind the given rows of the derived batch.
    pub fn take(&self, rows: &[u32]) -> crate::error::Result<RecordBatch> {
        let picked = UInt32Array::from_iter_values(rows.iter().map(|r| self.rows.value(*r as usize)));
        Ok(take_record_batch(&self.batch, &picked)?)
    }
}

/// Rows an operator dropped (late, or without an event time), as the source read them, each
/// with the reason. They go to the source's `'late_rows'` sink, not downstream.
#[derive(Debug, Clone)]
pub struct DroppedRows {
    /// The source rows.
    pub rows: RecordBatch,
    /// Why each was dropped.
    pub reasons: Vec<String>,
}

impl StreamBatch {
    /// A batch of inserts without per-row watermarks.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch, row_watermarks: None, kinds: None, origin: None }
    }

    /// A changelog batch.
    pub fn changelog(batch: RecordBatch, kinds: &[RowKind]) -> Self {
        let kinds = Int8Array::from_iter_values(kinds.iter().map(|k| *k as i8));
        Self { batch, row_watermarks: None, kinds: Some(Arc::new(kinds)), origin: None }
    }

    /// The kind of row `i`.
    pub fn kind(&self, i: usize) -> RowKind {
        match &self.kinds {
            Some(k) => RowKind::from_i8(k.value(i)),
            None => RowKind::Insert,
        }
    }

    /// Lower every per-row watermark above `cap` to it (a merge of inputs: a row is judged by
    /// the watermark all of them allow). A batch none of whose watermarks is above is kept.
    pub fn cap_watermarks(&mut self, cap: Nanos) {
        if cap == Nanos::MAX {
            return;
        }
        if let Some(w) = &self.row_watermarks {
            if w.values().iter().any(|v| *v > cap) {
                self.row_watermarks = Some(Arc::new(w.unary(|v| v.min(cap))));
            }
        }
    }

    /// The given rows, with their watermarks, kinds and origin.
    pub fn take(&self, rows: &UInt32Array) -> crate::error::Result<Self> {
        self.select(rows.len(), |a| take(a, rows, None))
    }

    /// The rows `predicate` selects, with their watermarks, kinds and origin.
    pub fn filter(&self, predicate: &FilterPredicate) -> crate::error::Result<Self> {
        self.select(predicate.count(), |a| predicate.filter(a))
    }

    /// The `n` rows `pick` picks from each column, with their watermarks, kinds and origin.
    fn select(
        &self,
        n: usize,
        pick: impl Fn(&dyn Array) -> std::result::Result<ArrayRef, ArrowError>,
    ) -> crate::error::Result<Self> {
        // a column that is another's (a projection's copies, e.g. a window's markers) is
        // picked from once
        let all = self.batch.columns();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(all.len());
        for (i, c) in all.iter().enumerate() {
            match all[..i].iter().position(|p| Arc::ptr_eq(p, c)) {
                Some(j) => columns.push(Arc::clone(&columns[j])),
                None => columns.push(pick(c.as_ref())?),
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(self.batch.schema(), columns, &options)?;
        let row_watermarks = match &self.row_watermarks {
            Some(w) => Some(Arc::new(pick(w.as_ref())?.as_primitive::<Int64Type>().clone())),
            None => None,
        };
        let kinds = match &self.kinds {
            Some(k) => Some(Arc::new(pick(k.as_ref())?.as_primitive::<Int8Type>().clone())),
            None => None,
        };
        let origin = match &self.origin {
            Some(o) => Some(Origin {
                batch: Arc::clone(&o.batch),
                rows: Arc::new(pick(o.rows.as_ref())?.as_primitive::<UInt32Type>().clone()),
            }),
            None => None,
        };
        Ok(Self { batch, row_watermarks, kinds, origin })
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
    /// Rows dropped upstream, on their way to the side output (never to downstream operators).
    Dropped(DroppedRows),
    /// No more messages will follow.
    EndOfStream,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_rows_keep_their_watermarks_and_a_column_repeated_is_taken_once() {
        let x: ArrayRef = Arc::new(Int64Array::from(vec![10, 20, 30, 40]));
        let y: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let batch = RecordBatch::try_from_iter([("x", Arc::clone(&x)), ("y", y), ("x2", x)]).unwrap();
        let mut b = StreamBatch::new(batch);
        b.row_watermarks = Some(Arc::new(Int64Array::from(vec![5, 6, 7, 8])));
        let t = b.take(&UInt32Array::from(vec![3, 1])).unwrap();
        let column = |i: usize| t.batch.column(i).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!((column(0), column(1), column(2)), (vec![40, 20], vec![4, 2], vec![40, 20]));
        assert!(Arc::ptr_eq(t.batch.column(0), t.batch.column(2)), "one copy for both");
        assert_eq!(t.row_watermarks.unwrap().values().to_vec(), vec![8, 6]);
        assert_eq!(t.batch.schema(), b.batch.schema());
    }

    #[test]
    fn filtered_rows_keep_their_watermarks_and_kinds_and_a_column_repeated_is_filtered_once() {
        use datafusion_common::arrow::array::BooleanArray;
        use datafusion_common::arrow::compute::FilterBuilder;
        let x: ArrayRef = Arc::new(Int64Array::from(vec![10, 20, 30, 40]));
        let batch = RecordBatch::try_from_iter([("x", Arc::clone(&x)), ("x2", x)]).unwrap();
        let mut b = StreamBatch::new(batch);
        b.row_watermarks = Some(Arc::new(Int64Array::from(vec![5, 6, 7, 8])));
        b.kinds = Some(Arc::new(Int8Array::from(vec![0, 1, 2, 3])));
        let predicate = FilterBuilder::new(&BooleanArray::from(vec![false, true, false, true])).build();
        let f = b.filter(&predicate).unwrap();
        assert_eq!(f.batch.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![20, 40]);
        assert!(Arc::ptr_eq(f.batch.column(0), f.batch.column(1)), "one copy for both");
        assert_eq!(f.row_watermarks.unwrap().values().to_vec(), vec![6, 8]);
        assert_eq!(f.kinds.unwrap().values().to_vec(), vec![1, 3]);
    }

    #[test]
    fn capped_watermarks_are_lowered_and_a_batch_below_the_cap_is_kept() {
        let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef)]).unwrap();
        let mut b = StreamBatch::new(batch);
        b.row_watermarks = Some(Arc::new(Int64Array::from(vec![1, 5, 9])));
        let before = b.row_watermarks.clone().unwrap();
        b.cap_watermarks(9);
        assert!(Arc::ptr_eq(&before, b.row_watermarks.as_ref().unwrap()), "nothing above the cap: not copied");
        b.cap_watermarks(Nanos::MAX);
        assert!(Arc::ptr_eq(&before, b.row_watermarks.as_ref().unwrap()));
        b.cap_watermarks(6);
        assert_eq!(b.row_watermarks.unwrap().values().to_vec(), vec![1, 5, 6]);
    }
}
