//! `MIN`/`MAX` that can take values back: the multiset of live values, ordered by their
//! Arrow row encoding (a total order for every type). DataFusion's sliding MIN/MAX assume a
//! window frame that retracts its oldest values first; a changelog retracts any value.

use std::collections::BTreeMap;

use datafusion_common::arrow::array::{Array, ArrayRef};
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

    fn state(&mut self) -> datafusion_common::Result<Vec<ScalarValue>> {
        Err(DataFusionError::NotImplemented("a retractable MIN/MAX is never merged".into()))
    }

    fn merge_batch(&mut self, _states: &[ArrayRef]) -> datafusion_common::Result<()> {
        Err(DataFusionError::NotImplemented("a retractable MIN/MAX is never merged".into()))
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
