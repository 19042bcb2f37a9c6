//! The window table-valued functions (`FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`,
//! `HOP(…, slide, size)`, `CUMULATE(…, step, max_size)`), planned through DataFusion's
//! `RelationPlanner` hook.
//!
//! A window TVF is a projection: every input column plus `window_start`, `window_end` and
//! `window_time` (= `window_end` − 1 ms, Flink's rowtime of the window). Grouping by
//! `window_start, window_end` over it is what the streaming planner turns into a window
//! aggregate. For HOP and CUMULATE the bound columns are markers (a row is in several
//! windows), which only a window aggregate can consume.

use std::sync::Arc;

use datafusion_common::arrow::datatypes::IntervalMonthDayNano;
use datafusion_common::{plan_err, Column, DFSchema, Result, ScalarValue, TableReference};
use datafusion_expr::planner::{PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning};
use datafusion_expr::{lit, Expr, LogicalPlanBuilder};
use datafusion_sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, TableFactor,
};

use crate::window_fn::{interval_nanos, Bound, WindowKind};

/// Plans `TABLE(TUMBLE(…))`, `TABLE(HOP(…))`, `TABLE(CUMULATE(…))` and `TABLE(SESSION(…))`;
/// leaves every other relation to DataFusion. SESSION's `PARTITION BY` keys become extra
/// arguments of the session bound markers.
#[derive(Debug, Default)]
pub struct WindowTvfPlanner;

/// Argument names, as Flink spells them.
fn argument_names(kind: WindowKind) -> &'static [&'static str] {
    match kind {
        WindowKind::Tumble => &["DATA", "TIMECOL", "SIZE"],
        WindowKind::Hop => &["DATA", "TIMECOL", "SLIDE", "SIZE"],
        WindowKind::Cumulate => &["DATA", "TIMECOL", "STEP", "SIZE"],
        WindowKind::Session => &["DATA", "TIMECOL", "GAP"],
    }
}

