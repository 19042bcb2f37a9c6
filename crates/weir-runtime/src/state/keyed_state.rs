//! Per-key state with an optional time to live, shared by the operators that keep one entry
//! per key forever unless told otherwise (updating aggregates, deduplication).
//!
//! ```text
//!   key bytes ──index──► slot ──► Entry { value, touched, pending }
//!   touch(slot):   processing time: touched = wall clock now
//!                  event time:      pending until the next watermark, then touched = watermark
//!   sweep:         entries idle longer than the TTL are dropped (at most every TTL/8)
//! ```
//!
//! In event time an entry's clock starts at the first watermark after its last row, because
//! the rows' own times may have been projected away before the operator.
//!
//! Each key's bytes are held once, in its entry: the index is a hash table of slots.

use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;

use weir_plan::StateTtl;

use crate::message::{Nanos, NO_WATERMARK};

struct Entry<T> {
    key: Box<[u8]>,
    touched: Nanos,
    pending: bool,
    value: T,
}

/// Entries addressed by key bytes (e.g. an Arrow row) and by a dense slot number.
pub struct KeyedState<T> {
    index: HashTable<usize>,
    hasher: ahash::RandomState,
    entries: Vec<Option<Entry<T>>>,
    free: Vec<usize>,
    ttl: Option<StateTtl>,
    pending: Vec<usize>,
    watermark: Nanos,
    last_sweep: Nanos,
}

fn wall_clock() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

impl<T> KeyedState<T> {
    /// Empty state; entries expire after `ttl` if given.
    pub fn new(ttl: Option<StateTtl>) -> Self {
        Self {
            index: HashTable::new(),
            hasher: ahash::RandomState::new(),
            entries: Vec::new(),
            free: Vec::new(),
            ttl,
            pending: Vec::new(),
            watermark: NO_WATERMARK,
            last_sweep: NO_WATERMARK,
        }
    }

    fn now(&self) -> Nanos {
        match self.ttl {
            Some(StateTtl { event_time: false, .. }) => wall_clock(),
            _ => self.watermark,
        }
    }

    /// The slot of `key`, if it has an entry.
    pub fn slot(&self, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(self.hasher.hash_one(key), |&s| entries[s].as_ref().is_some_and(|e| &e.key[..] == key)).copied()
    }

