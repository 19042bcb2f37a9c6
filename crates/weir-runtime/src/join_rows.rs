//! The rows a join keeps of one input, by join key, each until a time after which it can no
//! longer match (an interval join's bound, or a TTL).
//!
//! ```text
//!   key bytes ──index──► [(slot, generation)…] ──► slots[slot] = Kept { row, until, matches }
//!   expiry: until ──► [(slot, generation)…]   (BTreeMap: expire(w) pops every until < w)
//! ```
//!
//! Rows are stored in Arrow's row format (one allocation per row) and turned back into
//! columns only for the rows that match. A slot freed and reused gets a new generation, so
//! stale references in a key's list or in the expiry map are recognised and skipped; a key's
//! list is compacted when more than half of it is stale.

use std::collections::{BTreeMap, HashMap};

use datafusion_common::arrow::array::ArrayRef;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::row::{OwnedRow, Row, RowConverter, Rows, SortField};

use crate::error::Result;
use crate::message::Nanos;
use crate::metrics::StateSize;

/// A kept row.
pub struct Kept {
    /// The row's values.
    pub row: OwnedRow,
    /// It can match rows of the other side until the watermark passes this time.
    pub until: Nanos,
    /// Matches so far (for a left outer join's NULL-padded row).
    pub matches: u32,
    key: Box<[u8]>,
}

struct Slot {
    generation: u32,
    kept: Option<Kept>,
}

#[derive(Default)]
struct KeyRows {
    refs: Vec<(u32, u32)>,
    live: usize,
}

/// The kept rows of one side of a join.
pub struct JoinRows {
    converter: RowConverter,
    index: HashMap<Box<[u8]>, KeyRows>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    expiry: BTreeMap<Nanos, Vec<(u32, u32)>>,
    live: usize,
    bytes: usize,
}

impl JoinRows {
    /// Empty state for rows of `schema`.
    pub fn new(schema: &SchemaRef) -> Result<Self> {
        let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            expiry: BTreeMap::new(),
            live: 0,
            bytes: 0,
        })
    }

    /// The rows of a batch of this side, in the stored format.
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        Ok(self.converter.convert_columns(columns)?)
    }

    /// Keep `row` under `key` until `until` (`None`: until [`Self::schedule`] says).
    pub fn insert(&mut self, key: &[u8], row: Row<'_>, until: Option<Nanos>) -> u32 {
        let kept = Kept { row: row.owned(), until: until.unwrap_or(Nanos::MAX), matches: 0, key: key.into() };
        self.bytes += kept.row.as_ref().len() + key.len() + 48;
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
        let entry = self.index.entry(key.into()).or_default();
        entry.refs.push(r);
        entry.live += 1;
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
        let Some(rows) = self.index.get(key) else { return };
        let stale = rows.refs.len() - rows.live;
        if stale > rows.live {
            let refs: Vec<(u32, u32)> = rows.refs.iter().copied().filter(|r| self.is_live(*r)).collect();
            if let Some(rows) = self.index.get_mut(key) {
                rows.refs = refs;
            }
        }
        if let Some(rows) = self.index.get(key) {
            out.extend(rows.refs.iter().filter(|r| self.is_live(**r)).map(|(s, _)| *s));
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

    /// Forget a kept row.
    pub fn remove(&mut self, slot: u32) -> Option<Kept> {
        let kept = self.slots.get_mut(slot as usize)?.kept.take()?;
        self.free.push(slot);
        self.live -= 1;
        self.bytes = self.bytes.saturating_sub(kept.row.as_ref().len() + kept.key.len() + 48);
        if let Some(rows) = self.index.get_mut(&kept.key) {
            rows.live -= 1;
            if rows.live == 0 {
                self.index.remove(&kept.key);
            }
        }
        Some(kept)
    }

    /// The slot of a kept row equal to `row` under `key` (what a retraction takes back).
    pub fn find_equal(&mut self, key: &[u8], row: Row<'_>) -> Option<u32> {
        let mut slots = Vec::new();
        self.matches(key, &mut slots);
        slots.into_iter().find(|s| self.get(*s).is_some_and(|k| k.row.row() == row))
    }

    /// Forget every row whose `until` is before `now`; returns them (in `until` order).
    pub fn expire(&mut self, now: Nanos) -> Vec<Kept> {
        let mut out = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() >= now {
                break;
            }
            for r in entry.remove() {
                if self.is_live(r) {
                    out.extend(self.remove(r.0));
                }
            }
        }
        out
    }

    /// The columns of the kept rows in `slots`.
    pub fn columns_of(&self, slots: &[u32]) -> Result<Vec<ArrayRef>> {
        let rows: Vec<Row<'_>> = slots.iter().filter_map(|s| self.get(*s)).map(|k| k.row.row()).collect();
        Ok(self.converter.convert_rows(rows)?)
    }

    /// The columns of rows no longer kept.
    pub fn columns_of_rows(&self, kept: &[Kept]) -> Result<Vec<ArrayRef>> {
        Ok(self.converter.convert_rows(kept.iter().map(|k| k.row.row()))?)
    }

    /// Rows kept and their approximate size.
    pub fn size(&self) -> StateSize {
        StateSize { rows: self.live as u64, bytes: (self.bytes + self.expiry.len() * 32) as u64 }
    }
}
