//! Joins whose sides are already partitioned the join's way: when each side ends in a keyed
//! operator (a window or updating aggregate) one of whose keys becomes a join key, hashing that
//! side's rows on that key before its keyed operator puts every row where both the operator and
//! the join need it. The side's operators from its keyed one on then run in the join's
//! instances, with no exchange between them and the join (Nexmark q8: both windows keyed on
//! the person's id, joined on it).
//!
//! ```text
//!   before:  source ─hash(id, name)─► window ─hash(id, start, end)─► join
//!   after:   source ─hash(id)───────► window ─► join          (one stage)
//! ```
//!
//! When only one side ends so, that side's operators from its keyed one on run in the join's
//! instances all the same, and the other side is hashed on the join's keys where it ends (q5:
//! the highest count per window, keyed on the window's bounds, runs where the counts per
//! auction are joined with it, instead of in instances of its own):
//!
//! ```text
//!   before:  counts ─hash(start, end)─► max per window ─hash(start, end)─► join
//!   after:   counts ─hash(start, end)─► max per window ─► join         (one stage)
//!            counts per auction ──────hash(start, end)─────────────────► join
//! ```

use std::ops::Range;

use datafusion_common::DFSchema;
use datafusion_expr::Expr;

use crate::plan::{Branch, JoinNode, PlanInput, StreamOp};

/// The operators of one side of a join that run in the join's instances.
#[derive(Debug, Clone, PartialEq)]
pub struct SideOps {
    /// Their indices among the side's operators: its keyed operator and the stateless ones
    /// after it (empty: none).
    pub ops: Range<usize>,
    /// The operator number ([`crate::OpRef::Op`]) of `ops.start`.
    pub first_op: usize,
    /// Where the keys the side is hashed on are among its keyed operator's keys (its group
    /// keys, a window's bounds left out): how its state is hashed when the query is rescaled.
    pub positions: Vec<usize>,
}

/// How a join's sides are partitioned when they are the join's way (`co_partition`).
#[derive(Debug, Clone, PartialEq)]
pub struct CoPartition {
    /// Per side, the operators run in the join's instances (none: the side's rows are hashed on
    /// the join's keys where it ends, as into any join).
    pub sides: [SideOps; 2],
    /// Per side, the keys its rows are hashed on, over its keyed operator's input (a side
    /// without operators here: over its rows as they reach the join).
    pub keys: [Vec<Expr>; 2],
    /// The join keys (by position among the join's keys) those are.
    pub join_positions: Vec<usize>,
}

/// The keyed operator `op`'s keys (those it hashes on) and, for each, the position of its
/// column among the operator's output columns.
fn output_keys(op: &StreamOp) -> Option<Vec<(usize, Expr)>> {
    match op {
        StreamOp::WindowAggregate(w) => Some(w.keys().map(|(i, e)| (i, e.clone())).collect()),
        StreamOp::UpdatingAggregate(u) => Some(u.group_exprs.iter().cloned().enumerate().collect()),
        _ => None,
    }
}

/// The position among `schema`'s columns of the column `e` is (under an alias or not).
fn column_position(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_position(&a.expr, schema),
        _ => None,
    }
}

/// For a side whose rows have `schema`, the index of its keyed operator and, for each of
/// `join_keys`, where it is among that operator's keys and what that key is, when the join key
/// is that key's column passed on unchanged.
#[allow(clippy::type_complexity)]
fn trace(side: &Branch, schema: &DFSchema, join_keys: &[Expr]) -> Option<(usize, Vec<Option<(usize, Expr)>>)> {
    let start = side.ops.iter().rposition(|op| !matches!(op, StreamOp::Filter { .. } | StreamOp::Project { .. }))?;
    // a keyed operator first after a union or a join is routed by it: leave those alone
    if start == 0 && !matches!(side.input, PlanInput::Source(_)) {
        return None;
    }
    let keys = output_keys(&side.ops[start])?;
    if keys.is_empty() {
        return None;
    }
    let traced = join_keys
        .iter()
        .map(|key| {
            let mut at = column_position(key, schema)?;
            for op in side.ops[start + 1..].iter().rev() {
                at = match op {
                    StreamOp::Filter { .. } => at,
                    StreamOp::Project { exprs, input_schema, .. } => column_position(exprs.get(at)?, input_schema)?,
                    _ => return None,
                };
            }
            let n = keys.iter().position(|(column, _)| *column == at)?;
            Some((n, keys[n].1.clone()))
        })
        .collect();
    Some((start, traced))
}

