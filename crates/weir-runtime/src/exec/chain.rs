//! What runs downstream of the sources: the chain of operators down to the sink (with the
//! side output for dropped rows), and a pipeline's checkpointing as set up before it runs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, StringArray};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::Result;
use crate::exec::instrument::{through, Instrumented};
use crate::exec::metrics::Metrics;
use crate::exec::source::Sink;
use crate::message::{DroppedRows, Message, StreamBatch};
use crate::state::checkpoint::Coordinator;

/// Operators plus sink: everything downstream of the source.
pub(crate) struct Chain {
    pub(crate) ops: Vec<Instrumented>,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) metrics: Arc<Metrics>,
    /// Set for a changelog: the sink's schema, with the `op` column.
    pub(crate) changelog: Option<SchemaRef>,
    /// The side output for dropped rows, and its schema.
    pub(crate) late_rows: Option<(Box<dyn Sink>, SchemaRef)>,
    /// Report the watermark reaching the sink (the sources do not, when there are several).
    pub(crate) report_watermark: bool,
}

impl Chain {
    /// Rows an operator dropped: to the side output, if there is one.
    pub(crate) fn dropped(&mut self, d: DroppedRows) -> Result<()> {
        let Some((sink, schema)) = &mut self.late_rows else { return Ok(()) };
        let mut columns = d.rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from(d.reasons)));
        let options = RecordBatchOptions::new().with_row_count(Some(d.rows.num_rows()));
        sink.write(&RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
    }

    /// Stop without ending the stream (after a last checkpoint): flush and close the sinks.
    pub(crate) fn close(&mut self) -> Result<()> {
        if let Some((sink, _)) = &mut self.late_rows {
            sink.finish()?;
        }
        self.sink.finish()
    }

    /// Push one message through; returns true once `EndOfStream` reached the sink.
    pub(crate) fn push(&mut self, message: Message) -> Result<bool> {
        let current = through(&mut self.ops, vec![message])?;
        for m in current {
            match m {
                Message::Data(b) => {
                    Metrics::add(&self.metrics.rows_out, b.batch.num_rows() as u64);
                    match &self.changelog {
                        Some(schema) => self.sink.write(&with_op_column(&b, schema)?)?,
                        None => self.sink.write(&b.batch)?,
                    }
                }
                Message::Watermark(w) => {
                    self.sink.watermark(w)?;
                    if self.report_watermark {
                        self.metrics.watermark.store(w, Ordering::Relaxed);
                    }
                }
                Message::Dropped(d) => self.dropped(d)?,
                Message::EndOfStream => {
                    if let Some((sink, _)) = &mut self.late_rows {
                        sink.finish()?;
                    }
                    self.sink.finish()?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
/// A pipeline's checkpointing, set up by [`Pipeline::with_checkpoints`].
pub(crate) struct Checkpointing {
    pub(crate) coordinator: Coordinator,
    /// The reading order saved in the checkpoint resumed from.
    pub(crate) turns: Option<serde_json::Value>,
    /// The checkpoint resumed from was taken when the query had finished.
    pub(crate) finished: bool,
}

/// Prepend the `op` column to a changelog batch.
pub(crate) fn with_op_column(batch: &StreamBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.batch.num_rows();
    let ops = StringArray::from_iter_values((0..n).map(|i| batch.kind(i).as_str()));
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
    columns.extend(batch.batch.columns().iter().cloned());
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
}
