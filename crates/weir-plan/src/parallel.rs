//! How a plan runs on several threads: where exchanges cut it into stages, how each exchange
//! routes rows, and how many instances each stage runs. The runtime builds its threads from a
//! [`Layout`], and `EXPLAIN` prints it ([`explain`]), so both agree.
//!
//! ```text
//!   stage 0: ×n  Source (split k of n) ─► stateless ops ─┐ hash(keys) → key group → instance
//!   stage 1: ×n  keyed op ─► stateless ops ──────────────┤ hash(join keys)
//!   stage 3: ×n  join of stages 1 and 2 ─► ops ───────────┤ single
//!   sink:    ×1  merge (watermark = min over instances) ─► Sink
//! ```
//!
//! A keyed operator (window aggregate, session, updating aggregate, Top-N, deduplication, an
//! upsert's normalisation) starts a stage: its input is hashed on its keys into
//! [`KEY_GROUPS`] key groups, and each instance owns a contiguous range of them. An operator
//! without keys (a global aggregate) gets a single instance. A join starts a stage whose two
//! inputs are hashed on the join's keys; a keyed operator after it whose keys include all of
//! the join's left keys (or of an inner join's right keys) stays in the join's stage, its rows
//! already together. When both sides of a join end in keyed operators keyed on some of its keys
//! ([`CoPartition`]), the sides are hashed on those keys before their keyed operators, which
//! then run in the join's stage (when one side does, that side's, the other hashed on the join's
//! keys). A join of a table read in splits with the output of one
//! instance (a window without keys) broadcasts that output to every instance and joins each of
//! the table's rows where it was read. Stateless operators stay fused with the stage before
//! them. A union starts a stage whose inputs are its branches' last stages: hashed on the keys of the keyed operator
//! right after it, else into one instance. A lookup join's table is read to its end
//! before the other tables start (the runtime's watermark alignment holds them).

use std::fmt::Write;
use std::ops::Range;

use datafusion_common::Column;
use datafusion_expr::{Expr, ExprSchemable};

use crate::co_partition::co_partition;
pub use crate::co_partition::{CoPartition, SideOps};
use crate::plan::{JoinNode, JoinState, JoinType, OpRef, PlanInput, StreamOp, StreamPlan};
pub use crate::source_alignment::{alignment_drift, ALIGNMENT_DRIFT_NANOS, MAX_ALIGNMENT_DRIFT_NANOS};

/// Key groups a keyed stage's keys are hashed into: the unit of state a parallel instance owns.
pub const KEY_GROUPS: usize = 128;

/// How an exchange sends rows to the instances of the stage after it.
#[derive(Debug, Clone, PartialEq)]
pub enum Exchange {
    /// By the hash of these expressions (over the rows sent): each key group to the instance
    /// that owns it.
    Hash(Vec<Expr>),
    /// Everything to one instance.
    Single,
    /// Each instance's rows to the instance of the same number (as many on both sides): a
    /// join's large side, joined where it was read (see [`Exchange::Broadcast`]).
    Forward,
    /// Every row to every instance: a join's side that comes from one instance (the results
    /// of a window without keys), so that the other side need not be hashed.
    Broadcast,
}

impl Exchange {
    /// How `op` wants its input routed: `None` for a stateless operator (fused with the stage
    /// before it).
    pub fn of(op: &StreamOp) -> Option<Exchange> {
        let keyed = |keys: Vec<Expr>| Some(if keys.is_empty() { Exchange::Single } else { Exchange::Hash(keys) });
        match op {
            StreamOp::Filter { .. } | StreamOp::Project { .. } | StreamOp::WindowRows(_) => None,
            StreamOp::WindowAggregate(w) => keyed(w.keys().map(|(_, e)| e.clone()).collect()),
            StreamOp::UpdatingAggregate(u) => keyed(u.group_exprs.clone()),
            StreamOp::Rank(r) => keyed(r.partition_by.clone()),
            StreamOp::OverAggregate(o) => keyed(o.partition_by.clone()),
            StreamOp::UpsertNormalize(u) => keyed(
                u.key
                    .iter()
                    .filter(|i| **i < u.schema.fields().len())
                    .map(|i| Expr::Column(Column::from(u.schema.qualified_field(*i))))
                    .collect(),
            ),
        }
    }

