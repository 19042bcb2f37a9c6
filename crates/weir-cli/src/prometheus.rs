//! The metrics endpoint (`--metrics-addr 127.0.0.1:9464`): the registry of the running query
//! (or of the last one, once it ended) served in the Prometheus text format at any path, by
//! `metrics-exporter-prometheus`. Values are copied from the registry four times a second and
//! when a query starts; each query is labelled with its number in the session
//! (`query="1"`), each operator with its name and place in the plan (`operator="Filter"`,
//! `node="op 2"`). An earlier query's series disappear 5 s after the next query starts.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use metrics_util::MetricKindMask;
use weir_runtime::{Metrics, OperatorMetrics, NO_WATERMARK};
use weir_sql::OpRef;

/// The query whose metrics are served.
struct Watched {
    number: u64,
    metrics: Arc<Metrics>,
}

/// A running endpoint.
pub struct MetricsEndpoint {
    current: Arc<Mutex<Option<Watched>>>,
    recorder: Arc<PrometheusRecorder>,
    queries: u64,
}

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);
const REFRESH: Duration = Duration::from_millis(250);

impl MetricsEndpoint {
    /// Listen on `addr`, serving from a task on `runtime`.
    pub fn start(addr: SocketAddr, runtime: &tokio::runtime::Runtime) -> Result<Self, String> {
        let (recorder, exporter) = {
            let _entered = runtime.enter();
            PrometheusBuilder::new()
                .with_http_listener(addr)
                // an earlier query's series go once it is no longer refreshed
                .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?
        };
        runtime.spawn(exporter);
        describe(&recorder);
        let endpoint = Self { current: Arc::default(), recorder: Arc::new(recorder), queries: 0 };
        let (current, recorder) = (Arc::clone(&endpoint.current), Arc::clone(&endpoint.recorder));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                if let Some(w) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    publish(&recorder, w);
                }
            }
        });
        Ok(endpoint)
    }

    /// Serve the metrics of a query that starts now.
    pub fn watch(&mut self, metrics: &Arc<Metrics>) {
        self.queries += 1;
        let watched = Watched { number: self.queries, metrics: Arc::clone(metrics) };
        publish(&self.recorder, &watched);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(watched);
    }

    /// Copy the current values now (at the end of a query, so a scrape right after sees them).
    pub fn refresh(&self) {
        if let Some(w) = self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            publish(&self.recorder, w);
        }
    }
}

fn describe(r: &PrometheusRecorder) {
    let d = |name: &'static str, help: &'static str| r.describe_gauge(name.into(), None, help.into());
    let c = |name: &'static str, help: &'static str| r.describe_counter(name.into(), None, help.into());
    c("weir_rows_in_total", "Rows read by the query's sources");
    c("weir_rows_out_total", "Rows written to the query's sink");
    c("weir_late_rows_total", "(row, window) pairs dropped as late");
    c("weir_null_time_rows_total", "Rows dropped for a NULL event time");
    c("weir_bad_rows_skipped_total", "Malformed input rows skipped");
    c("weir_bad_rows_dead_lettered_total", "Malformed input rows written to a dead-letter file");
    c("weir_windows_fired_total", "Windows emitted");
    c("weir_keys_expired_total", "Keys forgotten after the state TTL");
    c("weir_checkpoints_total", "Checkpoints completed");
    d("weir_checkpoint_last_duration_seconds", "How long the last checkpoint took");
    d("weir_checkpoint_last_bytes", "Bytes the last checkpoint wrote");
    d("weir_checkpoint_last_id", "The number of the last completed checkpoint");
    d("weir_open_windows", "Windows holding state");
    d("weir_watermark_seconds", "The query's watermark (seconds since the epoch)");
    d("weir_watermark_lag_seconds", "How far the watermark trails the wall clock");
    c("weir_operator_rows_in_total", "Rows an operator received (a source: 0)");
    c("weir_operator_rows_out_total", "Rows an operator emitted (a source: rows read)");
    c("weir_operator_batches_total", "Batches an operator received (a source: read)");
    d("weir_operator_busy_seconds", "Time spent in the operator so far (a source: reading, waiting included)");
    c("weir_operator_dropped_rows_total", "Rows an operator dropped (late, or no event time)");
    d("weir_operator_state_rows", "Rows of state an operator holds (sampled)");
    d("weir_operator_state_bytes", "Approximate bytes of state an operator holds (sampled)");
    d("weir_operator_peak_state_bytes", "The most state bytes sampled");
    d("weir_operator_watermark_seconds", "The watermark an operator last emitted");
    d("weir_operator_watermark_lag_seconds", "How far an operator's watermark trails the wall clock");
}

