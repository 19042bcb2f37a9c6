//! What `EXPLAIN` prints: the plan as an indented tree (sink first), the same as data
//! ([`PlanNodeDescription`]) and as JSON (serde), each node with the [`OpRef`] of the
//! runtime operator it becomes.

use std::fmt::{self, Write};

use datafusion_common::DFSchemaRef;
use datafusion_expr::Expr;
use serde::Serialize;

use crate::duration::format_duration;
use crate::plan::{
    Branch, JoinNode, JoinState, JoinType, OpCounter, OpRef, PlanInput, RankKind, SinkNode, SourceNode, StateTtl,
    StreamOp, StreamPlan, WindowSpec,
};
use crate::table::{sql_type_name, TableDef, WatermarkDef};

impl StreamPlan {
    /// A serialisable description of the plan (what EXPLAIN prints, as data).
    pub fn describe(&self) -> Vec<PlanNodeDescription> {
        let cols = |s: &DFSchemaRef| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>();
        let mut nodes = vec![PlanNodeDescription {
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
        }];
        let mut counter = OpCounter::default();
        let late_rows = self.late_rows.as_ref();
        let below = describe_input(&self.input, 1 + self.ops.len(), &mut counter, late_rows);
        nodes.extend(describe_ops(&self.ops, 1, &mut counter));
        nodes.extend(below);
        nodes
    }
}

/// The nodes of `ops` (numbered next), top-down from `depth`.
fn describe_ops(ops: &[StreamOp], depth: usize, counter: &mut OpCounter) -> Vec<PlanNodeDescription> {
    let numbered: Vec<OpRef> = ops.iter().map(|_| counter.op()).collect();
    ops.iter()
        .zip(numbered)
        .enumerate()
        .rev()
        .enumerate()
        .map(|(up, (_, (op, r)))| PlanNodeDescription { depth: depth + up, op: Some(r), ..describe_op(op) })
        .collect()
}

fn describe_branch(
    b: &Branch,
    depth: usize,
    counter: &mut OpCounter,
    late_rows: Option<&TableDef>,
) -> Vec<PlanNodeDescription> {
    let below = describe_input(&b.input, depth + b.ops.len(), counter, late_rows);
    let mut nodes = describe_ops(&b.ops, depth, counter);
    nodes.extend(below);
    nodes
}

/// The nodes of an input tree, top-down from `depth`, numbered in data-flow order.
fn describe_input(
    input: &PlanInput,
    depth: usize,
    counter: &mut OpCounter,
    late_rows: Option<&TableDef>,
) -> Vec<PlanNodeDescription> {
    match input {
        PlanInput::Source(s) => {
            vec![PlanNodeDescription { depth, op: Some(counter.source()), ..describe_source(s, late_rows) }]
        }
        PlanInput::Union(branches) => {
            let mut nodes = vec![PlanNodeDescription {
                depth,
                op: None,
                operator: "Union".into(),
                details: format!(
                    "{} inputs, watermark: the minimum of the inputs' (an input idle longer than its 'idle_timeout' is left out)",
                    branches.len()
                ),
            }];
            for b in branches {
                nodes.extend(describe_branch(b, depth + 1, counter, late_rows));
            }
            nodes
        }
        PlanInput::Join(j) => {
            let left = describe_branch(&j.left, depth + 1, counter, late_rows);
            let right = describe_branch(&j.right, depth + 1, counter, late_rows);
            let mut nodes = vec![PlanNodeDescription { depth, op: Some(counter.op()), ..describe_join(j) }];
            nodes.extend(left);
            nodes.extend(right);
            nodes
        }
    }
}

fn describe_join(j: &JoinNode) -> PlanNodeDescription {
    let join = &j.join;
    let keys: Vec<String> =
        join.left_keys.iter().zip(&join.right_keys).map(|(l, r)| format!("{} = {}", show(l), show(r))).collect();
    let mut details = format!(
        "{}, on: [{}]",
        match join.join_type {
            JoinType::Inner => "inner",
            JoinType::Left => "left outer",
            JoinType::Full => "full outer",
            JoinType::Semi => "semi",
            JoinType::Anti => "anti",
        },
        keys.join(", ")
    );
    if let Some(f) = &join.filter {
        let _ = write!(details, ", filter: {}", show(f));
    }
    let (operator, state) = match &join.state {
        JoinState::Interval { condition, .. } => (
            "IntervalJoin",
            format!("time: {condition}, state: each row until the watermark passes the last time a match can come; rows behind the watermark are late"),
        ),
        JoinState::Regular { state_ttl, .. } => {
            ("Join", format!("state: {}", ttl_text(*state_ttl, "every row of both inputs")))
        }
        JoinState::Lookup => ("LookupJoin", "state: the right table, read whole first; left rows are not kept".to_string()),
    };
    let emit = if join.emits_changelog() { "a changelog" } else { "append-only" };
    let _ = write!(details, ", {state}, emit: {emit}");
    PlanNodeDescription { depth: 0, op: None, operator: operator.into(), details }
}

