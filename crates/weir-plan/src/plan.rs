//! The streaming plan: what the runtime executes and what `EXPLAIN` prints.
//!
//! A plan is a tree: sources at the leaves, each followed by a chain of operators, merged by
//! `UNION ALL` or joined, up to the sink:
//!
//! ```text
//!   Source ──► [Filter | Project]* ──► [WindowAggregate | UpdatingAggregate ──► [Filter | Project]*]* ──► Sink
//!   Source ──► … ─┐
//!                 ├─► Join | Union ──► … ──► Sink
//!   Source ──► … ─┘
//! ```
//!
//! Everything up to the first updating aggregate is append-only; from there on the rows are
//! a changelog (`+I`, `-U`, `+U`, `-D`), which filters and projections pass through and a
//! further updating aggregate (or a join) consumes by retracting. `EXPLAIN` (in `explain.rs`)
//! prints the tree.
//!
//! Expressions stay DataFusion logical expressions together with the schema they are
//! evaluated against, so the runtime can turn them into physical expressions with
//! DataFusion's own `create_physical_expr`.

use std::fmt;

use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, SortExpr};
use serde::Serialize;

use crate::duration::format_duration;
use crate::table::TableDef;

/// Where a pipeline reads from.
#[derive(Debug, Clone)]
pub struct SourceNode {
    /// The table read.
    pub table: TableDef,
    /// Columns of the table the pipeline needs (indices into the declared schema); `None` = all.
    pub projection: Option<Vec<usize>>,
    /// Schema of the batches the source hands to the first operator.
    pub output_schema: DFSchemaRef,
    /// The pipeline's watermark is the wall clock (a window is over the table's `PROCTIME()`
    /// column), not the table's event-time watermark.
    pub processing_time: bool,
    /// The table is a changelog (its connector reads +I/-U/+U/-D rows: `debezium-json`,
    /// `upsert-kafka`), not only inserts.
    pub changelog: bool,
}

/// The kinds of window a bound function belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// `TUMBLE(ts, size)`.
    Tumble,
    /// `HOP(ts, slide, size)`.
    Hop,
    /// `CUMULATE(ts, step, max_size)`.
    Cumulate,
    /// `SESSION(ts, gap)`.
    Session,
}

impl WindowKind {
    /// The SQL name (`TUMBLE`, `HOP`, …).
    pub fn sql_name(&self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Cumulate => "CUMULATE",
            WindowKind::Session => "SESSION",
        }
    }

    /// Number of interval arguments after the time column.
    pub fn interval_args(&self) -> usize {
        match self {
            WindowKind::Tumble | WindowKind::Session => 1,
            WindowKind::Hop | WindowKind::Cumulate => 2,
        }
    }
}

/// When a window emits results before it closes (`window.emit_early`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EarlyEmit {
    /// Only when the watermark passes the window's end (the default, `'off'`).
    Off,
    /// After every input batch that changes the window (`'update'`).
    OnUpdate,
    /// At most once per this many nanoseconds of processing time (e.g. `'5 s'`), checked as
    /// input arrives.
    Every(i64),
}

/// Kind and size of an event-time window. All windows but sessions are aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WindowSpec {
    /// Fixed-size, non-overlapping windows `[k·size, (k+1)·size)`.
    Tumble {
        /// Window length in nanoseconds.
        size_nanos: i64,
    },
    /// Fixed-size windows `[k·slide, k·slide + size)`, one starting every `slide`; a row
    /// belongs to every window containing it.
    Hop {
        /// Distance between window starts, in nanoseconds.
        slide_nanos: i64,
        /// Window length in nanoseconds.
        size_nanos: i64,
    },
    /// Windows `[k·max, k·max + j·step)` for `j = 1 … max/step`: a window that grows by `step`
    /// until it reaches `max_size`, then starts again.
    Cumulate {
        /// Growth step in nanoseconds.
        step_nanos: i64,
        /// Largest window, in nanoseconds (a multiple of the step).
        max_size_nanos: i64,
    },
    /// Per key, rows less than `gap` apart form one session `[first, last + gap)`.
    Session {
        /// Inactivity gap in nanoseconds.
        gap_nanos: i64,
    },
}

