//! The first phase of a window aggregate run in two phases (see `weir_plan`'s `two_phase`):
//! where a table's split is read, its rows become partial aggregates, one per key, slice and
//! lateness class, which the exchange hashes to the window aggregate's instances in place of
//! the rows; there [`WindowAggregateOp::merging`] merges them into its slices.
//!
//! ```text
//!   batch ─► time ─► slice ─► class = how many of the slice's windows end at or before the
//!                              row's watermark (rows of one class are late for the same windows)
//!     class 0 (on time for every window of the slice) ─► the slice's held Partial, batch after
//!            batch, until the watermark reaches the end of the slice's first window
//!     other classes ─► a Partial of this batch's rows
//!   ─► out, in order of watermark: keys | slice (TIMESTAMP ns) | rows (held) | state columns
//!            row watermark of each partial: its first row's
//! ```
//!
//! Holding a slice's on-time rows over several batches sends fewer partials: a slice spans a
//! few batches. Nothing that could close one of a held slice's windows goes out before it: a
//! watermark, or a row whose watermark reaches the slice's first window end, is sent after the
//! slice's partial. What is held goes out before a checkpoint's barrier (so a checkpoint finds
//! no state here), before its source is declared idle, and at the end of the input.
//!
//! [`WindowAggregateOp::merging`]: crate::operators::window_aggregate::WindowAggregateOp::merging

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array, TimestampNanosecondArray, UInt32Array};
use datafusion_common::arrow::compute::concat;
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_physical_expr::expressions::Column;
use datafusion_physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_aggregate::WindowLayout;
use crate::operators::window_assign::{Assigner, SliceCache};
use crate::state::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Frozen, Partial};
use crate::state::checkpoint::OperatorSnapshot;

/// Where the parts of a partial aggregate are in the batches [`LocalWindowAggregateOp`] sends.
pub struct PartialLayout {
    /// The batches' schema.
    pub schema: SchemaRef,
    /// Key columns (`0..keys`), then the slice, then the number of rows held.
    pub keys: usize,
    /// Each aggregate's state columns, in order, after those.
    pub states: Vec<usize>,
}

impl PartialLayout {
    /// The layout for `key_fields` and `aggregates`.
    pub fn new(key_fields: &[FieldRef], aggregates: &[AggregateSpec]) -> Result<Self> {
        let mut fields: Vec<Field> = key_fields.iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        fields.push(Field::new("slice", DataType::Timestamp(TimeUnit::Nanosecond, None), false));
        fields.push(Field::new("rows", DataType::Int64, false));
        let mut states = Vec::with_capacity(aggregates.len());
        for (a, spec) in aggregates.iter().enumerate() {
            let state = spec.function.state_fields()?;
            states.push(state.len());
            for (s, f) in state.iter().enumerate() {
                fields.push(Field::new(format!("a{a}_s{s}"), f.data_type().clone(), true));
            }
        }
        Ok(Self { schema: Arc::new(Schema::new(fields)), keys: key_fields.len(), states })
    }

    /// The key columns, as expressions (what the exchange hashes).
    pub fn key_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        (0..self.keys).map(|i| Arc::new(Column::new(self.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>).collect()
    }

    /// The slice column.
    pub fn slice_expr(&self) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new("slice", self.keys))
    }

    /// The column of rows held.
    pub fn rows_column(&self) -> usize {
        self.keys + 1
    }

    /// Aggregates reading the state columns of `specs` (the same functions, merged).
    pub fn merging_specs(&self, specs: &[AggregateSpec]) -> Vec<AggregateSpec> {
        let mut next = self.keys + 2;
        specs
            .iter()
            .zip(&self.states)
            .map(|(spec, n)| {
                let args = (next..next + n)
                    .map(|c| Arc::new(Column::new(self.schema.field(c).name(), c)) as Arc<dyn PhysicalExpr>)
                    .collect();
                next += n;
                AggregateSpec { function: Arc::clone(&spec.function), args, filter: None }
            })
            .collect()
    }
}

/// Partial aggregates per key, slice and lateness class.
pub struct LocalWindowAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    assigner: Assigner,
    aggregates: Aggregates,
    partial: PartialLayout,
    /// The highest watermark seen, of a row or of the input.
    watermark: Nanos,
    /// Whether the input's rows carry their watermarks (then so do the partials).
    row_watermarks: bool,
    metrics: Arc<Metrics>,
    group_ids: Vec<usize>,
    /// Per slice (by start), the partial of its rows on time for all its windows, held from
    /// batch to batch until the watermark reaches the end of the slice's first window.
    held: BTreeMap<Nanos, Held>,
    /// Emptied partials, refilled by later rows (their hash tables keep their room).
    pool: Vec<Partial>,
}

