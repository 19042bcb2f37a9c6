//! How the CLI shows errors (with the offending line and a caret), the end-of-run summary, and
//! each operator's metrics (`EXPLAIN ANALYZE`, `\stats`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir_runtime::{Metrics, OperatorMetrics, NO_WATERMARK};
use weir_sql::{SqlError, StreamPlan};

use crate::text::{human_rate, watermark_text};

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
    let mut out = format!("error: {}\n", clip_message(&err.message));
    if let Some((line, col)) = err.position {
        out.push_str(&format!("  --> {source_name}:{line}:{col}\n"));
        if let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) {
            // a long line is shown around the caret only
            let chars: Vec<char> = text.chars().collect();
            let at = (col.saturating_sub(1) as usize).min(chars.len());
            let from = at.saturating_sub(ECHO_BEFORE);
            let to = (at + ECHO_AFTER).min(chars.len());
            let shown: String = chars[from..to].iter().collect();
            let (lead, tail) = (if from > 0 { "…" } else { "" }, if to < chars.len() { "…" } else { "" });
            let num = line.to_string();
            let pad = " ".repeat(num.len());
            let caret_pad: String = std::iter::repeat_n(' ', lead.chars().count())
                .chain(chars[from..at].iter().map(|&c| if c == '\t' { '\t' } else { ' ' }))
                .collect();
            out.push_str(&format!(" {pad} |\n {num} | {lead}{shown}{tail}\n {pad} | {caret_pad}^\n"));
        }
    }
    if let Some(hint) = &err.hint {
        out.push_str(&format!("  = hint: {}\n", clip_message(hint)));
    }
    out
}

/// Characters of the offending line shown before and after the caret.
const ECHO_BEFORE: usize = 60;
const ECHO_AFTER: usize = 40;

/// The longest error message shown whole, in characters.
const MAX_MESSAGE: usize = 1000;

/// An error message cut to [`MAX_MESSAGE`] characters (a message can quote a huge statement or
/// value), saying how much was left out.
pub fn clip_message(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{} … ({} more characters)", &message[..i], message[i..].chars().count()),
        None => message.to_string(),
    }
}

/// Peak resident memory of this process, from /proc (Linux); `None` elsewhere.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
    let dead = Metrics::get(&metrics.bad_rows_dead_lettered);
    if dead > 0 {
        parts.push(format!("{dead} malformed rows sent to the dead-letter file"));
    }
    let null_time = Metrics::get(&metrics.null_time_rows);
    if null_time > 0 {
        parts.push(format!("{null_time} rows with NULL event time dropped"));
    }
    let expired = Metrics::get(&metrics.expired_keys);
    if expired > 0 {
        parts.push(format!("{expired} keys expired (state TTL)"));
    }
    let checkpoints = Metrics::get(&metrics.checkpoints);
    if checkpoints > 0 {
        parts.push(format!(
            "{checkpoints} checkpoints (last: #{}, {:.1} ms, {}; {:.1} ms in all)",
            Metrics::get(&metrics.checkpoint_last_id),
            Metrics::get(&metrics.checkpoint_last_nanos) as f64 / 1e6,
            human_bytes(Metrics::get(&metrics.checkpoint_last_bytes)),
            Metrics::get(&metrics.checkpoint_total_nanos) as f64 / 1e6,
        ));
    }
    parts.push(format!("{:.3} s ({} rows/s)", secs, human_rate(rows_in as f64 / secs)));
    if let Some(peak) = peak_memory_bytes() {
        parts.push(format!("peak memory {} MiB", peak / (1024 * 1024)));
    }
    format!("weir: {label}: {}", parts.join(", "))
}

/// Bytes for people: `512 B`, `3.1 KiB`, `12.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// What one source or operator did: rows, batches, busy time, dropped rows, state, watermark.
pub fn operator_line(m: &OperatorMetrics) -> String {
    let get = Metrics::get;
    let mut parts = match m.name {
        "Source" => vec![format!("rows read {}", get(&m.rows_out))],
        _ => vec![format!("rows in {}", get(&m.rows_in)), format!("rows out {}", get(&m.rows_out))],
    };
    parts.push(format!("batches {}", get(&m.batches)));
    parts.push(format!("time {:.2} ms", get(&m.busy_nanos) as f64 / 1e6));
    let late = get(&m.late_rows);
    if late > 0 {
        parts.push(format!("dropped {late} (late row-window pairs, or rows without an event time)"));
    }
    let peak = get(&m.peak_state_bytes);
    if peak > 0 {
        parts.push(format!(
            "state {} rows / {} (peak {})",
            get(&m.state_rows),
            human_bytes(get(&m.state_bytes)),
            human_bytes(peak)
        ));
    }
    let watermark = m.watermark.load(Ordering::Relaxed);
    if watermark != NO_WATERMARK {
        parts.push(format!("watermark {}", watermark_text(watermark)));
    }
    parts.join(", ")
}

/// `EXPLAIN ANALYZE`: the plan as EXPLAIN prints it, each source and operator followed by what
/// it did in the run that filled `metrics`.
pub fn explain_analyze(plan: &StreamPlan, metrics: &Metrics) -> String {
    let operators = metrics.operators();
    let mut out = String::new();
    for node in plan.describe() {
        let pad = "  ".repeat(node.depth);
        out.push_str(&format!("{pad}{}: {}\n", node.operator, node.details));
        let Some(place) = node.op else { continue };
        let here: Vec<&OperatorMetrics> = operators.iter().filter(|m| m.place == place).map(|m| m.as_ref()).collect();
        // the node's operator, then any part of it run elsewhere under another name (the first
        // phase of a window aggregate, where each split is read)
        let mut names: Vec<&'static str> = Vec::new();
        for m in &here {
            if !names.contains(&m.name) {
                names.push(m.name);
            }
        }
        names.sort_by_key(|n| *n != node.operator);
        for (i, name) in names.iter().enumerate() {
            let label = match i {
                0 => "metrics".to_string(),
                _ => format!("metrics of its {name}"),
            };
            let instances: Vec<&OperatorMetrics> = here.iter().filter(|m| m.name == *name).copied().collect();
            if let [one] = instances.as_slice() {
                out.push_str(&format!("{pad}  {label}: {}\n", operator_line(one)));
            } else if let Some(total) = OperatorMetrics::total(&instances) {
                // in parallel: the instances' sum, then each one (skew shows)
                out.push_str(&format!("{pad}  {label}: {}\n", operator_line(&total)));
                for m in &instances {
                    out.push_str(&format!("{pad}    instance {}: {}\n", m.instance, operator_line(m)));
                }
            }
        }
    }
    out.truncate(out.trim_end().len());
    out
}
