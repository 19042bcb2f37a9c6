//! The rows of a HOP or CUMULATE table function read by a join (Flink's window join of
//! windowed rows): each row once per window it is in.
//!
//! Elsewhere the table function's `window_start`/`window_end` are markers an aggregate reads
//! (a row is in several windows, so they have no value of their own); a join reads rows, so
//! the rows are expanded: a `WindowRows` operator adds each window's bounds to a copy of its
//! row, and the table function's projection reads them.

use std::sync::Arc;

use datafusion_common::arrow::datatypes::Field;
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_common::{Column, DFSchema};
use datafusion_expr::logical_plan::Projection;
use datafusion_expr::{Expr, ExprSchemable};

use crate::bounds::window_call;
use crate::error::{Result, SqlError};
use crate::planner::PipelineBuilder;
use crate::window_fn::{Bound, WindowKind};
use weir_plan::{StreamOp, WindowRows, WindowSpec};

const START: &str = "__window_start";
const END: &str = "__window_end";

impl PipelineBuilder<'_> {
    /// Plan projection `p` as the rows of the HOP or CUMULATE table function whose markers it
    /// computes, one per window (false: it computes none; SESSION rows stay markers).
    pub(crate) fn expand_window_rows(&mut self, p: &Projection) -> Result<bool> {
        let mut found: Option<(Expr, WindowSpec)> = None;
        let (mut mixed, mut session) = (false, false);
        for e in &p.expr {
            e.apply(|x| {
                match window_call(x).ok().flatten() {
                    Some((WindowKind::Hop | WindowKind::Cumulate, _, time, spec)) => {
                        mixed |= found.as_ref().is_some_and(|(t, s)| *t != time || *s != spec);
                        found = Some((time, spec));
                    }
                    Some((WindowKind::Session, ..)) => session = true,
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        let Some((time, window)) = found else { return Ok(false) };
        if mixed || session || crate::bounds::window_rows(&p.input).is_some() {
            return Err(SqlError::not_supported(
                "the rows of one window table function over another's rows (or beside them)",
            )
            .with_hint("aggregate the inner windows first (GROUP BY window_start, window_end, …)"));
        }
        // one expansion per input: whatever is below is rows of a table
        self.expand_window_rows = false;
        // over a table's event time (as a window aggregate is), in whole units of it
        let column = self.check_time_column(&time, &p.input)?;
        if self.processing_time.get() {
            return Err(SqlError::not_supported(format!("{window} rows over processing time ({column})"))
                .with_hint("read the rows of windows over the tables' event-time columns, or aggregate them"));
        }
        let unit = crate::window_fn::unit_nanos(&time.get_type(p.input.schema().as_ref())?).unwrap_or(1);
        let sizes = match window {
            WindowSpec::Hop { slide_nanos, size_nanos } => [slide_nanos, size_nanos],
            WindowSpec::Cumulate { step_nanos, max_size_nanos } => [step_nanos, max_size_nanos],
            _ => [unit, unit],
        };
        if sizes.iter().any(|s| s % unit != 0) {
            return Err(SqlError::not_supported(format!("{window} over {column}, whose values are in coarser units"))
                .with_hint("give the window's sizes in whole units of the time column"));
        }
        self.convert(&p.input)?;
        if self.is_updating() {
            return Err(SqlError::not_supported(format!("{window} rows over an updating result"))
                .with_hint("window table functions read append-only rows: a table, or windowed results"));
        }
        self.event_time.set(true);
        let input = Arc::clone(p.input.schema());
        let time_type = time.get_type(input.as_ref())?;
        let mut fields: Vec<_> = input.iter().map(|(q, f)| (q.cloned(), Arc::clone(f))).collect();
        fields.push((None, Arc::new(Field::new(START, time_type.clone(), true))));
        fields.push((None, Arc::new(Field::new(END, time_type, true))));
        let rows = Arc::new(DFSchema::new_with_metadata(fields, input.metadata().clone())?);
        // the markers read the window columns
        let exprs = p
            .expr
            .iter()
            .map(|e| {
                e.clone()
                    // (only this function's markers: a TUMBLE bound merged into the projection is
                    // a value of its own)
                    .transform(|x| match window_call(&x).ok().flatten() {
                        Some((_, bound, t, s)) if t == time && s == window => {
                            let name = if bound == Bound::Start { START } else { END };
                            Ok(Transformed::yes(Expr::Column(Column::from_name(name))))
                        }
                        _ => Ok(Transformed::no(x)),
                    })
                    .map(|t| t.data)
            })
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        self.ops.push(StreamOp::WindowRows(WindowRows {
            window,
            time,
            input_schema: input,
            output_schema: Arc::clone(&rows),
        }));
        self.ops.push(StreamOp::Project { exprs, input_schema: rows, output_schema: Arc::clone(&p.schema) });
        Ok(true)
    }
}
