//! The rows a join keeps of one input, by join key, each until a time after which it can no
//! longer match (an interval join's bound, or a TTL).
//!
//! ```text
//!   key bytes ──index──► [(slot, generation)…] ──► slots[slot] = Kept { block, row, until, matches }
//!   blocks[block] = one input batch in Arrow's row format, freed when its last kept row goes
//!   expiry: until ──► [(slot, generation)…]   (BTreeMap: expire(w) pops every until < w)
//! ```
//!
//! Rows stay in the row-format block of the batch they came in (no allocation per row; a
//! batch's rows expire at about the same time) and are turned back into columns only when
//! they match. Short keys are stored inline. A slot freed and reused gets a new generation,
//! so stale references in a key's list or in the expiry map are recognised and skipped.
//! Forgetting a row does not touch the index (a random access per row); a key's list is
//! compacted when a probe finds it mostly stale, and the whole index is swept (in order)
//! once the stale references outnumber the kept rows, so it never grows beyond the state.

use std::collections::{BTreeMap, HashMap};

use ahash::RandomState;
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, AsArray, BinaryArray, Int64Array, UInt32Array};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use datafusion_common::arrow::record_batch::RecordBatch;
use datafusion_common::arrow::row::{Row, RowConverter, Rows, SortField};
use smallvec::SmallVec;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::StateSize;
use crate::message::Nanos;

/// Key bytes, inline when short.
type Key = SmallVec<[u8; 24]>;

/// A kept row.
pub struct Kept {
    block: u32,
    row: u32,
    /// It can match rows of the other side until the watermark passes this time.
    pub until: Nanos,
    /// Matches so far (for a left outer join's NULL-padded row).
    pub matches: u32,
}

struct Slot {
    generation: u32,
    kept: Option<Kept>,
}

type KeyRows = SmallVec<[(u32, u32); 2]>;

struct Block {
    rows: Rows,
    live: usize,
}

/// The kept rows of one side of a join.
pub struct JoinRows {
    converter: RowConverter,
    index: HashMap<Key, KeyRows, RandomState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    blocks: Vec<Option<Block>>,
    free_blocks: Vec<u32>,
    expiry: BTreeMap<Nanos, Vec<(u32, u32)>>,
    live: usize,
    /// References in the index to rows no longer kept (at most).
    stale: usize,
    bytes: usize,
}

/// A batch's rows in the stored format, to insert some of them.
pub struct Encoded {
    block: u32,
}

