//! Inputs that can block: standard input, named pipes (FIFOs), devices, and files followed as
//! they grow (`'source.monitor-interval'`). Such an input is read on a thread of its own (a
//! [`Pump`]), which may wait in a read as long as the writer is quiet; the source takes the
//! records it has read with a deadline, so a batch is cut when it is full *or* when
//! [`LINGER`] has passed, rows flow as they arrive, and a stop is noticed in time even while
//! nothing arrives. Regular files are read on the source's own thread, in full batches.
//!
//! ```text
//!   FIFO / stdin ──read──▶ [pump thread] ──records (bounded)──▶ source.next_batch()
//!                          may block for ever                    returns within LINGER
//! ```
//!
//! Every input is also read through a [`LineGuard`]: a line longer than [`MAX_LINE`] bytes
//! (`/dev/zero` as a CSV file) is an error naming where it starts, not a process that grows
//! until it runs out of memory.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_runtime::{Result, RuntimeError};

/// The longest a live source waits before returning the rows it has (maybe none).
pub const LINGER: Duration = Duration::from_millis(100);

/// The longest line an input may have: 16 MiB.
pub const MAX_LINE: usize = 16 << 20;

/// Reads through `inner`, failing once a line runs past `limit` bytes without a line end, and
/// keeping a [`Tail`] of what it read.
pub struct LineGuard<R> {
    inner: R,
    since_line_end: usize,
    limit: usize,
    tail: Arc<Tail>,
}

impl<R> LineGuard<R> {
    /// Guard `inner` with the limit [`MAX_LINE`].
    pub fn new(inner: R) -> Self {
        Self { inner, since_line_end: 0, limit: MAX_LINE, tail: Arc::default() }
    }

    /// What it has read, shared with whoever parses it.
    pub fn tail(&self) -> Arc<Tail> {
        Arc::clone(&self.tail)
    }
}

/// What a [`LineGuard`] has read: how many bytes, the last one, and whether the input ended.
/// A parser that reads ahead cannot tell otherwise whether its last record had a line end.
#[derive(Debug, Default)]
pub struct Tail {
    bytes: AtomicU64,
    last: AtomicU8,
    ended: AtomicBool,
}

impl Tail {
    /// Whether a record ending after `consumed` bytes ends the input without a line end.
    pub fn unterminated_at(&self, consumed: u64) -> bool {
        self.ended.load(Ordering::Relaxed)
            && self.bytes.load(Ordering::Relaxed) == consumed
            && self.last.load(Ordering::Relaxed) != b'\n'
    }
}

impl<R: Read> Read for LineGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf[..n].last() {
            Some(&b) => {
                self.tail.bytes.fetch_add(n as u64, Ordering::Relaxed);
                self.tail.last.store(b, Ordering::Relaxed);
            }
            None if !buf.is_empty() => self.tail.ended.store(true, Ordering::Relaxed),
            None => {}
        }
        match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(i) => self.since_line_end = n - i - 1,
            None => self.since_line_end += n,
        }
        if self.since_line_end > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {} MiB without a line end (is this a text file?)", self.limit >> 20),
            ));
        }
        Ok(n)
    }
}

/// A regular file read on as it grows: at its end, it waits `interval` and reads again,
/// until `stop` is set (then its end is the end of the input).
pub struct Follow {
    file: std::fs::File,
    interval: Duration,
    stop: Arc<AtomicBool>,
}

impl Follow {
    /// Follow `file` from where it is, looking for more every `interval`.
    pub fn new(file: std::fs::File, interval: Duration, stop: Arc<AtomicBool>) -> Self {
        Self { file, interval, stop }
    }
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.file.read(buf)?;
            if n > 0 || buf.is_empty() || self.stop.load(Ordering::Relaxed) {
                return Ok(n);
            }
            // checked often enough to stop in time, however long the interval
            let mut waited = Duration::ZERO;
            while waited < self.interval && !self.stop.load(Ordering::Relaxed) {
                let step = (self.interval - waited).min(LINGER);
                std::thread::sleep(step);
                waited += step;
            }
        }
    }
}

