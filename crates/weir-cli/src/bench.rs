//! `weir bench nexmark`: runs the Nexmark queries (`sql-examples/nexmark/`, built into the
//! binary) over the built-in generator, each in a process of its own so its peak memory is
//! its own, results to a sink that only counts them. Prints one line per query: events per
//! second of wall time, per core used (events over CPU time, generation included), peak
//! resident memory, the rows the sources produced and output rows; `--json FILE` writes the
//! same as JSON for tracking (every run with its round and speed-up, then with `--repeat` each
//! parallelism's median round).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use weir_connectors::DiscardSink;
use weir_engine::{Engine, EngineConfig, RunOptions};
use weir_runtime::Metrics;
use weir_sql::{Planned, Settings};

use crate::report::{human_bytes, peak_memory_bytes};
use crate::text::human_rate;
use crate::{usage_error, EXIT_RUNTIME};

/// The queries, as in `sql-examples/nexmark/`.
pub const NEXMARK: &[(&str, &str)] = &[
    ("q0", include_str!("../../../sql-examples/nexmark/q0.sql")),
    ("q1", include_str!("../../../sql-examples/nexmark/q1.sql")),
    ("q2", include_str!("../../../sql-examples/nexmark/q2.sql")),
    ("q3", include_str!("../../../sql-examples/nexmark/q3.sql")),
    ("q4", include_str!("../../../sql-examples/nexmark/q4.sql")),
    ("q5", include_str!("../../../sql-examples/nexmark/q5.sql")),
    ("q6", include_str!("../../../sql-examples/nexmark/q6.sql")),
    ("q7", include_str!("../../../sql-examples/nexmark/q7.sql")),
    ("q8", include_str!("../../../sql-examples/nexmark/q8.sql")),
    ("q9", include_str!("../../../sql-examples/nexmark/q9.sql")),
    ("q11", include_str!("../../../sql-examples/nexmark/q11.sql")),
    ("q12", include_str!("../../../sql-examples/nexmark/q12.sql")),
    ("q13", include_str!("../../../sql-examples/nexmark/q13.sql")),
    ("q14", include_str!("../../../sql-examples/nexmark/q14.sql")),
    ("q15", include_str!("../../../sql-examples/nexmark/q15.sql")),
    ("q16", include_str!("../../../sql-examples/nexmark/q16.sql")),
    ("q17", include_str!("../../../sql-examples/nexmark/q17.sql")),
    ("q18", include_str!("../../../sql-examples/nexmark/q18.sql")),
    ("q19", include_str!("../../../sql-examples/nexmark/q19.sql")),
    ("q20", include_str!("../../../sql-examples/nexmark/q20.sql")),
    ("q21", include_str!("../../../sql-examples/nexmark/q21.sql")),
    ("q22", include_str!("../../../sql-examples/nexmark/q22.sql")),
];

/// q13's static table: 10 000 rows `i,i`.
const SIDE_INPUT: &str = include_str!("../../../sql-examples/data/side_input.csv");

/// Throughput the issue sets per query, in events per second per core (read from Kafka as
/// JSON: q0–q2 only).
fn target(query: &str, kafka: bool) -> Option<f64> {
    if kafka {
        return matches!(query, "q0" | "q1" | "q2").then_some(1e6);
    }
    match query {
        "q0" | "q1" | "q2" => Some(2e6),
        "q5" | "q7" | "q8" => Some(1e6),
        "q4" | "q9" => Some(3e5),
        _ => None,
    }
}

fn one() -> usize {
    1
}

