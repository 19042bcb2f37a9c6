//! `UNION ALL`: each input becomes a branch (a source with its own filters and projections),
//! merged in front of the operators above the union (see [`crate::StreamPlan`]).

use std::sync::Arc;

use datafusion_common::DFSchemaRef;
use datafusion_expr::logical_plan::Union;
use datafusion_expr::Expr;

use crate::bounds::window_rows;
use crate::error::{Result, SqlError};
use crate::planner::PipelineBuilder;
use weir_plan::plan::{Branch, PlanInput, StreamOp};

/// A projection giving the rows of a UNION ALL input the union's column names, unless they
/// have them already.
fn rename(input: &Branch, union: &DFSchemaRef) -> Option<StreamOp> {
    let schema = Arc::clone(input.output_schema());
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
    /// Plan each input of the union on its own, as a branch.
    pub(crate) fn convert_union(&mut self, u: &Union) -> Result<()> {
        if self.input.is_some() {
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
            self.processing_time.set(self.processing_time.get() || branch.processing_time.get());
            self.event_time.set(self.event_time.get() || branch.event_time.get());
            let source = match branch.input {
                None => return Err(SqlError::not_supported("a UNION ALL input without a table")),
                Some(PlanInput::Join(_)) => return Err(SqlError::not_supported("a join inside a UNION ALL input")),
                Some(PlanInput::Union(nested)) => {
                    // a nested UNION ALL: its inputs join this one's
                    if !branch.ops.is_empty() {
                        return Err(SqlError::not_supported("operators between two UNION ALLs"));
                    }
                    inputs.extend(nested);
                    continue;
                }
                Some(source) => source,
            };
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
            inputs.push(Branch { input: source, ops: branch.ops });
        }
        // the union's schema names the columns; each input's last projection has its own
        for input in &mut inputs {
            input.ops.extend(rename(input, &u.schema));
        }
        if inputs.is_empty() {
            return Err(SqlError::not_supported("an empty UNION"));
        }
        self.input = Some(PlanInput::Union(inputs));
        Ok(())
    }
}
