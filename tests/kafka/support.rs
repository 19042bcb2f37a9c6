//! What the Kafka tests share: running `weir`, declaring tables over the shared broker,
//! reading changelogs back, and the paced writer and kill loop of the crash test.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::broker::Broker;

pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A topic name no other test uses.
pub fn topic(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `weir run -e sql --format csv --quiet`.
pub fn run(sql: &str) -> Output {
    weir().args(["run", "--format", "csv", "--quiet", "-e", sql]).output().expect("weir runs")
}

pub fn ok(sql: &str) -> String {
    let o = run(sql);
    assert!(o.status.success(), "weir failed: {}\n{sql}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8")
}

pub fn lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    v.sort();
    v
}

/// A source table over `topic`, bounded at the offsets of when the query starts.
pub fn source(name: &str, columns: &str, topic: &str, extra: &str) -> String {
    let b = Broker::shared();
    format!(
        "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{topic}', \
         'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset', \
         'scan.bounded.mode' = 'latest-offset', 'format' = 'json'{extra});",
        b.servers
    )
}

/// The rows left after applying a changelog printed as `op,col,…` lines.
pub fn consolidate(lines: &[String]) -> Vec<String> {
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    for line in lines {
        let (op, row) = line.split_once(',').unwrap();
        *rows.entry(row.to_string()).or_insert(0) += if op.starts_with('-') { -1 } else { 1 };
    }
    assert!(rows.values().all(|n| *n >= 0), "a row retracted more often than added: {lines:?}");
    rows.into_iter().filter(|(_, n)| *n > 0).map(|(r, _)| r).collect()
}

/// `sql` (an unbounded query) started, its CSV on a pipe.
fn start(sql: &str) -> std::process::Child {
    weir()
        .args(["run", "--format", "csv", "--quiet", "-e", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts")
}

/// Run `sql` (an unbounded query) for `seconds`, then kill it; its stdout.
pub fn run_for(sql: &str, seconds: u64) -> String {
    let mut child = start(sql);
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = child.kill();
    let out = child.wait_with_output().expect("waits");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `sql` (an unbounded query) until its stdout so far satisfies `done`, or for at most
/// `seconds` (a busy machine may take long), then kill it; its stdout.
pub fn run_until(sql: &str, seconds: u64, done: impl Fn(&str) -> bool) -> String {
    use std::io::Read;
    let mut child = start(sql);
    let mut stdout = child.stdout.take().expect("piped");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline && !done(&seen.lock().unwrap()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    reader.join().expect("reads");
    let out = seen.lock().unwrap().clone();
    out
}

/// Records `i = 0..n` of a paced writer: key `i % 20`, value `i`, event time `i` ms after
/// 2024-01-01 with a little disorder, alternating between two partitions.
pub fn event(i: u64) -> (Option<i32>, String) {
    let ts = i * 3 + (i * 7919) % 40;
    let (s, ms) = (ts / 1000, ts % 1000);
    let (m, s) = (s / 60, s % 60);
    (Some((i % 2) as i32), format!(r#"{{"k": {}, "v": {i}, "ts": "2024-01-01 00:{m:02}:{s:02}.{ms:03}"}}"#, i % 20))
}

pub fn window_script(b: &Broker, input: &str, output: &str, per_partition: u64, delivery: &str) -> String {
    format!(
        "CREATE TABLE input (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH ('connector' = 'kafka', 'topic' = '{input}', 'properties.bootstrap.servers' = '{s}',
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets',
                 'scan.bounded.specific-offsets' = 'partition:0,offset:{per_partition};partition:1,offset:{per_partition}');
         CREATE TABLE output (k BIGINT, w TIMESTAMP(3), n BIGINT, total BIGINT)
           WITH ('connector' = 'kafka', 'topic' = '{output}', 'properties.bootstrap.servers' = '{s}',
                 {delivery});
         INSERT INTO output SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total
           FROM input GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;",
        s = b.servers
    )
}

pub fn multiset(values: Vec<String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

/// Write `events` records to `input` at `per_second`, on a thread of its own.
pub fn paced_writer(input: String, events: u64, per_second: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let b = Broker::shared();
        let started = Instant::now();
        let chunk = per_second / 20;
        let mut i = 0;
        while i < events {
            let records: Vec<(Option<i32>, String)> = (i..(i + chunk).min(events)).map(event).collect();
            let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
            b.produce(&input, &refs);
            i += chunk;
            let due = started + Duration::from_secs_f64(i as f64 / per_second as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// A small xorshift generator: kill times that a seed repeats.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Run `sql` with checkpoints in `dir`, killing it at random moments until it finishes on its
/// own after at least `min_kills` kills; returns how many times it was killed.
pub fn run_with_kills(dir: &Path, sql: &Path, seed: u64, min_kills: usize) -> usize {
    let mut rng = Rng(seed | 1);
    let checkpoints = dir.join("checkpoints");
    let mut kills = 0;
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "the job did not finish (seed {seed})");
        let mut child = weir()
            .arg("run")
            .arg(sql)
            .arg("--quiet")
            .arg("--checkpoint-dir")
            .arg(&checkpoints)
            .args(["--checkpoint-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let wait = Duration::from_millis(400 + rng.next() % 900);
        let deadline = Instant::now() + if kills < min_kills { wait } else { Duration::from_secs(120) };
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match status {
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err).ok();
                }
                assert!(status.success(), "weir failed after {kills} kills (seed {seed}): {err}");
                assert!(kills >= min_kills, "the job finished after only {kills} kills (seed {seed})");
                eprintln!("finished after {kills} kills in {:.1} s", started.elapsed().as_secs_f64());
                return kills;
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                kills += 1;
            }
        }
    }
}
