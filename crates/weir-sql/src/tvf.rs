//! The window table-valued functions (`FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`),
//! planned through DataFusion's `RelationPlanner` hook.
//!
//! A window TVF is a projection: every input column plus `window_start`, `window_end` and
//! `window_time` (= `window_end` − 1 ms, Flink's rowtime of the window). Grouping by
//! `window_start, window_end` over it is what the streaming planner turns into a window
//! aggregate.

use std::sync::Arc;

use datafusion_common::arrow::datatypes::IntervalMonthDayNano;
use datafusion_common::{plan_err, Column, DFSchema, Result, ScalarValue, TableReference};
use datafusion_expr::planner::{PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning};
use datafusion_expr::{lit, Expr, LogicalPlanBuilder};
use datafusion_sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, TableFactor,
};

use crate::window_fn::{interval_nanos, TUMBLE_END, TUMBLE_START};

/// Plans `TABLE(TUMBLE(…))`; leaves every other relation to DataFusion.
#[derive(Debug, Default)]
pub struct WindowTvfPlanner;

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(&self, relation: TableFactor, ctx: &mut dyn RelationPlannerContext) -> Result<RelationPlanning> {
        let TableFactor::TableFunction { expr: SqlExpr::Function(func), alias } = &relation else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let name = func.name.to_string().to_uppercase();
        match name.as_str() {
            "TUMBLE" => {}
            "HOP" | "SESSION" | "CUMULATE" => {
                return datafusion_common::not_impl_err!("the {name} window table function")
            }
            _ => return Ok(RelationPlanning::Original(Box::new(relation))),
        }
        let args = match &func.args {
            FunctionArguments::List(list) => list.args.clone(),
            _ => return plan_err!("TUMBLE takes (TABLE t, DESCRIPTOR(time_column), size)"),
        };
        let mut table = None;
        let mut time_col = None;
        let mut size = None;
        for (i, arg) in args.into_iter().enumerate() {
            let (slot, expr) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                FunctionArg::Named { name, arg: FunctionArgExpr::Expr(e), .. } => {
                    let slot = match name.value.to_uppercase().as_str() {
                        "DATA" => 0,
                        "TIMECOL" => 1,
                        "SIZE" => 2,
                        other => return plan_err!("TUMBLE has no argument named {other}"),
                    };
                    (slot, e)
                }
                other => return plan_err!("unexpected TUMBLE argument {other}"),
            };
            match slot {
                0 => table = Some(table_arg(&expr, ctx)?),
                1 => time_col = Some(descriptor_arg(&expr, ctx)?),
                2 => {
                    let e = ctx.sql_to_expr(expr, &DFSchema::empty())?;
                    let Expr::Literal(v, _) = &e else {
                        return plan_err!("the TUMBLE size must be a constant INTERVAL, got {e}");
                    };
                    interval_nanos(v)?;
                    size = Some(e);
                }
                _ => return plan_err!("TUMBLE takes three arguments: (TABLE t, DESCRIPTOR(time_column), size)"),
            }
        }
        let (Some(table), Some(time_col), Some(size)) = (table, time_col, size) else {
            return plan_err!("TUMBLE takes three arguments: (TABLE t, DESCRIPTOR(time_column), size)");
        };
        let source = ctx.context_provider().get_table_source(table.clone())?;
        let scan = LogicalPlanBuilder::scan(table.clone(), source, None)?;
        let time = Column::new(Some(table.clone()), time_col.clone());
        if scan.schema().index_of_column(&time).is_err() {
            return plan_err!("DESCRIPTOR({time_col}): table '{table}' has no column '{time_col}'");
        }
        let (Some(start_fn), Some(end_fn)) = (
            ctx.context_provider().get_function_meta(TUMBLE_START),
            ctx.context_provider().get_function_meta(TUMBLE_END),
        ) else {
            return plan_err!("window functions are not registered");
        };
        let mut exprs: Vec<Expr> = scan.schema().columns().into_iter().map(Expr::Column).collect();
        let start = start_fn.call(vec![Expr::Column(time.clone()), size.clone()]);
        let end = end_fn.call(vec![Expr::Column(time), size]);
        let one_ms = lit(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 1_000_000))));
        exprs.push(start.alias("window_start"));
        exprs.push(end.clone().alias("window_end"));
        exprs.push((end - one_ms).alias("window_time"));
        let plan = scan.project(exprs)?.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(plan, alias.clone()))))
    }
}

fn table_arg(expr: &SqlExpr, ctx: &mut dyn RelationPlannerContext) -> Result<TableReference> {
    match expr {
        SqlExpr::Identifier(i) => ctx.object_name_to_table_reference(ObjectName::from(vec![i.clone()])),
        SqlExpr::CompoundIdentifier(parts) => ctx.object_name_to_table_reference(ObjectName::from(parts.clone())),
        other => plan_err!("the first argument of a window function must be TABLE name, got {other}"),
    }
}

fn descriptor_arg(expr: &SqlExpr, ctx: &mut dyn RelationPlannerContext) -> Result<String> {
    if let SqlExpr::Function(f) = expr {
        if f.name.to_string().eq_ignore_ascii_case("descriptor") {
            if let FunctionArguments::List(list) = &f.args {
                if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i)))] = list.args.as_slice() {
                    return Ok(ctx.normalize_ident(i.clone()));
                }
            }
        }
    }
    plan_err!("the time column must be given as DESCRIPTOR(column), got {expr}")
}

/// Shared instance handed to the SQL planner.
pub fn relation_planners() -> Vec<Arc<dyn RelationPlanner>> {
    vec![Arc::new(WindowTvfPlanner)]
}
