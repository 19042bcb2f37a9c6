//! The crash test: `weir run` with checkpoints, killed with SIGKILL at random moments and
//! restarted each time until it finishes. What its output table committed must equal, as a
//! multiset of rows, what an uninterrupted run writes (exactly-once); with the at-least-once
//! setting no row may be missing (duplicates allowed).
//!
//! The input is the built-in Nexmark generator paced to the wall clock (so a run lasts long
//! enough to be killed several times), with a fixed seed and start time (so every run
//! generates the same events). Kill times come from a seeded generator; the seed is printed,
//! and `WEIR_CRASH_SEED=<seed>` repeats a run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EVENTS: u64 = 30_000;
const RATE: u64 = 5_000;
/// Fewer kills than this and the test fails: the run must be killed at least 5 times.
const MIN_KILLS: usize = 5;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// The script: `tables` over the paced generator (or at full speed for the reference run),
/// the output table `out` (`columns`, then what follows them: `PARTITIONED BY`, more options),
/// and `insert`.
fn script(paced: bool, out: &Path, columns: &str, insert: &str) -> String {
    let (columns, after, options) = match columns.split_once(" | ") {
        Some((c, rest)) => match rest.split_once(" | ") {
            Some((a, o)) => (c, a, format!(", {o}")),
            None => (c, rest, String::new()),
        },
        None => (columns, "", String::new()),
    };
    let speed = if paced { "false" } else { "true" };
    format!(
        "SET nexmark.events = '{EVENTS}'; SET nexmark.rate = '{RATE}'; SET nexmark.seed = '7';
         SET nexmark.base_time = '2024-01-01 00:00:00'; SET nexmark.max_emit_speed = '{speed}';
         SET nexmark.out_of_order_group = '50';
         CREATE TABLE out ({columns}) {after} WITH (connector = 'file', path = '{}', format = 'csv'{options});
         {insert}",
        out.display()
    )
}

/// The data lines of a CSV file, or of every committed part file of a directory and its
/// partition directories (headers dropped; a partition's lines led by its directory), as a
/// multiset.
fn rows(path: &Path) -> BTreeMap<String, usize> {
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    if !path.is_dir() {
        files.push(path.to_path_buf());
        dirs.clear();
    }
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("output directory") {
            let p = e.expect("entry").path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if p.is_dir() && name.contains('=') {
                dirs.push(p);
            } else if name.starts_with("part-") {
                files.push(p);
            }
        }
    }
    let mut out = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable output");
        let partition =
            f.parent().and_then(|d| d.strip_prefix(path).ok()).map(|d| d.display().to_string()).unwrap_or_default();
        for line in text.lines().skip(1) {
            *out.entry(format!("{partition}|{line}")).or_insert(0) += 1;
        }
    }
    out
}

/// A small xorshift generator: kill times that a seed repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Run `sql` with checkpoints in `dir`, killing it at random moments until it finishes on
/// its own; returns how many times it was killed.
fn run_with_kills(dir: &Path, sql: &Path, seed: u64, settings: &[&str]) -> usize {
    run_with_kills_at(dir, sql, seed, settings, &[])
}

/// [`run_with_kills`], restart `i` at parallelism `parallelism[i % len]` (none: as set).
fn run_with_kills_at(dir: &Path, sql: &Path, seed: u64, settings: &[&str], parallelism: &[usize]) -> usize {
    let mut rng = Rng(seed | 1);
    let checkpoints = dir.join("checkpoints");
    let mut kills = 0;
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(240), "the job did not finish (seed {seed})");
        let mut cmd = weir();
        cmd.arg("run").arg(sql).arg("--quiet").arg("--checkpoint-dir").arg(&checkpoints);
        cmd.args(["--checkpoint-interval", "150ms"]);
        for s in settings {
            cmd.args(["--set", s]);
        }
        if let Some(n) = parallelism.get(kills % parallelism.len().max(1)) {
            cmd.args(["--parallelism", &n.to_string()]);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("weir starts");
        // kill while there is still work left: the first kills come early, then runs are left
        // to finish
        let wait = Duration::from_millis(250 + rng.next() % 900);
        let deadline = Instant::now() + if kills < MIN_KILLS + 3 { wait } else { Duration::from_secs(120) };
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
                eprintln!("finished after {kills} kills in {:.1} s", started.elapsed().as_secs_f64());
                if kills >= MIN_KILLS {
                    return kills;
                }
                panic!("the job finished after only {kills} kills (seed {seed}); make it longer");
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaped");
                kills += 1;
            }
        }
    }
}