/// A hopping or cumulating window is merged from at most this many slices when it fires.
pub const MAX_SLICES_PER_WINDOW: i64 = 10_000;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WindowSpec {
    /// The slice every window of this kind is made of: `gcd(slide, size)` for HOP, the step for
    /// CUMULATE, the window for TUMBLE; `None` for sessions, which are not sliced.
    pub fn slice_nanos(&self) -> Option<i64> {
        match *self {
            WindowSpec::Tumble { size_nanos } => Some(size_nanos),
            WindowSpec::Hop { slide_nanos, size_nanos } => Some(gcd(slide_nanos, size_nanos)),
            WindowSpec::Cumulate { step_nanos, .. } => Some(step_nanos),
            WindowSpec::Session { .. } => None,
        }
    }

    /// The window of `kind` with the given interval arguments (in SQL order), checked.
    pub fn new(kind: WindowKind, nanos: &[i64]) -> Result<Self, String> {
        if nanos.iter().any(|n| *n <= 0) {
            return Err("window sizes must be positive intervals".into());
        }
        let too_fine = |windows: i64, what: &str| {
            Err(format!("{what} would need {windows} slices per window; at most {MAX_SLICES_PER_WINDOW} are supported"))
        };
        match (kind, nanos) {
            (WindowKind::Tumble, [size]) => Ok(WindowSpec::Tumble { size_nanos: *size }),
            (WindowKind::Hop, [slide, size]) if size / gcd(*slide, *size) > MAX_SLICES_PER_WINDOW => too_fine(
                size / gcd(*slide, *size),
                &format!(
                    "a {} window sliding by {} (slices of {})",
                    format_duration(*size),
                    format_duration(*slide),
                    format_duration(gcd(*slide, *size))
                ),
            ),
            (WindowKind::Hop, [slide, size]) => Ok(WindowSpec::Hop { slide_nanos: *slide, size_nanos: *size }),
            (WindowKind::Cumulate, [step, max]) if max % step == 0 && max / step > MAX_SLICES_PER_WINDOW => too_fine(
                max / step,
                &format!("a max size of {} in steps of {}", format_duration(*max), format_duration(*step)),
            ),
            (WindowKind::Cumulate, [step, max]) if max % step != 0 => Err(format!(
                "the max size ({}) must be a multiple of the step ({})",
                format_duration(*max),
                format_duration(*step)
            )),
            (WindowKind::Cumulate, [step, max]) => Ok(WindowSpec::Cumulate { step_nanos: *step, max_size_nanos: *max }),
            (WindowKind::Session, [gap]) => Ok(WindowSpec::Session { gap_nanos: *gap }),
            (kind, _) => Err(format!("{} takes a time column and {} intervals", kind.sql_name(), kind.interval_args())),
        }
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Tumble { size_nanos } => write!(f, "TUMBLE(size {})", format_duration(*size_nanos)),
            WindowSpec::Hop { slide_nanos, size_nanos } => {
                write!(f, "HOP(slide {}, size {})", format_duration(*slide_nanos), format_duration(*size_nanos))
            }
            WindowSpec::Cumulate { step_nanos, max_size_nanos } => write!(
                f,
                "CUMULATE(step {}, max size {})",
                format_duration(*step_nanos),
                format_duration(*max_size_nanos)
            ),
            WindowSpec::Session { gap_nanos } => write!(f, "SESSION(gap {})", format_duration(*gap_nanos)),
        }
    }
}

/// Which bound of the window a group column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WindowColumn {
    /// `window_start` (inclusive).
    Start,
    /// `window_end` (exclusive).
    End,
    /// `window_time`: `window_end` − 1 ms, the rowtime of the window's result.
    Time,
}