    /// Index `slot`, whose entry holds `key`.
    fn index_slot(&mut self, key: &[u8], slot: usize) {
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hasher.hash_one(key), slot, |&s| {
            entries[s].as_ref().map_or(0, |e| hasher.hash_one(&e.key[..]))
        });
    }

    /// Add an entry for `key` (which must not have one) and touch it.
    pub fn insert(&mut self, key: &[u8], value: T) -> usize {
        let entry = Entry { key: key.into(), touched: self.now(), pending: false, value };
        let slot = match self.free.pop() {
            Some(s) => {
                self.entries[s] = Some(entry);
                s
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        };
        self.index_slot(key, slot);
        self.touch(slot);
        slot
    }

    /// The value in `slot`.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.entries.get(slot).and_then(|e| e.as_ref()).map(|e| &e.value)
    }

    /// The key of the entry in `slot`.
    pub fn key(&self, slot: usize) -> Option<&[u8]> {
        self.entries.get(slot).and_then(|e| e.as_ref()).map(|e| &e.key[..])
    }

    /// The value in `slot`, mutably.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.entries.get_mut(slot).and_then(|e| e.as_mut()).map(|e| &mut e.value)
    }

    /// The entry in `slot` received a row: restart its TTL clock.
    pub fn touch(&mut self, slot: usize) {
        let Some(ttl) = self.ttl else { return };
        let now = self.now();
        let Some(e) = self.entries.get_mut(slot).and_then(|e| e.as_mut()) else { return };
        if !ttl.event_time {
            e.touched = now;
        } else if !e.pending {
            e.pending = true;
            self.pending.push(slot);
        }
    }

    /// Drop the entry in `slot`.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let hash = self.hasher.hash_one(&self.entries.get(slot)?.as_ref()?.key[..]);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let e = self.entries.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(e.value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The values held, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten().map(|e| &e.value)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Every entry with its key, TTL clock and pending flag, for a checkpoint.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = (&[u8], Nanos, bool, &mut T)> {
        self.entries.iter_mut().flatten().map(|e| (&e.key[..], e.touched, e.pending, &mut e.value))
    }

    /// The clocks (watermark, last sweep), for a checkpoint.
    pub fn clocks(&self) -> (Nanos, Nanos) {
        (self.watermark, self.last_sweep)
    }

    /// Take up clocks [`KeyedState::clocks`] returned.
    pub fn restore_clocks(&mut self, (watermark, last_sweep): (Nanos, Nanos)) {
        (self.watermark, self.last_sweep) = (watermark, last_sweep);
    }

    /// Add an entry as a checkpoint saved it (its TTL clock as it was).
    pub fn restore_entry(&mut self, key: &[u8], touched: Nanos, pending: bool, value: T) {
        self.entries.push(Some(Entry { key: key.into(), touched, pending, value }));
        let slot = self.entries.len() - 1;
        self.index_slot(key, slot);
        if pending {
            self.pending.push(slot);
        }
    }

    /// Before a batch: in processing time, drop idle entries. Returns how many were dropped.
    pub fn before_batch(&mut self) -> u64 {
        match self.ttl {
            Some(StateTtl { event_time: false, .. }) => self.sweep(self.now()),
            _ => 0,
        }
    }

    /// The watermark advanced: start the clocks of entries touched since the last one, and
    /// drop idle entries. The end of a bounded input (`Nanos::MAX`) is not time passing.
    /// Returns how many were dropped.
    pub fn on_watermark(&mut self, watermark: Nanos) -> u64 {
        self.watermark = self.watermark.max(watermark);
        for slot in std::mem::take(&mut self.pending) {
            if let Some(e) = self.entries.get_mut(slot).and_then(|e| e.as_mut()) {
                e.touched = self.watermark;
                e.pending = false;
            }
        }
        if watermark == Nanos::MAX {
            return 0;
        }
        self.sweep(self.now())
    }

    fn sweep(&mut self, now: Nanos) -> u64 {
        let Some(ttl) = self.ttl else { return 0 };
        if now == NO_WATERMARK
            || (self.last_sweep != NO_WATERMARK && now.saturating_sub(self.last_sweep) < ttl.nanos / 8)
        {
            return 0;
        }
        self.last_sweep = now;
        let expired: Vec<usize> = (0..self.entries.len())
            .filter(|s| {
                self.entries[*s].as_ref().is_some_and(|e| !e.pending && now.saturating_sub(e.touched) > ttl.nanos)
            })
            .collect();
        for s in &expired {
            self.remove(*s);
        }
        expired.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn event_time_entries_expire_after_the_ttl_counted_from_the_next_watermark() {
        let mut s = KeyedState::new(Some(StateTtl { nanos: 5 * SEC, event_time: true }));
        let a = s.insert(b"a", 1);
        assert_eq!(s.on_watermark(10 * SEC), 0, "a's clock starts at 10 s");
        let b = s.insert(b"b", 2);
        assert_eq!(s.on_watermark(12 * SEC), 0);
        s.touch(b);
        assert_eq!(s.on_watermark(15 * SEC), 0, "a idle exactly 5 s is kept");
        assert_eq!(s.on_watermark(16 * SEC), 1, "a idle 6 s is dropped");
        assert_eq!((s.slot(b"a"), s.slot(b"b")), (None, Some(b)));
        assert_eq!(s.get(a), None);
        assert_eq!(s.on_watermark(Nanos::MAX), 0, "the end of input expires nothing");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn without_a_ttl_nothing_expires_and_slots_are_reused() {
        let mut s = KeyedState::new(None);
        let a = s.insert(b"a", 1);
        assert_eq!(s.on_watermark(i64::MAX - 1), 0);
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(b"b", 2);
        assert_eq!(a, b);
        assert_eq!(s.get_mut(b).map(|v| std::mem::replace(v, 3)), Some(2));
        assert_eq!(s.get(b), Some(&3));
    }
}