    /// The instances of the stage this exchange feeds, at `parallelism`.
    fn instances(&self, parallelism: usize) -> usize {
        match self {
            // an instance owns at least one key group
            Exchange::Hash(_) => parallelism.min(KEY_GROUPS),
            Exchange::Single => 1,
            // set by the stage that reads them
            Exchange::Forward | Exchange::Broadcast => parallelism,
        }
    }

    fn text(&self, from: usize, to: usize) -> String {
        match self {
            Exchange::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|e| e.to_string()).collect();
                format!("Exchange: hash [{}] over {KEY_GROUPS} key groups, {from} → {to} instances", keys.join(", "))
            }
            Exchange::Single => format!("Exchange: single, {from} → 1 instance"),
            Exchange::Forward => {
                format!("Exchange: forward (each split's rows to its own instance), {from} → {to} instances")
            }
            Exchange::Broadcast => {
                format!("Exchange: broadcast (every row to every instance), {from} → {to} instances")
            }
        }
    }
}

/// Which input of a join or a union a branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The left input of a join.
    Left,
    /// The right input of a join.
    Right,
    /// Input `n` of a union.
    Union(usize),
}

/// Where a stage's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum StageInput {
    /// A split of source `n` ([`StreamPlan::sources`] order), one per instance.
    Source(usize),
    /// The rows of stage `from`, through `exchange`.
    Exchange {
        /// The stage sending them.
        from: usize,
        /// How they are routed.
        exchange: Exchange,
    },
    /// A join (operator `op`) of the rows of two stages, each side through its exchange.
    Join {
        /// The stages of the left and right inputs.
        from: [usize; 2],
        /// How each side is routed.
        exchanges: [Exchange; 2],
        /// The join's operator number ([`OpRef::Op`]).
        op: usize,
        /// When the sides are hashed before their keyed operators: those operators (and the
        /// stateless ones after them), run in this stage before the join.
        co: Option<CoPartition>,
    },
    /// A union of the rows of several stages (one per input of the union, in order), all
    /// through the same exchange.
    Union {
        /// The stages of the union's inputs.
        from: Vec<usize>,
        /// How their rows are routed.
        exchange: Exchange,
        /// Which union of the plan it is: the plan's unions numbered parent before children,
        /// left before right, as `EXPLAIN` lists them.
        union: usize,
    },
}

/// A stage: where its input comes from, the plan's operators it runs after it, and its
/// instances.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutStage {
    /// Its input.
    pub input: StageInput,
    /// The branch its operators belong to: the sides taken from the plan's input down to it
    /// (empty: [`StreamPlan::ops`]).
    pub branch: Vec<Side>,
    /// Indices into that branch's operators.
    pub ops: Range<usize>,
    /// The operator number ([`OpRef::Op`]) of `ops.start`.
    pub first_op: usize,
    /// Parallel instances.
    pub instances: usize,
    /// Keyed operators of the stage that read its rows where they are (after a join).
    pub forwarded: Vec<Forwarded>,
    /// Its first operator, a window aggregate, merges partial aggregates of the rows that
    /// the stage before it (reading a table) computed per batch (the crate's `two_phase`
    /// module: a window aggregate in two phases).
    pub pre_aggregated: bool,
}

/// A keyed operator reading its rows where a join left them, hashed on the join's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    /// Its index among its branch's operators.
    pub index: usize,
    /// Its number ([`OpRef::Op`]).
    pub op: usize,
    /// The keys its rows are hashed on (for `EXPLAIN`).
    pub keys: Vec<Expr>,
    /// Where those keys are among its own, in the order they were hashed: how its state's keys
    /// are hashed when it moves to another parallelism.
    pub positions: Vec<usize>,
}

