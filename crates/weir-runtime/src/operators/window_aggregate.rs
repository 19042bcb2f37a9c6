//! Aggregation over TUMBLE, HOP and CUMULATE windows, each window emitted when the watermark
//! passes its end: once, or (with an allowed lateness or early results) as a changelog.
//!
//! ```text
//!   per batch, row by row (vectorised per run of rows)
//!     time ──► slice ──► late?  every window of the slice ended at or before the row's
//!                               watermark: count them, drop the row; some did: count those
//!          ──► add the row to its slice's partial aggregate (one update per row, however
//!              many windows overlap); a new slice registers its windows as pending
//!     before a row whose watermark reaches a pending window's end, that window fires, so a
//!     row is never added to a window that has already ended, whatever the batch boundaries
//!
//!   on Watermark(w): fire pending windows with end <= w, in (end, start) order
//!     fire(window) = merge the frozen partials of its slices, evaluate, emit;
//!                    a TUMBLE window is its one slice: evaluated directly
//!     then drop slices whose last window has fired
//!
//!   state: slices  BTreeMap<slice start, Slice { live partial, frozen partials }>
//!          pending BTreeSet<(window end, window start)>
//!   Both hold open windows only; memory is bounded by them.
//!
//!   changelog mode (allowed lateness L > 0, or early results):
//!     a row is late only for windows with end + L <= its watermark
//!     a fired window moves to `retained` until the watermark passes end + L (then its state
//!     and slices go); a row for it marks it dirty, and after the batch (or before a later
//!     row's watermark passes another deadline) each dirty window is re-evaluated and
//!     `WindowChanges` emits the difference: -U old row, +U new row, +I for a new key
//!     early results: dirty pending windows are re-evaluated after each batch (or at most
//!     once per interval), first as +I, then -U/+U; firing emits only what changed since
//!     re-evaluating merges the slices' frozen partials, so a slice's live partial is frozen
//!     and compacted into one each time
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, FieldRef, Int64Type, Schema, SchemaRef, TimeUnit};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::ScalarValue;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_plan::aggregates::group_values::GroupValues;
use weir_plan::{EarlyEmit, WindowColumn, WindowEmit, WindowSpec};

use crate::error::{Result, RuntimeError};
use crate::exec::dropped::{show_time, DroppedCollector};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_assign::{Assigner, SliceCache};
use crate::operators::window_changes::{WindowChanges, WindowId};
use crate::state::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Frozen, Partial};
use crate::state::checkpoint::OperatorSnapshot;

const MILLI: Nanos = 1_000_000;

/// The most emptied group sets a window aggregate keeps for its next slices.
const SPARE_GROUPS: usize = 32;

/// How the operator finds each row's window, and where the window bounds go in its output.
pub struct WindowLayout {
    /// Evaluates to a time inside the row's window(s) once `time_offset` is added.
    pub time: Arc<dyn PhysicalExpr>,
    /// Added to `time`, in nanoseconds.
    pub time_offset: Nanos,
    /// Group expressions that are window bounds (position among the group columns, bound).
    pub window_columns: Vec<(usize, WindowColumn)>,
    /// The window.
    pub window: WindowSpec,
}

impl WindowLayout {
    /// Event time (inside the row's window) of every row of `batch`, in nanoseconds.
    pub(crate) fn times(&self, batch: &RecordBatch) -> Result<Int64Array> {
        let t = self.time.evaluate(batch)?.into_array(batch.num_rows())?;
        let ns = to_nanos(&t)?;
        let offset = self.time_offset;
        Ok(if offset == 0 { ns } else { ns.unary(|v| v.saturating_add(offset)) })
    }

    /// The group columns (of `num_group_columns`) that are keys, not window bounds.
    pub(crate) fn key_columns(&self, num_group_columns: usize) -> Vec<usize> {
        (0..num_group_columns).filter(|i| self.bound(*i).is_none()).collect()
    }