/// An aggregate over event-time windows, emitted once per window when the watermark passes
/// the window's end.
#[derive(Debug, Clone)]
pub struct WindowAggregate {
    /// The window.
    pub window: WindowSpec,
    /// The event-time column the window is over, as `table.column`.
    pub time_column: String,
    /// Group expressions, including the window bound(s).
    pub group_exprs: Vec<Expr>,
    /// Which of `group_exprs` are window bounds, and which bound each is. The window
    /// aggregate computes their values itself; the others are the grouping keys.
    pub window_columns: Vec<(usize, WindowColumn)>,
    /// An expression over the input whose value, plus `time_offset_nanos`, is an event time
    /// inside the row's window (for a tumbling window planned from a TVF it is a window bound
    /// column; otherwise the event time itself).
    pub time: Expr,
    /// Added to `time` (e.g. −1 ns when `time` is a window end).
    pub time_offset_nanos: i64,
    /// Aggregate expressions (DataFusion aggregate functions).
    pub aggr_exprs: Vec<Expr>,
    /// Schema the expressions are evaluated against.
    pub input_schema: DFSchemaRef,
    /// Output: group columns then aggregate columns.
    pub output_schema: DFSchemaRef,
    /// When windows emit: once, or also early and with late corrections (a changelog).
    pub emit: WindowEmit,
    /// Whether it may run in two phases in a parallel run (the setting `aggregate.phases`).
    pub two_phase: bool,
}

impl WindowAggregate {
    /// Its grouping keys (the group expressions that are not window bounds), each with its
    /// position among the group expressions (and so among the output's columns).
    pub fn keys(&self) -> impl Iterator<Item = (usize, &Expr)> {
        self.group_exprs.iter().enumerate().filter(|(i, _)| !self.window_columns.iter().any(|(c, _)| c == i))
    }

    /// An aggregate over the windows of its input (grouped by a windowed result's bound): one
    /// window per value of that time, closing when the watermark reaches it.
    pub fn is_cascaded(&self) -> bool {
        self.window_columns.is_empty() && self.window == WindowSpec::Tumble { size_nanos: 1 }
    }
}

/// When a window aggregate emits its windows.
///
/// By default each window emits once (`+I` rows, append-only) when the watermark passes its
/// end. With an allowed lateness it keeps its state until `end + lateness`; a row arriving in
/// that span updates the emitted result (`-U` old row, `+U` new row). With early emission it
/// also emits its current value before it closes. Either makes the result a changelog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowEmit {
    /// How long after its end a window still accepts rows, in nanoseconds (0: none).
    pub allowed_lateness_nanos: i64,
    /// Whether, and how often, a window emits before it closes.
    pub early: EarlyEmit,
}

impl WindowEmit {
    /// Emit once per window, drop every late row.
    pub const ONCE: WindowEmit = WindowEmit { allowed_lateness_nanos: 0, early: EarlyEmit::Off };

    /// Whether the windows' results are a changelog.
    pub fn is_changelog(&self) -> bool {
        self.allowed_lateness_nanos > 0 || self.early != EarlyEmit::Off
    }

    /// EXPLAIN's description (`session`: bounds that move change the row, -D/+I).
    pub(crate) fn describe(&self, session: bool) -> String {
        let changes = if session { "-U/+U, or -D/+I when a session's bounds move" } else { "-U/+U" };
        let corrections = if session { format!("corrections ({changes})") } else { format!("{changes} corrections") };
        let early = match self.early {
            EarlyEmit::Off => String::new(),
            EarlyEmit::OnUpdate => format!("the current value (+I, then {changes}) after each batch that changes it, "),
            EarlyEmit::Every(n) => {
                format!(
                    "the current value (+I, then {changes}) at most every {} of processing time, ",
                    format_duration(n)
                )
            }
        };
        match (self.allowed_lateness_nanos, early.is_empty()) {
            (0, true) => "once per window when the watermark passes window_end, state: open windows only".into(),
            (0, false) => format!("{early}final when the watermark passes window_end, state: open windows only"),
            (l, _) => format!(
                "{early}{} when the watermark passes window_end, then {corrections} for rows up to {} late, state: windows until the watermark passes window_end + {}",
                if early.is_empty() { "+I" } else { "final" },
                format_duration(l),
                format_duration(l)
            ),
        }
    }
}

