//! Aggregation over session windows: per key, rows at most `gap` apart form one session
//! `[first, last + gap)`, emitted once when the watermark passes its end. Windows that touch
//! merge, as in Flink: a row exactly `gap` after the last one of an open session extends it.
//!
//! ```text
//!   per row, in arrival order (updates are batched per session)
//!     before a row whose watermark reaches an open session's end, that session fires
//!     row t of key k: its own window [t, t + gap)
//!       overlaps or touches open sessions of k ──► they merge into one (a row can bridge
//!                                        two sessions: the later one's partial aggregate is
//!                                        frozen and merged into the earlier one)
//!       touches none, t + gap > row watermark ──► a new session
//!       touches none, t + gap <= row watermark ──► late: counted, dropped
//!
//!   on Watermark(w): fire sessions with end <= w, in end order, and free them
//!
//!   state: open sessions only, HashMap<key bytes, Vec<Session>> + BTreeSet<(end, id)>; their
//!   partial aggregates in shared slots (one `update_batch` per aggregate per batch for all
//!   sessions; see state/slots.rs). Without a changelog, a session's entry by end is not moved
//!   as rows extend it: firing finds it early and puts it back at its end; the sessions that
//!   fire within a batch are evaluated together after it.
//!
//!   changelog mode (allowed lateness L > 0, or early results):
//!     a row is late only if it joins no session and t + gap + L <= its watermark
//!     a fired session moves to `retained` until the watermark passes end + L; a row that
//!     joins it (or starts a session that has already ended) marks it dirty, and after the
//!     batch (or before a later row's watermark passes another deadline) each dirty fired
//!     session is re-evaluated and `WindowChanges` emits the difference: -U/+U when its bounds
//!     did not change, else -D old row, +I new row; a session that a late row extends past
//!     the watermark is open again and emits when it fires
//!     merging sessions hands their emitted rows to the survivor, whose next emission deletes
//!     them (-D), so the changelog never keeps two rows for one session
//!     early results: dirty open sessions are re-evaluated after each batch (or at most once
//!     per interval), their bounds growing as rows arrive
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, UInt32Array};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::{EarlyEmit, WindowEmit, WindowSpec};

use crate::error::{Result, RuntimeError};
use crate::exec::dropped::{show_time, DroppedCollector};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_aggregate::{to_nanos, WindowLayout};
use crate::operators::window_changes::WindowChanges;
use crate::state::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Frozen};
use crate::state::checkpoint::{concat_saved, shift_ids, KeyFilter, OperatorSnapshot};
use crate::state::slots::Slots;

struct Session {
    id: u64,
    start: Nanos,
    end: Nanos,
    /// Its slots in [`Slots`]: the first takes its rows; more after it absorbed sessions.
    slots: Vec<u64>,
    /// Emitted, and kept for late rows (changelog mode only).
    fired: bool,
}

/// The operator's hash maps: ahash (randomly seeded, like std's) is several times faster than
/// std's SipHash on row bytes and ids.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A session taken out of the state: its id, key, bounds and slots.
type Taken = (u64, Box<[u8]>, Nanos, Nanos, Vec<u64>);

