//! The rows a join keeps of one input, by join key, each until a time after which it can no
//! longer match (an interval join's bound, or a TTL).
//!
//! ```text
//!   key bytes ──index──► keys[k] = { key, head, tail } ──► slots[head] ⇄ slots[next] ⇄ … (in
//!                                    the order they came)   each Kept { block, row, until, matches }
//!   blocks[block] = one input batch's columns as they came (shared, not copied), freed when
//!                   its last kept row goes
//!   expiry: until / ~1 ms ──► [(until, slot, generation)…]   (BTreeMap of buckets: expire(w)
//!           takes every bucket before w's, and the rows before w from w's)
//! ```
//!
//! Rows stay in the columns of the batch they came in: keeping a batch's rows copies nothing
//! (the batch's arrays are shared), and a batch's rows expire at about the same time. Matched
//! rows are gathered from their blocks with Arrow's `interleave`, column by column. The index
//! is a hash table of key numbers (4 bytes a key, so that it stays in the cache), each key's
//! bytes (inline when short) and its first and last row are in `keys`, and a key's rows are
//! linked through their slots: forgetting a row unlinks it (and drops its key from the index
//! when it was the last). A slot freed and reused gets a new generation, so stale references
//! in the expiry buckets are recognised and skipped.

use std::collections::{BTreeMap, HashMap};

use ahash::RandomState;
use hashbrown::HashTable;
use std::sync::Arc;

use datafusion_common::arrow::array::{
    make_comparator, new_empty_array, Array, ArrayRef, AsArray, BinaryArray, Int64Array, UInt32Array,
};
use datafusion_common::arrow::compute::{interleave, take, SortOptions};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use datafusion_common::arrow::record_batch::RecordBatch;
use smallvec::SmallVec;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::StateSize;
use crate::message::Nanos;

/// Key bytes, inline when short (three 64-bit columns in the row format take 27).
type Key = SmallVec<[u8; 32]>;

/// A kept row.
pub struct Kept {
    block: u32,
    row: u32,
    /// It can match rows of the other side until the watermark passes this time.
    pub until: Nanos,
    /// Matches so far (for a left outer join's NULL-padded row).
    pub matches: u32,
}

/// No slot or key.
const NONE: u32 = u32::MAX;

struct Slot {
    generation: u32,
    kept: Option<Kept>,
    /// Its key (in `keys`) and its neighbours among the key's rows.
    key: u32,
    prev: u32,
    next: u32,
}

/// A key with rows kept.
struct KeyRows {
    key: Key,
    hash: u64,
    head: u32,
    tail: u32,
}

/// An input batch some of whose rows are kept.
struct Block {
    columns: Vec<ArrayRef>,
    /// Rows kept, plus one while the batch is being inserted from.
    live: usize,
    bytes: usize,
}

/// When a row expires: `(until, slot, generation)`, in a bucket of rows expiring within the
/// same 2^[`BUCKET_BITS`] ns.
type Expiry = (Nanos, u32, u32);

/// Expiry buckets are 2^20 ns (about 1 ms) wide: one entry per bucket in the ordered map, not
/// one per row.
const BUCKET_BITS: u32 = 20;

/// An array to hold, copied when it is a small slice of larger buffers (which holding it would
/// keep whole), shared otherwise.
fn own_buffers(array: &ArrayRef) -> Result<ArrayRef> {
    let whole = array.get_buffer_memory_size();
    let used = array.to_data().get_slice_memory_size().unwrap_or(whole);
    if whole <= 2 * used + (64 << 10) {
        return Ok(Arc::clone(array));
    }
    Ok(take(array.as_ref(), &UInt32Array::from_iter_values(0..array.len() as u32), None)?)
}

/// The kept rows of one side of a join.
pub struct JoinRows {
    schema: SchemaRef,
    /// Numbers of the keys in `keys`, by their hash.
    index: HashTable<u32>,
    hasher: RandomState,
    keys: Vec<Option<KeyRows>>,
    free_keys: Vec<u32>,
    /// Bytes of the keys too long to be kept inline.
    spilled: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    blocks: Vec<Option<Block>>,
    free_blocks: Vec<u32>,
    expiry: BTreeMap<i64, Vec<Expiry>>,
    /// The bucket rows were last scheduled in, filled here and moved into `expiry` when a row
    /// goes to another bucket or rows expire (rows come in about time order: most go to the
    /// bucket the row before went to).
    open: (i64, Vec<Expiry>),
    /// Entries in `expiry`.
    scheduled: usize,
    live: usize,
    bytes: usize,
}

