//! Tumbling-window aggregation, emitted once per window when the watermark passes its end.
//!
//! ```text
//!            per batch                                   on Watermark(w)
//!  rows ──► evaluate group/agg args (vectorised)        fire every open window with end <= w,
//!       ──► drop (row, window) pairs with               in window order: emit its groups and
//!           window_end <= row watermark  (late)         aggregate values, then free its state
//!       ──► split rows by window
//!       ──► per window: GroupValues::intern(keys),
//!           GroupsAccumulator::update_batch(args)
//!
//!  state: BTreeMap<(window_end, window_start), WindowState>   — open windows only
//!         WindowState = DataFusion GroupValues (keys → group ids) + one GroupsAccumulator per
//!                       aggregate, so memory is bounded by the open windows' groups
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion_common::arrow::compute::{cast, take};
use datafusion_common::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::ScalarValue;
use datafusion_expr::{EmitTo, GroupsAccumulator};
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion_physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion_physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::metrics::Metrics;
use crate::operator::Operator;

/// One aggregate: the function, its argument expressions and its optional `FILTER (WHERE …)`.
pub struct AggregateSpec {
    /// The physical aggregate (creates accumulators).
    pub function: Arc<AggregateFunctionExpr>,
    /// Argument expressions.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// Where the window bounds are among the group expressions.
pub struct WindowLayout {
    /// Index of the window start among the group expressions.
    pub start: Option<usize>,
    /// Index of the window end among the group expressions.
    pub end: Option<usize>,
    /// Window length in nanoseconds.
    pub size_nanos: Nanos,
}

struct WindowState {
    start: Nanos,
    end: Nanos,
    groups: Option<Box<dyn GroupValues>>,
    num_groups: usize,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// The window aggregate operator.
pub struct WindowAggregateOp {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    aggregates: Vec<AggregateSpec>,
    key_schema: SchemaRef,
    output_schema: SchemaRef,
    windows: BTreeMap<(Nanos, Nanos), WindowState>,
    watermark: Nanos,
    metrics: Arc<Metrics>,
    group_ids: Vec<usize>,
}

impl WindowAggregateOp {
    /// Build the operator. `output_schema` is group columns then aggregate columns; the key
    /// schema is derived from it (group columns that are not window bounds).
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        layout: WindowLayout,
        aggregates: Vec<AggregateSpec>,
        output_schema: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        if layout.start.is_none() && layout.end.is_none() {
            return Err(RuntimeError::Internal("window aggregate without window bounds".into()));
        }
        let key_fields: Vec<_> = (0..group_exprs.len())
            .filter(|i| Some(*i) != layout.start && Some(*i) != layout.end)
            .map(|i| output_schema.field(i).clone())
            .collect();
        let key_schema = Arc::new(datafusion_common::arrow::datatypes::Schema::new(key_fields));
        Ok(Self {
            group_exprs,
            layout,
            aggregates,
            key_schema,
            output_schema,
            windows: BTreeMap::new(),
            watermark: NO_WATERMARK,
            metrics,
            group_ids: Vec::new(),
        })
    }

    fn new_window(&self, start: Nanos, end: Nanos) -> Result<WindowState> {
        let groups = if self.key_schema.fields().is_empty() {
            None
        } else {
            Some(new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?)
        };
        let accumulators = self
            .aggregates
            .iter()
            .map(|a| -> Result<Box<dyn GroupsAccumulator>> {
                if a.function.groups_accumulator_supported() {
                    Ok(a.function.create_groups_accumulator()?)
                } else {
                    let f = Arc::clone(&a.function);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || f.create_accumulator())))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WindowState { start, end, groups, num_groups: 0, accumulators })
    }

    /// Window bounds of every row, in nanoseconds.
    fn bounds(&self, groups: &[ArrayRef]) -> Result<(Int64Array, Int64Array)> {
        let size = self.layout.size_nanos;
        match (self.layout.start, self.layout.end) {
            (Some(s), Some(e)) => Ok((to_nanos(&groups[s])?, to_nanos(&groups[e])?)),
            (Some(s), None) => {
                let start = to_nanos(&groups[s])?;
                let end = start.unary(|v| v.saturating_add(size));
                Ok((start, end))
            }
            (None, Some(e)) => {
                let end = to_nanos(&groups[e])?;
                let start = end.unary(|v| v.saturating_sub(size));
                Ok((start, end))
            }
            (None, None) => Err(RuntimeError::Internal("window aggregate without window bounds".into())),
        }
    }

