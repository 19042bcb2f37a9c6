//! `INSERT INTO`: the projection that fits a query's rows to the sink table's declared
//! columns.

use std::sync::Arc;

use datafusion_common::arrow::compute::can_cast_types;
use datafusion_common::{Column, DFSchema};
use datafusion_expr::Expr;

use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use weir_plan::plan::StreamOp;

/// Cast/rename the query's columns to the sink's declared columns, by position.
pub(crate) fn sink_projection(def: &TableDef, input: &Arc<DFSchema>) -> Result<Option<StreamOp>> {
    // a VIRTUAL metadata column (a Kafka record's offset, …) is read only
    let Some(target) = &def.writable_schema() else {
        return Ok(None);
    };
    if target.fields().len() != input.fields().len() {
        return Err(SqlError::plan(format!(
            "INSERT INTO {}: the query produces {} columns but the table has {} ({})",
            def.name,
            input.fields().len(),
            target.fields().len(),
            target.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut exprs = Vec::new();
    for (i, (tf, (q, f))) in target.fields().iter().zip(input.iter()).enumerate() {
        let col = Expr::Column(Column::from((q, f)));
        if !can_cast_types(f.data_type(), tf.data_type()) {
            return Err(SqlError::plan(format!(
                "INSERT INTO {}: column {} ('{}') is {} but the query gives {} ('{}')",
                def.name,
                i + 1,
                tf.name(),
                crate::catalog::sql_type_name(tf.data_type()),
                crate::catalog::sql_type_name(f.data_type()),
                f.name()
            )));
        }
        let e = if f.data_type() == tf.data_type() {
            col
        } else {
            Expr::Cast(datafusion_expr::Cast::new(Box::new(col), tf.data_type().clone()))
        };
        exprs.push(e.alias(tf.name()));
    }
    let output = DFSchema::try_from(Arc::clone(target)).map_err(SqlError::from)?;
    Ok(Some(StreamOp::Project { exprs, input_schema: Arc::clone(input), output_schema: Arc::new(output) }))
}