/// A batch of this side's rows, held to keep some of them.
pub struct Held {
    block: u32,
}

impl JoinRows {
    /// Empty state for rows of `schema`, its keys hashed by `hasher` (both sides of a join
    /// share one, so that a row's key is hashed once for both).
    pub fn new(schema: &SchemaRef, hasher: RandomState) -> Result<Self> {
        Ok(Self {
            schema: Arc::clone(schema),
            index: HashTable::new(),
            hasher,
            keys: Vec::new(),
            free_keys: Vec::new(),
            spilled: 0,
            slots: Vec::new(),
            free: Vec::new(),
            blocks: Vec::new(),
            free_blocks: Vec::new(),
            expiry: BTreeMap::new(),
            open: (0, Vec::new()),
            scheduled: 0,
            live: 0,
            bytes: 0,
        })
    }

    /// Hold a batch of this side's rows (its columns, shared), to keep some of them; it is
    /// freed again when none are kept, by [`Self::release`].
    pub fn hold(&mut self, columns: &[ArrayRef]) -> Result<Held> {
        if columns.len() != self.schema.fields().len() {
            return Err(RuntimeError::Internal(format!(
                "a join side of {} columns was given a batch of {}",
                self.schema.fields().len(),
                columns.len()
            )));
        }
        if let Some((c, f)) =
            columns.iter().zip(self.schema.fields()).find(|(c, f)| !c.data_type().equals_datatype(f.data_type()))
        {
            return Err(RuntimeError::Internal(format!(
                "a join side's column {} is {}, given {}",
                f.name(),
                f.data_type(),
                c.data_type()
            )));
        }
        let columns = columns.iter().map(own_buffers).collect::<Result<Vec<_>>>()?;
        let bytes = columns.iter().map(|c| c.get_array_memory_size()).sum();
        self.bytes += bytes;
        // the held batch counts as a reference until it is released
        let block = Some(Block { columns, live: 1, bytes });
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
        Ok(Held { block: id })
    }

    /// Done inserting from a held batch: free it if no row of it is kept.
    pub fn release(&mut self, h: Held) {
        self.unref_block(h.block);
    }

    fn unref_block(&mut self, block: u32) {
        if let Some(Some(b)) = self.blocks.get_mut(block as usize) {
            b.live = b.live.saturating_sub(1);
            if b.live == 0 {
                self.bytes = self.bytes.saturating_sub(b.bytes);
                self.blocks[block as usize] = None;
                self.free_blocks.push(block);
            }
        }
    }

    fn push_expiry(&mut self, until: Nanos, (slot, generation): (u32, u32)) {
        self.scheduled += 1;
        let bucket = until >> BUCKET_BITS;
        if bucket != self.open.0 {
            self.close_bucket();
            self.open.0 = bucket;
        }
        self.open.1.push((until, slot, generation));
    }

    /// Move the open bucket's rows into the map.
    fn close_bucket(&mut self) {
        let (bucket, rows) = &mut self.open;
        if !rows.is_empty() {
            // copied, so that the open bucket keeps its buffer
            self.expiry.entry(*bucket).or_default().append(rows);
        }
    }

    /// The hash of `key` that [`Self::matches`] and [`Self::insert`] take.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The number of `key` (of hash `hash`) in `keys`, if it has rows.
    fn find_key(&self, key: &[u8], hash: u64) -> Option<u32> {
        let keys = &self.keys;
        self.index
            .find(hash, |&k| keys[k as usize].as_ref().is_some_and(|r| r.hash == hash && &r.key[..] == key))
            .copied()
    }

