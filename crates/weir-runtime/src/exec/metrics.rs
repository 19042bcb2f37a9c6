//! Counters of a running pipeline, shared between the tasks that run it and whoever reports
//! on it (the CLI's summary and status line, `EXPLAIN ANALYZE`, the Prometheus endpoint): the
//! query's totals, and one [`OperatorMetrics`] per source and operator, kept in one registry.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_plan::OpRef;

use crate::message::NO_WATERMARK;

/// The state an operator holds: rows (groups, keys, sessions, kept rows) and approximate bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Rows of state (what "rows" means depends on the operator: groups of open windows,
    /// sessions, keys, kept rows).
    pub rows: u64,
    /// Approximate bytes held.
    pub bytes: u64,
}

/// Counters of one source or operator.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Operator name (`Source`, `Filter`, `WindowAggregate`, …).
    pub name: &'static str,
    /// Where it is in the plan.
    pub place: OpRef,
    /// Which parallel instance of it (0 on one thread).
    pub instance: usize,
    /// Rows received (for a source: rows read).
    pub rows_in: AtomicU64,
    /// Rows emitted.
    pub rows_out: AtomicU64,
    /// Batches received (for a source: batches read).
    pub batches: AtomicU64,
    /// Time spent in the operator (for a source: reading and parsing), nanoseconds.
    pub busy_nanos: AtomicU64,
    /// Rows it dropped: late, or without an event time.
    pub late_rows: AtomicU64,
    /// State held, sampled (after rows four times the state's, and before the input ends).
    pub state_rows: AtomicU64,
    /// Approximate bytes of state, sampled likewise.
    pub state_bytes: AtomicU64,
    /// The most state bytes sampled.
    pub peak_state_bytes: AtomicU64,
    /// The watermark it last emitted, nanoseconds.
    pub watermark: AtomicI64,
}

impl OperatorMetrics {
    fn new(name: &'static str, place: OpRef, instance: usize) -> Self {
        Self {
            name,
            place,
            instance,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            state_rows: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            peak_state_bytes: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
        }
    }

    /// The counters of several instances of one operator added up (its watermark: the lowest).
    pub fn total(instances: &[&OperatorMetrics]) -> Option<OperatorMetrics> {
        let first = instances.first()?;
        let total = OperatorMetrics::new(first.name, first.place, 0);
        let sum = |f: fn(&OperatorMetrics) -> &AtomicU64| instances.iter().map(|m| Metrics::get(f(m))).sum::<u64>();
        total.rows_in.store(sum(|m| &m.rows_in), Ordering::Relaxed);
        total.rows_out.store(sum(|m| &m.rows_out), Ordering::Relaxed);
        total.batches.store(sum(|m| &m.batches), Ordering::Relaxed);
        total.busy_nanos.store(sum(|m| &m.busy_nanos), Ordering::Relaxed);
        total.late_rows.store(sum(|m| &m.late_rows), Ordering::Relaxed);
        total.state_rows.store(sum(|m| &m.state_rows), Ordering::Relaxed);
        total.state_bytes.store(sum(|m| &m.state_bytes), Ordering::Relaxed);
        total.peak_state_bytes.store(sum(|m| &m.peak_state_bytes), Ordering::Relaxed);
        let watermark = instances.iter().map(|m| m.watermark.load(Ordering::Relaxed)).min().unwrap_or(NO_WATERMARK);
        total.watermark.store(watermark, Ordering::Relaxed);
        Some(total)
    }

    /// Record a sample of the state held.
    pub fn state(&self, size: StateSize) {
        self.state_rows.store(size.rows, Ordering::Relaxed);
        self.state_bytes.store(size.bytes, Ordering::Relaxed);
        self.peak_state_bytes.fetch_max(size.bytes, Ordering::Relaxed);
    }
}