/// Options of `weir bench nexmark`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The benchmark suite (only `nexmark`).
    #[arg(value_parser = ["nexmark"])]
    suite: String,
    /// Events generated per query (all kinds: people, auctions and bids).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Run only these queries (comma-separated, e.g. q0,q1,q5).
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A setting for every query, as with SET (repeatable), e.g. --set nexmark.rate=100000.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Where the queries read the events: `generator` (in process) or `kafka` (the generator
    /// writes them to the topics nexmark-<events>-person, -auction and -bid first, as JSON,
    /// unless they hold them already; then each query reads them back).
    #[arg(long, value_parser = ["generator", "kafka"], default_value = "generator")]
    source: String,
    /// With `--source kafka`: the brokers.
    #[arg(long, value_name = "HOST:PORT", default_value = "localhost:9092")]
    bootstrap_servers: String,
    /// With `--source kafka`: partitions of each topic created.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Instances per stage (comma-separated to run each query at several, e.g. 1,2,4: each
    /// line then shows the speed-up over the first). Default 1: one thread, as the per-core
    /// figures in docs/performance.md are measured.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    parallelism: Vec<usize>,
    /// Run parallelism N on N cores only (the process's CPU affinity: the first N of the cores
    /// it may use), so that the speed-up is per added core. Without it each run may use every
    /// core, and a parallelism-1 run whose sources read on threads of their own already uses
    /// more than one.
    #[arg(long)]
    pin_cores: bool,
    /// Run each query this many rounds, each round at every parallelism in turn (so that a
    /// machine's drift falls on all of them), and then print the median round of each
    /// parallelism: its events/s and the median of the rounds' speed-ups.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Run one query in this process and print its measurement as JSON (what each query's
    /// process does).
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// The measurement of one query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Query name (`q0`).
    pub query: String,
    /// Events generated.
    pub events: u64,
    /// Wall-clock seconds from start to the last output row.
    pub seconds: f64,
    /// CPU seconds of the process (all threads, generation included).
    pub cpu_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_second: f64,
    /// Events per CPU second: throughput per core used.
    pub events_per_core_second: f64,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
    /// Rows that reached the sink (changelog rows count one each).
    pub output_rows: u64,
    /// Instances per stage it ran with.
    #[serde(default = "one")]
    pub parallelism: usize,
    /// Cores the query's process was allowed to run on (fewer than the machine's with
    /// `--pin-cores`).
    #[serde(default)]
    pub cores_allowed: usize,
    /// Rows the query's sources produced: only the kinds of events it reads (a query over
    /// `person` and `auction` generates 8% of the events), plus q13's file.
    #[serde(default)]
    pub rows_read: u64,
    /// Why the query did not run to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The round it ran in, from 1 (`--repeat`: each round runs every parallelism in turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// Its events/s over those of its round's run at the first parallelism asked for; on a
    /// median entry, the median of the rounds' speed-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    /// On the entries after a query's rounds (`--repeat N`, N > 1), one per parallelism: N.
    /// The entry is that parallelism's median round (by events/s; `round` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_of: Option<u32>,
}

/// CPU time used by this process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn settings(args: &BenchArgs) -> Result<Settings, ExitCode> {
    let mut settings = Settings::default();
    for kv in &args.set {
        let (k, v) = crate::split_setting(kv)?;
        crate::apply_setting(&mut settings, k, v).map_err(usage_error)?;
    }
    crate::apply_setting(&mut settings, "nexmark.events", &args.events.to_string()).map_err(usage_error)?;
    if let Some(n) = args.parallelism.first().filter(|_| args.child.is_some()) {
        crate::apply_setting(&mut settings, "parallelism", &n.to_string()).map_err(usage_error)?;
    }
    Ok(settings)
}

