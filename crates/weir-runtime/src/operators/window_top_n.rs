//! Window Top-N: the first N rows of each window partition under `ORDER BY`, emitted once the
//! watermark passes the window's end (Flink's window Top-N).
//!
//! ```text
//!   row ──► partition (window_end, partition key bytes) ──► sorted list of at most N
//!           (order key, row bytes); a row ranking below the N-th is dropped
//!   Watermark(w): every partition with window_end <= w is emitted in (window_end, key) order,
//!                 rows numbered 1..; then freed
//! ```
//!
//! A batch's partition and order keys are encoded for every row, whole rows only for those
//! still kept after it.
//!
//! Input from a window aggregate arrives just before the watermark that closes its window.
//! Input straight from a TUMBLE table function is judged late like a window aggregate's: a
//! row whose window has ended under its watermark is counted and dropped. Ties in `ORDER BY`
//! keep arrival order, so the result does not depend on batching.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, Int64Array};
use datafusion_common::arrow::row::Rows;

use crate::error::Result;
use crate::exec::dropped::{show_time, DroppedCollector};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch};
use crate::operator::Operator;
use crate::operators::window_aggregate::to_nanos;
use crate::state::checkpoint::KeyFilter;
use crate::state::checkpoint::OperatorSnapshot;
use crate::state::rank_rows::{rescale_rows, RankRows, SavedRows};

/// A kept row: its order key and bytes; a partition's are sorted by order key, ties in arrival
/// order.
struct Kept {
    order: Box<[u8]>,
    row: Box<[u8]>,
    /// While a batch is processed: 1 + the batch's row this is (its bytes are encoded after the
    /// batch, if it is still kept then); 0 otherwise.
    fresh: u32,
}

/// Kept rows by window end, then partition key.
type Partitions = BTreeMap<Nanos, BTreeMap<Box<[u8]>, Vec<Kept>>>;

/// The window Top-N operator.
pub struct WindowTopNOp {
    rows: RankRows,
    end_column: usize,
    judge_lateness: bool,
    limit: usize,
    partitions: Partitions,
    metrics: Arc<Metrics>,
}

impl WindowTopNOp {
    /// Keep `limit` rows per partition; `end_column` holds each row's window end.
    pub fn new(rows: RankRows, end_column: usize, judge_lateness: bool, limit: usize, metrics: Arc<Metrics>) -> Self {
        Self { rows, end_column, judge_lateness, limit, partitions: BTreeMap::new(), metrics }
    }

    /// Encode the rows of `batch` still kept after it, in the partitions rows `touched` went to.
    fn encode_fresh(
        &mut self,
        batch: &datafusion_common::arrow::record_batch::RecordBatch,
        partitions: &Rows,
        ends: &Int64Array,
        touched: Vec<u32>,
    ) -> Result<()> {
        let mut lists: Vec<(Nanos, &[u8])> =
            touched.iter().map(|i| (ends.value(*i as usize), partitions.row(*i as usize).data())).collect();
        lists.sort_unstable();
        lists.dedup();
        let mut rows = Vec::new();
        for (end, key) in &lists {
            if let Some(kept) = self.partitions.get(end).and_then(|w| w.get(*key)) {
                rows.extend(kept.iter().filter(|k| k.fresh != 0).map(|k| k.fresh - 1));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let encoded = self.rows.encode_rows(batch, &rows)?;
        let mut j = 0;
        for (end, key) in lists {
            let Some(kept) = self.partitions.get_mut(&end).and_then(|w| w.get_mut(key)) else { continue };
            for k in kept.iter_mut().filter(|k| k.fresh != 0) {
                k.row = encoded.row(j).data().into();
                k.fresh = 0;
                j += 1;
            }
        }
        Ok(())
    }
}

impl Operator for WindowTopNOp {
    fn name(&self) -> &'static str {
        "WindowTopN"
    }

    /// The rows kept per open window partition.
    fn state_size(&self) -> StateSize {
        let mut size = StateSize::default();
        for (key, kept) in self.partitions.values().flatten() {
            size.rows += kept.len() as u64;
            size.bytes += (key.len() + kept.iter().map(|k| k.order.len() + k.row.len()).sum::<usize>()) as u64;
        }
        size
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let ends = to_nanos(input.batch.column(self.end_column))?;
        let (partitions, orders) = self.rows.encode_keys(&input.batch)?;
        // a row of each partition that took a row of the batch
        let mut touched: Vec<u32> = Vec::new();
        let (mut late, mut null_time) = (0, 0);
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        for i in 0..input.batch.num_rows() {
            if ends.is_null(i) {
                null_time += 1;
                dropped.null_time(i);
                continue;
            }
            let end = ends.value(i);
            if let Some(wm) =
                input.row_watermarks.as_ref().map(|w| w.value(i)).filter(|w| self.judge_lateness && end <= *w)
            {
                late += 1;
                dropped.drop_row(i, || {
                    format!("late: its window ending {} had closed (watermark {})", show_time(end), show_time(wm))
                });
                continue;
            }
            let (key, order) = (partitions.row(i), orders.row(i));
            let window = self.partitions.entry(end).or_default();
            let kept = match window.get_mut(key.data()) {
                Some(kept) => kept,
                None => window.entry(key.data().into()).or_default(),
            };
            let at = kept.partition_point(|k| &k.order[..] <= order.data());
            if at < self.limit {
                kept.insert(at, Kept { order: order.data().into(), row: Box::default(), fresh: i as u32 + 1 });
                kept.truncate(self.limit);
                touched.push(i as u32);
            }
        }
        self.encode_fresh(&input.batch, &partitions, &ends, touched)?;
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    /// The kept rows of every open window partition, in rank order.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let mut saved = SavedRows::default();
        for (end, window) in &self.partitions {
            for (key, list) in window {
                for k in list {
                    saved.push(key, *end, false, &k.order, &k.row);
                }
            }
        }
        let mut snapshot = OperatorSnapshot::empty();
        if let Some(batch) = saved.into_batch()? {
            snapshot.push("kept", batch);
        }
        Ok(snapshot)
    }

    /// The kept rows of the partition keys this instance owns.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        rescale_rows(parts, self.name(), |keys| self.rows.partition_columns(keys), owned)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        let Some(kept) = snapshot.take("kept") else { return Ok(()) };
        for (key, end, _, order, row) in SavedRows::read(&kept)? {
            self.partitions.entry(end).or_default().entry(key).or_default().push(Kept { order, row, fresh: 0 });
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        let mut closed = Vec::new();
        while let Some(entry) = self.partitions.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            closed.extend(entry.remove().into_values());
        }
        if !closed.is_empty() {
            let rows = closed.iter().flat_map(|kept| kept.iter().zip(1u64..).map(|(k, n)| (&k.row[..], n)));
            out.push(Message::Data(StreamBatch::new(self.rows.output(rows)?)));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
