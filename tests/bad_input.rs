//! Bad input gets a clear, bounded error, never a panic and never a silent loss, through the
//! `weir` binary: limits checked where a value is given (settings, flags, function
//! arguments, input lines, expression depth), awkward data files (a UTF-8 BOM, CRLF line
//! ends, blank lines, timestamps out of range, bad values in columns a query does not read),
//! and messages (a statement cut short, a type mismatch, huge statements and values).

use std::path::Path;
use std::process::{Command, Output};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("RUST_LOG");
    c
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    weir().current_dir(dir).args(args).output().expect("weir runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit code `code`, with each of `needles` on stderr and no panic.
fn expect(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

#[test]
fn limits_are_checked_where_values_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "18446744073709551615";
    let q = "SELECT auction FROM bid";
    expect(&run_in(dir.path(), &["run", "--batch-size", "99999999", "-e", q]), 2, &["from 1 to 1048576"]);
    expect(&run_in(dir.path(), &["run", "--set", &format!("batch.size={huge}"), "-e", q]), 2, &["from 1 to 1048576"]);
    let set = format!("SET batch_size = '{huge}'; {q};");
    expect(
        &run_in(dir.path(), &["run", "-e", &set]),
        3,
        &["batch.size must be a whole number of rows from 1 to 1048576"],
    );
    // a function asked for a huge string: an error, not gigabytes per row
    let lpad = "SELECT lpad(channel, 2147483647, 'é') FROM bid";
    expect(
        &run_in(dir.path(), &["run", "--set", "nexmark.events=100", "-e", lpad]),
        1,
        &["lpad: a result of 2147483647 characters is over the limit of 16777216"],
    );
    let repeat = "SELECT repeat(channel, 100000000) FROM bid";
    expect(&run_in(dir.path(), &["run", "--set", "nexmark.events=100", "-e", repeat]), 1, &["repeat: a result of"]);
    // small ones still work
    let ok = run_in(
        dir.path(),
        &["run", "--format", "csv", "--set", "nexmark.events=100", "-e", "SELECT lpad('ab', 4, 'x') AS p FROM bid"],
    );
    expect(&ok, 0, &[]);
    assert!(stdout(&ok).lines().nth(1) == Some("xxab"), "{}", stdout(&ok));
    // a line that never ends
    for format in ["csv", "json"] {
        let sql = format!("CREATE TABLE z (k VARCHAR) WITH (connector = 'file', path = '/dev/zero', format = '{format}'); SELECT * FROM z;");
        expect(
            &run_in(dir.path(), &["run", "-e", &sql]),
            1,
            &["/dev/zero", "a line longer than 16 MiB without a line end"],
        );
    }
}

/// `weir explain` of `sql`, written to `q.sql` in `dir` (too long for a command line).
fn explain_file(dir: &Path, sql: &str) -> Output {
    std::fs::write(dir.join("q.sql"), sql).unwrap();
    run_in(dir, &["explain", "q.sql"])
}

#[test]
fn deep_expressions_are_refused_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // twenty thousand `+` terms overflowed the stack
    let chain = format!("SELECT {} AS x FROM bid", vec!["auction"; 20_000].join(" + "));
    let out = explain_file(d, &chain);
    expect(&out, 3, &["expression nested too deeply", "q.sql:1:8", "hint:"]);
    assert!(stderr(&out).len() < 2000, "the statement is not echoed whole: {} bytes", stderr(&out).len());
    // nested CASEs and parentheses: refused before sqlparser's own limit gives a misleading message
    let case = |n: usize| {
        let open: String = (0..n).map(|i| format!("CASE WHEN auction > {i} THEN ")).collect();
        format!("SELECT {open}1{} AS x FROM bid", " ELSE 0 END".repeat(n))
    };
    expect(&explain_file(d, &case(3000)), 3, &["nested too deeply", "q.sql:1:"]);
    let parens = format!("SELECT {}1{} FROM bid", "(".repeat(5000), ")".repeat(5000));
    expect(&explain_file(d, &parens), 3, &["nested too deeply", "q.sql:1:"]);
    // within the limit, they plan
    expect(&explain_file(d, &case(100)), 0, &[]);
    let chain = format!("SELECT {} AS x FROM bid", vec!["auction"; 150].join(" + "));
    expect(&explain_file(d, &chain), 0, &[]);
}

