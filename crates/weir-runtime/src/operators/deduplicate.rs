//! Deduplication: per key, the row that ranks first under `ORDER BY` (Flink's keep-first with
//! `ORDER BY ts`, keep-last with `ORDER BY ts DESC`).
//!
//! ```text
//!   row of key k, in arrival order
//!     k not kept                         ──► +I row, keep it
//!     row ranks before the kept one      ──► -U kept, +U row, keep it
//!       (ties: a later row wins when the first ORDER BY key is DESC, as keep-last expects;
//!        the earlier row stays when it is ASC, as keep-first expects)
//!     otherwise                          ──► nothing
//!   state: one row per key ([`KeyedState`], with the state TTL)
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

/// `ORDER BY` key bytes, inline when short (compared for every row of the key).
type Order = smallvec::SmallVec<[u8; 24]>;

struct Kept {
    order: Order,
    row: Box<[u8]>,
    /// While a batch is processed: 1 + the batch's row this key keeps now (its bytes are
    /// encoded after the batch, only for the rows still kept then); 0 otherwise.
    fresh: u32,
}

/// The deduplication operator.
pub struct DeduplicateOp {
    rows: RankRows,
    /// Ties go to the later row (the first ORDER BY key is descending).
    later_wins_ties: bool,
    kept: KeyedState<Kept>,
    metrics: Arc<Metrics>,
}

impl DeduplicateOp {
    /// Keep one row per partition key, forgetting keys idle for `ttl`.
    pub fn new(rows: RankRows, later_wins_ties: bool, ttl: Option<StateTtl>, metrics: Arc<Metrics>) -> Self {
        Self { rows, later_wins_ties, kept: KeyedState::new(ttl), metrics }
    }
}

impl Operator for DeduplicateOp {
    fn name(&self) -> &'static str {
        "Deduplicate"
    }

    /// One kept row per key.
    fn state_size(&self) -> StateSize {
        let bytes: usize = self.kept.values().map(|k| k.order.len() + k.row.len()).sum();
        StateSize { rows: self.kept.len() as u64, bytes: bytes as u64 }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.before_batch());
        let (partitions, orders) = self.rows.encode_keys(&input.batch)?;
        let mut changes = Changes::default();
        // the keys whose kept row is now one of this batch's
        let mut fresh: Vec<usize> = Vec::new();
        for i in 0..input.batch.num_rows() {
            let key = partitions.row(i);
            let order = orders.row(i).data();
            match self.kept.slot(key.data()) {
                None => {
                    let slot = self.kept.insert(
                        key.data(),
                        Kept { order: Order::from_slice(order), row: Box::default(), fresh: i as u32 + 1 },
                    );
                    fresh.push(slot);
                    changes.input(RowKind::Insert, i, 1);
                }
                Some(slot) => {
                    self.kept.touch(slot);
                    let Some(kept) = self.kept.get_mut(slot) else { continue };
                    let wins = match order.cmp(&kept.order[..]) {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Equal => self.later_wins_ties,
                        std::cmp::Ordering::Greater => false,
                    };
                    if wins {
                        kept.order.clear();
                        kept.order.extend_from_slice(order);
                        match std::mem::replace(&mut kept.fresh, i as u32 + 1) {
                            0 => {
                                fresh.push(slot);
                                changes.kept(RowKind::UpdateBefore, std::mem::take(&mut kept.row), 1);
                            }
                            earlier => changes.input(RowKind::UpdateBefore, earlier as usize - 1, 1),
                        }
                        changes.input(RowKind::UpdateAfter, i, 1);
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let picked: Vec<(usize, u32)> =
                fresh.iter().filter_map(|s| self.kept.get(*s).map(|k| (*s, k.fresh.saturating_sub(1)))).collect();
            let rows: Vec<u32> = picked.iter().map(|(_, row)| *row).collect();
            let encoded = self.rows.encode_rows(&input.batch, &rows)?;
            for (j, (slot, _)) in picked.into_iter().enumerate() {
                if let Some(kept) = self.kept.get_mut(slot) {
                    kept.row = encoded.row(j).data().into();
                    kept.fresh = 0;
                }
            }
        }
        if !changes.is_empty() {
            out.push(Message::Data(self.rows.changes(&input.batch, changes)?));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.on_watermark(watermark));
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// The kept row of every key, with the key's TTL clock.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        save_keyed(&mut self.kept, |k| vec![(&k.order[..], &k.row[..])])
    }

    /// The kept rows of the partition keys this instance owns.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        rescale_rows(parts, self.name(), |keys| self.rows.partition_columns(keys), owned)
    }

    fn restore(&mut self, snapshot: OperatorSnapshot) -> Result<()> {
        restore_keyed(&mut self.kept, snapshot, "Deduplicate", |mut rows| {
            let (order, row) = rows.swap_remove(0);
            Kept { order: Order::from_slice(&order), row, fresh: 0 }
        })
    }
}
