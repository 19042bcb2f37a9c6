//! `SELECT` expressions: compute each output column from the input row.

use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;

/// Stateless projection.
pub struct ProjectOp {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl ProjectOp {
    /// Evaluate `exprs` into batches of `schema`.
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

impl Operator for ProjectOp {
    fn name(&self) -> &'static str {
        "Project"
    }

    /// Stateless.
    fn snapshot(&mut self) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        Ok(crate::state::checkpoint::OperatorSnapshot::empty())
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = input.batch.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&input.batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        out.push(Message::Data(StreamBatch {
            batch,
            row_watermarks: input.row_watermarks,
            kinds: input.kinds,
            origin: input.origin,
        }));
        Ok(())
    }
}
