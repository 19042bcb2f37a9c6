//! Partial aggregates: the state every aggregating operator keeps, built from DataFusion's
//! vectorised `GroupValues` (keys → dense group ids) and `GroupsAccumulator`s.
//!
//! ```text
//!   Partial ──update(rows)──► Partial ──freeze()──► Frozen (keys + intermediate state arrays)
//!   Partial ──merge(Frozen)─► Partial ──evaluate()─► keys + final values
//! ```
//!
//! A [`Frozen`] partial is immutable and can be merged into any number of partials: a slice of
//! a hopping window is frozen once and merged into each window containing it; a session that
//! an out-of-order row bridges into another is frozen and merged into it.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion_common::arrow::compute::{concat, take};
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_expr::{EmitTo, GroupsAccumulator};
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion_physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion_physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Result, RuntimeError};

/// One aggregate: the function, its argument expressions and its optional `FILTER (WHERE …)`.
pub struct AggregateSpec {
    /// The physical aggregate (creates accumulators).
    pub function: Arc<AggregateFunctionExpr>,
    /// Argument expressions.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// `FILTER (WHERE …)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The evaluated inputs of a batch: grouping keys, aggregate arguments and filters.
pub struct AggregateInput {
    /// Key columns.
    pub keys: Vec<ArrayRef>,
    /// Per aggregate, its argument columns.
    pub args: Vec<Vec<ArrayRef>>,
    /// Per aggregate, its filter.
    pub filters: Vec<Option<BooleanArray>>,
    /// Rows in the batch.
    pub rows: usize,
}

impl AggregateInput {
    /// Rows `rows` of this input, in that order (one copy of each column for all of them).
    pub fn take(&self, rows: &UInt32Array) -> Result<AggregateInput> {
        let pick = |a: &ArrayRef| -> Result<ArrayRef> { Ok(take(a.as_ref(), rows, None)?) };
        Ok(AggregateInput {
            keys: self.keys.iter().map(pick).collect::<Result<_>>()?,
            args: self.args.iter().map(|a| a.iter().map(pick).collect::<Result<_>>()).collect::<Result<_>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| f.as_ref().map(|f| Ok(take(f, rows, None)?.as_boolean().clone())).transpose())
                .collect::<Result<_>>()?,
            rows: rows.len(),
        })
    }

    /// Rows `offset..offset + len` of this input, without copying.
    pub fn slice(&self, offset: usize, len: usize) -> AggregateInput {
        AggregateInput {
            keys: self.keys.iter().map(|a| a.slice(offset, len)).collect(),
            args: self.args.iter().map(|a| a.iter().map(|c| c.slice(offset, len)).collect()).collect(),
            filters: self.filters.iter().map(|f| f.as_ref().map(|f| f.slice(offset, len))).collect(),
            rows: len,
        }
    }
}

/// Creates partials for a fixed set of keys and aggregates.
pub struct Aggregates {
    key_schema: SchemaRef,
    specs: Vec<AggregateSpec>,
}

impl Aggregates {
    /// Aggregates `specs` grouped by keys of `key_schema` (no fields: one global group).
    pub fn new(key_schema: SchemaRef, specs: Vec<AggregateSpec>) -> Self {
        Self { key_schema, specs }
    }

    /// The aggregates.
    pub fn specs(&self) -> &[AggregateSpec] {
        &self.specs
    }

