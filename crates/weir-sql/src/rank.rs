//! `ROW_NUMBER()` over a stream: window Top-N and deduplication.
//!
//! ```text
//!   SELECT … FROM (SELECT …, ROW_NUMBER() OVER (PARTITION BY p ORDER BY o) AS rn FROM input)
//!   WHERE rn <= N                                   (or rn < N, rn = 1)
//!
//!   p contains a window's end ──► WindowTopN: the top N of each window partition, emitted
//!                                 when the watermark passes the window's end (append-only)
//!   p has no window, N = 1    ──► Deduplicate: the first row per key under o (a changelog)
//!   p has no window, N > 1    ──► TopN: the first N rows per key (a changelog, ranks shift)
//! ```
//!
//! The filter on the row number stays in the plan (it is always true of the operator's rows);
//! the planner only reads its bound.

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::{DFSchemaRef, ScalarValue};
use datafusion_expr::logical_plan::Window;
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{Expr, LogicalPlan, Operator};

use crate::bounds::{is_marker, marker_name, refuse_window_markers, resolve_window_bound, trace_column, window_call};
use crate::error::{Result, SqlError};
use crate::window_fn::{Bound, WindowKind};
use weir_plan::plan::{Rank, RankKind, StateTtl, StreamOp, WindowColumn};

/// If `predicate` (over `input`) bounds a row number computed below, the bound (`rn <= N`,
/// `rn < N + 1`, `rn = 1`, or the same reversed) and the schema of the `Window` node that
/// computes it (to recognise that node).
pub(crate) fn row_number_bound(predicate: &Expr, input: &LogicalPlan) -> Option<(usize, DFSchemaRef)> {
    split_conjunction(predicate).into_iter().find_map(|c| {
        let Expr::BinaryExpr(b) = c else { return None };
        let (column, op, value) = match (strip_cast(&b.left), strip_cast(&b.right)) {
            (Expr::Column(col), Expr::Literal(v, _)) => (col, b.op, v),
            (Expr::Literal(v, _), Expr::Column(col)) => (col, b.op.swap()?, v),
            _ => return None,
        };
        let (Expr::Column(wc), LogicalPlan::Window(w)) = trace_column(column, input)? else { return None };
        let i = w.schema.index_of_column(&wc).ok()?;
        let f = w.window_expr.get(i.checked_sub(w.input.schema().fields().len())?)?;
        if function_name(f).as_deref() != Some("row_number") {
            return None;
        }
        // an integer literal only: `rn < 2.5` is not a bound this planner reads exactly
        if !value.data_type().is_integer() {
            return None;
        }
        let ScalarValue::Int64(Some(n)) = value.cast_to(&DataType::Int64).ok()? else { return None };
        let limit = match op {
            Operator::LtEq => n,
            Operator::Lt => n.checked_sub(1)?,
            Operator::Eq if n == 1 => 1,
            _ => return None,
        };
        usize::try_from(limit).ok().filter(|l| *l > 0).map(|l| (l, std::sync::Arc::clone(&w.schema)))
    })
}

fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        e => e,
    }
}

fn function_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Alias(a) => function_name(&a.expr),
        Expr::WindowFunction(f) => Some(f.fun.name().to_lowercase()),
        _ => None,
    }
}

/// Plan a `Window` node bounded by `limit`; `updating`: its input is a changelog.
/// `check_time` checks that a window's time column has a watermark (for a Top-N straight over
/// a table function's rows).
pub(crate) fn plan_rank(
    w: &Window,
    limit: Option<usize>,
    updating: bool,
    state_ttl: Option<StateTtl>,
    check_time: &dyn Fn(&Expr, &LogicalPlan) -> Result<String>,
) -> Result<StreamOp> {
    let hint = "ROW_NUMBER() OVER (PARTITION BY window_start, window_end[, k] ORDER BY …) <= N for a window Top-N, \
                or ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) = 1 to deduplicate, in a subquery filtered by the outer WHERE";
    let [expr] = w.window_expr.as_slice() else {
        return Err(SqlError::not_supported("several OVER (…) functions in one SELECT").with_hint(hint));
    };
    let mut e = expr;
    while let Expr::Alias(a) = e {
        e = &a.expr;
    }
    let Expr::WindowFunction(f) = e else {
        return Err(SqlError::not_supported(format!("the window expression {e}")).with_hint(hint));
    };
    let name = f.fun.name().to_lowercase();
    if name != "row_number" {
        return Err(SqlError::not_supported(format!("{}() OVER (…) on a stream", name.to_uppercase())).with_hint(hint));
    }
    let params = &f.params;
    let Some(limit) = limit else {
        return Err(SqlError::not_supported("ROW_NUMBER() without a bound on it (its state would grow forever)")
            .with_hint(hint));
    };
    if params.partition_by.is_empty() || params.order_by.is_empty() {
        return Err(SqlError::not_supported("ROW_NUMBER() without both PARTITION BY and ORDER BY").with_hint(hint));
    }
    if updating {
        return Err(SqlError::not_supported("ROW_NUMBER() over an updating result")
            .with_hint("rank windowed results (append-only), or the rows of a table"));
    }
    for e in params.partition_by.iter().chain(params.order_by.iter().map(|s| &s.expr)) {
        if !matches!(e, Expr::Column(_)) {
            refuse_window_markers(e, &w.input)?;
        }
    }
    let mut end = None;
    for p in &params.partition_by {
        let Expr::Column(c) = p else { continue };
        let Some((def, below)) = trace_column(c, &w.input) else { continue };
        if is_marker(&def) {
            return Err(SqlError::not_supported(format!(
                "a Top-N directly over {} table function rows",
                marker_name(&def).unwrap_or("windowed")
            ))
            .with_hint("aggregate the windows first (GROUP BY window_start, window_end, …), then rank the results"));
        }
        let direct = match window_call(&def)? {
            Some((WindowKind::Tumble, Bound::End, time, _)) => {
                check_time(&time, below)?;
                true
            }
            _ => false,
        };
        let aggregated = match (&def, below) {
            (Expr::Column(ac), LogicalPlan::Aggregate(agg)) => match agg.schema.index_of_column(ac) {
                Ok(i) => match agg.group_expr.get(i) {
                    Some(g) => resolve_window_bound(g, &agg.input)?.is_some_and(|b| b.column == WindowColumn::End),
                    None => false,
                },
                Err(_) => false,
            },
            _ => false,
        };
        if direct || aggregated {
            let end_column = w.input.schema().index_of_column(c).map_err(SqlError::from)?;
            end = Some(RankKind::WindowTopN { end_column, judge_lateness: direct });
            break;
        }
    }
    let kind = match end {
        Some(k) => k,
        None if limit == 1 => RankKind::Deduplicate { state_ttl },
        None => RankKind::TopN { state_ttl },
    };
    Ok(StreamOp::Rank(Rank {
        partition_by: params.partition_by.clone(),
        order_by: params.order_by.clone(),
        limit,
        kind,
        input_schema: std::sync::Arc::clone(w.input.schema()),
        output_schema: std::sync::Arc::clone(&w.schema),
    }))
}
