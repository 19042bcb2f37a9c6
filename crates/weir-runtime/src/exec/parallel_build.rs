//! Building a parallel run from a plan and its [`Layout`]: the instances of each stage with
//! their operators, the exchanges' routers and channels, and the sink's merge (see
//! [`crate::exec::parallel`] for how they run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::DFSchema;
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::parallel::{branch_input, branch_join, branch_ops, Exchange, Layout, LayoutStage, Side, StageInput};
use weir_plan::{OpRef, PlanInput, StreamOp, StreamPlan};

use crate::error::{Result, RuntimeError};
use crate::exec::alignment::Alignment;
use crate::exec::chain::Chain;
use crate::exec::exchange::{channel, Inbox, Link, Router};
use crate::exec::instrument::Instrumented;
use crate::exec::metrics::Metrics;
use crate::exec::parallel::{Merge, OpInstance, Parallel, SourceInstance};
use crate::exec::pipeline::{build_join, build_ops, input_columns, physical, sink_schema, two_phase_window, Pipeline};
use crate::exec::rescale::StageShape;
use crate::exec::sink_merge::SinkMerge;
use crate::exec::source::{Sink, Source, SourceDriver};
use crate::exec::stage::Stage;
use crate::exec::watermark_merge::WatermarkMerge;
use crate::operators::proc_time::{ProcTimeOp, ProcessingClock};
use crate::state::checkpoint::ParallelShape;

/// The keys an exchange hashes, over the schema of the rows it routes.
fn router_keys(exchange: &Exchange, schema: &DFSchema) -> Result<Option<Vec<Arc<dyn PhysicalExpr>>>> {
    match exchange {
        Exchange::Hash(keys) => Ok(Some(keys.iter().map(|k| physical(k, schema)).collect::<Result<Vec<_>>>()?)),
        Exchange::Single | Exchange::Forward | Exchange::Broadcast => Ok(None),
    }
}

/// The operators of `stage`.
fn stage_ops<'a>(plan: &'a StreamPlan, stage: &LayoutStage) -> Result<&'a [StreamOp]> {
    branch_ops(plan, &stage.branch)
        .and_then(|ops| ops.get(stage.ops.clone()))
        .ok_or_else(|| RuntimeError::Internal("a parallel stage names operators the plan does not have".into()))
}

/// The operators of side `side` of join stage `stage` that run in its instances (see
/// [`weir_plan::parallel::CoPartition`]), if any.
fn side_ops<'a>(plan: &'a StreamPlan, stage: &LayoutStage, side: usize) -> Result<&'a [StreamOp]> {
    let StageInput::Join { co: Some(co), .. } = &stage.input else { return Ok(&[]) };
    let mut path = stage.branch.clone();
    path.push(if side == 0 { Side::Left } else { Side::Right });
    branch_ops(plan, &path)
        .and_then(|ops| ops.get(co.sides[side].ops.clone()))
        .ok_or_else(|| RuntimeError::Internal("a parallel join stage names operators its sides do not have".into()))
}

/// The schema the rows `op` reads have.
fn input_schema(op: &StreamOp) -> &DFSchema {
    match op {
        StreamOp::Filter { input_schema, .. } | StreamOp::Project { input_schema, .. } => input_schema.as_ref(),
        StreamOp::WindowAggregate(w) => w.input_schema.as_ref(),
        StreamOp::UpdatingAggregate(u) => u.input_schema.as_ref(),
        StreamOp::Rank(r) => r.input_schema.as_ref(),
        StreamOp::UpsertNormalize(u) => u.schema.as_ref(),
        StreamOp::OverAggregate(o) => o.input_schema.as_ref(),
        StreamOp::WindowRows(w) => w.input_schema.as_ref(),
    }
}