    /// The number of `key` (of hash `hash`) in `keys`, added (without rows) if it has none.
    fn key_number(&mut self, key: &[u8], hash: u64) -> u32 {
        if let Some(k) = self.find_key(key, hash) {
            return k;
        }
        let rows = KeyRows { key: Key::from_slice(key), hash, head: NONE, tail: NONE };
        if rows.key.spilled() {
            self.spilled += key.len();
        }
        let k = match self.free_keys.pop() {
            Some(k) => {
                self.keys[k as usize] = Some(rows);
                k
            }
            None => {
                self.keys.push(Some(rows));
                (self.keys.len() - 1) as u32
            }
        };
        let keys = &self.keys;
        self.index.insert_unique(hash, k, |&k| keys[k as usize].as_ref().map_or(0, |r| r.hash));
        k
    }

    /// Keep row `row` of a held batch under `key` (of [`Self::hash`] `hash`) until `until`
    /// (`None`: until [`Self::schedule`] says).
    pub fn insert(&mut self, key: &[u8], hash: u64, h: &Held, row: usize, until: Option<Nanos>) -> u32 {
        if let Some(Some(b)) = self.blocks.get_mut(h.block as usize) {
            b.live += 1;
        }
        let k = self.key_number(key, hash);
        let tail = self.keys[k as usize].as_ref().map_or(NONE, |r| r.tail);
        let kept = Kept { block: h.block, row: row as u32, until: until.unwrap_or(Nanos::MAX), matches: 0 };
        let slot = match self.free.pop() {
            Some(s) => {
                let slot = &mut self.slots[s as usize];
                slot.generation = slot.generation.wrapping_add(1);
                slot.kept = Some(kept);
                (slot.key, slot.prev, slot.next) = (k, tail, NONE);
                s
            }
            None => {
                self.slots.push(Slot { generation: 0, kept: Some(kept), key: k, prev: tail, next: NONE });
                (self.slots.len() - 1) as u32
            }
        };
        // at the end of its key's rows
        if let Some(t) = self.slots.get_mut(tail as usize) {
            t.next = slot;
        }
        if let Some(r) = self.keys[k as usize].as_mut() {
            if r.head == NONE {
                r.head = slot;
            }
            r.tail = slot;
        }
        if let Some(until) = until {
            self.push_expiry(until, (slot, self.slots[slot as usize].generation));
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
            self.push_expiry(until, (slot, generation));
        }
    }

    fn is_live(&self, (slot, generation): (u32, u32)) -> bool {
        self.slots.get(slot as usize).is_some_and(|s| s.generation == generation && s.kept.is_some())
    }

