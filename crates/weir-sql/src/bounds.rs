//! Finding windows in a logical plan: which expressions are window bounds (`tumble_start`,
//! the HOP/CUMULATE/SESSION markers, `window_end - 1 ms`), which columns carry event time, and
//! tracing a column down to the expression that defines it. The planner's checks on window
//! columns (markers used where they have no value, SESSION's PARTITION BY) live here too.

use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::Column;
use datafusion_expr::logical_plan::Aggregate;
use datafusion_expr::{Expr, LogicalPlan, Operator};

use crate::error::{Result, SqlError};
use crate::window_fn::{fixed_interval_nanos, interval_nanos, window_function, Bound, WindowKind};
use weir_plan::explain::show;
use weir_plan::plan::{PlanInput, StreamOp, WindowColumn, WindowSpec};

pub(crate) const MILLI: i64 = 1_000_000;

pub(crate) struct WindowBound<'a> {
    pub(crate) spec: WindowSpec,
    pub(crate) column: WindowColumn,
    /// The event-time expression, evaluated over `plan`.
    pub(crate) time: Expr,
    pub(crate) plan: &'a LogicalPlan,
    /// The bound function is called in the expression itself (not in a projection below).
    pub(crate) direct: bool,
}

/// A call of a window bound function: its kind, bound, time argument and window.
pub(crate) fn window_call(e: &Expr) -> Result<Option<(WindowKind, Bound, Expr, WindowSpec)>> {
    let Expr::ScalarFunction(f) = e else { return Ok(None) };
    let Some((kind, bound)) = window_function(f.func.name()) else { return Ok(None) };
    let name = crate::window_fn::bound_function(kind, bound).to_uppercase();
    let Some((time, rest)) = f.args.split_first() else {
        return Err(SqlError::plan(format!("{name} needs a time column")));
    };
    let sizes = &rest[..kind.interval_args().min(rest.len())];
    let mut nanos = Vec::with_capacity(sizes.len());
    for s in sizes {
        let Expr::Literal(v, _) = s else {
            return Err(SqlError::plan(format!("{name}: window sizes must be constant INTERVALs, got {}", show(s))));
        };
        nanos.push(interval_nanos(v).map_err(SqlError::from)?);
    }
    let spec = WindowSpec::new(kind, &nanos).map_err(|m| SqlError::plan(format!("{name}: {m}")))?;
    Ok(Some((kind, bound, time.clone(), spec)))
}

/// The PARTITION BY keys of a SESSION table function (extra arguments of its markers).
pub(crate) fn partition_keys(e: &Expr) -> Option<&[Expr]> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        Expr::BinaryExpr(b) => b.left.as_ref(),
        e => e,
    };
    match e {
        Expr::ScalarFunction(f) if window_function(f.func.name()).is_some_and(|(k, _)| k == WindowKind::Session) => {
            f.args.get(2..)
        }
        _ => None,
    }
}

/// `window_end - INTERVAL '1' MILLISECOND`: the `window_time` column of a window TVF.
pub(crate) fn window_time_call(e: &Expr) -> Result<Option<(WindowKind, Expr, WindowSpec)>> {
    let Expr::BinaryExpr(b) = e else { return Ok(None) };
    if b.op != Operator::Minus {
        return Ok(None);
    }
    let Expr::Literal(v, _) = b.right.as_ref() else { return Ok(None) };
    if fixed_interval_nanos(v).ok() != Some(MILLI) {
        return Ok(None);
    }
    match window_call(&b.left)? {
        Some((kind, Bound::End, time, spec)) => Ok(Some((kind, time, spec))),
        _ => Ok(None),
    }
}

