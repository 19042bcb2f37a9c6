//! Window aggregates run in two phases (Flink's local-global aggregation): in a parallel run,
//! a window aggregate whose rows come straight from a table read in splits is first
//! aggregated where each split is read, per key and slice of time (the rows of a slice
//! gathered over batches until the watermark could close one of its windows); the exchange
//! then hashes those partial aggregates, not the rows, to the window aggregate's instances,
//! which merge them. A window aggregate without keys runs in one instance: the partials of
//! every split go there, a few per slice instead of every row.
//!
//! ```text
//!   split k ─► stateless ops ─► partial per (keys, slice) ═ hash(keys) ═► merge into windows
//!   (q5: 9.2M bids over ~600 auctions per 2 s slice become ~1.2M partial rows)
//! ```
//!
//! Only with the setting `aggregate.phases` at `auto` (the default; `one` turns it off), only
//! when the table is read in several splits (the partials are computed by as many
//! threads), and only where it cannot change a result: windows that emit once (no allowed
//! lateness, no early results; a partial's rows cannot be told apart any more), aggregates
//! without an ordering of their own, a table that is no changelog, and no `'late_rows'` side
//! output (a partial cannot be written there as the rows it holds). Lateness is judged as with
//! the rows: each partial holds rows of one slice whose watermarks fall between the same two of
//! the slice's window ends, and carries the first one's watermark, so the window aggregate
//! drops or keeps it for the same windows as each of its rows (and counts one late row per row
//! it holds).

use datafusion_expr::Expr;

use crate::plan::{StreamOp, StreamPlan, WindowSpec};

/// Whether `op`, reading the rows of source `table` of `plan` (read in several splits), may
/// run in two phases.
pub(crate) fn two_phases(plan: &StreamPlan, table: usize, op: &StreamOp) -> bool {
    if plan.late_rows.is_some() || plan.sources().get(table).is_none_or(|t| t.changelog) {
        return false;
    }
    let StreamOp::WindowAggregate(w) = op else { return false };
    w.two_phase
        && !matches!(w.window, WindowSpec::Session { .. })
        && !w.emit.is_changelog()
        && w.aggr_exprs.iter().all(mergeable)
}

/// An aggregate whose partial states merge whatever order its rows came in.
fn mergeable(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => mergeable(&a.expr),
        Expr::AggregateFunction(f) => f.params.order_by.is_empty(),
        _ => false,
    }
}