#[test]
fn messages_point_at_the_cause_and_stay_short() {
    let dir = tempfile::tempdir().unwrap();
    // cut short: the position is the end of the text
    let out = run_in(dir.path(), &["run", "-e", "SELECT auction FROM bid WHERE"]);
    expect(&out, 3, &["found the end of the input", "<command line>:1:30", "hint: the statement is incomplete"]);
    // a type mismatch is the user's, with a hint
    let out = run_in(dir.path(), &["run", "-e", "SELECT SUM(channel) FROM bid"]);
    expect(&out, 3, &["no function sum(VARCHAR)", "it takes", "hint: cast the argument"]);
    assert!(!stderr(&out).contains("Internal error") && !stderr(&out).contains("bug"), "{}", stderr(&out));
    // a huge bad value is not echoed whole
    let value = "9".repeat(1_000_000);
    std::fs::write(dir.path().join("big.csv"), format!("k,v\na,{value}\n")).unwrap();
    let sql = "CREATE TABLE t (k VARCHAR, v INT) WITH (connector = 'file', path = 'big.csv', format = 'csv'); SELECT * FROM t;";
    let out = run_in(dir.path(), &["run", "-e", sql]);
    expect(&out, 1, &["big.csv:2: bad value '9999", "(1000000 bytes)"]);
    assert!(stderr(&out).len() < 2000, "{} bytes", stderr(&out).len());
}

/// The rows of `sql` as CSV, with its stderr; `SELECT` over `t` declared on `file`.
fn query(dir: &Path, ddl: &str, select: &str) -> Output {
    run_in(dir, &["run", "--format", "csv", "-e", &format!("{ddl} {select}")])
}

#[test]
fn awkward_files_read_as_people_expect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a JSON file starting with a byte-order mark keeps its first row
    std::fs::write(d.join("bom.json"), "\u{feff}{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n").unwrap();
    let out =
        query(d, "CREATE TABLE t (k VARCHAR, v INT) WITH (connector = 'file', path = 'bom.json');", "SELECT * FROM t;");
    expect(&out, 0, &["2 rows in"]);
    assert_eq!(stdout(&out), "k,v\na,1\nb,2\n");
    // CRLF line ends: errors and dead letters name the right line; blank and whitespace-only
    // lines are no rows
    let crlf = "k,v\r\na,1\r\n\r\n  \t \r\n\"c\r\nd\",2\r\ne,x\r\nf,3\r\n";
    std::fs::write(d.join("crlf.csv"), crlf).unwrap();
    let ddl =
        |extra: &str| format!("CREATE TABLE t (k VARCHAR, v INT) WITH (connector = 'file', path = 'crlf.csv'{extra});");
    expect(&query(d, &ddl(""), "SELECT * FROM t;"), 1, &["crlf.csv:7: bad value 'x' for column 'v' (INT)"]);
    let out = query(d, &ddl(", dead_letter = 'dead.jsonl'"), "SELECT k, v, length(k) AS n FROM t;");
    expect(&out, 0, &["3 rows in", "1 malformed rows sent to the dead-letter file"]);
    assert_eq!(stdout(&out), "k,v,n\na,1,1\n\"c\r\nd\",2,4\nf,3,1\n");
    let dead: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(d.join("dead.jsonl")).unwrap().trim()).unwrap();
    assert_eq!((dead["line"].as_u64(), dead["row"].as_str()), (Some(7), Some("e,x")));
    // the last line without a line end is still counted as its own line
    std::fs::write(d.join("noend.csv"), "k,v\na,1\n\nb,x").unwrap();
    let noend = "CREATE TABLE t (k VARCHAR, v INT) WITH (connector = 'file', path = 'noend.csv');";
    expect(&query(d, noend, "SELECT * FROM t;"), 1, &["noend.csv:4: bad value 'x'"]);
    // a timestamp past what weir can compute with is a malformed value: skipped and counted
    std::fs::write(d.join("far.csv"), "k,ts\na,2024-01-01 00:00:01\nb,9999999999999999\nc,2024-01-01 00:00:03\n")
        .unwrap();
    let far = "CREATE TABLE t (k VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (connector = 'file', path = 'far.csv', bad_data = 'skip');";
    let out = query(d, far, "SELECT k, COUNT(*) AS n FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;");
    expect(&out, 0, &["2 rows in", "1 malformed rows skipped"]);
}

#[test]
fn a_row_is_malformed_whichever_columns_the_query_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.csv"),
        "k,v,ts\na,1,2024-01-01 00:00:01\nb,oops,2024-01-01 00:00:02\nc,3,2024-01-01 00:00:03\n",
    )
    .unwrap();
    let ddl = "CREATE TABLE t (k VARCHAR, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (connector = 'file', path = 's.csv', bad_data = 'skip');";
    for select in
        ["SELECT * FROM t;", "SELECT k FROM t;", "SELECT COUNT(*) AS n FROM t GROUP BY TUMBLE(ts, INTERVAL '1' HOUR);"]
    {
        let out = query(dir.path(), ddl, select);
        expect(&out, 0, &["2 rows in", "1 malformed rows skipped"]);
    }
    let strict = ddl.replace(", bad_data = 'skip'", "");
    let out = query(dir.path(), &strict, "SELECT COUNT(*) AS n FROM t GROUP BY TUMBLE(ts, INTERVAL '1' HOUR);");
    expect(&out, 1, &["s.csv:3: bad value 'oops' for column 'v' (INT)"]);
}
