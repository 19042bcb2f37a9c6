//! The changelog of windows that emit more than once: early results before a window closes,
//! and corrections for rows that arrive within the allowed lateness after it fired.
//!
//! ```text
//!   update(window, new result)
//!     per row of the new result, by its group key:
//!       key not emitted before            → +I new row
//!       emitted, and the row differs      → -U old row, +U new row
//!       emitted, and the row is the same  → nothing
//!     per row emitted before whose key is gone → -D old row (these first)
//!     the new result becomes the window's emitted result
//!   forget(window) when the window's state is dropped
//!   absorb(into, from) when two sessions merge: `from`'s rows count as `into`'s, so the next
//!     update of `into` deletes those the merged session no longer has
//! ```
//!
//! Replaying the changes of a window gives its latest result, whatever the batch boundaries.

/// ahash (randomly seeded, like std's) is several times faster than std's SipHash on row bytes.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
use std::hash::Hash;

use std::ops::Range;
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, AsArray, Int64Array};
use datafusion_common::arrow::compute::{concat_batches, interleave_record_batch};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::RecordBatch;
use datafusion_common::arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Result, RuntimeError};
use crate::message::{Nanos, RowKind, StreamBatch};
use crate::state::checkpoint::{concat_saved, owned_rows, KeyFilter};

/// Saved results ([`WindowChanges::to_batch`]) of the old instances of a run at another
/// parallelism, as one batch ordered by window, with the rows whose keys (result columns
/// `key_columns`) `owned` says are this instance's.
pub(crate) fn owned_results(
    batches: &[RecordBatch],
    key_columns: &[usize],
    owned: &KeyFilter<'_>,
) -> Result<Option<RecordBatch>> {
    use datafusion_common::arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn};
    let keys: Vec<usize> = key_columns.iter().map(|c| c + 2).collect();
    let kept = batches.iter().map(|b| owned_rows(b, &keys, owned)).collect::<Result<Vec<_>>>()?;
    let Some(all) = concat_saved(&kept)? else { return Ok(None) };
    // one window's rows together (they came from several instances)
    let by = |c: usize| SortColumn { values: Arc::clone(all.column(c)), options: None };
    let order = lexsort_to_indices(&[by(0), by(1)], None)?;
    Ok(Some(take_record_batch(&all, &order)?))
}

/// A window's identity: `(end, start)`.
pub type WindowId = (Nanos, Nanos);

/// A window's last emitted rows. Its rows' key and row bytes are rows `offset..` of
/// encodings shared by the windows updated together.
struct Emitted {
    batch: RecordBatch,
    keys: Arc<Rows>,
    /// Every row of `batch`, encoded, to compare with a new result.
    rows: Arc<Rows>,
    offset: usize,
    /// Group key bytes → row of `batch`, for a window of more than [`SCAN`] rows.
    index: Option<HashMap<Box<[u8]>, usize>>,
}

/// A window of at most this many rows finds a key by comparing each row's.
const SCAN: usize = 8;

impl Emitted {
    fn new(batch: RecordBatch, keys: Arc<Rows>, rows: Arc<Rows>, offset: usize) -> Self {
        let n = batch.num_rows();
        let index = (n > SCAN)
            .then(|| (0..n).map(|j| (Box::from(keys.row(offset + j).as_ref()), j)).collect::<HashMap<_, _>>());
        Self { batch, keys, rows, offset, index }
    }

    /// The row of `batch` with group key `key`.
    fn find(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => (0..self.batch.num_rows()).rev().find(|j| self.keys.row(self.offset + j).as_ref() == key),
        }
    }
}

/// Each open window's last emitted result, by window (`W`: its bounds, or a session's id).
pub struct WindowChanges<W = WindowId> {
    keys: RowConverter,
    rows: RowConverter,
    num_keys: usize,
    emitted: HashMap<W, Emitted>,
}

impl<W: Hash + Eq + Copy> WindowChanges<W> {
    /// Changes of results with `schema`, whose first `num_keys` columns identify a row.
    pub fn new(schema: &SchemaRef, num_keys: usize) -> Result<Self> {
        let field = |f: &datafusion_common::arrow::datatypes::FieldRef| SortField::new(f.data_type().clone());
        Ok(Self {
            keys: RowConverter::new(schema.fields().iter().take(num_keys).map(field).collect())?,
            rows: RowConverter::new(schema.fields().iter().map(field).collect())?,
            num_keys,
            emitted: HashMap::default(),
        })
    }

