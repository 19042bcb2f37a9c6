//! The edge between a connector and the pipeline: the `Source` and `Sink` traits connectors
//! implement, and the watermark generator that runs at every source.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{Array, ArrayRef, Int64Array, Int8Array};
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

    /// The kinds of the rows of the batch just returned, for a changelog source (see
    /// [`crate::Connector::changelog_source`]); `None`: all inserts.
    fn row_kinds(&mut self) -> Option<Arc<Int8Array>> {
        None
    }

    /// For a source reading several splits whose event times advance separately (a Kafka
    /// topic's partitions): the split the batch just returned came from. The watermark is then
    /// kept per split, and the source's is the minimum over the splits that are not idle.
    /// `None` (the default): one watermark for the whole input.
    fn split(&self) -> Option<u32> {
        None
    }

    /// Every split the source reads now, including those that have brought nothing yet (they
    /// hold the watermark back until they bring rows or are idle), and the one the batch just
    /// returned came from. A split left out (finished) no longer holds it back. See
    /// [`Source::split`].
    fn splits(&self) -> Vec<u32> {
        Vec::new()
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
    /// The watermark of each split, for a source that reads several.
    #[serde(default)]
    splits: BTreeMap<u32, WatermarkGenerator>,
}

/// A split's watermark and when it last brought rows.
struct SplitWatermark {
    generator: WatermarkGenerator,
    last_rows: Instant,
}

/// Per-split watermarks (see [`Source::split`]): the source's watermark is the minimum over
/// the splits that brought rows within `idle` (all of them without an idle timeout), or the
/// highest of all while every split is idle.
struct SplitWatermarks {
    /// The source has said it reads splits.
    on: bool,
    delay: Nanos,
    idle: Option<Duration>,
    splits: BTreeMap<u32, SplitWatermark>,
}

impl SplitWatermarks {
    fn active(&self, now: Instant) -> impl Iterator<Item = (&u32, &SplitWatermark)> {
        let idle = self.idle;
        self.splits.iter().filter(move |(_, s)| idle.is_none_or(|d| now.duration_since(s.last_rows) < d))
    }

    /// The minimum over the active splits other than `except`; `Nanos::MAX` if there are none.
    fn others(&self, except: u32, now: Instant) -> Nanos {
        self.active(now)
            .filter(|(id, _)| **id != except)
            .map(|(_, s)| s.generator.current())
            .min()
            .unwrap_or(Nanos::MAX)
    }

    /// The source's watermark: the minimum over the active splits; every split idle, the
    /// highest of theirs (as a merge of inputs, see [`crate::exec::watermark_merge`]), so it
    /// does not matter which split fell quiet last.
    fn combined(&self, now: Instant) -> Nanos {
        let active = self.active(now).map(|(_, s)| s.generator.current()).min();
        active.unwrap_or_else(|| self.splits.values().map(|s| s.generator.current()).max().unwrap_or(NO_WATERMARK))
    }

    /// The source reads `ids` now: splits it no longer reads stop holding the watermark back.
    fn known(&mut self, ids: Vec<u32>, now: Instant) {
        self.splits.retain(|id, _| ids.contains(id));
        for id in ids {
            self.splits
                .entry(id)
                .or_insert_with(|| SplitWatermark { generator: WatermarkGenerator::new(self.delay), last_rows: now });
        }
    }
}

