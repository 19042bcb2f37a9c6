//! The sink thread's side of a parallel run's checkpoints: a barrier requested from the source
//! instances when one is due, and the checkpoint written from every thread's report once the
//! sink has aligned its barrier (see [`crate::exec::barrier`]).

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Result, RuntimeError};
use crate::exec::barrier::{snapshot_all, Barriers, Report};
use crate::exec::chain::Chain;
use crate::exec::instrument::Instrumented;
use crate::exec::sink_merge::SinkMerge;
use crate::state::checkpoint::{Coordinator, ParallelShape, Taken};

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
    /// Each source instance's position in the checkpoint resumed from.
    pub(crate) resumed: Vec<Option<serde_json::Value>>,
    /// Resumed from the checkpoint of a finished run.
    pub(crate) finished: bool,
}

impl ParallelCheckpoints {
    /// `threads` threads report (the first `sources` are source instances) to `reports`.
    pub(crate) fn new(
        coordinator: Coordinator,
        barriers: Arc<Barriers>,
        reports: Receiver<Report>,
        threads: usize,
        sources: usize,
        shape: ParallelShape,
    ) -> Self {
        Self {
            coordinator,
            barriers,
            reports,
            finals: (0..threads).map(|_| None).collect(),
            sources,
            shape,
            resumed: Vec::new(),
            finished: false,
        }
    }

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
        for (p, got) in now.iter().enumerate().take(self.sources) {
            // at the end of the run, a split whose side had ended when the checkpoint resumed
            // from was taken may not have ended again yet (the run ended without it): its last
            // position, or the one it resumed from
            let last = match finished {
                true => source_position(self.finals[p].as_ref())
                    .or_else(|| source_position(got.as_ref()))
                    .or_else(|| self.resumed.get(p).cloned().flatten()),
                false => source_position(self.finals[p].as_ref()),
            };
            if let Some(position) = last {
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
