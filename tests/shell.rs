//! The interactive shell, driven through a real pseudo-terminal: prompts, multi-line
//! statements, Tab completion, results and the status line of a continuous query, Ctrl-C
//! stopping the query (not the shell), SQL errors with a caret, backslash commands, history,
//! and quitting. Also the shell reading a script from a pipe (no terminal).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rexpect::session::{spawn_command, PtySession};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `weir` in the repository root, with its history in `history`.
fn weir(history: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.current_dir(repo()).env("WEIR_HISTORY", history).env("TERM", "xterm").env_remove("RUST_LOG");
    c
}

fn start(history: &std::path::Path) -> PtySession {
    let mut p = spawn_command(weir(history), Some(30_000)).expect("the shell starts in a pty");
    p.exp_string("\\? lists commands").expect("banner");
    prompt(&mut p);
    p
}

/// Wait for the prompt, and for the editor to take the terminal (keys typed before it reads
/// them may be lost, as in any line editor).
fn prompt(p: &mut PtySession) {
    p.exp_string("weir> ").expect("a prompt");
    std::thread::sleep(std::time::Duration::from_millis(200));
}

const EVENTS: &str = "CREATE TABLE events (sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, \
                      ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) \
                      WITH (connector = 'file', path = 'sql-examples/data/events.csv');";

const TICKS: &str = "CREATE TABLE ticks (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
                     WITH (connector = 'datagen', 'rows-per-second' = '40', \
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '1');";

#[test]
fn weir_run_keeps_a_progress_line_on_a_terminal_unless_quiet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = format!(
        "{} SELECT COUNT(*) AS n FROM ticks;",
        TICKS.replace("'fields.id.start' = '1'", "'fields.id.start' = '1', 'fields.id.end' = '60'")
    );
    let run = |extra: &[&str]| {
        let mut c = weir(&dir.path().join("h"));
        c.arg("run").args(extra).args(["--format", "csv", "-e", &sql]);
        spawn_command(c, Some(30_000)).expect("weir run starts in a pty")
    };
    let mut p = run(&[]);
    p.exp_string(" rows/s ").unwrap();
    p.exp_string(" watermark 20").unwrap();
    p.exp_string("(lag ").unwrap();
    p.exp_string("+U,60").unwrap();
    p.exp_string("query: 60 rows in").unwrap();
    p.exp_eof().unwrap();
    let mut quiet = run(&["--quiet"]);
    let all = quiet.exp_eof().unwrap();
    assert!(all.contains("+U,60") && !all.contains("rows/s") && !all.contains("rows in"), "{all}");
}

#[test]
fn a_session_in_the_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = dir.path().join("history");
    let mut p = start(&history);

    // DDL over a bundled file; a query typed over two lines runs when the ';' comes
    p.send_line(EVENTS).unwrap();
    p.exp_string("CREATE TABLE events").unwrap();
    p.send_line("SELECT sensor, COUNT(*) AS n FROM events").unwrap();
    p.send_line("GROUP BY TUMBLE(ts, INTERVAL '1' HOUR), sensor;").unwrap();
    p.exp_string("| sensor | n ").unwrap();
    p.exp_string("query: 400 rows in").unwrap();
    prompt(&mut p);

    // a view, read as the table is
    p.send_line("CREATE VIEW heavy AS SELECT sensor, ts FROM events WHERE bytes > 1000;").unwrap();
    p.exp_string("CREATE VIEW heavy").unwrap();
    prompt(&mut p);
    p.send_line("SELECT sensor, COUNT(*) AS heavy_n FROM heavy GROUP BY TUMBLE(ts, INTERVAL '1' HOUR), sensor;")
        .unwrap();
    p.exp_string("| sensor | heavy_n ").unwrap();
    p.exp_string("query: 400 rows in").unwrap();
    prompt(&mut p);

    // an unbounded generator: rows stream with a status line until Ctrl-C stops the query
    p.send_line(TICKS).unwrap();
    p.exp_string("CREATE TABLE ticks").unwrap();
    prompt(&mut p);
    p.send_line("SELECT TUMBLE_END(ts, INTERVAL '1' SECOND) AS w_end, COUNT(*) AS n").unwrap();
    p.send_line("FROM ticks GROUP BY TUMBLE(ts, INTERVAL '1' SECOND);").unwrap();
    p.exp_string(" rows/s ").unwrap();
    p.exp_string(" watermark 20").unwrap();
    // a window closes within about a second: its row, then the status line again below it
    p.exp_string("| w_end ").unwrap();
    p.exp_string(" rows/s ").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("query stopped (Ctrl-C)").unwrap();
    prompt(&mut p);

    // the shell is still usable: a SQL error shows a caret, then \d lists both tables and the built-in Nexmark ones
    p.send_line("SELECT nope FROM ticks;").unwrap();
    p.exp_string("input:1:8").unwrap();
    p.exp_string("^").unwrap();
    prompt(&mut p);
    p.send_line("\\d").unwrap();
    p.exp_string("| bid     | nexmark").unwrap();
    p.exp_string("| events  | file").unwrap();
    p.exp_string("| ticks   | datagen").unwrap();
    p.send_line("\\d ticks").unwrap();
    p.exp_string("watermark: ts").unwrap();
    prompt(&mut p);

    // the connectors and their options; a typo in one is caught at CREATE TABLE
    p.send_line("\\connectors").unwrap();
    p.exp_string("datagen (reads)").unwrap();
    p.exp_string("rows-per-second").unwrap();
    p.exp_string("file (reads and writes)").unwrap();
    prompt(&mut p);
    p.send_line("CREATE TABLE typo (a INT) WITH (connector = 'datagen', 'rows-per-secnd' = '5');").unwrap();
    p.exp_string("did you mean 'rows-per-second'?").unwrap();
    prompt(&mut p);

    // Tab completes a backslash command; the new format applies to the next query
    p.send("\\for").unwrap();
    p.send("\t").unwrap();
    p.send_line(" csv").unwrap();
    p.exp_string(" csv").unwrap();
    prompt(&mut p);
    p.send_line("SELECT sensor FROM events WHERE reading > 99.5;").unwrap();
    p.exp_string("sensor\r\n").unwrap();
    p.exp_string("rows in").unwrap();
    p.send_line("\\stats").unwrap();
    p.exp_string("| rows in ").unwrap();
    p.exp_string("| Filter ").unwrap();

    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
    let kept = std::fs::read_to_string(&history).expect("history is written");
    assert!(kept.contains("\\d ticks"), "{kept}");
    assert!(kept.contains("\\format csv"), "Tab completed the command: {kept}");
}

