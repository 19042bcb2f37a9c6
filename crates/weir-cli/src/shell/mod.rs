//! The interactive shell (`weir`, `weir shell`): type DDL and continuous queries; results
//! stream onto the screen as windows close, with a status line below them; Ctrl-C stops the
//! running query and returns to the prompt.
//!
//! On a terminal the input is edited with rustyline (multi-line statements, history kept in
//! `~/.weir_history` or `$WEIR_HISTORY`, Tab completion, Ctrl-R search). When standard input is
//! not a terminal (`weir < script.sql`), statements are read from it as they complete, without
//! prompts, so results on stdout stay clean.

mod editor;
pub(crate) mod meta;

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Editor, Event, EventContext, EventHandler, KeyEvent,
    Movement, RepeatCount,
};
use weir_connectors::OutputFormat;
use weir_runtime::{Metrics, RuntimeError};
use weir_sql::{Planned, StreamPlan};

use crate::report::{self, render_sql_error};
use crate::signals::Signals;
use crate::status::{Progress, StatusLine};
use crate::{MetricsEndpoint, Session, EXIT_RUNTIME};
use editor::{input_complete, is_quit, ShellHelper};

/// What the shell does after a command.
pub(crate) enum Flow {
    /// Read the next command.
    Continue,
    /// Leave the shell.
    Quit,
}

/// The shell's state: the session's catalog and settings, and how results are shown.
pub(crate) struct Shell {
    session: Session,
    format: OutputFormat,
    timing: bool,
    runtime: tokio::runtime::Runtime,
    /// The running query's stop flag, which Ctrl-C sets.
    running: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    last_metrics: Option<Arc<Metrics>>,
    status: Arc<StatusLine>,
    /// The Prometheus endpoint, if `--metrics-addr` was given.
    endpoint: Option<MetricsEndpoint>,
    /// Whoever read stdout stopped: nothing more can be shown.
    output_closed: bool,
}

/// Ctrl-C at the prompt: clears a line with text, interrupts (the first step to quitting) on
/// an empty one.
struct ClearOrInterrupt;

impl ConditionalEventHandler for ClearOrInterrupt {
    fn handle(&self, _evt: &Event, _n: RepeatCount, _positive: bool, ctx: &EventContext) -> Option<Cmd> {
        (!ctx.line().is_empty()).then_some(Cmd::Kill(Movement::WholeBuffer))
    }
}

/// A line with nothing to run: blank, or a `--` comment.
fn is_blank_line(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with("--")
}

/// Where input comes from: the line editor on a terminal, else plain lines of stdin.
enum Input {
    Editor(Box<Editor<ShellHelper, FileHistory>>, Option<PathBuf>),
    Lines(std::io::StdinLock<'static>),
}

/// One read of the input.
enum Read {
    Text(String),
    Interrupted,
    End,
}

impl Input {
    fn open() -> Result<Self, ReadlineError> {
        if !std::io::stdin().is_terminal() {
            return Ok(Self::Lines(std::io::stdin().lock()));
        }
        let config = Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .max_history_size(10_000)?
            .completion_type(CompletionType::List)
            .build();
        let mut editor = Editor::with_config(config)?;
        editor.set_helper(Some(ShellHelper::new()));
        // Ctrl-C on a line with text clears it; on an empty line it is an interrupt
        editor.bind_sequence(KeyEvent::ctrl('C'), EventHandler::Conditional(Box::new(ClearOrInterrupt)));
        let history = std::env::var_os("WEIR_HISTORY")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".weir_history")));
        if let Some(path) = &history {
            // a missing history file is a first run, not an error
            let _ = editor.load_history(path);
        }
        Ok(Self::Editor(Box::new(editor), history))
    }

    fn read(&mut self) -> Result<Read, ReadlineError> {
        match self {
            Self::Editor(editor, _) => match editor.readline("weir> ") {
                Ok(text) => Ok(Read::Text(text)),
                Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(ReadlineError::Eof) => Ok(Read::End),
                Err(e) => Err(e),
            },
            Self::Lines(stdin) => {
                let mut text = String::new();
                loop {
                    let mut line = String::new();
                    if stdin.read_line(&mut line)? == 0 {
                        // input ended: run what is there, even without a final ';'
                        return Ok(if text.trim().is_empty() { Read::End } else { Read::Text(text) });
                    }
                    // comments before a backslash command do not glue it to the next statement
                    if line.trim_start().starts_with('\\') && text.lines().all(is_blank_line) {
                        return Ok(Read::Text(line));
                    }
                    text.push_str(&line);
                    if input_complete(&text) && !text.trim().is_empty() {
                        return Ok(Read::Text(text));
                    }
                }
            }
        }
    }

    /// Remember `text` in the history (appended to the file at once, so a crash loses nothing
    /// and two shells do not overwrite each other's entries).
    fn remember(&mut self, text: &str) {
        if let Self::Editor(editor, history) = self {
            let _ = editor.add_history_entry(text);
            if let Some(path) = history {
                let _ = editor.append_history(path);
            }
        }
    }

    fn learn(&mut self, session: &Session) {
        if let Self::Editor(editor, _) = self {
            if let Some(helper) = editor.helper_mut() {
                helper.learn(session.planner().catalog());
            }
        }
    }
}