/// How long an updating aggregate keeps a key that receives no rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateTtl {
    /// The time to live, in nanoseconds.
    pub nanos: i64,
    /// Measured in event time (the watermark) when the source has a watermark; otherwise in
    /// processing time (the wall clock).
    pub event_time: bool,
}

/// A `GROUP BY` without a window: an updating result. Each input batch changes some groups;
/// for each, the operator emits `+I` (new group), `-U` and `+U` (changed value) or `-D`
/// (group emptied by retractions).
#[derive(Debug, Clone)]
pub struct UpdatingAggregate {
    /// Group expressions.
    pub group_exprs: Vec<Expr>,
    /// Aggregate expressions (DataFusion aggregate functions).
    pub aggr_exprs: Vec<Expr>,
    /// The input is itself a changelog, so the aggregates must retract.
    pub retracting: bool,
    /// Forget keys idle for this long (`'state_ttl'` on the source table, or `SET state.ttl`).
    pub state_ttl: Option<StateTtl>,
    /// Schema the expressions are evaluated against.
    pub input_schema: DFSchemaRef,
    /// Output: group columns then aggregate columns.
    pub output_schema: DFSchemaRef,
}

/// After a source of upserts (`upsert-kafka`): each key's latest row, as a changelog. A new
/// row of a key retracts its old one (`-U`/`+U`), a removal (tombstone) deletes it.
#[derive(Debug, Clone)]
pub struct UpsertNormalize {
    /// The primary key's columns (indices into the schema).
    pub key: Vec<usize>,
    /// Forget keys idle for this long.
    pub state_ttl: Option<StateTtl>,
    /// Schema of input and output rows (the table's columns).
    pub schema: DFSchemaRef,
}

/// What a bounded `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKind {
    /// Partitioned by a window's end (and usually its start and keys): the top rows of each
    /// partition, emitted once when the watermark passes the window's end (Flink's window
    /// Top-N). Append-only.
    WindowTopN {
        /// Index of the input column holding `window_end`.
        end_column: usize,
        /// The rows come straight from a window table function (not from a window
        /// aggregate), so each is judged late against its watermark.
        judge_lateness: bool,
    },
    /// Partitioned by keys only, first row only: deduplication (Flink's keep-first with
    /// `ORDER BY ts`, keep-last with `ORDER BY ts DESC`). A later row that ranks first
    /// replaces the kept one, so the result is a changelog.
    Deduplicate {
        /// Forget keys idle for this long.
        state_ttl: Option<StateTtl>,
    },
    /// Partitioned by keys only, the first N rows: a Top-N per key (Flink's rank with a row
    /// number). A row entering the top N shifts the ranks below it, so the result is a
    /// changelog.
    TopN {
        /// Forget keys idle for this long.
        state_ttl: Option<StateTtl>,
    },
}

/// `SELECT … FROM (SELECT …, ROW_NUMBER() OVER (…) AS rn FROM …) WHERE rn <= N`.
#[derive(Debug, Clone)]
pub struct Rank {
    /// `PARTITION BY` expressions.
    pub partition_by: Vec<Expr>,
    /// `ORDER BY` of the row number.
    pub order_by: Vec<SortExpr>,
    /// Rows kept per partition.
    pub limit: usize,
    /// Window Top-N or deduplication.
    pub kind: RankKind,
    /// Schema the expressions are evaluated against.
    pub input_schema: DFSchemaRef,
    /// Output: the input columns then the row number (UInt64).
    pub output_schema: DFSchemaRef,
}

