//! How a plan runs on several threads: where exchanges cut it into stages, how each exchange
//! routes rows, and how many instances each stage runs. The runtime builds its threads from a
//! [`Layout`], and `EXPLAIN` prints it ([`explain`]), so both agree.
//!
//! ```text
//!   stage 0: Source (split k of n) ─► stateless ops ─┐ hash(keys) → key group → instance
//!   stage 1: ×n  keyed op ─► stateless ops ──────────┤ single
//!   sink:    ×1  merge (watermark = min over instances) ─► Sink
//! ```
//!
//! A keyed operator (window aggregate, session, updating aggregate, Top-N, deduplication, an
//! upsert's normalisation) starts a stage: its input is hashed on its keys into
//! [`KEY_GROUPS`] key groups, and each instance owns a contiguous range of them. An operator
//! without keys (a global aggregate) gets a single instance. Stateless operators stay fused with
//! the stage before them. Only plans over one table are laid out so far: joins and unions run
//! on one thread (the caller falls back to parallelism 1, see [`layout`]).

use std::fmt::Write;
use std::ops::Range;

use datafusion_common::Column;
use datafusion_expr::Expr;

use crate::plan::{PlanInput, StreamOp, StreamPlan};

/// Key groups a keyed stage's keys are hashed into: the unit of state a parallel instance owns.
pub const KEY_GROUPS: usize = 128;

/// How an exchange sends rows to the instances of the stage after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Exchange {
    /// By the hash of these expressions (over the stage's input schema): each key group to the
    /// instance that owns it.
    Hash(Vec<Expr>),
    /// Everything to one instance.
    Single,
}

impl Exchange {
    /// How `op` wants its input routed: `None` for a stateless operator (fused with the stage
    /// before it).
    pub fn of(op: &StreamOp) -> Option<Exchange> {
        let keyed = |keys: Vec<Expr>| Some(if keys.is_empty() { Exchange::Single } else { Exchange::Hash(keys) });
        match op {
            StreamOp::Filter { .. } | StreamOp::Project { .. } => None,
            StreamOp::WindowAggregate(w) => keyed(
                w.group_exprs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !w.window_columns.iter().any(|(c, _)| c == i))
                    .map(|(_, e)| e.clone())
                    .collect(),
            ),
            StreamOp::UpdatingAggregate(u) => keyed(u.group_exprs.clone()),
            StreamOp::Rank(r) => keyed(r.partition_by.clone()),
            StreamOp::UpsertNormalize(u) => keyed(
                u.key
                    .iter()
                    .filter_map(|i| {
                        u.schema.fields().get(*i).map(|_| Expr::Column(Column::from(u.schema.qualified_field(*i))))
                    })
                    .collect(),
            ),
        }
    }
}

/// A stage: the plan's operators it runs, where its input comes from, and its instances.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutStage {
    /// Indices into [`StreamPlan::ops`].
    pub ops: Range<usize>,
    /// `None`: the stage reads the table (one instance per split); otherwise the exchange its
    /// rows come through.
    pub input: Option<Exchange>,
    /// Parallel instances.
    pub instances: usize,
}

/// A plan cut into stages, in data-flow order; the sink follows the last, through a single
/// exchange when that stage has several instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The stages.
    pub stages: Vec<LayoutStage>,
}

impl Layout {
    /// Whether the last stage's instances merge into the sink through an exchange.
    pub fn merges_into_sink(&self) -> bool {
        self.stages.last().is_some_and(|s| s.instances > 1)
    }
}

/// The layout of `plan` at `parallelism`, its table read by `splits` instances (1 when its
/// connector cannot split it). `Err` says why the plan runs on one thread: joins and unions,
/// processing time, or nothing to gain (no stage would have more than one instance).
pub fn layout(plan: &StreamPlan, parallelism: usize, splits: usize) -> Result<Layout, String> {
    if parallelism <= 1 {
        return Err("parallelism is 1".into());
    }
    let PlanInput::Source(source) = &plan.input else {
        return Err("joins and unions run on one thread for now".into());
    };
    if source.processing_time {
        return Err("windows over processing time run on one thread for now".into());
    }
    let splits = splits.clamp(1, parallelism);
    let mut stages = vec![LayoutStage { ops: 0..0, input: None, instances: splits }];
    for (i, op) in plan.ops.iter().enumerate() {
        let Some(exchange) = Exchange::of(op) else {
            if let Some(last) = stages.last_mut() {
                last.ops.end = i + 1;
            }
            continue;
        };
        let instances = match exchange {
            Exchange::Hash(_) => parallelism,
            Exchange::Single => 1,
        };
        match stages.last_mut() {
            // one instance into one instance: no exchange needed
            Some(last) if last.instances == 1 && instances == 1 => last.ops.end = i + 1,
            _ => stages.push(LayoutStage { ops: i..i + 1, input: Some(exchange), instances }),
        }
    }
    if stages.iter().all(|s| s.instances == 1) {
        return Err(
            "no stage of this query can run in parallel (its table is read whole, and it has no keyed operator)".into(),
        );
    }
    Ok(Layout { stages })
}

/// `EXPLAIN`'s text of `plan` (as its `Display` prints it) with the exchanges of `layout`
/// between the operators and each stage's instances, or the plan's own text when it runs on
/// one thread.
pub fn explain(plan: &StreamPlan, layout: Option<&Layout>) -> String {
    let Some(layout) = layout else { return plan.to_string() };
    let nodes = plan.describe();
    // single-table plans: the sink, the operators last first, then the source
    if nodes.len() != plan.ops.len() + 2 {
        return plan.to_string();
    }
    let mut exchanges: Vec<(usize, String)> = Vec::new();
    let last = layout.stages.len() - 1;
    if layout.merges_into_sink() {
        exchanges.push((plan.ops.len(), format!("Exchange: single, {} → 1 instance", layout.stages[last].instances)));
    }
    for (k, stage) in layout.stages.iter().enumerate().skip(1) {
        let from = layout.stages[k - 1].instances;
        let text = match &stage.input {
            Some(Exchange::Hash(keys)) => {
                let keys: Vec<String> = keys.iter().map(|e| e.to_string()).collect();
                format!(
                    "Exchange: hash [{}] over {KEY_GROUPS} key groups, {from} → {} instances",
                    keys.join(", "),
                    stage.instances
                )
            }
            _ => format!("Exchange: single, {from} → 1 instance"),
        };
        exchanges.push((stage.ops.start, text));
    }
    let mut out = String::new();
    let mut depth = 0;
    let _ = writeln!(out, "{}: {}", nodes[0].operator, nodes[0].details);
    for (n, node) in nodes.iter().enumerate().skip(1) {
        // node n is op (ops.len() - n) for n ≤ ops.len(), then the source
        let after = plan.ops.len() + 1 - n;
        for (_, text) in exchanges.iter().filter(|(at, _)| *at == after) {
            depth += 1;
            let _ = writeln!(out, "{:indent$}{text}", "", indent = depth * 2);
        }
        depth += 1;
        let suffix = if n == nodes.len() - 1 {
            let s = layout.stages[0].instances;
            if s > 1 {
                format!(" [{s} splits]")
            } else {
                " [read whole]".to_string()
            }
        } else {
            String::new()
        };
        let _ = writeln!(out, "{:indent$}{}: {}{suffix}", "", node.operator, node.details, indent = depth * 2);
    }
    out.trim_end().to_string()
}
