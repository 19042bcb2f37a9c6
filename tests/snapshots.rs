//! Snapshot tests of what the `weir` command prints (stdout and stderr), with timings, rates,
//! memory and wall-clock times replaced by placeholders. A change to any of these outputs
//! shows up as a diff against `tests/snapshots/`; review it and accept it with
//! `INSTA_UPDATE=always cargo test --test snapshots` (or `cargo insta review`).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `weir args…` in the repository root; its exit code, stdout and stderr as one text.
fn weir(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("weir runs");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        filter(&String::from_utf8_lossy(&out.stdout)),
        filter(&String::from_utf8_lossy(&out.stderr))
    )
}

/// Replace what changes from run to run: `0.003 s (156.5k rows/s)`, `peak memory 39 MiB`,
/// `time 0.42 ms`, `(peak 58.7 KiB)`.
fn filter(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut words: Vec<String> = Vec::new();
        let mut it = line.split(' ').peekable();
        while let Some(w) = it.next() {
            let next = it.peek().copied().unwrap_or("");
            let number = w.trim_matches(|c| c == '(' || c == ',').parse::<f64>().is_ok();
            let unit = next.trim_end_matches([',', ')']);
            if number && ["s", "ms", "B", "KiB", "MiB", "GiB"].contains(&unit) {
                words.push("[N]".into());
            } else if w.starts_with('(') && next.starts_with("rows/s") {
                words.push("([N]".into());
            } else {
                words.push(w.to_string());
            }
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn run_the_bundled_example_as_csv() {
    // the parallelism is pinned: the default, the number of cores, differs between machines
    insta::assert_snapshot!(weir(&[
        "run",
        "sql-examples/tumble_group_window.sql",
        "--format",
        "csv",
        "--parallelism",
        "2"
    ]));
}

#[test]
fn explain_the_bundled_example() {
    insta::assert_snapshot!(weir(&["explain", "sql-examples/tumble_group_window.sql", "--parallelism", "2"]));
    insta::assert_snapshot!(
        "explain_on_one_thread",
        weir(&["explain", "sql-examples/tumble_group_window.sql", "--parallelism", "1"])
    );
}

#[test]
fn explain_analyze_with_timings_filtered() {
    let sql = std::fs::read_to_string(repo().join("sql-examples/tumble_group_window.sql"))
        .expect("the example")
        .replace("\nSELECT ", "\nEXPLAIN ANALYZE SELECT ")
        .replace("'data/events.csv'", "'sql-examples/data/events.csv'");
    insta::assert_snapshot!(weir(&["run", "-e", &sql, "--parallelism", "2"]));
}

#[test]
fn an_sql_error_with_its_caret_and_hint() {
    insta::assert_snapshot!(weir(&[
        "run",
        "-e",
        "CREATE TABLE t (a INT, ts TIMESTAMP(3)) WITH (connector = 'datagen');\nSELECT a, COUNT(*) FROM t\nGROUP BY TUMBLE(ts, INTERVAL '1' SECOND), a;"
    ]));
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("help", weir(&["--help"]));
    insta::assert_snapshot!("run_help", weir(&["run", "--help"]));
}
