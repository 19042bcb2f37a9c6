//! The `channel` connector: a table whose rows the host program sends, and a sink that hands
//! result batches back, both over tokio channels. This is how weir is embedded: declare the
//! table `WITH (connector = 'channel')`, plan a query, and pass the receiving end of a channel
//! as that table's source to [`build_pipeline_with`](crate::build_pipeline_with).

use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc::{Receiver, Sender};
use weir_plan::{ConnectorSpec, TableDef};
use weir_runtime::{Connector, ConnectorContext, Result, RuntimeError, Sink, Source};

/// How long a channel source waits for the program before it hands on an empty batch.
const QUIET: std::time::Duration = std::time::Duration::from_millis(100);

/// A source fed by the host program: each batch received is a batch of the table's rows, with
/// the table's declared columns (by name, in any order; extra columns are ignored). The input
/// ends when every sender is dropped.
pub struct ChannelSource {
    table: String,
    receiver: Receiver<RecordBatch>,
    /// The declared columns the pipeline reads, in its order.
    schema: Option<SchemaRef>,
}

impl ChannelSource {
    /// The rows of `table`, as the host sends them.
    pub fn new(table: impl Into<String>, receiver: Receiver<RecordBatch>) -> Self {
        Self { table: table.into(), receiver, schema: None }
    }

    /// Read only these columns (set by the pipeline builder).
    pub(crate) fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The columns of `batch` the pipeline reads, checked against their declared types.
    fn select(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(schema) = &self.schema else { return Ok(batch) };
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                RuntimeError::Source(format!(
                    "table '{}': a batch sent by the host has no column '{}'",
                    self.table,
                    field.name()
                ))
            })?;
            if column.data_type() != field.data_type() {
                return Err(RuntimeError::Source(format!(
                    "table '{}': column '{}' is declared {}, but the host sent {}",
                    self.table,
                    field.name(),
                    field.data_type(),
                    column.data_type()
                )));
            }
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(RuntimeError::Source(format!(
                    "table '{}': column '{}' is NOT NULL, but the host sent NULLs",
                    self.table,
                    field.name()
                )));
            }
            columns.push(Arc::clone(column));
        }
        let options =
            datafusion_common::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)?)
    }
}

/// The `channel` connector: a table the host program sends rows for, or receives them from.
/// Declared like any other table; its rows come from a [`ChannelSource`] (or go to a
/// [`ChannelSink`]) the program hands to the pipeline builder.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelConnector;

impl Connector for ChannelConnector {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "channel",
            doc: "rows sent by the program weir is embedded in, over a tokio channel",
            source: true,
            sink: true,
            loose_keys: false,
            metadata: vec![],
            options: vec![],
        }
    }

    fn open_sink(&self, table: &TableDef, _: SchemaRef, _: &ConnectorContext) -> Result<Box<dyn Sink>> {
        Err(RuntimeError::Sink(format!(
            "table '{}' is written to the host program (connector 'channel'): give a sender with Engine::register_sink",
            table.name
        )))
    }

    fn open_source(&self, table: &TableDef, _: SchemaRef, _: &ConnectorContext) -> Result<Box<dyn Source>> {
        Err(RuntimeError::Source(not_fed(table)))
    }
}

/// The error for a `channel` table read without the program feeding it.
pub(crate) fn not_fed(table: &TableDef) -> String {
    format!(
        "table '{}' is read from the host program (connector 'channel'): give its rows with Engine::register_source (or a ChannelSource to build_pipeline_with)",
        table.name
    )
}

impl Source for ChannelSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        // the pipeline reads on a blocking thread of a runtime, where waiting is allowed; it
        // waits a little at a time, so a quiet program's table can go idle and a cancelled
        // query stops reading
        let received = match (tokio::runtime::Handle::try_current(), &self.schema) {
            (Ok(handle), Some(schema)) => {
                match handle.block_on(async { tokio::time::timeout(QUIET, self.receiver.recv()).await }) {
                    Ok(received) => received,
                    Err(_) => return Ok(Some(RecordBatch::new_empty(Arc::clone(schema)))),
                }
            }
            _ => self.receiver.blocking_recv(),
        };
        match received {
            Some(batch) => self.select(batch).map(Some),
            None => Ok(None),
        }
    }
}

/// A sink that sends each result batch to the host program. If the host drops the receiver,
/// the query stops with an error.
pub struct ChannelSink {
    sender: Sender<RecordBatch>,
}

impl ChannelSink {
    /// Send results to `sender` (a bounded channel: a slow host slows the query down).
    pub fn new(sender: Sender<RecordBatch>) -> Self {
        Self { sender }
    }
}

impl Sink for ChannelSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.sender
            .blocking_send(batch.clone())
            .map_err(|_| RuntimeError::Sink("the host program stopped receiving results".into()))
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_common::arrow::array::{Int32Array, Int64Array};
    use datafusion_common::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(name: &str, values: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("extra", DataType::Int32, true),
            Field::new(name, DataType::Int64, true),
        ]));
        let n = values.len() as i32;
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from_iter_values(0..n)), Arc::new(Int64Array::from(values))],
        )
        .unwrap()
    }

    #[test]
    fn reads_the_declared_columns_by_name_and_ends_when_the_host_hangs_up() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let declared = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let mut source = ChannelSource::new("t", rx).with_schema(declared);
        tx.blocking_send(batch("v", vec![Some(1), Some(2)])).unwrap();
        tx.blocking_send(batch("w", vec![Some(1)])).unwrap();
        tx.blocking_send(batch("v", vec![None])).unwrap();
        drop(tx);
        let first = source.next_batch().unwrap().unwrap();
        assert_eq!(first.num_columns(), 1);
        assert_eq!(first.num_rows(), 2);
        let missing = source.next_batch().unwrap_err().to_string();
        assert!(missing.contains("table 't': a batch sent by the host has no column 'v'"), "{missing}");
        let nulls = source.next_batch().unwrap_err().to_string();
        assert!(nulls.contains("NOT NULL"), "{nulls}");
        assert!(source.next_batch().unwrap().is_none());
    }

    #[test]
    fn a_host_that_stops_receiving_stops_the_query() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let err = ChannelSink::new(tx).write(&batch("v", vec![Some(1)])).unwrap_err().to_string();
        assert!(err.contains("stopped receiving"), "{err}");
    }
}
