//! Checkpoints of a parallel run, on the sink's thread: a barrier requested when one is due,
//! the checkpoint written once the sink has aligned it (every thread's report is in by then,
//! see [`crate::exec::barrier`]), and a run resumed from one taken with the same layout.
//!
//! The manifest lists, in order: each source instance's position; the watermarks of each later
//! instance's merge, then the sink's; the operators of each source instance, of each later
//! instance (its join first), then of the sink's thread. [`ParallelShape`] says how many
//! instances each stage had; a checkpoint is resumed only with the same shape for now.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Result, RuntimeError};
use crate::exec::barrier::{snapshot_all, Barriers, Checkpointer, Report};
use crate::exec::chain::Chain;
use crate::exec::instrument::Instrumented;
use crate::exec::parallel::Parallel;
use crate::exec::sink_merge::SinkMerge;
use crate::state::checkpoint::{
    check_fingerprint, CheckpointConfig, Coordinator, OperatorSnapshot, ParallelShape, Restored, Taken,
};

/// The sink thread's side of a parallel run's checkpoints.
pub(crate) struct ParallelCheckpoints {
    pub(crate) coordinator: Coordinator,
    pub(crate) barriers: Arc<Barriers>,
    reports: Receiver<Report>,
    /// Per thread: its state at its end, once it has ended.
    finals: Vec<Option<Report>>,
    /// Source instances (the first threads).
    sources: usize,
    shape: ParallelShape,
    /// Resumed from the checkpoint of a finished run.
    pub(crate) finished: bool,
}

impl ParallelCheckpoints {
    /// Ask the source instances for a barrier when a checkpoint is due (or `stop`: the last).
    pub(crate) fn poll(&mut self, stop: bool) {
        if self.coordinator.poll(Instant::now(), stop) {
            if let Some(id) = self.coordinator.pending_id() {
                self.barriers.request(id);
            }
        }
    }

    /// Checkpoint `id`'s barriers reached the sink (what was held before them is written).
    pub(crate) fn aligned(&mut self, id: u64, chain: &mut Chain, merge: &SinkMerge) -> Result<()> {
        if self.coordinator.pending_id() != Some(id) {
            return Err(RuntimeError::Internal(format!("checkpoint {id} aligned, but it was not requested")));
        }
        self.complete(chain, merge, false)
    }

    /// Take the pending checkpoint (or, `finished`: the last, of a run that read everything),
    /// write it and commit the sinks.
    pub(crate) fn complete(&mut self, chain: &mut Chain, merge: &SinkMerge, finished: bool) -> Result<()> {
        let pending = self.coordinator.pending_id();
        let id = self.coordinator.finish_id();
        let mut now: Vec<Option<Report>> = (0..self.finals.len()).map(|_| None).collect();
        while let Ok(r) = self.reports.try_recv() {
            let slot = match r.id {
                None => self.finals.get_mut(r.part),
                Some(of) if of == id => now.get_mut(r.part),
                // of an earlier checkpoint: a thread reports before it forwards the barrier,
                // so none is left over; ignore it if one were
                Some(_) => None,
            };
            if let Some(slot) = slot {
                *slot = Some(r);
            }
        }
        let source_position = |r: Option<&Report>| r.and_then(|r| r.position.clone());
        if pending.is_some() && !finished {
            let positions: Vec<_> = (0..self.sources).map(|p| source_position(now[p].as_ref())).collect();
            self.coordinator.positions(&positions)?;
        }
        for p in 0..self.sources {
            if let Some(position) = source_position(self.finals[p].as_ref()) {
                self.coordinator.ended(p, position);
            }
        }
        let (mut stages, mut operators) = (Vec::new(), Vec::new());
        if !finished {
            for (p, (got, end)) in now.iter().zip(&self.finals).enumerate() {
                let Some(r) = got.as_ref().or(end.as_ref()) else {
                    return Err(RuntimeError::Internal(format!("checkpoint {id} has no state of thread {p}")));
                };
                stages.extend(r.stages.iter().cloned());
                operators.extend(r.operators.iter().cloned());
            }
            stages.push(merge.snapshot());
            let mut ops: Vec<&mut Instrumented> = chain.ops.iter_mut().collect();
            operators.extend(snapshot_all(&mut ops)?);
        }
        let sink = chain.sink.prepare_commit(id)?;
        let late_rows_sink = match &mut chain.late_rows {
            Some((s, _)) => s.prepare_commit(id)?,
            None => serde_json::Value::Null,
        };
        let taken = Taken {
            stages,
            turns: serde_json::Value::Null,
            operators,
            sink: sink.clone(),
            late_rows_sink: late_rows_sink.clone(),
            finished,
            parallel: Some(self.shape.clone()),
        };
        self.coordinator.write(id, taken)?;
        chain.sink.commit(&sink)?;
        if let Some((s, _)) = &mut chain.late_rows {
            s.commit(&late_rows_sink)?;
        }
        Ok(())
    }
}

