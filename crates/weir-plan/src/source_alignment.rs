//! How far apart in event time a parallel run's source instances may read (the runtime's
//! watermark alignment, for plans that join or union inputs): a second, or up to a minute where
//! the join or union takes in only windows' results.

use crate::plan::{Branch, PlanInput, StreamOp, StreamPlan, WindowSpec};

/// How far apart (in event time) a parallel run's source instances may read, at least: the
/// runtime's watermark alignment holds an instance back while its watermark is more than this
/// ahead of the lowest (see [`alignment_drift`]).
pub const ALIGNMENT_DRIFT_NANOS: i64 = 1_000_000_000;

/// The most [`alignment_drift`] gives, whatever the windows.
pub const MAX_ALIGNMENT_DRIFT_NANOS: i64 = 60_000_000_000;

/// How far apart (in event time) the source instances of `plan` may read: where every input of
/// every join and union in it comes out of window aggregates that emit each window once, the
/// smallest of the inputs' windows, at most [`MAX_ALIGNMENT_DRIFT_NANOS`]; else
/// [`ALIGNMENT_DRIFT_NANOS`] (never less). An input's window is the largest of its aggregates'
/// (an aggregate over the windows of one before it, as q5's highest count per window, moves
/// with those): a tumbling or hopping window's size, a cumulating window's step (its windows
/// emit at every step); sessions (a key's session closes at any time) and windows that emit
/// early or late results (a changelog) count as rows.
///
/// Such inputs move a window at a time: a window's results reach the join together, when the
/// watermark passes its end. Sources that run a window apart make the join hold a window's
/// results more of one input than of the other (at most size / slide windows with hopping
/// ones), rows already aggregated; sources kept closer than what one read spans wait for each
/// other after every read (q5 at parallelism 2: a bid split's read spans about 3.6 s of event
/// time, so with a second of drift its four splits took turns). A join with an input of rows
/// (q7's bids) keeps the second: the rows of a source ahead wait in the join's state.
pub fn alignment_drift(plan: &StreamPlan) -> i64 {
    /// The largest window of the window aggregates among `ops`; `None` without one, or with
    /// one whose results do not come a window at a time (a session, a changelog).
    fn window_of(ops: &[StreamOp]) -> Option<i64> {
        let windows = ops.iter().filter_map(|op| match op {
            StreamOp::WindowAggregate(w) => Some(w),
            _ => None,
        });
        let mut largest = None;
        for w in windows {
            let size = match w.window {
                _ if w.emit.is_changelog() => return None,
                WindowSpec::Session { .. } => return None,
                WindowSpec::Tumble { size_nanos } | WindowSpec::Hop { size_nanos, .. } => size_nanos,
                WindowSpec::Cumulate { step_nanos, .. } => step_nanos,
            };
            largest = largest.max(Some(size));
        }
        largest
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
        Some(w) if w != i64::MAX => w.clamp(ALIGNMENT_DRIFT_NANOS, MAX_ALIGNMENT_DRIFT_NANOS),
        _ => ALIGNMENT_DRIFT_NANOS,
    }
}
