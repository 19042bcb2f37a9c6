//! Collecting the rows an operator drops (late, or with a NULL event time) for the source's
//! side output. Only batches that carry their [`Origin`] are collected: that is the case when
//! the source names a `'late_rows'` sink; otherwise dropped rows are only counted.

use datafusion_common::arrow::temporal_conversions::timestamp_ns_to_datetime;

use crate::error::Result;
use crate::message::{DroppedRows, Message, Nanos, Origin};

/// A time as a reason shows it.
pub fn show_time(ns: Nanos) -> String {
    match timestamp_ns_to_datetime(ns) {
        Some(t) => t.to_string(),
        None => ns.to_string(),
    }
}

/// The dropped rows of one batch.
pub struct DroppedCollector<'a> {
    origin: Option<&'a Origin>,
    rows: Vec<u32>,
    reasons: Vec<String>,
}

impl<'a> DroppedCollector<'a> {
    /// Collect for a batch with this origin (`None`: collect nothing).
    pub fn new(origin: Option<&'a Origin>) -> Self {
        Self { origin, rows: Vec::new(), reasons: Vec::new() }
    }

    /// Row `row` of the batch was dropped.
    pub fn drop_row(&mut self, row: usize, reason: impl FnOnce() -> String) {
        if self.origin.is_some() {
            self.rows.push(row as u32);
            self.reasons.push(reason());
        }
    }

    /// Row `row` was late for the window `[start, end)` under watermark `watermark`.
    pub fn late_for_window(&mut self, row: usize, start: Nanos, end: Nanos, watermark: Nanos, lateness: Nanos) {
        self.drop_row(row, || {
            let allowed = if lateness > 0 {
                format!(", allowed lateness {}", weir_plan::duration::format_duration(lateness))
            } else {
                String::new()
            };
            format!(
                "late: window [{}, {}) had closed (watermark {}{allowed})",
                show_time(start),
                show_time(end),
                show_time(watermark)
            )
        });
    }

    /// Row `row` had no event time.
    pub fn null_time(&mut self, row: usize) {
        self.drop_row(row, || "no event time (NULL)".to_string());
    }

    /// Send what was collected.
    pub fn finish(self, out: &mut Vec<Message>) -> Result<()> {
        if let Some(origin) = self.origin.filter(|_| !self.rows.is_empty()) {
            out.push(Message::Dropped(DroppedRows { rows: origin.take(&self.rows)?, reasons: self.reasons }));
        }
        Ok(())
    }
}