/// The schema of the rows `stage` sends on.
fn output_schema<'a>(plan: &'a StreamPlan, stage: &LayoutStage) -> Result<&'a DFSchema> {
    if let Some(last) = stage_ops(plan, stage)?.last() {
        return Ok(last.output_schema().as_ref());
    }
    match &stage.input {
        StageInput::Source(n) => plan
            .sources()
            .get(*n)
            .map(|s| s.output_schema.as_ref())
            .ok_or_else(|| RuntimeError::Internal("a parallel stage reads a source the plan does not have".into())),
        StageInput::Join { .. } => branch_join(plan, &stage.branch)
            .map(|j| j.join.output_schema.as_ref())
            .ok_or_else(|| RuntimeError::Internal("a parallel stage joins where the plan has no join".into())),
        StageInput::Union { .. } => branch_input(plan, &stage.branch)
            .map(|i| i.output_schema().as_ref())
            .ok_or_else(|| RuntimeError::Internal("a parallel stage unions where the plan has no union".into())),
        StageInput::Exchange { .. } => Err(RuntimeError::Internal("a parallel stage without operators".into())),
    }
}

/// The schema the keys of the exchange from stage `from` into stage `to` are written over: the
/// join's side, or the keyed operator's input (names may differ from the sender's, the columns
/// do not).
fn key_schema<'a>(plan: &'a StreamPlan, layout: &Layout, to: Option<usize>, from: usize) -> Result<&'a DFSchema> {
    let Some(stage) = to.and_then(|c| layout.stages.get(c)) else {
        return output_schema(plan, &layout.stages[from]);
    };
    match &stage.input {
        StageInput::Join { from: sides, .. } => {
            let side = usize::from(sides[0] != from);
            if let Some(first) = side_ops(plan, stage, side)?.first() {
                return Ok(input_schema(first));
            }
            let join = branch_join(plan, &stage.branch)
                .ok_or_else(|| RuntimeError::Internal("a parallel join stage without its join".into()))?;
            Ok(if side == 0 { join.join.left_schema.as_ref() } else { join.join.right_schema.as_ref() })
        }
        _ => match stage_ops(plan, stage)?.first() {
            Some(op) => Ok(input_schema(op)),
            None => output_schema(plan, &layout.stages[from]),
        },
    }
}

/// `ops` (numbered from `first_op`), instrumented as instance `instance` at their places.
fn instrumented(
    ops: &[StreamOp],
    first_op: usize,
    instance: usize,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Instrumented>> {
    Ok(build_ops(ops, metrics)?
        .into_iter()
        .enumerate()
        .map(|(k, op)| Instrumented::new_instance(op, OpRef::Op(first_op + k), instance, metrics))
        .collect())
}

/// The operators of `stage`, instrumented as instance `instance` at their places.
fn instance_ops(
    plan: &StreamPlan,
    stage: &LayoutStage,
    instance: usize,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Instrumented>> {
    instrumented(stage_ops(plan, stage)?, stage.first_op, instance, metrics)
}

/// The window aggregate stage `stage` starts with, when it merges partial aggregates its
/// senders made ([`LayoutStage::pre_aggregated`]).
fn pre_aggregated<'a>(plan: &'a StreamPlan, stage: &LayoutStage) -> Result<Option<&'a weir_plan::WindowAggregate>> {
    if !stage.pre_aggregated {
        return Ok(None);
    }
    match stage_ops(plan, stage)?.first() {
        Some(StreamOp::WindowAggregate(w)) => Ok(Some(w)),
        _ => Err(RuntimeError::Internal("a stage merging partial aggregates without its window aggregate".into())),
    }
}