/// A plan cut into stages, in data-flow order (every stage after those it reads); the last
/// produces the result, and the sink follows it through a single exchange when it has several
/// instances.
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

    /// The stage reading source `n`.
    pub fn source_stage(&self, n: usize) -> Option<&LayoutStage> {
        self.stages.iter().find(|s| s.input == StageInput::Source(n))
    }

    /// Whether the rows of source `n` are hashed among the instances of the stage after it
    /// (each of its batches shared among them), rather than sent whole.
    pub fn hashes_source(&self, n: usize) -> bool {
        let Some(from) = self.stages.iter().position(|s| s.input == StageInput::Source(n)) else { return false };
        let hashed = |e: &Exchange| matches!(e, Exchange::Hash(_));
        self.stages.iter().any(|s| match &s.input {
            StageInput::Source(_) => false,
            StageInput::Exchange { from: f, exchange } => *f == from && hashed(exchange),
            StageInput::Join { from: f, exchanges, .. } => {
                f.iter().zip(exchanges).any(|(f, e)| *f == from && hashed(e))
            }
            StageInput::Union { from: f, exchange, .. } => f.contains(&from) && hashed(exchange),
        })
    }
}

/// The input and operators of the branch at `path` (empty: the plan's own).
fn branch_at<'a>(plan: &'a StreamPlan, path: &[Side]) -> Option<(&'a PlanInput, &'a [StreamOp])> {
    let (mut input, mut ops) = (&plan.input, plan.ops.as_slice());
    for side in path {
        let b = match (input, side) {
            (PlanInput::Join(j), Side::Left) => &j.left,
            (PlanInput::Join(j), Side::Right) => &j.right,
            (PlanInput::Union(bs), Side::Union(n)) => bs.get(*n)?,
            _ => return None,
        };
        (input, ops) = (&b.input, b.ops.as_slice());
    }
    Some((input, ops))
}

/// The operators of the branch at `path` (empty: the plan's own).
pub fn branch_ops<'a>(plan: &'a StreamPlan, path: &[Side]) -> Option<&'a [StreamOp]> {
    branch_at(plan, path).map(|(_, ops)| ops)
}

/// The input of the branch at `path` (a join's or a union's rows: what its first operator reads).
pub fn branch_input<'a>(plan: &'a StreamPlan, path: &[Side]) -> Option<&'a PlanInput> {
    branch_at(plan, path).map(|(input, _)| input)
}

/// The join at the top of the branch at `path`.
pub fn branch_join<'a>(plan: &'a StreamPlan, path: &[Side]) -> Option<&'a JoinNode> {
    match branch_input(plan, path)? {
        PlanInput::Join(j) => Some(j),
        _ => None,
    }
}

struct Builder<'a> {
    parallelism: usize,
    splits: &'a dyn Fn(usize) -> usize,
    /// Tables are read in exactly their splits (a resumed parallel run), not in at most
    /// `parallelism`.
    resumed: bool,
    stages: Vec<LayoutStage>,
    /// Per stage, the key lists its rows are hashed on as they leave it, as far as known (a
    /// join's keys, while the operators after it keep them): a keyed operator hashed on one of
    /// them reads its rows where they are, without an exchange.
    partitioned: Vec<Vec<Vec<Expr>>>,
    sources: usize,
    ops: usize,
    unions: usize,
}

/// The key lists of `partitioned` still valid after `op` (a stateless operator): all of them
/// after a filter; after a projection, those whose every key is a column it passes on
/// unchanged, under the same name.
fn still_partitioned(partitioned: Vec<Vec<Expr>>, op: &StreamOp) -> Vec<Vec<Expr>> {
    match op {
        // (a row's copies keep its columns)
        StreamOp::Filter { .. } | StreamOp::WindowRows(_) => partitioned,
        StreamOp::Project { exprs, output_schema, .. } => {
            let passed = |key: &Expr| match key {
                Expr::Column(c) => exprs.iter().enumerate().any(|(i, e)| {
                    let (qualifier, field) = output_schema.qualified_field(i);
                    e == key && field.name() == &c.name && qualifier == c.relation.as_ref()
                }),
                _ => false,
            };
            partitioned.into_iter().filter(|keys| keys.iter().all(passed)).collect()
        }
        _ => Vec::new(),
    }
}