/// The session window aggregate operator.
pub struct SessionAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    gap: Nanos,
    /// Encodes keys as bytes (`None` without keys: one global session sequence).
    converter: Option<RowConverter>,
    aggregates: Aggregates,
    /// Every session's partial aggregates.
    slots: Slots,
    /// Sessions that fired within the batch, evaluated after it (without a changelog).
    fired: Vec<Taken>,
    /// The rows of the batch assigned since the last flush, and their slots.
    assigned: (Vec<u32>, Vec<u64>),
    output_schema: SchemaRef,
    num_group_columns: usize,
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
    /// Open sessions, by end.
    by_end: BTreeSet<(Nanos, u64)>,
    /// Fired sessions still accepting rows (until the watermark passes end + lateness).
    retained: BTreeSet<(Nanos, u64)>,
    key_of: HashMap<u64, Box<[u8]>>,
    next_id: u64,
    watermark: Nanos,
    metrics: Arc<Metrics>,
    /// What this instance last added to the open-windows gauge.
    open_reported: u64,
    lateness: Nanos,
    early: EarlyEmit,
    last_early: Instant,
    /// Changelog mode: each session's last emitted row.
    changes: Option<WindowChanges<u64>>,
    /// Sessions with rows not emitted yet (changelog mode).
    dirty: BTreeSet<u64>,
    /// The sessions marked dirty while fired (by a late row) since the last refresh of the
    /// dirty fired ones: all there is to look at for late corrections, where `dirty` also
    /// holds every open session a row reached (with early results).
    late: Vec<u64>,
}

