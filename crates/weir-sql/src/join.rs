//! Joins: each input is planned as a branch of its own, then the condition decides how the
//! join's state is bounded (see [`JoinState`]):
//!
//! - **interval join** — the condition bounds each side's event time by the other's (`b.ts
//!   BETWEEN a.ts AND a.expires`, `b.ts BETWEEN m.window_end - INTERVAL '10' SECOND AND
//!   m.window_end`); a **window join** (two windowed results joined on their window bounds)
//!   is one. Each row is kept until the watermark passes the last time a match can come.
//! - **lookup join** — the right side is a bounded table without a watermark (a file):
//!   it is read whole first, and the left rows are matched against it and not kept.
//! - **regular join** — anything else keeps every row of both inputs, so it needs a state
//!   TTL (`SET state.ttl`, or the table option `'state_ttl'`), or it is refused.
//!
//! Event times are tracked through each branch: a source's watermark column, and a window
//! aggregate's `window_end` (or `window_start` plus the size, or `window_time` plus 1 ms),
//! through filters and projections that keep them.

use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, TimeUnit};
use datafusion_common::{Column, DFSchema};
use datafusion_expr::logical_plan::{Aggregate, Join, JoinType as DfJoinType, LogicalPlan};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{BinaryExpr, Expr, ExprSchemable, Operator};

use crate::bounds::window_rows;
use crate::catalog::TableDef;
use crate::error::{Result, SqlError};
use crate::options::state_ttl;
use crate::planner::PipelineBuilder;
use crate::window_fn::{fixed_interval_nanos, unit_nanos, Bound, WindowKind};
use weir_plan::explain::show;
use weir_plan::plan::{
    Branch, JoinNode, JoinState, JoinType, PlanInput, RowTime, StateTtl, StreamJoin, StreamOp, WindowAggregate,
    WindowColumn, WindowEmit, WindowSpec,
};

const MILLI: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Columns of a branch's output that hold event times, each with the offset that turns its
/// value into the branch's time (the time the watermark is compared with).
pub(crate) fn time_columns(b: &Branch) -> Vec<(usize, i64)> {
    branch_times(b, true)
}

/// [`time_columns`] of results (a window aggregate's bounds, an interval join's bounds), not a
/// source's own time: each row comes out no earlier than the watermark reaches its time.
pub(crate) fn result_times(b: &Branch) -> Vec<(usize, i64)> {
    branch_times(b, false)
}