impl Builder<'_> {
    /// Lay out a branch (its input, then its operators); returns its last stage.
    fn branch(&mut self, input: &PlanInput, ops: &[StreamOp], path: Vec<Side>) -> Result<usize, String> {
        let current = match input {
            PlanInput::Source(_) => {
                let n = self.sources;
                self.sources += 1;
                let instances = match self.resumed {
                    true => (self.splits)(n).max(1),
                    false => (self.splits)(n).clamp(1, self.parallelism),
                };
                self.push(StageInput::Source(n), path.clone(), instances)
            }
            PlanInput::Union(branches) => {
                let union = self.unions;
                self.unions += 1;
                let mut from = Vec::with_capacity(branches.len());
                for (n, b) in branches.iter().enumerate() {
                    let mut branch_path = path.clone();
                    branch_path.push(Side::Union(n));
                    from.push(self.branch(&b.input, &b.ops, branch_path)?);
                }
                // the keyed operator right after the union, if one is, reads it directly
                let routed = ops.first().and_then(Exchange::of);
                let keyed = routed.is_some();
                let exchange = routed.unwrap_or(Exchange::Single);
                let instances = exchange.instances(self.parallelism);
                let stage = self.push(StageInput::Union { from, exchange, union }, path.clone(), instances);
                if keyed {
                    // its first operator is the keyed one: it joins this stage below
                    return self.rest(stage, ops, path, true);
                }
                stage
            }
            PlanInput::Join(j) => {
                let mut exchanges = join_exchanges(j);
                let hashed = matches!(exchanges, [Exchange::Hash(_), Exchange::Hash(_)]);
                let mut co = co_partition(j).filter(|_| hashed);
                let mut from = [0; 2];
                for (side, (s, b)) in [(Side::Left, &j.left), (Side::Right, &j.right)].into_iter().enumerate() {
                    let mut side_path = path.clone();
                    side_path.push(s);
                    // with its sides co-partitioned, each side's keyed operator and those after
                    // it run in the join's stage
                    let end = co.as_ref().map_or(b.ops.len(), |c| c.sides[side].ops.start);
                    from[side] = self.branch(&b.input, &b.ops[..end], side_path)?;
                    if let Some(c) = &mut co {
                        c.sides[side].first_op = self.ops;
                        self.ops += b.ops.len() - end;
                    }
                }
                let op = self.ops;
                self.ops += 1;
                // each output row's left keys hash as its left row did (an inner join's right
                // keys are equal to them; a left outer join's unmatched rows have them NULL; a
                // full outer join's unmatched right rows have NULL left keys in every instance)
                let mut partitioned = match &exchanges {
                    [Exchange::Hash(left), Exchange::Hash(right)] => match j.join.join_type {
                        JoinType::Inner => vec![left.clone(), right.clone()],
                        JoinType::Full => Vec::new(),
                        _ => vec![left.clone()],
                    },
                    _ => Vec::new(),
                };
                if let Some(c) = &co {
                    // hashed on some of the join's keys, before the sides' keyed operators
                    let pick = |keys: &[Expr]| c.join_positions.iter().map(|p| keys[*p].clone()).collect::<Vec<_>>();
                    partitioned = match j.join.join_type {
                        JoinType::Inner => vec![pick(&j.join.left_keys), pick(&j.join.right_keys)],
                        JoinType::Full => Vec::new(),
                        _ => vec![pick(&j.join.left_keys)],
                    };
                    exchanges = [Exchange::Hash(c.keys[0].clone()), Exchange::Hash(c.keys[1].clone())];
                }
                let mut instances = exchanges[0].instances(self.parallelism);
                if let Some((forward, n)) = co.is_none().then(|| self.broadcast(j, from)).flatten() {
                    exchanges = [Exchange::Broadcast, Exchange::Broadcast];
                    exchanges[forward] = Exchange::Forward;
                    (instances, partitioned) = (n, Vec::new());
                }
                let stage = self.push(StageInput::Join { from, exchanges, op, co }, path.clone(), instances);
                self.partitioned[stage] = partitioned;
                stage
            }
        };
        self.rest(current, ops, path, false)
    }

    /// Lay out `ops` after stage `current` (`routed`: the first is already routed to it).
    fn rest(&mut self, mut current: usize, ops: &[StreamOp], path: Vec<Side>, routed: bool) -> Result<usize, String> {
        for (i, op) in ops.iter().enumerate() {
            let number = self.ops;
            self.ops += 1;
            let instances = self.stages[current].instances;
            let exchange = match Exchange::of(op) {
                _ if routed && i == 0 => None,
                // one instance into one instance: no exchange needed
                Some(Exchange::Single) if instances == 1 => None,
                // the rows are already where this operator's keys would send them: hashed on
                // all of them, or on some (rows with equal keys have equal parts)
                Some(Exchange::Hash(keys)) if instances == Exchange::Hash(Vec::new()).instances(self.parallelism) => {
                    let positions = |part: &Vec<Expr>| -> Option<Vec<usize>> {
                        part.iter().map(|e| keys.iter().position(|k| k == e)).collect()
                    };
                    let found =
                        self.partitioned[current].iter().find_map(|part| Some((part.clone(), positions(part)?)));
                    match found {
                        Some((keys, positions)) => {
                            self.stages[current].forwarded.push(Forwarded { index: i, op: number, keys, positions });
                            None
                        }
                        None => Some(Exchange::Hash(keys)),
                    }
                }
                other => other,
            };
            let partitioned = std::mem::take(&mut self.partitioned[current]);
            self.partitioned[current] = match exchange.is_none() && Exchange::of(op).is_none() {
                true => still_partitioned(partitioned, op),
                false => Vec::new(),
            };
            match exchange {
                None => {
                    let stage = &mut self.stages[current];
                    if stage.ops.is_empty() {
                        (stage.ops, stage.first_op) = (i..i + 1, number);
                    } else {
                        stage.ops.end = i + 1;
                    }
                }
                Some(exchange) => {
                    let (from, instances) = (current, exchange.instances(self.parallelism));
                    current = self.stages.len();
                    self.stages.push(LayoutStage {
                        input: StageInput::Exchange { from, exchange },
                        branch: path.clone(),
                        ops: i..i + 1,
                        first_op: number,
                        instances,
                        forwarded: Vec::new(),
                        pre_aggregated: false,
                    });
                    self.partitioned.push(Vec::new());
                }
            }
        }
        Ok(current)
    }

    /// Whether join `j` of the stages `from` broadcasts one side and joins the other where it
    /// was read: when that side comes from one instance because of an operator without keys
    /// (a window without keys: one row per window), and the other is a table read in several
    /// splits. Each row of the large side is then in one instance, with every row of the
    /// small one: an inner join finds each pair once, and so does a left outer join whose
    /// right side is broadcast (its unmatched left rows are in one instance). The join runs in
    /// as many instances as the table has splits, which a resumed run keeps, so its state
    /// never moves between instances. Returns the forwarded side and the instances.
    fn broadcast(&self, j: &JoinNode, from: [usize; 2]) -> Option<(usize, usize)> {
        if matches!(j.join.state, JoinState::Lookup) {
            return None;
        }
        let single = |s: usize| {
            let stage = &self.stages[s];
            stage.instances == 1 && matches!(stage.input, StageInput::Exchange { exchange: Exchange::Single, .. })
        };
        let split = |s: usize| {
            let stage = &self.stages[s];
            stage.instances > 1 && matches!(stage.input, StageInput::Source(_))
        };
        // (a full outer join pads its unmatched right rows: once, not in every instance)
        let broadcast_right = single(from[1]) && split(from[0]) && j.join.join_type != JoinType::Full;
        let broadcast_left = single(from[0]) && split(from[1]) && j.join.join_type == JoinType::Inner;
        match (broadcast_right, broadcast_left) {
            (true, _) => Some((0, self.stages[from[0]].instances)),
            (false, true) => Some((1, self.stages[from[1]].instances)),
            _ => None,
        }
    }

    fn push(&mut self, input: StageInput, branch: Vec<Side>, instances: usize) -> usize {
        let first_op = self.ops;
        let forwarded = Vec::new();
        self.stages.push(LayoutStage {
            input,
            branch,
            ops: 0..0,
            first_op,
            instances,
            forwarded,
            pre_aggregated: false,
        });
        self.partitioned.push(Vec::new());
        self.stages.len() - 1
    }
}

