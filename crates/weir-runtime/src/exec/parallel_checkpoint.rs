//! Setting up checkpoints of a parallel run: every thread given its way to report, and a run
//! resumed from a checkpoint taken with the same layout (the sink thread's side is
//! [`crate::exec::sink_checkpoints`]).
//!
//! The manifest lists, in order: each source instance's position; the watermarks of each later
//! instance's merge, then the sink's; the operators of each source instance, of each later
//! instance (its join first), then of the sink's thread. [`ParallelShape`] says how many
//! instances each stage had; a checkpoint is resumed only with the same shape for now.

use std::sync::mpsc::channel;

use datafusion_common::arrow::array::ArrayRef;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Result, RuntimeError};
use crate::exec::barrier::{Barriers, Checkpointer};
use crate::exec::chain::Chain;
use crate::exec::exchange::{key_groups, owner};
use crate::exec::instrument::Instrumented;
use crate::exec::parallel::Parallel;
use crate::exec::rescale::{threads, ByThread, StageShape};
use crate::exec::sink_checkpoints::ParallelCheckpoints;
use crate::state::checkpoint::{
    check_fingerprint, CheckpointConfig, Coordinator, OperatorSnapshot, ParallelShape, Restored,
};

/// The error of a checkpoint taken with another layout.
fn other_shape(restored: &Restored, saved: Option<&ParallelShape>, now: &ParallelShape) -> RuntimeError {
    let was = match saved {
        Some(s) => format!(
            "at parallelism {} (stages of {:?} instances, tables in {:?} splits)",
            s.parallelism, s.stages, s.splits
        ),
        None => "on one thread (resumable in parallel with every table read whole)".into(),
    };
    RuntimeError::Checkpoint(format!(
        "{} was taken {was}; this run has parallelism {} (stages of {:?} instances, tables in {:?} splits), a layout it cannot be resumed in",
        restored.location, now.parallelism, now.stages, now.splits
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
        if config.guarantee == weir_plan::Guarantee::AtLeastOnce {
            // Flink's at-least-once: barriers are counted, not aligned (no sender waits)
            for i in &mut self.instances {
                i.input.unaligned();
            }
            self.sink.unaligned();
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
                // a checkpoint taken on one thread: its tables read whole (see `restore`)
                let whole = m.parallel.is_none() && self.shape.splits.iter().all(|n| *n == 1);
                // a finished run's checkpoint: nothing is left to run, in any layout
                let fits = whole
                    || m.finished
                    || m.parallel.as_ref().is_some_and(|p| {
                        p.stages.len() == self.shape.stages.len()
                            && p.splits == self.shape.splits
                            && self
                                .kinds
                                .iter()
                                .zip(p.stages.iter().zip(&self.shape.stages))
                                .all(|(k, (a, b))| !k.source() || a == b)
                            && p.key_groups == self.shape.key_groups
                    });
                if !fits {
                    return Err(other_shape(restored, m.parallel.as_ref(), &self.shape));
                }
                if restored.location == config.store.describe(m.id) {
                    config.store.discard_after(m.id)?;
                }
                checkpoints.finished = m.finished;
                checkpoints.resumed = m.sources.iter().cloned().map(Some).collect();
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
        if m.operators.len() != restored.operators.len() {
            return Err(RuntimeError::Checkpoint(format!("{} lists operators it has no state of", restored.location)));
        }
        let operators = m.operators.iter().zip(&restored.operators).map(|(e, s)| (e.name.clone(), s.clone())).collect();
        let old = match &m.parallel {
            Some(saved) => {
                if let Some(why) = self.shape.cannot_resume(saved) {
                    return Err(RuntimeError::Checkpoint(format!("{}: {why}", restored.location)));
                }
                if saved != &self.shape {
                    tracing::info!(
                        from = saved.parallelism,
                        to = self.shape.parallelism,
                        "resuming at another parallelism: key groups move between instances"
                    );
                }
                ByThread::split(&self.kinds, &saved.stages, &m.sources, &m.stages, operators)
            }
            // taken on one thread: read as a run whose stages had one instance each
            None => ByThread::from_one_thread(&self.kinds, &self.one_thread, &m.sources, &m.stages, operators),
        }
        .map_err(|e| match e {
            RuntimeError::Checkpoint(why) if !why.starts_with(&restored.location) => {
                RuntimeError::Checkpoint(format!("{}: {why}", restored.location))
            }
            other => other,
        })?;
        let now = self.shape.stages.clone();
        let (order, fused) = threads(&self.kinds, &now);
        let mut order = order.into_iter();
        let mut next = || order.next().ok_or_else(|| RuntimeError::Internal("more threads than the layout has".into()));
        let at = Instant::now();
        for source in &mut self.sources {
            let (s, k) = next()?;
            let position = old.thread(s, k)?.position.clone().ok_or_else(|| {
                RuntimeError::Checkpoint(format!("{} has no position of split {k} of stage {s}", restored.location))
            })?;
            source.driver.restore(&position)?;
            restore_ops(source.ops.iter_mut().collect(), &old, &self.kinds, &now, (s, k))?;
        }
        for instance in &mut self.instances {
            let (s, k) = next()?;
            let values = old.stage_values(&self.kinds, &now, s, k)?;
            instance.input.root.restore(&mut values.iter(), at)?;
            let mut ops = Vec::new();
            instance.input.root.operators(&mut ops);
            ops.extend(instance.ops.iter_mut());
            restore_ops(ops, &old, &self.kinds, &now, (s, k))?;
        }
        if let Some(l) = fused {
            restore_ops(chain.ops.iter_mut().collect(), &old, &self.kinds, &now, (l, 0))?;
        }
        let last = self.kinds.len().saturating_sub(1);
        self.sink.restore(&old.sink_value(self.sink.inputs(), fused, last)?)
    }
}

/// Restore the operators of instance `k` of stage `s` (`at`) of a run with `now` instances per
/// stage: as saved when the stage has as many instances as it had, else each from the states
/// of all its old instances, keeping the keys the instance owns now.
fn restore_ops(
    ops: Vec<&mut Instrumented>,
    old: &ByThread,
    kinds: &[StageShape],
    now: &[usize],
    (s, k): (usize, usize),
) -> Result<()> {
    if ops.len() != kinds[s].ops.len() {
        return Err(RuntimeError::Internal(format!(
            "stage {s} has {} operators, its shape says {}",
            ops.len(),
            kinds[s].ops.len()
        )));
    }
    let (was, is) = (old.instances[s], now[s]);
    if was != is && kinds[s].split_bound {
        return Err(RuntimeError::Checkpoint(format!(
            "stage {s} joins a table's rows in the instance that read them, and the checkpoint read it in {was} splits, this run in {is}"
        )));
    }
    for (j, op) in ops.into_iter().enumerate() {
        // the keys its rows are hashed on: all it gives, or some of them
        let hashed_on = kinds[s].hashed_on.iter().find(|(o, _)| *o == j).map(|(_, at)| at.as_slice());
        let owned = move |keys: &[ArrayRef]| -> Result<Vec<bool>> {
            let rows = keys.first().map_or(0, |a| a.len());
            let keys = match hashed_on {
                Some(at) => at
                    .iter()
                    .map(|p| keys.get(*p).cloned())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| RuntimeError::Internal(format!("operator {j} of stage {s} lacks a key")))?,
                None => keys.to_vec(),
            };
            Ok(key_groups(&keys, rows)?.into_iter().map(|g| owner(g, is) == k).collect())
        };
        let saved = |instance: usize| -> Result<OperatorSnapshot> {
            let (name, snapshot) =
                old.thread(s, instance)?.operators.get(j).ok_or_else(|| {
                    RuntimeError::Checkpoint(format!("the checkpoint lacks operator {j} of stage {s}"))
                })?;
            if name != op.name() {
                return Err(RuntimeError::Checkpoint(format!(
                    "the checkpoint saved a {name} where this run has a {}",
                    op.name()
                )));
            }
            Ok(snapshot.clone())
        };
        let snapshot = match was == is {
            true => saved(k)?,
            false => op.rescale((0..was).map(saved).collect::<Result<Vec<_>>>()?, &owned)?,
        };
        op.restore(snapshot)?;
    }
    Ok(())
}
