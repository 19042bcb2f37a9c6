//! Running a plan on several threads, as its [`Layout`] says: one thread per instance of each
//! stage, exchanges between them, and the sink's thread merging the last stage's instances.
//!
//! ```text
//!   split 0 ─► Source ─► stateless ops ─► Router ═╗ hash(keys)   ╔═► instance 0: Union ─► keyed op ─► … ─► Router ═╗
//!   split 1 ─► Source ─► stateless ops ─► Router ═╬══════════════╬═► instance 1: Union ─► keyed op ─► … ─► Router ═╬═► sink: Union ─► Chain ─► Sink
//!                                                 (bounded channels: a slow stage slows its senders)
//! ```
//!
//! Each instance reads one channel that all its senders share, so it never waits on one input
//! while another is full. A `Union` of its senders (a [`WatermarkMerge`]) makes its watermark the
//! minimum over them and ends its stream when every sender has ended. Rows keep the watermark
//! their split stamped (capped by the other senders', as in a `UNION ALL`), so lateness is
//! judged as on one thread when the table is read whole. Parallelism 1 never comes here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion_common::DFSchema;
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::parallel::{Exchange, Layout};
use weir_plan::{OpRef, StreamOp, StreamPlan};

use crate::error::{Result, RuntimeError};
use crate::exec::chain::Chain;
use crate::exec::exchange::{Envelope, Router};
use crate::exec::instrument::{through, Instrumented};
use crate::exec::metrics::Metrics;
use crate::exec::pipeline::{build_ops, input_columns, physical, sink_schema, Pipeline};
use crate::exec::sink_merge::SinkMerge;
use crate::exec::source::{Sink, Source, SourceDriver};
use crate::exec::stage::{BranchStage, Stage};
use crate::exec::watermark_merge::WatermarkMerge;
use crate::message::Message;

/// The layout `plan` runs with at `parallelism` when its table is read by `splits` sources, or
/// `None` when it runs on one thread (the reason is logged).
pub fn parallel_layout(plan: &StreamPlan, parallelism: usize, splits: usize) -> Option<Layout> {
    if parallelism <= 1 {
        return None;
    }
    let uses_proctime = plan
        .first_source()
        .table
        .proctime_index()
        .is_some_and(|p| plan.first_source().projection.as_ref().is_none_or(|cols| cols.contains(&p)));
    let layout = if uses_proctime {
        Err("a query over a PROCTIME() column runs on one thread for now".to_string())
    } else {
        weir_plan::parallel::layout(plan, parallelism, splits)
    };
    match layout {
        Ok(l) => Some(l),
        Err(why) => {
            tracing::info!("parallelism {parallelism} not used: {why}");
            None
        }
    }
}

/// The threads of a parallel run, built and waiting to start.
pub(crate) struct Parallel {
    sources: Vec<SourceInstance>,
    instances: Vec<OpInstance>,
    /// The sink's input: the merge of the last stage's instances (the pipeline's chain runs
    /// after it, with the last stage's operators when that stage has one instance).
    sink: SinkMerge,
}

/// An instance of the first stage: a split of the table and the stateless operators after it.
struct SourceInstance {
    driver: SourceDriver,
    ops: Vec<Instrumented>,
    out: Router,
}

/// An instance of a later stage.
struct OpInstance {
    input: Merge,
    ops: Vec<Instrumented>,
    out: Router,
}

/// One channel shared by all of an instance's senders, and the merge of their watermarks.
struct Merge {
    rx: Receiver<Envelope>,
    root: Stage,
}

impl Merge {
    fn new(senders: usize) -> (SyncSender<Envelope>, Self) {
        let (tx, rx) = sync_channel(2 * senders + 2);
        let branches = (0..senders)
            .map(|i| BranchStage { stage: Stage::Source { stamp: Vec::new() }, ops: Vec::new(), sources: vec![i] })
            .collect();
        let watermarks = WatermarkMerge::new(&vec![None; senders], Instant::now());
        (tx, Self { rx, root: Stage::Union { branches, watermarks } })
    }

    /// The next messages, merged; `None` once every sender has gone.
    fn next(&mut self) -> Result<Option<Vec<Message>>> {
        match self.rx.recv() {
            Ok((i, messages)) => Ok(Some(self.root.input(i, messages, Instant::now())?)),
            Err(_) => Ok(None),
        }
    }
}

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

/// The first error of any thread, and whether one failed.
#[derive(Clone, Default)]
struct Failure {
    failed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<RuntimeError>>>,
}

impl Failure {
    fn record(&self, e: RuntimeError) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    fn take(&self) -> Option<RuntimeError> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn happened(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

impl SourceInstance {
    fn run(mut self, cancel: &AtomicBool, failure: &Failure) -> Result<()> {
        loop {
            if failure.happened() {
                return Ok(());
            }
            if cancel.load(Ordering::Relaxed) {
                let out = through(&mut self.ops, vec![Message::EndOfStream])?;
                self.out.send(out)?;
                return Ok(());
            }
            let mut messages = Vec::new();
            let more = self.driver.poll(&mut messages)?;
            if !more {
                messages.push(Message::EndOfStream);
            }
            if messages.is_empty() {
                continue;
            }
            let out = through(&mut self.ops, messages)?;
            if !self.out.send(out)? || !more {
                return Ok(());
            }
        }
    }
}

impl OpInstance {
    fn run(mut self) -> Result<()> {
        while let Some(merged) = self.input.next()? {
            let ended = merged.iter().any(|m| matches!(m, Message::EndOfStream));
            let out = through(&mut self.ops, merged)?;
            if !self.out.send(out)? || ended {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Run `f` on a blocking thread, recording its error.
fn spawn(failure: &Failure, f: impl FnOnce() -> Result<()> + Send + 'static) -> tokio::task::JoinHandle<()> {
    let failure = failure.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = f() {
            tracing::debug!(error = %e, "a parallel instance failed");
            failure.record(e);
        }
    })
}

impl Parallel {
    /// Run every instance and the sink's merge into `chain`, until the inputs end or `cancel`
    /// is set (then the sources end their streams: windows still open are discarded).
    pub(crate) async fn run(self, mut chain: Chain, cancel: Arc<AtomicBool>) -> Result<()> {
        let failure = Failure::default();
        tracing::debug!(sources = self.sources.len(), instances = self.instances.len(), "parallel pipeline starting");
        let mut handles = Vec::new();
        for s in self.sources {
            let (cancel, f) = (Arc::clone(&cancel), failure.clone());
            handles.push(spawn(&failure, move || s.run(&cancel, &f)));
        }
        for i in self.instances {
            handles.push(spawn(&failure, move || i.run()));
        }
        let mut merge = self.sink;
        let sink = tokio::task::spawn_blocking(move || -> Result<()> {
            while let Some(messages) = merge.next() {
                for m in messages {
                    if chain.push(m)? {
                        return Ok(());
                    }
                }
            }
            Err(RuntimeError::Internal("the query's threads stopped before its end".into()))
        });
        let result = sink.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        if let Err(e) = result {
            cancel.store(true, Ordering::Relaxed);
            failure.failed.store(true, Ordering::Relaxed);
            // the error that stopped the others, rather than the sink's finding them gone
            return Err(failure.take().unwrap_or(e));
        }
        for h in handles {
            h.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        }
        match failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Pass each batch as read along with the rows (dropped rows go to a side output).
    pub(crate) fn keep_origin(&mut self) {
        for s in &mut self.sources {
            s.driver.set_keep_origin();
        }
    }
}
