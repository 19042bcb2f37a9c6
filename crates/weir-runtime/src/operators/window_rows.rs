//! The rows of a HOP or CUMULATE table function, as a join reads them: each row once per
//! window it is in, with the window's `window_start` and `window_end` added (Flink's window
//! table functions; an aggregate over them reads the windows itself instead).
//!
//! ```text
//!   row at 12 s, HOP(slide 5 s, size 10 s) ─► (row, 5 s, 15 s), (row, 10 s, 20 s)
//! ```
//!
//! A row without a time is in no window: dropped and counted, as a window aggregate does.

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray, UInt32Array};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::WindowSpec;

use crate::error::Result;
use crate::exec::dropped::DroppedCollector;
use crate::exec::metrics::Metrics;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use crate::operators::window_aggregate::to_nanos;
use crate::operators::window_assign::Assigner;

/// Copies each row once per window.
pub struct WindowRowsOp {
    assigner: Assigner,
    time: Arc<dyn PhysicalExpr>,
    /// The type of the window columns (the time's).
    time_type: DataType,
    output: SchemaRef,
    metrics: Arc<Metrics>,
}

impl WindowRowsOp {
    /// The rows of `window` over `time`, into `output` (the input's columns, then the window's
    /// start and end).
    pub fn new(
        window: &WindowSpec,
        time: Arc<dyn PhysicalExpr>,
        output: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let time_type = output.field(output.fields().len() - 1).data_type().clone();
        Ok(Self { assigner: Assigner::new(window)?, time, time_type, output, metrics })
    }
}

impl Operator for WindowRowsOp {
    fn name(&self) -> &'static str {
        "WindowRows"
    }

    /// Stateless.
    fn snapshot(&mut self) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        Ok(crate::state::checkpoint::OperatorSnapshot::empty())
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let n = input.batch.num_rows();
        let times = to_nanos(&self.time.evaluate(&input.batch)?.into_array(n)?)?;
        let (mut rows, mut starts, mut ends) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        let mut null_time = 0;
        // the windows of the last slice seen (rows of one slice come together)
        let mut last: Option<(i64, Vec<(i64, i64)>)> = None;
        for (i, t) in times.iter().enumerate() {
            let Some(slice) = t.and_then(|t| self.assigner.slice_start(t)) else {
                null_time += 1;
                dropped.null_time(i);
                continue;
            };
            if last.as_ref().is_none_or(|(s, _)| *s != slice) {
                last = Some((slice, self.assigner.windows(slice)));
            }
            for &(start, end) in last.as_ref().map_or(&[][..], |(_, w)| w.as_slice()) {
                rows.push(i as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        self.metrics.dropped(0, null_time);
        dropped.finish(out)?;
        if rows.is_empty() {
            return Ok(());
        }
        let copies = input.take(&UInt32Array::from(rows))?;
        let bound =
            |v: Vec<i64>| -> Result<ArrayRef> { Ok(cast(&TimestampNanosecondArray::from(v), &self.time_type)?) };
        let mut columns = copies.batch.columns().to_vec();
        columns.push(bound(starts)?);
        columns.push(bound(ends)?);
        let batch = RecordBatch::try_new(Arc::clone(&self.output), columns)?;
        out.push(Message::Data(StreamBatch { batch, ..copies }));
        Ok(())
    }
}