/// `weir bench nexmark …`.
pub fn bench(args: &BenchArgs) -> Result<ExitCode, ExitCode> {
    if args.events == 0 {
        return Err(usage_error("--events must be positive"));
    }
    let settings = settings(args)?;
    let kafka = (args.source == "kafka").then_some(args.bootstrap_servers.as_str());
    if let Some(q) = &args.child {
        return child(q, args.events, &settings, kafka);
    }
    let unknown: Vec<&String> = args.queries.iter().filter(|q| !NEXMARK.iter().any(|(n, _)| n == q)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = NEXMARK.iter().map(|(n, _)| *n).collect();
        return Err(usage_error(format!(
            "no query {} in the suite (it has {})",
            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            known.join(", ")
        )));
    }
    let exe = std::env::current_exe().map_err(|e| usage_error(format!("cannot find the weir binary: {e}")))?;
    let selected: Vec<&str> = NEXMARK
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| args.queries.is_empty() || args.queries.iter().any(|q| q == n))
        .collect();
    match kafka {
        Some(servers) => {
            load_topics(servers, args, &settings)?;
            outln!(
                "Nexmark, {} events per query, read from Kafka at {servers} as JSON ({} cores available)",
                args.events,
                cores()
            );
        }
        None => outln!("Nexmark, {} events per query ({} cores available)", args.events, cores()),
    }
    outln!(
        "{:<6} {:>4} {:>12} {:>14} {:>7} {:>10} {:>12} {:>12} {:>9} {:>8}  target/core",
        "query",
        "par",
        "events/s",
        "events/s/core",
        "cores",
        "peak RSS",
        "rows read",
        "output rows",
        "time",
        "speed-up"
    );
    let mut results = Vec::new();
    let mut failed = false;
    for q in selected {
        // per parallelism, each round's measurement (with its speed-up)
        let mut rounds: Vec<Vec<Measurement>> = vec![Vec::new(); args.parallelism.len()];
        for round in 1..=args.repeat {
            let mut first: Option<f64> = None;
            for (i, n) in args.parallelism.iter().enumerate() {
                let mut cmd = Command::new(&exe);
                cmd.args(["bench", "nexmark", "--child", q, "--events", &args.events.to_string()]);
                cmd.args(["--source", &args.source, "--bootstrap-servers", &args.bootstrap_servers]);
                for kv in &args.set {
                    cmd.args(["--set", kv]);
                }
                cmd.args(["--parallelism", &n.to_string()]);
                if args.pin_cores {
                    pin(&mut cmd, *n);
                }
                let mut m = match cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output() {
                    Ok(out) => match serde_json::from_slice::<Measurement>(&out.stdout) {
                        Ok(m) => m,
                        Err(_) => failure(q, args.events, format!("the query's process ended with {}", out.status)),
                    },
                    Err(e) => failure(q, args.events, format!("cannot start the query's process: {e}")),
                };
                failed |= m.error.is_some();
                // over the round's run at the first parallelism (none when that one failed)
                let speedup = first.filter(|_| i > 0 && m.error.is_none()).map(|f| m.events_per_second / f.max(1e-9));
                if i == 0 {
                    first = m.error.is_none().then_some(m.events_per_second);
                }
                (m.round, m.speedup) = (Some(round), speedup);
                print_line(&m, kafka.is_some());
                rounds[i].push(m.clone());
                results.push(m);
            }
        }
        if args.repeat > 1 {
            outln!("{q}: the median of {} rounds", args.repeat);
            for runs in &rounds {
                if let Some(mut m) = median(runs) {
                    m.median_of = Some(args.repeat);
                    print_line(&m, kafka.is_some());
                    results.push(m);
                }
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            errln!("error: cannot write {}: {e}", path.display());
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
    }
    Ok(if failed { ExitCode::from(EXIT_RUNTIME) } else { ExitCode::SUCCESS })
}

/// The run of median events/s among `runs` that did not fail, its speed-up the median of
/// theirs; `None` when every one failed.
fn median(runs: &[Measurement]) -> Option<Measurement> {
    let mut ok: Vec<&Measurement> = runs.iter().filter(|m| m.error.is_none()).collect();
    ok.sort_by(|a, b| a.events_per_second.total_cmp(&b.events_per_second));
    let mut middle = (*ok.get(ok.len() / 2)?).clone();
    let mut speedups: Vec<f64> = ok.iter().filter_map(|m| m.speedup).collect();
    speedups.sort_by(f64::total_cmp);
    middle.speedup = speedups.get(speedups.len() / 2).copied();
    Some(middle)
}

/// Let the query's process run on the first `n` of the cores this one may use.
fn pin(cmd: &mut Command, n: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the set is a plain bitmask; sched_getaffinity only writes into it.
    let mut mine: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mine) } != 0 {
        errln!("warning: cannot read this process's cores; the runs are not pinned");
        return;
    }
    // SAFETY: as above.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut taken = 0;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        if taken == n {
            break;
        }
        // SAFETY: cpu is below CPU_SETSIZE, the set's size.
        if unsafe { libc::CPU_ISSET(cpu, &mine) } {
            unsafe { libc::CPU_SET(cpu, &mut set) };
            taken += 1;
        }
    }
    if taken < n {
        errln!("warning: parallelism {n} pinned to the {taken} cores this process may use");
    }
    // SAFETY: sched_setaffinity is a system call, safe between fork and exec; the set is
    // copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The cores this process may run on (its CPU affinity).
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn failure(query: &str, events: u64, error: String) -> Measurement {
    Measurement {
        query: query.into(),
        events,
        seconds: 0.0,
        cpu_seconds: 0.0,
        events_per_second: 0.0,
        events_per_core_second: 0.0,
        peak_rss_bytes: 0,
        output_rows: 0,
        rows_read: 0,
        parallelism: 1,
        cores_allowed: 0,
        error: Some(error),
        round: None,
        speedup: None,
        median_of: None,
    }
}