    /// Evaluate the key expressions `keys`, the arguments and the filters over a batch.
    pub fn keyed_input(&self, keys: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<AggregateInput> {
        let n = batch.num_rows();
        let keys = keys
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        self.input(keys, batch)
    }

    /// Evaluate keys, arguments and filters over a batch.
    pub fn input(&self, keys: Vec<ArrayRef>, batch: &RecordBatch) -> Result<AggregateInput> {
        let n = batch.num_rows();
        let args = self
            .specs
            .iter()
            .map(|a| a.args.iter().map(|e| e.evaluate(batch).and_then(|v| v.into_array(n))).collect())
            .collect::<datafusion_common::Result<Vec<Vec<_>>>>()?;
        let filters = self
            .specs
            .iter()
            .map(|a| match &a.filter {
                Some(f) => Ok(Some(f.evaluate(batch)?.into_array(n)?.as_boolean().clone())),
                None => Ok(None),
            })
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        Ok(AggregateInput { keys, args, filters, rows: n })
    }

    /// The number of key columns and of each aggregate's state columns (the columns of a
    /// [`Frozen`] partial).
    pub fn layout(&self) -> Result<(usize, Vec<usize>)> {
        let states = self.specs.iter().map(|a| Ok(a.function.state_fields()?.len())).collect::<Result<Vec<_>>>()?;
        Ok((self.key_schema.fields().len(), states))
    }

    /// Frozen partials, each tagged (e.g. with its slice), as one batch for a checkpoint:
    /// columns `tag`, `part` (which partial), the keys, then every aggregate's state.
    /// `None` when there are none.
    pub fn frozen_to_batch(&self, parts: &[(i64, &Frozen)]) -> Result<Option<RecordBatch>> {
        let Some((_, first)) = parts.first() else { return Ok(None) };
        let width = first.keys.len() + first.states.iter().map(Vec::len).sum::<usize>();
        let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(parts.len()); width];
        let (mut tags, mut part_ids) = (Vec::new(), Vec::new());
        for (n, (tag, f)) in parts.iter().enumerate() {
            tags.extend(std::iter::repeat_n(*tag, f.rows));
            part_ids.extend(std::iter::repeat_n(n as u32, f.rows));
            for (c, a) in f.keys.iter().chain(f.states.iter().flatten()).enumerate() {
                match columns.get_mut(c) {
                    Some(col) => col.push(Arc::clone(a)),
                    None => return Err(RuntimeError::Internal("partials of different shapes".into())),
                }
            }
        }
        let mut fields = vec![Field::new("tag", DataType::Int64, false), Field::new("part", DataType::UInt32, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(tags)), Arc::new(UInt32Array::from(part_ids))];
        for (c, pieces) in columns.into_iter().enumerate() {
            let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
            let array = concat(&refs)?;
            fields.push(Field::new(format!("c{c}"), array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(arrays[0].len()));
        Ok(Some(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?))
    }

    /// The tagged partials of a batch [`Aggregates::frozen_to_batch`] made, in order.
    pub fn frozen_from_batch(&self, batch: &RecordBatch) -> Result<Vec<(i64, Frozen)>> {
        let (keys, states) = self.layout()?;
        let width = 2 + keys + states.iter().sum::<usize>();
        if batch.num_columns() != width {
            return Err(RuntimeError::Checkpoint(format!(
                "saved partial aggregates have {} columns, this query's have {width}",
                batch.num_columns()
            )));
        }
        let tags = batch.column(0).as_primitive_opt::<Int64Type>();
        let parts = batch.column(1).as_primitive_opt::<UInt32Type>();
        let (Some(tags), Some(parts)) = (tags, parts) else {
            return Err(RuntimeError::Checkpoint("saved partial aggregates lack their tag columns".into()));
        };
        let mut out = Vec::new();
        let mut start = 0;
        let n = batch.num_rows();
        while start < n {
            let mut end = start + 1;
            while end < n && parts.value(end) == parts.value(start) {
                end += 1;
            }
            let len = end - start;
            let column = |c: usize| batch.column(2 + c).slice(start, len);
            let key_columns = (0..keys).map(column).collect();
            let mut next = keys;
            let mut state_columns = Vec::with_capacity(states.len());
            for count in &states {
                state_columns.push((next..next + count).map(column).collect());
                next += count;
            }
            out.push((tags.value(start), Frozen { keys: key_columns, states: state_columns, rows: len }));
            start = end;
        }
        Ok(out)
    }

    /// An empty partial.
    pub fn partial(&self) -> Result<Partial> {
        self.partial_reusing(None)
    }

    /// An empty partial, its groups kept in `spare` when there is one (from
    /// [`Partial::evaluate_keeping`]: emptied, its hash table the size the last one needed).
    pub fn partial_reusing(&self, spare: Option<Box<dyn GroupValues>>) -> Result<Partial> {
        let groups = match (self.key_schema.fields().is_empty(), spare) {
            (true, _) => None,
            (false, Some(spare)) => Some(spare),
            (false, None) => Some(new_group_values(Arc::clone(&self.key_schema), &GroupOrdering::None)?),
        };
        Ok(Partial { groups, num_groups: 0, accumulators: self.accumulators()? })
    }

    /// One empty accumulator per aggregate (DataFusion's vectorised one, or its adapter over
    /// the row accumulator where there is none).
    pub fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.specs
            .iter()
            .map(|a| -> Result<Box<dyn GroupsAccumulator>> {
                if a.function.groups_accumulator_supported() {
                    Ok(a.function.create_groups_accumulator()?)
                } else {
                    let f = Arc::clone(&a.function);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || f.create_accumulator())))
                }
            })
            .collect()
    }
}