/// How a join's sides are routed: hashed on the keys, when there are keys of the same types on
/// both sides; otherwise each side whole to one instance.
fn join_exchanges(j: &JoinNode) -> [Exchange; 2] {
    let join = &j.join;
    let same_types = join.left_keys.len() == join.right_keys.len()
        && join.left_keys.iter().zip(&join.right_keys).all(|(l, r)| {
            match (l.get_type(&join.left_schema), r.get_type(&join.right_schema)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        });
    if join.left_keys.is_empty() || !same_types {
        return [Exchange::Single, Exchange::Single];
    }
    [Exchange::Hash(join.left_keys.clone()), Exchange::Hash(join.right_keys.clone())]
}

/// Whether `plan` joins two inputs or unions several. By default (no parallelism asked for)
/// such a plan runs on one thread: in parallel the join's or the union's instances read their
/// inputs as they come, where one thread reads the input whose watermark is lowest first; the
/// sources' watermark alignment keeps them within a second (or a window:
/// [`alignment_drift`]), but the state after them is still somewhat above one thread's.
pub fn merges_inputs(plan: &StreamPlan) -> bool {
    !matches!(plan.input, PlanInput::Source(_))
}

/// The sources (by number, [`StreamPlan::sources`] order) read whole before the others: the
/// tables of lookup joins.
pub fn lookup_sources(plan: &StreamPlan) -> Vec<usize> {
    fn walk(input: &PlanInput, next: &mut usize, lookup: bool, out: &mut Vec<usize>) {
        match input {
            PlanInput::Source(_) => {
                if lookup {
                    out.push(*next);
                }
                *next += 1;
            }
            PlanInput::Union(bs) => bs.iter().for_each(|b| walk(&b.input, next, lookup, out)),
            PlanInput::Join(j) => {
                walk(&j.left.input, next, lookup, out);
                walk(&j.right.input, next, lookup || matches!(j.join.state, JoinState::Lookup), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&plan.input, &mut 0, false, &mut out);
    out
}

/// The layout of `plan` at `parallelism`, source `n` read by `splits(n)` instances (1 when its
/// connector cannot split it). `Err` says why the plan runs on one thread: nothing to gain (no stage would have
/// more than one instance).
pub fn layout(plan: &StreamPlan, parallelism: usize, splits: &dyn Fn(usize) -> usize) -> Result<Layout, String> {
    let layout = build(plan, parallelism, splits, false)?;
    if layout.stages.iter().all(|s| s.instances == 1) {
        return Err(
            "no stage of this query can run in parallel (its tables are read whole, and it has no keyed operator)"
                .into(),
        );
    }
    Ok(layout)
}

/// [`layout`] for a run resuming the checkpoint of a parallel run: its tables read in exactly
/// `splits(n)` instances whatever the parallelism, and its threads kept even when no stage has
/// more than one instance.
pub fn layout_resumed(
    plan: &StreamPlan,
    parallelism: usize,
    splits: &dyn Fn(usize) -> usize,
) -> Result<Layout, String> {
    build(plan, parallelism, splits, true)
}

fn build(
    plan: &StreamPlan,
    parallelism: usize,
    splits: &dyn Fn(usize) -> usize,
    resumed: bool,
) -> Result<Layout, String> {
    if parallelism == 0 {
        return Err("parallelism is 0".into());
    }
    let mut b = Builder {
        parallelism,
        splits,
        resumed,
        stages: Vec::new(),
        partitioned: Vec::new(),
        sources: 0,
        ops: 0,
        unions: 0,
    };
    b.branch(&plan.input, &plan.ops, Vec::new())?;
    let mut stages = b.stages;
    for s in 0..stages.len() {
        stages[s].pre_aggregated = pre_aggregates(plan, &stages, s);
    }
    Ok(Layout { stages })
}

/// Whether stage `s` of `stages` takes its window aggregate's input as partial aggregates from
/// the stage reading a table in several splits ([`crate::two_phase`]).
fn pre_aggregates(plan: &StreamPlan, stages: &[LayoutStage], s: usize) -> bool {
    let Some(stage) = stages.get(s) else { return false };
    // hashed on the keys, or to the one instance of a window aggregate without keys
    let StageInput::Exchange { from, exchange: Exchange::Hash(_) | Exchange::Single } = &stage.input else {
        return false;
    };
    // (a table read whole would aggregate every row on its one reading thread)
    let Some(StageInput::Source(table)) = stages.get(*from).filter(|f| f.instances > 1).map(|f| &f.input) else {
        return false;
    };
    let first = branch_ops(plan, &stage.branch).and_then(|ops| ops.get(stage.ops.start));
    first.is_some_and(|op| crate::two_phase::two_phases(plan, *table, op))
}

/// `EXPLAIN`'s line for rows read where they are, hashed on `keys`, in `n` instances.
fn forward_text(keys: &[String], n: usize) -> String {
    format!("Exchange: forward (rows already hashed on [{}]), {n} → {n} instances", keys.join(", "))
}

/// The keys of side `side` of the join at the top of the branch at `path`.
fn join_side_keys(plan: &StreamPlan, path: &[Side], side: usize) -> Vec<Expr> {
    branch_join(plan, path).map_or(Vec::new(), |j| match side {
        0 => j.join.left_keys.clone(),
        _ => j.join.right_keys.clone(),
    })
}

/// `EXPLAIN`'s text of `plan` (as its `Display` prints it) with the exchanges of `layout`
/// between the operators and each source's splits, or the plan's own text when it runs on one
/// thread.
pub fn explain(plan: &StreamPlan, layout: Option<&Layout>) -> String {
    let Some(layout) = layout else { return plan.to_string() };
    let nodes = plan.describe();
    // the exchange line above each node that is fed through one (by node index)
    let mut above: Vec<Option<String>> = vec![None; nodes.len()];
    if layout.merges_into_sink() && nodes.len() > 1 {
        above[1] = Some(Exchange::Single.text(layout.stages[layout.stages.len() - 1].instances, 1));
    }
    for stage in &layout.stages {
        // keyed operators reading the rows where they are
        for f in &stage.forwarded {
            if let Some(i) = nodes.iter().position(|n| n.op == Some(OpRef::Op(f.op))) {
                if i + 1 < nodes.len() {
                    let keys: Vec<String> = f.keys.iter().map(|e| e.to_string()).collect();
                    above[i + 1] = Some(forward_text(&keys, stage.instances));
                }
            }
        }
        match &stage.input {
            StageInput::Exchange { from, exchange } => {
                let first = OpRef::Op(stage.first_op);
                if let Some(i) = nodes.iter().position(|n| n.op == Some(first)) {
                    if i + 1 < nodes.len() {
                        let mut text = exchange.text(layout.stages[*from].instances, stage.instances);
                        if stage.pre_aggregated {
                            text.push_str(", of partial aggregates (each split's rows aggregated per key and slice where it is read)");
                        }
                        above[i + 1] = Some(text);
                    }
                }
            }
            StageInput::Join { from, exchanges, op, co } => {
                let Some(i) = nodes.iter().position(|n| n.op == Some(OpRef::Op(*op))) else { continue };
                let depth = nodes[i].depth;
                let children = (i + 1..nodes.len())
                    .take_while(|k| nodes[*k].depth > depth)
                    .filter(|k| nodes[*k].depth == depth + 1);
                for (side, k) in children.enumerate().take(2) {
                    let text = exchanges[side].text(layout.stages[from[side]].instances, stage.instances);
                    // co-partitioned: above the input of the side's keyed operator
                    let keyed = co
                        .as_ref()
                        .and_then(|c| nodes.iter().position(|n| n.op == Some(OpRef::Op(c.sides[side].first_op))));
                    match (keyed, co) {
                        (Some(at), Some(c)) if at + 1 < nodes.len() && !c.sides[side].ops.is_empty() => {
                            above[at + 1] = Some(text);
                            let join = &join_side_keys(plan, &stage.branch, side);
                            let keys: Vec<String> =
                                c.join_positions.iter().filter_map(|p| join.get(*p)).map(|e| e.to_string()).collect();
                            above[k] = Some(forward_text(&keys, stage.instances));
                        }
                        _ => above[k] = Some(text),
                    }
                }
            }
            StageInput::Union { from, exchange, union } => {
                let mut unions = nodes.iter().enumerate().filter(|(_, n)| n.op.is_none() && n.operator == "Union");
                let Some((i, _)) = unions.nth(*union) else { continue };
                let depth = nodes[i].depth;
                let children = (i + 1..nodes.len())
                    .take_while(|k| nodes[*k].depth > depth)
                    .filter(|k| nodes[*k].depth == depth + 1);
                for (n, k) in children.enumerate() {
                    if let Some(f) = from.get(n) {
                        above[k] = Some(exchange.text(layout.stages[*f].instances, stage.instances));
                    }
                }
            }
            StageInput::Source(_) => {}
        }
    }
    let mut out = String::new();
    // the depths of the nodes whose subtrees are indented one more (under an exchange line)
    let mut markers: Vec<usize> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        markers.retain(|m| *m < node.depth);
        if let Some(text) = &above[i] {
            let _ = writeln!(out, "{:indent$}{text}", "", indent = (node.depth + markers.len()) * 2);
            markers.push(node.depth);
        }
        let suffix = match node.op {
            Some(OpRef::Source(n)) => match layout.source_stage(n).map(|s| s.instances) {
                Some(k) if k > 1 => format!(" [{k} splits]"),
                _ => " [read whole]".to_string(),
            },
            _ => String::new(),
        };
        let indent = (node.depth + markers.len()) * 2;
        let _ = writeln!(out, "{:indent$}{}: {}{suffix}", "", node.operator, node.details);
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(input: StageInput) -> LayoutStage {
        let forwarded = Vec::new();
        LayoutStage {
            input,
            branch: Vec::new(),
            ops: 0..0,
            first_op: 0,
            instances: 2,
            forwarded,
            pre_aggregated: false,
        }
    }

    #[test]
    fn a_source_is_hashed_when_a_stage_after_it_takes_its_rows_by_key() {
        // q7's shape: bids joined where they are read with a window's results broadcast to them
        let broadcast = Layout {
            stages: vec![
                stage(StageInput::Source(0)),
                stage(StageInput::Source(1)),
                stage(StageInput::Exchange { from: 1, exchange: Exchange::Single }),
                stage(StageInput::Join {
                    from: [0, 2],
                    exchanges: [Exchange::Forward, Exchange::Broadcast],
                    op: 3,
                    co: None,
                }),
            ],
        };
        assert!(!broadcast.hashes_source(0) && !broadcast.hashes_source(1) && !broadcast.hashes_source(7));
        let hashed = Layout {
            stages: vec![
                stage(StageInput::Source(0)),
                stage(StageInput::Source(1)),
                stage(StageInput::Join {
                    from: [0, 1],
                    exchanges: [Exchange::Forward, Exchange::Hash(Vec::new())],
                    op: 2,
                    co: None,
                }),
                stage(StageInput::Union { from: vec![2, 0], exchange: Exchange::Hash(Vec::new()), union: 0 }),
            ],
        };
        assert!(hashed.hashes_source(1), "hashed into the join");
        assert!(hashed.hashes_source(0), "hashed into the union, whatever the join does");
    }
}