/// Which rows a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JoinType {
    /// Pairs of matching rows.
    Inner,
    /// Pairs of matching rows, and each left row without a match padded with NULLs.
    Left,
    /// Pairs of matching rows, and each row of either side without a match padded with NULLs.
    Full,
    /// Each left row with a match, once (`IN`, `EXISTS`): the left columns only.
    Semi,
    /// Each left row without a match (`NOT EXISTS`): the left columns only.
    Anti,
}

/// A time computed from a row: a TIMESTAMP column plus a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RowTime {
    /// The column (index into the row's schema).
    pub column: usize,
    /// Added to the column's value, in nanoseconds.
    pub offset_nanos: i64,
}

/// How a join bounds the rows it keeps.
#[derive(Debug, Clone)]
pub enum JoinState {
    /// An interval join (a window join is one: equal window bounds). A row is kept until the
    /// watermark passes the bound its `…_until` expression computes from it (the join's time
    /// condition says no later row of the other side can match it); a row whose time (`…_time`)
    /// is behind the watermark when it arrives is late (dropped and counted: its matches may be
    /// gone).
    Interval {
        /// Event time of a left row.
        left_time: RowTime,
        /// Event time of a right row.
        right_time: RowTime,
        /// Until when a left row can match a right row that is not late.
        left_until: RowTime,
        /// Until when a right row can match a left row that is not late.
        right_until: RowTime,
        /// The time condition, for EXPLAIN.
        condition: String,
    },
    /// A regular join: rows are kept for the TTL after their event time (or, for a side
    /// without one, after the first watermark that follows them), or forever.
    Regular {
        /// How long a row is kept.
        state_ttl: Option<StateTtl>,
        /// Each side's event time, if it has one.
        times: [Option<RowTime>; 2],
    },
    /// A lookup join: the right side is a bounded table, read whole before any left row; left
    /// rows are matched against it as they come and not kept.
    Lookup,
}

/// A join of two streams.
#[derive(Debug, Clone)]
pub struct StreamJoin {
    /// Inner or left outer.
    pub join_type: JoinType,
    /// How the state is bounded.
    pub state: JoinState,
    /// Equi-join keys over the left schema…
    pub left_keys: Vec<Expr>,
    /// …equal to these over the right schema.
    pub right_keys: Vec<Expr>,
    /// The rest of the condition, over the output schema.
    pub filter: Option<Expr>,
    /// Whether the left input is a changelog.
    pub left_updating: bool,
    /// Whether the right input is a changelog.
    pub right_updating: bool,
    /// Schema of left rows.
    pub left_schema: DFSchemaRef,
    /// Schema of right rows.
    pub right_schema: DFSchemaRef,
    /// Output: the left columns then the right ones.
    pub output_schema: DFSchemaRef,
}

impl StreamJoin {
    /// Whether the join's output is a changelog: over a changelog, or a regular left join
    /// (whose NULL-padded rows are retracted when a match arrives).
    pub fn emits_changelog(&self) -> bool {
        self.left_updating
            || self.right_updating
            || (self.join_type == JoinType::Left && matches!(self.state, JoinState::Regular { .. }))
    }
}

/// The rows of a HOP or CUMULATE table function, one per window a row is in (a join's input:
/// aggregates read the markers instead): the input columns, then `window_start` and
/// `window_end`.
#[derive(Debug, Clone)]
pub struct WindowRows {
    /// The windows.
    pub window: WindowSpec,
    /// The rows' time.
    pub time: Expr,
    /// Schema of the input rows.
    pub input_schema: DFSchemaRef,
    /// The input columns, then the window's start and end.
    pub output_schema: DFSchemaRef,
}