    /// Record `new` as the window's result; return what changed since its last emission
    /// (`None` if nothing did).
    pub fn update(&mut self, window: W, new: RecordBatch) -> Result<Option<StreamBatch>> {
        let n = new.num_rows();
        self.update_rows(&[(window, 0..n)], &new)
    }

    /// [`Self::update`] of several windows at once, window `w`'s new result the rows `range`
    /// of `new`: one changelog batch, each window's changes together, in the order given.
    pub fn update_rows(&mut self, windows: &[(W, Range<usize>)], new: &RecordBatch) -> Result<Option<StreamBatch>> {
        let keys = Arc::new(self.keys.convert_columns(&new.columns()[..self.num_keys])?);
        let rows = Arc::new(self.rows.convert_columns(new.columns())?);
        // (0, i): row i of `new`; (s, j): row j of the old result in `olds[s - 1]`
        let mut olds: Vec<RecordBatch> = Vec::new();
        let (mut picks, mut kinds): (Vec<(usize, usize)>, Vec<RowKind>) = (Vec::new(), Vec::new());
        for (window, range) in windows {
            let old = self.emitted.remove(window);
            let source = old.as_ref().map(|o| {
                olds.push(o.batch.clone());
                olds.len()
            });
            let mut seen = vec![false; old.as_ref().map(|o| o.batch.num_rows()).unwrap_or(0)];
            let (mut window_picks, mut window_kinds) = (Vec::new(), Vec::new());
            for i in range.clone() {
                match old.as_ref().zip(source).and_then(|(o, s)| o.find(keys.row(i).as_ref()).map(|j| (o, s, j))) {
                    None => {
                        window_picks.push((0, i));
                        window_kinds.push(RowKind::Insert);
                    }
                    Some((o, s, j)) => {
                        seen[j] = true;
                        if o.rows.row(o.offset + j) != rows.row(i) {
                            window_picks.extend([(s, j), (0, i)]);
                            window_kinds.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                        }
                    }
                }
            }
            // deletions first: a row whose key changed (a session's bounds) reads -D old, +I new
            if let Some(s) = source {
                for (j, _) in seen.iter().enumerate().filter(|(_, seen)| !**seen) {
                    picks.push((s, j));
                    kinds.push(RowKind::Delete);
                }
            }
            picks.extend(window_picks);
            kinds.extend(window_kinds);
            let batch = new.slice(range.start, range.len());
            self.emitted.insert(*window, Emitted::new(batch, Arc::clone(&keys), Arc::clone(&rows), range.start));
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let sources: Vec<&RecordBatch> = std::iter::once(new).chain(olds.iter()).collect();
        let batch = interleave_record_batch(&sources, &picks)?;
        Ok(Some(StreamBatch::changelog(batch, &kinds)))
    }

    /// Window `from` merged into `into`: its emitted rows become `into`'s (rows of `into`
    /// with the same key are kept).
    pub fn absorb(&mut self, into: W, from: W) -> Result<()> {
        let Some(from) = self.emitted.remove(&from) else { return Ok(()) };
        let Some(into_emitted) = self.emitted.remove(&into) else {
            self.emitted.insert(into, from);
            return Ok(());
        };
        let batch = concat_batches(&into_emitted.batch.schema(), [&into_emitted.batch, &from.batch])?;
        let keys = self.keys.convert_columns(&batch.columns()[..self.num_keys])?;
        let mut index: HashMap<&[u8], ()> = HashMap::with_capacity_and_hasher(batch.num_rows(), Default::default());
        let mut picks = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if index.insert(keys.row(i).data(), ()).is_none() {
                picks.push((0, i));
            }
        }
        let batch = interleave_record_batch(&[&batch], &picks)?;
        let keys = Arc::new(self.keys.convert_columns(&batch.columns()[..self.num_keys])?);
        let rows = Arc::new(self.rows.convert_columns(batch.columns())?);
        self.emitted.insert(into, Emitted::new(batch, keys, rows, 0));
        Ok(())
    }

    /// Drop a window's emitted result (its state is gone; no more changes will come).
    pub fn forget(&mut self, window: W) {
        self.emitted.remove(&window);
    }

