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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_plan::parallel::Layout;
use weir_plan::StreamPlan;

use crate::error::{Result, RuntimeError};
use crate::exec::alignment::Alignment;
use crate::exec::barrier::{Aligner, Checkpointer, Pulled};
use crate::exec::chain::Chain;
use crate::exec::exchange::{Credits, Inbox, Router};
use crate::exec::instrument::{through, Instrumented};
use crate::exec::sink_checkpoints::ParallelCheckpoints;
use crate::exec::sink_merge::SinkMerge;
use crate::exec::source::SourceDriver;
use crate::exec::stage::{BranchStage, JoinStage, Stage};
use crate::exec::watermark_merge::WatermarkMerge;
use crate::message::{Message, Nanos, NO_WATERMARK};
use crate::operators::proc_time::ProcessingClock;

/// The layout `plan` runs with at `parallelism` when source `n` is read by `splits(n)` sources,
/// or `None` when it runs on one thread (the reason is logged).
pub fn parallel_layout(plan: &StreamPlan, parallelism: usize, splits: &dyn Fn(usize) -> usize) -> Option<Layout> {
    if parallelism <= 1 {
        return None;
    }
    layout_of(plan, parallelism, splits, false)
}

/// [`parallel_layout`] for a run resuming the checkpoint of a parallel run, whose tables are
/// read in `splits` as they were: its threads are kept at any parallelism, 1 included.
pub fn resumed_layout(plan: &StreamPlan, parallelism: usize, splits: &dyn Fn(usize) -> usize) -> Option<Layout> {
    layout_of(plan, parallelism, splits, true)
}