fn print_line(m: &Measurement, kafka: bool) {
    if let Some(e) = &m.error {
        outln!("{:<6} failed: {e}", m.query);
        return;
    }
    let target = match target(&m.query, kafka) {
        Some(t) if m.events_per_core_second >= t => format!("{} met", human_rate(t)),
        Some(t) => format!("{} MISSED", human_rate(t)),
        None => String::new(),
    };
    let speedup = m.speedup.map(|x| format!("{x:.2}x")).unwrap_or_default();
    outln!(
        "{:<6} {:>4} {:>12} {:>14} {:>7.2} {:>10} {:>12} {:>12} {:>8.2}s {:>8}  {target}",
        m.query,
        m.parallelism,
        human_rate(m.events_per_second),
        human_rate(m.events_per_core_second),
        m.cpu_seconds / m.seconds.max(1e-9),
        human_bytes(m.peak_rss_bytes),
        m.rows_read,
        m.output_rows,
        m.seconds,
        speedup
    );
    let _ = std::io::stdout().flush();
}

/// The topic of Nexmark table `table` for `events` events.
fn topic(events: u64, table: &str) -> String {
    format!("nexmark-{events}-{table}")
}

/// `CREATE TABLE` statements declaring the Nexmark tables over their topics (bounded at the
/// offsets of when the query starts), in place of the generator's.
fn kafka_tables(servers: &str, events: u64, bounded: bool) -> String {
    let mut sql = String::new();
    for t in weir_plan::nexmark::builtin_tables() {
        let Some(schema) = &t.schema else { continue };
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), weir_plan::sql_type_name(f.data_type())))
            .collect();
        let watermark = match &t.watermark {
            Some(w) => format!(
                ", WATERMARK FOR {c} AS {c} - INTERVAL '{}' SECOND",
                w.delay_nanos / 1_000_000_000,
                c = w.column
            ),
            None => String::new(),
        };
        let reading = if bounded {
            ", 'scan.bounded.mode' = 'latest-offset', 'scan.startup.mode' = 'earliest-offset'"
        } else {
            ""
        };
        sql.push_str(&format!(
            "CREATE TABLE {name} ({}{watermark}) WITH ('connector' = 'kafka', 'topic' = '{}', \
             'properties.bootstrap.servers' = '{servers}', 'format' = 'json'{reading});\n",
            columns.join(", "),
            topic(events, &t.name),
            name = if bounded { t.name.clone() } else { format!("kafka_{}", t.name) },
        ));
    }
    sql
}

