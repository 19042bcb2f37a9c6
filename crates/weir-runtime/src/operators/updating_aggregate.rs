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

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, UInt32Array};
use datafusion_common::arrow::compute::{cast, interleave, take};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::StateTtl;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, RowKind, StreamBatch};
use crate::operator::Operator;
use crate::state::aggregate_state::{AggregateSpec, Aggregates};
use crate::state::checkpoint::OperatorSnapshot;
use crate::state::keyed_state::KeyedState;
use crate::state::retract_min_max::RetractMinMax;

/// One group; its key is the row-encoded key its entry is indexed by.
struct Group {
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Inserts minus retractions seen.
    rows: i64,
    /// The aggregate values last emitted, row-encoded (`None`: nothing emitted yet).
    emitted: Option<Box<[u8]>>,
}

/// The updating (non-windowed) aggregate operator.
pub struct UpdatingAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Aggregates,
    retracting: bool,
    converter: Option<RowConverter>,
    /// Encodes the aggregate columns' values (each group's last emitted values).
    values: RowConverter,
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
        let values = RowConverter::new(
            output_schema.fields()[key_fields.len()..].iter().map(|f| SortField::new(f.data_type().clone())).collect(),
        )?;
        let op = Self {
            values,
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
                    let group = Group { accumulators: self.accumulators()?, rows: 0, emitted: None };
                    self.groups.insert(key, group)
                }
            };
            slots.push(slot);
        }
        Ok(slots)
    }

    /// The current values of groups `live`, one array per aggregate column.
    fn evaluate(&mut self, live: &[usize]) -> Result<Vec<ArrayRef>> {
        let fields = &self.output_schema.fields()[self.key_exprs.len()..];
        let mut values: Vec<Vec<ScalarValue>> = fields.iter().map(|_| Vec::with_capacity(live.len())).collect();
        for &slot in live {
            let Some(g) = self.groups.get_mut(slot) else {
                return Err(RuntimeError::Internal(format!("group slot {slot} is empty")));
            };
            for (column, acc) in values.iter_mut().zip(g.accumulators.iter_mut()) {
                column.push(acc.evaluate()?);
            }
        }
        let mut columns = Vec::with_capacity(fields.len());
        for (column, field) in values.into_iter().zip(fields.iter()) {
            let array = if column.is_empty() {
                datafusion_common::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(column)?
            };
            columns.push(if array.data_type() == field.data_type() { array } else { cast(&array, field.data_type())? });
        }
        Ok(columns)
    }

    fn emit(&mut self, touched: &[usize], out: &mut Vec<Message>) -> Result<()> {
        let live: Vec<usize> =
            touched.iter().copied().filter(|s| self.groups.get(*s).is_some_and(|g| g.rows > 0)).collect();
        let current = self.evaluate(&live)?;
        let encoded = self.values.convert_columns(&current)?;
        let mut kinds = Vec::new();
        // per output row: its group's slot, and where its values are: (0, row of `current`)
        // or (1, index in `old`), the values emitted before
        let mut slots = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut old: Vec<Box<[u8]>> = Vec::new();
        let mut next = 0;
        for &slot in touched {
            let Some(g) = self.groups.get_mut(slot) else { continue };
            if g.rows <= 0 {
                if let Some(before) = g.emitted.take() {
                    kinds.push(RowKind::Delete);
                    slots.push(slot);
                    picks.push((1, old.len()));
                    old.push(before);
                }
                continue;
            }
            // without aggregates (`SELECT k … GROUP BY k`) a group's values are empty: the
            // encoding has no rows to index
            let now: &[u8] = if current.is_empty() { &[] } else { encoded.row(next).data() };
            let at = next;
            next += 1;
            match &g.emitted {
                None => kinds.push(RowKind::Insert),
                Some(before) if before[..] == *now => continue,
                Some(_) => {
                    kinds.extend([RowKind::UpdateBefore, RowKind::UpdateAfter]);
                    slots.push(slot);
                    picks.push((1, old.len()));
                    old.extend(g.emitted.take());
                }
            }
            g.emitted = Some(now.into());
            slots.push(slot);
            picks.push((0, at));
        }
        if !kinds.is_empty() {
            let mut columns = Vec::with_capacity(self.output_schema.fields().len());
            if let Some(converter) = &self.converter {
                let parser = converter.parser();
                let keys = slots.iter().map(|s| self.groups.key(*s).map(|k| parser.parse(k)));
                let keys = keys
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| RuntimeError::Internal("group slot is empty".into()))?;
                columns.extend(converter.convert_rows(keys)?);
            }
            let parser = self.values.parser();
            let before = self.values.convert_rows(old.iter().map(|r| parser.parse(r)))?;
            for (now, before) in current.iter().zip(&before) {
                columns.push(interleave(&[now.as_ref(), before.as_ref()], &picks)?);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(kinds.len()));
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
            .map(|g| g.emitted.as_ref().map_or(0, |e| e.len()) + g.accumulators.iter().map(|a| a.size()).sum::<usize>())
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
        // every group's rows to add then its rows to take back, each in arrival order, one
        // group after another: an aggregate's arguments are then gathered once for the whole
        // batch and each group gets a slice of them
        let mut sequence: Vec<u32> = Vec::with_capacity(n);
        // (slot, rows to add, rows to take back)
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        let mut retracts: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let slot = order[i].0;
            let j = order[i..].iter().position(|o| o.0 != slot).map(|p| i + p).unwrap_or(order.len());
            touched.push((order[i].1, slot));
            // in arrival order; a retraction of a row the group does not hold (its state expired)
            // is ignored, as Flink does
            let mut held = self.groups.get(slot).map(|g| g.rows).unwrap_or(0);
            let before = sequence.len();
            retracts.clear();
            for &(_, r) in &order[i..j] {
                if !input.kind(r as usize).is_retraction() {
                    held += 1;
                    sequence.push(r);
                } else if held > 0 {
                    held -= 1;
                    retracts.push(r);
                }
            }
            let adds = sequence.len() - before;
            sequence.extend_from_slice(&retracts);
            spans.push((slot, adds, retracts.len()));
            self.groups.touch(slot);
            let Some(group) = self.groups.get_mut(slot) else {
                return Err(RuntimeError::Internal(format!("group slot {slot} is empty")));
            };
            group.rows += adds as i64 - retracts.len() as i64;
            i = j;
        }
        let all_rows = UInt32Array::from(sequence.clone());
        for (a, args) in agg_input.args.iter().enumerate() {
            // the rows this aggregate takes (those its FILTER keeps), and how many of each
            // group's adds and retractions they are
            let (picked, kept): (UInt32Array, Option<Vec<(usize, usize)>>) = match agg_input.filters[a].as_ref() {
                None => (all_rows.clone(), None),
                Some(f) => {
                    let mut picked: Vec<u32> = Vec::with_capacity(sequence.len());
                    let mut kept = Vec::with_capacity(spans.len());
                    let mut at = 0;
                    for &(_, adds, takes) in &spans {
                        let mut keep = |rows: &[u32]| {
                            let before = picked.len();
                            picked.extend(rows.iter().filter(|r| f.is_valid(**r as usize) && f.value(**r as usize)));
                            picked.len() - before
                        };
                        kept.push((keep(&sequence[at..at + adds]), keep(&sequence[at + adds..at + adds + takes])));
                        at += adds + takes;
                    }
                    (UInt32Array::from(picked), Some(kept))
                }
            };
            if picked.is_empty() {
                continue;
            }
            let values =
                args.iter().map(|c| take(c.as_ref(), &picked, None)).collect::<std::result::Result<Vec<_>, _>>()?;
            let mut at = 0;
            for (g, &(slot, adds, takes)) in spans.iter().enumerate() {
                let (adds, takes) = kept.as_ref().map_or((adds, takes), |k| k[g]);
                if adds + takes == 0 {
                    continue;
                }
                let Some(acc) = self.groups.get_mut(slot).and_then(|group| group.accumulators.get_mut(a)) else {
                    return Err(RuntimeError::Internal(format!("group slot {slot} is empty")));
                };
                if adds > 0 {
                    acc.update_batch(&values.iter().map(|v| v.slice(at, adds)).collect::<Vec<_>>())?;
                }
                if takes > 0 {
                    acc.retract_batch(&values.iter().map(|v| v.slice(at + adds, takes)).collect::<Vec<_>>())?;
                }
                at += adds + takes;
            }
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

    /// Every group: its key, TTL clock, row count, last emitted values and accumulator states
    /// (each accumulator is rebuilt from its state, which reading it consumed).
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        if self.retracting
            && self.aggregates.specs().iter().any(|s| s.function.is_distinct() && s.function.fun().name() == "count")
        {
            return Err(RuntimeError::Unsupported(
                "checkpoints are not supported yet for COUNT(DISTINCT …) over an updating result (its saved state would lose how often each value was seen)".into(),
            ));
        }
        let mut snapshot = OperatorSnapshot::with_meta(&self.groups.clocks())?;
        let mut fresh = (0..self.groups.len()).map(|_| self.accumulators()).collect::<Result<Vec<_>>>()?;
        let (num_keys, num_aggs) = (self.key_exprs.len(), self.aggregates.specs().len());
        let mut cols = GroupColumns::default();
        // (0, index in `emitted`) or (1, 0): a null
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut emitted: Vec<Box<[u8]>> = Vec::new();
        let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![Vec::new(); num_aggs];
        for (key, touched, pending, g) in self.groups.entries_mut() {
            cols.key.push(key.to_vec());
            cols.touched.push(touched);
            cols.pending.push(pending);
            cols.rows.push(g.rows);
            cols.emitted.push(g.emitted.is_some());
            match &g.emitted {
                Some(e) => {
                    picks.push((0, emitted.len()));
                    emitted.push(e.clone());
                }
                None => picks.push((1, 0)),
            }
            let mut rebuilt = fresh.pop().ok_or_else(|| RuntimeError::Internal("accumulators".into()))?;
            for (a, (acc, new)) in g.accumulators.iter_mut().zip(rebuilt.iter_mut()).enumerate() {
                let state = acc.state()?;
                let arrays = state.iter().map(|v| v.to_array()).collect::<datafusion_common::Result<Vec<_>>>()?;
                new.merge_batch(&arrays)?;
                if states[a].len() < state.len() {
                    states[a].resize(state.len(), Vec::new());
                }
                for (j, v) in state.into_iter().enumerate() {
                    states[a][j].push(v);
                }
            }
            g.accumulators = rebuilt;
        }
        if cols.key.is_empty() {
            return Ok(snapshot);
        }
        let mut fields = vec![
            Field::new("key", DataType::Binary, false),
            Field::new("touched", DataType::Int64, false),
            Field::new("pending", DataType::Boolean, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("emitted", DataType::Boolean, false),
        ];
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(&cols.key)),
            Arc::new(Int64Array::from(cols.touched)),
            Arc::new(BooleanArray::from(cols.pending)),
            Arc::new(Int64Array::from(cols.rows)),
            Arc::new(BooleanArray::from(cols.emitted)),
        ];
        let mut saved: Vec<(String, ArrayRef)> = Vec::new();
        if let Some(converter) = &self.converter {
            let parser = converter.parser();
            let keys = converter.convert_rows(cols.key.iter().map(|k| parser.parse(k)))?;
            saved.extend(keys.into_iter().enumerate().map(|(i, a)| (format!("k{i}"), a)));
        }
        let parser = self.values.parser();
        let values = self.values.convert_rows(emitted.iter().map(|r| parser.parse(r)))?;
        for (i, (v, field)) in values.iter().zip(&self.output_schema.fields()[num_keys..]).enumerate() {
            let null = datafusion_common::arrow::array::new_null_array(field.data_type(), 1);
            saved.push((format!("e{i}"), interleave(&[v.as_ref(), null.as_ref()], &picks)?));
        }
        for (name, array) in saved {
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let named = states
            .into_iter()
            .enumerate()
            .flat_map(|(a, s)| s.into_iter().enumerate().map(move |(j, v)| (format!("s{a}_{j}"), v)));
        for (name, values) in named {
            let array = ScalarValue::iter_to_array(values)?;
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        snapshot.push("groups", RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?);
        Ok(snapshot)
    }

    /// The groups whose keys this instance owns; the clocks of any (they agree).
    fn rescale(
        &self,
        parts: Vec<OperatorSnapshot>,
        owned: &crate::state::checkpoint::KeyFilter<'_>,
    ) -> Result<OperatorSnapshot> {
        let mut clocks: Option<(Nanos, Nanos)> = None;
        let mut groups = Vec::new();
        for mut part in parts.into_iter().filter(|p| !p.is_empty()) {
            let (w, s): (Nanos, Nanos) = part.meta(self.name())?;
            clocks = Some(clocks.map_or((w, s), |(a, b)| (a.max(w), b.max(s))));
            if let Some(batch) = part.take("groups") {
                let schema = batch.schema();
                let keys = (0..self.key_exprs.len())
                    .map(|i| schema.index_of(&format!("k{i}")))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                groups.push(crate::state::checkpoint::owned_rows(&batch, &keys, owned)?);
            }
        }
        let Some(clocks) = clocks else { return Ok(OperatorSnapshot::empty()) };
        let mut snapshot = OperatorSnapshot::with_meta(&clocks)?;
        if let Some(batch) = crate::state::checkpoint::concat_saved(&groups)? {
            snapshot.push("groups", batch);
        }
        Ok(snapshot)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        self.groups.restore_clocks(snapshot.meta(self.name())?);
        let Some(batch) = snapshot.take("groups") else { return Ok(()) };
        let (num_keys, num_aggs) = (self.key_exprs.len(), self.aggregates.specs().len());
        let bad = || RuntimeError::Checkpoint("the saved groups of an updating aggregate are not valid".into());
        let column = |name: &str| batch.column_by_name(name).ok_or_else(bad);
        let key = column("key")?.as_binary_opt::<i32>().ok_or_else(bad)?.clone();
        let touched = column("touched")?.as_primitive_opt::<Int64Type>().ok_or_else(bad)?.clone();
        let pending = column("pending")?.as_boolean_opt().ok_or_else(bad)?.clone();
        let rows = column("rows")?.as_primitive_opt::<Int64Type>().ok_or_else(bad)?.clone();
        let emitted = column("emitted")?.as_boolean_opt().ok_or_else(bad)?.clone();
        let values = self.output_schema.fields()[num_keys..]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let a = column(&format!("e{i}"))?;
                Ok(if a.data_type() == f.data_type() { Arc::clone(a) } else { cast(a, f.data_type())? })
            })
            .collect::<Result<Vec<_>>>()?;
        let values = self.values.convert_columns(&values)?;
        let states: Vec<Vec<ArrayRef>> = (0..num_aggs)
            .map(|a| (0..).map_while(|j| batch.column_by_name(&format!("s{a}_{j}")).cloned()).collect::<Vec<_>>())
            .collect();
        for r in 0..batch.num_rows() {
            let mut accumulators = self.accumulators()?;
            for (acc, state) in accumulators.iter_mut().zip(&states) {
                let slices: Vec<ArrayRef> = state.iter().map(|a| a.slice(r, 1)).collect();
                acc.merge_batch(&slices)?;
            }
            let last = emitted.value(r).then(|| values.row(r).data().into());
            let group = Group { accumulators, rows: rows.value(r), emitted: last };
            self.groups.restore_entry(key.value(r), touched.value(r), pending.value(r), group);
        }
        Ok(())
    }
}

/// The fixed columns of saved groups.
#[derive(Default)]
struct GroupColumns {
    key: Vec<Vec<u8>>,
    touched: Vec<Nanos>,
    pending: Vec<bool>,
    rows: Vec<i64>,
    emitted: Vec<bool>,
}
