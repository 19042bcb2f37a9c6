//! A `GROUP BY` without a window: an updating result, emitted as a changelog.
//!
//! ```text
//!   per input batch
//!     rows ──keys──► group (a HashMap from key bytes to a slot)
//!       +I/+U rows: update_batch   -U/-D rows: retract_batch      (per group, per aggregate)
//!     then, per group the batch touched, in order of its first row in the batch:
//!       new group                       ──► +I new
//!       value changed                   ──► -U old, +U new
//!       value unchanged                 ──► nothing
//!       every row retracted (count = 0) ──► -D old, group freed
//!
//!   state TTL ([`KeyedState`]): a group untouched for `ttl` is forgotten without output, as
//!   in Flink; a later row for its key starts again with +I.
//! ```
//!
//! Groups hold DataFusion row accumulators (`Accumulator`), whose `evaluate` may be called
//! repeatedly. Over a changelog input they must retract: DataFusion's sliding accumulators
//! (SUM, COUNT, AVG, …) and weir's [`RetractMinMax`] do; others are refused when the operator
//! is built.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion_common::arrow::compute::{cast, take};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use datafusion_physical_expr::PhysicalExpr;
use weir_sql::StateTtl;

use crate::aggregate_state::{AggregateSpec, Aggregates};
use crate::error::{Result, RuntimeError};
use crate::keyed_state::KeyedState;
use crate::message::{Message, Nanos, RowKind, StreamBatch};
use crate::metrics::{Metrics, StateSize};
use crate::operator::Operator;
use crate::retract_min_max::RetractMinMax;

struct Group {
    key_values: Vec<ScalarValue>,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Inserts minus retractions seen.
    rows: i64,
    /// The aggregate values last emitted (`None`: nothing emitted yet).
    emitted: Option<Vec<ScalarValue>>,
}

/// The updating (non-windowed) aggregate operator.
pub struct UpdatingAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Aggregates,
    retracting: bool,
    converter: Option<RowConverter>,
    groups: KeyedState<Group>,
    output_schema: SchemaRef,
    metrics: Arc<Metrics>,
}

impl UpdatingAggregateOp {
    /// Build the operator. `output_schema` is the key columns then the aggregate columns;
    /// with `retracting`, every aggregate must be able to take values back.
    pub fn new(
        key_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<AggregateSpec>,
        retracting: bool,
        ttl: Option<StateTtl>,
        output_schema: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let key_fields = &output_schema.fields()[..key_exprs.len()];
        let converter = if key_fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(key_fields.iter().map(|f| SortField::new(f.data_type().clone())).collect())?)
        };
        let op = Self {
            key_exprs,
            aggregates: Aggregates::new(Arc::new(datafusion_common::arrow::datatypes::Schema::empty()), aggregates),
            retracting,
            converter,
            groups: KeyedState::new(ttl),
            output_schema,
            metrics,
        };
        op.accumulators()?;
        Ok(op)
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        let mut out = Vec::new();
        for spec in self.aggregates.specs() {
            let f = &spec.function;
            let name = f.fun().name();
            if !self.retracting {
                out.push(f.create_accumulator()?);
            } else if matches!(name, "min" | "max") {
                // (DISTINCT does not change a minimum or maximum)
                let arg = f.field();
                out.push(Box::new(RetractMinMax::new(arg.data_type(), name == "max")?));
            } else {
                // only aggregates whose retraction takes back exactly the given values: others
                // (e.g. ARRAY_AGG) retract their oldest values, as a sliding window frame does
                let retracts_any_value = match name {
                    "count" => true,
                    "sum" | "avg" | "mean" | "var" | "var_samp" | "var_pop" | "stddev" | "stddev_samp"
                    | "stddev_pop" => !f.is_distinct(),
                    _ => false,
                };
                match f.create_sliding_accumulator() {
                    Ok(acc) if retracts_any_value => out.push(acc),
                    _ => {
                        return Err(RuntimeError::Source(format!(
                            "not supported yet: {}{} over an updating result (it cannot take retracted rows back)",
                            name.to_uppercase(),
                            if f.is_distinct() { " DISTINCT" } else { "" }
                        )))
                    }
                }
            }
        }
        Ok(out)
    }

    /// The slot of each row's group, creating groups as needed.
    fn slots(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let encoded = match &self.converter {
            Some(c) => Some(c.convert_columns(keys)?),
            None => None,
        };
        let mut slots = Vec::with_capacity(rows);
        for i in 0..rows {
            let key: &[u8] = encoded.as_ref().map(|e| e.row(i).data()).unwrap_or(&[]);
            let slot = match self.groups.slot(key) {
                Some(s) => s,
                None => {
                    let key_values = keys
                        .iter()
                        .map(|a| ScalarValue::try_from_array(a, i))
                        .collect::<datafusion_common::Result<_>>()?;
                    let group = Group { key_values, accumulators: self.accumulators()?, rows: 0, emitted: None };
                    self.groups.insert(key, group)
                }
            };
            slots.push(slot);
        }
        Ok(slots)
    }

    fn emit(&mut self, touched: &[usize], out: &mut Vec<Message>) -> Result<()> {
        let mut kinds = Vec::new();
        let mut rows: Vec<(usize, Vec<ScalarValue>)> = Vec::new();
        for &slot in touched {
            let Some(g) = self.groups.get_mut(slot) else { continue };
            if g.rows <= 0 {
                if let Some(old) = g.emitted.take() {
                    kinds.push(RowKind::Delete);
                    rows.push((slot, old));
                }
                continue;
            }
            let new = g.accumulators.iter_mut().map(|a| a.evaluate()).collect::<datafusion_common::Result<Vec<_>>>()?;
            match g.emitted.replace(new.clone()) {
                None => {
                    kinds.push(RowKind::Insert);
                    rows.push((slot, new));
                }
                Some(old) if old == new => {}
                Some(old) => {
                    kinds.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                    rows.push((slot, old));
                    rows.push((slot, new));
                }
            }
        }
        if !rows.is_empty() {
            let num_keys = self.key_exprs.len();
            let mut columns = Vec::with_capacity(self.output_schema.fields().len());
            for (c, field) in self.output_schema.fields().iter().enumerate() {
                let values = rows.iter().map(|(slot, values)| {
                    if c < num_keys {
                        self.groups.get(*slot).map(|g| g.key_values[c].clone()).unwrap_or(ScalarValue::Null)
                    } else {
                        values[c - num_keys].clone()
                    }
                });
                let array = ScalarValue::iter_to_array(values)?;
                let array =
                    if array.data_type() == field.data_type() { array } else { cast(&array, field.data_type())? };
                columns.push(array);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
            let batch = RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?;
            out.push(Message::Data(StreamBatch::changelog(batch, &kinds)));
        }
        for &slot in touched {
            if self.groups.get(slot).is_some_and(|g| g.rows <= 0) {
                self.groups.remove(slot);
            }
        }
        Ok(())
    }
}

