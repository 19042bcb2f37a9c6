//! Top-N per key without a window: the N rows of each key that rank first under `ORDER BY`
//! (Flink's rank with a row number), as a changelog.
//!
//! ```text
//!   row of key k ranking at position p (0-based) among the kept rows
//!     p >= N                      ──► nothing
//!     otherwise, if N rows kept   ──► -D the last (rank N)
//!                                     -U/+U each row from p down, its rank one more
//!                                     +I the row, rank p + 1
//!   ties: a later row ranks first when the first ORDER BY key is DESC, after when it is ASC
//!   state: at most N rows per key ([`KeyedState`], with the state TTL)
//! ```

use std::sync::Arc;

use weir_plan::StateTtl;

use crate::error::Result;
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, RowKind, StreamBatch};
use crate::operator::Operator;
use crate::state::checkpoint::KeyFilter;
use crate::state::checkpoint::OperatorSnapshot;
use crate::state::keyed_state::KeyedState;
use crate::state::rank_rows::{rescale_rows, restore_keyed, save_keyed, Changes, RankRows};

struct Ranked {
    order: Box<[u8]>,
    row: Box<[u8]>,
    /// While a batch is processed: 1 + the batch's row this is (its bytes are encoded after
    /// the batch, for the rows still kept then); 0 otherwise.
    fresh: u32,
}

impl Ranked {
    /// Emit this row: its bytes, or the batch's row it is.
    fn emit(&self, changes: &mut Changes, kind: RowKind, number: u64) -> Option<usize> {
        match self.fresh {
            0 => Some(changes.kept(kind, self.row.clone(), number)),
            f => {
                changes.input(kind, f as usize - 1, number);
                None
            }
        }
    }
}

/// The Top-N operator.
pub struct TopNOp {
    rows: RankRows,
    limit: usize,
    later_wins_ties: bool,
    kept: KeyedState<Vec<Ranked>>,
    metrics: Arc<Metrics>,
}

impl TopNOp {
    /// Keep the first `limit` rows per partition key, forgetting keys idle for `ttl`.
    pub fn new(
        rows: RankRows,
        limit: usize,
        later_wins_ties: bool,
        ttl: Option<StateTtl>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { rows, limit: limit.max(1), later_wins_ties, kept: KeyedState::new(ttl), metrics }
    }
}

impl TopNOp {
    /// Encode the rows of `batch` that the keys in `slots` keep after it.
    fn encode_fresh(
        &mut self,
        batch: &datafusion_common::arrow::record_batch::RecordBatch,
        mut slots: Vec<usize>,
    ) -> Result<()> {
        slots.sort_unstable();
        slots.dedup();
        let mut rows = Vec::new();
        for slot in &slots {
            if let Some(list) = self.kept.get(*slot) {
                rows.extend(list.iter().filter(|r| r.fresh != 0).map(|r| r.fresh - 1));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let encoded = self.rows.encode_rows(batch, &rows)?;
        let mut j = 0;
        for slot in slots {
            let Some(list) = self.kept.get_mut(slot) else { continue };
            for r in list.iter_mut().filter(|r| r.fresh != 0) {
                r.row = encoded.row(j).data().into();
                r.fresh = 0;
                j += 1;
            }
        }
        Ok(())
    }
}

impl Operator for TopNOp {
    fn name(&self) -> &'static str {
        "TopN"
    }

    /// Up to N rows per key.
    fn state_size(&self) -> StateSize {
        let (mut rows, mut bytes) = (0, 0);
        for list in self.kept.values() {
            rows += list.len();
            bytes += list.iter().map(|r| r.order.len() + r.row.len() + 32).sum::<usize>();
        }
        StateSize { rows: rows as u64, bytes: bytes as u64 }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.before_batch());
        let (partitions, orders) = self.rows.encode_keys(&input.batch)?;
        let mut changes = Changes::default();
        // the keys that keep rows of this batch (with repeats)
        let mut fresh: Vec<usize> = Vec::new();
        for i in 0..input.batch.num_rows() {
            let key = partitions.row(i);
            let order = orders.row(i).data();
            let slot = match self.kept.slot(key.data()) {
                Some(slot) => {
                    self.kept.touch(slot);
                    slot
                }
                None => self.kept.insert(key.data(), Vec::with_capacity(self.limit.min(16))),
            };
            let Some(list) = self.kept.get_mut(slot) else { continue };
            let p = if self.later_wins_ties {
                list.partition_point(|r| r.order.as_ref() < order)
            } else {
                list.partition_point(|r| r.order.as_ref() <= order)
            };
            if p >= self.limit {
                continue;
            }
            if list.len() == self.limit {
                if let Some(last) = list.pop() {
                    match last.fresh {
                        0 => _ = changes.kept(RowKind::Delete, last.row, self.limit as u64),
                        f => changes.input(RowKind::Delete, f as usize - 1, self.limit as u64),
                    }
                }
            }
            for (j, r) in list.iter().enumerate().skip(p).rev() {
                match r.emit(&mut changes, RowKind::UpdateBefore, j as u64 + 1) {
                    Some(at) => changes.again(RowKind::UpdateAfter, at, j as u64 + 2),
                    None => _ = r.emit(&mut changes, RowKind::UpdateAfter, j as u64 + 2),
                }
            }
            list.insert(p, Ranked { order: order.into(), row: Box::default(), fresh: i as u32 + 1 });
            fresh.push(slot);
            changes.input(RowKind::Insert, i, p as u64 + 1);
        }
        self.encode_fresh(&input.batch, fresh)?;
        if !changes.is_empty() {
            out.push(Message::Data(self.rows.changes(&input.batch, changes)?));
        }
        Ok(())
    }

    /// The ranked rows of every key, in rank order, with the key's TTL clock.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        save_keyed(&mut self.kept, |list| list.iter().map(|r| (&r.order[..], &r.row[..])).collect())
    }

    /// The kept rows of the partition keys this instance owns.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        rescale_rows(parts, self.name(), |keys| self.rows.partition_columns(keys), owned)
    }

    fn restore(&mut self, snapshot: OperatorSnapshot) -> Result<()> {
        restore_keyed(&mut self.kept, snapshot, "TopN", |rows| {
            rows.into_iter().map(|(order, row)| Ranked { order, row, fresh: 0 }).collect()
        })
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.on_watermark(watermark));
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
