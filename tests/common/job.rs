//! A paced Nexmark job run with checkpoints through the `weir` binary, stopped, resumed and
//! compared with an uninterrupted run (the recovery and object-store tests), and the
//! Prometheus endpoint of a running `weir` scraped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bids per auction and second over 20,000 paced Nexmark events (2 s of wall-clock time), or
/// at full speed for the reference.
pub fn script(paced: bool, out: &Path) -> String {
    format!(
        "SET nexmark.events = '20000'; SET nexmark.rate = '10000'; SET nexmark.seed = '3';
         SET nexmark.base_time = '2024-01-01 00:00:00'; SET nexmark.max_emit_speed = '{}';
         CREATE TABLE out (auction BIGINT, w TIMESTAMP(3), n BIGINT, top BIGINT)
           WITH (connector = 'file', path = '{}', format = 'csv');
         INSERT INTO out SELECT auction, TUMBLE_START(date_time, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, MAX(price) AS top
         FROM bid GROUP BY TUMBLE(date_time, INTERVAL '1' SECOND), auction;",
        !paced,
        out.display()
    )
}

/// The data lines of a CSV file or of a directory's committed part files, as a multiset.
pub fn rows(path: &Path) -> BTreeMap<String, usize> {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .expect("output directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = BTreeMap::new();
    for f in files {
        for line in std::fs::read_to_string(&f).expect("readable").lines().skip(1) {
            *out.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    out
}

pub struct Job {
    pub dir: tempfile::TempDir,
    pub sql: PathBuf,
    pub expected: BTreeMap<String, usize>,
    /// Where checkpoints go (`None`: `ck/` in the job's directory).
    pub location: Option<String>,
    /// Environment for `weir` (an object store's settings).
    pub envs: Vec<(String, String)>,
}

impl Job {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = dir.path().join("reference.sql");
        std::fs::write(&reference, script(false, &dir.path().join("reference.csv"))).expect("write");
        let o = weir().arg("run").arg(&reference).arg("--quiet").output().expect("runs");
        assert!(o.status.success(), "{}", stderr(&o));
        let expected = rows(&dir.path().join("reference.csv"));
        assert!(expected.len() > 100);
        let sql = dir.path().join("q.sql");
        std::fs::write(&sql, script(true, &dir.path().join("out"))).expect("write");
        Self { dir, sql, expected, location: None, envs: Vec::new() }
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.dir.path().join("ck")
    }

    pub fn command(&self) -> Command {
        let mut c = weir();
        c.arg("run").arg(&self.sql).arg("--checkpoint-dir");
        match &self.location {
            Some(url) => c.arg(url),
            None => c.arg(self.checkpoints()),
        };
        c.args(["--checkpoint-interval", "100ms"]);
        c.envs(self.envs.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Start, let it run `after`, then SIGTERM: it takes a last checkpoint and exits 0.
    pub fn run_and_stop(&self, after: Duration) -> String {
        self.run_and_stop_with(&[], after)
    }

    /// [`Job::run_and_stop`] with more arguments.
    pub fn run_and_stop_with(&self, extra: &[&str], after: Duration) -> String {
        let child = self.command().args(extra).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starts");
        std::thread::sleep(after);
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let o = child.wait_with_output().expect("exits");
        let err = stderr(&o);
        assert!(o.status.success(), "a stopped run exits 0: {err}");
        err
    }

    pub fn run(&self, extra: &[&str]) -> Output {
        self.command().args(extra).output().expect("runs")
    }

    /// Checkpoints present, oldest first.
    pub fn checkpoint_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.checkpoints())
            .expect("checkpoint directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("chk-")))
            .collect();
        v.sort();
        v
    }
}

/// The Prometheus text of the metrics endpoint on `port` (`None` until it answers).
pub fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the sample `line_start` (a metric name with its labels) in a scrape.
pub fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}
