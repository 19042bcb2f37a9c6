//! How the CLI shows errors (with the offending line and a caret) and the end-of-run summary.

use std::sync::Arc;
use std::time::Duration;

use weir_runtime::Metrics;
use weir_sql::SqlError;

/// Render an SQL error against the script text:
///
/// ```text
/// error: No field named nope.
///   --> q.sql:3:8
///    |
///  3 | SELECT nope FROM events
///    |        ^
///   = hint: …
/// ```
pub fn render_sql_error(err: &SqlError, source_name: &str, sql: &str) -> String {
    let mut out = format!("error: {}\n", err.message);
    if let Some((line, col)) = err.position {
        out.push_str(&format!("  --> {source_name}:{line}:{col}\n"));
        if let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) {
            let num = line.to_string();
            let pad = " ".repeat(num.len());
            let caret_pad: String =
                text.chars().take(col.saturating_sub(1) as usize).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            out.push_str(&format!(" {pad} |\n {num} | {text}\n {pad} | {caret_pad}^\n"));
        }
    }
    if let Some(hint) = &err.hint {
        out.push_str(&format!("  = hint: {hint}\n"));
    }
    out
}

/// Peak resident memory of this process, from /proc (Linux); `None` elsewhere.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub(crate) fn human_rate(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The one-line summary printed on stderr after each query.
pub fn summary(label: &str, metrics: &Arc<Metrics>, elapsed: Duration) -> String {
    let rows_in = Metrics::get(&metrics.rows_in);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut parts = vec![
        format!("{rows_in} rows in"),
        format!("{} rows out", Metrics::get(&metrics.rows_out)),
        format!("{} late rows dropped", Metrics::get(&metrics.late_rows)),
    ];
    let windows = Metrics::get(&metrics.windows_fired);
    if windows > 0 {
        parts.push(format!("{windows} windows fired"));
    }
    let skipped = Metrics::get(&metrics.bad_rows_skipped);
    if skipped > 0 {
        parts.push(format!("{skipped} malformed rows skipped"));
    }
    let null_time = Metrics::get(&metrics.null_time_rows);
    if null_time > 0 {
        parts.push(format!("{null_time} rows with NULL event time dropped"));
    }
    let expired = Metrics::get(&metrics.expired_keys);
    if expired > 0 {
        parts.push(format!("{expired} keys expired (state TTL)"));
    }
    parts.push(format!("{:.3} s ({} rows/s)", secs, human_rate(rows_in as f64 / secs)));
    if let Some(peak) = peak_memory_bytes() {
        parts.push(format!("peak memory {} MiB", peak / (1024 * 1024)));
    }
    format!("weir: {label}: {}", parts.join(", "))
}
