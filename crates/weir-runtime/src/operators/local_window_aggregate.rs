//! The first phase of a window aggregate run in two phases (see `weir_plan`'s `two_phase`):
//! where a table's split is read, each batch's rows become partial aggregates, one per key,
//! slice and lateness class, which the exchange hashes to the window aggregate's instances
//! in place of the rows; there [`WindowAggregateOp::merging`] merges them into its slices.
//!
//! ```text
//!   batch ─► time ─► slice ─► class = how many of the slice's windows end at or before the
//!                              row's watermark (rows of one class are late for the same windows)
//!         ─► one Partial per (slice, class), in order of first row ─► freeze ─► one batch:
//!            keys | slice (TIMESTAMP ns) | rows (held) | each aggregate's state columns
//!            row watermark of each partial: its class's first row's
//! ```
//!
//! Nothing is kept between batches: a checkpoint's barrier finds no state here.
//!
//! [`WindowAggregateOp::merging`]: crate::operators::window_aggregate::WindowAggregateOp::merging

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array, TimestampNanosecondArray, UInt32Array};
use datafusion_common::arrow::compute::concat;
use datafusion_common::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_physical_expr::expressions::Column;
use datafusion_physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::Metrics;
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_aggregate::WindowLayout;
use crate::operators::window_assign::{Assigner, SliceCache};
use crate::state::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Partial};
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

/// Partial aggregates of each batch, per key, slice and lateness class.
pub struct LocalWindowAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    assigner: Assigner,
    aggregates: Aggregates,
    partial: PartialLayout,
    watermark: Nanos,
    metrics: Arc<Metrics>,
    group_ids: Vec<usize>,
    /// Partials emptied after each batch and refilled by the next (their hash tables keep
    /// their room), one per class of a batch.
    pool: Vec<Partial>,
}

/// The rows of one slice and lateness class in a batch.
struct Class {
    slice: Nanos,
    ended: usize,
    watermark: Nanos,
    rows: Vec<u32>,
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
            metrics,
            group_ids: Vec::new(),
            pool: Vec::new(),
        })
    }

    /// The layout of the partials it sends.
    pub fn partial_layout(&self) -> &PartialLayout {
        &self.partial
    }

    /// The rows of each slice and lateness class, in order of their first rows.
    fn classes(&self, input: &StreamBatch, times: &Int64Array) -> (Vec<Class>, u64) {
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
                        classes.push(Class { slice, ended, watermark: wm, rows: Vec::new() });
                        last = classes.len() - 1;
                    }
                }
            }
            classes[last].rows.push(i as u32);
        }
        (classes, null_time)
    }

    /// One partial per class, as one batch.
    fn partials(&mut self, classes: Vec<Class>, input: &AggregateInput) -> Result<(RecordBatch, Int64Array)> {
        let width = self.partial.schema.fields().len();
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(classes.len()); width];
        let mut watermarks = Vec::new();
        for (n, class) in classes.into_iter().enumerate() {
            if self.pool.len() <= n {
                self.pool.push(self.aggregates.partial()?);
            }
            let partial = &mut self.pool[n];
            let rows = (class.rows.len() != input.rows).then(|| UInt32Array::from(class.rows));
            partial.update(input, rows.as_ref(), &mut self.group_ids)?;
            // each group's row count, from the group ids of the rows just added
            let groups = partial.len();
            let mut held = vec![0i64; groups];
            self.group_ids.iter().for_each(|g| held[*g] += 1);
            let frozen = partial.drain()?;
            let mut parts: Vec<ArrayRef> = frozen.keys().to_vec();
            parts.push(Arc::new(TimestampNanosecondArray::from(vec![class.slice; groups])));
            parts.push(Arc::new(Int64Array::from(held)));
            parts.extend(frozen.states().iter().flatten().cloned());
            if parts.len() != width {
                return Err(RuntimeError::Internal("a partial aggregate of another shape".into()));
            }
            for (c, a) in parts.into_iter().enumerate() {
                columns[c].push(a);
            }
            watermarks.extend(std::iter::repeat_n(class.watermark, groups));
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
        Ok((batch, Int64Array::from(watermarks)))
    }
}

impl Operator for LocalWindowAggregateOp {
    fn name(&self) -> &'static str {
        "LocalWindowAggregate"
    }

    /// Nothing is kept between batches.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot::empty())
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = self.layout.times(batch)?;
        let (classes, null_time) = self.classes(&input, &times);
        self.metrics.dropped(0, null_time);
        if classes.is_empty() {
            return Ok(());
        }
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let agg_input = self.aggregates.input(keys, batch)?;
        let (partials, watermarks) = self.partials(classes, &agg_input)?;
        let row_watermarks = input.row_watermarks.is_some().then(|| Arc::new(watermarks));
        out.push(Message::Data(StreamBatch { batch: partials, row_watermarks, kinds: None, origin: None }));
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
