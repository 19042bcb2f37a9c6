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
        let encoded = self.rows.encode(&input.batch)?;
        let mut changes = Changes::default();
        for i in 0..input.batch.num_rows() {
            let key = encoded.partitions.row(i);
            let order = encoded.orders.row(i).data();
            let row = encoded.rows.row(i).data();
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
                    changes.kept(RowKind::Delete, last.row, self.limit as u64);
                }
            }
            for (j, r) in list.iter().enumerate().skip(p).rev() {
                let at = changes.kept(RowKind::UpdateBefore, r.row.clone(), j as u64 + 1);
                changes.again(RowKind::UpdateAfter, at, j as u64 + 2);
            }
            list.insert(p, Ranked { order: order.into(), row: row.into() });
            changes.input(RowKind::Insert, i, p as u64 + 1);
        }
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
            rows.into_iter().map(|(order, row)| Ranked { order, row }).collect()
        })
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.on_watermark(watermark));
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