/// Whether `j`'s sides can be hashed on some of its keys before their keyed operators (see the
/// module's doc), and how: the join keys that are keys of both sides' last keyed operators,
/// passed on unchanged (through filters and projections) to the join. When no key is one of
/// both, the join keys that are keys of one side's last keyed operator: that side's operators
/// from it on run in the join's instances, and the other side's rows are hashed on those join
/// keys where that side ends, as into any join (Nexmark q5: the highest count per window is
/// keyed on the window's bounds, the join's keys, and the counts per auction are not). The
/// sides' [`SideOps::first_op`] are left 0 for the layout to number. Only for a join hashed on
/// its keys at all (keys of the same types on both sides).
pub(crate) fn co_partition(j: &JoinNode) -> Option<CoPartition> {
    let join = &j.join;
    let left = trace(&j.left, &join.left_schema, &join.left_keys);
    let right = trace(&j.right, &join.right_schema, &join.right_keys);
    let both = match (&left, &right) {
        (Some((l, lk)), Some((r, rk))) => partitioned(j, [Some((*l, lk)), Some((*r, rk))]),
        _ => None,
    };
    both.or_else(|| left.as_ref().and_then(|(l, lk)| partitioned(j, [Some((*l, lk)), None])))
        .or_else(|| right.as_ref().and_then(|(r, rk)| partitioned(j, [None, Some((*r, rk))])))
}

/// What a side traced: its keyed operator's index, and per join key where it is among that
/// operator's keys, and what that key is.
type Traced<'a> = (usize, &'a Vec<Option<(usize, Expr)>>);

/// The co-partition of `j`'s sides moved into the join's instances (`None`: a side that stays
/// where it is, hashed on its join keys): on the join keys every moved side has among its
/// keys; `None` if there are none.
fn partitioned(j: &JoinNode, sides: [Option<Traced<'_>>; 2]) -> Option<CoPartition> {
    let lens = [j.left.ops.len(), j.right.ops.len()];
    let join_keys = [&j.join.left_keys, &j.join.right_keys];
    let ops = |side: usize| sides[side].map_or(lens[side]..lens[side], |(start, _)| start..lens[side]);
    let mut out = CoPartition {
        sides: [
            SideOps { ops: ops(0), first_op: 0, positions: Vec::new() },
            SideOps { ops: ops(1), first_op: 0, positions: Vec::new() },
        ],
        keys: [Vec::new(), Vec::new()],
        join_positions: Vec::new(),
    };
    for i in 0..join_keys[0].len() {
        let traced: Vec<Option<Option<&(usize, Expr)>>> =
            sides.iter().map(|s| s.map(|(_, keys)| keys.get(i).and_then(Option::as_ref))).collect();
        if traced.iter().any(|t| matches!(t, Some(None))) {
            continue; // not a key of a moved side
        }
        for (side, t) in traced.into_iter().enumerate() {
            match t {
                Some(Some((n, key))) => {
                    out.sides[side].positions.push(*n);
                    out.keys[side].push(key.clone());
                }
                // a side that stays: hashed on the join key where it ends
                _ => out.keys[side].extend(join_keys[side].get(i).cloned()),
            }
        }
        out.join_positions.push(i);
    }
    (!out.join_positions.is_empty()).then_some(out)
}
