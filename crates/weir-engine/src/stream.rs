//! A running query's results as a stream of changes: batches of rows with their kinds, and
//! watermark progress. Dropping the stream stops the query.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion_common::arrow::array::{Array, StringArray};
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc::{Receiver, Sender};
use weir_runtime::{Metrics, Nanos, RowKind, RuntimeError, Sink};

use crate::EngineError;

/// One item of a query's output.
#[derive(Debug, Clone)]
pub enum Change {
    /// Result rows. `kinds[i]` says what row `i` does to the result: `Insert` for every row of
    /// an append-only query (a window's final rows); an updating query also retracts
    /// (`UpdateBefore`, `Delete`) and replaces (`UpdateAfter`) rows it emitted before.
    Rows {
        /// The rows, with the query's columns.
        batch: RecordBatch,
        /// The kind of each row.
        kinds: Vec<RowKind>,
    },
    /// The watermark reached the output: every window ending at or before this time (in
    /// nanoseconds since the epoch) has fired. `i64::MAX` when the inputs have ended.
    Watermark(Nanos),
}

/// The changes of a running query, in order. Poll it as a `futures::Stream` (e.g. with
/// [`futures::StreamExt::next`]); it ends when the query does. An error ends it too.
///
/// Dropping it stops the query: its sources stop being read and its state is dropped.
pub struct QueryStream {
    receiver: Receiver<Result<Change, EngineError>>,
    schema: SchemaRef,
    cancel: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl QueryStream {
    pub(crate) fn new(
        receiver: Receiver<Result<Change, EngineError>>,
        schema: SchemaRef,
        cancel: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { receiver, schema, cancel, metrics }
    }

    /// The columns of the result rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The query's counters (rows in and out, late rows, windows fired, state size, …), live.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stop the query. The stream then ends (rows of windows still open are not emitted).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl futures::Stream for QueryStream {
    type Item = Result<Change, EngineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The sink of a streamed query: each batch and watermark goes to the stream's channel.
pub(crate) struct StreamSink {
    sender: Sender<Result<Change, EngineError>>,
    /// The batches carry an `op` column first (an updating query).
    changelog: bool,
    watermark: Nanos,
}

impl StreamSink {
    pub(crate) fn new(sender: Sender<Result<Change, EngineError>>, changelog: bool) -> Self {
        Self { sender, changelog, watermark: Nanos::MIN }
    }

    fn send(&mut self, change: Change) -> weir_runtime::Result<()> {
        // the pipeline writes on a blocking thread, where waiting for the reader is allowed
        self.sender.blocking_send(Ok(change)).map_err(|_| RuntimeError::OutputClosed)
    }
}

impl Sink for StreamSink {
    fn write(&mut self, batch: &RecordBatch) -> weir_runtime::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if !self.changelog {
            let kinds = vec![RowKind::Insert; batch.num_rows()];
            return self.send(Change::Rows { batch: batch.clone(), kinds });
        }
        let ops = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| RuntimeError::Internal("a changelog batch without its op column".into()))?;
        let kinds = (0..ops.len())
            .map(|i| match ops.value(i) {
                "+I" => Ok(RowKind::Insert),
                "-U" => Ok(RowKind::UpdateBefore),
                "+U" => Ok(RowKind::UpdateAfter),
                "-D" => Ok(RowKind::Delete),
                other => Err(RuntimeError::Internal(format!("unknown row kind '{other}'"))),
            })
            .collect::<weir_runtime::Result<Vec<_>>>()?;
        let mut batch = batch.clone();
        batch.remove_column(0);
        self.send(Change::Rows { batch, kinds })
    }

    fn watermark(&mut self, nanos: Nanos) -> weir_runtime::Result<()> {
        if nanos > self.watermark {
            self.watermark = nanos;
            self.send(Change::Watermark(nanos))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> weir_runtime::Result<()> {
        Ok(())
    }
}
