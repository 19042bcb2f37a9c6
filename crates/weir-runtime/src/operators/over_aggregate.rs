//! OVER aggregates over append-only rows: `agg(…) OVER (PARTITION BY k ORDER BY ts ROWS|RANGE
//! BETWEEN … PRECEDING AND CURRENT ROW)`, as Flink runs them.
//!
//! ```text
//!   batch ─► rows behind their watermark: late (dropped, counted) ─► pending
//!   watermark w ─► pending rows with time < w are final (no row of that time can come any
//!                  more): per partition, in time order (arrival order among equal times),
//!                  after the partition's history ─► DataFusion's window expressions evaluate
//!                  each frame ─► the rows out with their aggregates
//!               ─► history keeps what later frames can read: the last n rows (ROWS n), or
//!                  the rows within the range before w (RANGE r)
//! ```
//!
//! The frames are computed by DataFusion's `WindowExpr` (sliding accumulators) over the
//! partition's history and its new rows; the state is the pending rows and the history,
//! saved as rows in a checkpoint.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::array::AsArray;
use datafusion_common::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, UInt32Array};
use datafusion_common::arrow::compute::{concat, concat_batches, filter, filter_record_batch, take_record_batch};
use datafusion_common::arrow::datatypes::Int64Type;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_plan::WindowExpr;
use weir_plan::{OverAggregate, OverFrame};

use crate::error::{Result, RuntimeError};
use crate::exec::dropped::{show_time, DroppedCollector};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_aggregate::to_nanos;
use crate::state::aggregate_state::AggregateSpec;
use crate::state::checkpoint::{KeyFilter, OperatorSnapshot};
use crate::state::running::Running;

/// What a checkpoint saves besides the rows: the watermark, and when the histories were last
/// swept.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    watermark: Nanos,
    swept: Nanos,
}