impl Operator for UpdatingAggregateOp {
    fn name(&self) -> &'static str {
        "UpdatingAggregate"
    }

    /// Groups, with their keys, accumulators and last emitted row.
    fn state_size(&self) -> StateSize {
        let bytes: usize = self
            .groups
            .values()
            .map(|g| {
                let scalars = g.key_values.iter().chain(g.emitted.iter().flatten());
                scalars.map(ScalarValue::size).sum::<usize>() + g.accumulators.iter().map(|a| a.size()).sum::<usize>()
            })
            .sum();
        StateSize { rows: self.groups.len() as u64, bytes: bytes as u64 }
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = input.batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        if !self.retracting && input.has_retractions() {
            return Err(RuntimeError::Internal("an append-only aggregate received retractions".into()));
        }
        let expired = self.groups.before_batch();
        Metrics::add(&self.metrics.expired_keys, expired);
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(&input.batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let agg_input = self.aggregates.input(Vec::new(), &input.batch)?;
        let slots = self.slots(&keys, n)?;
        // rows grouped by slot, each group's rows in arrival order
        let mut order: Vec<(usize, u32)> = slots.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        order.sort_unstable();
        let mut touched: Vec<(u32, usize)> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let slot = order[i].0;
            let j = order[i..].iter().position(|o| o.0 != slot).map(|p| i + p).unwrap_or(order.len());
            touched.push((order[i].1, slot));
            // in arrival order; a retraction of a row the group does not hold (its state expired)
            // is ignored, as Flink does
            let mut held = self.groups.get(slot).map(|g| g.rows).unwrap_or(0);
            let (mut adds, mut retracts) = (Vec::new(), Vec::new());
            for &(_, r) in &order[i..j] {
                if !input.kind(r as usize).is_retraction() {
                    held += 1;
                    adds.push(r);
                } else if held > 0 {
                    held -= 1;
                    retracts.push(r);
                }
            }
            self.groups.touch(slot);
            let Some(group) = self.groups.get_mut(slot) else {
                return Err(RuntimeError::Internal(format!("group slot {slot} is empty")));
            };
            group.rows += adds.len() as i64 - retracts.len() as i64;
            let (adds, retracts) = (UInt32Array::from(adds), UInt32Array::from(retracts));
            for (a, acc) in group.accumulators.iter_mut().enumerate() {
                for (rows, add) in [(&adds, true), (&retracts, false)] {
                    let picked = match agg_input.filters[a].as_ref() {
                        None => rows.clone(),
                        Some(f) => rows
                            .values()
                            .iter()
                            .copied()
                            .filter(|r| f.is_valid(*r as usize) && f.value(*r as usize))
                            .collect(),
                    };
                    if picked.is_empty() {
                        continue;
                    }
                    let values = agg_input.args[a]
                        .iter()
                        .map(|c| take(c.as_ref(), &picked, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if add {
                        acc.update_batch(&values)?;
                    } else {
                        acc.retract_batch(&values)?;
                    }
                }
            }
            i = j;
        }
        touched.sort_unstable();
        let touched: Vec<usize> = touched.into_iter().map(|(_, s)| s).collect();
        self.emit(&touched, out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        let expired = self.groups.on_watermark(watermark);
        Metrics::add(&self.metrics.expired_keys, expired);
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