    /// Every window's last emitted result for a checkpoint, each row led by its window's id
    /// as two numbers (`w0`, `w1`). `None` when nothing is kept.
    pub fn to_batch(&self, id: impl Fn(&W) -> (i64, i64)) -> Result<Option<RecordBatch>> {
        let Some(first) = self.emitted.values().next() else { return Ok(None) };
        let schema = first.batch.schema();
        let mut fields = vec![Field::new("w0", DataType::Int64, false), Field::new("w1", DataType::Int64, false)];
        fields.extend(schema.fields().iter().map(|f| f.as_ref().clone()));
        let mut batches = Vec::with_capacity(self.emitted.len());
        for (w, e) in &self.emitted {
            let (a, b) = id(w);
            let n = e.batch.num_rows();
            let mut columns: Vec<ArrayRef> =
                vec![Arc::new(Int64Array::from(vec![a; n])), Arc::new(Int64Array::from(vec![b; n]))];
            columns.extend(e.batch.columns().iter().cloned());
            batches.push(RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns)?);
        }
        Ok(Some(concat_batches(&Arc::new(Schema::new(fields)), &batches)?))
    }

    /// Take up the results a checkpoint saved with [`WindowChanges::to_batch`].
    pub fn restore_batch(&mut self, batch: &RecordBatch, id: impl Fn(i64, i64) -> W) -> Result<()> {
        let bad = || RuntimeError::Checkpoint("saved window results lack their window ids".into());
        let id_column = |i: usize| batch.columns().get(i).and_then(|c| c.as_primitive_opt::<Int64Type>());
        let (w0, w1) = (id_column(0).ok_or_else(bad)?, id_column(1).ok_or_else(bad)?);
        let result = batch.project(&(2..batch.num_columns()).collect::<Vec<_>>())?;
        let mut start = 0;
        while start < batch.num_rows() {
            let key = (w0.value(start), w1.value(start));
            let mut end = start + 1;
            while end < batch.num_rows() && (w0.value(end), w1.value(end)) == key {
                end += 1;
            }
            self.update(id(key.0, key.1), result.slice(start, end - start))?;
            start = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{Int64Array, StringArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
    use datafusion_common::arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn result(rows: &[(&str, i64)]) -> RecordBatch {
        let schema =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn lines(changes: Option<StreamBatch>) -> Vec<String> {
        let Some(c) = changes else { return Vec::new() };
        let table = pretty_format_batches(std::slice::from_ref(&c.batch)).unwrap().to_string();
        let body: Vec<&str> = table.lines().skip(3).filter(|l| !l.starts_with('+')).collect();
        body.iter()
            .enumerate()
            .map(|(i, l)| format!("{} {}", c.kind(i).as_str(), l.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect()
    }

    #[test]
    fn a_window_emits_inserts_then_only_what_changed() {
        let r = result(&[("a", 1)]);
        let mut changes = WindowChanges::new(&r.schema(), 1).unwrap();
        let w = (10, 0);
        assert_eq!(lines(changes.update(w, r).unwrap()), ["+I | a | 1 |"]);
        assert_eq!(
            lines(changes.update(w, result(&[("a", 2), ("b", 1)])).unwrap()),
            ["-U | a | 1 |", "+U | a | 2 |", "+I | b | 1 |"]
        );
        assert!(changes.update(w, result(&[("b", 1), ("a", 2)])).unwrap().is_none(), "same rows: no change");
        assert_eq!(
            lines(changes.update(w, result(&[("b", 3)])).unwrap()),
            ["-D | a | 2 |", "-U | b | 1 |", "+U | b | 3 |"]
        );
        // another window starts from nothing; a forgotten one too
        assert_eq!(lines(changes.update((20, 10), result(&[("a", 1)])).unwrap()), ["+I | a | 1 |"]);
        changes.forget(w);
        assert_eq!(lines(changes.update(w, result(&[("b", 3)])).unwrap()), ["+I | b | 3 |"]);
    }

    #[test]
    fn an_absorbed_window_s_rows_are_deleted_by_the_next_update_of_the_survivor() {
        let mut changes: WindowChanges<u64> = WindowChanges::new(&result(&[]).schema(), 1).unwrap();
        assert_eq!(lines(changes.update(1, result(&[("a", 1)])).unwrap()), ["+I | a | 1 |"]);
        assert_eq!(lines(changes.update(2, result(&[("b", 2)])).unwrap()), ["+I | b | 2 |"]);
        changes.absorb(1, 2).unwrap();
        changes.absorb(1, 3).unwrap(); // never emitted: nothing to take over
        let both = result(&[("c", 3), ("a", 4), ("x", 1)]);
        let all = changes.update_rows(&[(1, 0..2), (2, 2..3)], &both).unwrap();
        assert_eq!(lines(all), ["-D | b | 2 |", "+I | c | 3 |", "-U | a | 1 |", "+U | a | 4 |", "+I | x | 1 |"]);
    }
}
