//! Tumbling-window throughput: weir against DataFusion batch on the same CSV file.
//!
//! `cargo bench --bench tumble` generates bid files (auction, bidder, price, channel, url,
//! date_time; event time disordered by up to 200 ms) with 1M and 5M rows under
//! `target/bench-data/`, then for each runs
//!
//! - DataFusion batch: `date_bin` + `GROUP BY`, one partition (one core), then two partitions;
//! - weir in process (`Session`: the same loop as every front end, its source parsing on a task
//!   of its own) at parallelism 1, then at parallelism 2 (the file read in two byte ranges, the
//!   windows hashed by auction over two instances);
//! - the `weir run` binary (source and operators on two threads), whose summary also gives
//!   its peak memory, to show memory does not grow with the input;
//!
//! checks that all three agree, and prints events/second and the ratios. Then, per size, weir
//! in process runs a 10 s hopping window sliding every 1 s (each row in ten windows): its
//! throughput next to the tumbling query's shows the per-row cost does not grow with
//! size/slide; and a session window per auction (gap 1 s).
//! `WEIR_BENCH_ROWS=200000 cargo bench --bench tumble` runs one smaller size.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use weir_cli::{Session, StatementResult};

const WINDOW_QUERY: &str = "SELECT auction, TUMBLE_START(date_time, INTERVAL '10' SECOND) AS window_start,
       COUNT(*) AS bids, MAX(price) AS top, SUM(price) AS volume
FROM bids
GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction;";

const BATCH_QUERY: &str =
    "SELECT auction, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01 00:00:00') AS window_start,
       COUNT(*) AS bids, MAX(price) AS top, SUM(price) AS volume
FROM bids
GROUP BY 1, 2";

const HOP_QUERY: &str =
    "SELECT auction, HOP_START(date_time, INTERVAL '1' SECOND, INTERVAL '10' SECOND) AS window_start,
       COUNT(*) AS bids, MAX(price) AS top, SUM(price) AS volume
FROM bids
GROUP BY HOP(date_time, INTERVAL '1' SECOND, INTERVAL '10' SECOND), auction;";

const SESSION_QUERY: &str = "SELECT auction, SESSION_START(date_time, INTERVAL '1' SECOND) AS session_start,
       COUNT(*) AS bids, MAX(price) AS top, SUM(price) AS volume
FROM bids
GROUP BY SESSION(date_time, INTERVAL '1' SECOND), auction;";

fn ddl(path: &Path) -> String {
    format!(
        "CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
             date_time TIMESTAMP(3), WATERMARK FOR date_time AS date_time - INTERVAL '200' MILLISECOND)
         WITH (connector = 'file', path = '{}', format = 'csv');",
        path.display()
    )
}

/// splitmix64: a small deterministic generator, so every run benchmarks the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn format_ts(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// 10k bids per second of event time, 2000 auctions (a tenth of them hot), disorder ≤ 200 ms.
fn generate(path: &Path, rows: u64) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("generating {} ({rows} rows)…", path.display());
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    writeln!(out, "auction,bidder,price,channel,url,date_time")?;
    let mut rng = Rng(42);
    let base_ms: i64 = 1_704_067_200_000; // 2024-01-01
    let mut line = String::with_capacity(256);
    for i in 0..rows {
        let auction = if rng.below(10) < 6 { 1000 + rng.below(200) } else { 1000 + rng.below(2000) };
        let bidder = 2000 + rng.below(50_000);
        let price = 1 + (rng.below(1000) * rng.below(1000)) / 7;
        let channel = rng.below(10_000);
        let ts = base_ms + (i / 10) as i64 - rng.below(201) as i64;
        line.clear();
        let _ = write!(
            line,
            "{auction},{bidder},{price},channel-{channel},https://www.nexmark.com/{:x}/item.htm?query=1&channel_id={channel},{}",
            rng.next() & 0xffff_ffff,
            format_ts(ts)
        );
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(tmp, path)
}

/// (rows, sum of counts, sum of volumes): enough to see that two engines agree.
fn checksum(batches: &[RecordBatch]) -> (usize, i64, i64) {
    let mut rows = 0;
    let (mut bids, mut volume) = (0i64, 0i64);
    for b in batches {
        rows += b.num_rows();
        let n = b.column(2).as_primitive::<Int64Type>();
        let v = b.column(4).as_primitive::<Int64Type>();
        bids += n.iter().flatten().sum::<i64>();
        volume += v.iter().flatten().sum::<i64>();
        assert_eq!(n.null_count(), 0);
    }
    (rows, bids, volume)
}