    /// Which bound group column `i` is, if it is one.
    fn bound(&self, i: usize) -> Option<WindowColumn> {
        self.window_columns.iter().find(|(c, _)| *c == i).map(|(_, b)| *b)
    }

    /// The value of a bound for the window `[start, end)`.
    fn bound_value(column: WindowColumn, start: Nanos, end: Nanos) -> Nanos {
        match column {
            WindowColumn::Start => start,
            WindowColumn::End => end,
            WindowColumn::Time => end.saturating_sub(MILLI),
        }
    }

    /// The group expressions that are keys (not window bounds), and their output fields.
    pub(crate) fn keys(
        &self,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        output_schema: &Schema,
    ) -> (Vec<Arc<dyn PhysicalExpr>>, Vec<FieldRef>) {
        group_exprs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.bound(*i).is_none())
            .map(|(i, e)| (e, Arc::clone(&output_schema.fields()[i])))
            .unzip()
    }

    /// The group columns of an output batch: bound column `i` from `bound(column, type)`, the
    /// others from `keys`, in order.
    pub(crate) fn group_columns(
        &self,
        output_schema: &Schema,
        num_group_columns: usize,
        keys: Vec<ArrayRef>,
        bound: impl Fn(WindowColumn, &DataType) -> Result<ArrayRef>,
    ) -> Result<Vec<ArrayRef>> {
        let mut keys = keys.into_iter();
        (0..num_group_columns)
            .map(|i| match self.bound(i) {
                Some(b) => bound(b, output_schema.field(i).data_type()),
                None => keys.next().ok_or_else(|| RuntimeError::Internal("missing group column".into())),
            })
            .collect()
    }

    /// A bound of each of the windows `[start, end)`, as an array of the bound column's type.
    pub(crate) fn bound_array(column: WindowColumn, t: &DataType, windows: &[(Nanos, Nanos)]) -> Result<ArrayRef> {
        let values = windows
            .iter()
            .map(|(s, e)| timestamp_scalar(t, Self::bound_value(column, *s, *e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(ScalarValue::iter_to_array(values)?)
    }
}

#[derive(Default)]
struct Slice {
    live: Option<Partial>,
    frozen: Vec<Frozen>,
}

/// The window aggregate operator for the slicing window kinds.
pub struct WindowAggregateOp {
    /// Group expressions that are keys (not window bounds).
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    assigner: Assigner,
    aggregates: Aggregates,
    output_schema: SchemaRef,
    num_group_columns: usize,
    slices: BTreeMap<Nanos, Slice>,
    pending: BTreeSet<(Nanos, Nanos)>,
    watermark: Nanos,
    metrics: Arc<Metrics>,
    /// What this instance last added to the open-windows gauge.
    open_reported: u64,
    /// The end of the window fired last, and the last watermark sent on: a window ending
    /// later is preceded by a watermark at that end (see [`WindowAggregateOp::fire_until`]).
    fired_end: Option<Nanos>,
    out_watermark: Nanos,
    group_ids: Vec<usize>,
    /// The groups of the one-slice windows emitted last, emptied, for the next slices'
    /// partials: as many as keep the slices open and these at most at the most slices open so
    /// far (a batch may span many windows), and at most [`SPARE_GROUPS`].
    spare_groups: Vec<Box<dyn GroupValues>>,
    most_slices: usize,
    /// Allowed lateness (0: none).
    lateness: Nanos,
    early: EarlyEmit,
    /// Each window's last emitted result, in changelog mode.
    changes: Option<WindowChanges>,
    /// Fired windows still accepting rows (until the watermark passes end + lateness).
    retained: BTreeSet<WindowId>,
    /// Windows whose rows changed since their result was last emitted (changelog mode).
    dirty: BTreeSet<WindowId>,
    last_early: Instant,
    /// Merging partial aggregates (two phases): the column of the rows each holds.
    merging: Option<usize>,
    /// The plan node it runs (see [`WindowAggregateOp::of_node`]).
    node: usize,
}

impl WindowAggregateOp {
    /// Build the operator. `output_schema` is group columns then aggregate columns.
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        layout: WindowLayout,
        aggregates: Vec<AggregateSpec>,
        output_schema: SchemaRef,
        emit: WindowEmit,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let num_group_columns = group_exprs.len();
        let (key_exprs, key_fields) = layout.keys(group_exprs, &output_schema);
        let assigner = Assigner::new(&layout.window)?;
        let changes =
            if emit.is_changelog() { Some(WindowChanges::new(&output_schema, num_group_columns)?) } else { None };
        Ok(Self {
            lateness: emit.allowed_lateness_nanos.max(0),
            early: emit.early,
            changes,
            retained: BTreeSet::new(),
            dirty: BTreeSet::new(),
            last_early: Instant::now(),
            key_exprs,
            assigner,
            layout,
            aggregates: Aggregates::new(Arc::new(Schema::new(key_fields)), aggregates),
            output_schema,
            num_group_columns,
            slices: BTreeMap::new(),
            pending: BTreeSet::new(),
            watermark: NO_WATERMARK,
            metrics,
            open_reported: 0,
            fired_end: None,
            out_watermark: NO_WATERMARK,
            group_ids: Vec::new(),
            spare_groups: Vec::new(),
            most_slices: 0,
            merging: None,
            node: 0,
        })
    }

    /// Which plan node it runs (any number the same for every parallel instance of one node
    /// and different for another): the windows it fires are counted once per node, however
    /// many instances fire them.
    pub fn of_node(mut self, node: usize) -> Self {
        self.node = node;
        self
    }

    /// The second phase of a window aggregate run in two phases: its input rows are partial
    /// aggregates (made by the local window aggregate where a split is read), each holding the rows counted
    /// in column `rows_column`, its arguments each aggregate's state columns, its time a slice.
    pub fn merging(mut self, rows_column: usize) -> Self {
        self.merging = Some(rows_column);
        self
    }

    /// Add the rows collected for each slice to its live partial.
    fn flush(&mut self, buckets: &mut Vec<(Nanos, Vec<u32>)>, input: &AggregateInput) -> Result<()> {
        for (start, rows) in buckets.drain(..) {
            if self.changes.is_some() {
                for w in self.assigner.windows(start) {
                    let id = (w.1, w.0);
                    if self.retained.contains(&id) || (self.early != EarlyEmit::Off && self.pending.contains(&id)) {
                        self.dirty.insert(id);
                    }
                }
            }
            let slice = self.slices.entry(start).or_default();
            let partial = match &mut slice.live {
                Some(p) => p,
                None => slice.live.insert(self.aggregates.partial_reusing(self.spare_groups.pop())?),
            };
            let rows = (rows.len() != input.rows).then(|| UInt32Array::from(rows));
            match self.merging {
                Some(_) => partial.merge_rows(input, rows.as_ref(), &mut self.group_ids)?,
                None => partial.update(input, rows.as_ref(), &mut self.group_ids)?,
            }
        }
        Ok(())
    }

    /// Fire every pending window that ends at or before `watermark`, then drop the slices no
    /// window needs any more.
    fn fire_until(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        while let Some(&(end, start)) = self.pending.first() {
            if end > watermark {
                break;
            }
            // windows that end later follow a watermark at the earlier end: downstream (the
            // merge of parallel instances) can tell them apart and keep them in order
            if self.changes.is_none() {
                if let Some(e) = self.fired_end.filter(|e| *e < end && *e > self.out_watermark) {
                    self.out_watermark = e;
                    out.push(Message::Watermark(e));
                }
                self.fired_end = Some(end);
            }
            self.pending.pop_first();
            self.metrics.window_fired(self.node, start, end);
            tracing::debug!(start = %show_time(start), end = %show_time(end), watermark = %show_time(watermark), "window fires");
            if self.changes.is_some() {
                self.refresh((end, start), out)?;
                if self.lateness > 0 {
                    self.retained.insert((end, start));
                } else if let Some(c) = &mut self.changes {
                    c.forget((end, start));
                }
                continue;
            }
            let batch = self.fire(start, end)?;
            if batch.num_rows() > 0 {
                out.push(Message::Data(StreamBatch::new(batch)));
            }
        }
        while let Some(&(end, start)) = self.retained.first() {
            if end.saturating_add(self.lateness) > watermark {
                break;
            }
            self.retained.pop_first();
            if let Some(c) = &mut self.changes {
                c.forget((end, start));
            }
        }
        while let Some(entry) = self.slices.first_entry() {
            match self.assigner.end_range(*entry.key()) {
                Some((_, last)) if last.saturating_add(self.lateness) > watermark => break,
                _ => {
                    entry.remove();
                }
            }
        }
        if watermark == Nanos::MAX {
            // the end of the input: no slice comes any more
            self.spare_groups.clear();
        }
        let open = (self.pending.len() + self.retained.len()) as u64;
        Metrics::gauge(&self.metrics.open_windows, &mut self.open_reported, open);
        Ok(())
    }

    /// The earliest watermark at which something happens: a pending window fires or a
    /// retained one stops accepting rows.
    fn next_deadline(&self) -> Nanos {
        let fire = self.pending.first().map(|w| w.0).unwrap_or(Nanos::MAX);
        let close = self.retained.first().map(|w| w.0.saturating_add(self.lateness)).unwrap_or(Nanos::MAX);
        fire.min(close)
    }

    /// Re-evaluate one window and emit what changed since its last emission.
    fn refresh(&mut self, (end, start): WindowId, out: &mut Vec<Message>) -> Result<()> {
        self.dirty.remove(&(end, start));
        let partial = self.window_partial(start, end)?;
        let batch = self.emit(start, end, partial, false)?;
        if let Some(changes) = self.changes.as_mut().map(|c| c.update((end, start), batch)).transpose()?.flatten() {
            out.push(Message::Data(changes));
        }
        Ok(())
    }

    /// Emit the changes of dirty windows: those already fired (late corrections) and, if
    /// `early`, those still pending.
    fn refresh_dirty(&mut self, early: bool, out: &mut Vec<Message>) -> Result<()> {
        let due: Vec<WindowId> = self
            .dirty
            .iter()
            .copied()
            .filter(|w| self.retained.contains(w) || (early && self.pending.contains(w)))
            .collect();
        for w in due {
            self.refresh(w, out)?;
        }
        Ok(())
    }

    /// After a batch: late corrections, and early results when they are due.
    fn after_batch(&mut self, out: &mut Vec<Message>) -> Result<()> {
        if self.changes.is_none() {
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

    /// The merged partial of the window `[start, end)`, leaving its slices in place (each
    /// slice's partials compacted into one frozen partial).
    fn window_partial(&mut self, start: Nanos, end: Nanos) -> Result<Partial> {
        for slice in self.slices.range_mut(start..end).map(|(_, s)| s) {
            let Some(live) = slice.live.take() else { continue };
            let live = live.freeze()?;
            if slice.frozen.is_empty() {
                slice.frozen.push(live);
            } else {
                let mut compact = self.aggregates.partial()?;
                for f in slice.frozen.iter().chain(std::iter::once(&live)) {
                    compact.merge(f, &mut self.group_ids)?;
                }
                slice.frozen = vec![compact.freeze()?];
            }
        }
        let mut partial = self.aggregates.partial()?;
        for slice in self.slices.range(start..end).map(|(_, s)| s) {
            for f in &slice.frozen {
                partial.merge(f, &mut self.group_ids)?;
            }
        }
        Ok(partial)
    }

    /// Evaluate a window for its one emission (not in changelog mode): a window that is one
    /// slice takes the slice's state; others merge their slices' frozen partials.
    fn fire(&mut self, start: Nanos, end: Nanos) -> Result<RecordBatch> {
        // (only a slice's own groups are kept for the next slices: a window merged from
        // several holds theirs all)
        let (partial, keep) = if self.assigner.single_slice_windows() {
            match self.slices.remove(&start) {
                Some(Slice { live: Some(p), frozen }) if frozen.is_empty() => (p, true),
                Some(slice) => (self.merged(std::iter::once(slice))?, false),
                None => (self.aggregates.partial()?, false),
            }
        } else {
            (self.window_partial(start, end)?, false)
        };
        self.emit(start, end, partial, keep)
    }

    fn merged(&mut self, slices: impl Iterator<Item = Slice>) -> Result<Partial> {
        let mut partial = self.aggregates.partial()?;
        for slice in slices {
            let frozen = slice.frozen.into_iter().chain(slice.live.map(Partial::freeze).transpose()?);
            for f in frozen {
                partial.merge(&f, &mut self.group_ids)?;
            }
        }
        Ok(partial)
    }

    /// The window's result; its groups, emptied, kept for the next slices when `keep`.
    fn emit(&mut self, start: Nanos, end: Nanos, partial: Partial, keep: bool) -> Result<RecordBatch> {
        let (keys, values, n) = if keep {
            let (keys, values, n, groups) = partial.evaluate_keeping()?;
            let spares = self.spare_groups.len();
            let room = spares < SPARE_GROUPS && spares + self.slices.len() < self.most_slices;
            if let Some(groups) = groups.filter(|_| room) {
                self.spare_groups.push(groups);
            }
            (keys, values, n)
        } else {
            partial.evaluate()?
        };
        if n == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.output_schema)));
        }
        let mut columns = self.layout.group_columns(&self.output_schema, self.num_group_columns, keys, |b, t| {
            Ok(timestamp_scalar(t, WindowLayout::bound_value(b, start, end))?.to_array_of_size(n)?)
        })?;
        columns.extend(values);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }

    /// A slice seen for the first time: its windows that can still fire become pending; those
    /// that ended less than the allowed lateness ago are retained (they emit when corrected).
    fn open_slice(&mut self, start: Nanos, watermark: Nanos) {
        self.slices.entry(start).or_default();
        self.most_slices = self.most_slices.max(self.slices.len());
        for w in self.assigner.windows(start) {
            if w.1 > watermark {
                self.pending.insert((w.1, w.0));
            } else if w.1.saturating_add(self.lateness) > watermark {
                self.retained.insert((w.1, w.0));
            }
        }
        let open = (self.pending.len() + self.retained.len()) as u64;
        Metrics::gauge(&self.metrics.open_windows, &mut self.open_reported, open);
    }
}

