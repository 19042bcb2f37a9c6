//! Setting up checkpoints of a parallel run: every thread given its way to report, and a run
//! resumed from a checkpoint taken with the same layout (the sink thread's side is
//! [`crate::exec::sink_checkpoints`]).
//!
//! The manifest lists, in order: each source instance's position; the watermarks of each later
//! instance's merge, then the sink's; the operators of each source instance, of each later
//! instance (its join first), then of the sink's thread. [`ParallelShape`] says how many
//! instances each stage had; a checkpoint is resumed only with the same shape for now.

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Result, RuntimeError};
use crate::exec::barrier::{Barriers, Checkpointer};
use crate::exec::chain::Chain;
use crate::exec::instrument::Instrumented;
use crate::exec::parallel::Parallel;
use crate::exec::sink_checkpoints::ParallelCheckpoints;
use crate::state::checkpoint::{
    check_fingerprint, CheckpointConfig, Coordinator, OperatorSnapshot, ParallelShape, Restored,
};

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
        let mut checkpoints = ParallelCheckpoints::new(
            coordinator,
            Arc::clone(&barriers),
            rx,
            threads,
            self.sources.len(),
            self.shape.clone(),
        );
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
