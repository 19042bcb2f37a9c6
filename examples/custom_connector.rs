//! A connector written outside weir and registered by name: `ticks` makes one row per tick of
//! event time, `'count'` of them (required), `'step'` apart. `CREATE TABLE` checks its options
//! against what it declares, so a typo fails there, with a suggestion; `SHOW CONNECTORS` and
//! `weir connectors` list it like a built-in one.
//!
//! ```sh
//! cargo run --example custom_connector
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use weir_engine::{
    Change, Connector, ConnectorError, ConnectorSpec, Engine, EngineConfig, OptionSpec, OptionType, Source, TableDef,
};

/// The connector: what it declares, how it checks a table, and how it opens one.
struct Ticks;

impl Connector for Ticks {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "ticks",
            doc: "numbered ticks of event time, made in process",
            source: true,
            sink: false,
            loose_keys: false,
            metadata: vec![],
            options: vec![
                OptionSpec::new("count", OptionType::Positive, "how many ticks").required(),
                OptionSpec::new("step", OptionType::Duration, "event time between ticks").default("1 s"),
            ],
        }
    }

    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        let schema = table.physical_schema().map_err(|e| ConnectorError::invalid(e.to_string()))?;
        let ok = schema.fields().iter().all(|f| match f.name().as_str() {
            "n" => f.data_type() == &DataType::Int64,
            "ts" => matches!(f.data_type(), DataType::Timestamp(_, _)),
            _ => false,
        });
        if !ok {
            return Err(ConnectorError::invalid(format!(
                "table '{}': a ticks table has the columns n BIGINT and ts TIMESTAMP(3)",
                table.name
            )));
        }
        Ok(())
    }

    fn open_source(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &weir_engine::ConnectorContext,
    ) -> weir_engine::RuntimeResult<Box<dyn Source>> {
        let count = table.option("count").and_then(|v| v.parse().ok()).unwrap_or(0);
        let step = table.option("step").and_then(|v| weir_engine::parse_duration(v).ok()).unwrap_or(1_000_000_000);
        Ok(Box::new(TickSource { schema, next: 0, count, step_ms: step / 1_000_000, batch: ctx.batch_size as i64 }))
    }
}

struct TickSource {
    schema: SchemaRef,
    next: i64,
    count: i64,
    step_ms: i64,
    batch: i64,
}

impl Source for TickSource {
    fn next_batch(&mut self) -> weir_engine::RuntimeResult<Option<RecordBatch>> {
        if self.next >= self.count {
            return Ok(None);
        }
        let ids = self.next..(self.next + self.batch).min(self.count);
        self.next = ids.end;
        // the columns the query reads, in the order it asks for them
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "n" => Arc::new(Int64Array::from_iter_values(ids.clone())) as ArrayRef,
                _ => Arc::new(TimestampMillisecondArray::from_iter_values(ids.clone().map(|i| i * self.step_ms))),
            })
            .collect();
        Ok(Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new(EngineConfig::default())?;
    engine.register_connector(Arc::new(Ticks));

    // a typo in an option is caught where it is written
    let typo = engine.sql("CREATE TABLE t (n BIGINT, ts TIMESTAMP(3)) WITH (connector = 'ticks', cuont = '5')").await;
    let message = typo.err().map(|e| e.to_string()).unwrap_or_default();
    println!("{message}");
    if !message.contains("did you mean 'count'?") {
        return Err(format!("expected a suggestion, got: {message}").into());
    }

    engine
        .sql(
            "CREATE TABLE t (n BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
             WITH (connector = 'ticks', count = '95', step = '500 ms')",
        )
        .await?;
    let mut changes = engine
        .query("SELECT window_start, COUNT(*) AS ticks, MAX(n) AS last FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end")
        .await?;
    let (mut windows, mut ticks) = (0, 0);
    while let Some(change) = changes.next().await {
        if let Change::Rows { batch, .. } = change? {
            windows += batch.num_rows();
            ticks += batch.column(1).as_primitive::<Int64Type>().values().iter().sum::<i64>();
        }
    }
    println!("{windows} windows, {ticks} ticks");
    // 95 ticks, 500 ms apart: 47.5 s of event time, in 5 windows of 10 s
    if (windows, ticks) != (5, 95) {
        return Err(format!("expected 5 windows and 95 ticks, got {windows} and {ticks}").into());
    }
    Ok(())
}
