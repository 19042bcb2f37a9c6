//! Rewrites of the SQL syntax tree before DataFusion plans it.
//!
//! The group-window form `GROUP BY TUMBLE(ts, size), k` becomes
//! `GROUP BY tumble_start(ts, size), tumble_end(ts, size), k`: grouping by both bounds is the
//! same grouping (the end is a function of the start) and lets the select list use
//! `TUMBLE_START(ts, size)` and `TUMBLE_END(ts, size)`, which are the functions of the same
//! names. `HOP(ts, slide, size)` and `SESSION(ts, gap)` become `hop_start/hop_end` and
//! `session_start/session_end` the same way. Unaliased `…_START`/`…_END` items are named
//! `window_start`/`window_end`.
//!
//! `MOD(a, b)` (Flink, PostgreSQL) becomes `a % b`. A subquery inside an expression is refused
//! here, before the plan is built.

use datafusion_sql::sqlparser::ast::{
    Expr as SqlExpr, Function, GroupByExpr, Ident, ObjectName, Query, Select, SelectItem, SetExpr, Spanned, TableFactor,
};

use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_expr::logical_plan::{JoinType, LogicalPlan};

use crate::error::{Result, SqlError};

/// Rewrite every `MOD(a, b)` in `query` into `a % b`.
pub fn rewrite_mod(query: &mut Query) {
    use datafusion_sql::sqlparser::ast::{visit_expressions_mut, BinaryOperator, FunctionArg, FunctionArgExpr};
    use std::ops::ControlFlow;
    let _ = visit_expressions_mut(query, |e| {
        if let SqlExpr::Function(f) = e {
            if f.name.to_string().eq_ignore_ascii_case("mod") {
                if let datafusion_sql::sqlparser::ast::FunctionArguments::List(list) = &f.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(a)), FunctionArg::Unnamed(FunctionArgExpr::Expr(b))] =
                        list.args.as_slice()
                    {
                        let nested = |x: &SqlExpr| Box::new(SqlExpr::Nested(Box::new(x.clone())));
                        // nested: printed and read again (by a later rewrite) it keeps its grouping
                        let modulo =
                            SqlExpr::BinaryOp { left: nested(a), op: BinaryOperator::Modulo, right: nested(b) };
                        *e = SqlExpr::Nested(Box::new(modulo));
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Rewrite every `GROUP BY TUMBLE(…)` in `query` (including subqueries in FROM and CTEs).
pub fn rewrite_group_windows(query: &mut Query) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            rewrite_group_windows(&mut cte.query)?;
        }
    }
    rewrite_set_expr(&mut query.body)
}

fn rewrite_set_expr(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => rewrite_select(select),
        SetExpr::Query(q) => rewrite_group_windows(q),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left)?;
            rewrite_set_expr(right)
        }
        _ => Ok(()),
    }
}