/// If `e` (evaluated over `plan`) is a window bound, which one.
pub(crate) fn resolve_window_bound<'a>(e: &Expr, plan: &'a LogicalPlan) -> Result<Option<WindowBound<'a>>> {
    if let Expr::Alias(a) = e {
        return resolve_window_bound(&a.expr, plan);
    }
    if let Some((_, bound, time, spec)) = window_call(e)? {
        let column = if bound == Bound::Start { WindowColumn::Start } else { WindowColumn::End };
        return Ok(Some(WindowBound { spec, column, time, plan, direct: true }));
    }
    if let Some((_, time, spec)) = window_time_call(e)? {
        return Ok(Some(WindowBound { spec, column: WindowColumn::Time, time, plan, direct: true }));
    }
    match e {
        Expr::Column(c) => match trace_column(c, plan) {
            Some((def, below)) if !matches!(def, Expr::Column(_)) => {
                Ok(resolve_window_bound(&def, below)?.map(|b| WindowBound { direct: false, ..b }))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// `HOP`, `CUMULATE` or `SESSION`, for the window whose bound `e` (or `e - 1 ms`) is.
pub(crate) fn marker_name(e: &Expr) -> Option<&'static str> {
    let e = match e {
        Expr::BinaryExpr(b) => b.left.as_ref(),
        e => e,
    };
    match e {
        Expr::ScalarFunction(f) => window_function(f.func.name()).map(|(k, _)| k.sql_name()),
        _ => None,
    }
}

/// Whether an aggregate groups by a window bound (or something that tries to be one).
pub(crate) fn groups_by_window(agg: &Aggregate) -> bool {
    agg.group_expr.iter().any(|g| matches!(resolve_window_bound(g, &agg.input), Ok(Some(_)) | Err(_)))
}

/// An aggregate over HOP/CUMULATE/SESSION table-function rows must group by the window: a row
/// stands for one copy per window it belongs to, which only a window aggregate makes. Checked
/// before the optimizer prunes the unused window columns.
pub(crate) fn refuse_unwindowed_tvf_aggregates(plan: &LogicalPlan) -> Result<()> {
    let mut result = Ok(());
    plan.apply(|node| {
        let LogicalPlan::Aggregate(agg) = node else { return Ok(TreeNodeRecursion::Continue) };
        if groups_by_window(agg) {
            return Ok(TreeNodeRecursion::Continue);
        }
        for c in agg.input.schema().columns() {
            if let Some(name) = trace_column(&c, &agg.input).and_then(|(d, _)| carried_time(&d).and(marker_name(&d))) {
                result = Err(SqlError::not_supported(format!(
                    "an aggregate over {name} rows that does not group by the window"
                ))
                .with_hint(
                    "a row belongs to several HOP/CUMULATE windows (and a session is known only once it closes): \
                     GROUP BY window_start, window_end, …",
                ));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(SqlError::from)?;
    result
}

/// weir groups sessions by all the GROUP BY keys; a SESSION table function's PARTITION BY
/// must name the same columns (Flink would sessionize per partition and group inside).
pub(crate) fn check_session_partition(agg: &Aggregate, window_columns: &[(usize, WindowColumn)]) -> Result<()> {
    let mut partition: Option<Vec<String>> = None;
    for (i, _) in window_columns {
        // the group-window form GROUP BY SESSION(ts, gap), k has sessions per key by definition
        let def = match agg.group_expr[*i].clone().unalias() {
            Expr::Column(c) => trace_column(&c, &agg.input),
            _ => None,
        };
        if let Some((def, below)) = def {
            if let Some(keys) = partition_keys(&def) {
                let mut names: Vec<String> =
                    keys.iter().filter_map(|k| source_column(k, below)).map(|(t, c)| format!("{t}.{c}")).collect();
                names.sort();
                if names.len() != keys.len() {
                    return Err(SqlError::not_supported("SESSION PARTITION BY keys that are not table columns"));
                }
                partition = Some(names);
            }
        }
    }
    let Some(partition) = partition else { return Ok(()) };
    let mut keys = Vec::new();
    for (i, g) in agg.group_expr.iter().enumerate() {
        if window_columns.iter().any(|(c, _)| *c == i) {
            continue;
        }
        match source_column(&g.clone().unalias(), &agg.input) {
            Some((t, c)) => keys.push(format!("{t}.{c}")),
            None => keys.push(g.human_display().to_string()),
        }
    }
    keys.sort();
    if keys != partition {
        return Err(SqlError::not_supported(format!(
            "a SESSION table function partitioned by [{}] grouped by [{}]",
            partition.join(", "),
            keys.join(", ")
        ))
        .with_hint("weir keeps sessions per GROUP BY key: PARTITION BY exactly the GROUP BY keys (besides window_start, window_end)"));
    }
    Ok(())
}

/// A bound of a window that has no per-row value (HOP, CUMULATE, SESSION).
pub(crate) fn is_marker(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if window_function(f.func.name()).is_some_and(|(k, _)| k != WindowKind::Tumble))
}

/// The event time a projection carries instead of a marker window column: `hop_start(ts, …)`,
/// `hop_end(ts, …)` and `hop_end(ts, …) - 1 ms` all become `ts`. The window aggregate that
/// groups by the column computes the real bounds from it.
pub(crate) fn carried_time(e: &Expr) -> Option<Expr> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let call = match e {
        Expr::BinaryExpr(b)
            if b.op == Operator::Minus
                && is_marker(&b.left)
                && matches!(b.right.as_ref(), Expr::Literal(v, _) if fixed_interval_nanos(v).ok() == Some(MILLI)) =>
        {
            b.left.as_ref()
        }
        e if is_marker(e) => e,
        _ => return None,
    };
    match call {
        Expr::ScalarFunction(f) => f.args.first().cloned(),
        _ => None,
    }
}

/// Refuse an expression that computes with a HOP/CUMULATE/SESSION window column, which has
/// no per-row value.
pub(crate) fn refuse_window_markers(e: &Expr, input: &LogicalPlan) -> Result<()> {
    let mut found = None;
    let _ = e.apply(|x| {
        if let Expr::ScalarFunction(f) = x {
            if is_marker(x) {
                found = Some(f.func.name().to_uppercase());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        if let Expr::Column(c) = x {
            if let Some((def, _)) = trace_column(c, input) {
                if carried_time(&def).is_some() {
                    found = Some(c.name.clone());
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match found {
        None => Ok(()),
        Some(name) => Err(SqlError::not_supported(format!(
            "using {name} of a HOP, CUMULATE or SESSION window before the window is aggregated"
        ))
        .with_hint(
            "a row belongs to several such windows, so the bounds exist only as GROUP BY keys: \
             GROUP BY window_start, window_end, … and compute with them in an outer query",
        )),
    }
}

/// Follow a column down through projections, filters and aliases to the expression that
/// defines it. Returns that expression and the plan it is evaluated over; a column of a
/// table scan is returned as itself with the scan.
pub(crate) fn trace_column<'a>(c: &Column, plan: &'a LogicalPlan) -> Option<(Expr, &'a LogicalPlan)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let i = p.schema.index_of_column(c).ok()?;
            match p.expr.get(i)?.clone().unalias() {
                Expr::Column(inner) => trace_column(&inner, &p.input),
                other => Some((other, &p.input)),
            }
        }
        LogicalPlan::Filter(f) => trace_column(c, &f.input),
        LogicalPlan::SubqueryAlias(a) => {
            let i = a.schema.index_of_column(c).ok()?;
            let (q, f) = a.input.schema().qualified_field(i);
            trace_column(&Column::from((q, f)), &a.input)
        }
        LogicalPlan::TableScan(_) => Some((Expr::Column(c.clone()), plan)),
        // a window function's own column stops here; the columns it passes through go on
        LogicalPlan::Window(w) => {
            let i = w.schema.index_of_column(c).ok()?;
            if i < w.input.schema().fields().len() {
                let (q, f) = w.input.schema().qualified_field(i);
                trace_column(&Column::from((q, f)), &w.input)
            } else {
                Some((Expr::Column(c.clone()), plan))
            }
        }
        // an aggregate's output column is where tracing stops (a window bound of an inner
        // windowed aggregate can be the time of an outer one)
        LogicalPlan::Aggregate(_) => Some((Expr::Column(c.clone()), plan)),
        // so is a UNION's: each input has its own column behind it
        LogicalPlan::Union(_) => Some((Expr::Column(c.clone()), plan)),
        _ => None,
    }
}

/// If an output column of `plan` is a window column of HOP/CUMULATE/SESSION table-function
/// rows not yet aggregated (it still carries the row's event time), the function's name.
pub(crate) fn window_rows(plan: &LogicalPlan) -> Option<&'static str> {
    plan.schema().columns().iter().find_map(|c| {
        let (def, _) = trace_column(c, plan)?;
        carried_time(&def).and(marker_name(&def))
    })
}

/// If `e` is a column of a UNION ALL (through projections and filters), the source column
/// behind it in each input; `None` if one of them is computed.
pub(crate) fn union_source_columns(e: &Expr, plan: &LogicalPlan) -> Option<Vec<(String, String)>> {
    let Expr::Column(c) = e else { return None };
    let (Expr::Column(uc), LogicalPlan::Union(u)) = trace_column(c, plan)? else { return None };
    let i = u.schema.index_of_column(&uc).ok()?;
    u.inputs
        .iter()
        .map(|input| {
            let (q, f) = input.schema().qualified_field(i);
            let column = Expr::Column(Column::from((q, f)));
            source_column(&column, input).map(|sc| vec![sc]).or_else(|| union_source_columns(&column, input))
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// If `e` is a window bound column of an inner windowed aggregate (a window over windowed
/// results), its name. Such a column carries event time: the inner aggregate emits a window's
/// rows before it passes on the watermark that closed it.
pub(crate) fn inner_window_column(e: &Expr, plan: &LogicalPlan) -> Result<Option<String>> {
    let Expr::Column(c) = e else { return Ok(None) };
    let Some((Expr::Column(ac), LogicalPlan::Aggregate(agg))) = trace_column(c, plan) else { return Ok(None) };
    let Ok(i) = agg.schema.index_of_column(&ac) else { return Ok(None) };
    match agg.group_expr.get(i) {
        Some(g) if resolve_window_bound(g, &agg.input)?.is_some() => {
            Ok(Some(format!("{} (a window bound of the inner aggregate)", c.name)))
        }
        _ => Ok(None),
    }
}

/// The (table, column) a time expression reads, if it is a plain source column.
pub(crate) fn source_column(e: &Expr, plan: &LogicalPlan) -> Option<(String, String)> {
    let Expr::Column(c) = e else { return None };
    match trace_column(c, plan)? {
        (Expr::Column(sc), LogicalPlan::TableScan(scan)) => Some((scan.table_name.table().to_string(), sc.name)),
        (Expr::Column(_), LogicalPlan::Aggregate(_) | LogicalPlan::Union(_)) => None,
        (Expr::Column(sc), below) => source_column(&Expr::Column(sc), below),
        _ => None,
    }
}

/// A window function (OVER) over the rows of a HOP/CUMULATE table function read by a join: not
/// run (the rows would have to be expanded first).
pub(crate) fn refuse_window_rows_under(w: &datafusion_expr::logical_plan::Window) -> Result<()> {
    match window_rows(&w.input) {
        Some(kind) => Err(not_expanded(kind)),
        None => Ok(()),
    }
}

/// The rows of a `kind` table function reach a join other than as one row per window.
pub(crate) fn not_expanded(kind: &str) -> SqlError {
    SqlError::not_supported(format!(
        "a join input computing with the window columns of {kind} table function rows (OVER, or an expression of \
         window_start or window_end)"
    ))
    .with_hint(
        "join the table function's rows as they are (FROM TABLE(HOP(…)) a JOIN … ON a.window_start = b.window_start \
                AND a.window_end = b.window_end …), and compute above the join",
    )
}

/// How many join inputs (and `IN`/`EXISTS` subqueries, joins to be) read the rows of a HOP or
/// CUMULATE table function, before the optimizer prunes the columns nobody reads.
pub(crate) fn windowed_join_inputs(plan: &LogicalPlan) -> usize {
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(j) = node {
            n += table_function_rows(&j.left, true, false) + table_function_rows(&j.right, true, false);
        }
        for e in node.expressions() {
            let _ = e.apply(|x| {
                match x {
                    Expr::InSubquery(s) => n += table_function_rows(&s.subquery.subquery, true, false),
                    Expr::Exists(s) => n += table_function_rows(&s.subquery.subquery, true, false),
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

/// How many HOP/CUMULATE table functions' rows a query's result is (no aggregate, join or OVER
/// between): they are expanded, one per window, as a join's input's are.
pub(crate) fn result_table_function_rows(plan: &LogicalPlan) -> usize {
    table_function_rows(plan, false, false)
}

/// How many HOP/CUMULATE table functions' rows reach a query's result, an OVER or a UNION ALL
/// input without an aggregate: each must reach it expanded (see [`check_expanded`]); those
/// that are not (an OVER's, a union's) are refused.
pub(crate) fn unaggregated_table_function_rows(plan: &LogicalPlan) -> usize {
    table_function_rows(plan, true, true)
}

/// Whether `p` is a HOP or CUMULATE table function's projection: the three window columns it
/// adds, computed with its markers (a `HOP_START(…)` call of one's own is not one).
fn is_table_function(p: &datafusion_expr::logical_plan::Projection) -> bool {
    let marked = |name: &str| {
        p.expr.iter().any(|e| {
            let Expr::Alias(a) = e else { return false };
            a.name == name
                && a.expr
                    .exists(|x| {
                        Ok(window_call(x)
                            .ok()
                            .flatten()
                            .is_some_and(|(kind, ..)| matches!(kind, WindowKind::Hop | WindowKind::Cumulate)))
                    })
                    .unwrap_or(false)
        })
    };
    marked("window_start") && marked("window_end") && marked("window_time")
}

/// The HOP/CUMULATE table functions whose rows `plan` passes on (no aggregate between; an
/// OVER when `windows`: a ranking function over them is refused on its own; the inputs of a
/// UNION ALL when `unions`).
fn table_function_rows(plan: &LogicalPlan, windows: bool, unions: bool) -> usize {
    let below = |p: &LogicalPlan| table_function_rows(p, windows, unions);
    match plan {
        LogicalPlan::Projection(p) => usize::from(is_table_function(p)) + below(&p.input),
        LogicalPlan::Filter(f) => below(&f.input),
        LogicalPlan::SubqueryAlias(a) => below(&a.input),
        // (an OVER passes its rows on, one for one)
        LogicalPlan::Window(w) if windows => below(&w.input),
        LogicalPlan::Union(u) if unions => u.inputs.iter().map(|i| below(i)).sum(),
        _ => 0,
    }
}

/// Whether an output column of `plan` is a window column of SESSION table-function rows not
/// yet aggregated.
pub(crate) fn session_rows(plan: &LogicalPlan) -> bool {
    plan.schema().columns().iter().any(|c| {
        trace_column(c, plan)
            .is_some_and(|(def, _)| carried_time(&def).is_some() && marker_name(&def) == Some("SESSION"))
    })
}

/// Every HOP/CUMULATE table function read by a join reaches it as its rows, one per window: a
/// join that reads none of a function's window columns would otherwise join each row once.
pub(crate) fn check_expanded(expected: usize, input: Option<&PlanInput>, ops: &[StreamOp]) -> Result<()> {
    fn count(input: Option<&PlanInput>, ops: &[StreamOp]) -> usize {
        let here = ops.iter().filter(|op| matches!(op, StreamOp::WindowRows(_))).count();
        here + match input {
            Some(PlanInput::Join(j)) => {
                count(Some(&j.left.input), &j.left.ops) + count(Some(&j.right.input), &j.right.ops)
            }
            Some(PlanInput::Union(branches)) => branches.iter().map(|b| count(Some(&b.input), &b.ops)).sum(),
            _ => 0,
        }
    }
    if count(input, ops) < expected {
        return Err(SqlError::not_supported(
            "HOP or CUMULATE table function rows read without window_start or window_end",
        )
        .with_hint(
            "a row comes once per window it is in: select window_start and window_end (in a join: a.window_start = \
             b.window_start AND a.window_end = b.window_end), or read the table itself",
        ));
    }
    Ok(())
}