fn layout_of(plan: &StreamPlan, parallelism: usize, splits: &dyn Fn(usize) -> usize, resumed: bool) -> Option<Layout> {
    let layout = if resumed {
        weir_plan::parallel::layout_resumed(plan, parallelism, splits)
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
    /// The instances of each stage of the layout (what a checkpoint must be resumed with).
    pub(crate) shape: crate::state::checkpoint::ParallelShape,
    /// What kind of stage each stage is.
    pub(crate) kinds: Vec<crate::exec::rescale::StageShape>,
    /// Which stage takes up each watermark state of a checkpoint taken on one thread.
    pub(crate) one_thread: Vec<usize>,
    /// With checkpoints: the sink thread's side of them.
    pub(crate) checkpoints: Option<ParallelCheckpoints>,
    /// The credits of every instance's channel and of the sink's.
    pub(crate) credits: Vec<Arc<Credits>>,
}

/// An instance of the first stage: a split of the table and the stateless operators after it.
pub(crate) struct SourceInstance {
    pub(crate) driver: SourceDriver,
    /// The table read (in errors).
    pub(crate) label: String,
    pub(crate) ops: Vec<Instrumented>,
    pub(crate) out: Router,
    /// With a join: the alignment of all source instances' watermarks, and this one's index.
    pub(crate) align: Option<(Arc<Alignment>, usize)>,
    /// Its table's idle timeout: after reading nothing this long it declares itself idle.
    pub(crate) idle_after: Option<std::time::Duration>,
    /// The stamp of a `PROCTIME()` column, before its operators.
    pub(crate) stamp: Option<Instrumented>,
    /// The first phase of the window aggregate after it, after its operators (see
    /// [`crate::operators::local_window_aggregate`]).
    pub(crate) pre_aggregate: Option<Instrumented>,
    /// With a window over processing time: the clock, sent as the watermark on a timer while
    /// nothing is read.
    pub(crate) clock: Option<Arc<ProcessingClock>>,
    /// With checkpoints: where barrier requests come from and its state goes.
    pub(crate) checkpointer: Option<Checkpointer>,
}

/// An instance of a later stage.
pub(crate) struct OpInstance {
    pub(crate) input: Merge,
    pub(crate) ops: Vec<Instrumented>,
    pub(crate) out: Router,
    /// With checkpoints: where its state goes.
    pub(crate) checkpointer: Option<Checkpointer>,
}

/// One channel shared by all of an instance's senders (their checkpoint barriers aligned), and
/// the merge of their watermarks.
pub(crate) struct Merge {
    input: Aligner,
    pub(crate) root: Stage,
}

/// What an instance does next.
enum Step {
    /// Handle the messages, merged.
    Messages(Vec<Message>),
    /// Take its state for checkpoint `.0`, and pass the barrier on.
    Checkpoint(u64),
    /// Nothing came in the time it was given.
    Quiet,
}

impl Merge {
    /// The rows of `senders` instances of one stage, their watermarks merged.
    pub(crate) fn union(rx: Inbox, senders: usize) -> Self {
        Self { input: Aligner::new(rx, senders), root: union_of(0..senders) }
    }

    /// The rows of two stages (`sides[0]` senders, then `sides[1]`), each through its side's
    /// operators (`side_ops`), joined by `op`.
    pub(crate) fn join(rx: Inbox, sides: [usize; 2], op: Instrumented, side_ops: [Vec<Instrumented>; 2]) -> Self {
        let side = |range: std::ops::Range<usize>, ops: Vec<Instrumented>| BranchStage {
            sources: range.clone().collect(),
            stage: union_of(range),
            ops,
        };
        let [left_ops, right_ops] = side_ops;
        let (left, right) = (side(0..sides[0], left_ops), side(sides[0]..sides[0] + sides[1], right_ops));
        let input = Aligner::new(rx, sides[0] + sides[1]);
        Self { input, root: Stage::Join(Box::new(JoinStage::new(left, right, op))) }
    }

    /// At-least-once: no sender's rows wait for a checkpoint's alignment.
    pub(crate) fn unaligned(&mut self) {
        self.input.unaligned();
    }

    /// What comes next; `None` once every sender has gone. `wait`: how long to wait for it
    /// (`None`: until it comes).
    fn next(&mut self, wait: Option<Duration>) -> Result<Option<Step>> {
        Ok(match self.input.next(wait)? {
            Some(Pulled::Messages(i, messages)) => {
                Some(Step::Messages(self.root.input(i, messages, Instant::now())?))
            }
            Some(Pulled::Aligned(id)) => Some(Step::Checkpoint(id)),
            Some(Pulled::Idle(i)) => {
                self.root.set_idle(i);
                Some(Step::Messages(self.root.tick(Instant::now())?))
            }
            Some(Pulled::Quiet) => Some(Step::Quiet),
            None => None,
        })
    }
}

/// The first error of any thread, and whether one failed.
#[derive(Clone, Default)]
struct Failure {
    failed: Arc<AtomicBool>,
    first: Arc<Mutex<Option<RuntimeError>>>,
    /// Every instance's credits, closed when a thread fails.
    credits: Arc<Vec<Arc<Credits>>>,
}

impl Failure {
    /// A thread failed with `e`: the query stops. Senders waiting for credits give up, so that
    /// no thread waits for another that will not go on (an instance aligning a barrier holds
    /// the credits of the senders past it until a sender that may have stopped sends it too);
    /// each thread then ends as its channels close.
    fn record(&self, e: RuntimeError) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e);
        }
        drop(first);
        self.failed.store(true, Ordering::Relaxed);
        for c in self.credits.iter() {
            c.close();
        }
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
        let result = self.read(cancel, failure);
        // ended or stopped: it holds nobody back any more
        if let Some((a, me)) = &self.align {
            a.publish(*me, Nanos::MAX);
        }
        // recorded while its channels are open, so that the error is there before the others
        // find it gone
        if let Err(e) = result {
            failure.record(e);
        }
        Ok(())
    }

    /// A barrier was requested that this instance has not sent yet.
    fn barrier_due(&self, sent: u64) -> bool {
        self.checkpointer.as_ref().is_some_and(|c| c.barriers.requested() > sent)
    }

    /// Report its state for checkpoint `id` (`None`: at its end).
    fn report(&mut self, id: Option<u64>) -> Result<()> {
        let Some(c) = &self.checkpointer else { return Ok(()) };
        let position = self.driver.checkpoint(&self.label)?;
        let mut ops: Vec<&mut Instrumented> = self.ops.iter_mut().collect();
        c.report(id, Some(position), Vec::new(), &mut ops)
    }

    /// Messages read, through the stamp (if any) and the stage's operators.
    fn stamped(&mut self, messages: Vec<Message>) -> Result<Vec<Message>> {
        let messages = match &mut self.stamp {
            Some(stamp) => through(std::slice::from_mut(stamp), messages)?,
            None => messages,
        };
        let messages = through(&mut self.ops, messages)?;
        self.pre_aggregated(messages)
    }

    /// Messages after its operators, through the first phase of an aggregate (if any).
    fn pre_aggregated(&mut self, messages: Vec<Message>) -> Result<Vec<Message>> {
        match &mut self.pre_aggregate {
            Some(local) => through(std::slice::from_mut(local), messages),
            None => Ok(messages),
        }
    }

    /// Send what its operators hold back (before a barrier or idleness); `false` once a
    /// target has gone.
    fn release(&mut self) -> Result<bool> {
        let out = self.held_back()?;
        self.out.send(out)
    }

    /// What its operators hold back, let go (see [`Operator::release`]).
    ///
    /// [`Operator::release`]: crate::operator::Operator::release
    fn held_back(&mut self) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        for op in self.ops.iter_mut().chain(self.pre_aggregate.as_mut()) {
            let mut next = Vec::new();
            for m in std::mem::take(&mut out) {
                op.handle(m, &mut next)?;
            }
            op.release(&mut next)?;
            out = next;
        }
        Ok(out)
    }

    fn read(&mut self, cancel: &AtomicBool, failure: &Failure) -> Result<()> {
        // the newest checkpoint whose barrier this instance sent
        let mut sent = 0;
        // when it last had something to send, and whether it has declared itself idle since
        let (mut last_read, mut idle) = (Instant::now(), false);
        // the highest watermark it has sent
        let mut announced = NO_WATERMARK;
        let mut last_tick = Instant::now();
        loop {
            if failure.happened() || self.checkpointer.as_ref().is_some_and(|c| c.barriers.halted()) {
                return Ok(());
            }
            if let Some(id) = self.checkpointer.as_ref().map(|c| c.barriers.requested()).filter(|id| *id > sent) {
                // everything read so far is sent: the position now is the checkpoint's
                sent = id;
                if !self.release()? {
                    return Ok(());
                }
                self.report(Some(id))?;
                if !self.out.barrier(id) {
                    return Ok(());
                }
            }
            if cancel.load(Ordering::Relaxed) {
                if self.checkpointer.is_some() {
                    // the sink thread takes a last checkpoint (this instance sends its
                    // barrier), then halts every thread; what is open is kept in it
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let out = through(&mut self.ops, vec![Message::EndOfStream])?;
                let out = self.pre_aggregated(out)?;
                self.out.send(out)?;
                return Ok(());
            }
            if let Some((a, me)) = &self.align {
                // (what it holds back goes before it waits for the others)
                if !a.may_read(*me) && !self.out.flush() {
                    return Ok(());
                }
                a.wait(*me, || failure.happened() || cancel.load(Ordering::Relaxed) || self.barrier_due(sent));
                if failure.happened() || cancel.load(Ordering::Relaxed) || self.barrier_due(sent) {
                    continue;
                }
            }
            let mut messages = Vec::new();
            let more = self.driver.poll(&mut messages)?;
            let before = announced;
            let reached =
                messages.iter().filter_map(|m| if let Message::Watermark(w) = m { Some(*w) } else { None }).max();
            if let Some(w) = reached {
                announced = announced.max(w);
                if let Some((a, me)) = &self.align {
                    a.publish(*me, w);
                }
            }
            if !more {
                messages.push(Message::EndOfStream);
            }
            if let Some(clock) = self.clock.as_ref().filter(|_| last_tick.elapsed() >= ProcessingClock::TICK) {
                // the wall clock is the watermark: on time while nothing is read
                last_tick = Instant::now();
                if messages.is_empty() {
                    messages.push(Message::Watermark(clock.watermark()));
                    let out = self.stamped(messages)?;
                    if !self.out.send(out)? {
                        return Ok(());
                    }
                    continue;
                }
            }
            if messages.is_empty() {
                if !self.out.flush_due(Instant::now()) {
                    return Ok(());
                }
                if !idle && self.idle_after.is_some_and(|t| last_read.elapsed() >= t) {
                    idle = true;
                    if !self.release()? {
                        return Ok(());
                    }
                    if let Some((a, me)) = &self.align {
                        a.set_idle(*me, true);
                    }
                    if !self.out.idle() {
                        return Ok(());
                    }
                }
                continue;
            }
            last_read = Instant::now();
            if std::mem::take(&mut idle) {
                if let Some((a, me)) = &self.align {
                    a.set_idle(*me, false);
                }
                // the instances reading it left it out of their watermarks while it was idle,
                // each until a row or a watermark comes from it again: its rows may go to some
                // of them only, or be held back in partial aggregates, so the watermark it had
                // goes to all of them first
                if before != NO_WATERMARK {
                    messages.insert(0, Message::Watermark(before));
                }
            }
            let out = self.stamped(messages)?;
            if !more {
                // its state at its end, for every later checkpoint
                self.report(None)?;
            }
            if !self.out.send(out)? || !more {
                return Ok(());
            }
        }
    }
}