fn usage(kind: WindowKind) -> String {
    let names = argument_names(kind);
    format!(
        "{}(TABLE t{}, DESCRIPTOR(time_column), {})",
        kind.sql_name(),
        if kind == WindowKind::Session { " [PARTITION BY key, …]" } else { "" },
        names[2..].iter().map(|n| n.to_lowercase()).collect::<Vec<_>>().join(", ")
    )
}

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(&self, relation: TableFactor, ctx: &mut dyn RelationPlannerContext) -> Result<RelationPlanning> {
        let TableFactor::TableFunction { expr: SqlExpr::Function(func), alias } = &relation else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let kind = match func.name.to_string().to_uppercase().as_str() {
            "TUMBLE" => WindowKind::Tumble,
            "HOP" => WindowKind::Hop,
            "CUMULATE" => WindowKind::Cumulate,
            "SESSION" => WindowKind::Session,
            _ => return Ok(RelationPlanning::Original(Box::new(relation))),
        };
        let name = kind.sql_name();
        let names = argument_names(kind);
        let mut args = match &func.args {
            FunctionArguments::List(list) => list.args.clone(),
            _ => return plan_err!("{name} takes {}", usage(kind)),
        };
        // SESSION(TABLE t PARTITION BY k, …) arrives as SESSION(t, partition_by(k), …)
        let mut partition_by = Vec::new();
        if let Some(i) = args.iter().position(|a| {
            matches!(a, FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Function(f)))
                if f.name.to_string().eq_ignore_ascii_case("partition_by"))
        }) {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Function(f))) = args.remove(i) {
                if kind != WindowKind::Session {
                    return plan_err!("PARTITION BY is only allowed in SESSION");
                }
                if let FunctionArguments::List(list) = f.args {
                    for a in list.args {
                        match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Tuple(items))) => {
                                partition_by.extend(items)
                            }
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => partition_by.push(e),
                            other => return plan_err!("SESSION: unexpected PARTITION BY key {other}"),
                        }
                    }
                }
            }
        }
        let mut table = None;
        let mut time_col = None;
        let mut intervals: Vec<Option<Expr>> = vec![None; names.len() - 2];
        for (i, arg) in args.into_iter().enumerate() {
            let (slot, expr) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                FunctionArg::Named { name: arg_name, arg: FunctionArgExpr::Expr(e), .. } => {
                    let upper = arg_name.value.to_uppercase();
                    match names.iter().position(|n| *n == upper) {
                        Some(slot) => (slot, e),
                        None => return plan_err!("{name} has no argument named {upper}; it takes {}", usage(kind)),
                    }
                }
                other => return plan_err!("unexpected {name} argument {other}"),
            };
            match slot {
                0 => table = Some(table_arg(&expr, ctx)?),
                1 => time_col = Some(descriptor_arg(&expr, ctx)?),
                n if n < names.len() => {
                    let e = ctx.sql_to_expr(expr, &DFSchema::empty())?;
                    let Expr::Literal(v, _) = &e else {
                        return plan_err!(
                            "the {name} {} must be a constant INTERVAL, got {e}",
                            names[n].to_lowercase()
                        );
                    };
                    interval_nanos(v)?;
                    intervals[n - 2] = Some(e);
                }
                _ => return plan_err!("{name} takes {} arguments: {}", names.len(), usage(kind)),
            }
        }
        let (Some(table), Some(time_col)) = (table, time_col) else {
            return plan_err!("{name} takes {} arguments: {}", names.len(), usage(kind));
        };
        let Some(intervals) = intervals.into_iter().collect::<Option<Vec<Expr>>>() else {
            return plan_err!("{name} takes {} arguments: {}", names.len(), usage(kind));
        };
        let scan = match table {
            TableArg::Table(table) => {
                let source = ctx.context_provider().get_table_source(table.clone())?;
                LogicalPlanBuilder::scan(table, source, None)?
            }
            // a view, expanded into `(SELECT * FROM (<its query>) AS name)`
            TableArg::Query(query) => {
                let derived = TableFactor::Derived { lateral: false, subquery: query, alias: None, sample: None };
                LogicalPlanBuilder::from(ctx.plan(derived)?)
            }
        };
        // the table's name, or the view's
        let label = scan.schema().iter().find_map(|(q, _)| q.map(|q| q.to_string())).unwrap_or_default();
        let Ok((qualifier, _)) = scan.schema().qualified_field_with_unqualified_name(&time_col) else {
            return plan_err!("DESCRIPTOR({time_col}): table '{label}' has no column '{time_col}'");
        };
        let table = qualifier.cloned();
        let time = Column::new(table.clone(), time_col.clone());
        let (Some(start_fn), Some(end_fn)) = (
            ctx.context_provider().get_function_meta(crate::window_fn::bound_function(kind, Bound::Start)),
            ctx.context_provider().get_function_meta(crate::window_fn::bound_function(kind, Bound::End)),
        ) else {
            return plan_err!("window functions are not registered");
        };
        let mut exprs: Vec<Expr> = scan.schema().columns().into_iter().map(Expr::Column).collect();
        let mut call_args = vec![Expr::Column(time)];
        call_args.extend(intervals);
        for key in partition_by {
            let SqlExpr::Identifier(ident) = &key else {
                return plan_err!("SESSION: PARTITION BY takes column names, got {key}");
            };
            let column = Column::new(table.clone(), ctx.normalize_ident(ident.clone()));
            if scan.schema().index_of_column(&column).is_err() {
                return plan_err!("SESSION: PARTITION BY {ident}: table '{label}' has no such column");
            }
            call_args.push(Expr::Column(column));
        }
        let start = start_fn.call(call_args.clone());
        let end = end_fn.call(call_args);
        let one_ms = lit(ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 1_000_000))));
        exprs.push(start.alias("window_start"));
        exprs.push(end.clone().alias("window_end"));
        exprs.push((end - one_ms).alias("window_time"));
        let plan = scan.project(exprs)?.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(plan, alias.clone()))))
    }
}

/// What a window function reads: a table, or a view's rows.
enum TableArg {
    Table(TableReference),
    Query(Box<datafusion_sql::sqlparser::ast::Query>),
}

fn table_arg(expr: &SqlExpr, ctx: &mut dyn RelationPlannerContext) -> Result<TableArg> {
    match expr {
        SqlExpr::Identifier(i) => {
            ctx.object_name_to_table_reference(ObjectName::from(vec![i.clone()])).map(TableArg::Table)
        }
        SqlExpr::CompoundIdentifier(parts) => {
            ctx.object_name_to_table_reference(ObjectName::from(parts.clone())).map(TableArg::Table)
        }
        SqlExpr::Subquery(q) => Ok(TableArg::Query(q.clone())),
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