/// Write the generated events to their topics, unless the topics hold them already.
fn load_topics(servers: &str, args: &BenchArgs, settings: &Settings) -> Result<(), ExitCode> {
    let fail = |e: String| {
        errln!("error: {e}");
        ExitCode::from(EXIT_RUNTIME)
    };
    let mut held = 0;
    for t in weir_plan::nexmark::TABLES {
        held += weir_connectors::kafka::topic_records(servers, &topic(args.events, t))
            .map_err(|e| fail(e.to_string()))?
            .unwrap_or(0);
    }
    if held == args.events {
        outln!("the topics nexmark-{}-* hold the events already", args.events);
        return Ok(());
    }
    outln!(
        "writing {} events to the topics nexmark-{}-* ({} partitions each)…",
        args.events,
        args.events,
        args.partitions
    );
    let started = Instant::now();
    for t in weir_plan::nexmark::TABLES {
        weir_connectors::kafka::recreate_topic(servers, &topic(args.events, t), args.partitions)
            .map_err(|e| fail(e.to_string()))?;
    }
    let engine = Engine::new(EngineConfig { settings: settings.clone(), ..EngineConfig::default() })
        .map_err(|e| fail(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| fail(e.to_string()))?;
    runtime
        .block_on(async {
            engine.sql(&kafka_tables(servers, args.events, false)).await?;
            for t in weir_plan::nexmark::TABLES {
                engine.sql(&format!("INSERT INTO kafka_{t} SELECT * FROM {t}")).await?;
            }
            Ok::<_, weir_engine::EngineError>(())
        })
        .map_err(|e| fail(e.to_string()))?;
    outln!("written in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Run one query here and print its measurement as one JSON line.
fn child(query: &str, events: u64, settings: &Settings, kafka: Option<&str>) -> Result<ExitCode, ExitCode> {
    let Some((_, sql)) = NEXMARK.iter().find(|(n, _)| *n == query) else {
        return Err(usage_error(format!("no query {query}")));
    };
    let sql = match kafka {
        Some(servers) => format!("{}\n{sql}", kafka_tables(servers, events, true)),
        None => sql.to_string(),
    };
    let m = measure(query, &sql, events, settings).unwrap_or_else(|e| failure(query, events, e));
    outln!("{}", serde_json::to_string(&m).unwrap_or_default());
    Ok(if m.error.is_some() { ExitCode::from(EXIT_RUNTIME) } else { ExitCode::SUCCESS })
}

fn measure(query: &str, sql: &str, events: u64, settings: &Settings) -> Result<Measurement, String> {
    let scratch = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    let config =
        EngineConfig { settings: settings.clone(), base_dir: Some(scratch.join("nexmark")), checkpoints: None };
    let engine = Engine::new(config).map_err(|e| e.to_string())?;
    let plan = engine
        .plan(sql)
        .map_err(|e| e.to_string())?
        .into_iter()
        .rev()
        .find_map(|p| match p {
            Planned::Query(p) | Planned::Insert(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| format!("{query} has no query"))?;
    // the queries name files relative to sql-examples/nexmark: lay the data out in a scratch
    // directory the same way
    let data = scratch.join("data");
    for dir in [&data, &scratch.join("nexmark")] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(data.join("side_input.csv"), SIDE_INPUT).map_err(|e| format!("{}: {e}", data.display()))?;
    let metrics = Arc::new(Metrics::default());
    let options = RunOptions { metrics: Some(Arc::clone(&metrics)), ..RunOptions::default() };
    engine.validate(&plan, &options).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let result =
        runtime.block_on(engine.run_with(&plan, Box::new(DiscardSink), Arc::new(AtomicBool::new(false)), options));
    let (seconds, cpu_seconds) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let _ = std::fs::remove_dir_all(&scratch);
    result.map_err(|e| e.to_string())?;
    Ok(Measurement {
        query: query.into(),
        events,
        seconds,
        cpu_seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        events_per_core_second: events as f64 / cpu_seconds.max(1e-9),
        peak_rss_bytes: peak_memory_bytes().unwrap_or(0),
        output_rows: Metrics::get(&metrics.rows_out),
        rows_read: Metrics::get(&metrics.rows_in),
        parallelism: settings.parallelism(),
        cores_allowed: cores(),
        error: None,
        round: None,
        speedup: None,
        median_of: None,
    })
}
