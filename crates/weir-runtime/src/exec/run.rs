//! Running a [`Pipeline`]: the operator task's loop, on the calling thread
//! ([`Pipeline::run_blocking`]) or with a task per source ([`Pipeline::run`]), and checkpoints
//! taken and restored at the operator task ([`Pipeline::with_checkpoints`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, RuntimeError};
use crate::exec::chain::{Chain, Checkpointing};
use crate::exec::instrument::Instrumented;
use crate::exec::pipeline::Pipeline;
use crate::exec::source::SourceDriver;
use crate::exec::stage::{Stage, Turns};
use crate::message::Message;
use crate::operators::proc_time::ProcessingClock;
use crate::state::checkpoint::{CheckpointConfig, Coordinator, Input, Restored, Taken};

/// Every operator of the pipeline, in the order checkpoints list them.
fn all_operators<'a>(root: &'a mut Stage, chain: &'a mut Chain) -> Vec<&'a mut Instrumented> {
    let mut ops = Vec::new();
    root.operators(&mut ops);
    ops.extend(chain.ops.iter_mut());
    ops
}

/// What a pipeline does on starting.
enum Resumed {
    /// The checkpoint resumed from is of a finished run: nothing is left to do.
    Finished,
    /// Run, with the coordinator when it checkpoints.
    Run(Option<Box<Coordinator>>),
}

/// Before running: the coordinator (with checkpoints) started, and the saved reading order
/// taken up by `turns`.
fn resume(checkpoints: Option<Checkpointing>, turns: &mut Turns) -> Result<Resumed> {
    let Some(c) = checkpoints else { return Ok(Resumed::Run(None)) };
    if c.finished {
        return Ok(Resumed::Finished);
    }
    if let Some(saved) = &c.turns {
        turns.restore(saved)?;
    }
    let mut coordinator = c.coordinator;
    coordinator.start();
    Ok(Resumed::Run(Some(Box::new(coordinator))))
}

/// The state of every operator, stage and the sinks, for checkpoint `id`.
fn take(root: &mut Stage, chain: &mut Chain, turns: &Turns, id: u64, finished: bool) -> Result<Taken> {
    let mut operators = Vec::new();
    if !finished {
        for op in all_operators(root, chain) {
            operators.push((op.name(), op.snapshot()?));
        }
    }
    let mut stages = Vec::new();
    root.snapshot(&mut stages);
    let sink = chain.sink.prepare_commit(id)?;
    let late_rows_sink = match &mut chain.late_rows {
        Some((s, _)) => s.prepare_commit(id)?,
        None => serde_json::Value::Null,
    };
    Ok(Taken { stages, turns: turns.snapshot(), operators, sink, late_rows_sink, finished, parallel: None })
}

/// Take and write a checkpoint whose barriers have all arrived, then publish what the sinks
/// prepared.
fn complete(root: &mut Stage, chain: &mut Chain, turns: &mut Turns, c: &mut Coordinator, finished: bool) -> Result<()> {
    let id = c.finish_id();
    let taken = take(root, chain, turns, id, finished)?;
    let (sink, late) = (taken.sink.clone(), taken.late_rows_sink.clone());
    c.write(id, taken)?;
    chain.sink.commit(&sink)?;
    if let Some((s, _)) = &mut chain.late_rows {
        s.commit(&late)?;
    }
    Ok(())
}