impl SessionAggregateOp {
    /// Build the operator. `output_schema` is group columns then aggregate columns.
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        layout: WindowLayout,
        aggregates: Vec<AggregateSpec>,
        output_schema: SchemaRef,
        emit: WindowEmit,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let WindowSpec::Session { gap_nanos } = layout.window else {
            return Err(RuntimeError::Internal("a session aggregate needs a session window".into()));
        };
        let num_group_columns = group_exprs.len();
        let (key_exprs, key_fields) = layout.keys(group_exprs, &output_schema);
        let converter = if key_fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(key_fields.iter().map(|f| SortField::new(f.data_type().clone())).collect())?)
        };
        let empty_keys = Arc::new(datafusion_common::arrow::datatypes::Schema::empty());
        let changes =
            if emit.is_changelog() { Some(WindowChanges::new(&output_schema, num_group_columns)?) } else { None };
        let aggregates = Aggregates::new(empty_keys, aggregates);
        Ok(Self {
            key_exprs,
            layout,
            gap: gap_nanos,
            converter,
            slots: Slots::new(&aggregates)?,
            aggregates,
            fired: Vec::new(),
            assigned: (Vec::new(), Vec::new()),
            output_schema,
            num_group_columns,
            sessions: HashMap::default(),
            by_end: BTreeSet::new(),
            retained: BTreeSet::new(),
            key_of: HashMap::default(),
            next_id: 0,
            watermark: NO_WATERMARK,
            metrics,
            open_reported: 0,
            lateness: emit.allowed_lateness_nanos.max(0),
            early: emit.early,
            last_early: Instant::now(),
            changes,
            dirty: BTreeSet::new(),
            late: Vec::new(),
        })
    }

    /// Add the rows assigned since the last flush to their sessions' slots: one update per
    /// aggregate.
    fn flush(&mut self, input: &AggregateInput) -> Result<()> {
        let (rows, slots) = &mut self.assigned;
        let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else { return Ok(()) };
        // usually every row since the last flush (none late): a slice, else a copy of those rows
        let picked = if (last - first) as usize + 1 == rows.len() {
            input.slice(first as usize, rows.len())
        } else {
            input.take(&UInt32Array::from(rows.clone()))?
        };
        self.slots.update(&picked, slots)?;
        rows.clear();
        slots.clear();
        Ok(())
    }

    /// A session's id's current end, if it is held.
    fn session_end(&self, id: u64) -> Option<Nanos> {
        end_of(&self.key_of, &self.sessions, id)
    }

    /// Sessions whose slots moved (see [`Slots`]) take their new slot in place of those taken
    /// from the front (a session that absorbed another may hold slots further on too).
    fn moved(&mut self, moved: Vec<(u64, u64)>) {
        for (id, slot) in moved {
            let Some(key) = self.key_of.get(&id) else { continue };
            if let Some(s) = self.sessions.get_mut(key).and_then(|l| l.iter_mut().find(|s| s.id == id)) {
                s.slots.retain(|x| self.slots.held(*x));
                s.slots.push(slot);
            }
        }
    }

    /// Assign the row at time `t` of `key`; returns its session's slot, or `None` if it is late.
    fn assign(&mut self, key: &[u8], t: Nanos, wm: Nanos) -> Result<Option<u64>> {
        let (lo, hi) = (t, t.saturating_add(self.gap));
        if !self.sessions.contains_key(key) {
            self.sessions.insert(key.into(), Vec::new());
        }
        let list = self.sessions.get_mut(key).ok_or_else(|| RuntimeError::Internal("session list vanished".into()))?;
        let mut overlapping = list.iter().enumerate().filter(|(_, s)| s.start <= hi && lo <= s.end).map(|(i, _)| i);
        let Some(first) = overlapping.next() else {
            if hi.saturating_add(self.lateness) <= wm {
                if list.is_empty() {
                    self.sessions.remove(key);
                }
                return Ok(None);
            }
            let id = self.next_id;
            self.next_id += 1;
            // within the allowed lateness, a session can start after its end: it is complete
            let fired = hi <= wm;
            let slot = self.slots.alloc(id);
            list.push(Session { id, start: lo, end: hi, slots: vec![slot], fired });
            if fired {
                self.retained.insert((hi, id));
            } else {
                self.by_end.insert((hi, id));
            }
            self.key_of.insert(id, key.into());
            if self.changes.is_some() {
                self.dirty.insert(id);
                if fired {
                    self.late.push(id);
                }
            }
            return Ok(Some(slot));
        };
        // merge every other overlapping session into the first one (rarely any: an empty Vec
        // does not allocate)
        let others: Vec<usize> = overlapping.collect();
        let mut absorbed = Vec::new();
        for i in others.into_iter().rev() {
            absorbed.push(list.remove(i));
        }
        let survivor = &mut list[first];
        let (old_end, old_fired) = (survivor.end, survivor.fired);
        survivor.start = survivor.start.min(lo);
        survivor.end = survivor.end.max(hi);
        for s in absorbed {
            survivor.start = survivor.start.min(s.start);
            survivor.end = survivor.end.max(s.end);
            for slot in &s.slots {
                self.slots.give(*slot, survivor.id);
            }
            survivor.slots.extend(s.slots);
            if s.fired {
                self.retained.remove(&(s.end, s.id));
            } else {
                self.by_end.remove(&(s.end, s.id));
            }
            self.key_of.remove(&s.id);
            self.dirty.remove(&s.id);
            if let Some(c) = &mut self.changes {
                c.absorb(survivor.id, s.id)?;
            }
        }
        // a fired session extended past the watermark is open again (it emits when it fires)
        survivor.fired = old_fired && survivor.end <= wm;
        let (id, end, fired) = (survivor.id, survivor.end, survivor.fired);
        let slot =
            survivor.slots.first().copied().ok_or_else(|| RuntimeError::Internal("a session without slots".into()))?;
        if self.changes.is_some() {
            self.dirty.insert(id);
            if fired {
                self.late.push(id);
            }
        }
        // without a changelog, its entry by end stays where it was (see `fire_until`)
        if (end, fired) != (old_end, old_fired) && self.changes.is_some() {
            if old_fired {
                self.retained.remove(&(old_end, id));
            } else {
                self.by_end.remove(&(old_end, id));
            }
            if fired {
                self.retained.insert((end, id));
            } else {
                self.by_end.insert((end, id));
            }
        }
        Ok(Some(slot))
    }

    /// Fire every session ending at or before `watermark`, as one batch (`defer`: after the
    /// batch being read, with those that fire later in it); in changelog mode, also stop
    /// retaining sessions whose end + lateness it has reached.
    fn fire_until(&mut self, watermark: Nanos, defer: bool, out: &mut Vec<Message>) -> Result<()> {
        let (mut refresh, mut gone) = (BTreeSet::new(), Vec::new());
        while let Some(&(end, id)) = self.by_end.first() {
            if end > watermark {
                break;
            }
            self.by_end.pop_first();
            if self.changes.is_none() {
                // the entry may be stale: the session absorbed, or extended since
                match self.session_end(id) {
                    None => continue,
                    Some(now) if now > end => {
                        self.by_end.insert((now, id));
                        continue;
                    }
                    Some(_) => {}
                }
            }
            Metrics::add(&self.metrics.windows_fired, 1);
            tracing::debug!(session = id, end = %show_time(end), "session fires");
            if self.changes.is_some() {
                refresh.insert(id);
                if self.lateness > 0 {
                    self.retained.insert((end, id));
                    if let Ok(s) = self.session_mut(id) {
                        s.fired = true;
                    }
                } else {
                    gone.push(id);
                }
                continue;
            }
            if let Some(session) = self.remove(id) {
                self.fired.push(session);
            }
        }
        while let Some(&(end, id)) = self.retained.first() {
            if end.saturating_add(self.lateness) > watermark {
                break;
            }
            self.retained.pop_first();
            if self.dirty.contains(&id) {
                refresh.insert(id);
            }
            gone.push(id);
        }
        if !defer {
            self.emit_fired(out)?;
        }
        self.refresh(refresh, out)?;
        for id in gone {
            if let Some((_, _, _, _, slots)) = self.remove(id) {
                self.slots.free(&slots);
            }
            self.dirty.remove(&id);
            if let Some(c) = &mut self.changes {
                c.forget(id);
            }
        }
        self.report_open();
        Ok(())
    }

    /// Emit the sessions that fired, as one batch, and free their slots.
    fn emit_fired(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if self.fired.is_empty() {
            return Ok(());
        }
        let fired = std::mem::take(&mut self.fired);
        let values = self.values(&fired, false)?;
        out.push(Message::Data(StreamBatch::new(self.emit(&fired, values)?)));
        Ok(())
    }

    /// The aggregate values of `sessions` (a row each), their state kept when `keep`; the
    /// sessions whose slots moved meanwhile take their new ones.
    fn values(&mut self, sessions: &[Taken], keep: bool) -> Result<Vec<ArrayRef>> {
        let wanted: Vec<(u64, &[u64])> = sessions.iter().map(|(id, _, _, _, slots)| (*id, slots.as_slice())).collect();
        let (key_of, held) = (&self.key_of, &self.sessions);
        let order = |id| end_of(key_of, held, id).unwrap_or(Nanos::MAX);
        let evaluated = self.slots.evaluate(&self.aggregates, &wanted, keep, &order)?;
        self.moved(evaluated.moved);
        Ok(evaluated.values)
    }

    fn report_open(&mut self) {
        Metrics::gauge(&self.metrics.open_windows, &mut self.open_reported, self.key_of.len() as u64);
    }

    fn session_mut(&mut self, id: u64) -> Result<&mut Session> {
        let key = self.key_of.get(&id).ok_or_else(|| RuntimeError::Internal(format!("session {id} has no key")))?;
        self.sessions
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|s| s.id == id))
            .ok_or_else(|| RuntimeError::Internal(format!("session {id} vanished")))
    }

    /// Take a session out of the state.
    fn remove(&mut self, id: u64) -> Option<Taken> {
        let key = self.key_of.remove(&id)?;
        let list = self.sessions.get_mut(&key)?;
        let pos = list.iter().position(|s| s.id == id)?;
        let session = list.swap_remove(pos);
        if list.is_empty() {
            self.sessions.remove(&key);
        }
        Some((id, key, session.start, session.end, session.slots))
    }

    /// The earliest watermark at which something happens: an open session fires or a
    /// retained one stops accepting rows.
    fn next_deadline(&self) -> Nanos {
        let fire = self.by_end.first().map(|s| s.0).unwrap_or(Nanos::MAX);
        let close = self.retained.first().map(|s| s.0.saturating_add(self.lateness)).unwrap_or(Nanos::MAX);
        fire.min(close)
    }

    /// Re-evaluate sessions (keeping their state) and emit what changed since their last
    /// emission.
    fn refresh(&mut self, ids: BTreeSet<u64>, out: &mut Vec<Message>) -> Result<()> {
        let mut sessions: Vec<Taken> = Vec::with_capacity(ids.len());
        for id in ids {
            self.dirty.remove(&id);
            let Some(key) = self.key_of.get(&id) else { continue };
            let Some(s) = self.sessions.get(key).and_then(|l| l.iter().find(|s| s.id == id)) else { continue };
            sessions.push((id, key.clone(), s.start, s.end, s.slots.clone()));
        }
        if sessions.is_empty() {
            return Ok(());
        }
        let values = self.values(&sessions, true)?;
        let batch = self.emit(&sessions, values)?;
        let windows: Vec<_> = sessions.iter().enumerate().map(|(i, (id, ..))| (*id, i..i + 1)).collect();
        if let Some(changes) = self.changes.as_mut().map(|c| c.update_rows(&windows, &batch)).transpose()?.flatten() {
            out.push(Message::Data(changes));
        }
        Ok(())
    }

    /// Emit the changes of dirty sessions: fired ones (late corrections) and, if `early`, open
    /// ones.
    fn refresh_dirty(&mut self, early: bool, out: &mut Vec<Message>) -> Result<()> {
        let late = std::mem::take(&mut self.late);
        let due: BTreeSet<u64> = match early {
            true => self.dirty.iter().copied().collect(),
            // a session dirty and fired was marked while fired: it is among `late`
            false => late.into_iter().filter(|id| self.dirty.contains(id) && self.session_fired(*id)).collect(),
        };
        self.refresh(due, out)
    }

    fn session_fired(&self, id: u64) -> bool {
        let Some(key) = self.key_of.get(&id) else { return false };
        self.sessions.get(key).and_then(|l| l.iter().find(|s| s.id == id)).is_some_and(|s| s.fired)
    }

    /// After a batch: late corrections, and early results when they are due.
    fn after_batch(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if self.changes.is_none() || self.dirty.is_empty() {
            return Ok(());
        }
        let early = match self.early {
            EarlyEmit::Off => false,
            EarlyEmit::OnUpdate => true,
            EarlyEmit::Every(n) => self.last_early.elapsed().as_nanos() >= n as u128,
        };
        self.refresh_dirty(early, out)?;
        if early {
            self.last_early = Instant::now();
        }
        Ok(())
    }

    /// One row per session: keys, bounds, aggregates (`values`: a row per session).
    fn emit(&self, sessions: &[Taken], values: Vec<ArrayRef>) -> Result<RecordBatch> {
        let n = sessions.len();
        let keys = match &self.converter {
            Some(c) => {
                let parser = c.parser();
                c.convert_rows(sessions.iter().map(|(_, k, ..)| parser.parse(k)))?
            }
            None => Vec::new(),
        };
        let windows: Vec<(Nanos, Nanos)> = sessions.iter().map(|(_, _, start, end, _)| (*start, *end)).collect();
        let mut columns = self.layout.group_columns(&self.output_schema, self.num_group_columns, keys, |b, t| {
            WindowLayout::bound_array(b, t, &windows)
        })?;
        columns.extend(values);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }
}