/// What `dir/out` committed equals the uninterrupted run's rows `expected`.
fn assert_committed(dir: &Path, expected: &BTreeMap<String, usize>, seed: u64, kills: usize) {
    let got = rows(&dir.join("out"));
    assert!(
        got == *expected,
        "seed {seed}, {kills} kills: the committed rows differ from an uninterrupted run ({} vs {} distinct rows)",
        got.len(),
        expected.len()
    );
}

fn seed() -> u64 {
    match std::env::var("WEIR_CRASH_SEED") {
        Ok(s) => s.parse().expect("WEIR_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Write the paced script and the reference script, run the reference, and return the
/// temporary directory, the paced script and the reference rows.
fn prepare(columns: &str, insert: &str) -> (tempfile::TempDir, std::path::PathBuf, BTreeMap<String, usize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference_out = dir.path().join("reference.csv");
    let reference = dir.path().join("reference.sql");
    std::fs::write(&reference, script(false, &reference_out, columns, insert)).expect("write");
    let o = weir().arg("run").arg(&reference).arg("--quiet").output().expect("weir runs");
    assert!(o.status.success(), "reference run failed: {}", String::from_utf8_lossy(&o.stderr));
    let expected = rows(&reference_out);
    assert!(expected.len() > 100, "the reference run wrote {} rows", expected.len());
    let paced = dir.path().join("q.sql");
    std::fs::write(&paced, script(true, &dir.path().join("out"), columns, insert)).expect("write");
    (dir, paced, expected)
}

#[test]
fn killed_with_sigkill_and_restarted_the_committed_output_equals_an_uninterrupted_run() {
    // windows over the union of bids and auctions (two inputs, aligned at each checkpoint),
    // one row per auction and window
    let columns = "auction BIGINT, w TIMESTAMP(3), n BIGINT, top BIGINT";
    let insert = "INSERT INTO out
        SELECT auction, TUMBLE_START(date_time, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, MAX(price) AS top
        FROM (SELECT auction, price, date_time FROM bid
              UNION ALL SELECT id AS auction, initial_bid AS price, date_time FROM auction)
        GROUP BY TUMBLE(date_time, INTERVAL '1' SECOND), auction;";
    let (dir, sql, expected) = prepare(columns, insert);
    let seed = seed();
    eprintln!("crash test (exactly once): seed {seed}");
    let kills = run_with_kills(dir.path(), &sql, seed, &[]);
    assert_committed(dir.path(), &expected, seed, kills);
}

#[test]
fn at_least_once_loses_no_row_across_kills() {
    let columns = "id BIGINT, price BIGINT, date_time TIMESTAMP(3)";
    let insert = "INSERT INTO out
        SELECT auction AS id, price, date_time FROM bid WHERE MOD(auction, 7) = 0
        UNION ALL SELECT id, reserve AS price, date_time FROM auction;";
    let (dir, sql, expected) = prepare(columns, insert);
    let seed = seed();
    eprintln!("crash test (at least once): seed {seed}");
    let kills = run_with_kills(dir.path(), &sql, seed, &["checkpoint.guarantee=at_least_once"]);
    let got = rows(&dir.path().join("out"));
    let missing: Vec<&String> =
        expected.iter().filter(|(row, n)| got.get(*row).copied().unwrap_or(0) < **n).map(|(r, _)| r).collect();
    assert!(missing.is_empty(), "seed {seed}, {kills} kills: {} rows lost, e.g. {:?}", missing.len(), missing.first());
}

#[test]
fn killed_with_sigkill_at_parallelism_2_the_committed_output_equals_an_uninterrupted_run() {
    // bids read in two splits, windows hashed by auction over two instances: barriers from
    // both splits aligned at both instances and at the sink
    let columns = "auction BIGINT, w TIMESTAMP(3), n BIGINT, top BIGINT";
    let insert = "INSERT INTO out
        SELECT auction, TUMBLE_START(date_time, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, MAX(price) AS top
        FROM bid GROUP BY TUMBLE(date_time, INTERVAL '1' SECOND), auction;";
    let (dir, sql, expected) = prepare(columns, insert);
    let seed = seed();
    eprintln!("crash test (exactly once, parallelism 2): seed {seed}");
    let kills = run_with_kills(dir.path(), &sql, seed, &["parallelism=2"]);
    assert_committed(dir.path(), &expected, seed, kills);
    // it ran in parallel: the checkpoints say so
    let newest = std::fs::read_dir(dir.path().join("checkpoints"))
        .expect("checkpoints")
        .filter_map(|e| e.ok().map(|e| e.path().join("_manifest.json")))
        .filter(|p| p.exists())
        .max()
        .expect("a checkpoint");
    let manifest = std::fs::read_to_string(newest).expect("manifest");
    assert!(manifest.contains("\"parallelism\": 2") || manifest.contains("\"parallelism\":2"), "{manifest}");
}

#[test]
fn a_partitioned_table_of_rolled_files_killed_and_restarted_is_exactly_once() {
    // bids under s=<second>/ directories, files rolled every 2 KiB: each checkpoint publishes
    // several files in several partitions
    let columns = "auction BIGINT, price BIGINT, date_time TIMESTAMP(3), s VARCHAR | PARTITIONED BY (s) \
                   | 'sink.rolling-policy.file-size' = '2kb'";
    let insert = "INSERT INTO out SELECT auction, price, date_time, DATE_FORMAT(date_time, 'HH:mm:ss') FROM bid;";
    let (dir, sql, expected) = prepare(columns, insert);
    assert!(
        expected.keys().any(|r| r.starts_with("s=00%3A00%3A01|")),
        "partition directories: {:?}",
        expected.keys().next()
    );
    let seed = seed();
    eprintln!("crash test (partitioned, rolled files): seed {seed}");
    let kills = run_with_kills(dir.path(), &sql, seed, &[]);
    assert_committed(dir.path(), &expected, seed, kills);
}

#[test]
fn killed_with_sigkill_and_restarted_at_another_parallelism_each_time_the_output_is_exactly_once() {
    // keys move between 1, 2 and 3 instances at each restart (the table stays in its splits)
    let columns = "auction BIGINT, w TIMESTAMP(3), n BIGINT, top BIGINT";
    let insert = "INSERT INTO out
        SELECT auction, TUMBLE_START(date_time, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, MAX(price) AS top
        FROM bid GROUP BY TUMBLE(date_time, INTERVAL '1' SECOND), auction;";
    rescaled_at_each_restart("rescaled at each restart", columns, insert);
}

#[test]
fn a_broadcast_join_killed_and_restarted_at_another_parallelism_is_exactly_once() {
    // every bid, with the end of its 1 s window when it is the window's highest: the window
    // (no keys, one instance) broadcast to the join's instances, each joining the bids of its
    // own split; restarted at 2, 3 and 1, the join keeps the table's two splits
    let columns = "auction BIGINT, price BIGINT, date_time TIMESTAMP(3), w TIMESTAMP(3)";
    let insert = "INSERT INTO out
        SELECT x.auction, x.price, x.date_time, hi.w FROM bid x LEFT JOIN
          (SELECT MAX(price) AS maxprice, window_end AS w
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY window_start, window_end) hi
        ON x.price = hi.maxprice AND x.date_time BETWEEN hi.w - INTERVAL '1' SECOND AND hi.w;";
    let (_dir, sql) = rescaled_at_each_restart("broadcast join, rescaled at each restart", columns, insert);
    let explained = weir().args(["explain", "--parallelism", "2"]).arg(&sql).output().expect("weir explains");
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.contains("Exchange: broadcast"), "{explained}");
}

/// `insert` killed and restarted at parallelism 2, 3 and 1 in turn: what it committed equals an
/// uninterrupted run. Returns the directory and the paced script.
fn rescaled_at_each_restart(label: &str, columns: &str, insert: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, sql, expected) = prepare(columns, insert);
    let seed = seed();
    eprintln!("crash test ({label}): seed {seed}");
    let kills = run_with_kills_at(dir.path(), &sql, seed, &[], &[2, 3, 1]);
    assert_committed(dir.path(), &expected, seed, kills);
    (dir, sql)
}