/// The operators of `stage` as instance `instance`, its window aggregate merging partial
/// aggregates when it is [`LayoutStage::pre_aggregated`].
fn instance_ops_merging(
    plan: &StreamPlan,
    stage: &LayoutStage,
    instance: usize,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Instrumented>> {
    let Some(w) = pre_aggregated(plan, stage)? else { return instance_ops(plan, stage, instance, metrics) };
    let (_, merge) = two_phase_window(w, metrics)?;
    let mut ops = vec![Instrumented::new_instance(Box::new(merge), OpRef::Op(stage.first_op), instance, metrics)];
    ops.extend(instrumented(&stage_ops(plan, stage)?[1..], stage.first_op + 1, instance, metrics)?);
    Ok(ops)
}

/// Where a stage sends its rows: the stage reading them (or `None`: the sink), its index among
/// that stage's senders for its instance 0, and the exchange.
fn consumer(layout: &Layout, s: usize) -> (Option<usize>, usize, Exchange) {
    for (c, stage) in layout.stages.iter().enumerate() {
        match &stage.input {
            StageInput::Exchange { from, exchange } if *from == s => return (Some(c), 0, exchange.clone()),
            StageInput::Join { from, exchanges, .. } if from.contains(&s) => {
                let side = usize::from(from[0] != s);
                let offset = if side == 0 { 0 } else { layout.stages[from[0]].instances };
                return (Some(c), offset, exchanges[side].clone());
            }
            StageInput::Union { from, exchange, .. } if from.contains(&s) => {
                let offset = from.iter().take_while(|f| **f != s).map(|f| layout.stages[*f].instances).sum();
                return (Some(c), offset, exchange.clone());
            }
            _ => {}
        }
    }
    (None, 0, Exchange::Single)
}

/// The senders of a stage's input.
fn senders(layout: &Layout, stage: &LayoutStage) -> usize {
    match &stage.input {
        StageInput::Source(_) => 0,
        StageInput::Exchange { from, .. } => layout.stages[*from].instances,
        StageInput::Join { from, .. } => layout.stages[from[0]].instances + layout.stages[from[1]].instances,
        StageInput::Union { from, .. } => from.iter().map(|f| layout.stages[*f].instances).sum(),
    }
}

/// For each watermark state a checkpoint taken on one thread lists (its unions' and joins', in
/// the order the operator task's tree saves them: children first), the stage that takes it up
/// (see [`crate::exec::rescale::ByThread::from_one_thread`]).
fn one_thread_owners(plan: &StreamPlan, layout: &Layout) -> Vec<usize> {
    fn walk(input: &PlanInput, path: Vec<Side>, out: &mut Vec<Vec<Side>>) {
        match input {
            PlanInput::Source(_) => return,
            PlanInput::Union(branches) => {
                for (n, b) in branches.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(Side::Union(n));
                    walk(&b.input, p, out);
                }
            }
            PlanInput::Join(j) => {
                for (side, b) in [(Side::Left, &j.left), (Side::Right, &j.right)] {
                    let mut p = path.clone();
                    p.push(side);
                    walk(&b.input, p, out);
                }
            }
        }
        out.push(path);
    }
    if let PlanInput::Source(_) = plan.input {
        // one table: its watermarks' merge, taken up by the stage reading the table's stage
        let reader = layout.stages.iter().position(|s| matches!(s.input, StageInput::Exchange { from: 0, .. }));
        return vec![reader.unwrap_or(usize::MAX)];
    }
    let mut paths = Vec::new();
    walk(&plan.input, Vec::new(), &mut paths);
    paths
        .iter()
        .map(|path| {
            layout
                .stages
                .iter()
                .position(|s| {
                    &s.branch == path && matches!(s.input, StageInput::Union { .. } | StageInput::Join { .. })
                })
                .unwrap_or(usize::MAX)
        })
        .collect()
}

