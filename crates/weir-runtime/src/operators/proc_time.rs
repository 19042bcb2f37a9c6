//! Processing time: the `name AS PROCTIME()` column, filled with the wall clock as rows reach
//! the operators, and — when a window is over it — the wall clock as the pipeline's watermark.
//!
//! Rows are stamped on the operator thread, with a clock that never goes back, so a row is
//! never stamped earlier than a watermark already sent: processing-time windows have no late
//! rows. While no rows arrive, the pipeline sends the clock's time as a watermark on a timer
//! ([`ProcessingClock::TICK`]), so windows close on the wall clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::Result;
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;

const NANOS_PER_MILLI: i64 = 1_000_000;

/// The wall clock in milliseconds since the epoch, never going back (a clock set backwards
/// stands still until it catches up).
#[derive(Debug, Default)]
pub struct ProcessingClock {
    last_millis: AtomicI64,
}

impl ProcessingClock {
    /// How often a quiet pipeline sends the wall clock as its watermark.
    pub const TICK: Duration = Duration::from_millis(100);

    /// A clock starting now.
    pub fn new() -> Self {
        Self::default()
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_millis(&self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let previous = self.last_millis.fetch_max(wall, Ordering::Relaxed);
        previous.max(wall)
    }

    /// Now, as a watermark (nanoseconds).
    pub fn watermark(&self) -> Nanos {
        self.now_millis().saturating_mul(NANOS_PER_MILLI)
    }
}

/// Inserts the processing-time column into each batch and, if it drives the watermark, sends
/// the stamp as the watermark after the batch.
pub struct ProcTimeOp {
    /// Position of the column among the output columns.
    position: usize,
    schema: SchemaRef,
    clock: Arc<ProcessingClock>,
    drives_watermark: bool,
    sent: Nanos,
}

impl ProcTimeOp {
    /// Insert the column at `position`, producing batches of `schema`; `drives_watermark`:
    /// a window is over this column.
    pub fn new(position: usize, schema: SchemaRef, clock: Arc<ProcessingClock>, drives_watermark: bool) -> Self {
        Self { position, schema, clock, drives_watermark, sent: NO_WATERMARK }
    }
}

impl Operator for ProcTimeOp {
    fn name(&self) -> &'static str {
        "ProcTime"
    }

    /// Stateless.
    fn snapshot(&mut self) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        Ok(crate::state::checkpoint::OperatorSnapshot::empty())
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = input.batch.num_rows();
        let now = self.clock.now_millis();
        let stamp: ArrayRef = Arc::new(TimestampMillisecondArray::from_value(now, n));
        let mut columns = input.batch.columns().to_vec();
        columns.insert(self.position.min(columns.len()), stamp);
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        out.push(Message::Data(StreamBatch { batch, ..input }));
        if self.drives_watermark {
            self.on_watermark(now.saturating_mul(NANOS_PER_MILLI), out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        // the timer's ticks and the stamps' watermarks interleave: send each advance once
        if !self.drives_watermark || watermark > self.sent {
            self.sent = watermark;
            out.push(Message::Watermark(watermark));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{AsArray, Int64Array};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};

    fn input(values: Vec<i64>) -> StreamBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap();
        StreamBatch { batch, row_watermarks: None, kinds: None, origin: None }
    }

    #[test]
    fn stamps_rows_and_never_sends_a_watermark_above_a_later_stamp() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("p", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("a", DataType::Int64, true),
        ]));
        let clock = Arc::new(ProcessingClock::new());
        let mut op = ProcTimeOp::new(0, schema, Arc::clone(&clock), true);
        let before = clock.now_millis();
        let mut out = Vec::new();
        op.process_batch(input(vec![1, 2, 3]), &mut out).unwrap();
        let Message::Data(b) = &out[0] else { panic!("data first") };
        let stamps = b.batch.column(0).as_primitive::<TimestampMillisecondType>();
        assert_eq!(b.batch.column(1).len(), 3);
        let stamp = stamps.value(0);
        assert!(stamps.values().iter().all(|v| *v == stamp) && stamp >= before);
        let Message::Watermark(w) = out[1] else { panic!("then the watermark") };
        assert_eq!(w, stamp * NANOS_PER_MILLI);
        // a tick at the same time sends nothing; the next stamp is not below the watermark
        let mut out = Vec::new();
        op.on_watermark(w, &mut out).unwrap();
        assert!(out.is_empty());
        op.process_batch(input(vec![4]), &mut out).unwrap();
        let Message::Data(b) = &out[0] else { panic!("data") };
        assert!(b.batch.column(0).as_primitive::<TimestampMillisecondType>().value(0) * NANOS_PER_MILLI >= w);
    }

    #[test]
    fn a_stamp_only_column_sends_no_watermark() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("p", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let mut op = ProcTimeOp::new(1, schema, Arc::new(ProcessingClock::new()), false);
        let mut out = Vec::new();
        op.process_batch(input(vec![1]), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let Message::Data(b) = &out[0] else { panic!("data") };
        assert_eq!(b.batch.schema().field(1).name(), "p");
    }
}