fn datafusion_batch(path: &Path, partitions: usize) -> (f64, (usize, i64, i64)) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(partitions).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
        let schema = Schema::new(vec![
            Field::new("auction", DataType::Int64, true),
            Field::new("bidder", DataType::Int64, true),
            Field::new("price", DataType::Int64, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
            Field::new("date_time", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        let options = CsvReadOptions::new().schema(&schema).has_header(true);
        ctx.register_csv("bids", &path.display().to_string(), options).await.expect("register");
        let started = Instant::now();
        let batches = ctx.sql(BATCH_QUERY).await.expect("plan").collect().await.expect("run");
        (started.elapsed().as_secs_f64(), checksum(&batches))
    })
}

fn weir_in_process(path: &Path, query: &str, parallelism: usize) -> (f64, (usize, i64, i64), u64) {
    let mut session = Session::new();
    session.execute(&format!("SET parallelism = {parallelism}")).expect("setting");
    session.execute(&ddl(path)).expect("ddl");
    let started = Instant::now();
    let results = session.execute(query).expect("query runs");
    let elapsed = started.elapsed().as_secs_f64();
    let Some(StatementResult::Rows { batches, metrics, .. }) = results.last() else { panic!("rows expected") };
    (elapsed, checksum(batches), weir_runtime::Metrics::get(&metrics.late_rows))
}

/// Runs the binary; returns (seconds, peak MiB, output rows).
fn weir_binary(path: &Path) -> (f64, u64, usize) {
    let (secs, peak, rows, _) = weir_binary_with(path, &[]);
    (secs, peak, rows)
}

/// Runs the binary with `extra` arguments; returns (seconds, peak MiB, output rows, the
/// summary line).
fn weir_binary_with(path: &Path, extra: &[&str]) -> (f64, u64, usize, String) {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("q.sql");
    std::fs::write(&script, format!("{}\n{WINDOW_QUERY}", ddl(path))).expect("script");
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", &script.display().to_string(), "--format", "csv"])
        .args(extra.iter().map(|a| a.replace("{dir}", &dir.display().to_string())))
        .output()
        .expect("weir runs");
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir failed: {stderr}");
    let peak = stderr
        .split("peak memory ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rows = String::from_utf8_lossy(&out.stdout).lines().count().saturating_sub(1);
    let summary = stderr.lines().rfind(|l| l.starts_with("weir: ")).unwrap_or_default().to_string();
    (secs, peak, rows, summary)
}

/// What checkpoints cost `weir run`: the same query without them, and every 10 s, 1 s and
/// 100 ms (the best of three runs each, to keep the machine's noise out), all at parallelism 1.
fn checkpoint_cost(path: &Path, rows: u64, report: &mut String) {
    let _ = writeln!(report, "\nweir run with checkpoints (same query, {rows} rows; best of 3 runs)");
    let _ = writeln!(
        report,
        "{:>10} | {:>14} | {:>10} | {:>11} | last checkpoint",
        "interval", "events/s", "vs none", "checkpoints"
    );
    let mut base = 0.0;
    for interval in ["none", "10s", "1s", "100ms"] {
        // on one thread each time: a query that checkpoints runs on one thread for now
        let args: Vec<&str> = match interval {
            "none" => vec!["--parallelism", "1"],
            i => vec!["--parallelism", "1", "--checkpoint-dir", "{dir}/ck", "--checkpoint-interval", i],
        };
        let (mut best, mut summary) = (f64::MAX, String::new());
        for _ in 0..3 {
            let (secs, _, out_rows, s) = weir_binary_with(path, &args);
            assert!(out_rows > 0, "no output with checkpoints every {interval}");
            if secs < best {
                (best, summary) = (secs, s);
            }
        }
        if interval == "none" {
            base = best;
        }
        let checkpoints = summary.split(" checkpoints (").next().and_then(|s| s.rsplit(", ").next()).unwrap_or("0");
        let last = summary.split("(last: ").nth(1).and_then(|s| s.split(';').next()).unwrap_or("-");
        let _ = writeln!(
            report,
            "{interval:>10} | {:>8.2} M ev/s | {:>9.1}% | {:>11} | {last}",
            rows as f64 / best / 1e6,
            (best / base - 1.0) * 100.0,
            if interval == "none" { "0" } else { checkpoints },
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse
    let sizes: Vec<u64> = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 5_000_000]);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let mut report = String::new();
    let _ = writeln!(report, "\n10-second tumbling COUNT(*), MAX(price), SUM(price) GROUP BY auction over a bids CSV");
    let _ = writeln!(
        report,
        "{:>9} | {:>16} | {:>16} | {:>6} | {:>16} | {:>16} | {:>6} | {:>16} | {:>9}",
        "rows", "DataFusion 1 pt", "weir, 1", "ratio", "DataFusion 2 pt", "weir, 2", "ratio", "weir run", "peak mem"
    );
    let mut hops = Vec::new();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for rows in sizes {
        let path = dir.join(format!("bids_{rows}.csv"));
        generate(&path, rows).expect("generate data");
        let (df_secs, df_sum) = datafusion_batch(&path, 1);
        let (weir_secs, weir_sum, late) = weir_in_process(&path, WINDOW_QUERY, 1);
        let (df2_secs, df2_sum) = datafusion_batch(&path, 2);
        let (weir2_secs, weir2_sum, _) = weir_in_process(&path, WINDOW_QUERY, 2);
        assert_eq!(df2_sum, df_sum, "DataFusion on two partitions disagrees with one");
        assert_eq!(weir2_sum, df_sum, "weir at parallelism 2 disagrees with DataFusion");
        let (bin_secs, peak, bin_rows) = weir_binary(&path);
        assert_eq!(late, 0, "the watermark delay covers the disorder: no row may be late");
        assert_eq!(weir_sum, df_sum, "weir and DataFusion disagree");
        assert_eq!(bin_rows, df_sum.0, "weir run printed a different number of rows");
        let rate = |s: f64| rows as f64 / s / 1e6;
        let _ = writeln!(
            report,
            "{rows:>9} | {:>8.2} M ev/s | {:>8.2} M ev/s | {:>5.2}x | {:>8.2} M ev/s | {:>8.2} M ev/s | {:>5.2}x | {:>8.2} M ev/s | {peak:>5} MiB",
            rate(df_secs),
            rate(weir_secs),
            df_secs / weir_secs,
            rate(df2_secs),
            rate(weir2_secs),
            df2_secs / weir2_secs,
            rate(bin_secs),
        );
        let (hop_secs, hop_sum, hop_late) = weir_in_process(&path, HOP_QUERY, 1);
        assert_eq!(hop_late, 0, "no (row, window) pair may be late");
        assert_eq!(hop_sum.1, 10 * rows as i64, "every row must be counted in ten hopping windows");
        let (session_secs, session_sum, session_late) = weir_in_process(&path, SESSION_QUERY, 1);
        assert_eq!(session_late, 0, "no row may be late");
        assert_eq!(session_sum.1, rows as i64, "every row must be counted in one session");
        hops.push((rows, rate(weir_secs), rate(hop_secs), weir_secs / hop_secs, rate(session_secs)));
    }
    let _ = writeln!(
        report,
        "ratio = weir in process events/s / DataFusion batch events/s at the same number of threads; weir run at its default parallelism (the cores); Flink does about 0.5 M ev/s on this workload"
    );
    let _ = writeln!(
        report,
        "\n10-second HOP sliding every second (each row in 10 windows), same aggregates, weir in process"
    );
    let _ = writeln!(report, "and a SESSION window (gap 1s) per auction");
    let _ = writeln!(
        report,
        "{:>9} | {:>18} | {:>18} | {:>10} | {:>18}",
        "rows", "TUMBLE 10s", "HOP 1s/10s", "HOP/TUMBLE", "SESSION 1s"
    );
    for (rows, tumble, hop, ratio, session) in hops {
        let _ = writeln!(
            report,
            "{rows:>9} | {tumble:>10.2} M ev/s | {hop:>10.2} M ev/s | {ratio:>9.2}x | {session:>10.2} M ev/s"
        );
    }
    checkpoint_cost(&dir.join(format!("bids_{largest}.csv")), largest, &mut report);
    println!("{report}");
}