/// The error of a checkpoint taken with another layout.
fn other_shape(restored: &Restored, saved: Option<&ParallelShape>, now: &ParallelShape) -> RuntimeError {
    let was = match saved {
        Some(s) => format!("at parallelism {} (stages of {:?} instances)", s.parallelism, s.stages),
        None => "on one thread (parallelism 1)".into(),
    };
    RuntimeError::Checkpoint(format!(
        "{} was taken {was}; this run has parallelism {} (stages of {:?} instances). Resume it with the parallelism it was taken at: changing it on resume is not supported yet",
        restored.location, now.parallelism, now.stages
    ))
}

impl Parallel {
    /// Checkpoint this run as `config` says, resuming from `config.restore` if set (see
    /// [`crate::exec::pipeline::Pipeline::with_checkpoints`]).
    pub(crate) fn with_checkpoints(
        &mut self,
        config: CheckpointConfig,
        query: String,
        chain: &mut Chain,
    ) -> Result<()> {
        for s in &mut self.sources {
            s.driver.checkpoint(&s.label)?;
        }
        for op in self.operators(chain) {
            op.snapshot()?;
        }
        let newest = config.store.newest_id()?;
        let metrics = Arc::clone(&chain.metrics);
        let coordinator = Coordinator::new(&config, query, self.sources.len(), newest, metrics);
        let (tx, rx) = channel();
        let barriers = Arc::new(Barriers::default());
        let threads = self.sources.len() + self.instances.len();
        let mut checkpoints = ParallelCheckpoints {
            coordinator,
            barriers: Arc::clone(&barriers),
            reports: rx,
            finals: (0..threads).map(|_| None).collect(),
            sources: self.sources.len(),
            shape: self.shape.clone(),
            finished: false,
        };
        match &config.restore {
            Some(restored) => {
                check_fingerprint(restored, &config.fingerprint)?;
                let m = &restored.manifest;
                if m.parallel.as_ref() != Some(&self.shape) {
                    return Err(other_shape(restored, m.parallel.as_ref(), &self.shape));
                }
                if restored.location == config.store.describe(m.id) {
                    config.store.discard_after(m.id)?;
                }
                checkpoints.finished = m.finished;
                self.restore(restored, chain)?;
            }
            None => {
                chain.sink.recover(None)?;
                if let Some((s, _)) = &mut chain.late_rows {
                    s.recover(None)?;
                }
            }
        }
        let sources = self.sources.iter_mut().map(|s| &mut s.checkpointer);
        let instances = self.instances.iter_mut().map(|i| &mut i.checkpointer);
        for (part, slot) in sources.chain(instances).enumerate() {
            *slot = Some(Checkpointer { barriers: Arc::clone(&barriers), reports: tx.clone(), part });
        }
        self.checkpoints = Some(checkpoints);
        Ok(())
    }

    /// Every operator, in the order a checkpoint lists them.
    fn operators<'a>(&'a mut self, chain: &'a mut Chain) -> Vec<&'a mut Instrumented> {
        let mut ops: Vec<&mut Instrumented> = Vec::new();
        for s in &mut self.sources {
            ops.extend(s.ops.iter_mut());
        }
        for i in &mut self.instances {
            i.input.root.operators(&mut ops);
            ops.extend(i.ops.iter_mut());
        }
        ops.extend(chain.ops.iter_mut());
        ops
    }

    fn restore(&mut self, restored: &Restored, chain: &mut Chain) -> Result<()> {
        let m = &restored.manifest;
        chain.sink.recover(Some(&m.sink))?;
        if let Some((s, _)) = &mut chain.late_rows {
            s.recover(Some(&m.late_rows_sink))?;
        }
        if m.finished {
            return Ok(());
        }
        if m.sources.len() != self.sources.len() {
            return Err(RuntimeError::Checkpoint(format!(
                "{} saved {} source instances, this run has {}",
                restored.location,
                m.sources.len(),
                self.sources.len()
            )));
        }
        for (s, state) in self.sources.iter_mut().zip(&m.sources) {
            s.driver.restore(state)?;
        }
        let now = Instant::now();
        let mut stages = m.stages.iter();
        for i in &mut self.instances {
            i.input.root.restore(&mut stages, now)?;
        }
        let merge = stages.next().ok_or_else(|| {
            RuntimeError::Checkpoint(format!("{} has no state of the merge into the sink", restored.location))
        })?;
        self.sink.restore(merge)?;
        let location = restored.location.clone();
        let ops = self.operators(chain);
        if ops.len() != restored.operators.len() {
            return Err(RuntimeError::Checkpoint(format!(
                "{location} saved {} operators, this run has {}",
                restored.operators.len(),
                ops.len()
            )));
        }
        for ((op, entry), snapshot) in ops.into_iter().zip(&m.operators).zip(&restored.operators) {
            if entry.name != op.name() {
                return Err(RuntimeError::Checkpoint(format!(
                    "{location} saved a {} where this run has a {}",
                    entry.name,
                    op.name()
                )));
            }
            op.restore(OperatorSnapshot::clone(snapshot))?;
        }
        Ok(())
    }
}