impl Pipeline {
    /// A pipeline running `plan` as `layout` says: `sources` holds, for each of the plan's
    /// sources, its splits (one per instance of the stage reading it); `batch_size`, the rows
    /// a batch has (`batch.size`: the exchanges' credits are counted in them).
    pub fn parallel(
        plan: &StreamPlan,
        layout: &Layout,
        sources: Vec<Vec<Box<dyn Source>>>,
        sink: Box<dyn Sink>,
        metrics: Arc<Metrics>,
        batch_size: usize,
    ) -> Result<Self> {
        let stages = &layout.stages;
        let splits: Vec<usize> = sources.iter().map(Vec::len).collect();
        let Some(last) = stages.len().checked_sub(1) else {
            return Err(RuntimeError::Internal("a parallel plan without stages".into()));
        };
        metrics.count_windows_across_instances();
        // the last stage runs on the sink's thread when it has one instance behind an exchange
        let fused = stages[last].instances == 1
            && matches!(stages[last].input, StageInput::Exchange { .. } | StageInput::Union { .. });
        // each stage's channels (one per instance), but the first stages' (they read sources)
        let mut channels: Vec<Vec<(Link, Inbox)>> = Vec::new();
        for stage in stages {
            let n = senders(layout, stage);
            channels.push(match n {
                0 => Vec::new(),
                n => (0..stage.instances).map(|_| channel(n, batch_size)).collect(),
            });
        }
        let (sink_tx, sink_rx, sink_senders) = match fused {
            true => match channels[last].pop() {
                Some((tx, rx)) => (tx, rx, senders(layout, &stages[last])),
                None => return Err(RuntimeError::Internal("a parallel plan without its last stage".into())),
            },
            false => {
                let (tx, rx) = channel(stages[last].instances, batch_size);
                (tx, rx, stages[last].instances)
            }
        };
        let credits = channels.iter().flatten().map(|(tx, _)| tx.credits()).chain([sink_tx.credits()]).collect();
        let targets: Vec<Vec<Link>> = channels.iter().map(|c| c.iter().map(|(tx, _)| tx.clone()).collect()).collect();
        let mut receivers: Vec<std::vec::IntoIter<Inbox>> =
            channels.into_iter().map(|c| c.into_iter().map(|(_, rx)| rx).collect::<Vec<_>>().into_iter()).collect();
        let mut sources: Vec<std::vec::IntoIter<Box<dyn Source>>> = sources.into_iter().map(Vec::into_iter).collect();
        let all_sources = plan.sources();
        let (mut source_instances, mut instances) = (Vec::new(), Vec::new());
        // with a join, source instances keep their watermarks within a drift of each other
        let source_count: usize =
            stages.iter().filter(|s| matches!(s.input, StageInput::Source(_))).map(|s| s.instances).sum();
        let lookup = weir_plan::parallel::lookup_sources(plan);
        let first: Vec<bool> = stages
            .iter()
            .flat_map(|s| match s.input {
                StageInput::Source(n) => vec![lookup.contains(&n); s.instances],
                _ => Vec::new(),
            })
            .collect();
        let align = weir_plan::parallel::merges_inputs(plan).then(|| {
            let drift = weir_plan::parallel::alignment_drift(plan);
            Arc::new(Alignment::new(source_count, drift).read_first(first))
        });
        let clock = Arc::new(ProcessingClock::new());
        for (s, stage) in stages.iter().enumerate() {
            if fused && s == last {
                break;
            }
            let (to, offset, exchange) = consumer(layout, s);
            let targets = match to {
                Some(c) if !(fused && c == last) => targets[c].clone(),
                _ => vec![sink_tx.clone()],
            };
            // a window aggregate in two phases: this stage sends it partial aggregates (its
            // first phase counted as that plan node's, under its own name)
            let local = match to.and_then(|c| stages.get(c)) {
                Some(c) => pre_aggregated(plan, c)?.map(|w| (w, OpRef::Op(c.first_op))),
                None => None,
            };
            let keys = match local {
                // (none: to the one instance of a window aggregate without keys)
                Some((w, _)) => {
                    Some(two_phase_window(w, &metrics)?.0.partial_layout().key_exprs()).filter(|k| !k.is_empty())
                }
                None => router_keys(&exchange, key_schema(plan, layout, to, s)?)?,
            };
            for k in 0..stage.instances {
                let ops = instance_ops_merging(plan, stage, k, &metrics)?;
                let out = match exchange {
                    // its rows to the instance of its own number only
                    Exchange::Forward => Router::forward(targets.clone(), offset + k, k),
                    Exchange::Broadcast => Router::broadcast(targets.clone(), offset + k),
                    _ => Router::new(targets.clone(), offset + k, keys.clone()),
                };
                match &stage.input {
                    StageInput::Source(n) => {
                        let node = all_sources
                            .get(*n)
                            .ok_or_else(|| RuntimeError::Internal("a parallel stage reads a missing source".into()))?;
                        let source = sources
                            .get_mut(*n)
                            .and_then(Iterator::next)
                            .ok_or_else(|| RuntimeError::Internal("fewer splits than instances".into()))?;
                        let cols = input_columns(node, plan.late_rows.is_some())?;
                        let idle = node.table.idle_timeout().map(|t| Duration::from_nanos(t.max(0) as u64));
                        let mut driver = SourceDriver::new(source, cols.watermark, cols.output, Arc::clone(&metrics))
                            .with_operator_metrics(metrics.register_instance("Source", OpRef::Source(*n), k))
                            .with_split_idle_timeout(idle)
                            .without_watermark_metric();
                        if node.processing_time {
                            driver = driver.with_final_watermark();
                        }
                        // the PROCTIME() column, stamped as rows are read (the clock shared by
                        // every instance never goes back); with a window over it, the watermark
                        let stamp = cols.proctime.map(|position| {
                            let schema = crate::exec::pipeline::relaxed(node.output_schema.as_arrow());
                            let op = ProcTimeOp::new(position, schema, Arc::clone(&clock), node.processing_time);
                            Instrumented::unregistered(Box::new(op))
                        });
                        let clock = node.processing_time.then(|| Arc::clone(&clock));
                        let align = align.as_ref().map(|a| (Arc::clone(a), source_instances.len()));
                        let label = node.table.name.clone();
                        let pre_aggregate = match local {
                            Some((w, place)) => {
                                let op = Box::new(two_phase_window(w, &metrics)?.0);
                                Some(Instrumented::new_instance(op, place, k, &metrics))
                            }
                            None => None,
                        };
                        source_instances.push(SourceInstance {
                            driver,
                            label,
                            ops,
                            out,
                            align,
                            idle_after: idle,
                            stamp,
                            pre_aggregate,
                            clock,
                            checkpointer: None,
                        });
                    }
                    StageInput::Exchange { .. } | StageInput::Union { .. } => {
                        let rx =
                            receivers[s].next().ok_or_else(|| RuntimeError::Internal("a missing channel".into()))?;
                        let input = Merge::union(rx, senders(layout, stage));
                        instances.push(OpInstance { input, ops, out, checkpointer: None });
                    }
                    StageInput::Join { from, op, co, .. } => {
                        let rx =
                            receivers[s].next().ok_or_else(|| RuntimeError::Internal("a missing channel".into()))?;
                        let join = branch_join(plan, &stage.branch)
                            .ok_or_else(|| RuntimeError::Internal("a parallel join stage without its join".into()))?;
                        let join_op = build_join(&join.join, &metrics)?;
                        let join_op = Instrumented::new_instance(Box::new(join_op), OpRef::Op(*op), k, &metrics);
                        let sides = [stages[from[0]].instances, stages[from[1]].instances];
                        let mut side_instances = [Vec::new(), Vec::new()];
                        for (side, built) in side_instances.iter_mut().enumerate() {
                            let first_op = co.as_ref().map_or(0, |c| c.sides[side].first_op);
                            *built = instrumented(side_ops(plan, stage, side)?, first_op, k, &metrics)?;
                        }
                        let input = Merge::join(rx, sides, join_op, side_instances);
                        instances.push(OpInstance { input, ops, out, checkpointer: None });
                    }
                }
            }
        }
        if sources.iter_mut().any(|left| left.next().is_some()) {
            return Err(RuntimeError::Internal("more splits than instances reading them".into()));
        }
        drop((sink_tx, targets));
        let chain_ops = match fused {
            true => instance_ops_merging(plan, &stages[last], 0, &metrics)?,
            false => Vec::new(),
        };
        // the merge orders what it passes by epochs: results, but not the rows a fused stage's
        // operators still read (an input's held epoch released after another input's later
        // rows would reach a window behind the watermark those rows carried: late); those pass
        // in arrival order, each capped by the other senders' watermarks, as into any instance
        let event_time = all_sources.iter().all(|s| s.table.watermark.is_some() && !s.processing_time);
        let ordered = event_time && chain_ops.is_empty();
        let sink_merge = SinkMerge::new(sink_rx, sink_senders, ordered);
        let changelog = plan.is_updating().then(|| sink_schema(plan));
        let chain = Chain { ops: chain_ops, sink, metrics, changelog, late_rows: None, report_watermark: true };
        let shape = ParallelShape {
            // the instances of keyed stages (source stages have their tables' splits)
            parallelism: stages
                .iter()
                .filter(|s| !matches!(s.input, StageInput::Source(_)))
                .map(|s| s.instances)
                .max()
                .unwrap_or(1),
            stages: stages.iter().map(|s| s.instances).collect(),
            key_groups: weir_plan::parallel::KEY_GROUPS,
            splits,
            inputs: stages
                .iter()
                .map(|s| {
                    match &s.input {
                        StageInput::Source(_) => "source",
                        StageInput::Exchange { .. } => "exchange",
                        StageInput::Union { .. } => "union",
                        StageInput::Join { co: Some(_), .. } => "join co-partitioned",
                        StageInput::Join { exchanges, .. } if exchanges.contains(&Exchange::Broadcast) => {
                            "join broadcast"
                        }
                        StageInput::Join { .. } => "join",
                    }
                    .to_string()
                })
                .collect(),
        };
        let kinds = stages
            .iter()
            .map(|stage| {
                // a join stage's operators: each side's, the join, then those after it
                let (mut ops, mut hashed_on) = (Vec::new(), Vec::new());
                if let StageInput::Join { op, co, .. } = &stage.input {
                    if let Some(co) = co {
                        // (a side with no operators here has no state here)
                        for side in co.sides.iter().filter(|side| !side.ops.is_empty()) {
                            hashed_on.push((ops.len(), side.positions.clone()));
                            ops.extend(side.first_op..side.first_op + side.ops.len());
                        }
                        hashed_on.push((ops.len(), co.join_positions.clone()));
                    }
                    ops.push(*op);
                }
                let before = ops.len();
                ops.extend(stage.first_op..stage.first_op + stage_ops(plan, stage)?.len());
                hashed_on
                    .extend(stage.forwarded.iter().map(|f| (f.index - stage.ops.start + before, f.positions.clone())));
                Ok(StageShape {
                    exchange: matches!(stage.input, StageInput::Exchange { .. } | StageInput::Union { .. }),
                    inputs: match &stage.input {
                        StageInput::Source(_) => Vec::new(),
                        StageInput::Exchange { from, .. } => vec![*from],
                        StageInput::Join { from, .. } => from.to_vec(),
                        StageInput::Union { from, .. } => from.clone(),
                    },
                    ops,
                    table: match stage.input {
                        StageInput::Source(n) => Some(n),
                        _ => None,
                    },
                    hashed_on,
                    split_bound: matches!(&stage.input, StageInput::Join { exchanges, .. } if exchanges.contains(&Exchange::Forward)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let one_thread = one_thread_owners(plan, layout);
        let parallel = Parallel {
            sources: source_instances,
            instances,
            sink: sink_merge,
            shape,
            kinds,
            one_thread,
            checkpoints: None,
            credits,
        };
        let root = Stage::Union { branches: Vec::new(), watermarks: WatermarkMerge::new(&[], Instant::now()) };
        Ok(Self {
            drivers: Vec::new(),
            labels: Vec::new(),
            root,
            chain,
            clock: None,
            first: Vec::new(),
            aligned: false,
            checkpoints: None,
            parallel: Some(Box::new(parallel)),
        })
    }
}