/// A slice's partial held back, while no window of the slice can close.
struct Held {
    partial: Partial,
    /// The end of the slice's first window: sent before the watermark reaches it.
    first_end: Nanos,
    /// Its first row's watermark.
    watermark: Nanos,
    /// Rows held per group.
    rows: Vec<i64>,
}

/// The rows of one slice and lateness class in a batch.
struct Class {
    slice: Nanos,
    first_end: Nanos,
    ended: usize,
    watermark: Nanos,
    rows: Vec<u32>,
}

/// A partial on its way out: its watermark, slice, groups and the rows each holds.
struct Piece {
    watermark: Nanos,
    slice: Nanos,
    frozen: Frozen,
    rows: Vec<i64>,
}

impl LocalWindowAggregateOp {
    /// The first phase of the window aggregate with these group expressions, window and
    /// aggregates (as [`crate::operators::window_aggregate::WindowAggregateOp::new`] takes
    /// them).
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        layout: WindowLayout,
        aggregates: Vec<AggregateSpec>,
        output_schema: &Schema,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let (key_exprs, key_fields) = layout.keys(group_exprs, output_schema);
        let partial = PartialLayout::new(&key_fields, &aggregates)?;
        let assigner = Assigner::new(&layout.window)?;
        let aggregates = Aggregates::new(Arc::new(Schema::new(key_fields)), aggregates);
        Ok(Self {
            key_exprs,
            layout,
            assigner,
            aggregates,
            partial,
            watermark: NO_WATERMARK,
            row_watermarks: false,
            metrics,
            group_ids: Vec::new(),
            held: BTreeMap::new(),
            pool: Vec::new(),
        })
    }

    /// The layout of the partials it sends.
    pub fn partial_layout(&self) -> &PartialLayout {
        &self.partial
    }

    /// The rows of each slice and lateness class, in order of their first rows.
    fn classes(&mut self, input: &StreamBatch, times: &Int64Array) -> (Vec<Class>, u64) {
        let mut classes: Vec<Class> = Vec::new();
        let mut null_time = 0u64;
        let row_wm = input.row_watermarks.as_deref();
        let mut slices = SliceCache::default();
        let mut last = 0usize;
        // a row's watermark is never taken below an earlier row's (sources stamp a running
        // maximum; this keeps a class from holding a row the window aggregate would find late)
        let mut running = self.watermark;
        for i in 0..times.len() {
            if times.is_null(i) {
                null_time += 1;
                continue;
            }
            let t = times.value(i);
            let Some((slice, ends)) = slices.locate(&self.assigner, t) else {
                null_time += 1; // before the nanosecond range: no window
                continue;
            };
            let Some((first_end, _)) = ends else {
                continue; // in a gap between hopping windows: in no window
            };
            let wm = row_wm.map(|w| w.value(i)).unwrap_or(NO_WATERMARK).max(running);
            running = wm;
            let ended = match wm < first_end {
                true => 0,
                false => self.assigner.windows(slice).iter().filter(|w| w.1 <= wm).count(),
            };
            let same = |c: &Class| c.slice == slice && c.ended == ended;
            if !classes.get(last).is_some_and(same) {
                match classes.iter().position(same) {
                    Some(p) => last = p,
                    None => {
                        classes.push(Class { slice, first_end, ended, watermark: wm, rows: Vec::new() });
                        last = classes.len() - 1;
                    }
                }
            }
            classes[last].rows.push(i as u32);
        }
        self.watermark = running;
        (classes, null_time)
    }

    fn take_partial(&mut self) -> Result<Partial> {
        match self.pool.pop() {
            Some(p) => Ok(p),
            None => self.aggregates.partial(),
        }
    }

    /// Add `rows` of `input` to `partial`, counting each group's rows in `held`.
    fn add(
        partial: &mut Partial,
        held: &mut Vec<i64>,
        input: &AggregateInput,
        rows: Vec<u32>,
        group_ids: &mut Vec<usize>,
    ) -> Result<()> {
        let rows = (rows.len() != input.rows).then(|| UInt32Array::from(rows));
        partial.update(input, rows.as_ref(), group_ids)?;
        held.resize(partial.len(), 0);
        group_ids.iter().for_each(|g| held[*g] += 1);
        Ok(())
    }

    /// The partials of the rows of `classes`: those late for a window of their slice now,
    /// the others held with their slice's.
    fn split(&mut self, classes: Vec<Class>, input: &AggregateInput, pieces: &mut Vec<Piece>) -> Result<()> {
        for class in classes {
            if class.ended > 0 {
                let mut partial = self.take_partial()?;
                let mut rows = Vec::new();
                Self::add(&mut partial, &mut rows, input, class.rows, &mut self.group_ids)?;
                let frozen = partial.drain()?;
                self.pool.push(partial);
                pieces.push(Piece { watermark: class.watermark, slice: class.slice, frozen, rows });
                continue;
            }
            let held = match self.held.entry(class.slice) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let partial = match self.pool.pop() {
                        Some(p) => p,
                        None => self.aggregates.partial()?,
                    };
                    e.insert(Held { partial, first_end: class.first_end, watermark: class.watermark, rows: Vec::new() })
                }
            };
            Self::add(&mut held.partial, &mut held.rows, input, class.rows, &mut self.group_ids)?;
        }
        Ok(())
    }

    /// Let go of the partials held for slices whose first window ends at or before `until`.
    fn release(&mut self, until: Nanos, pieces: &mut Vec<Piece>) -> Result<()> {
        let due: Vec<Nanos> = self.held.iter().filter(|(_, h)| h.first_end <= until).map(|(s, _)| *s).collect();
        for slice in due {
            let Some(mut held) = self.held.remove(&slice) else { continue };
            let frozen = held.partial.drain()?;
            self.pool.push(held.partial);
            pieces.push(Piece { watermark: held.watermark, slice, frozen, rows: held.rows });
        }
        Ok(())
    }

    /// The pieces as one batch, in order of their watermarks (a held partial goes before the
    /// rows whose watermark closes one of its windows).
    fn emit(&self, mut pieces: Vec<Piece>, out: &mut Vec<Message>) -> Result<()> {
        if pieces.is_empty() {
            return Ok(());
        }
        pieces.sort_by_key(|p| p.watermark);
        let width = self.partial.schema.fields().len();
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(pieces.len()); width];
        let mut watermarks = Vec::new();
        for piece in pieces {
            let groups = piece.frozen.len();
            let mut parts: Vec<ArrayRef> = piece.frozen.keys().to_vec();
            parts.push(Arc::new(TimestampNanosecondArray::from(vec![piece.slice; groups])));
            parts.push(Arc::new(Int64Array::from(piece.rows)));
            parts.extend(piece.frozen.states().iter().flatten().cloned());
            if parts.len() != width {
                return Err(RuntimeError::Internal("a partial aggregate of another shape".into()));
            }
            for (c, a) in parts.into_iter().enumerate() {
                columns[c].push(a);
            }
            watermarks.extend(std::iter::repeat_n(piece.watermark, groups));
        }
        let columns = columns
            .into_iter()
            .map(|pieces| {
                let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
                Ok(concat(&refs)?)
            })
            .collect::<Result<Vec<_>>>()?;
        // the states' types as the accumulators made them (a list's item field may be named
        // otherwise than its declared state field)
        let fields: Vec<Field> = (self.partial.schema.fields().iter().zip(&columns))
            .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), f.is_nullable()))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(watermarks.len()));
        let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?;
        let row_watermarks = self.row_watermarks.then(|| Arc::new(Int64Array::from(watermarks)));
        out.push(Message::Data(StreamBatch { batch, row_watermarks, kinds: None, origin: None }));
        Ok(())
    }

    /// Send every partial held (before a checkpoint's barrier, its input's idleness or its end).
    fn release_all(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let mut pieces = Vec::new();
        self.release(Nanos::MAX, &mut pieces)?;
        self.emit(pieces, out)
    }
}