/// Whether `rows` are consecutive row numbers, in order.
fn consecutive(rows: &[u32]) -> bool {
    rows.windows(2).all(|w| w[1] == w[0].wrapping_add(1))
}

/// A partial's final values: the key columns, the aggregate columns, the number of groups,
/// and its groups emptied for reuse ([`Partial::evaluate_keeping`]).
pub type Evaluated = (Vec<ArrayRef>, Vec<ArrayRef>, usize, Option<Box<dyn GroupValues>>);

/// Groups and their accumulators, still updatable.
pub struct Partial {
    groups: Option<Box<dyn GroupValues>>,
    num_groups: usize,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// A partial turned into arrays: one row per group, keys then each aggregate's state columns.
pub struct Frozen {
    keys: Vec<ArrayRef>,
    states: Vec<Vec<ArrayRef>>,
    rows: usize,
}

impl Frozen {
    /// Keyless groups from each aggregate's state columns (`rows` rows).
    pub fn of_states(states: Vec<Vec<ArrayRef>>, rows: usize) -> Self {
        Self { keys: Vec::new(), states, rows }
    }

    /// The key columns.
    pub fn keys(&self) -> &[ArrayRef] {
        &self.keys
    }

    /// Each aggregate's state columns.
    pub fn states(&self) -> &[Vec<ArrayRef>] {
        &self.states
    }