thread_local! {
    /// Rows dropped by operators running on this thread.
    static DROPPED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

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
    /// Malformed input rows written to a dead-letter file.
    pub bad_rows_dead_lettered: AtomicU64,
    /// Windows emitted.
    pub windows_fired: AtomicU64,
    /// Windows currently open (holding state).
    pub open_windows: AtomicU64,
    /// Keys an updating aggregate forgot after the state TTL.
    pub expired_keys: AtomicU64,
    /// Current source watermark, nanoseconds.
    pub watermark: AtomicI64,
    /// Checkpoints completed.
    pub checkpoints: AtomicU64,
    /// How long the last checkpoint took (from the request to the committed sink), nanoseconds.
    pub checkpoint_last_nanos: AtomicU64,
    /// Bytes the last checkpoint wrote.
    pub checkpoint_last_bytes: AtomicU64,
    /// The id of the last completed checkpoint.
    pub checkpoint_last_id: AtomicU64,
    /// Time spent taking checkpoints, nanoseconds.
    pub checkpoint_total_nanos: AtomicU64,
    /// Per source and operator, in the order the pipeline registered them.
    operators: Mutex<Vec<Arc<OperatorMetrics>>>,
    /// With parallel instances of a window aggregate: the windows (end, start, plan node)
    /// fired by one and not yet past the sink's watermark, so the others firing them too count
    /// them once.
    fired: Mutex<Option<std::collections::BTreeSet<(i64, i64, usize)>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            null_time_rows: AtomicU64::new(0),
            bad_rows_skipped: AtomicU64::new(0),
            bad_rows_dead_lettered: AtomicU64::new(0),
            windows_fired: AtomicU64::new(0),
            open_windows: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
            watermark: AtomicI64::new(NO_WATERMARK),
            checkpoints: AtomicU64::new(0),
            checkpoint_last_nanos: AtomicU64::new(0),
            checkpoint_last_bytes: AtomicU64::new(0),
            checkpoint_last_id: AtomicU64::new(0),
            checkpoint_total_nanos: AtomicU64::new(0),
            operators: Mutex::new(Vec::new()),
            fired: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count (row, window) pairs dropped as late and rows dropped for a NULL event time.
    pub fn dropped(&self, late: u64, null_time: u64) {
        DROPPED_HERE.with(|d| d.set(d.get() + late + null_time));
        if late > 0 {
            Self::add(&self.late_rows, late);
        }
        if null_time > 0 {
            Self::add(&self.null_time_rows, null_time);
        }
    }

    /// Count windows fired once each, whichever parallel instances fire them (see
    /// [`Metrics::window_fired`]).
    pub fn count_windows_across_instances(&self) {
        *self.fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::collections::BTreeSet::new());
    }

    /// The window aggregate of plan node `node` fired window `[start, end)`: counted once per
    /// node, however many parallel instances fire it.
    pub fn window_fired(&self, node: usize, start: i64, end: i64) {
        let mut fired = self.fired.lock().unwrap_or_else(|e| e.into_inner());
        let Some(set) = fired.as_mut() else {
            drop(fired);
            return Self::add(&self.windows_fired, 1);
        };
        if set.insert((end, start, node)) {
            Self::add(&self.windows_fired, 1);
        }
        // every instance has fired the windows the sink's watermark has passed
        let passed = self.watermark.load(Ordering::Relaxed);
        while set.first().is_some_and(|(e, _, _)| *e <= passed) {
            set.pop_first();
        }
    }

    /// Rows dropped so far by operators on this thread (see [`Metrics::dropped`]): what an
    /// operator dropped is the difference across its call, whatever other threads do.
    pub fn dropped_on_this_thread() -> u64 {
        DROPPED_HERE.with(std::cell::Cell::get)
    }

    /// Change a gauge that several instances add to: from `reported` (what this one added
    /// last) to `now`.
    pub fn gauge(gauge: &AtomicU64, reported: &mut u64, now: u64) {
        if now != *reported {
            gauge.fetch_add(now.wrapping_sub(*reported), Ordering::Relaxed);
            *reported = now;
        }
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Add the counters of a source or operator to the registry.
    pub fn register(&self, name: &'static str, place: OpRef) -> Arc<OperatorMetrics> {
        self.register_instance(name, place, 0)
    }

    /// Add the counters of parallel instance `instance` of a source or operator.
    pub fn register_instance(&self, name: &'static str, place: OpRef, instance: usize) -> Arc<OperatorMetrics> {
        let m = Arc::new(OperatorMetrics::new(name, place, instance));
        self.operators.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&m));
        m
    }

    /// The counters of every source and operator registered so far.
    pub fn operators(&self) -> Vec<Arc<OperatorMetrics>> {
        self.operators.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