impl JoinRows {
    /// Empty state for rows of `schema`.
    pub fn new(schema: &SchemaRef) -> Result<Self> {
        let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            blocks: Vec::new(),
            free_blocks: Vec::new(),
            expiry: BTreeMap::new(),
            live: 0,
            stale: 0,
            bytes: 0,
        })
    }

    /// Encode a batch of this side's rows, to keep some of them (a block freed again when none
    /// are kept, by [`Self::release`]).
    pub fn encode(&mut self, columns: &[ArrayRef]) -> Result<Encoded> {
        let rows = self.converter.convert_columns(columns)?;
        self.bytes += rows.size();
        // the encoded batch holds a reference until it is released
        let block = Some(Block { rows, live: 1 });
        let id = match self.free_blocks.pop() {
            Some(b) => {
                self.blocks[b as usize] = block;
                b
            }
            None => {
                self.blocks.push(block);
                (self.blocks.len() - 1) as u32
            }
        };
        Ok(Encoded { block: id })
    }

    /// Row `i` of an encoded batch.
    pub fn encoded_row(&self, e: &Encoded, i: usize) -> Option<Row<'_>> {
        self.blocks.get(e.block as usize)?.as_ref().map(|b| b.rows.row(i))
    }

    /// Done inserting from an encoded batch: free it if no row of it is kept.
    pub fn release(&mut self, e: Encoded) {
        self.unref_block(e.block);
    }

    fn unref_block(&mut self, block: u32) {
        if let Some(Some(b)) = self.blocks.get_mut(block as usize) {
            b.live = b.live.saturating_sub(1);
            if b.live == 0 {
                self.bytes = self.bytes.saturating_sub(b.rows.size());
                self.blocks[block as usize] = None;
                self.free_blocks.push(block);
            }
        }
    }

    /// Keep row `row` of an encoded batch under `key` until `until` (`None`: until
    /// [`Self::schedule`] says).
    pub fn insert(&mut self, key: &[u8], e: &Encoded, row: usize, until: Option<Nanos>) -> u32 {
        if let Some(Some(b)) = self.blocks.get_mut(e.block as usize) {
            b.live += 1;
        }
        let kept = Kept { block: e.block, row: row as u32, until: until.unwrap_or(Nanos::MAX), matches: 0 };
        let slot = match self.free.pop() {
            Some(s) => {
                let slot = &mut self.slots[s as usize];
                slot.generation = slot.generation.wrapping_add(1);
                slot.kept = Some(kept);
                s
            }
            None => {
                self.slots.push(Slot { generation: 0, kept: Some(kept) });
                (self.slots.len() - 1) as u32
            }
        };
        let r = (slot, self.slots[slot as usize].generation);
        self.index.entry(Key::from_slice(key)).or_default().push(r);
        if let Some(until) = until {
            self.expiry.entry(until).or_default().push(r);
        }
        self.live += 1;
        slot
    }

    /// Keep the row in `slot` (stored without a time) until `until`.
    pub fn schedule(&mut self, slot: u32, until: Nanos) {
        let Some(s) = self.slots.get_mut(slot as usize) else { return };
        let generation = s.generation;
        if let Some(k) = s.kept.as_mut() {
            k.until = until;
            self.expiry.entry(until).or_default().push((slot, generation));
        }
    }

    fn is_live(&self, (slot, generation): (u32, u32)) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| s.generation == generation && s.kept.is_some())
    }

    /// The slots of the rows kept under `key`.
    pub fn matches(&mut self, key: &[u8], out: &mut Vec<u32>) {
        let slots = &self.slots;
        let live = |(slot, generation): &(u32, u32)| {
            slots.get(*slot as usize).is_some_and(|s| s.generation == *generation && s.kept.is_some())
        };
        let Some(rows) = self.index.get_mut(key) else { return };
        let before = out.len();
        out.extend(rows.iter().filter(|r| live(r)).map(|(s, _)| *s));
        let found = out.len() - before;
        if rows.len() > 2 * found + 4 {
            self.stale = self.stale.saturating_sub(rows.len() - found);
            rows.retain(|r| live(r));
        }
    }

    /// A kept row.
    pub fn get(&self, slot: u32) -> Option<&Kept> {
        self.slots.get(slot as usize).and_then(|s| s.kept.as_ref())
    }

    /// A kept row, to count its matches.
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Kept> {
        self.slots.get_mut(slot as usize).and_then(|s| s.kept.as_mut())
    }

    fn row_of(&self, k: &Kept) -> Option<Row<'_>> {
        self.blocks.get(k.block as usize)?.as_ref().map(|b| b.rows.row(k.row as usize))
    }

    /// Forget a kept row (its values can no longer be read).
    pub fn remove(&mut self, slot: u32) -> Option<Kept> {
        let kept = self.slots.get_mut(slot as usize)?.kept.take()?;
        self.free.push(slot);
        self.live -= 1;
        self.stale += 1;
        self.unref_block(kept.block);
        if self.stale > self.live.max(256) {
            self.sweep();
        }
        Some(kept)
    }

    /// Drop every stale reference from the index, and the keys left without rows.
    fn sweep(&mut self) {
        let slots = &self.slots;
        self.index.retain(|_, rows| {
            rows.retain(|(slot, generation)| {
                slots.get(*slot as usize).is_some_and(|s| s.generation == *generation && s.kept.is_some())
            });
            !rows.is_empty()
        });
        self.stale = 0;
    }

    /// The slot of a kept row equal to row `i` of `e` under `key` (what a retraction takes
    /// back).
    pub fn find_equal(&mut self, key: &[u8], e: &Encoded, i: usize) -> Option<u32> {
        let mut slots = Vec::new();
        self.matches(key, &mut slots);
        let row = self.encoded_row(e, i)?;
        slots.into_iter().find(|s| self.get(*s).and_then(|k| self.row_of(k)).is_some_and(|r| r == row))
    }

    /// Forget every row whose `until` is before `now`; `keep` picks the ones whose values are
    /// wanted (as columns, in `until` order).
    pub fn expire(&mut self, now: Nanos, keep: impl Fn(&Kept) -> bool) -> Result<Option<Vec<ArrayRef>>> {
        let mut expired = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() >= now {
                break;
            }
            expired.extend(entry.remove().into_iter().filter(|r| self.is_live(*r)).map(|(s, _)| s));
        }
        let wanted: Vec<u32> = expired.iter().copied().filter(|s| self.get(*s).is_some_and(&keep)).collect();
        let columns = if wanted.is_empty() { None } else { Some(self.columns_of(&wanted)?) };
        for s in expired {
            self.remove(s);
        }
        Ok(columns)
    }

    /// The columns of the kept rows in `slots`.
    pub fn columns_of(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        let rows: Vec<Row<'_>> = slots.iter().filter_map(|s| self.get(*s)).filter_map(|k| self.row_of(k)).collect();
        Ok(self.converter.convert_rows(rows)?)
    }

    /// Every kept row for a checkpoint, as one batch: its key, `until`, matches and slot, then
    /// its columns. `None` when no row is kept.
    pub fn to_batch(&self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        let (mut keys, mut untils, mut matches, mut slots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, refs) in &self.index {
            for r in refs.iter().filter(|r| self.is_live(**r)) {
                let Some(k) = self.get(r.0) else { continue };
                keys.push(&key[..]);
                untils.push(k.until);
                matches.push(k.matches);
                slots.push(r.0);
            }
        }
        if slots.is_empty() {
            return Ok(None);
        }
        let mut fields = vec![
            Field::new("key", DataType::Binary, false),
            Field::new("until", DataType::Int64, false),
            Field::new("matches", DataType::UInt32, false),
            Field::new("slot", DataType::UInt32, false),
        ];
        fields.extend(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(keys)),
            Arc::new(Int64Array::from(untils)),
            Arc::new(UInt32Array::from(matches)),
            Arc::new(UInt32Array::from(slots.clone())),
        ];
        columns.extend(self.columns_of(&slots)?);
        Ok(Some(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?))
    }

    /// Keep the rows of a batch [`Self::to_batch`] made. Returns, per row, its saved slot and
    /// its slot now.
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<Vec<(u32, u32)>> {
        let bad = || RuntimeError::Checkpoint("the saved rows of a join are not valid".into());
        let column = |i: usize| batch.columns().get(i).ok_or_else(bad);
        let keys = column(0)?.as_binary_opt::<i32>().ok_or_else(bad)?;
        let untils = column(1)?.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
        let matches = column(2)?.as_primitive_opt::<UInt32Type>().ok_or_else(bad)?;
        let slots = column(3)?.as_primitive_opt::<UInt32Type>().ok_or_else(bad)?;
        let e = self.encode(&batch.columns()[4..])?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let until = untils.value(i);
            let slot = self.insert(keys.value(i), &e, i, (until != Nanos::MAX).then_some(until));
            if let Some(k) = self.get_mut(slot) {
                k.matches = matches.value(i);
            }
            out.push((slots.value(i), slot));
        }
        self.release(e);
        Ok(out)
    }

    /// Rows kept and their approximate size.
    pub fn size(&self) -> StateSize {
        let slots = self.slots.len() * std::mem::size_of::<Slot>();
        let index = self.index.len() * (std::mem::size_of::<Key>() + std::mem::size_of::<KeyRows>() + 8);
        StateSize { rows: self.live as u64, bytes: (self.bytes + slots + index + self.expiry.len() * 48) as u64 }
    }
}