    fn fire_until(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let window = entry.remove();
            let batch = self.emit(window)?;
            Metrics::add(&self.metrics.windows_fired, 1);
            if batch.num_rows() > 0 {
                out.push(Message::Data(StreamBatch::new(batch)));
            }
        }
        self.metrics.open_windows.store(self.windows.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn emit(&self, mut w: WindowState) -> Result<RecordBatch> {
        let n = w.num_groups;
        let mut keys = match &mut w.groups {
            Some(g) => g.emit(EmitTo::All)?.into_iter(),
            None => Vec::new().into_iter(),
        };
        let mut columns = Vec::with_capacity(self.output_schema.fields().len());
        for i in 0..self.group_exprs.len() {
            let bound = if Some(i) == self.layout.start {
                Some(w.start)
            } else if Some(i) == self.layout.end {
                Some(w.end)
            } else {
                None
            };
            match bound {
                Some(ns) => {
                    let t = self.output_schema.field(i).data_type();
                    columns.push(timestamp_scalar(t, ns)?.to_array_of_size(n)?);
                }
                None => columns.push(keys.next().ok_or_else(|| RuntimeError::Internal("missing group column".into()))?),
            }
        }
        for acc in &mut w.accumulators {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }

    fn accumulate(
        &mut self,
        key: (Nanos, Nanos),
        rows: Option<&UInt32Array>,
        batch_rows: usize,
        keys: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<BooleanArray>],
    ) -> Result<()> {
        let pick = |a: &ArrayRef| -> Result<ArrayRef> {
            match rows {
                Some(r) => Ok(take(a.as_ref(), r, None)?),
                None => Ok(Arc::clone(a)),
            }
        };
        let keys: Vec<ArrayRef> = keys.iter().map(pick).collect::<Result<_>>()?;
        let m = rows.map(|r| r.len()).unwrap_or(batch_rows);
        if !self.windows.contains_key(&key) {
            let w = self.new_window(key.1, key.0)?;
            self.windows.insert(key, w);
            self.metrics.open_windows.store(self.windows.len() as u64, Ordering::Relaxed);
        }
        let mut group_ids = std::mem::take(&mut self.group_ids);
        let Some(window) = self.windows.get_mut(&key) else {
            return Err(RuntimeError::Internal("window vanished".into()));
        };
        match &mut window.groups {
            Some(g) => {
                g.intern(&keys, &mut group_ids)?;
                window.num_groups = g.len();
            }
            None => {
                group_ids.clear();
                group_ids.resize(m, 0);
                window.num_groups = 1;
            }
        }
        for ((acc, a), f) in window.accumulators.iter_mut().zip(args).zip(filters) {
            let values: Vec<ArrayRef> = a.iter().map(pick).collect::<Result<_>>()?;
            let filter = match (f, rows) {
                (Some(f), Some(r)) => Some(take(f, r, None)?.as_boolean().clone()),
                (Some(f), None) => Some(f.clone()),
                (None, _) => None,
            };
            acc.update_batch(&values, &group_ids, filter.as_ref(), window.num_groups)?;
        }
        self.group_ids = group_ids;
        Ok(())
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

    fn process_batch(&mut self, input: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let groups = self
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let (starts, ends) = self.bounds(&groups)?;
        let keys: Vec<ArrayRef> = groups
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.layout.start && Some(*i) != self.layout.end)
            .map(|(_, a)| Arc::clone(a))
            .collect();
        let args = self
            .aggregates
            .iter()
            .map(|a| a.args.iter().map(|e| e.evaluate(batch).and_then(|v| v.into_array(n))).collect())
            .collect::<datafusion_common::Result<Vec<Vec<_>>>>()?;
        let filters = self
            .aggregates
            .iter()
            .map(|a| match &a.filter {
                Some(f) => {
                    let v = f.evaluate(batch)?.into_array(n)?;
                    Ok(Some(v.as_boolean().clone()))
                }
                None => Ok(None),
            })
            .collect::<datafusion_common::Result<Vec<_>>>()?;

        // Assign rows to windows; a batch usually touches one or two windows, so a short list
        // searched from the last hit beats hashing.
        let mut buckets: Vec<((Nanos, Nanos), Vec<u32>)> = Vec::new();
        let mut last = 0usize;
        let (mut late, mut null_time) = (0u64, 0u64);
        let row_wm = input.row_watermarks.as_deref();
        for i in 0..n {
            if starts.is_null(i) || ends.is_null(i) {
                null_time += 1;
                continue;
            }
            let (s, e) = (starts.value(i), ends.value(i));
            let wm = row_wm.map(|w| w.value(i)).unwrap_or(NO_WATERMARK).max(self.watermark);
            if e <= wm {
                late += 1;
                continue;
            }
            let key = (e, s);
            if buckets.get(last).map(|b| b.0) != Some(key) {
                match buckets.iter().position(|b| b.0 == key) {
                    Some(p) => last = p,
                    None => {
                        buckets.push((key, Vec::new()));
                        last = buckets.len() - 1;
                    }
                }
            }
            buckets[last].1.push(i as u32);
        }
        if late > 0 {
            Metrics::add(&self.metrics.late_rows, late);
        }
        if null_time > 0 {
            Metrics::add(&self.metrics.null_time_rows, null_time);
        }
        for (key, rows) in buckets {
            if rows.len() == n {
                self.accumulate(key, None, n, &keys, &args, &filters)?;
            } else {
                let rows = UInt32Array::from(rows);
                self.accumulate(key, Some(&rows), n, &keys, &args, &filters)?;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire_until(watermark, out)?;
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
    use weir_sql::{Planned, Planner};

    use crate::message::{Message, StreamBatch};
    use crate::metrics::Metrics;
    use crate::operator::Operator;
    use crate::pipeline::build_operators;
    use crate::source::WatermarkGenerator;

    const SEC: i64 = 1_000_000_000;

    /// The operators of `SELECT k, COUNT(*), SUM(v) … GROUP BY TUMBLE(ts, 10 s), k`.
    fn operators(metrics: &Arc<Metrics>) -> Vec<Box<dyn Operator>> {
        let mut planner = Planner::new();
        let planned = planner
            .plan_script(
                "CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
                 WITH (connector = 'file', path = 'x.csv');
                 SELECT k, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k;",
            )
            .unwrap();
        let Some(Planned::Query(plan)) = planned.last() else { panic!("query expected") };
        build_operators(plan, metrics).unwrap()
    }

    fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.2 * 1000))),
            ],
        )
        .unwrap()
    }

    /// Push one source batch (with its watermark) through the operators; return emitted rows
    /// as (k, n, total).
    fn push(
        ops: &mut [Box<dyn Operator>],
        gen: &mut WatermarkGenerator,
        rows: &[(&str, i64, i64)],
    ) -> Vec<(String, i64, i64)> {
        let b = batch(rows);
        let times = Int64Array::from_iter_values(rows.iter().map(|r| r.2 * SEC));
        let mut msgs =
            vec![Message::Data(StreamBatch { batch: b, row_watermarks: Some(Arc::new(gen.observe(&times))) })];
        if let Some(w) = gen.advance() {
            msgs.push(Message::Watermark(w));
        }
        for op in ops.iter_mut() {
            let mut next = Vec::new();
            for m in msgs {
                match m {
                    Message::Data(b) => op.process_batch(b, &mut next).unwrap(),
                    Message::Watermark(w) => op.on_watermark(w, &mut next).unwrap(),
                    Message::EndOfStream => next.push(Message::EndOfStream),
                }
            }
            msgs = next;
        }
        let mut out = Vec::new();
        for m in msgs {
            if let Message::Data(b) = m {
                let b = b.batch;
                for i in 0..b.num_rows() {
                    out.push((
                        b.column(0).as_string::<i32>().value(i).to_string(),
                        b.column(1).as_primitive::<Int64Type>().value(i),
                        b.column(2).as_primitive::<Int64Type>().value(i),
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn a_window_fires_exactly_when_the_watermark_reaches_its_end_and_frees_its_state() {
        let metrics = Arc::new(Metrics::default());
        let mut ops = operators(&metrics);
        let mut gen = WatermarkGenerator::new(0);
        assert!(push(&mut ops, &mut gen, &[("a", 1, 1), ("b", 2, 5), ("a", 3, 9)]).is_empty());
        assert_eq!(Metrics::get(&metrics.open_windows), 1);
        // 9.999 s: the watermark is below the end (10 s), nothing fires
        assert!(push(&mut ops, &mut gen, &[("a", 4, 8)]).is_empty());
        // 10 s reaches the end of [0 s, 10 s): it fires once, with every accepted row
        let fired = push(&mut ops, &mut gen, &[("c", 5, 10)]);
        assert_eq!(fired, vec![("a".into(), 3, 8), ("b".into(), 1, 2)]);
        assert_eq!(Metrics::get(&metrics.open_windows), 1, "only [10 s, 20 s) is open now");
        // a row for the closed window is late: counted, not emitted again
        assert!(push(&mut ops, &mut gen, &[("a", 100, 3)]).is_empty());
        assert_eq!(Metrics::get(&metrics.late_rows), 1);
        let fired = push(&mut ops, &mut gen, &[("c", 6, 25)]);
        assert_eq!(fired, vec![("c".into(), 1, 5)]);
        assert_eq!(Metrics::get(&metrics.windows_fired), 2);
    }
}
