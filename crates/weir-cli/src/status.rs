//! The live status line on a terminal: rows read, rows/s, the watermark and its lag behind the
//! wall clock, late rows. It is drawn on stderr and kept off the results: stdout is written
//! through a [`StatusWriter`], which erases the line before each batch of results and lets the
//! next tick draw it again below them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_runtime::{Metrics, NO_WATERMARK};

/// Erase the current terminal line and return to its start.
const ERASE: &str = "\r\x1b[2K";

/// One status line on stderr, shared by whoever draws it and whoever writes results.
#[derive(Debug, Default)]
pub struct StatusLine {
    /// Whether the line is on screen now.
    shown: Mutex<bool>,
}

impl StatusLine {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.shown.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draw `text` in place of the current status, cut to the terminal's width (a wrapped
    /// line could not be erased).
    pub fn show(&self, text: &str) {
        let text: String = match terminal_size::terminal_size_of(std::io::stderr()) {
            Some((terminal_size::Width(w), _)) if w > 1 => text.chars().take(usize::from(w) - 1).collect(),
            _ => text.to_string(),
        };
        let mut shown = self.lock();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{ERASE}{text}");
        let _ = err.flush();
        *shown = true;
    }

    /// Erase the status, if shown.
    pub fn clear(&self) {
        let mut shown = self.lock();
        erase(&mut shown);
    }
}

fn erase(shown: &mut MutexGuard<'_, bool>) {
    if **shown {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{ERASE}");
        let _ = err.flush();
        **shown = false;
    }
}

/// Standard output for results, written whole at each flush with the status line erased
/// first, so the two never interleave. The sinks flush after every batch.
pub struct StatusWriter {
    status: Arc<StatusLine>,
    buffer: Vec<u8>,
}

impl StatusWriter {
    /// Results to stdout, kept clear of `status`.
    pub fn new(status: Arc<StatusLine>) -> Self {
        Self { status, buffer: Vec::new() }
    }
}

impl Write for StatusWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut shown = self.status.lock();
        erase(&mut shown);
        let mut out = std::io::stdout().lock();
        let written = out.write_all(&self.buffer).and_then(|_| out.flush());
        self.buffer.clear();
        written
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A thread redrawing the status of one running query a few times a second, while stderr is a
/// terminal. Stopping it (or dropping it) erases the line.
pub struct Progress {
    status: Arc<StatusLine>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// How often the line is redrawn.
    const TICK: Duration = Duration::from_millis(250);

    /// Start drawing `metrics` on `status`, unless `enabled` is false or stderr is not a
    /// terminal (then this does nothing).
    pub fn start(status: Arc<StatusLine>, metrics: Arc<Metrics>, enabled: bool) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let thread = (enabled && std::io::stderr().is_terminal()).then(|| {
            let (status, done) = (Arc::clone(&status), Arc::clone(&done));
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut last = (Instant::now(), 0u64);
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Self::TICK);
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let rows = Metrics::get(&metrics.rows_in);
                    let now = Instant::now();
                    let rate = (rows - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
                    last = (now, rows);
                    status.show(&status_text(&metrics, rate, started.elapsed()));
                }
            })
        });
        Self { status, done, thread }
    }

    /// Stop drawing and erase the line.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            self.status.clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The status: rows read and the current rate, the watermark and how far it trails the wall
/// clock, late rows, and the time the query has run.
pub fn status_text(metrics: &Metrics, rows_per_second: f64, running: Duration) -> String {
    let watermark = metrics.watermark.load(Ordering::Relaxed);
    let mut text = format!(
        "{} rows in · {} rows/s · watermark {}",
        Metrics::get(&metrics.rows_in),
        crate::text::human_rate(rows_per_second),
        crate::text::watermark_text(watermark)
    );
    if watermark != NO_WATERMARK && watermark != i64::MAX {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        text.push_str(&format!(" (lag {})", lag_text(now.saturating_sub(watermark))));
    }
    text.push_str(&format!(" · {} late · {:.1} s", Metrics::get(&metrics.late_rows), running.as_secs_f64()));
    text
}

/// A lag for people: `1.2 s`, `3 min`, `2.0 days`.
fn lag_text(nanos: i64) -> String {
    let s = nanos as f64 / 1e9;
    if s.abs() < 120.0 {
        format!("{s:.1} s")
    } else if s.abs() < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s.abs() < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_rows_rate_watermark_lag_and_late_rows() {
        let m = Metrics::default();
        Metrics::add(&m.rows_in, 1234);
        Metrics::add(&m.late_rows, 3);
        let before = status_text(&m, 5000.0, Duration::from_millis(1500));
        assert_eq!(before, "1234 rows in · 5.0k rows/s · watermark - · 3 late · 1.5 s");
        m.watermark.store(1_704_067_210_000_000_000, Ordering::Relaxed);
        let after = status_text(&m, 0.0, Duration::ZERO);
        assert!(after.contains("watermark 2024-01-01 00:00:10.000 (lag "), "{after}");
        assert!(after.contains("days)"), "{after}");
    }

    #[test]
    fn lags_in_readable_units() {
        assert_eq!(lag_text(1_500_000_000), "1.5 s");
        assert_eq!(lag_text(600_000_000_000), "10 min");
        assert_eq!(lag_text(3 * 3_600_000_000_000), "3.0 h");
    }
}