/// What an OVER aggregate operator is built from (see [`OverAggregateOp::new`]).
pub struct OverParts {
    /// `PARTITION BY`, over the input.
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` time, over the input.
    pub time: Arc<dyn PhysicalExpr>,
    /// Each aggregate as a window expression over one partition's rows in time order.
    pub windows: Vec<Arc<dyn WindowExpr>>,
    /// For a frame from UNBOUNDED PRECEDING, the aggregates.
    pub running: Option<Vec<AggregateSpec>>,
    /// The input rows' schema.
    pub input_schema: SchemaRef,
    /// The output rows' schema.
    pub output_schema: SchemaRef,
}

/// Rows not emitted yet, with their times (not evaluated again at each watermark).
struct Pending {
    rows: RecordBatch,
    times: Int64Array,
}

/// The OVER aggregate operator.
pub struct OverAggregateOp {
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    time: Arc<dyn PhysicalExpr>,
    frame: OverFrame,
    /// Added to a row's time to get the time the watermark is compared with.
    offset: Nanos,
    windows: Vec<Arc<dyn WindowExpr>>,
    /// Encodes partition keys (`None`: one partition).
    converter: Option<RowConverter>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Rows not emitted yet, in arrival order.
    pending: Vec<Pending>,
    /// Per partition key, its emitted rows later frames can still read, in time order.
    history: HashMap<Box<[u8]>, RecordBatch>,
    /// A frame from UNBOUNDED PRECEDING: each partition's running aggregates instead.
    running: Option<Running>,
    watermark: Nanos,
    /// The watermark when every partition's history was last cut to the range.
    swept: Nanos,
    metrics: Arc<Metrics>,
}

impl OverAggregateOp {
    /// The operator of a plan's OVER aggregate: its partition keys and time (physical, over
    /// the input), DataFusion's window expressions for its aggregates, and for a frame from
    /// UNBOUNDED PRECEDING the aggregates themselves.
    pub fn new(o: &OverAggregate, parts: OverParts, metrics: Arc<Metrics>) -> Result<Self> {
        let OverParts { partition_by, time, windows, running, input_schema, output_schema } = parts;
        let converter = match partition_by.is_empty() {
            true => None,
            false => {
                let fields = partition_by
                    .iter()
                    .map(|p| Ok(SortField::new(p.data_type(input_schema.as_ref())?)))
                    .collect::<Result<Vec<_>>>()?;
                Some(RowConverter::new(fields)?)
            }
        };
        Ok(Self {
            partition_by,
            time,
            frame: o.frame,
            offset: o.time_offset_nanos,
            windows,
            converter,
            input_schema,
            output_schema,
            pending: Vec::new(),
            history: HashMap::new(),
            running: running.map(Running::new),
            watermark: NO_WATERMARK,
            swept: NO_WATERMARK,
            metrics,
        })
    }

    fn times(&self, batch: &RecordBatch) -> Result<Int64Array> {
        to_nanos(&self.time.evaluate(batch)?.into_array(batch.num_rows())?)
    }

    /// The partition key of each row (empty keys: one partition).
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        let Some(converter) = &self.converter else { return Ok(vec![Box::default(); batch.num_rows()]) };
        let columns = self
            .partition_by
            .iter()
            .map(|p| p.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let rows = converter.convert_columns(&columns)?;
        Ok(rows.iter().map(|r| r.data().into()).collect())
    }

    fn concat(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        Ok(concat_batches(&self.input_schema, batches)?)
    }

    /// Emit the pending rows whose time is before `watermark`.
    fn emit(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        let (mut ready, mut ready_times, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for p in std::mem::take(&mut self.pending) {
            let off = self.offset;
            let before: BooleanArray =
                p.times.iter().map(|t| Some(t.is_some_and(|t| t.saturating_add(off) < watermark))).collect();
            match before.true_count() {
                0 => rest.push(p),
                n if n == p.rows.num_rows() => {
                    ready.push(p.rows);
                    ready_times.push(p.times);
                }
                _ => {
                    let after = datafusion_common::arrow::compute::not(&before)?;
                    ready.push(filter_record_batch(&p.rows, &before)?);
                    ready_times.push(filter(&p.times, &before)?.as_primitive::<Int64Type>().clone());
                    let times = filter(&p.times, &after)?.as_primitive::<Int64Type>().clone();
                    rest.push(Pending { rows: filter_record_batch(&p.rows, &after)?, times });
                }
            }
        }
        self.pending = rest;
        if !ready.is_empty() {
            let ready = self.concat(&ready)?;
            let times: Vec<&dyn Array> = ready_times.iter().map(|t| t as &dyn Array).collect();
            let times = concat(&times)?.as_primitive::<Int64Type>().clone();
            let keys = self.keys(&ready)?;
            // by partition, then time; arrival order among equals (a stable sort)
            let mut order: Vec<u32> = (0..ready.num_rows() as u32).collect();
            order.sort_by(|a, b| {
                let (a, b) = (*a as usize, *b as usize);
                keys[a].cmp(&keys[b]).then(times.value(a).cmp(&times.value(b)))
            });
            let mut emitted = Vec::new();
            let mut start = 0;
            while start < order.len() {
                let key = &keys[order[start] as usize];
                let end = start + order[start..].iter().take_while(|i| keys[**i as usize] == *key).count();
                let rows = take_record_batch(&ready, &UInt32Array::from(order[start..end].to_vec()))?;
                emitted.push(self.partition_rows(key, rows, watermark)?);
                start = end;
            }
            out.push(Message::Data(StreamBatch::new(concat_batches(&self.output_schema, &emitted)?)));
        }
        // a range's histories end when the watermark has moved a range past them
        if let OverFrame::Range(range) = self.frame {
            if self.swept == NO_WATERMARK || watermark.saturating_sub(self.swept) >= range {
                let cut = watermark.saturating_sub(self.offset).saturating_sub(range);
                let keys: Vec<Box<[u8]>> = self.history.keys().cloned().collect();
                for key in keys {
                    let Some(h) = self.history.remove(&key) else { continue };
                    let kept = self.cut(h, cut)?;
                    if kept.num_rows() > 0 {
                        self.history.insert(key, kept);
                    }
                }
                self.swept = watermark;
            }
        }
        Ok(())
    }

    /// The rows of `history` (in time order) from time `cut` on.
    fn cut(&self, history: RecordBatch, cut: Nanos) -> Result<RecordBatch> {
        let times = self.times(&history)?;
        let from = times.values().partition_point(|t| *t < cut);
        Ok(history.slice(from, history.num_rows() - from))
    }

    /// One partition's final rows (in time order) with their aggregates; its history moves on.
    fn partition_rows(&mut self, key: &[u8], rows: RecordBatch, watermark: Nanos) -> Result<RecordBatch> {
        let (combined, before) = match self.history.remove(key) {
            Some(h) => (self.concat(&[h.clone(), rows.clone()])?, h.num_rows()),
            None => (rows.clone(), 0),
        };
        let n = rows.num_rows();
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        if let (Some(running), OverFrame::Unbounded { range }) = (&mut self.running, self.frame) {
            let times = to_nanos(&self.time.evaluate(&rows)?.into_array(n)?)?;
            columns.extend(running.rows(key, &rows, &times, range)?);
        } else {
            for w in &self.windows {
                columns.push(w.evaluate(&combined)?.slice(before, n));
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?;
        let combined_rows = combined.num_rows();
        let kept = match self.frame {
            OverFrame::Unbounded { .. } => return Ok(batch),
            OverFrame::Rows(k) => {
                let len = combined.num_rows();
                let k = usize::try_from(k).unwrap_or(usize::MAX).min(len);
                combined.slice(len - k, k)
            }
            OverFrame::Range(range) => {
                let cut = watermark.saturating_sub(self.offset).saturating_sub(range);
                self.cut(combined, cut)?
            }
        };
        if kept.num_rows() > 0 {
            // a part of the batch just made: copied, so that it does not keep the rest alive
            let kept = match kept.num_rows() < combined_rows {
                true => take_record_batch(&kept, &UInt32Array::from_iter_values(0..kept.num_rows() as u32))?,
                false => kept,
            };
            self.history.insert(key.into(), kept);
        }
        Ok(batch)
    }

    /// The saved rows of `batch` split by partition, each in the order saved.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(Box<[u8]>, RecordBatch)>> {
        let keys = self.keys(batch)?;
        let mut rows: HashMap<&[u8], Vec<u32>> = HashMap::new();
        let mut order: Vec<&[u8]> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let list = rows.entry(k).or_insert_with(|| {
                order.push(k);
                Vec::new()
            });
            list.push(i as u32);
        }
        order
            .into_iter()
            .map(|k| Ok((k.into(), take_record_batch(batch, &UInt32Array::from(rows[k].clone()))?)))
            .collect()
    }
}

impl Operator for OverAggregateOp {
    fn name(&self) -> &'static str {
        "OverAggregate"
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let times = self.times(batch)?;
        let (mut late, mut null_time) = (0, 0);
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if times.is_null(i) {
                null_time += 1;
                dropped.null_time(i);
                keep.push(false);
                continue;
            }
            // (a row before the operator's watermark would precede rows already emitted)
            let wm = input.row_watermarks.as_ref().map_or(self.watermark, |w| w.value(i).max(self.watermark));
            let t = times.value(i).saturating_add(self.offset);
            if t < wm {
                late += 1;
                dropped.drop_row(i, || {
                    format!("late: its time {} is behind the watermark {}", show_time(t), show_time(wm))
                });
                keep.push(false);
                continue;
            }
            keep.push(true);
        }
        if late + null_time == 0 {
            self.pending.push(Pending { rows: batch.clone(), times });
        } else if late + null_time < batch.num_rows() as u64 {
            let keep = BooleanArray::from(keep);
            let times = filter(&times, &keep)?.as_primitive::<Int64Type>().clone();
            self.pending.push(Pending { rows: filter_record_batch(batch, &keep)?, times });
        }
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        self.emit(watermark, out)?;
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn state_size(&self) -> StateSize {
        let batches = self.pending.iter().map(|p| &p.rows).chain(self.history.values());
        let (mut rows, mut bytes) = (self.running.as_ref().map_or(0, |r| r.partitions() as u64), 0u64);
        for b in batches {
            rows += b.num_rows() as u64;
            bytes += b.get_array_memory_size() as u64;
        }
        StateSize { rows, bytes }
    }

    /// The pending rows and every partition's history, with the watermark.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let mut snapshot = OperatorSnapshot::with_meta(&Meta { watermark: self.watermark, swept: self.swept })?;
        if !self.pending.is_empty() {
            let pending: Vec<RecordBatch> = self.pending.iter().map(|p| p.rows.clone()).collect();
            snapshot.push("pending", self.concat(&pending)?);
        }
        if !self.history.is_empty() {
            let history: Vec<RecordBatch> = self.history.values().cloned().collect();
            snapshot.push("history", self.concat(&history)?);
        }
        if let Some(running) = self.running.as_mut().map(|r| r.save(&self.input_schema)).transpose()?.flatten() {
            snapshot.push("running", running);
        }
        Ok(snapshot)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        if snapshot.is_empty() {
            return Ok(());
        }
        let meta: Meta = snapshot.meta(self.name())?;
        (self.watermark, self.swept) = (meta.watermark, meta.swept);
        if let Some(rows) = snapshot.take("pending") {
            let times = self.times(&rows)?;
            self.pending = vec![Pending { rows, times }];
        }
        if let Some(history) = snapshot.take("history") {
            self.history = self.split(&history)?.into_iter().collect();
        }
        if let Some(saved) = snapshot.take("running") {
            let keys = self.keys(&saved)?;
            let running = self
                .running
                .as_mut()
                .ok_or_else(|| RuntimeError::Checkpoint("running aggregates saved for a bounded OVER frame".into()))?;
            running.restore(&saved, &self.input_schema, keys)?;
        }
        Ok(())
    }

    /// The pending rows and histories of the partitions this instance owns.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        let (mut meta, mut pending, mut history, mut running) = (None::<Meta>, Vec::new(), Vec::new(), Vec::new());
        for mut part in parts.into_iter().filter(|p| !p.is_empty()) {
            let m: Meta = part.meta(self.name())?;
            meta = Some(match meta {
                None => m,
                Some(a) => Meta { watermark: a.watermark.max(m.watermark), swept: a.swept.min(m.swept) },
            });
            for (name, list) in [("pending", &mut pending), ("history", &mut history), ("running", &mut running)] {
                let Some(batch) = part.take(name) else { continue };
                let keys = self
                    .partition_by
                    .iter()
                    .map(|p| p.evaluate(&batch).and_then(|v| v.into_array(batch.num_rows())))
                    .collect::<datafusion_common::Result<Vec<_>>>()?;
                let keep = match keys.is_empty() {
                    true => BooleanArray::from(vec![true; batch.num_rows()]),
                    false => BooleanArray::from(owned(&keys)?),
                };
                list.push(filter_record_batch(&batch, &keep)?);
            }
        }
        let Some(meta) = meta else { return Ok(OperatorSnapshot::empty()) };
        let mut snapshot = OperatorSnapshot::with_meta(&meta)?;
        for (name, list) in [("pending", pending), ("history", history), ("running", running)] {
            if let Some(first) = list.first() {
                snapshot.push(name, concat_batches(&first.schema(), &list)?);
            }
        }
        Ok(snapshot)
    }
}
