//! Building a parallel run from a plan and its [`Layout`]: the instances of each stage with
//! their operators, the exchanges' routers and channels, and the sink's merge (see
//! [`crate::exec::parallel`] for how they run).

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::DFSchema;
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::parallel::{Exchange, Layout};
use weir_plan::{OpRef, StreamOp, StreamPlan};

use crate::error::{Result, RuntimeError};
use crate::exec::chain::Chain;
use crate::exec::exchange::{Envelope, Router};
use crate::exec::instrument::Instrumented;
use crate::exec::metrics::Metrics;
use crate::exec::parallel::{Merge, OpInstance, Parallel, SourceInstance};
use crate::exec::pipeline::{build_ops, input_columns, physical, sink_schema, Pipeline};
use crate::exec::sink_merge::SinkMerge;
use crate::exec::source::{Sink, Source, SourceDriver};
use crate::exec::stage::Stage;
use crate::exec::watermark_merge::WatermarkMerge;

/// The keys an exchange hashes, over the schema of the rows it routes.
fn router_keys(exchange: &Exchange, schema: &DFSchema) -> Result<Option<Vec<Arc<dyn PhysicalExpr>>>> {
    match exchange {
        Exchange::Hash(keys) => Ok(Some(keys.iter().map(|k| physical(k, schema)).collect::<Result<Vec<_>>>()?)),
        Exchange::Single => Ok(None),
    }
}

/// The schema of the rows reaching operator `i` of `ops` (the source's before the first).
fn input_schema(plan: &StreamPlan, i: usize) -> &DFSchema {
    match i {
        0 => plan.input.output_schema().as_ref(),
        _ => plan.ops[i - 1].output_schema().as_ref(),
    }
}

/// The operators `ops` of the plan, instrumented as instance `instance` at their places.
fn instance_ops(ops: &[StreamOp], first: usize, instance: usize, metrics: &Arc<Metrics>) -> Result<Vec<Instrumented>> {
    Ok(build_ops(ops, metrics)?
        .into_iter()
        .enumerate()
        .map(|(k, op)| Instrumented::new_instance(op, OpRef::Op(first + k), instance, metrics))
        .collect())
}

impl Pipeline {
    /// A pipeline running `plan` as `layout` says: `sources` are the table's splits, one per
    /// instance of the first stage.
    pub fn parallel(
        plan: &StreamPlan,
        layout: &Layout,
        sources: Vec<Box<dyn Source>>,
        sink: Box<dyn Sink>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let stages = &layout.stages;
        metrics.count_windows_across_instances();
        if stages.is_empty() || sources.len() != stages[0].instances {
            return Err(RuntimeError::Internal("a parallel plan got another number of splits than it has".into()));
        }
        let last = stages.len() - 1;
        // the last stage runs on the sink's thread when it has one instance
        let fused = stages[last].instances == 1 && last > 0;
        // receivers of each stage after the first, and of the sink's merge
        let mut inputs: Vec<Vec<(SyncSender<Envelope>, Merge)>> = Vec::new();
        for s in 1..stages.len() {
            let senders = stages[s - 1].instances;
            inputs.push((0..stages[s].instances).map(|_| Merge::new(senders)).collect());
        }
        let (sink_tx, sink_merge) = match fused {
            true => match inputs.pop().and_then(|mut v| v.pop()) {
                Some(pair) => pair,
                None => return Err(RuntimeError::Internal("a parallel plan without its last stage".into())),
            },
            false => Merge::new(stages[last].instances),
        };
        let node = plan.first_source();
        let cols = input_columns(node, plan.late_rows.is_some())?;
        let sink_inputs = if fused { stages[last - 1].instances } else { stages[last].instances };
        let sink_merge = SinkMerge::new(sink_merge.rx, sink_inputs, cols.watermark.is_some());
        // where each stage's instances send: the next stage's instances, or the sink's merge
        let targets: Vec<Vec<SyncSender<Envelope>>> = (0..stages.len())
            .map(|s| match inputs.get(s) {
                Some(next) => next.iter().map(|(tx, _)| tx.clone()).collect(),
                None => vec![sink_tx.clone()],
            })
            .collect();
        // the keys of the exchange after stage s (none into the sink's merge)
        let exchange_after = |s: usize| -> Result<Option<Vec<Arc<dyn PhysicalExpr>>>> {
            match stages.get(s + 1) {
                Some(next) => {
                    router_keys(next.input.as_ref().unwrap_or(&Exchange::Single), input_schema(plan, next.ops.start))
                }
                None => Ok(None),
            }
        };
        let idle = node.table.idle_timeout().map(|n| Duration::from_nanos(n.max(0) as u64));
        let mut source_instances = Vec::new();
        for (k, source) in sources.into_iter().enumerate() {
            let driver = SourceDriver::new(source, cols.watermark, cols.output.clone(), Arc::clone(&metrics))
                .with_operator_metrics(metrics.register_instance("Source", OpRef::Source(0), k))
                .with_split_idle_timeout(idle)
                .without_watermark_metric();
            let ops = instance_ops(&plan.ops[stages[0].ops.clone()], stages[0].ops.start, k, &metrics)?;
            let out = Router::new(targets[0].clone(), k, exchange_after(0)?);
            source_instances.push(SourceInstance { driver, ops, out });
        }
        let mut instances = Vec::new();
        let mut receivers = inputs.into_iter();
        for (s, stage) in stages.iter().enumerate().skip(1) {
            if fused && s == last {
                break;
            }
            let merges = receivers.next().unwrap_or_default();
            for (j, (_, input)) in merges.into_iter().enumerate() {
                let ops = instance_ops(&plan.ops[stage.ops.clone()], stage.ops.start, j, &metrics)?;
                let out = Router::new(targets[s].clone(), j, exchange_after(s)?);
                instances.push(OpInstance { input, ops, out });
            }
        }
        drop((sink_tx, targets));
        let chain_ops = match fused {
            true => instance_ops(&plan.ops[stages[last].ops.clone()], stages[last].ops.start, 0, &metrics)?,
            false => Vec::new(),
        };
        let changelog = plan.is_updating().then(|| sink_schema(plan));
        let chain = Chain { ops: chain_ops, sink, metrics, changelog, late_rows: None, report_watermark: true };
        let parallel = Parallel { sources: source_instances, instances, sink: sink_merge };
        let root = Stage::Union { branches: Vec::new(), watermarks: WatermarkMerge::new(&[], Instant::now()) };
        let labels = Vec::new();
        Ok(Self {
            drivers: Vec::new(),
            labels,
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
