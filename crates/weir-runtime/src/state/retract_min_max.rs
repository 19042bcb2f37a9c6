//! `MIN`/`MAX` that can take values back: the multiset of live values, ordered by their
//! Arrow row encoding (a total order for every type). DataFusion's sliding MIN/MAX assume a
//! window frame that retracts its oldest values first; a changelog retracts any value.

use std::collections::BTreeMap;

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray};
use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_common::{DataFusionError, ScalarValue};
use datafusion_expr::Accumulator;

/// A retractable `MIN` (or `MAX`) over one column; NULLs are ignored, as SQL says.
#[derive(Debug)]
pub struct RetractMinMax {
    converter: RowConverter,
    data_type: DataType,
    values: BTreeMap<Box<[u8]>, u64>,
    max: bool,
}

impl RetractMinMax {
    /// `MIN` (`max = false`) or `MAX` of values of `data_type`.
    pub fn new(data_type: &DataType, max: bool) -> datafusion_common::Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
        Ok(Self { converter, data_type: data_type.clone(), values: BTreeMap::new(), max })
    }

    fn apply(&mut self, values: &[ArrayRef], add: bool) -> datafusion_common::Result<()> {
        let Some(column) = values.first() else { return Ok(()) };
        let rows = self.converter.convert_columns(std::slice::from_ref(column))?;
        for i in 0..column.len() {
            if column.is_null(i) {
                continue;
            }
            let key = rows.row(i);
            if add {
                *self.values.entry(key.as_ref().into()).or_insert(0) += 1;
            } else if let Some(n) = self.values.get_mut(key.as_ref()) {
                *n -= 1;
                if *n == 0 {
                    self.values.remove(key.as_ref());
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for RetractMinMax {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion_common::Result<()> {
        self.apply(values, true)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion_common::Result<()> {
        self.apply(values, false)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion_common::Result<ScalarValue> {
        let best = if self.max { self.values.keys().next_back() } else { self.values.keys().next() };
        let Some(best) = best else { return ScalarValue::try_from(&self.data_type) };
        let parser = self.converter.parser();
        let arrays = self.converter.convert_rows([parser.parse(best)])?;
        ScalarValue::try_from_array(&arrays[0], 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.keys().map(|k| k.len() + 32).sum::<usize>()
    }

    /// The multiset of live values as bytes (for checkpoints): per value, its length (u32),
    /// its row encoding and its count (u64), little-endian.
    fn state(&mut self) -> datafusion_common::Result<Vec<ScalarValue>> {
        let mut bytes = Vec::new();
        for (value, count) in &self.values {
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    /// Add the multisets of states [`Accumulator::state`] returned.
    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion_common::Result<()> {
        let bad = || DataFusionError::Execution("a saved MIN/MAX state is damaged".into());
        let Some(states) = states.first().and_then(|a| a.as_binary_opt::<i32>()) else { return Err(bad()) };
        for bytes in states.iter().flatten() {
            let mut rest = bytes;
            while !rest.is_empty() {
                let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(bad());
                }
                let (value, tail) = tail.split_at(len);
                let (count, tail) = tail.split_first_chunk::<8>().ok_or_else(bad)?;
                *self.values.entry(value.into()).or_insert(0) += u64::from_le_bytes(*count);
                rest = tail;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::Int64Array;

    use super::*;

    fn col(v: &[Option<i64>]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(v.to_vec()))]
    }

    #[test]
    fn retracting_the_extreme_reveals_the_next() -> datafusion_common::Result<()> {
        let mut max = RetractMinMax::new(&DataType::Int64, true)?;
        let mut min = RetractMinMax::new(&DataType::Int64, false)?;
        for acc in [&mut max, &mut min] {
            acc.update_batch(&col(&[Some(3), Some(-7), None, Some(9), Some(9)]))?;
        }
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(9)));
        assert_eq!(min.evaluate()?, ScalarValue::Int64(Some(-7)));
        max.retract_batch(&col(&[Some(9)]))?;
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(9)), "one 9 is still there");
        max.retract_batch(&col(&[Some(9), Some(3)]))?;
        assert_eq!(max.evaluate()?, ScalarValue::Int64(Some(-7)));
        min.retract_batch(&col(&[Some(-7), Some(3), Some(9), Some(9)]))?;
        assert_eq!(min.evaluate()?, ScalarValue::Int64(None), "empty: NULL");
        Ok(())
    }
}
