//! Upserts to a changelog: what an `upsert-kafka` table reads is the latest row of each key,
//! and a key's removal (Flink's ChangelogNormalize). The operator keeps each key's row, so
//! that what it emits is a proper changelog, which aggregates and joins can retract from.
//!
//! ```text
//!   row of key k (+I or +U: a new value for k)
//!     k not kept            ──► +I row, keep it
//!     k kept as old         ──► -U old, +U row, keep it (nothing when row = old)
//!   removal of key k (-D or -U: a tombstone; only the key's columns count)
//!     k kept as old         ──► -D old, forget k
//!     k not kept            ──► nothing
//!   state: one row per key ([`KeyedState`], with the state TTL)
//! ```

use std::sync::Arc;

use datafusion_common::arrow::array::RecordBatchOptions;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use datafusion_common::arrow::row::{RowConverter, SortField};
use weir_plan::StateTtl;

use crate::error::Result;
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, RowKind, StreamBatch};
use crate::operator::Operator;
use crate::state::checkpoint::OperatorSnapshot;
use crate::state::keyed_state::KeyedState;
use crate::state::rank_rows::{restore_keyed, save_keyed};

/// The upsert-normalizing operator.
pub struct UpsertNormalizeOp {
    /// The key's columns.
    key: Vec<usize>,
    keys: RowConverter,
    rows: RowConverter,
    schema: SchemaRef,
    kept: KeyedState<Box<[u8]>>,
    metrics: Arc<Metrics>,
}

impl UpsertNormalizeOp {
    /// Rows of `schema` keyed by the columns `key`, forgetting keys idle for `ttl`.
    pub fn new(key: Vec<usize>, schema: SchemaRef, ttl: Option<StateTtl>, metrics: Arc<Metrics>) -> Result<Self> {
        let field = |i: &usize| SortField::new(schema.field(*i).data_type().clone());
        let keys = RowConverter::new(key.iter().map(field).collect())?;
        let rows = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(Self { key, keys, rows, schema, kept: KeyedState::new(ttl), metrics })
    }
}

impl Operator for UpsertNormalizeOp {
    fn name(&self) -> &'static str {
        "UpsertNormalize"
    }

    /// One row per key.
    fn state_size(&self) -> StateSize {
        let bytes: usize = self.kept.values().map(|r| r.len()).sum();
        StateSize { rows: self.kept.len() as u64, bytes: bytes as u64 }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.before_batch());
        let batch = &input.batch;
        let key_columns: Vec<_> = self.key.iter().map(|i| Arc::clone(batch.column(*i))).collect();
        let keys = self.keys.convert_columns(&key_columns)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let mut changes: Vec<(RowKind, Box<[u8]>)> = Vec::new();
        for i in 0..batch.num_rows() {
            let key = keys.row(i);
            let slot = self.kept.slot(key.data());
            if input.kind(i).is_retraction() {
                if let Some(old) = slot.and_then(|s| self.kept.remove(s)) {
                    changes.push((RowKind::Delete, old));
                }
                continue;
            }
            let row: Box<[u8]> = rows.row(i).data().into();
            match slot {
                None => {
                    self.kept.insert(key.data(), row.clone());
                    changes.push((RowKind::Insert, row));
                }
                Some(s) => {
                    self.kept.touch(s);
                    let Some(kept) = self.kept.get_mut(s) else { continue };
                    if *kept != row {
                        let old = std::mem::replace(kept, row.clone());
                        changes.push((RowKind::UpdateBefore, old));
                        changes.push((RowKind::UpdateAfter, row));
                    }
                }
            }
        }
        if !changes.is_empty() {
            let kinds: Vec<RowKind> = changes.iter().map(|c| c.0).collect();
            let parser = self.rows.parser();
            let columns = self.rows.convert_rows(changes.iter().map(|c| parser.parse(&c.1)))?;
            let options = RecordBatchOptions::new().with_row_count(Some(changes.len()));
            let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
            out.push(Message::Data(StreamBatch::changelog(batch, &kinds)));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        Metrics::add(&self.metrics.expired_keys, self.kept.on_watermark(watermark));
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// The row of every key, with the key's TTL clock.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        save_keyed(&mut self.kept, |row| vec![(&[][..], &row[..])])
    }

    /// The rows of the keys this instance owns.
    fn rescale(
        &self,
        parts: Vec<OperatorSnapshot>,
        owned: &crate::state::checkpoint::KeyFilter<'_>,
    ) -> Result<OperatorSnapshot> {
        crate::state::rank_rows::rescale_rows(
            parts,
            self.name(),
            |keys| crate::state::rank_rows::decode(&self.keys, keys),
            owned,
        )
    }

    fn restore(&mut self, snapshot: OperatorSnapshot) -> Result<()> {
        restore_keyed(&mut self.kept, snapshot, "UpsertNormalize", |mut rows| rows.swap_remove(0).1)
    }
}
