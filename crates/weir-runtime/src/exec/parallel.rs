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
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use weir_plan::parallel::Layout;
use weir_plan::StreamPlan;

use crate::error::{Result, RuntimeError};
use crate::exec::alignment::Alignment;
use crate::exec::chain::Chain;
use crate::exec::exchange::{Envelope, Router};
use crate::exec::instrument::{through, Instrumented};
use crate::exec::sink_merge::SinkMerge;
use crate::exec::source::SourceDriver;
use crate::exec::stage::{BranchStage, JoinStage, Stage};
use crate::exec::watermark_merge::WatermarkMerge;
use crate::message::{Message, Nanos};

/// The layout `plan` runs with at `parallelism` when source `n` is read by `splits(n)` sources,
/// or `None` when it runs on one thread (the reason is logged).
pub fn parallel_layout(plan: &StreamPlan, parallelism: usize, splits: &dyn Fn(usize) -> usize) -> Option<Layout> {
    if parallelism <= 1 {
        return None;
    }
    let uses_proctime = plan
        .sources()
        .iter()
        .any(|s| s.table.proctime_index().is_some_and(|p| s.projection.as_ref().is_none_or(|cols| cols.contains(&p))));
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

/// A union of the senders numbered `senders`: the minimum of their watermarks.
fn union_of(senders: std::ops::Range<usize>) -> Stage {
    let n = senders.len();
    let branches = senders
        .map(|i| BranchStage { stage: Stage::Source { stamp: Vec::new() }, ops: Vec::new(), sources: vec![i] })
        .collect();
    Stage::Union { branches, watermarks: WatermarkMerge::new(&vec![None; n], Instant::now()) }
}

/// The threads of a parallel run, built and waiting to start.
pub(crate) struct Parallel {
    pub(crate) sources: Vec<SourceInstance>,
    pub(crate) instances: Vec<OpInstance>,
    /// The sink's input: the merge of the last stage's instances (the pipeline's chain runs
    /// after it, with the last stage's operators when that stage has one instance).
    pub(crate) sink: SinkMerge,
}

/// An instance of the first stage: a split of the table and the stateless operators after it.
pub(crate) struct SourceInstance {
    pub(crate) driver: SourceDriver,
    pub(crate) ops: Vec<Instrumented>,
    pub(crate) out: Router,
    /// With a join: the alignment of all source instances' watermarks, and this one's index.
    pub(crate) align: Option<(Arc<Alignment>, usize)>,
}

/// An instance of a later stage.
pub(crate) struct OpInstance {
    pub(crate) input: Merge,
    pub(crate) ops: Vec<Instrumented>,
    pub(crate) out: Router,
}

/// One channel shared by all of an instance's senders, and the merge of their watermarks.
pub(crate) struct Merge {
    pub(crate) rx: Receiver<Envelope>,
    root: Stage,
}

impl Merge {
    /// The rows of `senders` instances of one stage, their watermarks merged.
    pub(crate) fn union(rx: Receiver<Envelope>, senders: usize) -> Self {
        Self { rx, root: union_of(0..senders) }
    }

    /// The rows of two stages (`sides[0]` senders, then `sides[1]`), joined by `op`.
    pub(crate) fn join(rx: Receiver<Envelope>, sides: [usize; 2], op: Instrumented) -> Self {
        let side = |range: std::ops::Range<usize>| BranchStage {
            sources: range.clone().collect(),
            stage: union_of(range),
            ops: Vec::new(),
        };
        let (left, right) = (side(0..sides[0]), side(sides[0]..sides[0] + sides[1]));
        Self { rx, root: Stage::Join(Box::new(JoinStage::new(left, right, op))) }
    }

    /// The next messages, merged; `None` once every sender has gone.
    fn next(&mut self) -> Result<Option<Vec<Message>>> {
        match self.rx.recv() {
            Ok((i, messages)) => Ok(Some(self.root.input(i, messages, Instant::now())?)),
            Err(_) => Ok(None),
        }
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
    fn run(self, cancel: &AtomicBool, failure: &Failure) -> Result<()> {
        let align = self.align.clone();
        let result = self.read(cancel, failure);
        // ended or stopped: it holds nobody back any more
        if let Some((a, me)) = &align {
            a.publish(*me, Nanos::MAX);
        }
        result
    }

    fn read(mut self, cancel: &AtomicBool, failure: &Failure) -> Result<()> {
        loop {
            if let Some((a, me)) = &self.align {
                a.wait(*me, || failure.happened() || cancel.load(Ordering::Relaxed));
            }
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
            if let Some((a, me)) = &self.align {
                let reached =
                    messages.iter().filter_map(|m| if let Message::Watermark(w) = m { Some(*w) } else { None }).max();
                if let Some(w) = reached {
                    a.publish(*me, w);
                }
            }
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

/// Run `f` on a thread of its own (not tokio's blocking pool, whose threads are limited and
/// queue tasks beyond the limit: a stage waiting for a thread that never starts would stall
/// the query), recording its error, or its panic as an error.
fn spawn(
    name: String,
    failure: &Failure,
    f: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    let failure = failure.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "a parallel instance failed");
                    failure.record(e);
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    failure.record(RuntimeError::Internal(format!("a parallel instance panicked: {what}")));
                }
            }
        })
        .map_err(|e| RuntimeError::Internal(format!("cannot start a thread: {e}")))
}

impl Parallel {
    /// Run every instance and the sink's merge into `chain`, until the inputs end or `cancel`
    /// is set (then the sources end their streams: windows still open are discarded).
    pub(crate) async fn run(self, mut chain: Chain, cancel: Arc<AtomicBool>) -> Result<()> {
        let failure = Failure::default();
        tracing::debug!(sources = self.sources.len(), instances = self.instances.len(), "parallel pipeline starting");
        let mut handles = Vec::new();
        let started = (|| -> Result<()> {
            for (k, s) in self.sources.into_iter().enumerate() {
                let (cancel, f) = (Arc::clone(&cancel), failure.clone());
                handles.push(spawn(format!("weir-source-{k}"), &failure, move || s.run(&cancel, &f))?);
            }
            for (k, i) in self.instances.into_iter().enumerate() {
                handles.push(spawn(format!("weir-stage-{k}"), &failure, move || i.run())?);
            }
            Ok(())
        })();
        if let Err(e) = started {
            // those started stop at their next look at the flag, or when their channels close
            failure.record(e);
            cancel.store(true, Ordering::Relaxed);
            return Err(failure.take().unwrap_or_else(|| RuntimeError::Internal("cannot start".into())));
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
        let result = match sink.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Internal(format!("the sink's thread failed: {e}"))),
        };
        if let Err(e) = result {
            cancel.store(true, Ordering::Relaxed);
            failure.failed.store(true, Ordering::Relaxed);
            // the error that stopped the others, rather than the sink's finding them gone
            return Err(failure.take().unwrap_or(e));
        }
        // every instance has ended its stream: their threads are ending
        tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await
        .map_err(|e| RuntimeError::Internal(e.to_string()))?;
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