impl Pipeline {
    /// Checkpoint this pipeline as `config` says, resuming from `config.restore` if set
    /// (sources seek, operators and stages take up their state, sinks publish what it
    /// prepared and drop what came after). `query` is how manifests describe the query.
    ///
    /// Fails up front when a source cannot be read again or an operator cannot be
    /// checkpointed yet, and when the checkpoint resumed from was taken by another query.
    pub fn with_checkpoints(mut self, config: CheckpointConfig, query: String) -> Result<Self> {
        if let Some(parallel) = &mut self.parallel {
            parallel.with_checkpoints(config, query, &mut self.chain)?;
            return Ok(self);
        }
        for (driver, label) in self.drivers.iter().zip(&self.labels) {
            driver.checkpoint(label)?;
        }
        for op in all_operators(&mut self.root, &mut self.chain) {
            op.snapshot()?;
        }
        let newest = config.store.newest_id()?;
        let metrics = Arc::clone(&self.chain.metrics);
        let coordinator = Coordinator::new(&config, query, self.drivers.len(), newest, metrics);
        let mut checkpointing = Checkpointing { coordinator, turns: None, finished: false };
        match &config.restore {
            Some(restored) => {
                crate::state::checkpoint::check_fingerprint(restored, &config.fingerprint)?;
                // checkpoints after the one resumed from are abandoned (their sink output is
                // taken back below): a later restart must not pick them up
                if restored.location == config.store.describe(restored.manifest.id) {
                    config.store.discard_after(restored.manifest.id)?;
                }
                checkpointing.finished = restored.manifest.finished;
                self.restore(restored, &mut checkpointing)?;
            }
            None => {
                self.chain.sink.recover(None)?;
                if let Some((s, _)) = &mut self.chain.late_rows {
                    s.recover(None)?;
                }
            }
        }
        self.checkpoints = Some(checkpointing);
        Ok(self)
    }

    fn restore(&mut self, restored: &Restored, checkpointing: &mut Checkpointing) -> Result<()> {
        let m = &restored.manifest;
        self.chain.sink.recover(Some(&m.sink))?;
        if let Some((s, _)) = &mut self.chain.late_rows {
            s.recover(Some(&m.late_rows_sink))?;
        }
        if m.finished {
            return Ok(());
        }
        if let Some(shape) = &m.parallel {
            return Err(RuntimeError::Checkpoint(format!(
                "{} was taken at parallelism {}; this run has parallelism 1. Resume it with the parallelism it was taken at: changing it on resume is not supported yet",
                restored.location, shape.parallelism
            )));
        }
        if m.sources.len() != self.drivers.len() {
            return Err(RuntimeError::Checkpoint(format!(
                "{} saved {} inputs, this query reads {}",
                restored.location,
                m.sources.len(),
                self.drivers.len()
            )));
        }
        for (driver, state) in self.drivers.iter_mut().zip(&m.sources) {
            driver.restore(state)?;
        }
        self.root.restore(&mut m.stages.iter(), Instant::now())?;
        let ops = all_operators(&mut self.root, &mut self.chain);
        if ops.len() != restored.operators.len() {
            return Err(RuntimeError::Checkpoint(format!(
                "{} saved {} operators, this query has {}",
                restored.location,
                restored.operators.len(),
                ops.len()
            )));
        }
        for ((op, entry), snapshot) in ops.into_iter().zip(&m.operators).zip(&restored.operators) {
            if entry.name != op.name() {
                return Err(RuntimeError::Checkpoint(format!(
                    "{} saved a {} where this query has a {}",
                    restored.location,
                    entry.name,
                    op.name()
                )));
            }
            op.restore(snapshot.clone())?;
        }
        checkpointing.coordinator.restore_ended(&Turns::saved_ended(&m.turns)?, &m.sources);
        checkpointing.turns = Some(m.turns.clone());
        Ok(())
    }

    /// [`Pipeline::run`], waited for on the calling thread (on a runtime of its own): the
    /// same loop, for callers without a tokio runtime. Not from inside a runtime.
    pub fn run_blocking(self, cancel: Arc<AtomicBool>) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Internal(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(self.run(cancel))
    }

