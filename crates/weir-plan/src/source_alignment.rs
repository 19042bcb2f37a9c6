//! How far apart in event time a parallel run's source instances may read (the runtime's
//! watermark alignment, for plans that join or union inputs): a second, or a window where a
//! join takes in only window aggregates' results.

use crate::plan::{Branch, PlanInput, StreamOp, StreamPlan, WindowSpec};

/// How far apart (in event time) a parallel run's source instances may read, at least: the
/// runtime's watermark alignment holds an instance back while its watermark is more than this
/// ahead of the lowest (see [`alignment_drift`]).
pub const ALIGNMENT_DRIFT_NANOS: i64 = 1_000_000_000;

/// How far apart (in event time) the source instances of `plan` may read: where every input of
/// every join and union in it comes out of window aggregates, the smallest of the inputs'
/// windows (an input's window: the largest of its aggregates' windows, or a session's gap;
/// aggregates that emit a changelog, early or late results, do not count), else
/// [`ALIGNMENT_DRIFT_NANOS`] (never less).
///
/// Such a join's inputs move a window at a time: a window's rows reach it together, when the
/// watermark passes the window's end. Sources that run a window apart make the join hold a
/// window's results more of one input than the other (at most size / slide windows with
/// hopping ones), rows already aggregated; sources kept closer than what one read spans wait
/// for each other after every read (q5 at parallelism 2: a bid split's read spans about 3.6 s
/// of event time, so with a second of drift its four splits took turns). A join with an input
/// of rows (q7's bids) keeps the second: the rows of a source ahead wait in the join's state.
/// An input's aggregates over the windows of an aggregate before them (q5's highest count per
/// window) move with those windows: the largest of its windows is the input's.
pub fn alignment_drift(plan: &StreamPlan) -> i64 {
    /// The largest window of the window aggregates among `ops`; `None` without one, or with
    /// one that emits before its window closes or again after (a changelog).
    fn window_of(ops: &[StreamOp]) -> Option<i64> {
        let windows: Vec<&crate::plan::WindowAggregate> = ops
            .iter()
            .filter_map(|op| match op {
                StreamOp::WindowAggregate(w) => Some(w),
                _ => None,
            })
            .collect();
        if windows.iter().any(|w| w.emit.is_changelog()) {
            return None;
        }
        windows
            .iter()
            .map(|w| match w.window {
                WindowSpec::Tumble { size_nanos } | WindowSpec::Hop { size_nanos, .. } => size_nanos,
                WindowSpec::Cumulate { max_size_nanos, .. } => max_size_nanos,
                WindowSpec::Session { gap_nanos } => gap_nanos,
            })
            .max()
    }
    /// The smallest window the inputs of the joins and unions under `input` allow; `None`
    /// when one of those inputs is not a window aggregate's output.
    fn allowed(input: &PlanInput) -> Option<i64> {
        let branches: Vec<&Branch> = match input {
            PlanInput::Source(_) => return Some(i64::MAX),
            PlanInput::Union(bs) => bs.iter().collect(),
            PlanInput::Join(j) => vec![&j.left, &j.right],
        };
        branches.iter().try_fold(i64::MAX, |least, b| Some(least.min(window_of(&b.ops)?).min(allowed(&b.input)?)))
    }
    match allowed(&plan.input) {
        Some(w) if w != i64::MAX => w.max(ALIGNMENT_DRIFT_NANOS),
        _ => ALIGNMENT_DRIFT_NANOS,
    }
}
