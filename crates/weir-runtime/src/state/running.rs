//! Running aggregates per partition: the state of an OVER aggregate whose frame starts at
//! `UNBOUNDED PRECEDING` (every row of the partition up to the current one).
//!
//! Each partition keeps one accumulator per aggregate and its last row (whose columns give
//! the partition's key again when a checkpoint is moved to another parallelism). A checkpoint
//! saves each partition as that row followed by the accumulators' intermediate state, which a
//! fresh accumulator merges back.

use std::collections::HashMap;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion_common::arrow::compute::{concat_batches, filter};
use datafusion_common::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::ScalarValue;
use datafusion_expr::Accumulator;

use crate::error::{Result, RuntimeError};
use crate::state::aggregate_state::AggregateSpec;

/// One partition: its accumulators and last row.
struct Part {
    accumulators: Vec<Box<dyn Accumulator>>,
    last: RecordBatch,
}

/// Running aggregates, per partition key.
pub struct Running {
    specs: Vec<AggregateSpec>,
    parts: HashMap<Box<[u8]>, Part>,
}

impl Running {
    /// Running aggregates `specs` (over the operator's input rows).
    pub fn new(specs: Vec<AggregateSpec>) -> Self {
        Self { specs, parts: HashMap::new() }
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.specs.iter().map(|s| Ok(s.function.create_accumulator()?)).collect()
    }

    /// Partitions kept.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// The aggregates of `rows`, one partition's final rows in time order: each row adds its
    /// values, then gets the aggregates so far; with `peers`, the rows of one time (`times`)
    /// are added together first and share the values (a `RANGE` frame).
    pub fn rows(&mut self, key: &[u8], rows: &RecordBatch, times: &Int64Array, peers: bool) -> Result<Vec<ArrayRef>> {
        let n = rows.num_rows();
        let mut accumulators = match self.parts.remove(key) {
            Some(p) => p.accumulators,
            None => self.accumulators()?,
        };
        // each aggregate's arguments, its filter applied by giving filtered-out rows no values
        let mut args: Vec<Vec<ArrayRef>> = Vec::with_capacity(self.specs.len());
        let mut keep = Vec::with_capacity(self.specs.len());
        for s in &self.specs {
            args.push(
                s.args
                    .iter()
                    .map(|e| e.evaluate(rows).and_then(|v| v.into_array(n)))
                    .collect::<std::result::Result<_, _>>()?,
            );
            keep.push(match &s.filter {
                Some(f) => Some(f.evaluate(rows)?.into_array(n)?.as_boolean().clone()),
                None => None,
            });
        }
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(n); self.specs.len()];
        let mut start = 0;
        while start < n {
            let end = match peers {
                true => start + (start..n).take_while(|i| times.value(*i) == times.value(start)).count(),
                false => start + 1,
            };
            for (a, acc) in accumulators.iter_mut().enumerate() {
                let slice: Vec<ArrayRef> = args[a].iter().map(|c| c.slice(start, end - start)).collect();
                let slice = match &keep[a] {
                    Some(k) => {
                        let k = k.slice(start, end - start);
                        slice.iter().map(|c| Ok(filter(c.as_ref(), &k)?)).collect::<Result<Vec<_>>>()?
                    }
                    None => slice,
                };
                acc.update_batch(&slice)?;
                let v = acc.evaluate()?;
                values[a].extend(std::iter::repeat_n(v, end - start));
            }
            start = end;
        }
        if n > 0 {
            // the last row, copied (a slice would keep the whole batch alive)
            let last = datafusion_common::arrow::compute::take_record_batch(
                rows,
                &datafusion_common::arrow::array::UInt32Array::from(vec![(n - 1) as u32]),
            )?;
            self.parts.insert(key.into(), Part { accumulators, last });
        }
        values.into_iter().map(|v| Ok(ScalarValue::iter_to_array(v)?)).collect()
    }

    /// Every partition as its last row (the input's columns) followed by each accumulator's
    /// state, one row per partition.
    pub fn save(&mut self, input: &SchemaRef) -> Result<Option<RecordBatch>> {
        if self.parts.is_empty() {
            return Ok(None);
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut states: Vec<Vec<ScalarValue>> = Vec::new();
        let mut lasts = Vec::with_capacity(self.parts.len());
        let specs = &self.specs;
        for part in self.parts.values_mut() {
            lasts.push(part.last.clone());
            let mut column = 0;
            for (acc, spec) in part.accumulators.iter_mut().zip(specs) {
                // taking the state consumes it: a fresh accumulator merges it back
                let state = acc.state()?;
                let arrays = state.iter().map(|v| Ok(v.to_array()?)).collect::<Result<Vec<_>>>()?;
                let mut fresh = spec.function.create_accumulator()?;
                fresh.merge_batch(&arrays)?;
                *acc = fresh;
                for v in state {
                    if states.len() <= column {
                        states.push(Vec::new());
                    }
                    states[column].push(v);
                    column += 1;
                }
            }
        }
        let rows = concat_batches(input, &lasts)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        for (i, s) in states.into_iter().enumerate() {
            let array = ScalarValue::iter_to_array(s)?;
            fields.push(Field::new(format!("state_{i}"), array.data_type().clone(), true));
            columns.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(std::sync::Arc::new(Schema::new(fields)), columns, &options)?))
    }

    /// Take up the partitions of a saved batch ([`Running::save`]), `keys` its rows' keys.
    pub fn restore(&mut self, batch: &RecordBatch, input: &SchemaRef, keys: Vec<Box<[u8]>>) -> Result<()> {
        let width = input.fields().len();
        let rows = RecordBatch::try_new_with_options(
            std::sync::Arc::clone(input),
            batch
                .columns()
                .get(..width)
                .ok_or_else(|| RuntimeError::Checkpoint("saved partitions lack columns".into()))?
                .to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?;
        for (i, key) in keys.into_iter().enumerate() {
            let mut accumulators = self.accumulators()?;
            let mut column = width;
            for (acc, spec) in accumulators.iter_mut().zip(&self.specs) {
                let fields = spec.function.state_fields()?.len();
                if column + fields > batch.num_columns() {
                    return Err(RuntimeError::Checkpoint("saved running aggregates lack their state".into()));
                }
                let state: Vec<ArrayRef> = (column..column + fields).map(|c| batch.column(c).slice(i, 1)).collect();
                acc.merge_batch(&state)?;
                column += fields;
            }
            self.parts.insert(key, Part { accumulators, last: rows.slice(i, 1) });
        }
        Ok(())
    }
}