/// One operator of a pipeline.
#[derive(Debug, Clone)]
pub enum StreamOp {
    /// Keep rows where the predicate is true.
    Filter {
        /// Boolean expression.
        predicate: Expr,
        /// Schema of input (and output) rows.
        input_schema: DFSchemaRef,
    },
    /// Compute new columns from each row.
    Project {
        /// One expression per output column.
        exprs: Vec<Expr>,
        /// Schema of input rows.
        input_schema: DFSchemaRef,
        /// Schema of output rows.
        output_schema: DFSchemaRef,
    },
    /// Windowed aggregation.
    WindowAggregate(WindowAggregate),
    /// Non-windowed aggregation: emits a changelog.
    UpdatingAggregate(UpdatingAggregate),
    /// Window Top-N or deduplication.
    Rank(Rank),
    /// Upserts made a changelog.
    UpsertNormalize(UpsertNormalize),
    /// Aggregates over each row's preceding rows (`OVER`).
    OverAggregate(crate::over::OverAggregate),
    /// A HOP or CUMULATE table function's rows, one per window.
    WindowRows(WindowRows),
}

impl StreamOp {
    /// Schema of the rows this operator emits.
    pub fn output_schema(&self) -> &DFSchemaRef {
        match self {
            StreamOp::Filter { input_schema, .. } => input_schema,
            StreamOp::Project { output_schema, .. } => output_schema,
            StreamOp::WindowAggregate(w) => &w.output_schema,
            StreamOp::UpdatingAggregate(u) => &u.output_schema,
            StreamOp::Rank(r) => &r.output_schema,
            StreamOp::UpsertNormalize(u) => &u.schema,
            StreamOp::OverAggregate(o) => &o.output_schema,
            StreamOp::WindowRows(w) => &w.output_schema,
        }
    }

    /// Whether this operator turns its input into a changelog.
    pub fn emits_changelog(&self) -> bool {
        match self {
            StreamOp::WindowAggregate(w) => w.emit.is_changelog(),
            StreamOp::UpdatingAggregate(_)
            | StreamOp::UpsertNormalize(_)
            | StreamOp::Rank(Rank { kind: RankKind::Deduplicate { .. } | RankKind::TopN { .. }, .. }) => true,
            _ => false,
        }
    }
}

/// Where a pipeline's results go.
#[derive(Debug, Clone)]
pub enum SinkNode {
    /// Back to whoever ran the query (stdout for `weir run`).
    Client,
    /// A declared table (`INSERT INTO`).
    Table(TableDef),
}

/// Where the rows entering a chain of operators come from.
#[derive(Debug, Clone)]
pub enum PlanInput {
    /// A table.
    Source(SourceNode),
    /// `UNION ALL`: the branches' rows merged; the watermark is the minimum of theirs.
    Union(Vec<Branch>),
    /// A join of two branches.
    Join(Box<JoinNode>),
}

/// A sub-pipeline: an input and the operators its rows pass, in data-flow order.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Where the rows come from.
    pub input: PlanInput,
    /// Operators, in data-flow order.
    pub ops: Vec<StreamOp>,
}

/// A join and its two inputs.
#[derive(Debug, Clone)]
pub struct JoinNode {
    /// The left input.
    pub left: Branch,
    /// The right input.
    pub right: Branch,
    /// How they are joined.
    pub join: StreamJoin,
}

impl PlanInput {
    /// Schema of the rows this input produces.
    pub fn output_schema(&self) -> &DFSchemaRef {
        match self {
            PlanInput::Source(s) => &s.output_schema,
            PlanInput::Union(branches) => branches[0].output_schema(),
            PlanInput::Join(j) => &j.join.output_schema,
        }
    }

    /// The tables read, left to right (the order of [`OpRef::Source`]).
    pub fn sources(&self) -> Vec<&SourceNode> {
        let mut out = Vec::new();
        self.collect_sources(&mut out);
        out
    }

