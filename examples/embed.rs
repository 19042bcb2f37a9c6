//! Embedding weir in a tokio program: the program sends rows over a channel, weir runs a
//! windowed query over them in event time, using a function of the program's own (a
//! DataFusion `ScalarUDF`), and each window's results reach a Rust callback.
//!
//! ```sh
//! cargo run --example embed
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use futures::StreamExt;
use weir_engine::{Change, Engine, EngineConfig};

/// Clicks sent in batches of ten, one click every 500 ms of event time, every fifth batch
/// arriving 3 s late (within the 5 s watermark delay).
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
    let bytes = Int64Array::from_iter_values(rows.map(|i| 1024 * (1 + i)));
    RecordBatch::try_new(schema, vec![Arc::new(users), Arc::new(ts), Arc::new(bytes)]).expect("a valid batch")
}

/// The program's own function: bytes as KiB.
fn kib() -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "kib",
        vec![DataType::Int64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let bytes = arrays[0].as_primitive::<Int64Type>();
            let out: Float64Array = bytes.iter().map(|b| b.map(|b| b as f64 / 1024.0)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// What the program does with each window's row: here, print and add up.
fn on_window(batch: &RecordBatch, totals: &mut (usize, i64, f64)) {
    totals.0 += batch.num_rows();
    totals.1 += batch.column(2).as_primitive::<Int64Type>().values().iter().sum::<i64>();
    totals.2 += batch.column(3).as_primitive::<Float64Type>().values().iter().sum::<f64>();
    for i in 0..batch.num_rows() {
        let user = batch.column(0).as_string::<i32>().value(i);
        let window = batch.column(1).as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
        println!(
            "{user} {} clicks={} kib={}",
            window.value(i),
            batch.column(2).as_primitive::<Int64Type>().value(i),
            batch.column(3).as_primitive::<Float64Type>().value(i)
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new(EngineConfig::default())?;
    engine.register_udf(kib());
    engine
        .sql(
            "CREATE TABLE clicks (user VARCHAR NOT NULL, ts TIMESTAMP(3), bytes BIGINT,
                                  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH (connector = 'channel')",
        )
        .await?;
    let (rows_in, rows) = tokio::sync::mpsc::channel(16);
    engine.register_source("clicks", rows);
    let query = "SELECT user, TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS clicks, SUM(kib(bytes)) AS kib
                 FROM clicks GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), user";
    println!("{}", engine.explain(query)?);
    let mut changes = engine.query(query).await?;

    // the program's own work: produce rows, then close the channel (end of input)
    tokio::spawn(async move {
        for batch in 0..20 {
            if rows_in.send(clicks(batch)).await.is_err() {
                return;
            }
        }
    });

    let mut totals = (0, 0, 0.0);
    let mut watermarks = 0;
    while let Some(change) = changes.next().await {
        match change? {
            Change::Rows { batch, .. } => on_window(&batch, &mut totals),
            Change::Watermark(_) => watermarks += 1,
        }
    }
    let (windows, clicks, kib) = totals;
    println!("{windows} window rows, {clicks} clicks, {kib} KiB, {watermarks} watermarks");
    // 200 clicks over 100 s of event time: 10 windows of 3 users, none late; 5.5 KiB a click
    if (windows, clicks) != (30, 200) || (kib - 1100.0).abs() > 1e-9 || watermarks == 0 {
        return Err(format!("expected 30 window rows, 200 clicks and 1100 KiB, got {windows}, {clicks}, {kib}").into());
    }
    Ok(())
}
