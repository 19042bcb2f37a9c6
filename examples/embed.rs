//! Embedding weir in a tokio application: the host sends rows over a channel, weir runs a
//! windowed query over them in event time, and the results come back over another channel.
//!
//! ```sh
//! cargo run -p weir-connectors --example embed
//! ```

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use weir_connectors::{build_pipeline_with, ChannelSink, ChannelSource, ConnectorContext};
use weir_runtime::Metrics;
use weir_sql::{Planned, Planner};

/// Clicks per user and 10-second window, sent in batches of ten, one click every 500 ms of event
/// time, every fifth batch arriving 3 s late (within the 5 s watermark delay).
fn clicks(batch: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("bytes", DataType::Int64, false),
    ]));
    let shift = if batch % 5 == 4 { -3_000 } else { 0 };
    let rows = 0..10i64;
    let users = StringArray::from_iter_values(rows.clone().map(|i| format!("user{}", i % 3)));
    let ts = TimestampMillisecondArray::from_iter_values(rows.clone().map(|i| (batch * 10 + i) * 500 + shift));
    let bytes = Int64Array::from_iter_values(rows.map(|i| 100 + i));
    RecordBatch::try_new(schema, vec![Arc::new(users), Arc::new(ts), Arc::new(bytes)]).expect("a valid batch")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut planner = Planner::new();
    let planned = planner.plan_script(
        "CREATE TABLE clicks (user VARCHAR NOT NULL, ts TIMESTAMP(3), bytes BIGINT,
                              WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'channel');
         SELECT user, TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS clicks, SUM(bytes) AS bytes
         FROM clicks GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), user;",
    )?;
    let Some(Planned::Query(plan)) = planned.last() else { return Err("expected a query".into()) };
    println!("{plan}");

    let (rows_in, rows) = tokio::sync::mpsc::channel(16);
    let (results, mut results_out) = tokio::sync::mpsc::channel(16);
    let ctx = ConnectorContext::new(Arc::new(Metrics::default()));
    let host = HashMap::from([("clicks".to_string(), ChannelSource::new("clicks", rows))]);
    let pipeline = build_pipeline_with(plan, Box::new(ChannelSink::new(results)), &ctx, host)?;
    let query = tokio::spawn(pipeline.run(Arc::new(AtomicBool::new(false))));

    // the host's own work: produce rows, then close the channel (end of input)
    tokio::spawn(async move {
        for batch in 0..20 {
            if rows_in.send(clicks(batch)).await.is_err() {
                return;
            }
        }
    });

    let (mut windows, mut total) = (0, 0);
    while let Some(batch) = results_out.recv().await {
        windows += batch.num_rows();
        total += batch.column(2).as_primitive::<Int64Type>().values().iter().sum::<i64>();
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&[batch])?);
    }
    query.await??;
    println!(
        "{windows} window rows, {total} clicks, {} late",
        ctx.metrics.late_rows.load(std::sync::atomic::Ordering::Relaxed)
    );
    // 200 clicks over 100 s of event time: 10 windows of 3 users, and none is late
    if (windows, total) != (30, 200) {
        return Err(format!("expected 30 window rows and 200 clicks, got {windows} and {total}").into());
    }
    Ok(())
}
