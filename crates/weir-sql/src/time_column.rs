//! Which time a window is over: a table's event-time or processing-time column (through a
//! UNION ALL, each input's), or the window bound of an inner windowed aggregate.

use datafusion_expr::{Expr, LogicalPlan};

use crate::bounds::{inner_window_column, source_column, union_source_columns};
use crate::error::{Result, SqlError};
use crate::planner::PipelineBuilder;

impl PipelineBuilder<'_> {
    /// The window's time column must be a source column with a watermark.
    pub(crate) fn check_time_column(&self, time: &Expr, plan: &LogicalPlan) -> Result<String> {
        if let Some(name) = inner_window_column(time, plan)? {
            return Ok(name);
        }
        if let Some(columns) = union_source_columns(time, plan) {
            if let Some((t, c)) =
                columns.iter().find(|(t, c)| self.catalog.get(t).is_some_and(|d| d.proctime.as_ref() == Some(c)))
            {
                return Err(SqlError::not_supported(format!(
                    "a window over the processing-time column {t}.{c} of a UNION ALL input"
                ))
                .with_hint("window over the inputs' event-time columns, or over one table's PROCTIME() column without UNION ALL"));
            }
            let names = columns.iter().map(|(t, c)| self.check_source_time(t, c)).collect::<Result<Vec<_>>>()?;
            return Ok(names.join(" | "));
        }
        let Some((table, column)) = source_column(time, plan) else {
            return Err(SqlError::not_supported(format!("a window over the computed time '{}'", time.human_display()))
                .with_hint("window over a TIMESTAMP column that has a WATERMARK FOR clause"));
        };
        self.check_source_time(&table, &column)
    }

    /// `table.column` must be the table's watermark column or its processing-time column.
    fn check_source_time(&self, table: &str, column: &str) -> Result<String> {
        let Some(def) = self.catalog.get(table) else {
            return Err(SqlError::plan(format!("table '{table}' not found")));
        };
        if def.proctime.as_deref() == Some(column) {
            self.processing_time.set(true);
            return Ok(format!("{table}.{column} (processing time)"));
        }
        match &def.watermark {
            None => Err(SqlError::plan(format!(
                "a windowed aggregate needs a watermark, but table '{table}' has no WATERMARK FOR clause, so its windows could never close"
            ))
            .with_hint(format!(
                "declare one in CREATE TABLE {table} (…, WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND), \
                 or window over a processing-time column (…, p AS PROCTIME()) to close windows on the wall clock"
            ))),
            Some(w) if w.column != column => Err(SqlError::plan(format!(
                "the window is over {table}.{column}, but the watermark of '{table}' is on '{}'",
                w.column
            ))
            .with_hint(format!("window over {}, the table's event-time column", w.column))),
            Some(_) => {
                self.event_time.set(true);
                Ok(format!("{table}.{column}"))
            }
        }
    }
}
