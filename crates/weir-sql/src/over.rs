//! `agg(…) OVER (PARTITION BY k ORDER BY ts ROWS|RANGE BETWEEN … PRECEDING AND CURRENT ROW)`
//! over a table's rows: an OVER aggregate, as Flink runs it on append-only input.
//!
//! ```text
//!   rows ─► (late: behind the watermark, dropped and counted) ─► kept until the watermark
//!   passes their time ─► each with the aggregates of its frame (its partition's rows up to it
//!   in time order: the n before it, or those within the interval before it)
//! ```
//!
//! `ORDER BY` is a table's event-time column (the watermark says when a row's frame is
//! complete), or a time of results (a windowed result's `window_end`, an interval join's
//! bound), whose rows come out no earlier than the watermark reaches it.

use datafusion_expr::logical_plan::Window;
use datafusion_expr::{Expr, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition};

use crate::bounds::{refuse_window_markers, source_column};
use crate::error::{Result, SqlError};
use crate::join::result_times;
use crate::planner::PipelineBuilder;
use crate::window_fn::fixed_interval_nanos;
use weir_plan::{Branch, OverAggregate, OverFrame, StreamOp};

const FRAME_HINT: &str =
    "bound the frame: OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 10 PRECEDING AND CURRENT ROW), \
                          or RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW";

fn window_function(e: &Expr) -> Option<&datafusion_expr::expr::WindowFunction> {
    match e {
        Expr::Alias(a) => window_function(&a.expr),
        Expr::WindowFunction(f) => Some(f),
        _ => None,
    }
}