fn rewrite_table_factor(factor: &mut TableFactor) -> Result<()> {
    match factor {
        TableFactor::Derived { subquery, .. } => rewrite_group_windows(subquery),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            rewrite_table_factor(&mut table_with_joins.relation)?;
            for j in &mut table_with_joins.joins {
                rewrite_table_factor(&mut j.relation)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn function_name(e: &SqlExpr) -> Option<(String, &Function)> {
    match e {
        SqlExpr::Function(f) => Some((f.name.to_string().to_uppercase(), f)),
        _ => None,
    }
}

fn renamed(f: &Function, name: &str) -> SqlExpr {
    let mut f = f.clone();
    f.name = ObjectName::from(vec![Ident::new(name)]);
    SqlExpr::Function(f)
}

fn rewrite_select(select: &mut Select) -> Result<()> {
    for twj in &mut select.from {
        rewrite_table_factor(&mut twj.relation)?;
        for j in &mut twj.joins {
            rewrite_table_factor(&mut j.relation)?;
        }
    }
    let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else {
        return Ok(());
    };
    let mut out = Vec::with_capacity(exprs.len() + 1);
    let mut windowed = false;
    for e in exprs.drain(..) {
        match function_name(&e) {
            Some((name, f)) if name == "TUMBLE" || name == "HOP" || name == "SESSION" => {
                let lower = name.to_lowercase();
                out.push(renamed(f, &format!("{lower}_start")));
                out.push(renamed(f, &format!("{lower}_end")));
                windowed = true;
            }
            Some((name, _)) if name == "CUMULATE" => {
                return Err(SqlError::not_supported("CUMULATE as a group window")
                    .at_span(e.span())
                    .with_hint("use the table function: FROM TABLE(CUMULATE(TABLE t, DESCRIPTOR(ts), step, max_size)) … GROUP BY window_start, window_end"));
            }
            _ => out.push(e),
        }
    }
    *exprs = out;
    if windowed {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(e) = item {
                let alias = match function_name(e) {
                    Some((n, _)) if ["TUMBLE_START", "HOP_START", "SESSION_START"].contains(&n.as_str()) => {
                        "window_start"
                    }
                    Some((n, _)) if ["TUMBLE_END", "HOP_END", "SESSION_END"].contains(&n.as_str()) => "window_end",
                    _ => continue,
                };
                *item = SelectItem::ExprWithAlias { expr: e.clone(), alias: Ident::new(alias) };
            }
        }
    }
    Ok(())
}

/// A WHERE right above an inner join becomes part of the join's condition (before the
/// optimizer moves projections between them), so its time bounds bound the join's state.
/// (Conditions with a subquery, `IN`/`EXISTS`, stay in the WHERE: they become joins of their
/// own.)
pub(crate) fn fold_filters_into_joins(plan: LogicalPlan) -> datafusion_common::Result<LogicalPlan> {
    use datafusion_expr::utils::{conjunction, split_conjunction_owned};
    plan.transform_up(|p| match p {
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
                let (sub, plain): (Vec<_>, Vec<_>) = split_conjunction_owned(f.predicate.clone())
                    .into_iter()
                    .partition(|e| e.contains_outer() || has_subquery(e));
                let Some(plain) = conjunction(plain) else { return Ok(Transformed::no(LogicalPlan::Filter(f))) };
                let mut j = j.clone();
                j.filter = Some(match j.filter.take() {
                    Some(e) => e.and(plain),
                    None => plain,
                });
                let joined = LogicalPlan::Join(j);
                match conjunction(sub) {
                    None => Ok(Transformed::yes(joined)),
                    Some(rest) => Ok(Transformed::yes(LogicalPlan::Filter(
                        datafusion_expr::logical_plan::Filter::try_new(rest, std::sync::Arc::new(joined))?,
                    ))),
                }
            }
            _ => Ok(Transformed::no(LogicalPlan::Filter(f))),
        },
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn has_subquery(e: &datafusion_expr::Expr) -> bool {
    use datafusion_common::tree_node::TreeNode;
    use datafusion_expr::Expr;
    e.exists(|x| Ok(matches!(x, Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_)))).unwrap_or(false)
}

/// `EXISTS (SELECT COUNT(*) …)`: an aggregate without GROUP BY always has a row, but its
/// decorrelated join would find none where no row matches (the "count bug"). Refused, with the
/// condition to write instead. (`x IN (SELECT MAX(…) …)` is no such case: the maximum of no
/// rows is NULL, which no `x` equals, as a semi join finds.)
pub(crate) fn refuse_exists_over_global_aggregates(plan: &LogicalPlan) -> Result<()> {
    use datafusion_common::tree_node::TreeNode;
    use datafusion_expr::Expr;
    fn global_aggregate(plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
            LogicalPlan::Projection(p) => global_aggregate(&p.input),
            LogicalPlan::SubqueryAlias(a) => global_aggregate(&a.input),
            LogicalPlan::Filter(f) => global_aggregate(&f.input),
            _ => false,
        }
    }
    let refused = |e: &Expr| match e {
        Expr::Exists(x) => global_aggregate(&x.subquery.subquery),
        _ => false,
    };
    let found = plan
        .exists(|node| Ok(node.expressions().iter().any(|e| e.exists(|x| Ok(refused(x))).unwrap_or(false))))
        .unwrap_or(false);
    if found {
        return Err(SqlError::not_supported("EXISTS over an aggregate without GROUP BY (it always has one row)")
            .with_hint(
            "EXISTS (SELECT COUNT(*) …) is always true: compare the count instead, in a join with the aggregated rows",
        ));
    }
    Ok(())
}

/// A subquery left inside an expression once `IN`/`EXISTS` conditions of `WHERE` became semi
/// and anti joins (a scalar subquery, `IN` in a select list or under `OR`) is not run on
/// streams: say so when the query is planned, with the join to write instead.
pub(crate) fn refuse_subquery_expressions(plan: &LogicalPlan) -> Result<()> {
    use datafusion_common::tree_node::TreeNode;
    use datafusion_expr::Expr;
    let subquery = |e: &Expr| matches!(e, Expr::InSubquery(_) | Expr::Exists(_) | Expr::ScalarSubquery(_));
    let found = plan
        .exists(|node| Ok(node.expressions().iter().any(|e| e.exists(|x| Ok(subquery(x))).unwrap_or(false))))
        .unwrap_or(false);
    if found {
        return Err(SqlError::not_supported(
            "a subquery in an expression (a scalar subquery, or IN (SELECT …) / EXISTS other than as a condition of WHERE)",
        )
        .with_hint("write it as a JOIN, or as WHERE x IN (SELECT …) AND …"));
    }
    Ok(())
}
