//! The edge between a connector and the pipeline: the `Source` and `Sink` traits connectors
//! implement, and the watermark generator that runs at every source.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion_common::arrow::record_batch::RecordBatch;

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::{Metrics, OperatorMetrics};
use crate::message::{Message, Nanos, Origin, StreamBatch, NO_WATERMARK};
use crate::operators::window_aggregate::to_nanos;

/// A connector's reader. It produces batches with exactly the columns it was opened with.
pub trait Source: Send {
    /// The next batch, or `None` at the end of a bounded input.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;

    /// Where the source is, for a checkpoint: enough for [`Source::seek`] to continue right
    /// after the last batch returned. `None`: it cannot be read again (stdin, a host program's
    /// channel), so a query reading it cannot be checkpointed.
    fn position(&self) -> Option<serde_json::Value> {
        None
    }

    /// Continue from a position [`Source::position`] returned (before the first batch).
    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let _ = position;
        Err(RuntimeError::Unsupported("this source cannot be read from a saved position".into()))
    }
}

/// A connector's writer.
pub trait Sink: Send {
    /// Write one batch of result rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Flush and close. Called once, after the last batch.
    fn finish(&mut self) -> Result<()>;

    /// Checkpoint `id` covers every row written so far: make them durable but not yet
    /// visible, and return what [`Sink::commit`] needs to publish them. The default (a sink
    /// without transactions, such as stdout) has nothing to publish.
    fn prepare_commit(&mut self, id: u64) -> Result<serde_json::Value> {
        let _ = id;
        Ok(serde_json::Value::Null)
    }

    /// The checkpoint completed: publish what [`Sink::prepare_commit`] returned. It may be
    /// called again for the same checkpoint after a restart, so it must be idempotent.
    fn commit(&mut self, prepared: &serde_json::Value) -> Result<()> {
        let _ = prepared;
        Ok(())
    }

    /// Before anything is written by a query that checkpoints: publish what the checkpoint it
    /// resumes from prepared (`None` when it starts afresh), and discard rows written after it.
    fn recover(&mut self, prepared: Option<&serde_json::Value>) -> Result<()> {
        let _ = prepared;
        Ok(())
    }

    /// Whether rows reach readers only through [`Sink::commit`] (so a restart repeats none).
    fn transactional(&self) -> bool {
        false
    }

    /// The watermark reached the sink: no row with an earlier event time will change any
    /// more (windows up to it have fired). Called as it advances; the default ignores it.
    fn watermark(&mut self, nanos: Nanos) -> Result<()> {
        let _ = nanos;
        Ok(())
    }
}

/// Generates watermarks at a source: `max(event time seen) - delay`, never decreasing.
///
/// For each row it records the watermark in force *before* that row, so the lateness of a
/// row does not depend on how the input was cut into batches.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WatermarkGenerator {
    delay: Nanos,
    max_event_time: Nanos,
    emitted: Nanos,
}

impl WatermarkGenerator {
    /// A generator for bounded disorder of `delay` nanoseconds.
    pub fn new(delay: Nanos) -> Self {
        Self { delay, max_event_time: NO_WATERMARK, emitted: NO_WATERMARK }
    }

    fn current(&self) -> Nanos {
        if self.max_event_time == NO_WATERMARK {
            NO_WATERMARK
        } else {
            self.max_event_time.saturating_sub(self.delay)
        }
    }

    /// Per-row watermarks for a batch of event times (nanoseconds), advancing the generator.
    pub fn observe(&mut self, event_times: &Int64Array) -> Int64Array {
        let mut out = Vec::with_capacity(event_times.len());
        let mut max = self.max_event_time;
        let delay = self.delay;
        let wm = |max: Nanos| if max == NO_WATERMARK { NO_WATERMARK } else { max.saturating_sub(delay) };
        if event_times.null_count() == 0 {
            for &t in event_times.values().iter() {
                out.push(wm(max));
                max = max.max(t);
            }
        } else {
            for t in event_times.iter() {
                out.push(wm(max));
                if let Some(t) = t {
                    max = max.max(t);
                }
            }
        }
        self.max_event_time = max;
        Int64Array::from(out)
    }

