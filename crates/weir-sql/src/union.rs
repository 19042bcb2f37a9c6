//! `UNION ALL`: each input becomes a source with its own filters and projections, merged in
//! front of the operators above the union (see [`crate::StreamPlan`]).

use std::sync::Arc;

use datafusion_common::DFSchemaRef;
use datafusion_expr::logical_plan::Union;
use datafusion_expr::Expr;

use crate::bounds::window_rows;
use crate::error::{Result, SqlError};
use crate::plan::{PlanInput, StreamOp};
use crate::planner::PipelineBuilder;

/// A projection giving the rows of a UNION ALL input the union's column names, unless they
/// have them already.
fn rename(input: &PlanInput, union: &DFSchemaRef) -> Option<StreamOp> {
    let schema = Arc::clone(input.ops.last().map(StreamOp::output_schema).unwrap_or(&input.source.output_schema));
    let names =
        |s: &DFSchemaRef| s.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect::<Vec<_>>();
    if names(&schema) == names(union) {
        return None;
    }
    let exprs =
        schema.columns().into_iter().zip(union.fields()).map(|(c, f)| Expr::Column(c).alias(f.name())).collect();
    Some(StreamOp::Project { exprs, input_schema: schema, output_schema: Arc::clone(union) })
}

impl PipelineBuilder<'_> {
    /// Plan each input of the union on its own; the first becomes the pipeline's source, the
    /// others its `union` inputs.
    pub(crate) fn convert_union(&mut self, u: &Union) -> Result<()> {
        if self.source.is_some() {
            return Err(SqlError::not_supported("queries over several tables (joins, UNION inside a join)"));
        }
        let mut inputs = Vec::with_capacity(u.inputs.len());
        for input in &u.inputs {
            let mut branch = PipelineBuilder::new(self.catalog, self.settings);
            branch.convert(input)?;
            // window table function rows carry the event time in their window columns until
            // an aggregate: they cannot be regrouped after a union
            if let Some(name) = window_rows(input) {
                return Err(SqlError::not_supported(format!("{name} table function rows inside a UNION ALL"))
                    .with_hint("UNION ALL the tables first, then apply the window to the union"));
            }
            let Some(source) = branch.source else {
                return Err(SqlError::not_supported("a UNION ALL input without a table"));
            };
            if !branch.union.is_empty() {
                // a nested UNION ALL: its inputs join this one's
                if !branch.ops.is_empty() {
                    return Err(SqlError::not_supported("operators between two UNION ALLs"));
                }
                inputs.push(PlanInput { source, ops: branch.source_ops });
                inputs.extend(branch.union);
                continue;
            }
            if let Some(op) =
                branch.ops.iter().find(|op| !matches!(op, StreamOp::Filter { .. } | StreamOp::Project { .. }))
            {
                return Err(SqlError::not_supported(format!(
                    "a {} inside a UNION ALL input",
                    match op {
                        StreamOp::WindowAggregate(_) => "windowed aggregate",
                        StreamOp::UpdatingAggregate(_) => "GROUP BY",
                        _ => "ROW_NUMBER()",
                    }
                ))
                .with_hint("UNION ALL the rows first, then aggregate or rank the union"));
            }
            inputs.push(PlanInput { source, ops: branch.ops });
        }
        // the union's schema names the columns; each input's last projection has its own
        for input in &mut inputs {
            input.ops.extend(rename(input, &u.schema));
        }
        let mut inputs = inputs.into_iter();
        let Some(first) = inputs.next() else {
            return Err(SqlError::not_supported("an empty UNION"));
        };
        self.source = Some(first.source);
        self.source_ops = first.ops;
        self.union = inputs.collect();
        Ok(())
    }
}