    /// Bytes held (approximately).
    pub fn size(&self) -> usize {
        let arrays = self.keys.iter().chain(self.states.iter().flatten());
        arrays.map(|a| a.get_array_memory_size()).sum()
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no group.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

impl Partial {
    fn intern(&mut self, keys: &[ArrayRef], rows: usize, group_ids: &mut Vec<usize>) -> Result<()> {
        match &mut self.groups {
            Some(g) => {
                g.intern(keys, group_ids)?;
                self.num_groups = g.len();
            }
            None => {
                group_ids.clear();
                group_ids.resize(rows, 0);
                self.num_groups = 1;
            }
        }
        Ok(())
    }

    /// Add the rows `rows` (all rows if `None`) of `input`.
    pub fn update(
        &mut self,
        input: &AggregateInput,
        rows: Option<&UInt32Array>,
        group_ids: &mut Vec<usize>,
    ) -> Result<()> {
        self.add(input, rows, group_ids, false)
    }

    /// Merge the rows `rows` (all rows if `None`) of `input`, whose arguments are each
    /// aggregate's state columns (partial aggregates made elsewhere).
    pub fn merge_rows(
        &mut self,
        input: &AggregateInput,
        rows: Option<&UInt32Array>,
        group_ids: &mut Vec<usize>,
    ) -> Result<()> {
        self.add(input, rows, group_ids, true)
    }

    fn add(
        &mut self,
        input: &AggregateInput,
        rows: Option<&UInt32Array>,
        group_ids: &mut Vec<usize>,
        merge: bool,
    ) -> Result<()> {
        let taken;
        let input = match rows {
            // a run of consecutive rows (a batch's rows of one slice, mostly) is sliced, not copied
            Some(r) if r.null_count() == 0 && consecutive(r.values()) => {
                taken = input.slice(r.values().first().map_or(0, |f| *f as usize), r.len());
                &taken
            }
            Some(r) => {
                taken = input.take(r)?;
                &taken
            }
            None => input,
        };
        self.intern(&input.keys, input.rows, group_ids)?;
        for ((acc, values), f) in self.accumulators.iter_mut().zip(&input.args).zip(&input.filters) {
            match merge {
                true => acc.merge_batch(values, group_ids, self.num_groups)?,
                false => acc.update_batch(values, group_ids, f.as_ref(), self.num_groups)?,
            }
        }
        Ok(())
    }

    /// Merge a frozen partial into this one.
    pub fn merge(&mut self, frozen: &Frozen, group_ids: &mut Vec<usize>) -> Result<()> {
        if frozen.rows == 0 {
            return Ok(());
        }
        self.intern(&frozen.keys, frozen.rows, group_ids)?;
        for (acc, state) in self.accumulators.iter_mut().zip(&frozen.states) {
            acc.merge_batch(state, group_ids, self.num_groups)?;
        }
        Ok(())
    }

    /// Its state as a frozen partial, leaving it as it was (for a checkpoint: freezing
    /// consumes the accumulators, so they are rebuilt from the frozen state).
    pub fn snapshot(&mut self, aggregates: &Aggregates, group_ids: &mut Vec<usize>) -> Result<Frozen> {
        let frozen = std::mem::replace(self, aggregates.partial()?).freeze()?;
        self.merge(&frozen, group_ids)?;
        Ok(frozen)
    }

    /// A partial holding a frozen one's groups.
    pub fn thawed(aggregates: &Aggregates, frozen: &Frozen, group_ids: &mut Vec<usize>) -> Result<Self> {
        let mut p = aggregates.partial()?;
        p.merge(frozen, group_ids)?;
        Ok(p)
    }

    /// Turn into immutable intermediate state.
    pub fn freeze(mut self) -> Result<Frozen> {
        self.drain()
    }

    /// Its groups as a frozen partial, leaving it empty and ready for more rows (its hash
    /// table keeps its room: for a partial refilled batch after batch).
    pub fn drain(&mut self) -> Result<Frozen> {
        let rows = std::mem::take(&mut self.num_groups);
        let keys = match &mut self.groups {
            Some(g) if rows > 0 => {
                let keys = g.emit(EmitTo::All)?;
                // (emitting all leaves some kinds' hash tables, multi-column ones, full)
                g.clear_shrink(rows);
                keys
            }
            _ => Vec::new(),
        };
        let states = self.accumulators.iter_mut().map(|a| Ok(a.state(EmitTo::All)?)).collect::<Result<Vec<_>>>()?;
        Ok(Frozen { keys, states, rows })
    }

    /// As [`Self::evaluate`], also handing back its groups emptied, for the next partial of
    /// about as many groups ([`Aggregates::partial_reusing`]: its hash table does not grow
    /// again from nothing).
    pub fn evaluate_keeping(self) -> Result<Evaluated> {
        self.evaluated(true)
    }

    /// Final values: the key columns, the aggregate columns and the number of groups.
    pub fn evaluate(self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>, usize)> {
        let (keys, values, rows, _) = self.evaluated(false)?;
        Ok((keys, values, rows))
    }

    /// Final values, and its groups (emptied for reuse when `keep`).
    fn evaluated(self, keep: bool) -> Result<Evaluated> {
        let Self { mut groups, num_groups: rows, mut accumulators } = self;
        let keys = match &mut groups {
            Some(g) if rows > 0 => {
                let keys = g.emit(EmitTo::All)?;
                if keep {
                    // (room for a quarter more groups: the next window's count varies)
                    g.clear_shrink(rows + rows / 4);
                }
                keys
            }
            _ => Vec::new(),
        };
        let values = accumulators.iter_mut().map(|a| Ok(a.evaluate(EmitTo::All)?)).collect::<Result<Vec<_>>>()?;
        Ok((keys, values, rows, groups.filter(|_| keep)))
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.num_groups
    }

    /// Bytes held (approximately): the group keys and every accumulator.
    pub fn size(&self) -> usize {
        self.groups.as_ref().map_or(0, |g| g.size()) + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.num_groups == 0
    }
}