fn node_label(place: OpRef) -> String {
    match place {
        OpRef::Source(i) => format!("source {i}"),
        OpRef::Op(i) => format!("op {i}"),
    }
}

/// Seconds since the epoch of a watermark, and its lag behind the wall clock (none before the
/// first watermark and after the last).
fn watermark_seconds(w: i64) -> Option<(f64, f64)> {
    if w == NO_WATERMARK || w == i64::MAX {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    Some((w as f64 / 1e9, now.saturating_sub(w) as f64 / 1e9))
}

fn publish(r: &PrometheusRecorder, w: &Watched) {
    let query = Label::new("query", w.number.to_string());
    let m = &w.metrics;
    let counter = |name: &'static str, labels: &[Label], v: u64| {
        r.register_counter(&Key::from_parts(name, labels.to_vec()), &METADATA).absolute(v);
    };
    let gauge = |name: &'static str, labels: &[Label], v: f64| {
        r.register_gauge(&Key::from_parts(name, labels.to_vec()), &METADATA).set(v);
    };
    let q = std::slice::from_ref(&query);
    counter("weir_rows_in_total", q, Metrics::get(&m.rows_in));
    counter("weir_rows_out_total", q, Metrics::get(&m.rows_out));
    counter("weir_late_rows_total", q, Metrics::get(&m.late_rows));
    counter("weir_null_time_rows_total", q, Metrics::get(&m.null_time_rows));
    counter("weir_bad_rows_skipped_total", q, Metrics::get(&m.bad_rows_skipped));
    counter("weir_bad_rows_dead_lettered_total", q, Metrics::get(&m.bad_rows_dead_lettered));
    counter("weir_windows_fired_total", q, Metrics::get(&m.windows_fired));
    counter("weir_keys_expired_total", q, Metrics::get(&m.expired_keys));
    counter("weir_checkpoints_total", q, Metrics::get(&m.checkpoints));
    gauge("weir_checkpoint_last_duration_seconds", q, Metrics::get(&m.checkpoint_last_nanos) as f64 / 1e9);
    gauge("weir_checkpoint_last_bytes", q, Metrics::get(&m.checkpoint_last_bytes) as f64);
    gauge("weir_checkpoint_last_id", q, Metrics::get(&m.checkpoint_last_id) as f64);
    gauge("weir_open_windows", q, Metrics::get(&m.open_windows) as f64);
    if let Some((at, lag)) = watermark_seconds(m.watermark.load(Ordering::Relaxed)) {
        gauge("weir_watermark_seconds", q, at);
        gauge("weir_watermark_lag_seconds", q, lag);
    }
    for o in m.operators() {
        publish_operator(&counter, &gauge, &query, &o);
    }
}

fn publish_operator(
    counter: &dyn Fn(&'static str, &[Label], u64),
    gauge: &dyn Fn(&'static str, &[Label], f64),
    query: &Label,
    o: &OperatorMetrics,
) {
    let labels = [
        query.clone(),
        Label::new("operator", o.name),
        Label::new("node", node_label(o.place)),
        Label::new("instance", o.instance.to_string()),
    ];
    counter("weir_operator_rows_in_total", &labels, Metrics::get(&o.rows_in));
    counter("weir_operator_rows_out_total", &labels, Metrics::get(&o.rows_out));
    counter("weir_operator_batches_total", &labels, Metrics::get(&o.batches));
    gauge("weir_operator_busy_seconds", &labels, Metrics::get(&o.busy_nanos) as f64 / 1e9);
    counter("weir_operator_dropped_rows_total", &labels, Metrics::get(&o.late_rows));
    gauge("weir_operator_state_rows", &labels, Metrics::get(&o.state_rows) as f64);
    gauge("weir_operator_state_bytes", &labels, Metrics::get(&o.state_bytes) as f64);
    gauge("weir_operator_peak_state_bytes", &labels, Metrics::get(&o.peak_state_bytes) as f64);
    if let Some((at, lag)) = watermark_seconds(o.watermark.load(Ordering::Relaxed)) {
        gauge("weir_operator_watermark_seconds", &labels, at);
        gauge("weir_operator_watermark_lag_seconds", &labels, lag);
    }
}