impl Operator for SessionAggregateOp {
    fn name(&self) -> &'static str {
        "SessionAggregate"
    }

    /// Sessions held (open, and fired ones kept for late rows), with their accumulators.
    fn state_size(&self) -> StateSize {
        let keys: usize = self.sessions.iter().map(|(k, l)| k.len() + l.len() * std::mem::size_of::<Session>()).sum();
        StateSize { rows: self.key_of.len() as u64, bytes: (keys + self.slots.size()) as u64 }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let t = self.layout.time.evaluate(batch)?.into_array(n)?;
        let times = to_nanos(&t)?;
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let rows = match &self.converter {
            Some(c) => Some(c.convert_columns(&keys)?),
            None => None,
        };
        let agg_input = self.aggregates.input(Vec::new(), batch)?;
        let row_wm = input.row_watermarks.as_deref();
        let (mut late, mut null_time) = (0u64, 0u64);
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        let changelog = self.changes.is_some();
        let mut next_end = self.next_deadline();
        for i in 0..n {
            if times.is_null(i) {
                null_time += 1;
                dropped.null_time(i);
                continue;
            }
            let wm = row_wm.map(|w| w.value(i)).unwrap_or(NO_WATERMARK).max(self.watermark);
            if wm >= next_end {
                if changelog {
                    self.flush(&agg_input)?;
                    // corrections for the rows before this one, before a session stops taking them
                    self.refresh_dirty(false, out)?;
                }
                self.watermark = wm;
                // without a changelog, what fires is evaluated after the batch's rows are in
                self.fire_until(wm, !changelog, out)?;
            }
            let row = rows.as_ref().map(|r| r.row(i));
            let key: &[u8] = row.as_ref().map(|r| r.as_ref()).unwrap_or(&[]);
            let t = times.value(i);
            match self.assign(key, t, wm)? {
                Some(slot) => {
                    self.assigned.0.push(i as u32);
                    self.assigned.1.push(slot);
                }
                None => {
                    late += 1;
                    dropped.drop_row(i, || {
                        let allowed = if self.lateness > 0 {
                            format!(", allowed lateness {}", weir_plan::duration::format_duration(self.lateness))
                        } else {
                            String::new()
                        };
                        format!(
                            "late: no open session to join, and its own window [{}, {}) had ended (watermark {}{allowed})",
                            show_time(t),
                            show_time(t.saturating_add(self.gap)),
                            show_time(wm)
                        )
                    });
                }
            }
            next_end = self.next_deadline();
        }
        self.flush(&agg_input)?;
        self.emit_fired(out)?;
        self.after_batch(out)?;
        self.report_open();
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire_until(watermark, false, out)?;
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Every session (key, bounds, fired) with its partial aggregate, the order they fire
    /// in, and in changelog mode each session's last emitted row.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let state = SessionState {
            watermark: self.watermark,
            next_id: self.next_id,
            by_end: self.by_end.iter().copied().collect(),
            retained: self.retained.iter().copied().collect(),
            dirty: self.dirty.iter().copied().collect(),
        };
        let mut snapshot = OperatorSnapshot::with_meta(&state)?;
        let (mut ids, mut keys, mut starts, mut ends, mut fired) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut slots: Vec<(u64, Vec<u64>)> = Vec::new();
        for (key, list) in &self.sessions {
            for s in list {
                ids.push(s.id as i64);
                keys.push(key.clone());
                starts.push(s.start);
                ends.push(s.end);
                fired.push(s.fired);
                slots.push((s.id, s.slots.clone()));
            }
        }
        if !ids.is_empty() {
            // each session's partial aggregate, one row of state columns each
            let wanted: Vec<(u64, &[u64])> = slots.iter().map(|(id, s)| (*id, s.as_slice())).collect();
            let (key_of, sessions) = (&self.key_of, &self.sessions);
            let order = |id| end_of(key_of, sessions, id).unwrap_or(Nanos::MAX);
            let (states, moved) = self.slots.states(&self.aggregates, &wanted, &order)?;
            self.moved(moved);
            let frozen: Vec<(i64, Frozen)> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let row = states.iter().map(|s| s.iter().map(|c| c.slice(i, 1)).collect()).collect();
                    (*id, Frozen::of_states(row, 1))
                })
                .collect();
            let schema = Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("key", DataType::Binary, false),
                Field::new("start", DataType::Int64, false),
                Field::new("end", DataType::Int64, false),
                Field::new("fired", DataType::Boolean, false),
            ]);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(BinaryArray::from_iter_values(&keys)),
                Arc::new(Int64Array::from(starts)),
                Arc::new(Int64Array::from(ends)),
                Arc::new(BooleanArray::from(fired)),
            ];
            snapshot.push("sessions", RecordBatch::try_new(Arc::new(schema), columns)?);
            let parts: Vec<(i64, &Frozen)> = frozen.iter().map(|(id, f)| (*id, f)).collect();
            if let Some(batch) = self.aggregates.frozen_to_batch(&parts)? {
                snapshot.push("partials", batch);
            }
        }
        if let Some(batch) = self.changes.as_ref().map(|c| c.to_batch(|id| (*id as i64, 0))).transpose()?.flatten() {
            snapshot.push("emitted", batch);
        }
        Ok(snapshot)
    }

    /// The sessions of the keys this instance owns, with their partials and emitted results,
    /// ids numbered apart per old instance (and the order they fire in, kept for those
    /// sessions).
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        let Some(converter) = &self.converter else {
            return Err(RuntimeError::Internal("a session window without keys has one instance".into()));
        };
        let mut merged: Option<SessionState> = None;
        let (mut sessions, mut partials, mut emitted) = (Vec::new(), Vec::new(), Vec::new());
        let (mut id_offset, mut part_offset) = (0u64, 0u32);
        let bad = || RuntimeError::Checkpoint("the saved sessions are not valid".into());
        for mut part in parts.into_iter().filter(|p| !p.is_empty()) {
            if let Some(batch) = part.take("emitted") {
                // each result's session id (w0) numbered as its session is
                let ids = batch.column(0).as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                let mut columns = batch.columns().to_vec();
                columns[0] =
                    Arc::new(Int64Array::from_iter_values(ids.values().iter().map(|id| id + id_offset as i64)));
                emitted.push(RecordBatch::try_new(batch.schema(), columns)?);
            }
            let state: SessionState = part.meta(self.name())?;
            let mut kept = BTreeSet::new();
            if let Some(batch) = part.take("sessions") {
                let keys = batch.column(1).as_binary_opt::<i32>().ok_or_else(bad)?;
                let keep = BooleanArray::from(owned(&crate::state::rank_rows::decode(converter, keys)?)?);
                let batch = datafusion_common::arrow::compute::filter_record_batch(&batch, &keep)?;
                let ids = batch.column(0).as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                kept.extend(ids.values().iter().map(|id| *id as u64));
                let mut columns = batch.columns().to_vec();
                columns[0] =
                    Arc::new(Int64Array::from_iter_values(ids.values().iter().map(|id| id + id_offset as i64)));
                sessions.push(RecordBatch::try_new(batch.schema(), columns)?);
            }
            if let Some(batch) = part.take("partials") {
                let (batch, next) = shift_ids(&batch, 1, part_offset)?;
                let tags = batch.column(0).as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
                let keep = BooleanArray::from_iter(tags.values().iter().map(|t| Some(kept.contains(&(*t as u64)))));
                let mut columns = batch.columns().to_vec();
                columns[0] = Arc::new(Int64Array::from_iter_values(tags.values().iter().map(|t| t + id_offset as i64)));
                let batch = RecordBatch::try_new(batch.schema(), columns)?;
                partials.push(datafusion_common::arrow::compute::filter_record_batch(&batch, &keep)?);
                part_offset = next;
            }
            let shift = |(end, id): &(Nanos, u64)| kept.contains(id).then_some((*end, id + id_offset));
            let this = SessionState {
                watermark: state.watermark,
                next_id: state.next_id + id_offset,
                by_end: state.by_end.iter().filter_map(shift).collect(),
                retained: state.retained.iter().filter_map(shift).collect(),
                dirty: state.dirty.iter().filter(|id| kept.contains(id)).map(|id| id + id_offset).collect(),
            };
            id_offset = this.next_id;
            merged = Some(match merged {
                None => this,
                Some(mut m) => {
                    m.watermark = m.watermark.max(this.watermark);
                    m.next_id = m.next_id.max(this.next_id);
                    m.by_end.extend(this.by_end);
                    m.retained.extend(this.retained);
                    m.dirty.extend(this.dirty);
                    m
                }
            });
        }
        let Some(mut state) = merged else { return Ok(OperatorSnapshot::empty()) };
        state.by_end.sort_unstable();
        state.retained.sort_unstable();
        let mut snapshot = OperatorSnapshot::with_meta(&state)?;
        if let Some(batch) = concat_saved(&sessions)? {
            snapshot.push("sessions", batch);
            if let Some(batch) = concat_saved(&partials)? {
                snapshot.push("partials", batch);
            }
        }
        let results = self.layout.key_columns(self.num_group_columns);
        if let Some(batch) = crate::operators::window_changes::owned_results(&emitted, &results, owned)? {
            snapshot.push("emitted", batch);
        }
        Ok(snapshot)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        let state: SessionState = snapshot.meta(self.name())?;
        self.watermark = state.watermark;
        self.next_id = state.next_id;
        self.by_end = state.by_end.into_iter().collect();
        self.retained = state.retained.into_iter().collect();
        self.dirty = state.dirty.into_iter().collect();
        // any of them may be fired
        self.late = self.dirty.iter().copied().collect();
        if let Some(sessions) = snapshot.take("sessions") {
            let mut partials: HashMap<i64, Frozen> = match snapshot.take("partials") {
                Some(p) => self.aggregates.frozen_from_batch(&p)?.into_iter().collect(),
                None => HashMap::default(),
            };
            let bad = || RuntimeError::Checkpoint("the saved sessions are not valid".into());
            let int =
                |i: usize| sessions.columns().get(i).and_then(|c| c.as_primitive_opt::<Int64Type>()).ok_or_else(bad);
            let no_partial = |id: i64| RuntimeError::Checkpoint(format!("saved session {id} has no partial aggregate"));
            let (ids, starts, ends) = (int(0)?, int(2)?, int(3)?);
            let keys = sessions.columns().get(1).and_then(|c| c.as_binary_opt::<i32>()).ok_or_else(bad)?;
            let fired = sessions.columns().get(4).and_then(|c| c.as_boolean_opt()).ok_or_else(bad)?;
            for r in 0..sessions.num_rows() {
                let id = ids.value(r);
                let partial = partials.remove(&id).ok_or_else(|| no_partial(id))?;
                let slot = self.slots.restore(id as u64, partial.states())?;
                let key: Box<[u8]> = keys.value(r).into();
                let session = Session {
                    id: id as u64,
                    start: starts.value(r),
                    end: ends.value(r),
                    slots: vec![slot],
                    fired: fired.value(r),
                };
                self.key_of.insert(id as u64, key.clone());
                self.sessions.entry(key).or_default().push(session);
            }
        }
        if let (Some(changes), Some(emitted)) = (&mut self.changes, snapshot.take("emitted")) {
            changes.restore_batch(&emitted, |id, _| id as u64)?;
        }
        self.report_open();
        Ok(())
    }
}

/// The current end of session `id`, if it is held.
fn end_of(key_of: &HashMap<u64, Box<[u8]>>, sessions: &HashMap<Box<[u8]>, Vec<Session>>, id: u64) -> Option<Nanos> {
    sessions.get(key_of.get(&id)?)?.iter().find(|s| s.id == id).map(|s| s.end)
}

/// What a checkpoint keeps of a session aggregate besides its sessions.
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionState {
    watermark: Nanos,
    next_id: u64,
    by_end: Vec<(Nanos, u64)>,
    retained: Vec<(Nanos, u64)>,
    dirty: Vec<u64>,
}