impl PipelineBuilder<'_> {
    /// An OVER aggregate, if the window node computes aggregates (`None`: ranking functions,
    /// planned as a Top-N or deduplication).
    pub(crate) fn over_aggregate(&self, w: &Window) -> Result<Option<StreamOp>> {
        let functions: Vec<_> = w.window_expr.iter().filter_map(window_function).collect();
        let aggregates =
            functions.iter().filter(|f| matches!(f.fun, WindowFunctionDefinition::AggregateUDF(_))).count();
        if aggregates == 0 {
            return Ok(None);
        }
        if let Some(other) = functions.iter().find(|f| !matches!(f.fun, WindowFunctionDefinition::AggregateUDF(_))) {
            return Err(SqlError::not_supported(format!(
                "{}() OVER (…) beside aggregates OVER (…)",
                other.fun.name().to_uppercase()
            ))
            .with_hint(
                "aggregates (SUM, COUNT, AVG, MIN, MAX, …) run OVER a frame; ROW_NUMBER() ranks in a query of its own \
                 (FIRST_VALUE, LAST_VALUE, LAG, LEAD are not supported on streams yet)",
            ));
        }
        let first = &functions[0].params;
        if functions.iter().any(|f| f.params.window_frame != first.window_frame) {
            return Err(SqlError::not_supported("OVER aggregates with different frames in one SELECT")
                .with_hint("compute them in nested queries, one frame each"));
        }
        if self.is_updating() {
            return Err(SqlError::not_supported("an OVER aggregate over an updating result")
                .with_hint("OVER aggregates read append-only rows: a table, or windowed results"));
        }
        // ORDER BY the event time, ascending
        let [order] = first.order_by.as_slice() else {
            return Err(SqlError::not_supported("an OVER aggregate without exactly one ORDER BY column")
                .with_hint("order by the table's event-time column: OVER (PARTITION BY k ORDER BY ts …)"));
        };
        let time = &order.expr;
        if !order.asc {
            return Err(SqlError::not_supported("an OVER aggregate ordered by time descending")
                .with_hint("ORDER BY the time ascending: a row's frame is the rows before it in time"));
        }
        // a time of results (a window's bound, an interval join's): each row comes out no
        // earlier than the watermark reaches it
        let result_time = match (time, &self.input) {
            (Expr::Column(c), Some(input)) => {
                let branch = Branch { input: input.clone(), ops: self.ops.clone() };
                let i = w.input.schema().index_of_column(c).ok();
                result_times(&branch).into_iter().find(|(k, _)| Some(*k) == i).map(|(_, off)| off)
            }
            _ => None,
        };
        let (time_column, time_offset_nanos) = match result_time {
            Some(off) => (format!("{} (a time of the input's results)", time.human_display()), off),
            None => (self.over_source_time(time, w)?, 0),
        };
        self.event_time.set(true);
        let frame = &first.window_frame;
        if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
            return Err(
                SqlError::not_supported("an OVER frame that does not end at the current row").with_hint(FRAME_HINT)
            );
        }
        let WindowFrameBound::Preceding(start) = &frame.start_bound else {
            return Err(SqlError::not_supported("an OVER frame that does not start before the current row")
                .with_hint(FRAME_HINT));
        };
        let frame = match frame.units {
            WindowFrameUnits::Rows | WindowFrameUnits::Range if start.is_null() => {
                OverFrame::Unbounded { range: frame.units == WindowFrameUnits::Range }
            }
            WindowFrameUnits::Rows => match start.cast_to(&datafusion_common::arrow::datatypes::DataType::UInt64) {
                Ok(datafusion_common::ScalarValue::UInt64(Some(n))) => OverFrame::Rows(n),
                _ => return Err(SqlError::plan(format!("ROWS {start} PRECEDING: not a number of rows"))),
            },
            WindowFrameUnits::Range => match fixed_interval_nanos(start) {
                Ok(n) if n >= 0 => OverFrame::Range(n),
                _ => {
                    return Err(SqlError::not_supported(format!("RANGE {start} PRECEDING")).with_hint(
                        "give the range as a fixed interval of time: RANGE BETWEEN INTERVAL '10' MINUTE PRECEDING AND CURRENT ROW",
                    ))
                }
            },
            WindowFrameUnits::Groups => {
                return Err(SqlError::not_supported("GROUPS frames").with_hint(FRAME_HINT));
            }
        };
        for p in &first.partition_by {
            if !matches!(p, Expr::Column(_)) {
                refuse_window_markers(p, &w.input)?;
            }
        }
        Ok(Some(StreamOp::OverAggregate(OverAggregate {
            partition_by: first.partition_by.clone(),
            time: time.clone(),
            time_column,
            time_offset_nanos,
            frame,
            window_exprs: w.window_expr.clone(),
            input_schema: std::sync::Arc::clone(w.input.schema()),
            output_schema: std::sync::Arc::clone(&w.schema),
        })))
    }

    /// `time`, a table's own event-time column (the one its watermark is on): its name.
    fn over_source_time(&self, time: &Expr, w: &Window) -> Result<String> {
        let Some((table, column)) = source_column(time, &w.input) else {
            return Err(SqlError::not_supported(format!(
                "an OVER aggregate ordered by '{}', which is not a table's event-time column",
                time.human_display()
            ))
            .with_hint("order by the column of the table's WATERMARK FOR clause, or a windowed result's window_end"));
        };
        let def = self.catalog.get(&table).ok_or_else(|| SqlError::plan(format!("table '{table}' not found")))?;
        match def.watermark.as_ref().map(|w| &w.column) {
            Some(w) if *w == column => Ok(format!("{table}.{column}")),
            Some(w) => Err(SqlError::not_supported(format!(
                "an OVER aggregate ordered by {table}.{column}, which is not the table's event time ({w})"
            ))
            .with_hint(format!("ORDER BY {w}: a row's frame is the rows before it in event time"))),
            None => Err(SqlError::not_supported(format!(
                "an OVER aggregate ordered by {table}.{column}: table '{table}' has no watermark"
            ))
            .with_hint(format!(
                "declare one on its event-time column in CREATE TABLE {table} (…, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)"
            ))),
        }
    }
}