    fn collect_sources<'a>(&'a self, out: &mut Vec<&'a SourceNode>) {
        match self {
            PlanInput::Source(s) => out.push(s),
            PlanInput::Union(branches) => branches.iter().for_each(|b| b.input.collect_sources(out)),
            PlanInput::Join(j) => {
                j.left.input.collect_sources(out);
                j.right.input.collect_sources(out);
            }
        }
    }

    /// Every source, mutably.
    pub fn sources_mut(&mut self) -> Vec<&mut SourceNode> {
        match self {
            PlanInput::Source(s) => vec![s],
            PlanInput::Union(branches) => branches.iter_mut().flat_map(|b| b.input.sources_mut()).collect(),
            PlanInput::Join(j) => {
                let mut v = j.left.input.sources_mut();
                v.extend(j.right.input.sources_mut());
                v
            }
        }
    }

    /// Whether any operator below emits a changelog.
    pub fn is_updating(&self) -> bool {
        match self {
            PlanInput::Source(s) => s.changelog,
            PlanInput::Union(branches) => branches.iter().any(Branch::is_updating),
            PlanInput::Join(j) => j.join.emits_changelog() || j.left.is_updating() || j.right.is_updating(),
        }
    }
}

impl Branch {
    /// Schema of the rows leaving the branch.
    pub fn output_schema(&self) -> &DFSchemaRef {
        self.ops.last().map(StreamOp::output_schema).unwrap_or_else(|| self.input.output_schema())
    }

    /// Whether the branch's rows are a changelog.
    pub fn is_updating(&self) -> bool {
        self.input.is_updating() || self.ops.iter().any(StreamOp::emits_changelog)
    }
}

/// A complete streaming pipeline: an input tree, the operators after it, and a sink.
///
/// ```text
///   Source ─► ops ─┐                                   ┌─► ops ─► Sink
///   Source ─► ops ─┴─► Union (watermark = min) ─► ops ─┤
///                                                       ...
///   left branch ──┐
///                 ├─► Join ─► ops ─► Sink
///   right branch ─┘
/// ```
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Where the rows come from.
    pub input: PlanInput,
    /// Operators after the input, in data-flow order.
    pub ops: Vec<StreamOp>,
    /// The sink.
    pub sink: SinkNode,
    /// Where rows dropped by an operator (late, or without an event time) go, unchanged, with
    /// the reason: the table named by the source's `'late_rows'` option (a query over one
    /// table only).
    pub late_rows: Option<TableDef>,
}

impl StreamPlan {
    /// Schema of the rows reaching the sink.
    pub fn output_schema(&self) -> &DFSchemaRef {
        self.ops.last().map(StreamOp::output_schema).unwrap_or_else(|| self.input.output_schema())
    }

    /// The tables read, left to right.
    pub fn sources(&self) -> Vec<&SourceNode> {
        self.input.sources()
    }

    /// The first table read (whose options — late rows, allowed lateness, state TTL — apply
    /// to a query over one table or a union).
    pub fn first_source(&self) -> &SourceNode {
        let mut input = &self.input;
        loop {
            match input {
                PlanInput::Source(s) => return s,
                PlanInput::Union(branches) => input = &branches[0].input,
                PlanInput::Join(j) => input = &j.left.input,
            }
        }
    }

    /// Whether the sink receives a changelog (rows with an `op` column) rather than only inserts.
    pub fn is_updating(&self) -> bool {
        self.input.is_updating() || self.ops.iter().any(StreamOp::emits_changelog)
    }
}

/// Which runtime operator a plan node becomes, so run-time metrics can be shown against the
/// plan (`EXPLAIN ANALYZE`). Sources and operators are numbered in data-flow order: a
/// branch's input before its operators, a join's left branch before its right, the join
/// after both ([`OpCounter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum OpRef {
    /// Source `n` ([`StreamPlan::sources`] order).
    Source(usize),
    /// Operator `n` (a join counts as one).
    Op(usize),
}

/// Hands out [`OpRef`]s in data-flow order; the runtime and EXPLAIN walk the plan the same
/// way.
#[derive(Debug, Default)]
pub struct OpCounter {
    sources: usize,
    ops: usize,
}

impl OpCounter {
    /// The next source's reference.
    pub fn source(&mut self) -> OpRef {
        self.sources += 1;
        OpRef::Source(self.sources - 1)
    }

    /// The next operator's reference.
    pub fn op(&mut self) -> OpRef {
        self.ops += 1;
        OpRef::Op(self.ops - 1)
    }
}