/// `path` opened at `byte` and followed as it grows, looking for more every `interval`.
pub fn follow(
    path: &std::path::Path,
    byte: u64,
    interval: Duration,
    stop: &Arc<AtomicBool>,
) -> std::result::Result<Box<dyn Read + Send>, String> {
    use std::io::Seek;
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    if len < byte {
        return Err(format!(
            "{}: the checkpoint read it up to byte {byte}, but it now has {len} bytes (was it replaced?)",
            path.display()
        ));
    }
    file.seek(std::io::SeekFrom::Start(byte)).map_err(fail)?;
    Ok(Box::new(Follow::new(file, interval, Arc::clone(stop))))
}

/// How a file input is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A regular file, read to its end on the source's thread.
    File,
    /// Reads can block (stdin, a FIFO, a device): read on a [`Pump`], never again from a
    /// saved position.
    Blocking,
    /// A regular file followed as it grows, every this often (`'source.monitor-interval'`).
    Follow(Duration),
    /// A directory: its files read in turn, and with an interval, new ones as they appear
    /// ([`DirFiles`]); read on a [`Pump`], not from a saved position.
    Directory(Option<Duration>),
}

impl Mode {
    /// How to read `path` (standard input when `None`), given the table's monitor interval.
    pub fn of(path: Option<&PathBuf>, monitor: Option<Duration>) -> Self {
        let Some(path) = path else { return Self::Blocking };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => monitor.map_or(Self::File, Self::Follow),
            Ok(m) if m.is_dir() => Self::Directory(monitor),
            // a FIFO, a character device, a socket
            Ok(_) => Self::Blocking,
            Err(_) => Self::File,
        }
    }

    /// Whether reads happen on a [`Pump`].
    pub fn pumped(&self) -> bool {
        !matches!(self, Self::File)
    }

    /// Whether the input can be read again from a saved position (for checkpoints).
    pub fn seekable(&self) -> bool {
        matches!(self, Self::File | Self::Follow(_))
    }
}

/// The files of a directory, read one after another: those there at the start in name order,
/// then (with a monitor interval, Flink's `'source.monitor-interval'`) each new one as it
/// appears, until `stop`. Names starting with `.` or `_` are left out (files being written,
/// as in Flink: write a file elsewhere and move it in).
pub struct DirFiles {
    dir: PathBuf,
    monitor: Option<Duration>,
    stop: Arc<AtomicBool>,
    seen: std::collections::HashSet<std::ffi::OsString>,
    queue: std::collections::VecDeque<PathBuf>,
    listed: bool,
}

impl DirFiles {
    /// The files of `dir`, looked for again every `monitor` if set.
    pub fn new(dir: PathBuf, monitor: Option<Duration>, stop: Arc<AtomicBool>) -> Self {
        Self { dir, monitor, stop, seen: Default::default(), queue: Default::default(), listed: false }
    }

    /// These files of a directory (a share from [`shares`]), read in turn.
    pub fn only(files: &[PathBuf]) -> Self {
        Self {
            dir: PathBuf::new(),
            monitor: None,
            stop: Arc::default(),
            seen: Default::default(),
            queue: files.iter().cloned().collect(),
            listed: true,
        }
    }

    /// The files of `dir` now (no monitor: their names in order), with their sizes.
    pub fn listing(dir: &std::path::Path) -> std::result::Result<Vec<(PathBuf, u64)>, String> {
        let mut files = Self::new(dir.to_path_buf(), None, Arc::default());
        files.list()?;
        let size = |p: PathBuf| match std::fs::metadata(&p) {
            Ok(m) => Ok((p, m.len())),
            Err(e) => Err(format!("{}: {e}", p.display())),
        };
        files.queue.into_iter().map(size).collect()
    }