/// [`time_columns`]; `sources`: start from the source's watermark column (else only a window
/// aggregate's bounds count).
fn branch_times(b: &Branch, sources: bool) -> Vec<(usize, i64)> {
    let mut cols: Vec<(usize, i64)> = match &b.input {
        PlanInput::Source(s) if sources && !s.processing_time => s
            .table
            .watermark
            .as_ref()
            .and_then(|w| s.output_schema.fields().iter().position(|f| f.name() == &w.column))
            .map(|i| vec![(i, 0)])
            .unwrap_or_default(),
        PlanInput::Join(j) => join_times(&j.join),
        _ => Vec::new(),
    };
    for op in &b.ops {
        cols = match op {
            StreamOp::Filter { .. } => cols,
            StreamOp::Project { exprs, input_schema, .. } => exprs
                .iter()
                .enumerate()
                .filter_map(|(i, e)| row_time(&e.clone().unalias(), input_schema, &cols).map(|off| (i, off)))
                .collect(),
            // an aggregate over the input's windows: its time column stays one
            StreamOp::WindowAggregate(w) if w.is_cascaded() => w
                .group_exprs
                .iter()
                .position(|g| *g == w.time)
                .map(|i| vec![(i, w.time_offset_nanos + 1)])
                .unwrap_or_default(),
            // a HOP/CUMULATE row's copy for a window: the window closes when the watermark
            // passes its end
            StreamOp::WindowRows(w) => {
                let n = w.input_schema.fields().len();
                let time = match &w.time {
                    Expr::Column(c) => w.input_schema.index_of_column(c).ok(),
                    _ => None,
                };
                // the windows of a row's own time (offset o): their bounds are times too
                match time.and_then(|j| cols.iter().find(|(k, _)| *k == j)).map(|(_, o)| *o) {
                    Some(o) => {
                        let mut times = cols;
                        if let WindowSpec::Hop { size_nanos, .. } = w.window {
                            times.extend(size_nanos.checked_add(o).map(|s| (n, s)));
                        }
                        times.push((n + 1, o));
                        times
                    }
                    None => cols,
                }
            }
            // a window's rows come out when the watermark passes its end, never before
            StreamOp::WindowAggregate(w) if !w.emit.is_changelog() => w
                .window_columns
                .iter()
                .filter_map(|(i, c)| match (c, w.window) {
                    (WindowColumn::End, _) => Some((*i, 0)),
                    (WindowColumn::Time, _) => Some((*i, MILLI)),
                    (
                        WindowColumn::Start,
                        WindowSpec::Tumble { size_nanos: size, .. } | WindowSpec::Hop { size_nanos: size, .. },
                    ) => Some((*i, size)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
    }
    cols
}

/// The output columns of an inner interval join that are times (see [`time_columns`]): a
/// side's `until` column (the last time a row of the other side can match it), where the other
/// side's `until` is that side's own time. A pair comes out when its later row comes, on time:
/// if that is the other side's row, this side's `until` is at least its time (the condition);
/// if it is this side's, its `until` is at least the other row's time, which is at least its
/// own (the condition again). Either way the column is not behind the watermark, but it may be
/// at it (a row on time at the watermark): its time is the column plus 1 ns, which is ahead of
/// it. (Bid rows matched to an auction until its `expires`: `expires` is a time of the pairs.)
fn join_times(j: &StreamJoin) -> Vec<(usize, i64)> {
    let JoinState::Interval { left_time, right_time, left_until, right_until, .. } = &j.state else {
        return Vec::new();
    };
    if j.join_type != JoinType::Inner || j.left_updating || j.right_updating {
        return Vec::new();
    }
    let mut times = Vec::new();
    if right_until == right_time {
        times.push((left_until.column, left_until.offset_nanos.saturating_add(1)));
    }
    if left_until == left_time {
        times.push((j.left_schema.fields().len() + right_until.column, right_until.offset_nanos.saturating_add(1)));
    }
    times
}

/// The offset that turns the value of `e` (over `input`, whose time columns are `times`) into
/// a time: a time column; a tumbling window's bound of a row, over its own time (offset 0):
/// the window TVF's columns, whose row's window closes when the watermark passes its end
/// (`window_end` 0, `window_start` the size); either of them plus or minus a whole number of
/// the value's units (`window_time` = `window_end` - 1 ms: 1 ms; a smaller part would be cut
/// off when added, and the time would be off by it).
fn row_time(e: &Expr, input: &DFSchema, times: &[(usize, i64)]) -> Option<i64> {
    match e {
        Expr::Column(c) => {
            let j = input.index_of_column(c).ok()?;
            times.iter().find(|(k, _)| *k == j).map(|(_, off)| *off)
        }
        Expr::ScalarFunction(f) => {
            let (kind, bound) = crate::window_fn::window_function(f.name())?;
            let [Expr::Column(c), Expr::Literal(size, _)] = f.args.as_slice() else { return None };
            let j = input.index_of_column(c).ok()?;
            if kind != WindowKind::Tumble || !times.contains(&(j, 0)) {
                return None;
            }
            match bound {
                Bound::End => Some(0),
                Bound::Start => fixed_interval_nanos(size).ok(),
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) => {
            let off = row_time(left, input, times)?;
            let Expr::Literal(v, _) = right.as_ref() else { return None };
            let n = fixed_interval_nanos(v).ok()?;
            if n % unit_nanos(&left.get_type(input).ok()?)? != 0 {
                return None;
            }
            if *op == Operator::Plus {
                off.checked_sub(n)
            } else {
                off.checked_add(n)
            }
        }
        _ => None,
    }
}

/// A TIMESTAMP column of one side plus a constant interval: `t`, `t + INTERVAL '1' SECOND`,
/// `t - …`, through casts between timestamps that lose nothing.
fn column_plus(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<(Side, usize, i64)> {
    match e {
        Expr::Column(c) => {
            let (side, i) = side_column(c, left, right)?;
            let schema = if side == Side::Left { left } else { right };
            matches!(schema.field(i).data_type(), DataType::Timestamp(_, _)).then_some((side, i, 0))
        }
        Expr::Cast(c) => {
            let (side, i, off) = column_plus(&c.expr, left, right)?;
            let schema = if side == Side::Left { left } else { right };
            match (schema.field(i).data_type(), c.field.data_type()) {
                (DataType::Timestamp(from, _), DataType::Timestamp(to, _)) if unit_rank(to) >= unit_rank(from) => {
                    Some((side, i, off))
                }
                _ => None,
            }
        }
        Expr::BinaryExpr(BinaryExpr { left: l, op: op @ (Operator::Plus | Operator::Minus), right: r }) => {
            let (side, i, off) = column_plus(l, left, right)?;
            let Expr::Literal(v, _) = r.as_ref() else { return None };
            let n = fixed_interval_nanos(v).ok()?;
            Some((side, i, if *op == Operator::Plus { off.checked_add(n)? } else { off.checked_sub(n)? }))
        }
        _ => None,
    }
}

/// `schema` (the left input's columns, then the right's) with the last `tail` columns first.
fn swap_columns(schema: &DFSchema, tail: usize) -> Result<DFSchema> {
    let fields: Vec<_> = schema.iter().map(|(q, f)| (q.cloned(), Arc::clone(f))).collect();
    let (head, last) = fields.split_at(fields.len() - tail);
    let swapped = [last, head].concat();
    Ok(DFSchema::new_with_metadata(swapped, schema.metadata().clone())?)
}

/// The joins a state bound allows: a full outer join pads its unmatched rows once no match
/// can come (an interval join), an anti join emits its unmatched left rows then (or at once,
/// against a lookup table); semi and anti joins read append-only inputs.
fn check_join_kind(j: &Join, join_type: JoinType, state: &JoinState, updating: bool) -> Result<()> {
    let interval = matches!(state, JoinState::Interval { .. });
    let lookup = matches!(state, JoinState::Lookup);
    let bound = "a time condition that says when a row can no longer find a match (a window join: \
                 equal window_start and window_end of two window TVFs; or b.ts BETWEEN a.ts AND a.ts + \
                 INTERVAL …)";
    match join_type {
        JoinType::Full if !interval => Err(SqlError::not_supported("a FULL OUTER JOIN without a time bound")
            .with_hint(format!("a full outer join of streams needs {bound}"))),
        JoinType::Semi | JoinType::Anti if updating => Err(SqlError::not_supported(
            "IN or EXISTS with an updating result (a GROUP BY without windows) on either side",
        )
        .with_hint("aggregate windows instead, or join the updating result with JOIN")),
        JoinType::Anti if !interval && !lookup => {
            Err(SqlError::not_supported("NOT IN or NOT EXISTS without a time bound")
                .with_hint(format!("a row is emitted once no match can come: correlate the subquery with {bound}")))
        }
        JoinType::Anti if j.null_aware && not_in_may_be_null(j) => {
            Err(SqlError::not_supported("NOT IN over columns that can be NULL (one NULL makes NOT IN unknown)")
                .with_hint("write NOT EXISTS (SELECT … WHERE r.k = l.k …), or declare the column NOT NULL"))
        }
        _ => Ok(()),
    }
}

/// Whether a `NOT IN` (a null-aware anti join, whose filter starts with `x = subquery column`)
/// compares values that may be NULL.
fn not_in_may_be_null(j: &Join) -> bool {
    let Some(filter) = &j.filter else { return true };
    let schema = |e: &Expr| {
        if side_of(e, j.left.schema(), j.right.schema()) == Some(Side::Left) {
            j.left.schema()
        } else {
            j.right.schema()
        }
    };
    match split_conjunction(filter).first() {
        Some(Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right })) => {
            [left, right].iter().any(|e| e.nullable(schema(e)).unwrap_or(true))
        }
        _ => true,
    }
}

/// Finer units rank higher (a cast to a finer unit loses nothing).
fn unit_rank(u: &TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

fn side_column(c: &Column, left: &DFSchema, right: &DFSchema) -> Option<(Side, usize)> {
    match (left.index_of_column(c), right.index_of_column(c)) {
        (Ok(i), Err(_)) => Some((Side::Left, i)),
        (Err(_), Ok(i)) => Some((Side::Right, i)),
        _ => None,
    }
}

/// Which side an expression's columns all come from (`None`: both, or neither).
fn side_of(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<Side> {
    let mut side = None;
    for c in e.column_refs() {
        let s = side_column(c, left, right)?.0;
        if side.is_some_and(|x| x != s) {
            return None;
        }
        side = Some(s);
    }
    side
}

/// `a <= b` facts a conjunct states (`a < b`, `a BETWEEN x AND y`, `a = b` both ways…).
fn orderings(e: &Expr) -> Vec<(Expr, Expr)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::Lt | Operator::LtEq => vec![(*left.clone(), *right.clone())],
            Operator::Gt | Operator::GtEq => vec![(*right.clone(), *left.clone())],
            Operator::Eq => vec![(*left.clone(), *right.clone()), (*right.clone(), *left.clone())],
            _ => Vec::new(),
        },
        Expr::Between(b) if !b.negated => {
            vec![(*b.low.clone(), *b.expr.clone()), (*b.expr.clone(), *b.high.clone())]
        }
        _ => Vec::new(),
    }
}

impl PipelineBuilder<'_> {
    /// An aggregate grouping by a time column of its input (a windowed result's
    /// `window_end`, say): a window aggregate over the input's windows. Each group closes when
    /// the watermark passes that time, as the input's window did.
    pub(crate) fn cascaded_window_aggregate(&self, agg: &Aggregate) -> Result<Option<StreamOp>> {
        let Some(input) = &self.input else { return Ok(None) };
        let branch = Branch { input: input.clone(), ops: self.ops.clone() };
        // a window's bound (a source's own time column is no window: rows at the watermark are
        // on time there, and would be late for a window ending at it)
        let times = result_times(&branch);
        let mut found: Option<(&Expr, i64)> = None;
        for g in &agg.group_expr {
            let Expr::Column(c) = g else { continue };
            let Ok(j) = agg.input.schema().index_of_column(c) else { continue };
            if let Some((_, off)) = times.iter().find(|(k, _)| *k == j) {
                if found.is_none_or(|(_, o)| o != 0) {
                    found = Some((g, *off));
                }
            }
        }
        let Some((time, offset)) = found else { return Ok(None) };
        self.event_time.set(true);
        Ok(Some(StreamOp::WindowAggregate(WindowAggregate {
            emit: WindowEmit::ONCE,
            window: WindowSpec::Tumble { size_nanos: 1 },
            time_column: format!("{} (the windows of the input)", show(time)),
            group_exprs: agg.group_expr.clone(),
            window_columns: Vec::new(),
            time: time.clone(),
            // one window per value: [t - 1 ns, t), closed when the watermark reaches t
            time_offset_nanos: offset - 1,
            aggr_exprs: agg.aggr_expr.clone(),
            input_schema: Arc::clone(agg.input.schema()),
            output_schema: Arc::clone(&agg.schema),
            two_phase: self.settings.two_phase(),
        })))
    }
}

impl PipelineBuilder<'_> {
    /// A join (with the predicate of a WHERE right above an inner join).
    pub(crate) fn convert_join(&mut self, j: &Join, above: Option<&Expr>) -> Result<()> {
        if self.input.is_some() {
            return Err(SqlError::not_supported("a join inside a UNION ALL input"));
        }
        // a right join is a left join with its inputs swapped (then its columns put back in
        // order); `IN`/`EXISTS` subqueries are semi and anti joins
        let (join_type, swapped) = match j.join_type {
            DfJoinType::Inner => (JoinType::Inner, false),
            DfJoinType::Left => (JoinType::Left, false),
            DfJoinType::Right => (JoinType::Left, true),
            DfJoinType::Full => (JoinType::Full, false),
            DfJoinType::LeftSemi => (JoinType::Semi, false),
            DfJoinType::RightSemi => (JoinType::Semi, true),
            DfJoinType::LeftAnti => (JoinType::Anti, false),
            DfJoinType::RightAnti => (JoinType::Anti, true),
            DfJoinType::LeftMark | DfJoinType::RightMark => {
                return Err(SqlError::not_supported("IN (SELECT …) or EXISTS under OR or NOT (…)")
                    .with_hint("make each IN or EXISTS a condition of WHERE joined by AND (NOT EXISTS is one)"))
            }
        };
        // USING (k) keeps one k: the left input's, NULL in a right or full join's padded rows
        if matches!(j.join_type, DfJoinType::Right | DfJoinType::Full)
            && j.join_constraint == datafusion_expr::logical_plan::JoinConstraint::Using
        {
            return Err(SqlError::not_supported("RIGHT or FULL JOIN … USING (…)")
                .with_hint("write ON a.k = b.k, and COALESCE(a.k, b.k) for the key"));
        }
        // a SESSION row's window exists only once its session is aggregated (HOP and CUMULATE
        // rows are expanded, one per window)
        for input in [&j.left, &j.right] {
            if window_rows(input) == Some("SESSION") {
                return Err(SqlError::not_supported(
                    "a join of SESSION table function rows (a session's bounds exist only once aggregated)",
                )
                .with_hint(
                    "aggregate the sessions first (GROUP BY window_start, window_end, …), then join the results",
                ));
            }
        }
        let (jl, jr) = if swapped { (&j.right, &j.left) } else { (&j.left, &j.right) };
        let left = self.join_input(jl)?;
        let right = self.join_input(jr)?;
        let (ls, rs) = (Arc::clone(jl.schema()), Arc::clone(jr.schema()));

        // the condition: equi-keys, and the rest as a filter over the joined row
        let mut conjuncts: Vec<Expr> = j.on.iter().map(|(l, r)| l.clone().eq(r.clone())).collect();
        if let Some(f) = &j.filter {
            conjuncts.extend(split_conjunction(f).into_iter().cloned());
        }
        if let Some(f) = above {
            conjuncts.extend(split_conjunction(f).into_iter().cloned());
        }
        let (mut left_keys, mut right_keys, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for c in &conjuncts {
            if let Expr::BinaryExpr(BinaryExpr { left: a, op: Operator::Eq, right: b }) = c {
                match (side_of(a, &ls, &rs), side_of(b, &ls, &rs)) {
                    (Some(Side::Left), Some(Side::Right)) => {
                        left_keys.push(*a.clone());
                        right_keys.push(*b.clone());
                        continue;
                    }
                    (Some(Side::Right), Some(Side::Left)) => {
                        left_keys.push(*b.clone());
                        right_keys.push(*a.clone());
                        continue;
                    }
                    _ => {}
                }
            }
            rest.push(c.clone());
        }
        let filter = rest.into_iter().reduce(|a, b| a.and(b));

        // how long each side's rows can find a match
        let times = [time_columns(&left), time_columns(&right)];
        let time_of =
            |side: Side, col: usize| times[side as usize].iter().find(|(c, _)| *c == col).map(|(_, off)| *off);
        let (mut left_until, mut right_until) = (None, None);
        // each side's time for lateness: the time its fact bounds the other side's rows by (a
        // row on time by it finds every row of the other side that can match it still kept)
        let mut fact_times: [Option<RowTime>; 2] = [None, None];
        let mut time_facts = Vec::new();
        for (a, b) in conjuncts.iter().flat_map(orderings) {
            let (Some((sa, ca, oa)), Some((sb, cb, ob))) = (column_plus(&a, &ls, &rs), column_plus(&b, &ls, &rs))
            else {
                continue;
            };
            if sa == sb {
                continue;
            }
            // a ≤ b, with a's column a time of its side: the other side's row can match
            // rows of a's side up to the time b computes from it
            let Some(ta) = time_of(sa, ca) else { continue };
            let Some(offset_nanos) = ob.checked_sub(oa).and_then(|o| o.checked_add(ta)) else { continue };
            let until = RowTime { column: cb, offset_nanos };
            let slot = if sb == Side::Left { &mut left_until } else { &mut right_until };
            if slot.is_none() {
                *slot = Some(until);
                fact_times[sa as usize] = Some(RowTime { column: ca, offset_nanos: ta });
                time_facts.push(format!("{} <= {}", show(&a), show(&b)));
            }
        }
        let left_updating = left.is_updating();
        let right_updating = right.is_updating();
        let first_time = |side: Side| {
            times[side as usize].first().map(|(column, offset)| RowTime { column: *column, offset_nanos: *offset })
        };
        let state = match (left_until, right_until, fact_times[0], fact_times[1]) {
            (Some(lu), Some(ru), Some(lt), Some(rt)) if !left_updating && !right_updating => JoinState::Interval {
                left_time: lt,
                right_time: rt,
                left_until: lu,
                right_until: ru,
                condition: time_facts.join(" AND "),
            },
            _ if self.is_static_table(&right) => JoinState::Lookup,
            _ => match self.join_ttl(&left, &right) {
                Some(ttl) => JoinState::Regular {
                    state_ttl: Some(ttl),
                    times: [first_time(Side::Left), first_time(Side::Right)],
                },
                None => {
                    // a full or anti join needs a time bound, whatever the TTL: say that first
                    let unbounded = JoinState::Regular { state_ttl: None, times: [None, None] };
                    check_join_kind(j, join_type, &unbounded, left_updating || right_updating)?;
                    let inner = matches!(join_type, JoinType::Inner);
                    let lookups = [self.lookup_candidate(&left), self.lookup_candidate(&right)];
                    return Err(unbounded_join(
                        &left,
                        &right,
                        left_until.is_some(),
                        right_until.is_some(),
                        inner,
                        lookups,
                    ));
                }
            },
        };
        if matches!(state, JoinState::Lookup) && left_keys.is_empty() {
            return Err(SqlError::not_supported("a lookup join without an equality between the two tables")
                .with_hint("join on a key: … JOIN t ON s.k = t.k"));
        }
        check_join_kind(j, join_type, &state, left_updating || right_updating)?;
        // the output columns in the order the join computes them
        let output_schema = match (swapped, join_type) {
            (true, JoinType::Left) => Arc::new(swap_columns(&j.schema, ls.fields().len())?),
            _ => Arc::clone(&j.schema),
        };
        let join = StreamJoin {
            join_type,
            state,
            left_keys,
            right_keys,
            filter,
            left_updating,
            right_updating,
            left_schema: ls,
            right_schema: rs,
            output_schema: Arc::clone(&output_schema),
        };
        self.input = Some(PlanInput::Join(Box::new(JoinNode { left, right, join })));
        if !Arc::ptr_eq(&output_schema, &j.schema) {
            // a right join's columns back in the order of its inputs
            self.ops.push(StreamOp::Project {
                exprs: j.schema.columns().into_iter().map(Expr::Column).collect(),
                input_schema: output_schema,
                output_schema: Arc::clone(&j.schema),
            });
        }
        Ok(())
    }

    /// One input of a join, planned as a branch of its own.
    fn join_input(&self, input: &LogicalPlan) -> Result<Branch> {
        let mut b = PipelineBuilder::new(self.catalog, self.settings);
        b.expand_window_rows = window_rows(input).is_some();
        b.convert(input)?;
        // HOP/CUMULATE rows reach the join expanded, one per window, or not at all
        if b.expand_window_rows && !b.ops.iter().any(|op| matches!(op, StreamOp::WindowRows(_))) {
            return Err(crate::bounds::not_expanded(window_rows(input).unwrap_or("HOP")));
        }
        self.processing_time.set(self.processing_time.get() || b.processing_time.get());
        self.event_time.set(self.event_time.get() || b.event_time.get());
        let Some(input) = b.input else {
            return Err(SqlError::not_supported("a join input without a table"));
        };
        Ok(Branch { input, ops: b.ops })
    }

    /// The state TTL of a regular join: a table option of either input, else the session's.
    fn join_ttl(&self, left: &Branch, right: &Branch) -> Option<StateTtl> {
        let sources: Vec<_> = left.input.sources().into_iter().chain(right.input.sources()).collect();
        let event_time = sources.iter().all(|s| s.table.watermark.is_some());
        let nanos = sources.iter().filter_map(|s| state_ttl(&s.table, self.settings)).min()?;
        Some(StateTtl { nanos, event_time })
    }
}

impl PipelineBuilder<'_> {
    /// A table read whole, without a watermark, with filters and projections over it: one
    /// whose connector says its input ends (a file that is not followed).
    fn is_static_table(&self, b: &Branch) -> bool {
        self.lookup_candidate(b).is_some_and(|t| t.watermark.is_none())
    }

    /// The table a branch reads with only filters and projections over it, if its input ends
    /// (so that, declared without a watermark, it could be a lookup table).
    fn lookup_candidate<'b>(&self, b: &'b Branch) -> Option<&'b TableDef> {
        file_table(b).filter(|t| self.catalog.is_bounded(&t.name))
    }
}