    /// Run with each source and the operators on blocking tasks joined by bounded channels,
    /// until the inputs end or `cancel` is set (then the sinks are flushed and open windows
    /// are discarded; with checkpoints, a last checkpoint keeps them instead).
    ///
    /// The operator task takes one batch from each input in turn (with a join: from the input
    /// whose watermark is lowest), so results over files do not depend on thread timing. An input with an
    /// `'idle_timeout'` that has sent nothing for that long loses its turns (it is checked
    /// without waiting) until it sends again.
    ///
    /// With checkpoints, each batch a source task sends carries the source's position after
    /// it, so the operator task takes a checkpoint between any two batches, as a consistent
    /// cut with nothing to align; see [`crate::checkpoint`].
    pub async fn run(mut self, cancel: Arc<AtomicBool>) -> Result<()> {
        if let Some(parallel) = self.parallel.take() {
            return parallel.run(self.chain, cancel).await;
        }
        tracing::debug!(inputs = self.drivers.len(), operators = self.chain.ops.len(), "pipeline starting");
        let mut turns = Turns::new(self.drivers.len(), std::mem::take(&mut self.first), self.aligned);
        let Resumed::Run(mut coordinator) = resume(self.checkpoints.take(), &mut turns)? else { return Ok(()) };
        let checkpointing = coordinator.is_some();
        // each input's position after the last batch the operator task took from it: a
        // checkpoint between two batches is a consistent cut, with nothing to align
        let mut positions = Vec::with_capacity(self.drivers.len());
        for (driver, label) in self.drivers.iter().zip(&self.labels) {
            positions.push(if checkpointing { Some(driver.checkpoint(label)?) } else { None });
        }
        let mut receivers = Vec::new();
        let mut producers = Vec::new();
        for (driver, label) in self.drivers.into_iter().zip(std::mem::take(&mut self.labels)) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Input>(4);
            receivers.push(rx);
            let task = SourceTask { driver, label, tx, cancel: Arc::clone(&cancel), checkpointing };
            producers.push(tokio::task::spawn_blocking(move || task.run()));
        }
        let (mut chain, mut root, clock) = (self.chain, self.root, self.clock);
        let stop = Arc::clone(&cancel);
        let consumer = tokio::task::spawn_blocking(move || -> Result<()> {
            use std::sync::mpsc::RecvTimeoutError;
            let n = receivers.len();
            // turns in a row that brought nothing (only idle inputs are left to ask)
            let mut empty_turns = 0usize;
            let mut last_tick = Instant::now();
            // an input waited for only to look at the checkpoint clock: asked again
            let mut again: Option<usize> = None;
            loop {
                if let Some(c) = &mut coordinator {
                    let stopping = stop.load(Ordering::Relaxed);
                    if turns.loading() {
                        // no checkpoint while lookup tables load (only they are read): a stop
                        // then keeps the previous checkpoint
                        if stopping {
                            return chain.close();
                        }
                    } else if c.poll(Instant::now(), stopping) {
                        c.positions(&positions)?;
                        complete(&mut root, &mut chain, &mut turns, c, false)?;
                        if c.stopping() {
                            return chain.close();
                        }
                        // then read on: at least one batch comes between two checkpoints
                    }
                }
                let Some(i) = again.take().or_else(|| turns.next()) else { break };
                let (timeout, quiet) = root.idleness(i, Instant::now());
                let mut wait = timeout.map(|t| {
                    let wait = t.saturating_sub(quiet);
                    if empty_turns >= n {
                        wait.max(Duration::from_millis(10))
                    } else {
                        wait
                    }
                });
                if clock.is_some() {
                    // the wall clock is the watermark: wake up to send it
                    wait = Some(wait.map_or(ProcessingClock::TICK, |w| w.min(ProcessingClock::TICK)));
                }
                // with checkpoints, wake up to start one on time, or the last one when stopping
                let poll = coordinator.is_some().then_some(CHECKPOINT_POLL);
                // the wait ends for the idleness check (not only to look at the checkpoint clock)
                let idle_check = wait.is_some_and(|w| poll.is_none_or(|p| w <= p));
                let received = match (wait, poll) {
                    (None, None) => match receivers[i].recv() {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    },
                    (w, p) => match receivers[i].recv_timeout(w.into_iter().chain(p).min().unwrap_or_default()) {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Timeout) if !idle_check => {
                            again = Some(i);
                            continue;
                        }
                        Err(RecvTimeoutError::Timeout) => None,
                        // a source task stopped reading (Ctrl-C): the final checkpoint is next
                        Err(RecvTimeoutError::Disconnected)
                            if coordinator.is_some() && stop.load(Ordering::Relaxed) =>
                        {
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                };
                let now = Instant::now();
                let mut messages = match received {
                    Some(Input::Failed(e)) => return Err(e),
                    Some(Input::Messages(messages, position)) => {
                        empty_turns = 0;
                        if position.is_some() {
                            positions[i] = position;
                        }
                        turns.saw(i, &messages);
                        root.input(i, messages, now)?
                    }
                    Some(Input::Last(messages, position)) => {
                        empty_turns = 0;
                        if let Some(c) = &mut coordinator {
                            c.ended(i, position);
                        }
                        turns.saw(i, &messages);
                        root.input(i, messages, now)?
                    }
                    None => {
                        empty_turns += 1;
                        tracing::trace!(input = i, "no batch in time: checking idleness");
                        root.mark_idle(i, now);
                        root.tick(now)?
                    }
                };
                if let Some(clock) = &clock {
                    // on time even when input keeps coming without rows (all skipped as bad)
                    if now.saturating_duration_since(last_tick) >= ProcessingClock::TICK {
                        last_tick = now;
                        messages.extend(root.input(i, vec![Message::Watermark(clock.watermark())], now)?);
                    }
                }
                for m in messages {
                    if chain.push(m)? {
                        if let Some(c) = &mut coordinator {
                            complete(&mut root, &mut chain, &mut turns, c, true)?;
                        }
                        return Ok(());
                    }
                }
            }
            Err(RuntimeError::Internal("a source stopped without ending the stream".into()))
        });
        let result = consumer.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        if result.is_err() {
            // a source blocked in a read (a quiet stdin) would never be joined: leave them
            cancel.store(true, Ordering::Relaxed);
            return result;
        }
        for p in producers {
            p.await.map_err(|e| RuntimeError::Internal(e.to_string()))?;
        }
        result
    }
}