fn describe_op(op: &StreamOp) -> PlanNodeDescription {
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
            let keys: Vec<String> = w.keys().map(|(_, e)| show(e)).collect();
            let aggs: Vec<String> = w.aggr_exprs.iter().map(show).collect();
            PlanNodeDescription {
                depth: 0,
                op: None,
                operator: "WindowAggregate".into(),
                details: format!(
                    "window: {} on {}, keys: [{}], aggregates: [{}], emit: {}",
                    if w.is_cascaded() { "each window".to_string() } else { w.window.to_string() },
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
        StreamOp::UpsertNormalize(u) => {
            let keys: Vec<&str> = u.key.iter().map(|i| u.schema.field(*i).name().as_str()).collect();
            PlanNodeDescription {
                depth: 0, op: None,
                operator: "UpsertNormalize".into(),
                details: format!(
                    "key: [{}], emit: a changelog (+I for a new key, -U/+U for a key's new row, -D for a removed key), state: {}",
                    keys.join(", "),
                    ttl_text(u.state_ttl, "one row per key")
                ),
            }
        }
        StreamOp::WindowRows(w) => PlanNodeDescription {
            depth: 0,
            op: None,
            operator: "WindowRows".into(),
            details: format!(
                "{} on {}: each row once per window it is in, with window_start and window_end",
                w.window,
                show(&w.time)
            ),
        },
        StreamOp::OverAggregate(o) => {
            let partition: Vec<String> = o.partition_by.iter().map(show).collect();
            let aggs: Vec<String> = o.window_exprs.iter().map(over_function).collect();
            let (frame, state) = match o.frame {
                crate::over::OverFrame::Rows(n) => {
                    (format!("ROWS {n} PRECEDING"), format!("the last {n} rows per partition"))
                }
                crate::over::OverFrame::Range(r) => (
                    format!("RANGE {} PRECEDING", crate::duration::format_duration(r)),
                    format!("the rows of the last {} per partition", crate::duration::format_duration(r)),
                ),
                crate::over::OverFrame::Unbounded { range } => (
                    format!("{} UNBOUNDED PRECEDING", if range { "RANGE" } else { "ROWS" }),
                    "the running aggregates per partition (kept forever)".to_string(),
                ),
            };
            PlanNodeDescription {
                depth: 0, op: None,
                operator: "OverAggregate".into(),
                details: format!(
                    "[{}] per [{}] ordered by {}, frame: {frame} to the current row, emit: each row once the watermark passes its time (append-only), state: the rows not yet emitted and {state}",
                    aggs.join(", "),
                    partition.join(", "),
                    o.time_column
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
                RankKind::TopN { state_ttl } => PlanNodeDescription {
                    depth: 0, op: None,
                    operator: "TopN".into(),
                    details: format!(
                        "top {} per [{}] by [{}], emit: a changelog (+I for a row entering the top {}, -U/+U for the rows its arrival moves down a rank, -D for the one pushed out), state: {}",
                        r.limit,
                        partition.join(", "),
                        order.join(", "),
                        r.limit,
                        ttl_text(state_ttl, &format!("{} rows per key", r.limit))
                    ),
                },
            }
        }
    }
}

fn describe_source(source: &SourceNode, late_rows: Option<&TableDef>) -> PlanNodeDescription {
    let t = &source.table;
    let watermark = match (&t.watermark, &t.proctime) {
        (_, Some(p)) if source.processing_time => format!("watermark: the wall clock ({p} AS PROCTIME())"),
        (w, _) => match w {
            Some(w) if w.delay_nanos == 0 => format!("watermark: {}", w.column),
            Some(w) => format!("watermark: {} - {}", w.column, format_duration(w.delay_nanos)),
            None => "no watermark".to_string(),
        },
    };
    let watermark = match late_rows {
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
                .map(|f| match t.metadata_column(f.name()) {
                    Some(m) => format!("{} {} METADATA FROM '{}'", f.name(), sql_type_name(f.data_type()), m.key),
                    None => format!("{} {}", f.name(), sql_type_name(f.data_type())),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An expression as EXPLAIN shows it: DataFusion's SQL-like display, with interval literals
/// written as `INTERVAL '10s'` instead of their debug form.
pub fn show(e: &Expr) -> String {
    readable_intervals(&e.human_display().to_string())
}

/// Replace DataFusion's debug forms of interval literals (`IntervalMonthDayNano("…")` and
/// `IntervalMonthDayNano { … }`) with `INTERVAL '10s'`.
fn readable_intervals(text: &str) -> String {
    let quoted = readable_form(text, "IntervalMonthDayNano(\"IntervalMonthDayNano { months: ", "}\")");
    readable_form(&quoted, "IntervalMonthDayNano { months: ", "}")
}

fn readable_form(text: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        out.push_str(&rest[..i]);
        let after = &rest[i + open.len()..];
        let Some(end) = after.find(close) else { break };
        let body = &after[..end];
        let nums: Vec<i64> =
            body.split(|c: char| !c.is_ascii_digit() && c != '-').filter_map(|t| t.parse().ok()).collect();
        match nums.as_slice() {
            [0, days, nanos] => out.push_str(&format!(
                "INTERVAL '{}'",
                format_duration(days.saturating_mul(86_400_000_000_000).saturating_add(*nanos))
            )),
            [months, days, nanos] => out.push_str(&format!("INTERVAL '{months} months {days} days {nanos} ns'")),
            _ => out.push_str(&rest[i..i + open.len() + end + close.len()]),
        }
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    out
}

/// An OVER aggregate's function and arguments (its window is shown apart).
fn over_function(e: &Expr) -> String {
    match e {
        Expr::Alias(a) => over_function(&a.expr),
        Expr::WindowFunction(f) => {
            let args: Vec<String> = f.params.args.iter().map(show).collect();
            let distinct = if f.params.distinct { "DISTINCT " } else { "" };
            format!("{}({distinct}{})", f.fun, args.join(", "))
        }
        e => show(e),
    }
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
            .sources()
            .into_iter()
            .map(|source| SourceView {
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
