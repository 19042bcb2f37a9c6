//! # weir-cli — the `weir` command
//!
//! `weir` (or `weir shell`) is the interactive shell; `weir run FILE` runs a SQL script (DDL,
//! queries, `INSERT INTO … SELECT`) until its sources end; `weir explain FILE` prints the
//! streaming plans without running them; `weir bench nexmark` runs the Nexmark benchmark. This crate owns argument parsing, the shell,
//! statement execution order, where each query's checkpoints go and which one it resumes from
//! (`--checkpoint-dir`, `--from-checkpoint`), output to the terminal (results, the live status
//! line), error rendering and exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | runtime or data error (malformed row, unreadable file, failed expression) |
//! | 2    | bad command line (unknown flag, missing script) |
//! | 3    | SQL error (syntax, unknown table or column, type error, unsupported construct, bad connector options) |

#![warn(missing_docs)]

#[macro_use]
mod console;
mod bench;
mod connectors;
mod prometheus;
mod recovery;
mod report;
mod session;
mod shell;
mod signals;
mod status;
mod text;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use weir_connectors::{DiscardSink, FormatSink, OutputFormat};
use weir_engine::{Engine, EngineConfig, EngineError, RunOptions};
use weir_runtime::{sink_schema, Metrics, Sink};
use weir_sql::{Planned, Settings, SqlError, StreamPlan};

use crate::signals::Signals;

pub use prometheus::MetricsEndpoint;
pub use report::{explain_analyze, operator_line, peak_memory_bytes, render_sql_error};
pub use session::{Session, SessionError, StatementResult};
pub use status::{Progress, StatusLine, StatusWriter};

/// Exit code: runtime or data error.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: SQL error.
pub const EXIT_SQL: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "weir", version, about = "Streaming SQL over event time", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log more on stderr: -v for what each query does, -vv for debugging, -vvv for every
    /// batch. RUST_LOG (e.g. RUST_LOG=weir_runtime=debug) overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

/// Structured logs (`tracing`) on stderr: warnings by default, more with `-v`, or as `RUST_LOG`
/// says.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = ["warn", "info", "debug", "trace"][usize::from(verbose.min(3))];
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(format!(
            "warn,weir_cli={level},weir_runtime={level},weir_connectors={level},weir_sql={level}"
        )),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[derive(clap::Args, Debug)]