/// How often the operator task looks at the checkpoint clock while it waits for input.
const CHECKPOINT_POLL: Duration = Duration::from_millis(50);

/// A source's task: reads batches and sends them on, each with the source's position after
/// it when the query checkpoints.
struct SourceTask {
    driver: SourceDriver,
    label: String,
    tx: std::sync::mpsc::SyncSender<Input>,
    cancel: Arc<AtomicBool>,
    checkpointing: bool,
}

impl SourceTask {
    fn run(mut self) {
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                tracing::info!("stopped: the input is no longer read");
                if !self.checkpointing {
                    let _ = self.tx.send(Input::Messages(vec![Message::EndOfStream], None));
                }
                // with checkpoints, the operator task takes a last one and keeps what is open
                return;
            }
            let mut out = Vec::new();
            match self.driver.poll(&mut out) {
                // nothing came in time (a quiet live input): send nothing, so that the input
                // can be found idle; look at the stop flag and barrier requests again
                Ok(true) if out.is_empty() => continue,
                Ok(true) => {
                    let input = match self.checkpointing {
                        true => match self.driver.checkpoint(&self.label) {
                            Ok(position) => Input::Messages(out, Some(position)),
                            Err(e) => Input::Failed(e),
                        },
                        false => Input::Messages(out, None),
                    };
                    if self.tx.send(input).is_err() {
                        return;
                    }
                }
                Ok(false) => {
                    out.push(Message::EndOfStream);
                    let last = match self.checkpointing {
                        true => match self.driver.checkpoint(&self.label) {
                            Ok(position) => Input::Last(out, position),
                            Err(e) => Input::Failed(e),
                        },
                        false => Input::Last(out, serde_json::Value::Null),
                    };
                    let _ = self.tx.send(last);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "a source failed");
                    let _ = self.tx.send(Input::Failed(e));
                    return;
                }
            }
        }
    }
}