impl OpInstance {
    fn run(mut self, failure: &Failure) -> Result<()> {
        // recorded while its channels are open (see `SourceInstance::run`)
        if let Err(e) = self.pump() {
            failure.record(e);
        }
        Ok(())
    }

    fn pump(&mut self) -> Result<()> {
        loop {
            // watermarks held back go when due, whether or not more comes in
            let wait = self.out.due().map(|d| d.saturating_duration_since(Instant::now()));
            let Some(step) = self.input.next(wait)? else { break };
            match step {
                Step::Quiet => {
                    if !self.out.flush_due(Instant::now()) {
                        return Ok(());
                    }
                }
                Step::Messages(merged) => {
                    let ended = merged.iter().any(|m| matches!(m, Message::EndOfStream));
                    let out = through(&mut self.ops, merged)?;
                    if ended {
                        self.report(None)?;
                    }
                    if !self.out.send(out)? || ended {
                        return Ok(());
                    }
                }
                Step::Checkpoint(id) => {
                    self.report(Some(id))?;
                    if !self.out.barrier(id) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Report its state for checkpoint `id` (`None`: at its end).
    fn report(&mut self, id: Option<u64>) -> Result<()> {
        let Self { input, ops, checkpointer, .. } = self;
        let Some(c) = checkpointer else { return Ok(()) };
        let mut stages = Vec::new();
        input.root.snapshot(&mut stages);
        let mut all = Vec::new();
        input.root.operators(&mut all);
        all.extend(ops.iter_mut());
        c.report(id, None, stages, &mut all)
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
        let mut checkpoints = self.checkpoints;
        if let Some(c) = &mut checkpoints {
            if c.finished {
                // resumed from the checkpoint of a finished run: nothing is left to do
                return Ok(());
            }
            c.coordinator.start();
        }
        let failure = Failure { credits: Arc::new(self.credits), ..Failure::default() };
        tracing::debug!(sources = self.sources.len(), instances = self.instances.len(), "parallel pipeline starting");
        let mut handles = Vec::new();
        let started = (|| -> Result<()> {
            for (k, s) in self.sources.into_iter().enumerate() {
                let (cancel, f) = (Arc::clone(&cancel), failure.clone());
                handles.push(spawn(format!("weir-source-{k}"), &failure, move || s.run(&cancel, &f))?);
            }
            for (k, i) in self.instances.into_iter().enumerate() {
                let f = failure.clone();
                handles.push(spawn(format!("weir-stage-{k}"), &failure, move || i.run(&f))?);
            }
            Ok(())
        })();
        if let Err(e) = started {
            // those started stop at their next look at the flag, or when their channels close
            failure.record(e);
            cancel.store(true, Ordering::Relaxed);
            return Err(failure.take().unwrap_or_else(|| RuntimeError::Internal("cannot start".into())));
        }
        let merge = self.sink;
        let stop = Arc::clone(&cancel);
        let sink = tokio::task::spawn_blocking(move || sink_loop(merge, &mut chain, checkpoints, &stop));
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
        // every instance has ended its stream (or, after a last checkpoint, is halting): their
        // threads are ending
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

/// The sink's thread: the last stage's instances merged into the chain, and (with checkpoints)
/// barriers requested when one is due and checkpoints completed when they are aligned here.
fn sink_loop(
    mut merge: SinkMerge,
    chain: &mut Chain,
    mut checkpoints: Option<ParallelCheckpoints>,
    stop: &AtomicBool,
) -> Result<()> {
    loop {
        let poll = match &mut checkpoints {
            Some(c) => {
                c.poll(stop.load(Ordering::Relaxed));
                Some(CHECKPOINT_POLL)
            }
            None => None,
        };
        let Some((messages, aligned)) = merge.next(poll)? else {
            return Err(RuntimeError::Internal("the query's threads stopped before its end".into()));
        };
        for m in messages {
            if chain.push(m)? {
                if let Some(c) = &mut checkpoints {
                    c.complete(chain, &merge, true)?;
                }
                return Ok(());
            }
        }
        if let (Some(c), Some(id)) = (&mut checkpoints, aligned) {
            c.aligned(id, chain, &merge)?;
            if c.coordinator.stopping() {
                c.barriers.halt();
                return chain.close();
            }
        }
    }
}

/// How often the sink's thread looks at the checkpoint clock while it waits for input.
const CHECKPOINT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::barrier::{Aligner, Pulled};
    use crate::exec::exchange::{channel, Packet, CREDITS};
    use datafusion_common::arrow::datatypes::SchemaRef;
    use datafusion_common::arrow::record_batch::RecordBatch;
    use std::time::Duration;

    /// An instance whose input goes quiet still sends the watermark it held back (a packet of
    /// nothing but a watermark soon after another, see [`crate::exec::exchange::WATERMARK_EVERY`])
    /// when it is due, while its senders are still there.
    #[test]
    fn an_instance_sends_a_held_back_watermark_though_nothing_more_comes() {
        let (link, inbox) = channel(1, 8192);
        let (out, next) = channel(1, 8192);
        let instance = OpInstance {
            input: Merge::union(inbox, 1),
            ops: Vec::new(),
            out: Router::new(vec![out], 0, None),
            checkpointer: None,
        };
        // two watermarks at once: the second is held back by the instance's router
        assert!(link.messages(0, vec![Message::Watermark(1)]));
        assert!(link.messages(0, vec![Message::Watermark(2)]));
        let running = std::thread::spawn(move || instance.run(&Failure::default()));
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.last() != Some(&2) && Instant::now() < deadline {
            if let Ok((_, Packet::Messages(m))) = next.rx.recv_timeout(Duration::from_millis(50)) {
                got.extend(m.iter().filter_map(|m| if let Message::Watermark(w) = m { Some(*w) } else { None }));
            }
        }
        assert_eq!(got.last(), Some(&2), "the held-back watermark never came: {got:?}");
        drop(link);
        assert!(running.join().is_ok());
    }

    /// A table's rows: two batches, then nothing (for ever, until the query stops).
    struct Scripted(Vec<RecordBatch>, SchemaRef);

    impl crate::exec::source::Source for Scripted {
        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            if self.0.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
                return Ok(Some(RecordBatch::new_empty(Arc::clone(&self.1))));
            }
            Ok(Some(self.0.remove(0)))
        }
    }

    /// A split that has nothing more to read for a while still sends the watermark its router
    /// held back for an instance its last rows did not go to.
    #[test]
    fn a_source_with_nothing_to_read_sends_a_held_back_watermark() {
        use datafusion_common::arrow::array::{Int64Array, TimestampNanosecondArray};
        use datafusion_common::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        use datafusion_physical_expr::expressions::Column;
        use datafusion_physical_expr::PhysicalExpr;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        // a key of each instance
        let owner = |k: i64| {
            let g = crate::exec::exchange::key_groups(&[Arc::new(Int64Array::from(vec![k]))], 1).unwrap()[0];
            crate::exec::exchange::owner(g, 2)
        };
        let (a, b) = ((0..).find(|k| owner(*k) == 0).unwrap(), (0..).find(|k| owner(*k) == 1).unwrap());
        let batch = |keys: Vec<i64>, t: i64| {
            let times = TimestampNanosecondArray::from(vec![t; keys.len()]);
            RecordBatch::try_new(
                Arc::clone(&schema) as SchemaRef,
                vec![Arc::new(Int64Array::from(keys)), Arc::new(times)],
            )
            .unwrap()
        };
        // rows for both instances, then at once a row for instance 0 only: instance 1 gets
        // the new watermark alone, soon after the last packet, so it is held back
        let source = Scripted(vec![batch(vec![a, b], 1), batch(vec![a], 100)], Arc::clone(&schema) as SchemaRef);
        let metrics = Arc::new(crate::exec::metrics::Metrics::default());
        let (links, inboxes): (Vec<_>, Vec<_>) = (0..2).map(|_| channel(1, 8192)).unzip();
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let instance = SourceInstance {
            driver: SourceDriver::new(Box::new(source), Some((1, 0)), None, metrics),
            label: "t".into(),
            ops: Vec::new(),
            out: Router::new(links, 0, Some(vec![key])),
            align: None,
            idle_after: None,
            stamp: None,
            pre_aggregate: None,
            clock: None,
            checkpointer: None,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let running = std::thread::spawn(move || instance.run(&stop, &Failure::default()));
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !got.contains(&100) && Instant::now() < deadline {
            if let Ok((_, Packet::Messages(m))) = inboxes[1].rx.recv_timeout(Duration::from_millis(50)) {
                got.extend(m.iter().filter_map(|m| if let Message::Watermark(w) = m { Some(*w) } else { None }));
            }
        }
        assert!(!running.is_finished(), "the source is still reading");
        assert!(got.contains(&100), "instance 1 never got the watermark: {got:?}");
        cancel.store(true, Ordering::Relaxed);
        assert!(running.join().is_ok());
    }

    /// A sender past a barrier, its credits held by an instance that waits for another
    /// sender's barrier (one that stopped when a source failed): the failure frees it.
    #[test]
    fn a_failure_frees_a_sender_held_by_an_alignment_that_cannot_end() {
        let (link, inbox) = channel(2, 8192);
        let mut aligner = Aligner::new(inbox, 2);
        assert!(link.barrier(0, 1));
        let l = link.clone();
        let sender =
            std::thread::spawn(move || (0..=CREDITS).all(|w| l.messages(0, vec![Message::Watermark(w as i64)])));
        // the instance reads sender 0's packets and holds them: sender 1 never sends its barrier
        for _ in 0..10 {
            assert!(matches!(aligner.next(Some(Duration::from_millis(20))), Ok(Some(Pulled::Quiet))));
        }
        assert!(!sender.is_finished(), "a sender past the barrier waits for its credits");
        let failure = Failure { credits: Arc::new(vec![link.credits()]), ..Failure::default() };
        failure.record(RuntimeError::Source("crash".into()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sender.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sender.is_finished(), "the failure did not free the waiting sender");
        assert_eq!(sender.join().ok(), Some(false));
        drop(aligner);
    }
}
