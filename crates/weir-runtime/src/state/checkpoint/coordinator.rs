//! The operator task's side of checkpointing: when one is due, the position of each input it
//! covers, and writing what was snapshotted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::codec::{checksum, encode_batch};
use super::manifest::{FileEntry, Manifest, OperatorEntry, ParallelShape, FORMAT, VERSION};
use super::{CheckpointConfig, CheckpointStore, Guarantee, OperatorSnapshot};
use crate::error::{Result, RuntimeError};
use crate::exec::metrics::Metrics;
use crate::message::Message;

/// What a source task sends the operator task.
pub(crate) enum Input {
    /// Messages read, and (with checkpoints) the source's position after them: a checkpoint
    /// taken once the operator task has handled them resumes the source there.
    Messages(Vec<Message>, Option<serde_json::Value>),
    /// The last messages of an input that ended, and its position at the end.
    Last(Vec<Message>, serde_json::Value),
    /// The source failed.
    Failed(RuntimeError),
}

/// The state of the whole pipeline at a barrier, gathered by the pipeline.
pub(crate) struct Taken {
    pub(crate) stages: Vec<serde_json::Value>,
    pub(crate) turns: serde_json::Value,
    pub(crate) operators: Vec<(&'static str, OperatorSnapshot)>,
    pub(crate) sink: serde_json::Value,
    pub(crate) late_rows_sink: serde_json::Value,
    pub(crate) finished: bool,
    /// The shape of a parallel run.
    pub(crate) parallel: Option<ParallelShape>,
}

/// A checkpoint being taken.
struct Pending {
    id: u64,
    started: Instant,
    /// Each input's position it covers.
    got: Vec<Option<serde_json::Value>>,
}

/// Drives checkpoints from the operator task.
pub(crate) struct Coordinator {
    store: CheckpointStore,
    interval: Duration,
    guarantee: Guarantee,
    fingerprint: String,
    query: String,
    next_id: u64,
    last_done: Instant,
    pending: Option<Pending>,
    /// The position of each input that ended.
    ended: Vec<Option<serde_json::Value>>,
    /// A checkpoint to take when asked to stop, then stop.
    stopping: bool,
    metrics: Arc<Metrics>,
}

impl Coordinator {
    /// `newest`: the highest checkpoint number in the store (new ones come after it).
    pub(crate) fn new(
        config: &CheckpointConfig,
        query: String,
        inputs: usize,
        newest: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let last = config.restore.as_ref().map_or(0, |r| r.manifest.id).max(newest);
        Self {
            store: config.store.clone(),
            interval: config.interval,
            guarantee: config.guarantee,
            fingerprint: config.fingerprint.clone(),
            query,
            next_id: last + 1,
            last_done: Instant::now(),
            pending: None,
            ended: vec![None; inputs],
            stopping: false,
            metrics,
        }
    }

    /// Start a checkpoint if one is due (or `stop`: a final one). Returns whether one is.
    pub(crate) fn poll(&mut self, now: Instant, stop: bool) -> bool {
        if stop {
            self.stopping = true;
        }
        if self.pending.is_some() {
            return true;
        }
        if !stop && now.saturating_duration_since(self.last_done) < self.interval {
            return false;
        }
        let id = self.next_id;
        self.next_id += 1;
        let got = self.ended.clone();
        tracing::debug!(checkpoint = id, "checkpoint due");
        self.pending = Some(Pending { id, started: now, got });
        true
    }

    /// The checkpoint being taken, if one is.
    pub(crate) fn pending_id(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// Whether the last checkpoint taken was the final one of a stop.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping
    }

    /// Input `i` ended at `position`.
    pub(crate) fn ended(&mut self, i: usize, position: serde_json::Value) {
        if let Some(a) = &mut self.pending {
            a.got[i].get_or_insert_with(|| position.clone());
        }
        self.ended[i] = Some(position);
    }