impl Operator for LocalWindowAggregateOp {
    fn name(&self) -> &'static str {
        "LocalWindowAggregate"
    }

    /// Nothing is kept past a checkpoint's barrier: what it holds goes out before it (see
    /// [`Operator::release`]).
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        match self.held.is_empty() {
            true => Ok(OperatorSnapshot::empty()),
            false => {
                Err(RuntimeError::Internal("a window aggregate's first phase holds partials at a checkpoint".into()))
            }
        }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.row_watermarks = input.row_watermarks.is_some();
        let times = self.layout.times(batch)?;
        let (classes, null_time) = self.classes(&input, &times);
        self.metrics.dropped(0, null_time);
        let mut pieces = Vec::new();
        if !classes.is_empty() {
            let agg_input = self.aggregates.keyed_input(&self.key_exprs, batch)?;
            self.split(classes, &agg_input, &mut pieces)?;
        }
        // the rows sent reach this watermark: no slice whose window it closes is held back
        self.release(self.watermark, &mut pieces)?;
        self.emit(pieces, out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let mut pieces = Vec::new();
        self.release(self.watermark, &mut pieces)?;
        self.emit(pieces, out)?;
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn on_end_of_stream(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.release_all(out)
    }

    fn release(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.release_all(out)
    }

    fn state_size(&self) -> StateSize {
        let held = self.held.values();
        let rows = held.clone().map(|h| h.partial.len() as u64).sum();
        StateSize { rows, bytes: held.map(|h| h.partial.size() as u64).sum() }
    }
}
