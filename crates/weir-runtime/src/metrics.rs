//! Counters of a running pipeline, shared between the tasks that run it and whoever reports
//! on it (the CLI's summary).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::message::NO_WATERMARK;

/// Pipeline counters. All are monotonic except `watermark`.
#[derive(Debug)]
pub struct Metrics {
    /// Rows read by the source.
    pub rows_in: AtomicU64,
    /// Rows written to the sink.
    pub rows_out: AtomicU64,
    /// (row, window) pairs dropped because the window had already closed.
    pub late_rows: AtomicU64,
    /// Rows dropped by a window aggregate because their event time was NULL.
    pub null_time_rows: AtomicU64,
    /// Malformed input rows skipped under the `skip` error policy.
    pub bad_rows_skipped: AtomicU64,
    /// Windows emitted.
    pub windows_fired: AtomicU64,
    /// Windows currently open (holding state).
    pub open_windows: AtomicU64,
    /// Keys an updating aggregate forgot after the state TTL.
    pub expired_keys: AtomicU64,
    /// Current source watermark, nanoseconds.
    pub watermark: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            null_time_rows: AtomicU64::new(0),
            bad_rows_skipped: AtomicU64::new(0),
            windows_fired: AtomicU64::new(0),
            open_windows: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
        }
    }
}

impl Metrics {
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read a counter.
    /// Count (row, window) pairs dropped as late and rows dropped for a NULL event time.
    pub fn dropped(&self, late: u64, null_time: u64) {
        if late > 0 {
            Self::add(&self.late_rows, late);
        }
        if null_time > 0 {
            Self::add(&self.null_time_rows, null_time);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