/// Run the shell until `\q`, Ctrl-D, or Ctrl-C twice at the prompt.
pub fn run(session: Session, format: OutputFormat, metrics_addr: Option<SocketAddr>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let endpoint = match metrics_addr.map(|addr| MetricsEndpoint::start(addr, &runtime)).transpose() {
        Ok(e) => e,
        Err(e) => {
            errln!("error: {}", crate::report::clip_message(&e.to_string()));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let running: Arc<Mutex<Option<Arc<AtomicBool>>>> = Arc::default();
    if std::io::stdin().is_terminal() {
        // the handler is installed now, before the line editor first saves (and later
        // restores) the process's SIGINT disposition; with piped input Ctrl-C ends the process
        let ctrl_c = {
            let _entered = runtime.enter();
            Signals::interrupt()
        };
        runtime.spawn(stop_queries_on_ctrl_c(ctrl_c, Arc::clone(&running)));
    }
    let mut shell = Shell {
        session,
        format,
        timing: false,
        runtime,
        running,
        last_metrics: None,
        status: Arc::new(StatusLine::default()),
        endpoint,
        output_closed: false,
    };
    let mut input = match Input::open() {
        Ok(i) => i,
        Err(e) => {
            errln!("error: cannot read the terminal: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if let Input::Editor(..) = input {
        outln!(
            "weir {}: streaming SQL. End statements with ';'; \\? lists commands, \\q quits.",
            env!("CARGO_PKG_VERSION")
        );
    }
    input.learn(&shell.session);
    let mut interrupted = false;
    loop {
        let text = match input.read() {
            Ok(Read::Text(text)) => text,
            Ok(Read::Interrupted) if interrupted => break,
            Ok(Read::Interrupted) => {
                interrupted = true;
                errln!("(Ctrl-C again, Ctrl-D or \\q to quit)");
                continue;
            }
            Ok(Read::End) => break,
            Err(e) => {
                errln!("error: cannot read input: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        interrupted = false;
        let t = text.trim();
        if t.is_empty() {
            continue;
        }
        input.remember(text.trim_end());
        if is_quit(t) {
            break;
        }
        let flow = if t.starts_with('\\') {
            shell.meta(t)
        } else {
            shell.run_sql(&text, "input", None);
            Flow::Continue
        };
        input.learn(&shell.session);
        if shell.output_closed || crate::console::stdout_closed() {
            // the reader of stdout went away (`weir < q.sql | head`)
            break;
        }
        if let Flow::Quit = flow {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// Ctrl-C stops the running query, never the shell (at the prompt, the editor reads Ctrl-C
/// as a key instead).
async fn stop_queries_on_ctrl_c(mut ctrl_c: Signals, running: Arc<Mutex<Option<Arc<AtomicBool>>>>) {
    while ctrl_c.next().await {
        if let Some(stop) = running.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Shell {
    /// Plan and run the statements of `sql` in order; an error is printed and stops the rest.
    pub(crate) fn run_sql(&mut self, sql: &str, source_name: &str, base_dir: Option<PathBuf>) -> bool {
        let started = Instant::now();
        let ok = self.run_statements(sql, source_name, base_dir);
        if self.timing {
            errln!("Time: {:.3} s", started.elapsed().as_secs_f64());
        }
        ok
    }

    fn run_statements(&mut self, sql: &str, source_name: &str, base_dir: Option<PathBuf>) -> bool {
        // Ctrl-C from here on gives up planning (a huge statement can take long)
        let stop = Arc::new(AtomicBool::new(false));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&stop));
        let planned = self.session.plan_until(sql, &stop);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let planned = match planned {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                err!("{}", render_sql_error(&e, source_name, sql));
                return false;
            }
            None => {
                errln!("planning stopped (Ctrl-C); nothing of it was run or declared");
                return false;
            }
        };
        for p in planned {
            match p {
                Planned::CreatedTable(name) => outln!("CREATE TABLE {name}"),
                Planned::CreatedView(name) => outln!("CREATE VIEW {name}"),
                Planned::Set { key, value } => match self.session.set(&key, &value) {
                    Ok(()) if key.starts_with("checkpoint.") => {
                        outln!("SET");
                        errln!("note: the shell does not checkpoint; {key} applies to `weir run --checkpoint-dir`");
                    }
                    Ok(()) => outln!("SET"),
                    Err(e) => {
                        errln!("error: {}", crate::report::clip_message(&e.to_string()));
                        return false;
                    }
                },
                Planned::Explain(plan) => {
                    let engine = self.session.engine();
                    outln!("{}", engine.explain_plan(&plan, engine.typed_settings().parallelism))
                }
                Planned::ShowConnectors(specs) => outln!("{}", crate::connectors::text(&specs)),
                Planned::Query(plan) | Planned::Insert(plan) => {
                    if !self.run_query(&plan, base_dir.clone(), false) {
                        return false;
                    }
                }
                Planned::ExplainAnalyze(plan) => {
                    if !self.run_query(&plan, base_dir.clone(), true) {
                        return false;
                    }
                    if let Some(m) = &self.last_metrics {
                        outln!("{}", crate::explain_analyze(&plan, m));
                    }
                }
            }
        }
        true
    }

    /// Run one query until its input ends or Ctrl-C, printing results as they are emitted
    /// (with `analyze`, a query's rows are not shown: EXPLAIN ANALYZE shows the metrics).
    fn run_query(&mut self, plan: &StreamPlan, base_dir: Option<PathBuf>, analyze: bool) -> bool {
        // Ctrl-C from here on stops this query, even before it starts running
        let stop = Arc::new(AtomicBool::new(false));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&stop));
        let ok = self.run_query_until(plan, base_dir, analyze, &stop);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        ok
    }

    fn run_query_until(
        &mut self,
        plan: &StreamPlan,
        base_dir: Option<PathBuf>,
        analyze: bool,
        stop: &Arc<AtomicBool>,
    ) -> bool {
        if let Some(node) = plan.sources().into_iter().find(|n| n.table.connector() == Some("stdin")) {
            errln!(
                "error: table '{}' reads standard input, which is the shell's own input; run it with `weir run`",
                node.table.name
            );
            return false;
        }
        let metrics = Arc::new(Metrics::default());
        let options = self.session.run_options(base_dir, Arc::clone(&metrics));
        let engine = self.session.engine();
        let sink = engine
            .validate(plan, &options)
            .and_then(|()| crate::query_sink(engine, plan, self.format, &options, &self.status, analyze));
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                errln!("error: {}", crate::report::clip_message(&e.to_string()));
                return false;
            }
        };
        if stop.load(Ordering::Relaxed) {
            errln!("query stopped (Ctrl-C) before it started");
            return false;
        }
        if let Some(e) = &mut self.endpoint {
            e.watch(&metrics);
        }
        let progress = Progress::start(Arc::clone(&self.status), Arc::clone(&metrics), true);
        let started = Instant::now();
        let result = self.runtime.block_on(engine.run_with(plan, sink, Arc::clone(stop), options));
        let result = match result {
            Ok(_) => Ok(()),
            Err(weir_engine::EngineError::Runtime(e)) => Err(e),
            Err(e) => Err(RuntimeError::Internal(e.to_string())),
        };
        self.output_closed = matches!(result, Err(RuntimeError::OutputClosed));
        progress.stop();
        if let Some(e) = &self.endpoint {
            e.refresh();
        }
        self.last_metrics = Some(Arc::clone(&metrics));
        let ctx_metrics = &metrics;
        let label = crate::query_label(plan);
        match result {
            Ok(()) | Err(RuntimeError::OutputClosed) => {
                // the pipeline sets the flag itself only when it fails, so here it was Ctrl-C
                let label = if stop.load(Ordering::Relaxed) { format!("{label} stopped (Ctrl-C)") } else { label };
                errln!("{}", report::summary(&label, ctx_metrics, started.elapsed()));
                true
            }
            Err(e) => {
                errln!("error: {}", crate::report::clip_message(&e.to_string()));
                errln!("{}", report::summary(&format!("{label} failed"), ctx_metrics, started.elapsed()));
                false
            }
        }
    }
}
