//! The streaming plan: what the runtime executes and what `EXPLAIN` prints.
//!
//! A plan is a linear pipeline (joins and unions come later):
//!
//! ```text
//!   Source ──► [Filter | Project]* ──► [WindowAggregate | UpdatingAggregate ──► [Filter | Project]*]* ──► Sink
//! ```
//!
//! Everything up to the first updating aggregate is append-only; from there on the rows are
//! a changelog (`+I`, `-U`, `+U`, `-D`), which filters and projections pass through and a
//! further updating aggregate consumes by retracting.
//!
//! Expressions stay DataFusion logical expressions together with the schema they are
//! evaluated against, so the runtime can turn them into physical expressions with
//! DataFusion's own `create_physical_expr`.

use std::fmt::{self, Write};

use datafusion_common::DFSchemaRef;
use datafusion_expr::{Expr, SortExpr};
use serde::Serialize;

use crate::catalog::{sql_type_name, TableDef, WatermarkDef};
use crate::options::EarlyEmit;
use crate::window_fn::{format_duration, WindowKind};

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
    fn describe(&self, session: bool) -> String {
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
        }
    }

    /// Whether this operator turns its input into a changelog.
    pub fn emits_changelog(&self) -> bool {
        match self {
            StreamOp::WindowAggregate(w) => w.emit.is_changelog(),
            StreamOp::UpdatingAggregate(_) | StreamOp::Rank(Rank { kind: RankKind::Deduplicate { .. }, .. }) => true,
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

/// An input of a `UNION ALL`: a source and the stateless operators its rows pass before they
/// are merged with the other inputs.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The source.
    pub source: SourceNode,
    /// Filters and projections, in data-flow order.
    pub ops: Vec<StreamOp>,
}

/// A complete streaming pipeline.
///
/// ```text
///   source ─► source_ops ─┐
///   union[0] ─► ops ──────┼─► merge (watermark = min over inputs) ─► ops ─► sink
///   union[1] ─► ops ──────┘
/// ```
/// A query over one table has no `union` and no `source_ops`.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// The first (or only) source.
    pub source: SourceNode,
    /// With `union`: the stateless operators the first source's rows pass before the merge.
    pub source_ops: Vec<StreamOp>,
    /// The other inputs of a `UNION ALL`.
    pub union: Vec<PlanInput>,
    /// Operators, in data-flow order (after the merge).
    pub ops: Vec<StreamOp>,
    /// The sink.
    pub sink: SinkNode,
    /// Where rows dropped by an operator (late, or without an event time) go, unchanged, with
    /// the reason: the table named by the source's `'late_rows'` option.
    pub late_rows: Option<TableDef>,
}

impl StreamPlan {
    /// Schema of the rows reaching the sink.
    pub fn output_schema(&self) -> &DFSchemaRef {
        self.ops.last().map(StreamOp::output_schema).unwrap_or_else(|| self.merged_schema())
    }

    /// Schema of the rows entering `ops` (the first input's, after its `source_ops`).
    pub fn merged_schema(&self) -> &DFSchemaRef {
        self.source_ops.last().map(StreamOp::output_schema).unwrap_or(&self.source.output_schema)
    }

    /// Every input: the first source with its `source_ops`, then the `union` inputs.
    pub fn inputs(&self) -> Vec<(&SourceNode, &[StreamOp])> {
        std::iter::once((&self.source, self.source_ops.as_slice()))
            .chain(self.union.iter().map(|u| (&u.source, u.ops.as_slice())))
            .collect()
    }

    /// Whether the sink receives a changelog (rows with an `op` column) rather than only inserts.
    pub fn is_updating(&self) -> bool {
        self.ops.iter().any(StreamOp::emits_changelog)
    }