/// Convert a TIMESTAMP array (any unit) to nanoseconds as Int64.
pub fn to_nanos(a: &ArrayRef) -> Result<Int64Array> {
    let ns = match a.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Arc::clone(a),
        DataType::Timestamp(_, _) => cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
        other => return Err(RuntimeError::Internal(format!("window bound is {other}, not a TIMESTAMP"))),
    };
    Ok(cast(&ns, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

fn timestamp_scalar(t: &DataType, ns: Nanos) -> Result<ScalarValue> {
    let DataType::Timestamp(unit, tz) = t else {
        return Err(RuntimeError::Internal(format!("window bound column is {t}")));
    };
    let tz = tz.clone();
    Ok(match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(ns.div_euclid(1_000_000_000)), tz),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(ns.div_euclid(1_000_000)), tz),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(ns.div_euclid(1_000)), tz),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(ns), tz),
    })
}

impl Operator for WindowAggregateOp {
    fn name(&self) -> &'static str {
        "WindowAggregate"
    }

    /// Groups of the open (and retained) slices: live partials and frozen ones.
    fn state_size(&self) -> StateSize {
        let mut size = StateSize::default();
        for slice in self.slices.values() {
            if let Some(live) = &slice.live {
                size.rows += live.len() as u64;
                size.bytes += live.size() as u64;
            }
            for f in &slice.frozen {
                size.rows += f.len() as u64;
                size.bytes += f.size() as u64;
            }
        }
        size.bytes += self.spare_groups.iter().map(|g| g.size() as u64).sum::<u64>();
        size
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = self.layout.times(batch)?;
        let agg_input = self.aggregates.keyed_input(&self.key_exprs, batch)?;

        // Rows go to per-slice buckets; a batch usually touches one or two slices, so a short
        // list searched from the last hit beats hashing.
        let mut buckets: Vec<(Nanos, Vec<u32>)> = Vec::new();
        let mut last = 0usize;
        let (mut late, mut null_time) = (0u64, 0u64);
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        let row_wm = input.row_watermarks.as_deref();
        // the rows a partial aggregate holds (each counts as late)
        let held = match self.merging {
            Some(c) => Some(
                batch
                    .column(c)
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| RuntimeError::Internal("partial aggregates without their row counts".into()))?,
            ),
            None => None,
        };
        let mut next_end = self.next_deadline();
        let mut slices = SliceCache::default();
        for i in 0..n {
            if times.is_null(i) {
                null_time += 1;
                dropped.null_time(i);
                continue;
            }
            let t = times.value(i);
            let wm = row_wm.map(|w| w.value(i)).unwrap_or(NO_WATERMARK).max(self.watermark);
            if wm >= next_end {
                // windows end before this row: close them with the rows that came before it
                self.flush(&mut buckets, &agg_input)?;
                self.watermark = wm;
                self.refresh_dirty(false, out)?;
                self.fire_until(wm, out)?;
                next_end = self.next_deadline();
            }
            let Some((s, ends)) = slices.locate(&self.assigner, t) else {
                null_time += 1; // before the nanosecond range: no window
                dropped.null_time(i);
                continue;
            };
            let Some((first_end, last_end)) = ends else {
                continue; // in a gap between hopping windows (size < slide): in no window
            };
            let lateness = self.lateness;
            if first_end.saturating_add(lateness) <= wm {
                for (start, end) in self.assigner.windows(s).into_iter().filter(|w| w.1.saturating_add(lateness) <= wm)
                {
                    late += held.map_or(1, |h| h.value(i).max(0) as u64);
                    dropped.late_for_window(i, start, end, wm, lateness);
                }
                if last_end.saturating_add(lateness) <= wm {
                    continue;
                }
            }
            if buckets.get(last).map(|b| b.0) != Some(s) {
                match buckets.iter().position(|b| b.0 == s) {
                    Some(p) => last = p,
                    None => {
                        if !self.slices.contains_key(&s) {
                            self.open_slice(s, wm);
                            next_end = self.next_deadline();
                        }
                        buckets.push((s, Vec::new()));
                        last = buckets.len() - 1;
                    }
                }
            }
            buckets[last].1.push(i as u32);
        }
        self.flush(&mut buckets, &agg_input)?;
        self.after_batch(out)?;
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        self.after_batch(out)?;
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire_until(watermark, out)?;
        }
        self.out_watermark = self.out_watermark.max(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Open windows and their slices' partial aggregates (each live partial saved as it is,
    /// and left live), and in changelog mode each window's last emitted result.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let mut live = Vec::new();
        for (start, slice) in self.slices.iter_mut() {
            if let Some(p) = slice.live.as_mut() {
                live.push((*start, p.snapshot(&self.aggregates, &mut self.group_ids)?));
            }
        }
        let state = WindowState {
            watermark: self.watermark,
            slices: self.slices.keys().copied().collect(),
            pending: self.pending.iter().copied().collect(),
            retained: self.retained.iter().copied().collect(),
            dirty: self.dirty.iter().copied().collect(),
        };
        let mut snapshot = OperatorSnapshot::with_meta(&state)?;
        // per slice: its frozen partials, then its live one (restored as frozen partials)
        let mut parts: Vec<(Nanos, &Frozen)> = Vec::new();
        let mut live = live.iter().peekable();
        for (s, slice) in &self.slices {
            parts.extend(slice.frozen.iter().map(|f| (*s, f)));
            if let Some((_, f)) = live.next_if(|(start, _)| start == s) {
                parts.push((*s, f));
            }
        }
        if let Some(batch) = self.aggregates.frozen_to_batch(&parts)? {
            snapshot.push("partials", batch);
        }
        if let Some(batch) = self.changes.as_ref().map(|c| c.to_batch(|w| *w)).transpose()?.flatten() {
            snapshot.push("emitted", batch);
        }
        Ok(snapshot)
    }

    /// The partials and emitted results of the keys this instance owns, and every instance's
    /// windows (they agree on the watermark; a window without keys here fires nothing).
    fn rescale(
        &self,
        parts: Vec<OperatorSnapshot>,
        owned: &crate::state::checkpoint::KeyFilter<'_>,
    ) -> Result<OperatorSnapshot> {
        let mut merged: Option<WindowState> = None;
        let mut partials = Vec::new();
        // part ids of each instance's partials follow those of the instances before it
        let mut offset = 0u32;
        let keys: Vec<usize> = (2..2 + self.key_exprs.len()).collect();
        let mut emitted = Vec::new();
        for mut part in parts.into_iter().filter(|p| !p.is_empty()) {
            emitted.extend(part.take("emitted"));
            let s: WindowState = part.meta(self.name())?;
            merged = Some(match merged {
                None => s,
                Some(mut m) => {
                    m.watermark = m.watermark.max(s.watermark);
                    m.slices.extend(s.slices);
                    m.pending.extend(s.pending);
                    m.retained.extend(s.retained);
                    m.dirty.extend(s.dirty);
                    m
                }
            });
            if let Some(batch) = part.take("partials") {
                let (batch, next) = crate::state::checkpoint::shift_ids(&batch, 1, offset)?;
                partials.push(crate::state::checkpoint::owned_rows(&batch, &keys, owned)?);
                offset = next;
            }
        }
        let Some(mut state) = merged else { return Ok(OperatorSnapshot::empty()) };
        for set in [&mut state.pending, &mut state.retained, &mut state.dirty] {
            set.sort_unstable();
            set.dedup();
        }
        state.slices.sort_unstable();
        state.slices.dedup();
        let mut snapshot = OperatorSnapshot::with_meta(&state)?;
        if let Some(batch) = crate::state::checkpoint::concat_saved(&partials)? {
            snapshot.push("partials", batch);
        }
        let results = self.layout.key_columns(self.num_group_columns);
        if let Some(batch) = crate::operators::window_changes::owned_results(&emitted, &results, owned)? {
            snapshot.push("emitted", batch);
        }
        Ok(snapshot)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        let state: WindowState = snapshot.meta(self.name())?;
        self.watermark = state.watermark;
        self.slices = state.slices.into_iter().map(|s| (s, Slice::default())).collect();
        self.pending = state.pending.into_iter().collect();
        self.retained = state.retained.into_iter().collect();
        self.dirty = state.dirty.into_iter().collect();
        if let Some(partials) = snapshot.take("partials") {
            for (start, frozen) in self.aggregates.frozen_from_batch(&partials)? {
                self.slices.entry(start).or_default().frozen.push(frozen);
            }
        }
        self.most_slices = self.most_slices.max(self.slices.len());
        if let (Some(changes), Some(emitted)) = (&mut self.changes, snapshot.take("emitted")) {
            changes.restore_batch(&emitted, |a, b| (a, b))?;
        }
        let open = (self.pending.len() + self.retained.len()) as u64;
        Metrics::gauge(&self.metrics.open_windows, &mut self.open_reported, open);
        Ok(())
    }
}

/// What a checkpoint keeps of a window aggregate besides its partial aggregates.
#[derive(serde::Serialize, serde::Deserialize)]
struct WindowState {
    watermark: Nanos,
    slices: Vec<Nanos>,
    pending: Vec<WindowId>,
    retained: Vec<WindowId>,
    dirty: Vec<WindowId>,
}
