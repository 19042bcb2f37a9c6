//! `WHERE` / `HAVING`: keep the rows for which a predicate is true (NULL counts as false).
//! Over a changelog each row is judged on its own values, whatever its kind: a `-U` whose
//! `+U` fails the predicate retracts the row downstream.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, AsArray};
use datafusion_common::arrow::compute::{filter, filter_record_batch, prep_null_mask_filter};
use datafusion_common::arrow::datatypes::{Int64Type, Int8Type};
use datafusion_physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;

/// Stateless filter.
pub struct FilterOp {
    predicate: Arc<dyn PhysicalExpr>,
}

impl FilterOp {
    /// Filter on a boolean physical expression.
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl Operator for FilterOp {
    fn name(&self) -> &'static str {
        "Filter"
    }

    /// Stateless.
    fn snapshot(&mut self) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        Ok(crate::state::checkpoint::OperatorSnapshot::empty())
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = input.batch.num_rows();
        let mask = self.predicate.evaluate(&input.batch)?.into_array(n)?;
        let Some(mask) = mask.as_boolean_opt() else {
            return Err(RuntimeError::Internal(format!("filter predicate returned {}", mask.data_type())));
        };
        let mask = if mask.null_count() > 0 { prep_null_mask_filter(mask) } else { mask.clone() };
        let kept = mask.true_count();
        if kept == 0 {
            return Ok(());
        }
        if kept == n {
            out.push(Message::Data(input));
            return Ok(());
        }
        let batch = filter_record_batch(&input.batch, &mask)?;
        let row_watermarks = match input.row_watermarks {
            Some(w) => Some(Arc::new(filter(w.as_ref(), &mask)?.as_primitive::<Int64Type>().clone())),
            None => None,
        };
        let kinds = match input.kinds {
            Some(k) => Some(Arc::new(filter(k.as_ref(), &mask)?.as_primitive::<Int8Type>().clone())),
            None => None,
        };
        let origin = match input.origin {
            Some(o) => Some(o.filter(&mask)?),
            None => None,
        };
        out.push(Message::Data(StreamBatch { batch, row_watermarks, kinds, origin }));
        Ok(())
    }
}