    /// The watermark to announce after the rows observed so far, if it advanced.
    pub fn advance(&mut self) -> Option<Nanos> {
        let w = self.current();
        if w > self.emitted {
            self.emitted = w;
            Some(w)
        } else {
            None
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DriverState {
    position: serde_json::Value,
    watermark: Option<WatermarkGenerator>,
}

/// Wraps a connector: stamps per-row watermarks, emits watermarks, drops the columns that were
/// read only to compute them.
pub struct SourceDriver {
    source: Box<dyn Source>,
    /// Index of the event-time column and the generator fed from it.
    watermark: Option<(usize, WatermarkGenerator)>,
    output_columns: Option<Vec<usize>>,
    /// Attach each batch as read to the rows passed on (for the side output of dropped rows).
    keep_origin: bool,
    /// Report the watermark in the metrics (off when a merge of several inputs does).
    report_watermark: bool,
    /// End with `Watermark(MAX)` even without an event-time column (the wall clock drives
    /// the watermark, and every window still open fires when a bounded input ends).
    final_watermark: bool,
    metrics: Arc<Metrics>,
    /// This source's own counters, if registered.
    own: Option<Arc<OperatorMetrics>>,
}

impl SourceDriver {
    /// `watermark` is the index of the event-time column in the connector's batches and the
    /// watermark delay; `output_columns`, if set, selects the columns passed on.
    pub fn new(
        source: Box<dyn Source>,
        watermark: Option<(usize, Nanos)>,
        output_columns: Option<Vec<usize>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            source,
            watermark: watermark.map(|(column, delay)| (column, WatermarkGenerator::new(delay))),
            output_columns,
            keep_origin: false,
            report_watermark: true,
            final_watermark: false,
            metrics,
            own: None,
        }
    }

    /// The source's state for a checkpoint: its position and its watermark generator.
    /// `label` names the table in the error of a source that cannot be read again.
    pub fn checkpoint(&self, label: &str) -> Result<serde_json::Value> {
        let Some(position) = self.source.position() else {
            return Err(RuntimeError::Unsupported(format!(
                "table '{label}' cannot be read again from a saved position (stdin, or a host program's channel), so this query cannot be checkpointed"
            )));
        };
        let watermark = self.watermark.as_ref().map(|(_, g)| g.clone());
        crate::state::checkpoint::to_json(&DriverState { position, watermark })
    }

    /// Continue from a state [`SourceDriver::checkpoint`] returned.
    pub fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let state: DriverState = crate::state::checkpoint::from_json(state, "a source")?;
        self.source.seek(&state.position)?;
        if let (Some((_, g)), Some(saved)) = (&mut self.watermark, state.watermark) {
            *g = saved;
        }
        Ok(())
    }

    /// Count this source's rows, batches, read time and watermark in `own`.
    pub fn with_operator_metrics(mut self, own: Arc<OperatorMetrics>) -> Self {
        self.own = Some(own);
        self
    }

    /// Pass each batch as read along with the rows, so operators can route dropped rows to a
    /// side output unchanged.
    pub fn keep_origin(mut self) -> Self {
        self.keep_origin = true;
        self
    }

    /// Leave the watermark metric to whoever merges this source's watermark with others'.
    pub fn without_watermark_metric(mut self) -> Self {
        self.report_watermark = false;
        self
    }

    /// End with `Watermark(MAX)` even without an event-time column, so that windows over the
    /// processing-time column fire when a bounded input ends.
    pub fn with_final_watermark(mut self) -> Self {
        self.final_watermark = true;
        self
    }

    /// Read the next batch and turn it into messages. Returns `false` at end of input, after
    /// pushing the final `Watermark(MAX)`.
    pub fn poll(&mut self, out: &mut Vec<Message>) -> Result<bool> {
        let started = Instant::now();
        let first = out.len();
        let more = self.poll_inner(out)?;
        if let Some(own) = &self.own {
            Metrics::add(&own.busy_nanos, started.elapsed().as_nanos() as u64);
            for m in &out[first..] {
                match m {
                    Message::Data(b) => {
                        Metrics::add(&own.rows_out, b.batch.num_rows() as u64);
                        Metrics::add(&own.batches, 1);
                    }
                    Message::Watermark(w) => own.watermark.store(*w, Ordering::Relaxed),
                    _ => {}
                }
            }
        }
        Ok(more)
    }

    fn poll_inner(&mut self, out: &mut Vec<Message>) -> Result<bool> {
        let Some(batch) = self.source.next_batch()? else {
            tracing::debug!("input ended");
            if self.watermark.is_some() || self.final_watermark {
                if self.report_watermark {
                    self.metrics.watermark.store(Nanos::MAX, Ordering::Relaxed);
                }
                out.push(Message::Watermark(Nanos::MAX));
            }
            return Ok(false);
        };
        Metrics::add(&self.metrics.rows_in, batch.num_rows() as u64);
        tracing::trace!(rows = batch.num_rows(), "batch read");
        let row_watermarks = match &mut self.watermark {
            Some((i, g)) => {
                let times: &ArrayRef = batch.column(*i);
                Some(Arc::new(g.observe(&to_nanos(times)?)))
            }
            None => None,
        };
        let origin = self.keep_origin.then(|| Origin::whole(batch.clone()));
        let batch = match &self.output_columns {
            Some(cols) => batch.project(cols)?,
            None => batch,
        };
        if batch.num_rows() > 0 {
            out.push(Message::Data(StreamBatch { batch, row_watermarks, kinds: None, origin }));
        }
        if let Some(w) = self.watermark.as_mut().and_then(|(_, g)| g.advance()) {
            if self.report_watermark {
                self.metrics.watermark.store(w, Ordering::Relaxed);
            }
            out.push(Message::Watermark(w));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_watermarks_are_prefix_maxima_minus_delay() {
        let mut g = WatermarkGenerator::new(2);
        let a = g.observe(&Int64Array::from(vec![Some(10), Some(5), None, Some(20)]));
        assert_eq!(a.values().to_vec(), vec![NO_WATERMARK, 8, 8, 8]);
        assert_eq!(g.advance(), Some(18));
        assert_eq!(g.advance(), None);
        let b = g.observe(&Int64Array::from(vec![1, 30]));
        assert_eq!(b.values().to_vec(), vec![18, 18]);
        assert_eq!(g.advance(), Some(28));
    }
}