/// The table a branch reads with only filters and projections over it (a candidate lookup
/// table; whether its input ends is the catalog's to say).
fn file_table(b: &Branch) -> Option<&TableDef> {
    let PlanInput::Source(s) = &b.input else { return None };
    let stateless = b.ops.iter().all(|op| matches!(op, StreamOp::Filter { .. } | StreamOp::Project { .. }));
    (stateless && s.table.proctime.is_none()).then_some(&s.table)
}

/// The error for a join whose state nothing bounds (`inner`: an inner join, whose sides can
/// be swapped).
fn unbounded_join(
    left: &Branch,
    right: &Branch,
    left_bounded: bool,
    right_bounded: bool,
    inner: bool,
    lookups: [Option<&TableDef>; 2],
) -> SqlError {
    let names = |b: &Branch| b.input.sources().iter().map(|s| s.table.name.clone()).collect::<Vec<_>>().join(", ");
    let which = match (left_bounded, right_bounded) {
        (false, false) => format!("both inputs ({} and {})", names(left), names(right)),
        (false, true) => format!("the left input ({})", names(left)),
        _ => format!("the right input ({})", names(right)),
    };
    // a file table could be a lookup table: say what keeps it from being one
    let lookup = match (lookups[0], lookups[1]) {
        (Some(t), _) if t.watermark.is_none() && inner => format!(
            "a file table without a WATERMARK is read whole as a lookup table only on the right of a join: write \
             … FROM {} JOIN {} ON …; otherwise ",
            names(right),
            t.name
        ),
        (_, Some(t)) if t.watermark.is_some() => format!(
            "to read the file table {} whole first and match every row of the other input against it (a lookup \
             join), declare it without a WATERMARK; otherwise ",
            t.name
        ),
        (Some(t), _) if inner => format!(
            "to join against the file table {} as a lookup table, put it on the right of the join and declare it \
             without a WATERMARK; otherwise ",
            t.name
        ),
        _ => String::new(),
    };
    SqlError::not_supported(format!(
        "a join that keeps every row of {which} forever: nothing in its condition says when a row can no longer find a match"
    ))
    .with_hint(format!(
        "{lookup}bound it by time (… AND b.ts BETWEEN a.ts - INTERVAL '10' SECOND AND a.ts + INTERVAL '10' SECOND, or join \
         windowed results on window_start and window_end), or forget idle rows after a while \
         (SET state.ttl = '1 h', or the table option 'state_ttl')",
    ))
}
