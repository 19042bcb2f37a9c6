//! Partial aggregates of many windows in one set of DataFusion `GroupsAccumulator`s: each
//! window (a session) owns numbered slots, and a batch updates the slots of all its windows
//! with one `update_batch` per aggregate (a window's own accumulators would cost one call, and
//! one slice of every argument, per window per batch).
//!
//! ```text
//!   slots (numbers only grow)    base ─► [ s0 | s1 | s2 | s3 | s4 | … ]  one accumulator row each
//!   owner of each slot                   [ w7 | -- | w9 | w7 | w12| … ]  (-- freed)
//!
//!   evaluate(w7, w9): take the front up to the last slot wanted (EmitTo::First), merge each
//!   wanted window's slots into one output row; windows still live among the front (w7 when
//!   it is kept, w12 were it there) move to one new slot each at the back; freed slots go
//! ```
//!
//! A window merged into another (an out-of-order row bridging two sessions) gives its slots to
//! the survivor, which then owns several until it is next taken from the front. Windows that
//! move go back in the order they will close (the caller says when), and new ones open in
//! about that order too, so the front holds few live windows when some close.

use std::collections::VecDeque;

use datafusion_common::arrow::array::{ArrayRef, UInt32Array};
use datafusion_common::arrow::compute::take;
use datafusion_expr::{EmitTo, GroupsAccumulator};

use crate::error::{Result, RuntimeError};
use crate::state::aggregate_state::{AggregateInput, Aggregates};

type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A freed slot's owner.
const FREE: u64 = u64::MAX;

/// The accumulators of every live window, one row per slot.
pub struct Slots {
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// The number of the first slot held.
    base: u64,
    /// Each held slot's owner ([`FREE`] once freed).
    owners: VecDeque<u64>,
    /// The rows the accumulators hold: the slots up to the last one updated or restored.
    sized: usize,
    /// Scratch: slots as accumulator rows.
    groups: Vec<usize>,
}

/// Windows whose slots moved, each with its one new slot (its slots after the front taken
/// stay where they are).
pub type Moved = Vec<(u64, u64)>;

/// What [`Slots::evaluate`] gives: each wanted window's final values (one array per aggregate,
/// a row per window), and the new slot of every window whose slots moved.
pub struct Evaluated {
    pub values: Vec<ArrayRef>,
    pub moved: Moved,
}

impl Slots {
    /// No slots, for `aggregates`.
    pub fn new(aggregates: &Aggregates) -> Result<Self> {
        Ok(Self {
            accumulators: aggregates.accumulators()?,
            base: 0,
            owners: VecDeque::new(),
            sized: 0,
            groups: Vec::new(),
        })
    }

    /// A new slot for window `owner`.
    pub fn alloc(&mut self, owner: u64) -> u64 {
        self.owners.push_back(owner);
        self.base + self.owners.len() as u64 - 1
    }

    /// Whether slot `slot` is still held (not taken from the front).
    pub fn held(&self, slot: u64) -> bool {
        slot >= self.base
    }

    /// Slot `slot` now belongs to window `owner` (a window merged into it).
    pub fn give(&mut self, slot: u64, owner: u64) {
        if let Some(o) = slot.checked_sub(self.base).and_then(|i| self.owners.get_mut(i as usize)) {
            *o = owner;
        }
    }

    /// Slots `slots` hold nothing anyone will read (their window was dropped).
    pub fn free(&mut self, slots: &[u64]) {
        for s in slots {
            self.give(*s, FREE);
        }
    }

    /// Add the rows of `input` to the slots `slots` (one per row).
    pub fn update(&mut self, input: &AggregateInput, slots: &[u64]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        self.groups.clear();
        for s in slots {
            match s.checked_sub(self.base) {
                Some(i) if (i as usize) < self.owners.len() => self.groups.push(i as usize),
                _ => return Err(RuntimeError::Internal(format!("slot {s} is not held"))),
            }
        }
        let total = self.owners.len();
        for ((acc, values), f) in self.accumulators.iter_mut().zip(&input.args).zip(&input.filters) {
            acc.update_batch(values, &self.groups, f.as_ref(), total)?;
        }
        self.sized = total;
        Ok(())
    }

    /// The final values of windows `wanted` (each with its slots), one row each in that order.
    /// Their state is kept (each in one new slot) when `keep`, else dropped. Live windows that
    /// held slots before the last wanted one move to one new slot each, in `order` (when each
    /// will close).
    pub fn evaluate(
        &mut self,
        aggregates: &Aggregates,
        wanted: &[(u64, &[u64])],
        keep: bool,
        order: &dyn Fn(u64) -> i64,
    ) -> Result<Evaluated> {
        let mut out = aggregates.accumulators()?;
        let moved = self.take_front(wanted, keep, order, &mut out)?;
        let values = out.iter_mut().map(|a| Ok(a.evaluate(EmitTo::All)?)).collect::<Result<Vec<_>>>()?;
        Ok(Evaluated { values, moved })
    }

