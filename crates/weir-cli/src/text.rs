//! Text for people: rates, watermarks and small tables, shared by the summary, the status
//! line, the shell and the listings.

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, StringArray};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::arrow::record_batch::RecordBatch;
use datafusion_common::arrow::temporal_conversions::timestamp_ns_to_datetime;
use datafusion_common::arrow::util::pretty::pretty_format_batches;
use weir_runtime::NO_WATERMARK;

/// A rate with a unit prefix: `1.20M`, `3.4k`, `12`.
pub(crate) fn human_rate(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A watermark for people: `2024-01-01 00:00:10.000`, or `-` before the first one.
pub fn watermark_text(nanos: i64) -> String {
    if nanos == NO_WATERMARK {
        return "-".into();
    }
    if nanos == i64::MAX {
        return "end of input".into();
    }
    match timestamp_ns_to_datetime(nanos) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => nanos.to_string(),
    }
}

/// A table of text for people, in the same box style as query results.
pub fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let fields: Vec<Field> = headers.iter().map(|h| Field::new(*h, DataType::Utf8, false)).collect();
    let columns: Vec<ArrayRef> = (0..headers.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
        .and_then(|b| pretty_format_batches(&[b]).map(|t| t.to_string()).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| format!("(cannot show the table: {e})"))
}
