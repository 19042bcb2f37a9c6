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
    /// Per side, the operators run in the join's instances.
    pub sides: [SideOps; 2],
    /// Per side, the keys its rows are hashed on, over its keyed operator's input.
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
/// passed on unchanged (through filters and projections) to the join. The sides'
/// [`SideOps::first_op`] are left 0 for the layout to number. Only for a join hashed on its
/// keys at all (keys of the same types on both sides).
pub(crate) fn co_partition(j: &JoinNode) -> Option<CoPartition> {
    let join = &j.join;
    let (left, left_keys) = trace(&j.left, &join.left_schema, &join.left_keys)?;
    let (right, right_keys) = trace(&j.right, &join.right_schema, &join.right_keys)?;
    let mut out = CoPartition {
        sides: [
            SideOps { ops: left..j.left.ops.len(), first_op: 0, positions: Vec::new() },
            SideOps { ops: right..j.right.ops.len(), first_op: 0, positions: Vec::new() },
        ],
        keys: [Vec::new(), Vec::new()],
        join_positions: Vec::new(),
    };
    for (i, pair) in left_keys.into_iter().zip(right_keys).enumerate() {
        if let (Some(l), Some(r)) = pair {
            for (side, (n, key)) in [l, r].into_iter().enumerate() {
                out.sides[side].positions.push(n);
                out.keys[side].push(key);
            }
            out.join_positions.push(i);
        }
    }
    (!out.join_positions.is_empty()).then_some(out)
}