    /// A serialisable description of the plan (what EXPLAIN prints, as data).
    pub fn describe(&self) -> Vec<PlanNodeDescription> {
        let mut nodes = Vec::new();
        let cols = |s: &DFSchemaRef| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        nodes.push(PlanNodeDescription {
            depth: 0,
            op: None,
            operator: "Sink".into(),
            details: match &self.sink {
                SinkNode::Client if self.is_updating() => {
                    format!("client, changelog, columns: op, {}", cols(self.output_schema()).join(", "))
                }
                SinkNode::Client => format!("client, columns: {}", cols(self.output_schema()).join(", ")),
                SinkNode::Table(t) => format!("table {} ({})", t.name, options_text(t)),
            },
        });

        let describe_op = |op: &StreamOp| -> PlanNodeDescription {
            match op {
                StreamOp::Filter { predicate, .. } => {
                    PlanNodeDescription { depth: 0, op: None, operator: "Filter".into(), details: show(predicate) }
                }
                StreamOp::Project { exprs, output_schema, .. } => PlanNodeDescription {
                    depth: 0,
                    op: None,
                    operator: "Project".into(),
                    details: exprs
                        .iter()
                        .zip(output_schema.fields())
                        .map(|(e, f)| {
                            let shown = show(&e.clone().unalias());
                            let name = readable_intervals(f.name());
                            if shown == name {
                                shown
                            } else {
                                format!("{name} := {shown}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                StreamOp::WindowAggregate(w) => {
                    let keys: Vec<String> = w
                        .group_exprs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !w.window_columns.iter().any(|(c, _)| c == i))
                        .map(|(_, e)| show(e))
                        .collect();
                    let aggs: Vec<String> = w.aggr_exprs.iter().map(show).collect();
                    PlanNodeDescription {
                        depth: 0,
                        op: None,
                        operator: "WindowAggregate".into(),
                        details: format!(
                            "window: {} on {}, keys: [{}], aggregates: [{}], emit: {}",
                            w.window,
                            w.time_column,
                            keys.join(", "),
                            aggs.join(", "),
                            w.emit.describe(matches!(w.window, WindowSpec::Session { .. }))
                        ),
                    }
                }
                StreamOp::UpdatingAggregate(u) => {
                    let keys: Vec<String> = u.group_exprs.iter().map(show).collect();
                    let aggs: Vec<String> = u.aggr_exprs.iter().map(show).collect();
                    let ttl = ttl_text(u.state_ttl, "one entry per key");
                    PlanNodeDescription {
                        depth: 0, op: None,
                        operator: "UpdatingAggregate".into(),
                        details: format!(
                            "keys: [{}], aggregates: [{}], input: {}, emit: a changelog (+I, -U/+U, -D) per batch of changes, state: {ttl}",
                            keys.join(", "),
                            aggs.join(", "),
                            if u.retracting { "changelog (retracts)" } else { "append-only" }
                        ),
                    }
                }
                StreamOp::Rank(r) => {
                    let partition: Vec<String> = r.partition_by.iter().map(show).collect();
                    let order: Vec<String> = r.order_by.iter().map(|s| s.to_string()).collect();
                    match r.kind {
                        RankKind::WindowTopN { end_column, .. } => PlanNodeDescription {
                            depth: 0, op: None,
                            operator: "WindowTopN".into(),
                            details: format!(
                                "top {} per [{}] by [{}], emit: each window's rows once the watermark passes {}, state: {} rows per open window partition",
                                r.limit,
                                partition.join(", "),
                                order.join(", "),
                                r.input_schema.field(end_column).name(),
                                r.limit
                            ),
                        },
                        RankKind::Deduplicate { state_ttl } => PlanNodeDescription {
                            depth: 0, op: None,
                            operator: "Deduplicate".into(),
                            details: format!(
                                "first row per [{}] by [{}], emit: a changelog (+I, and -U/+U when a later row ranks first), state: {}",
                                partition.join(", "),
                                order.join(", "),
                                ttl_text(state_ttl, "one row per key")
                            ),
                        },
                    }
                }
            }
        };
        let describe_source = |source: &SourceNode| -> PlanNodeDescription {
            let t = &source.table;
            let watermark = match (&t.watermark, &t.proctime) {
                (_, Some(p)) if source.processing_time => format!("watermark: the wall clock ({p} AS PROCTIME())"),
                (w, _) => match w {
                    Some(w) if w.delay_nanos == 0 => format!("watermark: {}", w.column),
                    Some(w) => format!("watermark: {} - {}", w.column, format_duration(w.delay_nanos)),
                    None => "no watermark".to_string(),
                },
            };
            let watermark = match &self.late_rows {
                Some(l) => format!("{watermark}, dropped rows (with a reason) to table {}", l.name),
                None => watermark,
            };
            PlanNodeDescription {
                depth: 0,
                op: None,
                operator: "Source".into(),
                details: format!(
                    "{} ({}), {watermark}, columns: [{}]",
                    t.name,
                    options_text(t),
                    source
                        .output_schema
                        .fields()
                        .iter()
                        .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };
        let mut depth = 1;
        for (index, op) in self.ops.iter().enumerate().rev() {
            nodes.push(PlanNodeDescription { depth, op: Some(OpRef::Op(index)), ..describe_op(op) });
            depth += 1;
        }
        if !self.union.is_empty() {
            let inputs = self.inputs();
            nodes.push(PlanNodeDescription {
                depth,
                op: None,
                operator: "Union".into(),
                details: format!(
                    "{} inputs, watermark: the minimum of the inputs' (an input idle longer than its 'idle_timeout' is left out)",
                    inputs.len()
                ),
            });
            depth += 1;
        }
        for (input, (source, ops)) in self.inputs().into_iter().enumerate() {
            let mut d = depth;
            for (index, op) in ops.iter().enumerate().rev() {
                nodes.push(PlanNodeDescription {
                    depth: d,
                    op: Some(OpRef::Input { input, index }),
                    ..describe_op(op)
                });
                d += 1;
            }
            nodes.push(PlanNodeDescription { depth: d, op: Some(OpRef::Source(input)), ..describe_source(source) });
        }
        nodes
    }
}

/// An expression as EXPLAIN shows it: DataFusion's SQL-like display, with interval literals
/// written as `INTERVAL '10s'` instead of their debug form.
pub fn show(e: &Expr) -> String {
    readable_intervals(&e.human_display().to_string())
}

/// Replace DataFusion's debug form of interval literals with `INTERVAL '10s'`.
fn readable_intervals(text: &str) -> String {
    let open = "IntervalMonthDayNano(\"IntervalMonthDayNano { months: ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        out.push_str(&rest[..i]);
        let after = &rest[i + open.len()..];
        let Some(end) = after.find("}\")") else { break };
        let body = &after[..end];
        let nums: Vec<i64> =
            body.split(|c: char| !c.is_ascii_digit() && c != '-').filter_map(|t| t.parse().ok()).collect();
        match nums.as_slice() {
            [0, days, nanos] => out.push_str(&format!(
                "INTERVAL '{}'",
                format_duration(days.saturating_mul(86_400_000_000_000).saturating_add(*nanos))
            )),
            [months, days, nanos] => out.push_str(&format!("INTERVAL '{months} months {days} days {nanos} ns'")),
            _ => out.push_str(&rest[i..i + open.len() + end + 3]),
        }
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    out
}

fn ttl_text(ttl: Option<StateTtl>, what: &str) -> String {
    match ttl {
        Some(t) => format!(
            "keys idle for {} ({} time) are forgotten",
            format_duration(t.nanos),
            if t.event_time { "event" } else { "processing" }
        ),
        None => format!("{what}, kept forever (set 'state_ttl' to bound it)"),
    }
}

fn options_text(t: &TableDef) -> String {
    t.options.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// What a [`StreamPlan`] serialises to (serde): EXPLAIN's nodes as data, the tables read with
/// their columns and watermarks, the sink, and whether the result is a changelog.
#[derive(Serialize)]
struct PlanView<'a> {
    updating: bool,
    /// The `INSERT INTO` table, or `None` for a query whose rows go to the client.
    sink: Option<&'a str>,
    sources: Vec<SourceView<'a>>,
    late_rows: Option<&'a str>,
    nodes: Vec<PlanNodeDescription>,
}

#[derive(Serialize)]
struct SourceView<'a> {
    table: &'a str,
    columns: Vec<ColumnView>,
    watermark: Option<&'a WatermarkDef>,
    processing_time: bool,
    options: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ColumnView {
    name: String,
    sql_type: String,
    nullable: bool,
}

impl Serialize for StreamPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let sources = self
            .inputs()
            .into_iter()
            .map(|(source, _)| SourceView {
                table: &source.table.name,
                columns: source
                    .output_schema
                    .fields()
                    .iter()
                    .map(|f| ColumnView {
                        name: f.name().clone(),
                        sql_type: sql_type_name(f.data_type()),
                        nullable: f.is_nullable(),
                    })
                    .collect(),
                watermark: source.table.watermark.as_ref(),
                processing_time: source.processing_time,
                options: &source.table.options,
            })
            .collect();
        PlanView {
            updating: self.is_updating(),
            sink: match &self.sink {
                SinkNode::Table(t) => Some(&t.name),
                SinkNode::Client => None,
            },
            sources,
            late_rows: self.late_rows.as_ref().map(|t| t.name.as_str()),
            nodes: self.describe(),
        }
        .serialize(serializer)
    }
}

/// Which runtime operator a plan node becomes, so run-time metrics can be shown against the
/// plan (`EXPLAIN ANALYZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum OpRef {
    /// The source of input `n` ([`StreamPlan::inputs`] order: the first source, then each
    /// `UNION ALL` input).
    Source(usize),
    /// Operator `index` of input `input`'s own operators (before a union's merge).
    Input {
        /// The input.
        input: usize,
        /// Position in that input's operators.
        index: usize,
    },
    /// Operator `n` of [`StreamPlan::ops`] (after the merge).
    Op(usize),
}

/// One line of EXPLAIN output.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNodeDescription {
    /// How deep in the tree (the sink is 0; a node's input is one deeper).
    pub depth: usize,
    /// The runtime operator this node becomes (none for the sink and a union's merge).
    pub op: Option<OpRef>,
    /// Operator name.
    pub operator: String,
    /// Its window, keys, expressions, watermark, connector options…
    pub details: String,
}

impl fmt::Display for StreamPlan {
    /// The plan as an indented tree, sink first (as `EXPLAIN` prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for node in self.describe() {
            let _ = writeln!(out, "{:indent$}{}: {}", "", node.operator, node.details, indent = node.depth * 2);
        }
        f.write_str(out.trim_end())
    }
}