    /// The slots of the rows kept under `key` (of [`Self::hash`] `hash`), in the order they
    /// came.
    pub fn matches(&self, key: &[u8], hash: u64, out: &mut Vec<u32>) {
        let Some(k) = self.find_key(key, hash) else { return };
        let mut s = self.keys[k as usize].as_ref().map_or(NONE, |r| r.head);
        while let Some(slot) = self.slots.get(s as usize) {
            out.push(s);
            s = slot.next;
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

    /// Forget a kept row (its values can no longer be read).
    pub fn remove(&mut self, slot: u32) -> Option<Kept> {
        let s = self.slots.get_mut(slot as usize)?;
        let kept = s.kept.take()?;
        let (k, prev, next) = (s.key, s.prev, s.next);
        (s.prev, s.next) = (NONE, NONE);
        self.free.push(slot);
        self.live -= 1;
        self.unref_block(kept.block);
        // unlink it from its key's rows, and drop the key when it was its last
        if let Some(p) = self.slots.get_mut(prev as usize) {
            p.next = next;
        }
        if let Some(n) = self.slots.get_mut(next as usize) {
            n.prev = prev;
        }
        let Some(Some(r)) = self.keys.get_mut(k as usize) else { return Some(kept) };
        if r.head == slot {
            r.head = next;
        }
        if r.tail == slot {
            r.tail = prev;
        }
        if r.head == NONE {
            let hash = r.hash;
            if r.key.spilled() {
                self.spilled -= r.key.len();
            }
            self.keys[k as usize] = None;
            self.free_keys.push(k);
            if let Ok(entry) = self.index.find_entry(hash, |&x| x == k) {
                entry.remove();
            }
        }
        Some(kept)
    }

    /// The slot of a kept row equal to row `i` of `h` under `key` (what a retraction takes
    /// back): equal in every column, NULL equal to NULL.
    pub fn find_equal(&self, key: &[u8], h: &Held, i: usize) -> Result<Option<u32>> {
        let mut slots = Vec::new();
        self.matches(key, self.hash(key), &mut slots);
        let Some(Some(incoming)) = self.blocks.get(h.block as usize) else { return Ok(None) };
        for s in slots {
            let Some(k) = self.get(s) else { continue };
            let Some(Some(block)) = self.blocks.get(k.block as usize) else { continue };
            let mut equal = true;
            for (kept, theirs) in block.columns.iter().zip(&incoming.columns) {
                let cmp = make_comparator(kept.as_ref(), theirs.as_ref(), SortOptions::default())?;
                if !cmp(k.row as usize, i).is_eq() {
                    equal = false;
                    break;
                }
            }
            if equal {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Forget every row whose `until` is before `now`; `keep` picks the ones whose values are
    /// wanted (as columns, in `until` order).
    pub fn expire(&mut self, now: Nanos, keep: impl Fn(&Kept) -> bool) -> Result<Option<Vec<ArrayRef>>> {
        self.close_bucket();
        let mut due: Vec<Expiry> = Vec::new();
        let current = now >> BUCKET_BITS;
        while let Some(mut entry) = self.expiry.first_entry() {
            let bucket = *entry.key();
            if bucket < current {
                due.append(&mut entry.remove());
            } else {
                if bucket == current {
                    // the bucket `now` falls in: its rows before `now`
                    let rows = entry.get_mut();
                    due.extend(rows.iter().filter(|(until, ..)| *until < now));
                    rows.retain(|(until, ..)| *until >= now);
                    if rows.is_empty() {
                        entry.remove();
                    }
                }
                break;
            }
        }
        self.scheduled -= due.len();
        due.retain(|(_, s, g)| self.is_live((*s, *g)));
        let mut wanted: Vec<(Nanos, u32)> =
            due.iter().filter(|(_, s, _)| self.get(*s).is_some_and(&keep)).map(|(until, s, _)| (*until, *s)).collect();
        // in `until` order (a bucket's rows are in the order they were scheduled: a stable sort)
        wanted.sort_by_key(|(until, _)| *until);
        let wanted: Vec<u32> = wanted.into_iter().map(|(_, s)| s).collect();
        let expired = due.into_iter().map(|(_, s, _)| s);
        let columns = if wanted.is_empty() { None } else { Some(self.columns_of(&wanted)?) };
        for s in expired {
            self.remove(s);
        }
        Ok(columns)
    }

    /// The columns of the kept rows in `slots`, gathered from the batches they came in.
    pub fn columns_of(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        self.some_columns_of(slots, &(0..self.schema.fields().len()).collect::<Vec<_>>())
    }

    /// Columns `which` (by position) of the kept rows in `slots`.
    pub fn some_columns_of(&self, slots: &[u32], which: &[usize]) -> Result<Vec<ArrayRef>> {
        // each block used, numbered in order of first use
        let mut used: Vec<&Block> = Vec::new();
        let mut number: HashMap<u32, usize, RandomState> = HashMap::default();
        let mut indices: Vec<(usize, usize)> = Vec::with_capacity(slots.len());
        for k in slots.iter().filter_map(|s| self.get(*s)) {
            let Some(Some(block)) = self.blocks.get(k.block as usize) else { continue };
            let n = *number.entry(k.block).or_insert_with(|| {
                used.push(block);
                used.len() - 1
            });
            indices.push((n, k.row as usize));
        }
        // all from one batch: its row numbers, taken once for every column
        let rows = (used.len() == 1).then(|| UInt32Array::from_iter_values(indices.iter().map(|(_, r)| *r as u32)));
        let mut columns = Vec::with_capacity(which.len());
        for &c in which {
            let Some(field) = self.schema.fields().get(c) else {
                return Err(RuntimeError::Internal(format!("a join side has no column {c}")));
            };
            columns.push(match (used.as_slice(), &rows) {
                ([], _) => new_empty_array(field.data_type()),
                ([only], Some(rows)) => take(only.columns[c].as_ref(), rows, None)?,
                (blocks, _) => {
                    let arrays: Vec<&dyn Array> = blocks.iter().map(|b| b.columns[c].as_ref()).collect();
                    interleave(&arrays, &indices)?
                }
            });
        }
        Ok(columns)
    }

    /// Every kept row for a checkpoint, as one batch: its key, `until`, matches and slot, then
    /// its columns. `None` when no row is kept.
    pub fn to_batch(&self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        let (mut keys, mut untils, mut matches, mut slots) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut of_key = Vec::new();
        for r in self.keys.iter().flatten() {
            of_key.clear();
            self.matches(&r.key, r.hash, &mut of_key);
            for s in &of_key {
                let Some(k) = self.get(*s) else { continue };
                keys.push(&r.key[..]);
                untils.push(k.until);
                matches.push(k.matches);
                slots.push(*s);
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
        let h = self.hold(&batch.columns()[4..])?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let until = untils.value(i);
            let key = keys.value(i);
            let slot = self.insert(key, self.hash(key), &h, i, (until != Nanos::MAX).then_some(until));
            if let Some(k) = self.get_mut(slot) {
                k.matches = matches.value(i);
            }
            out.push((slots.value(i), slot));
        }
        self.release(h);
        Ok(out)
    }

    /// Rows kept and their approximate size.
    pub fn size(&self) -> StateSize {
        let slots = self.slots.len() * std::mem::size_of::<Slot>();
        let index = self.index.capacity() * 5 + self.keys.len() * std::mem::size_of::<Option<KeyRows>>() + self.spilled;
        StateSize {
            rows: self.live as u64,
            bytes: (self.bytes
                + slots
                + index
                + self.scheduled * std::mem::size_of::<Expiry>()
                + self.expiry.len() * 48) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Int64Array, StringArray};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]))
    }

    fn batch(from: i64, n: usize) -> Vec<ArrayRef> {
        let keys: Vec<i64> = (from..from + n as i64).collect();
        let text: Vec<Option<String>> = keys.iter().map(|k| (k % 3 != 0).then(|| format!("row {k}"))).collect();
        vec![Arc::new(Int64Array::from(keys)), Arc::new(StringArray::from(text))]
    }

    fn values(columns: &[ArrayRef]) -> Vec<(i64, Option<String>)> {
        let (k, s) = (columns[0].as_primitive::<Int64Type>(), columns[1].as_string::<i32>());
        (0..k.len()).map(|i| (k.value(i), s.is_valid(i).then(|| s.value(i).to_string()))).collect()
    }

    #[test]
    fn kept_rows_are_gathered_from_the_batches_they_came_in() -> Result<()> {
        let mut rows = JoinRows::new(&schema(), RandomState::new())?;
        let mut slots = Vec::new();
        for (from, picks) in [(0, [1usize, 3]), (100, [0, 2]), (200, [4, 1])] {
            let h = rows.hold(&batch(from, 5))?;
            for i in picks {
                let key = (from + i as i64).to_le_bytes();
                slots.push(rows.insert(&key, rows.hash(&key), &h, i, Some(from)));
            }
            rows.release(h);
        }
        // rows of several batches, in the order asked for, NULLs kept
        let order = [slots[5], slots[0], slots[2], slots[1], slots[4]];
        let expected = vec![
            (201, None),
            (1, Some("row 1".to_string())),
            (100, Some("row 100".to_string())),
            (3, None),
            (204, None),
        ];
        assert_eq!(values(&rows.columns_of(&order)?), expected);
        // rows of one batch, and one column of them
        assert_eq!(values(&rows.columns_of(&[slots[3], slots[2]])?), vec![(102, None), (100, Some("row 100".into()))]);
        let one = rows.some_columns_of(&[slots[3], slots[0]], &[1])?;
        assert_eq!((one.len(), one[0].is_null(0), one[0].as_string::<i32>().value(1)), (1, true, "row 1"));
        // the first batch's rows expire first (before 100), and its block goes with them
        let blocks = rows.blocks.iter().flatten().count();
        assert!(rows.expire(100, |_| false)?.is_none());
        assert_eq!((rows.size().rows, rows.blocks.iter().flatten().count()), (4, blocks - 1));
        // a retraction finds the kept row equal to its own, NULLs equal
        let h = rows.hold(&batch(100, 5))?;
        assert_eq!(rows.find_equal(&102i64.to_le_bytes(), &h, 2)?, Some(slots[3]));
        assert_eq!(rows.find_equal(&102i64.to_le_bytes(), &h, 1)?, None);
        rows.release(h);
        Ok(())
    }

    #[test]
    fn a_keys_rows_are_found_in_the_order_they_came_until_each_is_forgotten() -> Result<()> {
        let mut rows = JoinRows::new(&schema(), RandomState::new())?;
        let h = rows.hold(&batch(0, 6))?;
        // two keys, one long enough to be stored out of line, rows of each interleaved
        let (a, b) = (b"a".to_vec(), vec![7u8; 40]);
        let slots: Vec<u32> = (0..6)
            .map(|i| {
                let key = if i % 2 == 0 { &a } else { &b };
                rows.insert(key, rows.hash(key), &h, i, None)
            })
            .collect();
        rows.release(h);
        let of = |rows: &JoinRows, key: &[u8]| {
            let mut out = Vec::new();
            rows.matches(key, rows.hash(key), &mut out);
            out
        };
        assert_eq!(of(&rows, &a), vec![slots[0], slots[2], slots[4]]);
        assert_eq!(of(&rows, &b), vec![slots[1], slots[3], slots[5]]);
        assert!(of(&rows, b"c").is_empty());
        // forgetting the middle, the first and the last row of a key keeps the others in order
        rows.remove(slots[2]);
        assert_eq!(of(&rows, &a), vec![slots[0], slots[4]]);
        rows.remove(slots[1]);
        rows.remove(slots[5]);
        assert_eq!(of(&rows, &b), vec![slots[3]]);
        // a key's last row takes the key out of the index; it comes back with a new row, whose
        // freed slot is reused
        let with_long_key = rows.size().bytes;
        rows.remove(slots[3]);
        assert!(of(&rows, &b).is_empty());
        assert_eq!((rows.index.len(), rows.size().rows), (1, 2));
        // the long key's bytes were counted until it went
        assert_eq!(rows.size().bytes + 40, with_long_key, "{:?}", rows.size());
        let h = rows.hold(&batch(10, 1))?;
        let again = rows.insert(&b, rows.hash(&b), &h, 0, None);
        assert_eq!(rows.spilled, 40);
        let next = rows.insert(&a, rows.hash(&a), &h, 0, None);
        rows.release(h);
        assert_eq!((of(&rows, &b), of(&rows, &a)), (vec![again], vec![slots[0], slots[4], next]));
        assert_eq!(values(&rows.columns_of(&of(&rows, &a))?)[2], (10, Some("row 10".to_string())));
        Ok(())
    }

    #[test]
    fn a_small_slice_of_a_large_batch_is_copied_before_it_is_held() -> Result<()> {
        let mut rows = JoinRows::new(&schema(), RandomState::new())?;
        let big = batch(0, 100_000);
        let slice: Vec<ArrayRef> = big.iter().map(|c| c.slice(500, 10)).collect();
        let h = rows.hold(&slice)?;
        for (key, row) in [(507i64, 7), (508, 8)] {
            rows.insert(&key.to_le_bytes(), rows.hash(&key.to_le_bytes()), &h, row, None);
        }
        rows.release(h);
        let whole: usize = big.iter().map(|c| c.get_array_memory_size()).sum();
        assert!(rows.size().bytes < whole as u64 / 10, "{} bytes held for 10 rows", rows.size().bytes);
        assert_eq!(values(&rows.columns_of(&[0, 1])?), vec![(507, None), (508, Some("row 508".to_string()))]);
        // a batch as it came (not a slice) is shared, not copied
        let h = rows.hold(&big)?;
        let held = rows.blocks[h.block as usize].as_ref().map(|b| Arc::ptr_eq(&b.columns[1], &big[1]));
        rows.release(h);
        assert_eq!(held, Some(true));
        // columns of other types (a checkpoint of another schema) are refused, not held
        let other: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["1"])), Arc::new(StringArray::from(vec!["a"]))];
        assert!(rows.hold(&other).is_err());
        Ok(())
    }
}
