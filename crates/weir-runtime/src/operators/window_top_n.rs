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
//! Input from a window aggregate arrives just before the watermark that closes its window.
//! Input straight from a TUMBLE table function is judged late like a window aggregate's: a
//! row whose window has ended under its watermark is counted and dropped. Ties in `ORDER BY`
//! keep arrival order, so the result does not depend on batching.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::array::Array;

use crate::error::Result;
use crate::exec::dropped::{show_time, DroppedCollector};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch};
use crate::operator::Operator;
use crate::operators::window_aggregate::to_nanos;
use crate::state::checkpoint::KeyFilter;
use crate::state::checkpoint::OperatorSnapshot;
use crate::state::rank_rows::{rescale_rows, RankRows, SavedRows};

/// (order key, row), sorted by order key, ties in arrival order.
type Kept = (Box<[u8]>, Box<[u8]>);

/// The window Top-N operator.
pub struct WindowTopNOp {
    rows: RankRows,
    end_column: usize,
    judge_lateness: bool,
    limit: usize,
    partitions: BTreeMap<(Nanos, Box<[u8]>), Vec<Kept>>,
    metrics: Arc<Metrics>,
}

impl WindowTopNOp {
    /// Keep `limit` rows per partition; `end_column` holds each row's window end.
    pub fn new(rows: RankRows, end_column: usize, judge_lateness: bool, limit: usize, metrics: Arc<Metrics>) -> Self {
        Self { rows, end_column, judge_lateness, limit, partitions: BTreeMap::new(), metrics }
    }
}

impl Operator for WindowTopNOp {
    fn name(&self) -> &'static str {
        "WindowTopN"
    }

    /// The rows kept per open window partition.
    fn state_size(&self) -> StateSize {
        let mut size = StateSize::default();
        for ((_, key), kept) in &self.partitions {
            size.rows += kept.len() as u64;
            size.bytes += (key.len() + kept.iter().map(|(o, r)| o.len() + r.len()).sum::<usize>()) as u64;
        }
        size
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let ends = to_nanos(input.batch.column(self.end_column))?;
        let encoded = self.rows.encode(&input.batch)?;
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
            let order: Box<[u8]> = encoded.orders.row(i).data().into();
            let kept = self.partitions.entry((end, encoded.partitions.row(i).data().into())).or_default();
            let at = kept.partition_point(|k| k.0 <= order);
            if at < self.limit {
                kept.insert(at, (order, encoded.rows.row(i).data().into()));
                kept.truncate(self.limit);
            }
        }
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    /// The kept rows of every open window partition, in rank order.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let mut saved = SavedRows::default();
        for ((end, key), list) in &self.partitions {
            for (order, row) in list {
                saved.push(key, *end, false, order, row);
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
            self.partitions.entry((end, key)).or_default().push((order, row));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        let mut closed = Vec::new();
        while let Some(entry) = self.partitions.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            closed.push(entry.remove());
        }
        if !closed.is_empty() {
            let rows = closed.iter().flat_map(|kept| kept.iter().zip(1u64..).map(|(k, n)| (&k.1[..], n)));
            out.push(Message::Data(StreamBatch::new(self.rows.output(rows)?)));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