struct ScriptArgs {
    /// SQL script to run (statements separated by ';').
    file: Option<PathBuf>,
    /// Run this SQL text instead of a file.
    #[arg(short = 'e', long = "execute", value_name = "SQL", conflicts_with = "file", allow_hyphen_values = true)]
    execute: Option<String>,
    /// A session setting, as with SET (repeatable), e.g. --set batch.size=1000.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Instances of each stage that can run in parallel, as SET parallelism does (unset: the
    /// number of cores for a query reading a table in splits, one thread otherwise).
    #[arg(long, value_name = "N")]
    parallelism: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Output format of query results on stdout.
    #[arg(long, default_value = "table", value_parser = parse_format)]
    format: OutputFormat,
    /// Rows per batch read from sources (default 8192).
    #[arg(long, value_name = "ROWS")]
    batch_size: Option<usize>,
    /// Do not print the summary or the progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// After each query, print its plan with each operator's metrics (rows in/out, time,
    /// late rows, state) on stderr, as EXPLAIN ANALYZE does.
    #[arg(long)]
    explain_analyze: bool,
    /// Serve the running query's metrics in the Prometheus text format at this address.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    checkpoints: recovery::CheckpointArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The interactive shell (also what `weir` alone starts).
    Shell {
        /// How query results are printed (\format changes it).
        #[arg(long, default_value = "table", value_parser = parse_format)]
        format: OutputFormat,
        /// A session setting, as with SET (repeatable), e.g. --set batch.size=1000.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Serve the running query's metrics in the Prometheus text format at this address.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Run a SQL script until its sources end (or Ctrl-C).
    Run {
        #[command(flatten)]
        script: ScriptArgs,
        #[command(flatten)]
        options: RunArgs,
    },
    /// Print the streaming plan of each query in a SQL script, without running it.
    Explain {
        #[command(flatten)]
        script: ScriptArgs,
        /// Print each plan as one JSON object per line (nodes, sources, sink), for tools.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark weir: `weir bench nexmark` runs the Nexmark queries over the built-in
    /// generator and prints throughput, per-core throughput, peak memory and output rows.
    Bench(bench::BenchArgs),
    /// List the connectors tables can use, with their options (as SHOW CONNECTORS does).
    Connectors {
        /// Print the reference as Markdown (the tables of docs/connectors.md).
        #[arg(long)]
        markdown: bool,
    },
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    s.parse()
}

struct Script {
    name: String,
    sql: String,
    base_dir: Option<PathBuf>,
}

fn load_script(args: &ScriptArgs) -> Result<Script, String> {
    match (&args.file, &args.execute) {
        (_, Some(sql)) => Ok(Script { name: "<command line>".into(), sql: sql.clone(), base_dir: None }),
        (Some(path), None) => {
            let sql = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(Script { name: path.display().to_string(), sql, base_dir: path.parent().map(Path::to_path_buf) })
        }
        (None, None) => Err("give a SQL file (weir run q.sql) or SQL text (weir run -e 'SELECT …')".into()),
    }
}

fn apply_setting(settings: &mut Settings, key: &str, value: &str) -> Result<(), SqlError> {
    settings.set(key, value).map(|_| ()).map_err(SqlError::from)
}

/// Entry point of the `weir` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help, --version and usage errors, written without panicking
            let code = ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
            if e.use_stderr() {
                err!("{e}");
            } else {
                out!("{e}");
            }
            return console::exit_code(code);
        }
    };
    init_logging(cli.verbose);
    let command =
        cli.command.unwrap_or(Command::Shell { format: OutputFormat::Table, set: Vec::new(), metrics_addr: None });
    let result = match command {
        Command::Shell { format, set, metrics_addr } => shell(format, &set, metrics_addr),
        Command::Explain { script, json } => explain(&script, json),
        Command::Run { script, options } => run(&script, &options),
        Command::Bench(args) => bench::bench(&args),
        Command::Connectors { markdown } => {
            let specs = weir_sql::ConnectorCatalog::specs(&weir_connectors::registry());
            if markdown {
                out!("{}", connectors::markdown(&specs));
            } else {
                outln!("{}", connectors::text(&specs));
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    console::exit_code(result.unwrap_or_else(|code| code))
}

fn shell(format: OutputFormat, set: &[String], metrics_addr: Option<SocketAddr>) -> Result<ExitCode, ExitCode> {
    let mut session = Session::new();
    for kv in set {
        let (k, v) = split_setting(kv)?;
        session.set(k, v).map_err(usage_error)?;
    }
    Ok(shell::run(session, format, metrics_addr))
}

/// Where a query's rows go: its `INSERT INTO` table, or stdout in `format`, written around the
/// status line on stderr (or nowhere, with `discard`: `EXPLAIN ANALYZE` of a query).
fn query_sink(
    engine: &Engine,
    plan: &StreamPlan,
    format: OutputFormat,
    options: &RunOptions,
    status: &Arc<StatusLine>,
    discard: bool,
) -> Result<Box<dyn Sink>, EngineError> {
    Ok(match &plan.sink {
        weir_sql::SinkNode::Client if discard => Box::new(DiscardSink),
        weir_sql::SinkNode::Client => {
            let out = StatusWriter::new(Arc::clone(status));
            Box::new(FormatSink::new(out, format, sink_schema(plan), "stdout", true))
        }
        weir_sql::SinkNode::Table(_) => engine.table_sink(plan, options)?,
    })
}

/// How a query is named in its summary: `query`, or `INSERT INTO sink`.
fn query_label(plan: &StreamPlan) -> String {
    match &plan.sink {
        weir_sql::SinkNode::Table(t) => format!("INSERT INTO {}", t.name),
        weir_sql::SinkNode::Client => "query".to_string(),
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    errln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

/// Read the script, start an engine with the settings, and plan all of it; errors are
/// printed, and returned as the exit code.
fn load_and_plan(args: &ScriptArgs, settings: &Settings) -> Result<(Script, Engine, Vec<Planned>), ExitCode> {
    let script = load_script(args).map_err(usage_error)?;
    let config = EngineConfig { settings: settings.clone(), base_dir: script.base_dir.clone(), checkpoints: None };
    let engine = Engine::new(config).map_err(usage_error)?;
    let planned = engine.plan(&script.sql).map_err(|e| match e {
        EngineError::Sql(e) => {
            err!("{}", render_sql_error(&e, &script.name, &script.sql));
            ExitCode::from(EXIT_SQL)
        }
        other => usage_error(other),
    })?;
    Ok((script, engine, planned))
}

fn command_line_settings(args: &ScriptArgs) -> Result<Settings, ExitCode> {
    let mut settings = Settings::default();
    for kv in &args.set {
        let (k, v) = split_setting(kv)?;
        apply_setting(&mut settings, k, v).map_err(usage_error)?;
    }
    if let Some(n) = args.parallelism {
        apply_setting(&mut settings, "parallelism", &n.to_string()).map_err(usage_error)?;
    }
    Ok(settings)
}

/// One `--set KEY=VALUE`.
fn split_setting(kv: &str) -> Result<(&str, &str), ExitCode> {
    kv.split_once('=').ok_or_else(|| usage_error(format!("--set takes KEY=VALUE, got '{kv}'")))
}

fn explain(args: &ScriptArgs, json: bool) -> Result<ExitCode, ExitCode> {
    let mut settings = command_line_settings(args)?;
    let (_, engine, planned) = load_and_plan(args, &settings)?;
    // each plan at the parallelism the script's settings give it
    let mut plans: Vec<(&StreamPlan, Option<usize>)> = Vec::new();
    for p in &planned {
        match p {
            Planned::Query(p) | Planned::Insert(p) | Planned::Explain(p) | Planned::ExplainAnalyze(p) => {
                plans.push((p, settings.parallelism))
            }
            Planned::Set { key, value } => {
                let _ = settings.set(key, value);
            }
            _ => {}
        }
    }
    if plans.is_empty() {
        errln!("weir: the script has no query to explain");
    }
    for (i, (p, n)) in plans.iter().enumerate() {
        if json {
            match serde_json::to_string(p) {
                Ok(line) => outln!("{line}"),
                Err(e) => {
                    errln!("error: cannot write the plan as JSON: {e}");
                    return Err(ExitCode::from(EXIT_RUNTIME));
                }
            }
            continue;
        }
        if i > 0 {
            outln!();
        }
        outln!("{}", engine.explain_plan(p, *n));
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: &ScriptArgs, options: &RunArgs) -> Result<ExitCode, ExitCode> {
    let RunArgs { format, batch_size, quiet, explain_analyze: analyze_all, metrics_addr, ref checkpoints } = *options;
    let mut settings = command_line_settings(args)?;
    if let Some(n) = batch_size {
        apply_setting(&mut settings, "batch.size", &n.to_string())
            .map_err(|e| usage_error(format!("--batch-size: {}", e.message)))?;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
    };
    // listening from now on, before planning (which can take long), so that a signal is
    // handled the same way whenever it comes and whatever disposition the process inherited
    let signals = {
        let _entered = runtime.enter();
        Signals::interrupt_or_terminate()
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    runtime.spawn(watch_signals(signals, Arc::clone(&cancel), Arc::clone(&started)));
    let (script, engine, planned) = load_and_plan(args, &settings)?;
    // Check every statement's settings and connector options before running anything.
    let mut jobs = Vec::new();
    let mut current = settings;
    for p in planned {
        let analyze = match &p {
            Planned::ExplainAnalyze(_) => Analyze::Instead,
            _ if analyze_all => Analyze::After,
            _ => Analyze::No,
        };
        match p {
            Planned::Set { key, value } => {
                if let Err(e) = apply_setting(&mut current, &key, &value) {
                    err!("{}", render_sql_error(&e, &script.name, &script.sql));
                    return Err(ExitCode::from(EXIT_SQL));
                }
            }
            Planned::Query(plan) | Planned::Insert(plan) | Planned::ExplainAnalyze(plan) => {
                let part_files = checkpoints.enabled() && analyze != Analyze::Instead;
                let options = job_options(&current, part_files, Arc::new(Metrics::default()));
                if let Err(e) = engine.validate(&plan, &options) {
                    errln!("error: {}", crate::report::clip_message(&e.to_string()));
                    return Err(ExitCode::from(EXIT_SQL));
                }
                jobs.push((plan, part_files, analyze, current.clone()));
            }
            Planned::Explain(plan) => {
                let n = current.parallelism.or(checkpoints.enabled().then_some(1));
                outln!("{}", engine.explain_plan(&plan, n));
            }
            Planned::ShowConnectors(specs) => outln!("{}", connectors::text(&specs)),
            Planned::CreatedTable(_) | Planned::CreatedView(_) => {}
        }
    }
    let mut endpoint = match metrics_addr.map(|addr| MetricsEndpoint::start(addr, &runtime)).transpose() {
        Ok(e) => e,
        Err(e) => {
            errln!("error: {}", crate::report::clip_message(&e.to_string()));
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
    };
    started.store(true, Ordering::Relaxed);
    let total = jobs.len();
    for (i, (plan, part_files, analyze, settings)) in jobs.into_iter().enumerate() {
        let metrics = Arc::new(Metrics::default());
        let label = query_label(&plan);
        let label = if total > 1 { format!("{label} ({} of {total})", i + 1) } else { label };
        let checkpoint = match part_files {
            true => match recovery::setup(checkpoints, &settings, &plan, i, total, &label) {
                Ok(c) => c,
                Err(e) => {
                    errln!("error: {}", crate::report::clip_message(&e.to_string()));
                    return Err(ExitCode::from(EXIT_RUNTIME));
                }
            },
            false => None,
        };
        let checkpointing = checkpoint.is_some();
        let started = Instant::now();
        tracing::info!(query = %label, inputs = plan.sources().len(), operators = plan.ops.len(), "query starting");
        if let Some(e) = &mut endpoint {
            e.watch(&metrics);
        }
        let status = Arc::new(StatusLine::default());
        let progress = Progress::start(Arc::clone(&status), Arc::clone(&metrics), !quiet);
        let discard = analyze == Analyze::Instead;
        let mut options = job_options(&settings, part_files, Arc::clone(&metrics));
        options.checkpoint = checkpoint;
        let job = Job { engine: &engine, plan: &plan, format, options, discard };
        let result = runtime.block_on(run_plan(job, status, Arc::clone(&cancel)));
        progress.stop();
        if let Some(e) = &endpoint {
            e.refresh();
        }
        if let Err(weir_runtime::RuntimeError::OutputClosed) = result {
            // the reader of stdout went away (`weir run … | head`): stop quietly
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(e) = result {
            errln!("error: {}", crate::report::clip_message(&e.to_string()));
            if !quiet {
                errln!("{}", report::summary(&format!("{label} failed"), &metrics, started.elapsed()));
            }
            return Err(ExitCode::from(EXIT_RUNTIME));
        }
        if !quiet {
            errln!("{}", report::summary(&label, &metrics, started.elapsed()));
        }
        match analyze {
            Analyze::Instead => outln!("{}", explain_analyze(&plan, &metrics)),
            Analyze::After => errln!("{}", explain_analyze(&plan, &metrics)),
            Analyze::No => {}
        }
        if cancel.load(Ordering::Relaxed) {
            if checkpointing {
                errln!(
                    "weir: stopped after checkpoint {}: {}",
                    Metrics::get(&metrics.checkpoint_last_id),
                    checkpoints.resume_hint()
                );
            }
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How one query of a script runs: the batch size its settings give, part files when it
/// checkpoints, counting into `metrics`; its checkpoints are set up by `weir run` itself.
fn job_options(settings: &Settings, part_files: bool, metrics: Arc<Metrics>) -> RunOptions {
    RunOptions {
        batch_size: Some(settings.batch_size()),
        metrics: Some(metrics),
        parallelism: settings.parallelism,
        checkpoints_from_config: false,
        part_files,
        ..RunOptions::default()
    }
}

/// Whether a query's plan is shown with its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Analyze {
    No,
    /// `--explain-analyze`: after the query's results and summary, on stderr.
    After,
    /// `EXPLAIN ANALYZE`: instead of a query's rows, on stdout.
    Instead,
}

/// One query of `weir run`, ready to start.
struct Job<'a> {
    engine: &'a Engine,
    plan: &'a StreamPlan,
    format: OutputFormat,
    options: RunOptions,
    /// Rows go nowhere (`EXPLAIN ANALYZE`).
    discard: bool,
}

async fn run_plan(job: Job<'_>, status: Arc<StatusLine>, cancel: Arc<AtomicBool>) -> weir_runtime::Result<()> {
    let Job { engine, plan, format, options, discard } = job;
    let run = async {
        let sink = query_sink(engine, plan, format, &options, &status, discard)?;
        engine.run_with(plan, sink, cancel, options).await
    };
    match run.await {
        Ok(_) => Ok(()),
        Err(EngineError::Runtime(e)) => Err(e),
        Err(e) => Err(weir_runtime::RuntimeError::Internal(e.to_string())),
    }
}

/// Ctrl-C or SIGTERM: stop reading, flush the sinks, exit. A source blocked waiting for input
/// (a quiet stdin) cannot notice; a second signal, or 3 seconds, ends the process (exit 130).
/// Before a query has `started` (while the script is planned), the first signal ends it.
async fn watch_signals(mut signals: Signals, cancel: Arc<AtomicBool>, started: Arc<AtomicBool>) {
    if !signals.next().await {
        return;
    }
    if !started.load(Ordering::Relaxed) {
        errln!("weir: stopped before the query started");
        std::process::exit(130);
    }
    cancel.store(true, Ordering::Relaxed);
    tokio::select! {
        _ = signals.next() => {},
        _ = tokio::time::sleep(std::time::Duration::from_secs(3)) => {},
    }
    errln!("weir: the input did not stop in time; exiting");
    std::process::exit(130);
}