/// Wraps a connector: stamps per-row watermarks, emits watermarks, drops the columns that were
/// read only to compute them.
pub struct SourceDriver {
    source: Box<dyn Source>,
    /// Index of the event-time column and the generator fed from it.
    watermark: Option<(usize, WatermarkGenerator)>,
    /// The watermarks of each split, for a source that reads several.
    splits: SplitWatermarks,
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
            splits: SplitWatermarks {
                on: false,
                delay: watermark.map_or(0, |(_, delay)| delay),
                idle: None,
                splits: BTreeMap::new(),
            },
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
        let splits = self.splits.splits.iter().map(|(id, s)| (*id, s.generator.clone())).collect();
        crate::state::checkpoint::to_json(&DriverState { position, watermark, splits })
    }

    /// Continue from a state [`SourceDriver::checkpoint`] returned.
    pub fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let state: DriverState = crate::state::checkpoint::from_json(state, "a source")?;
        self.source.seek(&state.position)?;
        if let (Some((_, g)), Some(saved)) = (&mut self.watermark, state.watermark) {
            *g = saved;
        }
        let now = Instant::now();
        self.splits.on |= !state.splits.is_empty();
        self.splits.splits = state
            .splits
            .into_iter()
            .map(|(id, generator)| (id, SplitWatermark { generator, last_rows: now }))
            .collect();
        Ok(())
    }

    /// A split of the source (see [`Source::split`]) that brings no rows for `idle` stops
    /// holding back its watermark, until it brings rows again.
    pub fn with_split_idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.splits.idle = idle;
        self
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

    /// [`SourceDriver::keep_origin`], in place.
    pub(crate) fn set_keep_origin(&mut self) {
        self.keep_origin = true;
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
        let split = self.source.split();
        let now = Instant::now();
        // a source that reads splits says so with its first batch of rows
        self.splits.on |= split.is_some();
        let row_watermarks = match (&mut self.watermark, split) {
            (Some(_), None) if self.splits.on => {
                if batch.num_rows() > 0 {
                    return Err(RuntimeError::Internal("a source that reads splits returned rows of none".into()));
                }
                Some(Arc::new(Int64Array::from(Vec::<i64>::new())))
            }
            (Some((i, g)), Some(split)) => {
                // per split: a row's watermark is its split's, or a lower one of another split,
                // but never below the one announced (a split found or back from idleness
                // lowers the minimum, not what has fired)
                let announced = g.emitted;
                let times = to_nanos(batch.column(*i))?;
                self.splits.known(self.source.splits(), now);
                let others = self.splits.others(split, now);
                let entry = self.splits.splits.entry(split).or_insert_with(|| SplitWatermark {
                    generator: WatermarkGenerator::new(self.splits.delay),
                    last_rows: now,
                });
                if batch.num_rows() > 0 {
                    entry.last_rows = now;
                }
                let own = entry.generator.observe(&times);
                Some(Arc::new(Int64Array::from_iter_values(
                    own.values().iter().map(|w| (*w).min(others).max(announced)),
                )))
            }
            (Some((i, g)), None) => {
                let times: &ArrayRef = batch.column(*i);
                Some(Arc::new(g.observe(&to_nanos(times)?)))
            }
            (None, _) => None,
        };
        let kinds = self.source.row_kinds();
        let origin = self.keep_origin.then(|| Origin::whole(batch.clone()));
        let batch = match &self.output_columns {
            Some(cols) => batch.project(cols)?,
            None => batch,
        };
        if batch.num_rows() > 0 {
            out.push(Message::Data(StreamBatch { batch, row_watermarks, kinds, origin }));
        }
        let advanced = match (&mut self.watermark, split) {
            (Some((_, g)), _) if self.splits.on => {
                // the source's generator only remembers what it announced
                let w = self.splits.combined(now);
                (w > g.emitted).then(|| {
                    g.emitted = w;
                    w
                })
            }
            (Some((_, g)), _) => g.advance(),
            (None, _) => None,
        };
        if let Some(w) = advanced {
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
    use datafusion_common::arrow::array::TimestampNanosecondArray;
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    /// Batches of event times, each from a split ([`NONE`]: an empty batch of none, as a
    /// source with nothing to read returns).
    struct Splits(Vec<(u32, Vec<i64>)>, Option<u32>);

    const NONE: u32 = u32::MAX;

    impl Source for Splits {
        fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
            if self.0.is_empty() {
                return Ok(None);
            }
            let (split, times) = self.0.remove(0);
            self.1 = (split != NONE).then_some(split);
            let t = DataType::Timestamp(TimeUnit::Nanosecond, None);
            let schema = Arc::new(Schema::new(vec![Field::new("t", t, false)]));
            Ok(Some(RecordBatch::try_new(schema, vec![Arc::new(TimestampNanosecondArray::from(times))])?))
        }
        fn split(&self) -> Option<u32> {
            self.1
        }
        fn splits(&self) -> Vec<u32> {
            vec![0, 1]
        }
    }

    fn poll(driver: &mut SourceDriver) -> (Vec<i64>, Option<Nanos>) {
        let mut out = Vec::new();
        driver.poll(&mut out).unwrap();
        let mut rows = Vec::new();
        let mut watermark = None;
        for m in out {
            match m {
                Message::Data(b) => rows.extend(b.row_watermarks.unwrap().values().iter().copied()),
                Message::Watermark(w) => watermark = Some(w),
                _ => {}
            }
        }
        (rows, watermark)
    }

    #[test]
    fn the_watermark_of_splits_is_their_minimum_and_idle_splits_stop_holding_it() {
        let batches = vec![(0, vec![100, 110]), (1, vec![50]), (0, vec![200]), (1, vec![60, 300])];
        let metrics = Arc::new(Metrics::default());
        let mut d = SourceDriver::new(Box::new(Splits(batches, None)), Some((0, 10)), None, metrics);
        // split 1 has brought nothing yet: it holds the watermark back
        assert_eq!(poll(&mut d), (vec![NO_WATERMARK, NO_WATERMARK], None));
        assert_eq!(poll(&mut d), (vec![NO_WATERMARK], Some(40)));
        // split 0 is ahead: its rows see split 1's watermark
        assert_eq!(poll(&mut d), (vec![40], None));
        assert_eq!(poll(&mut d), (vec![40, 50], Some(190)));

        // an idle split does not hold it back
        let batches = vec![(0, vec![100]), (0, vec![200])];
        let metrics = Arc::new(Metrics::default());
        let mut d = SourceDriver::new(Box::new(Splits(batches, None)), Some((0, 10)), None, metrics)
            .with_split_idle_timeout(Some(Duration::from_millis(20)));
        assert_eq!(poll(&mut d), (vec![NO_WATERMARK], None));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(poll(&mut d), (vec![90], Some(190)));

        // split 1, idle, comes back behind: its rows are judged against what was announced
        let batches = vec![(0, vec![100]), (1, vec![50]), (0, vec![300]), (1, vec![60])];
        let metrics = Arc::new(Metrics::default());
        let mut d = SourceDriver::new(Box::new(Splits(batches, None)), Some((0, 10)), None, metrics)
            .with_split_idle_timeout(Some(Duration::from_millis(20)));
        assert_eq!(poll(&mut d), (vec![NO_WATERMARK], None));
        assert_eq!(poll(&mut d), (vec![NO_WATERMARK], Some(40)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(poll(&mut d), (vec![90], Some(290)));
        assert_eq!(poll(&mut d), (vec![290], None));

        // every split idle: the highest of their watermarks, whichever fell quiet last
        for quiet_last in [0, 1] {
            let again = if quiet_last == 0 { 100 } else { 300 };
            let batches = vec![(0, vec![100]), (1, vec![300]), (quiet_last, vec![again]), (NONE, vec![])];
            let metrics = Arc::new(Metrics::default());
            let mut d = SourceDriver::new(Box::new(Splits(batches, None)), Some((0, 10)), None, metrics)
                .with_split_idle_timeout(Some(Duration::from_millis(300)));
            assert_eq!(poll(&mut d), (vec![NO_WATERMARK], None));
            assert_eq!(poll(&mut d).1, Some(90));
            std::thread::sleep(Duration::from_millis(400));
            // split `quiet_last` alone brings rows: its watermark alone counts
            assert_eq!(poll(&mut d).1, (quiet_last == 1).then_some(290));
            std::thread::sleep(Duration::from_millis(400));
            assert_eq!(poll(&mut d).1, (quiet_last == 0).then_some(290), "split {quiet_last} fell quiet last");
        }
    }

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
