//! Rows as the ranking operators keep them: each input row encoded once as Arrow row bytes
//! (so state needs no batches), with its partition key and its `ORDER BY` key also encoded as
//! bytes whose order is the SQL order (descending and NULLS FIRST/LAST included).

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, UInt64Array};
use datafusion_common::arrow::compute::SortOptions;
use datafusion_common::arrow::datatypes::{Schema, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, Rows, SortField};
use datafusion_physical_expr::PhysicalExpr;

use crate::error::Result;

/// Encodes partition keys, order keys and whole rows; decodes kept rows into output batches.
pub struct RankRows {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    order: Vec<Arc<dyn PhysicalExpr>>,
    partition_converter: RowConverter,
    order_converter: RowConverter,
    row_converter: RowConverter,
    output_schema: SchemaRef,
}

/// One batch, encoded.
pub struct EncodedBatch {
    /// Partition keys.
    pub partitions: Rows,
    /// `ORDER BY` keys.
    pub orders: Rows,
    /// Whole rows.
    pub rows: Rows,
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let n = batch.num_rows();
    Ok(exprs
        .iter()
        .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
        .collect::<datafusion_common::Result<_>>()?)
}

impl RankRows {
    /// `order` pairs each `ORDER BY` expression with its direction. `output_schema` is the
    /// input's columns then the row number.
    pub fn new(
        partition: Vec<Arc<dyn PhysicalExpr>>,
        order: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
        input_schema: &Schema,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let field = |e: &Arc<dyn PhysicalExpr>, options: SortOptions| -> Result<SortField> {
            Ok(SortField::new_with_options(e.data_type(input_schema)?, options))
        };
        let partition_fields =
            partition.iter().map(|e| field(e, SortOptions::default())).collect::<Result<Vec<_>>>()?;
        let order_fields = order.iter().map(|(e, o)| field(e, *o)).collect::<Result<Vec<_>>>()?;
        let row_fields = input_schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Self {
            partition,
            order: order.into_iter().map(|(e, _)| e).collect(),
            partition_converter: RowConverter::new(partition_fields)?,
            order_converter: RowConverter::new(order_fields)?,
            row_converter: RowConverter::new(row_fields)?,
            output_schema,
        })
    }

    /// Encode a batch.
    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedBatch> {
        Ok(EncodedBatch {
            partitions: self.partition_converter.convert_columns(&evaluate(&self.partition, batch)?)?,
            orders: self.order_converter.convert_columns(&evaluate(&self.order, batch)?)?,
            rows: self.row_converter.convert_columns(batch.columns())?,
        })
    }

    /// Decode kept rows, each with its row number, into an output batch.
    pub fn output<'a>(&self, rows: impl IntoIterator<Item = (&'a [u8], u64)>) -> Result<RecordBatch> {
        let parser = self.row_converter.parser();
        let (rows, numbers): (Vec<&[u8]>, Vec<u64>) = rows.into_iter().unzip();
        let n = rows.len();
        let mut columns = self.row_converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?;
        columns.push(Arc::new(UInt64Array::from(numbers)));
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }
}