    /// The intermediate state of windows `wanted`, one row each (each aggregate's state
    /// columns), for a checkpoint; their state stays, and windows move as in
    /// [`Slots::evaluate`].
    pub fn states(
        &mut self,
        aggregates: &Aggregates,
        wanted: &[(u64, &[u64])],
        order: &dyn Fn(u64) -> i64,
    ) -> Result<(Vec<Vec<ArrayRef>>, Moved)> {
        let mut out = aggregates.accumulators()?;
        let moved = self.take_front(wanted, true, order, &mut out)?;
        let states = out.iter_mut().map(|a| Ok(a.state(EmitTo::All)?)).collect::<Result<Vec<_>>>()?;
        Ok((states, moved))
    }

    /// A new slot for window `owner` holding saved state (one row of each aggregate's state
    /// columns), as [`Slots::states`] gave it.
    pub fn restore(&mut self, owner: u64, states: &[Vec<ArrayRef>]) -> Result<u64> {
        let slot = self.alloc(owner);
        let total = self.owners.len();
        for (acc, state) in self.accumulators.iter_mut().zip(states) {
            acc.merge_batch(state, &[total - 1], total)?;
        }
        self.sized = total;
        Ok(slot)
    }

    /// Take the slots up to the last one of `wanted` out of the accumulators: each wanted
    /// window's merged into row `i` of `out` (its place in `wanted`), and the live windows
    /// among them (the wanted ones too when `keep`) put back at the end, one slot each.
    fn take_front(
        &mut self,
        wanted: &[(u64, &[u64])],
        keep: bool,
        order: &dyn Fn(u64) -> i64,
        out: &mut [Box<dyn GroupsAccumulator>],
    ) -> Result<Moved> {
        let Some(last) = wanted.iter().flat_map(|(_, s)| s.iter()).max() else { return Ok(Vec::new()) };
        // every wanted slot has had rows (a window starts with one), so the accumulators hold it
        let front = match last.checked_sub(self.base) {
            Some(i) if (i as usize) < self.sized => i as usize + 1,
            _ => return Err(RuntimeError::Internal(format!("slot {last} holds no state"))),
        };
        let emit = if front == self.sized { EmitTo::All } else { EmitTo::First(front) };
        let states = self.accumulators.iter_mut().map(|a| Ok(a.state(emit)?)).collect::<Result<Vec<_>>>()?;
        let owners: Vec<u64> = self.owners.drain(..front).collect();
        self.base += front as u64;
        self.sized -= front;
        let row_of: HashMap<u64, usize> = wanted.iter().enumerate().map(|(i, (w, _))| (*w, i)).collect();
        // which front rows go to `out` (as which row) and which go back (for which window)
        let (mut out_rows, mut out_groups, mut back_rows, mut back_owners) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, owner) in owners.iter().enumerate() {
            if *owner == FREE {
                continue;
            }
            let wanted_row = row_of.get(owner);
            if let Some(r) = wanted_row {
                out_rows.push(i as u32);
                out_groups.push(*r);
            }
            if wanted_row.is_none() || keep {
                back_rows.push(i as u32);
                back_owners.push(*owner);
            }
        }
        // the windows put back in the order they will close, so that the next ones to close
        // are at the front again
        let mut back: Vec<u64> = back_owners.clone();
        back.sort_unstable();
        back.dedup();
        back.sort_by_cached_key(|w| order(*w));
        let back_slot: HashMap<u64, usize> =
            back.iter().enumerate().map(|(j, w)| (*w, self.owners.len() + j)).collect();
        self.owners.extend(back);
        let back_groups: Vec<usize> = back_owners.iter().filter_map(|w| back_slot.get(w).copied()).collect();
        let pick = |rows: &[u32]| -> Result<Vec<Vec<ArrayRef>>> {
            let idx = UInt32Array::from(rows.to_vec());
            states
                .iter()
                .map(|s| s.iter().map(|c| Ok(take(c.as_ref(), &idx, None)?)).collect::<Result<Vec<_>>>())
                .collect()
        };
        for (acc, state) in out.iter_mut().zip(pick(&out_rows)?) {
            acc.merge_batch(&state, &out_groups, wanted.len())?;
        }
        if !back_rows.is_empty() {
            let total = self.owners.len();
            for (acc, state) in self.accumulators.iter_mut().zip(pick(&back_rows)?) {
                acc.merge_batch(&state, &back_groups, total)?;
            }
            self.sized = total;
        }
        let base = self.base;
        Ok(back_slot.into_iter().map(|(owner, at)| (owner, base + at as u64)).collect())
    }

    /// Bytes held (approximately).
    pub fn size(&self) -> usize {
        self.accumulators.iter().map(|a| a.size()).sum::<usize>() + self.owners.len() * 8
    }
}