    /// The checkpoint being taken covers each input up to `positions` (its position after
    /// the last batch the operator task took from it); inputs that ended keep their end.
    pub(crate) fn positions(&mut self, positions: &[Option<serde_json::Value>]) -> Result<()> {
        let Some(a) = &mut self.pending else {
            return Err(RuntimeError::Internal("source positions with no checkpoint due".into()));
        };
        for (got, position) in a.got.iter_mut().zip(positions) {
            if got.is_none() {
                *got = position.clone();
            }
        }
        Ok(())
    }

    /// The id of the checkpoint about to be written: the one being taken, or (for the final
    /// checkpoint of a finished query, taken without barriers) the next.
    pub(crate) fn finish_id(&mut self) -> u64 {
        let id = self.pending.as_ref().map_or(self.next_id, |a| a.id);
        self.next_id = self.next_id.max(id + 1);
        id
    }

    /// Start the interval from now (when the pipeline starts running, after any restore).
    pub(crate) fn start(&mut self) {
        self.last_done = Instant::now();
    }

    /// The inputs that had ended when the checkpoint resumed from was taken, with their
    /// positions: they are never read again, so later checkpoints repeat those positions.
    pub(crate) fn restore_ended(&mut self, ended: &[bool], positions: &[serde_json::Value]) {
        for ((slot, e), p) in self.ended.iter_mut().zip(ended).zip(positions) {
            if *e {
                *slot = Some(p.clone());
            }
        }
    }

    /// Write checkpoint `id` (from [`Self::finish_id`]) whose barriers have all arrived (or,
    /// with `taken.finished`, the final one); the caller then commits the sinks.
    pub(crate) fn write(&mut self, id: u64, taken: Taken) -> Result<()> {
        let (started, got) = match self.pending.take() {
            Some(a) if a.id == id => (a.started, a.got),
            None if taken.finished => (Instant::now(), self.ended.clone()),
            _ => return Err(RuntimeError::Internal(format!("checkpoint {id} written before it was due"))),
        };
        let sources = got
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.ok_or_else(|| RuntimeError::Internal(format!("checkpoint {id} has no position for input {i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut files = Vec::new();
        let mut operators = Vec::with_capacity(taken.operators.len());
        for (n, (name, snapshot)) in taken.operators.into_iter().enumerate() {
            let mut entries = Vec::with_capacity(snapshot.batches.len());
            for (batch_name, batch) in &snapshot.batches {
                let path = format!("op-{n}-{batch_name}.arrow");
                let data = encode_batch(batch)?;
                entries.push(FileEntry {
                    name: batch_name.clone(),
                    path: path.clone(),
                    bytes: data.len() as u64,
                    crc32: checksum(&data),
                });
                files.push((path, data));
            }
            operators.push(OperatorEntry { name: name.to_string(), meta: snapshot.meta, files: entries });
        }
        let created_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            id,
            fingerprint: self.fingerprint.clone(),
            query: self.query.clone(),
            created_unix_ms,
            guarantee: self.guarantee,
            finished: taken.finished,
            sources,
            stages: taken.stages,
            turns: taken.turns,
            operators,
            sink: taken.sink,
            late_rows_sink: taken.late_rows_sink,
            bytes: files.iter().map(|(_, d)| d.len() as u64).sum(),
            parallel: taken.parallel,
        };
        let written = self.store.write(&manifest, &files)?;
        let took = started.elapsed();
        Metrics::add(&self.metrics.checkpoints, 1);
        Metrics::add(&self.metrics.checkpoint_total_nanos, took.as_nanos() as u64);
        self.metrics.checkpoint_last_nanos.store(took.as_nanos() as u64, Ordering::Relaxed);
        self.metrics.checkpoint_last_bytes.store(written, Ordering::Relaxed);
        self.metrics.checkpoint_last_id.store(id, Ordering::Relaxed);
        tracing::info!(checkpoint = id, bytes = written, ms = took.as_millis() as u64, "checkpoint complete");
        self.last_done = Instant::now();
        Ok(())
    }
}