#[test]
fn ctrl_c_twice_at_the_prompt_quits_and_history_is_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let history = dir.path().join("history");
    std::fs::write(&history, "#V2\nSELECT 42;\n").unwrap();
    let mut p = start(&history);
    // Up recalls the last entry of the history file
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.exp_string("SELECT 42;").unwrap();
    // Ctrl-C on a line with text clears it; on the empty line it asks, and the shell stays
    p.send_control('c').unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_control('c').unwrap();
    p.exp_string("Ctrl-C again").unwrap();
    prompt(&mut p);
    p.send_line("\\format").unwrap();
    p.exp_string("format: Table").unwrap();
    prompt(&mut p);
    p.send_control('c').unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn the_shell_reads_a_piped_script_without_prompts() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let script = format!(
        "{EVENTS}\n\\format csv\nSELECT sensor, COUNT(*) AS n\n  FROM events WHERE reading > 99\n  GROUP BY TUMBLE(ts, INTERVAL '1' HOUR), sensor;\nSELECT oops;\n-- a comment before a backslash command\n\\d events\n"
    );
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("weir>"), "no prompts without a terminal: {stdout}");
    assert!(stdout.starts_with("CREATE TABLE events\nsensor,n\n"), "{stdout}");
    assert!(stdout.contains("Table \"events\""), "the error did not end the shell: {stdout}");
    assert!(stderr.contains("error: ") && stderr.contains("oops"), "{stderr}");
    assert!(stderr.contains("query: 400 rows in"), "{stderr}");
}

#[test]
fn ctrl_c_stops_a_busy_or_a_waiting_query_and_the_shell_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = start(&dir.path().join("history"));
    p.send_line("\\format csv").unwrap();
    prompt(&mut p);
    // an updating aggregate over an unbounded generator, as fast as it goes
    p.send_line("CREATE TABLE fast (id BIGINT, v INT) WITH (connector = 'datagen', 'rows-per-second' = '100000000');")
        .unwrap();
    p.exp_string("CREATE TABLE fast\r\n").unwrap();
    prompt(&mut p);
    p.send_line("SELECT v % 4 AS k, COUNT(*) AS n FROM fast GROUP BY v % 4;").unwrap();
    p.exp_string("+U,").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let asked = std::time::Instant::now();
    p.send_control('c').unwrap();
    p.exp_string("query stopped (Ctrl-C)").unwrap();
    assert!(asked.elapsed() < std::time::Duration::from_secs(5), "stopped in {:?}", asked.elapsed());
    prompt(&mut p);
    // a generator whose next row is not due for a second
    p.send_line("CREATE TABLE slow (id BIGINT) WITH (connector = 'datagen', 'rows-per-second' = '1');").unwrap();
    p.exp_string("CREATE TABLE slow\r\n").unwrap();
    prompt(&mut p);
    p.send_line("SELECT COUNT(*) AS n FROM slow;").unwrap();
    p.exp_string("+I,1").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("query stopped (Ctrl-C)").unwrap();
    prompt(&mut p);
    // the shell is usable, and \q quits
    p.send_line("SELECT 1 + ;").unwrap();
    p.exp_string("input:1:").unwrap();
    prompt(&mut p);
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn ctrl_c_gives_up_planning_a_huge_statement() {
    let dir = tempfile::tempdir().expect("tempdir");
    // twenty thousand computed columns take many seconds to plan
    let columns: Vec<String> = (0..20_000).map(|i| format!("auction + {i} AS c{i}")).collect();
    let script = dir.path().join("huge.sql");
    std::fs::write(&script, format!("SELECT {} FROM bid;", columns.join(", "))).unwrap();
    let mut p = start(&dir.path().join("history"));
    p.send_line(&format!("\\i {}", script.display())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let asked = std::time::Instant::now();
    p.send_control('c').unwrap();
    p.exp_string("planning stopped (Ctrl-C)").unwrap();
    assert!(asked.elapsed() < std::time::Duration::from_secs(5), "gave up in {:?}", asked.elapsed());
    prompt(&mut p);
    // the catalog is as it was, and the shell works on
    p.send_line("CREATE TABLE small (id BIGINT) WITH (connector = 'datagen', 'number-of-rows' = '3');").unwrap();
    p.exp_string("CREATE TABLE small\r\n").unwrap();
    prompt(&mut p);
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}