    fn list(&mut self) -> std::result::Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.dir.display());
        let mut new = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            if text.starts_with('.') || text.starts_with('_') || !entry.path().is_file() {
                continue;
            }
            if self.seen.insert(name) {
                new.push(entry.path());
            }
        }
        new.sort();
        self.queue.extend(new);
        self.listed = true;
        Ok(())
    }

    /// The next file to read; `None` when there is none left (without a monitor interval)
    /// or on `stop`.
    pub fn next_file(&mut self) -> std::result::Result<Option<PathBuf>, String> {
        loop {
            if let Some(path) = self.queue.pop_front() {
                return Ok(Some(path));
            }
            if self.listed {
                let Some(interval) = self.monitor else { return Ok(None) };
                let mut waited = Duration::ZERO;
                while waited < interval {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    let step = (interval - waited).min(LINGER);
                    std::thread::sleep(step);
                    waited += step;
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            self.list()?;
        }
    }
}

/// What a pump's reader produced.
pub enum Pumped<T> {
    /// The next item.
    Item(T),
    /// Nothing arrived before the deadline.
    Wait,
    /// The input ended.
    End,
}

/// A thread reading items with `read` (which may block) into a bounded channel; the reader
/// stops when the pump is dropped (at its next item, or at once when `stop` is what it waits
/// on, as [`Follow`] does).
pub struct Pump<T> {
    rx: Receiver<std::result::Result<Option<T>, String>>,
    ended: bool,
    stop: Arc<AtomicBool>,
}

impl<T: Send + 'static> Pump<T> {
    /// Start reading with `read` (`Ok(None)` at the end, `Err` with a message) on a thread
    /// named `name`; at most `capacity` items wait to be taken.
    pub fn start<F>(name: &str, capacity: usize, stop: Arc<AtomicBool>, mut read: F) -> Result<Self>
    where
        F: FnMut() -> std::result::Result<Option<T>, String> + Send + 'static,
    {
        let (tx, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new()
            .name(format!("weir-read-{name}"))
            .spawn(move || loop {
                let item = read();
                let last = !matches!(item, Ok(Some(_)));
                if tx.send(item).is_err() || last {
                    return;
                }
            })
            .map_err(|e| RuntimeError::Source(format!("{name}: cannot start a reader thread: {e}")))?;
        Ok(Self { rx, ended: false, stop })
    }

    /// The next item, or [`Pumped::Wait`] if none came by `deadline`.
    pub fn next_until(&mut self, deadline: Instant) -> std::result::Result<Pumped<T>, String> {
        if self.ended {
            return Ok(Pumped::End);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let item = match self.rx.try_recv() {
            Ok(item) => item,
            Err(_) if wait.is_zero() => return Ok(Pumped::Wait),
            Err(_) => match self.rx.recv_timeout(wait) {
                Ok(item) => item,
                Err(RecvTimeoutError::Timeout) => return Ok(Pumped::Wait),
                // the reader thread ended without a last word: it failed
                Err(RecvTimeoutError::Disconnected) => Err("the reader thread stopped unexpectedly".to_string()),
            },
        };
        match item {
            Ok(Some(item)) => Ok(Pumped::Item(item)),
            Ok(None) => {
                self.ended = true;
                Ok(Pumped::End)
            }
            Err(e) => {
                self.ended = true;
                Err(e)
            }
        }
    }
}

impl<T> Drop for Pump<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `files` (in name order, with their sizes) shared out among `n` readers: each file, in turn,
/// to the reader with the fewest bytes so far (round robin when the files are of one size), so
/// the readers move through the files' names (often their times) side by side. `None` when
/// there are fewer files than readers.
pub fn shares(files: &[(PathBuf, u64)], n: usize) -> Option<Vec<Vec<PathBuf>>> {
    if n < 2 || files.len() < n {
        return None;
    }
    let mut shares: Vec<(u64, Vec<PathBuf>)> = vec![(0, Vec::new()); n];
    for (path, len) in files {
        let (bytes, share) = shares.iter_mut().min_by_key(|(bytes, share)| (*bytes, share.len()))?;
        *bytes += len;
        share.push(path.clone());
    }
    Some(shares.into_iter().map(|(_, share)| share).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_without_an_end_is_refused_past_the_limit() {
        let mut guard = LineGuard { limit: 1000, ..LineGuard::new(std::io::repeat(b'x')) };
        let mut buf = [0u8; 300];
        let mut read = 0;
        let err = loop {
            match guard.read(&mut buf) {
                Ok(n) => read += n,
                Err(e) => break e,
            }
        };
        assert!(read <= 1000, "{read}");
        assert!(err.to_string().contains("without a line end"), "{err}");
        // lines ending in time pass, however much is read in all
        let text = "abc\n".repeat(10_000);
        let mut guard = LineGuard { limit: 10, ..LineGuard::new(text.as_bytes()) };
        let mut all = Vec::new();
        guard.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), text.len());
        assert!(!guard.tail().unterminated_at(text.len() as u64), "the input ends with a line end");
        let mut guard = LineGuard::new(&b"a\nb"[..]);
        guard.read_to_end(&mut all).unwrap();
        assert!(guard.tail().unterminated_at(3) && !guard.tail().unterminated_at(2));
    }

    #[test]
    fn a_pump_hands_over_items_as_they_come_and_waits_no_longer_than_asked() {
        let (tx, rx) = std::sync::mpsc::channel::<Option<u32>>();
        let stop = Arc::new(AtomicBool::new(false));
        let mut pump = Pump::start("test", 4, Arc::clone(&stop), move || Ok(rx.recv().ok().flatten())).unwrap();
        let started = Instant::now();
        assert!(matches!(pump.next_until(Instant::now() + Duration::from_millis(30)), Ok(Pumped::Wait)));
        assert!(started.elapsed() < Duration::from_secs(5));
        tx.send(Some(7)).unwrap();
        assert!(matches!(pump.next_until(Instant::now() + Duration::from_secs(5)), Ok(Pumped::Item(7))));
        tx.send(None).unwrap();
        assert!(matches!(pump.next_until(Instant::now() + Duration::from_secs(5)), Ok(Pumped::End)));
        assert!(matches!(pump.next_until(Instant::now()), Ok(Pumped::End)));
        drop(pump);
        assert!(stop.load(Ordering::Relaxed), "dropping the pump stops a follower");
    }

    #[test]
    fn a_directory_s_files_come_in_name_order_then_new_ones_as_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.csv", ".hidden", "_tmp"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let names = |files: &mut DirFiles, n: usize| -> Vec<String> {
            (0..n).map(|_| files.next_file().unwrap().unwrap().file_name().unwrap().to_string_lossy().into()).collect()
        };
        let mut bounded = DirFiles::new(dir.path().to_path_buf(), None, Arc::clone(&stop));
        assert_eq!(names(&mut bounded, 2), ["a.csv", "b.csv"]);
        assert_eq!(bounded.next_file().unwrap(), None, "without an interval, the files there at the start");
        let mut watched = DirFiles::new(dir.path().to_path_buf(), Some(Duration::from_millis(5)), Arc::clone(&stop));
        assert_eq!(names(&mut watched, 2), ["a.csv", "b.csv"]);
        std::fs::write(dir.path().join("0.csv"), "x").unwrap();
        assert_eq!(names(&mut watched, 1), ["0.csv"], "a new file, whatever its name");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(watched.next_file().unwrap(), None, "stopped");
    }

    #[test]
    fn a_followed_file_is_read_as_it_grows_until_stopped() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grow.txt");
        let mut w = std::fs::File::create(&path).unwrap();
        w.write_all(b"one\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = Follow::new(std::fs::File::open(&path).unwrap(), Duration::from_millis(5), Arc::clone(&stop));
        let mut buf = [0u8; 64];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one\n");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.write_all(b"two\n").unwrap();
        });
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two\n", "waits for the file to grow");
        writer.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(f.read(&mut buf).unwrap(), 0, "stopped: the end of the input");
    }

    #[test]
    fn files_are_shared_out_by_bytes_in_name_order() {
        let files = |sizes: &[u64]| -> Vec<(PathBuf, u64)> {
            sizes.iter().enumerate().map(|(i, len)| (PathBuf::from(format!("f{i}")), *len)).collect()
        };
        let names = |shares: Vec<Vec<PathBuf>>| -> Vec<Vec<String>> {
            shares.into_iter().map(|s| s.iter().map(|p| p.display().to_string()).collect()).collect()
        };
        // one size: round robin
        let even = shares(&files(&[5, 5, 5, 5, 5]), 2).unwrap();
        assert_eq!(names(even), vec![vec!["f0", "f2", "f4"], vec!["f1", "f3"]]);
        // a large first file: the next go to the second reader until it has as many bytes
        let uneven = shares(&files(&[30, 10, 10, 10, 5]), 2).unwrap();
        assert_eq!(names(uneven), vec![vec!["f0", "f4"], vec!["f1", "f2", "f3"]]);
        assert!(shares(&files(&[1, 1]), 3).is_none(), "fewer files than readers");
        assert!(shares(&files(&[1, 1]), 1).is_none());
    }
}
