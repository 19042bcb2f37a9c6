//! End-to-end tests of the `weir` binary: `weir run` and `weir explain`, output formats, the
//! run summary, exit codes and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::job::{sample, scrape};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const ISSUE_QUERY: &str = "
CREATE TABLE events (
    sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'events.csv', format = 'csv');

SELECT sensor,
       TUMBLE_START(ts, INTERVAL '10' SECOND) AS w_start,
       TUMBLE_END(ts, INTERVAL '10' SECOND)   AS w_end,
       COUNT(*) AS n, SUM(bytes) AS total, MIN(reading) AS lo, MAX(reading) AS hi,
       AVG(reading) AS mean, COUNT(DISTINCT site) AS sites
FROM events
WHERE reading > 0
GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor
HAVING COUNT(*) > 1;
";

/// A directory holding `q.sql` and a copy of the test data as `events.csv`.
fn workdir(sql: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(repo().join("tests/data/sensors.csv"), dir.path().join("events.csv")).expect("copy data");
    std::fs::write(dir.path().join("q.sql"), sql).expect("write sql");
    dir
}

/// Start `command` with stdin, stdout and stderr piped.
fn spawn_piped(command: &mut Command) -> std::process::Child {
    use std::process::Stdio;
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns")
}

/// The lines `child` prints on stdout, as they come.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    weir().current_dir(dir).args(args).output().expect("weir runs")
}

#[test]
fn runs_the_issue_query_as_csv() {
    let dir = workdir(ISSUE_QUERY);
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "sensor,w_start,w_end,n,total,lo,hi,mean,sites\n\
         s1,2024-01-01T00:00:00,2024-01-01T00:00:10,3,1000,1.5,5.0,3.5,2\n\
         s2,2024-01-01T00:00:10,2024-01-01T00:00:20,3,2300,3.0,11.0,7.666666666666667,3\n\
         s1,2024-01-01T00:00:20,2024-01-01T00:00:30,2,2200,10.0,12.0,11.0,2\n"
    );
    let err = stderr(&out);
    assert!(err.contains("16 rows in"), "{err}");
    assert!(err.contains("3 rows out"), "{err}");
    assert!(err.contains("2 late rows dropped"), "{err}");
}

#[test]
fn json_and_table_formats() {
    let dir = workdir(ISSUE_QUERY);
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "json", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        r#"{"sensor":"s1","w_start":"2024-01-01T00:00:00","w_end":"2024-01-01T00:00:10","n":3,"total":1000,"lo":1.5,"hi":5.0,"mean":3.5,"sites":2}"#
    );
    assert!(stderr(&out).is_empty(), "--quiet prints no summary: {}", stderr(&out));

    let out = run_in(dir.path(), &["run", "q.sql"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("| sensor | w_start             |"), "{text}");
    assert!(text.contains("| s2     | 2024-01-01T00:00:10 |"), "{text}");
}

#[test]
fn window_tvf_form_gives_the_same_rows() {
    let sql = ISSUE_QUERY
        .replace("TUMBLE_START(ts, INTERVAL '10' SECOND) AS w_start", "window_start AS w_start")
        .replace("TUMBLE_END(ts, INTERVAL '10' SECOND)   AS w_end", "window_end AS w_end")
        .replace("FROM events", "FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))")
        .replace("GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor", "GROUP BY window_start, window_end, sensor");
    let group = run_in(workdir(ISSUE_QUERY).path(), &["run", "q.sql", "--format", "csv"]);
    let tvf = run_in(workdir(&sql).path(), &["run", "q.sql", "--format", "csv"]);
    assert!(tvf.status.success(), "{}", stderr(&tvf));
    assert_eq!(stdout(&tvf), stdout(&group));
}

#[test]
fn results_do_not_depend_on_batch_size() {
    let dir = workdir(ISSUE_QUERY);
    let base = stdout(&run_in(dir.path(), &["run", "q.sql", "--format", "csv"]));
    for size in ["1", "3", "7"] {
        let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv", "--batch-size", size]);
        assert_eq!(stdout(&out), base, "batch size {size}");
        assert!(stderr(&out).contains("2 late rows dropped"), "batch size {size}: {}", stderr(&out));
    }
}

#[test]
fn source_files_are_found_next_to_the_script() {
    let dir = workdir(ISSUE_QUERY);
    // run from another directory: events.csv is not in the working directory
    let out = weir()
        .current_dir(repo())
        .args(["run", &dir.path().join("q.sql").display().to_string(), "--format", "csv"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4);
}

#[test]
fn insert_into_file_sinks_with_several_statements_and_comments() {
    let sql = format!(
        "{}\n-- sinks\nCREATE TABLE per_window (sensor VARCHAR, w_end TIMESTAMP(3), n BIGINT)\n\
         WITH ('connector' = 'file', 'path' = 'out/per_window.csv', 'format' = 'csv');\n\
         CREATE TABLE big /* json, no columns */ WITH (connector = 'file', path = 'out/big.json', format = 'json');\n\
         INSERT INTO per_window SELECT sensor, TUMBLE_END(ts, INTERVAL '10' SECOND), COUNT(*) FROM events\n\
           GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor;\n\
         INSERT INTO big SELECT sensor, bytes, ts FROM events WHERE bytes >= 1400;",
        ISSUE_QUERY.split("SELECT sensor,").next().unwrap_or_default()
    );
    let dir = workdir(&sql);
    let out = run_in(dir.path(), &["run", "q.sql"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "INSERT writes nothing to stdout");
    let csv = std::fs::read_to_string(dir.path().join("out/per_window.csv")).expect("csv sink written");
    assert_eq!(csv.lines().next(), Some("sensor,w_end,n"));
    assert_eq!(csv.lines().count(), 8);
    assert!(csv.contains("s2,2024-01-01T00:00:20,4\n"), "{csv}");
    let json = std::fs::read_to_string(dir.path().join("out/big.json")).expect("json sink written");
    assert_eq!(
        json,
        "{\"sensor\":\"s1\",\"bytes\":1400,\"ts\":\"2024-01-01T00:00:35\"}\n{\"sensor\":\"s2\",\"bytes\":1500,\"ts\":\"2024-01-01T00:00:30\"}\n"
    );
    let err = stderr(&out);
    assert!(err.contains("INSERT INTO per_window (1 of 2)") && err.contains("INSERT INTO big (2 of 2)"), "{err}");
}

#[test]
fn explain_prints_the_streaming_plan() {
    let dir = workdir(ISSUE_QUERY);
    let out = run_in(dir.path(), &["explain", "q.sql"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Sink: client, columns: sensor, w_start, w_end, n, total, lo, hi, mean, sites"));
    assert!(text.contains("WindowAggregate: window: TUMBLE(size 10s) on events.ts, keys: [events.sensor]"), "{text}");
    assert!(text.contains("Filter: count(Int64(1)) > 1"), "{text}");
    assert!(text.contains("Filter: events.reading > 0"), "{text}");
    assert!(
        lines.last().is_some_and(|l| l
            .trim_start()
            .starts_with("Source: events (connector=file, format=csv, path=events.csv), watermark: ts - 2s")),
        "{text}"
    );
    // explain does not read the data
    std::fs::remove_file(dir.path().join("events.csv")).expect("remove");
    assert!(run_in(dir.path(), &["explain", "q.sql"]).status.success());
    // the same plan as JSON, for tools
    let out = run_in(dir.path(), &["explain", "q.sql", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert_eq!(json.lines().count(), 1, "{json}");
    for needle in [
        r#""updating":false"#,
        r#""sink":null"#,
        r#""table":"events""#,
        r#""watermark":{"column":"ts","delay_nanos":2000000000}"#,
        r#"{"name":"reading","sql_type":"DOUBLE","nullable":true}"#,
        r#"{"depth":0,"op":null,"operator":"Sink","details":"client, columns: sensor, w_start"#,
        r#""op":{"Source":0},"operator":"Source""#,
    ] {
        assert!(json.contains(needle), "{needle} in {json}");
    }
}

fn assert_sql_error(sql: &str, needles: &[&str]) {
    let dir = workdir(sql);
    let out = run_in(dir.path(), &["run", "q.sql"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let err = stderr(&out);
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

const DDL: &str = "CREATE TABLE events (sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'file', path = 'events.csv', format = 'csv');\n";

#[test]
fn sql_errors_exit_3_with_position_and_hint() {
    assert_sql_error(
        &format!("{DDL}SELECT sensor, nope FROM events;"),
        &["No field named nope", "--> q.sql:3:16", "^"],
    );
    assert_sql_error(&format!("{DDL}SELECT * FROM evnts;"), &["table 'evnts' not found", "declared tables: events"]);
    assert_sql_error(&format!("{DDL}SELECT sensor FROM events WHERE;"), &["syntax error", "q.sql:3:"]);
    assert_sql_error(
        &format!("{DDL}SELECT reading + site FROM events;"),
        &["Cannot coerce arithmetic expression Float64 + Utf8"],
    );
    assert_sql_error(
        "CREATE TABLE events (sensor VARCHAR, ts TIMESTAMP(3)) WITH (connector = 'file', path = 'events.csv', format = 'csv');
         SELECT COUNT(*) FROM events GROUP BY TUMBLE(ts, INTERVAL '10' SECOND);",
        &["needs a watermark", "no WATERMARK FOR clause", "hint: declare one"],
    );
    assert_sql_error(
        &format!(
            "{DDL}CREATE TABLE counts WITH (connector = 'file', path = 'counts.csv', format = 'csv');
             INSERT INTO counts SELECT sensor, COUNT(*) FROM events GROUP BY sensor;"
        ),
        &["table 'counts' is append-only", "--> q.sql:4:14", "hint: declare the sink with 'changelog' = 'rows'"],
    );
    assert_sql_error(
        &format!("{DDL}SELECT * FROM events e1 JOIN events e2 ON e1.sensor = e2.sensor;"),
        &[
            "a join that keeps every row of both inputs (events and events) forever",
            "--> q.sql:3:1",
            "SET state.ttl = '1 h'",
        ],
    );
    assert_sql_error(
        "CREATE TABLE events (ts TIMESTAMP(3)) WITH (connector = 'file', path = 'events.csv', format = 'xml'); SELECT * FROM events;",
        &["option 'format': expected one of csv, json", "--> q.sql:1:86"],
    );
}

#[test]
fn malformed_rows_fail_with_file_and_line_or_are_skipped_or_dead_lettered() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(repo().join("tests/data/bad_bytes.csv"), dir.path().join("bad.csv")).expect("copy");
    let ddl = |policy: &str| {
        format!(
            "CREATE TABLE b (sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts) WITH (connector = 'file', path = 'bad.csv', format = 'csv'{policy});
             SELECT sensor, bytes FROM b;"
        )
    };
    std::fs::write(dir.path().join("q.sql"), ddl("")).expect("write");
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("bad.csv:3: bad value 'abc' for column 'bytes' (BIGINT)"), "{err}");

    std::fs::write(dir.path().join("q.sql"), ddl(", bad_data = 'skip'")).expect("write");
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sensor,bytes\ns1,100\ns2,7\n");
    assert!(stderr(&out).contains("1 malformed rows skipped"), "{}", stderr(&out));

    // or kept in a dead-letter file, one JSON object per line, appended run after run
    std::fs::write(dir.path().join("q.sql"), ddl(", dead_letter = 'rejects/bad.jsonl'")).expect("write");
    for run in 1..=2 {
        let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "sensor,bytes\ns1,100\ns2,7\n");
        assert!(stderr(&out).contains("1 malformed rows sent to the dead-letter file"), "{}", stderr(&out));
        let text = std::fs::read_to_string(dir.path().join("rejects/bad.jsonl")).expect("the dead-letter file");
        assert_eq!(text.lines().count(), run, "{text}");
        let entry: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or_default()).expect("json");
        assert_eq!(entry["source"], "bad.csv");
        assert_eq!(entry["line"], 3);
        assert_eq!(entry["error"], "bad value 'abc' for column 'bytes' (BIGINT)");
        assert_eq!(entry["row"], "s1,b,2.5,abc,2024-01-01 00:00:02.000");
    }

    // a JSON line that is not JSON, and one with a bad value, as read
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"sensor\": \"s1\", \"bytes\": 5}\n{\"sensor\": \n{\"sensor\": \"s2\", \"bytes\": \"x\"}\n{\"sensor\": \"s3\", \"bytes\": 6}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("j.sql"),
        "CREATE TABLE j (sensor VARCHAR, bytes BIGINT) WITH (connector = 'file', path = 'bad.jsonl', format = 'json',
           bad_data = 'dead_letter', dead_letter = 'bad-json.jsonl');
         SELECT sensor, bytes FROM j;",
    )
    .expect("write");
    let out = run_in(dir.path(), &["run", "j.sql", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sensor,bytes\ns1,5\ns3,6\n");
    let text = std::fs::read_to_string(dir.path().join("bad-json.jsonl")).expect("the dead-letter file");
    let entries: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(entries.len(), 2, "{text}");
    assert_eq!((entries[0]["line"].as_u64(), entries[0]["row"].as_str()), (Some(2), Some("{\"sensor\": ")));
    assert!(entries[0]["error"].as_str().unwrap_or_default().starts_with("invalid JSON"), "{text}");
    assert_eq!(entries[1]["line"], 3);
    assert_eq!(entries[1]["row"], "{\"sensor\": \"s2\", \"bytes\": \"x\"}");
}

#[test]
fn command_line_mistakes_exit_2() {
    let out = weir().args(["run"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("give a SQL file"));
    let out = weir().args(["run", "no-such-file.sql"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read no-such-file.sql"));
    let out = weir().args(["run", "x.sql", "--format", "xml"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = weir().args(["run", "--frobnicate"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn execute_flag_and_settings() {
    let dir = workdir("");
    let sql = format!("{DDL} SET batch.size = 2; SELECT sensor, upper(site) AS s FROM events WHERE bytes > 1350;");
    let out = run_in(dir.path(), &["run", "-e", &sql, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sensor,s\ns1,C\ns2,A\n");
    let out = run_in(dir.path(), &["run", "-e", &sql, "--set", "nope=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown setting 'nope'"));
}

#[test]
fn bundled_example_runs_from_the_repository_root() {
    let out = weir()
        .current_dir(repo())
        .args(["run", "sql-examples/tumble_group_window.sql", "--format", "csv"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sensor,w_start,w_end,n,total,lo,hi,mean,sites\n"));
    assert!(stdout(&out).lines().count() > 10);
}

#[test]
fn updating_results_carry_an_op_column_in_csv_and_json() {
    let dir = workdir(&format!("{DDL}SELECT sensor, COUNT(*) AS n FROM events WHERE sensor = 's2' GROUP BY sensor;"));
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv", "--batch-size", "8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "op,sensor,n\n+I,s2,3\n-U,s2,3\n+U,s2,7\n");
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "json", "--batch-size", "8"]);
    assert_eq!(
        stdout(&out),
        "{\"op\":\"+I\",\"sensor\":\"s2\",\"n\":3}\n{\"op\":\"-U\",\"sensor\":\"s2\",\"n\":3}\n{\"op\":\"+U\",\"sensor\":\"s2\",\"n\":7}\n"
    );
    // the TTL from the command line, in the summary
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv", "--batch-size", "2", "--set", "state.ttl=1 s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("keys expired (state TTL)"), "{}", stderr(&out));
    assert_eq!(run_in(dir.path(), &["run", "q.sql", "--set", "state.ttl=soon"]).status.code(), Some(2));
}

#[test]
fn every_sql_example_runs() {
    let dir = repo().join("sql-examples");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).expect("sql-examples exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sql") {
            let text = std::fs::read_to_string(&path).expect("readable");
            assert!(text.starts_with("--"), "{} must start with a comment saying what it shows", path.display());
            // run from a scratch directory: sources are found next to the script, sinks land here
            let out = weir()
                .current_dir(out_dir.path())
                .args(["run", &path.display().to_string(), "--format", "csv"])
                .output()
                .expect("runs");
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            ran += 1;
        }
    }
    assert!(ran >= 3, "expected the bundled examples, ran {ran}");
    assert!(out_dir.path().join("out/per_minute.csv").exists());
}

#[test]
fn stdin_connector_reads_piped_rows() {
    use std::io::Write as _;
    let sql =
        "CREATE TABLE s (sensor VARCHAR, bytes BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'stdin', format = 'csv');
               SELECT sensor, COUNT(*) AS n, SUM(bytes) AS b FROM s GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor;";
    let mut child = spawn_piped(weir().args(["run", "-e", sql, "--format", "csv"]));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(b"sensor,bytes,ts\na,1,2024-01-01 00:00:01\nb,2,2024-01-01 00:00:02\na,3,2024-01-01 00:00:12\n")
        .expect("write");
    drop(input);
    let out = child.wait_with_output().expect("waits");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sensor,n,b\na,1,1\nb,1,2\na,1,3\n");
}

#[test]
fn an_idle_input_stops_holding_back_the_watermark_of_a_union() {
    idle_stdin_in_a_union(", 'idle_timeout' = '1 s'", &[]);
}

#[test]
fn the_session_idle_timeout_applies_to_inputs_without_their_own() {
    idle_stdin_in_a_union("", &["--set", "source.idle_timeout=1 s"]);
}

/// A file unioned with a silent stdin whose idle timeout is `option` on its table or in
/// `args`.
fn idle_stdin_in_a_union(option: &str, args: &[&str]) {
    // stdin stays open and silent: without an idle timeout no window of the union could
    // close until it ends; with it, every window of the file fires while stdin is still open
    let dir = workdir(&format!(
        "CREATE TABLE events (sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, ts TIMESTAMP(3),
                              WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = 'events.csv', format = 'csv');
         CREATE TABLE live (sensor VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
         WITH (connector = 'stdin', format = 'csv'{option});
         SELECT TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS n
         FROM (SELECT sensor, ts FROM events UNION ALL SELECT sensor, ts FROM live)
         GROUP BY TUMBLE(ts, INTERVAL '10' SECOND);"
    ));
    let mut child = spawn_piped(weir().current_dir(dir.path()).args(["run", "q.sql", "--format", "csv"]).args(args));
    let mut input = child.stdin.take().expect("stdin");
    // the header only: the source opens, then sends nothing
    std::io::Write::write_all(&mut input, b"sensor,ts\n").expect("write");
    let rx = stdout_lines(&mut child);
    let mut lines = Vec::new();
    while lines.len() < 5 {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(l) => lines.push(l),
            Err(_) => break,
        }
    }
    drop(input);
    let status = child.wait().expect("waits");
    assert!(status.success());
    // the file's rows arrive before stdin is idle, so none is late (stdin held the watermark)
    assert_eq!(
        lines,
        ["w,n", "2024-01-01T00:00:00,6", "2024-01-01T00:00:10,6", "2024-01-01T00:00:20,2", "2024-01-01T00:00:30,2"],
        "windows must fire while stdin is still open"
    );
}

/// Milliseconds since the epoch.
fn wall_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

#[test]
fn processing_time_windows_close_on_the_wall_clock() {
    use std::io::Write;
    // stdin stays open: a window can only close because the clock passed its end
    let dir = workdir(
        "CREATE TABLE live (k VARCHAR, v BIGINT, p AS PROCTIME()) WITH (connector = 'stdin', format = 'csv');
         SELECT k, TUMBLE_START(p, INTERVAL '1' SECOND) AS w, SUM(v) AS total
         FROM live GROUP BY TUMBLE(p, INTERVAL '1' SECOND), k;",
    );
    let mut child =
        spawn_piped(weir().current_dir(dir.path()).args(["run", "q.sql", "--format", "csv", "--set", "batch.size=1"]));
    let mut input = child.stdin.take().expect("stdin");
    let rx = stdout_lines(&mut child);
    let wait = std::time::Duration::from_secs(30);
    // (key, window start in ms, total) of the rows printed, until `want` is reached per key
    let mut seen: Vec<(String, i64, i64)> = Vec::new();
    let read_until = |want: &[(&str, i64)], seen: &mut Vec<(String, i64, i64)>| {
        let total =
            |seen: &Vec<(String, i64, i64)>, k: &str| seen.iter().filter(|r| r.0 == k).map(|r| r.2).sum::<i64>();
        while want.iter().any(|(k, n)| total(seen, k) < *n) {
            let line = rx.recv_timeout(wait).expect("a window closes on the wall clock while stdin is still open");
            if line == "k,w,total" {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let start = chrono_free_millis(f[1]);
            seen.push((f[0].to_string(), start, f[2].parse().expect("a total")));
        }
    };
    let t0 = wall_millis();
    input.write_all(b"k,v\na,1\na,2\nb,5\n").expect("write");
    input.flush().expect("flush");
    read_until(&[("a", 3), ("b", 5)], &mut seen);
    let t1 = wall_millis();
    input.write_all(b"a,10\n").expect("write");
    input.flush().expect("flush");
    read_until(&[("a", 13), ("b", 5)], &mut seen);
    let t2 = wall_millis();
    drop(input);
    let status = child.wait().expect("waits");
    assert!(status.success());
    // windows are one second of the wall clock, aligned, and hold rows read during the run
    for (k, start, _) in &seen {
        assert_eq!(start % 1000, 0, "{seen:?}");
        assert!(*start >= t0 - t0 % 1000 && *start <= t2, "{k}: window {start} outside {t0}..{t2}");
    }
    let last = seen.last().expect("rows");
    assert_eq!((last.0.as_str(), last.2), ("a", 10), "{seen:?}");
    assert!(last.1 >= t1 - t1 % 1000, "the second write is in a later window: {seen:?}");
}

/// `2026-01-02T03:04:05.678` as milliseconds since the epoch (UTC).
fn chrono_free_millis(text: &str) -> i64 {
    let (date, time) = text.split_once('T').expect("a timestamp");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().expect("date")).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().expect("time")).collect();
    // days from civil (Howard Hinnant's algorithm)
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let ms: i64 = format!("{frac:0<3}")[..3].parse().expect("millis");
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms
}

#[test]
fn dropped_rows_of_a_table_with_a_processing_time_column_are_the_rows_read() {
    let dir = workdir(
        "CREATE TABLE events (sensor VARCHAR, site VARCHAR, reading DOUBLE, bytes BIGINT, p AS PROCTIME(), ts TIMESTAMP(3),
                              WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = 'events.csv', format = 'csv', 'late_rows' = 'late');
         CREATE TABLE late WITH (connector = 'file', path = 'late.csv', format = 'csv');
         SELECT sensor, COUNT(*) AS n FROM events GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), sensor;",
    );
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let late = std::fs::read_to_string(dir.path().join("late.csv")).expect("late rows written");
    let mut lines = late.lines();
    assert_eq!(lines.next(), Some("sensor,site,reading,bytes,ts,reason"));
    assert!(lines.next().is_some_and(|l| l.starts_with("s")), "{late}");
}

#[test]
fn explain_analyze_shows_each_operator_s_metrics() {
    let dir = workdir(ISSUE_QUERY);
    let sql = std::fs::read_to_string(dir.path().join("q.sql"))
        .unwrap()
        .replace("\nSELECT sensor,", "\nEXPLAIN ANALYZE SELECT sensor,");
    std::fs::write(dir.path().join("analyze.sql"), sql).unwrap();
    let out = run_in(dir.path(), &["run", "analyze.sql"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // no result rows, the plan with a metrics line under each source and operator
    assert!(!text.contains("| sensor"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let under = |node: &str| -> &str {
        let i = lines.iter().position(|l| l.trim_start().starts_with(node)).unwrap_or_else(|| panic!("{node}: {text}"));
        lines[i + 1].trim_start()
    };
    assert!(under("Source: events").starts_with("metrics: rows read 16, batches 1, time "), "{text}");
    // 13 of the 16 readings are positive; 2 of those are late; 6 windows, 3 with n > 1
    assert!(under("Filter: events.reading > 0").starts_with("metrics: rows in 16, rows out 13, batches 1"), "{text}");
    let window = under("WindowAggregate:");
    assert!(window.starts_with("metrics: rows in 13, rows out 6,"), "{text}");
    assert!(window.contains("dropped 2 (late row-window pairs, or rows without an event time)"), "{text}");
    assert!(under("Filter: count(Int64(1)) > 1").starts_with("metrics: rows in 6, rows out 3,"), "{text}");
    assert!(window.contains("state 0 rows / 0 B (peak "), "{text}");
    assert!(window.ends_with("watermark end of input"), "{text}");
    // the same metrics after the results with --explain-analyze, on stderr
    let out = run_in(dir.path(), &["run", "q.sql", "--format", "csv", "--explain-analyze"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sensor,w_start,"), "{}", stdout(&out));
    assert!(stderr(&out).contains("metrics: rows in 13, rows out 6,"), "{}", stderr(&out));
}

/// `GET /metrics` over plain HTTP; `None` while nothing listens yet.
#[test]
fn the_metrics_endpoint_serves_the_running_query_in_prometheus_format() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sql = "CREATE TABLE ticks (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
               WITH (connector = 'datagen', 'rows-per-second' = '200', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1'); \
               SELECT COUNT(*) AS n FROM ticks GROUP BY TUMBLE(ts, INTERVAL '1' SECOND);";
    let mut child = spawn_piped(
        weir()
            .args(["run", "--quiet", "--format", "csv", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-e", sql]),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = String::new();
    let text = loop {
        assert!(std::time::Instant::now() < deadline, "no windows fired in time: {last}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let Some(text) = scrape(port) else { continue };
        if sample(&text, "weir_windows_fired_total{query=\"1\"}").is_some_and(|n| n >= 1.0) {
            break text;
        }
        last = text;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("# TYPE weir_rows_in_total counter"), "{text}");
    let read = sample(&text, "weir_rows_in_total{query=\"1\"}").expect("rows in");
    assert!(read > 0.0, "{text}");
    let source =
        sample(&text, "weir_operator_rows_out_total{query=\"1\",operator=\"Source\",node=\"source 0\",instance=\"0\"}");
    assert!(source.is_some_and(|n| n > 0.0 && n <= read), "{text}");
    let window = "{query=\"1\",operator=\"WindowAggregate\",node=\"op 0\",instance=\"0\"}";
    assert!(sample(&text, &format!("weir_operator_rows_in_total{window}")).is_some_and(|n| n > 0.0), "{text}");
    assert!(sample(&text, &format!("weir_operator_state_rows{window}")).is_some(), "{text}");
    let lag = sample(&text, "weir_watermark_lag_seconds{query=\"1\"}").expect("a watermark lag");
    assert!((0.0..30.0).contains(&lag), "{text}");
}

#[test]
fn verbose_flag_and_rust_log_turn_on_structured_logs() {
    let dir = workdir(ISSUE_QUERY);
    let quiet = run_in(dir.path(), &["run", "q.sql", "--format", "csv"]);
    assert!(!stderr(&quiet).contains(" INFO "), "{}", stderr(&quiet));
    let out = run_in(dir.path(), &["-v", "run", "q.sql", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("INFO weir_cli: query starting"), "{err}");
    assert!(err.contains("INFO weir_connectors::file: reading table=events"), "{err}");
    assert!(!err.contains("DEBUG"), "{err}");
    let out =
        weir().current_dir(dir.path()).env("RUST_LOG", "weir_runtime=debug").args(["run", "q.sql"]).output().unwrap();
    let err = stderr(&out);
    assert!(err.contains("DEBUG weir_runtime::operators::window_aggregate: window fires"), "{err}");
    assert!(!err.contains("INFO weir_cli"), "RUST_LOG decides: {err}");
}

#[test]
fn nexmark_tables_need_no_setup() {
    // the built-in bid table, bounded on the command line; 100 000 events are 10 s of event time
    let out = weir()
        .args(["run", "--format", "csv", "--set", "nexmark.events=100000", "-e"])
        .arg("SELECT window_start, COUNT(*) AS bids FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '5' SECOND)) GROUP BY window_start, window_end")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "window_start,bids\n2015-07-15T00:00:00,46000\n2015-07-15T00:00:05,46000\n");
    // a Nexmark query file, joins and all
    let out = weir()
        .args(["run", "--quiet", "--format", "csv", "--set", "nexmark.events=50000"])
        .arg(repo().join("sql-examples/nexmark/q8.sql"))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("id,name,starttime\n"), "{}", stdout(&out));
    assert!(stdout(&out).lines().count() > 10, "{}", stdout(&out));
    // events shuffled over more event time than the watermark delay: a warning, then late rows
    let out = weir()
        .args(["run", "--format", "csv", "--set", "nexmark.events=100000", "--set", "nexmark.out_of_order_group=60000"])
        .args(["-e", "SELECT COUNT(*) AS n FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) GROUP BY window_start, window_end"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("table 'bid': its events are out of order by up to 5999 ms of event time (groups of 60000 events), more than its watermark delay (4000 ms)"),
        "{err}"
    );
    assert!(!err.contains(" 0 late rows dropped"), "{err}");
}

#[test]
fn bench_nexmark_prints_a_line_per_query_and_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("results.json");
    let out = weir()
        .args(["bench", "nexmark", "--events", "20000", "--queries", "q0,q5,q13", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for q in ["q0 ", "q5 ", "q13 "] {
        assert!(text.lines().any(|l| l.starts_with(q)), "no line for {q} in\n{text}");
    }
    assert!(text.contains("events/s/core") && text.contains("peak RSS") && text.contains("rows read"), "{text}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    let rows = results.as_array().expect("an array");
    assert_eq!(rows.len(), 3);
    // q0 passes every bid through: 46 of every 50 events
    assert_eq!(rows[0]["query"], "q0");
    assert_eq!(rows[0]["output_rows"], 18_400);
    // only bids are generated for it; q13 also reads its 10 000-row file
    assert_eq!(rows[0]["rows_read"], 18_400);
    assert_eq!(rows[2]["rows_read"], 28_400);
    assert!(rows[0]["events_per_core_second"].as_f64().expect("a number") > 0.0);
    assert!(rows[0]["peak_rss_bytes"].as_u64().expect("a number") > 0);
    let cores = rows[0]["cores_allowed"].as_u64().expect("a number");
    assert!(cores >= 1, "{results}");
    // --pin-cores runs parallelism N on N cores (at most the cores there are)
    let out = weir()
        .args(["bench", "nexmark", "--events", "20000", "--queries", "q1", "--parallelism", "1,2", "--pin-cores"])
        .args(["--repeat", "3", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid");
    // three rounds, each at 1 then 2, then the median round of each
    let pars: Vec<u64> = (0..6).map(|i| results[i]["parallelism"].as_u64().expect("a number")).collect();
    assert_eq!(pars, [1, 2, 1, 2, 1, 2], "{results}");
    assert_eq!(results[0]["cores_allowed"], 1, "{results}");
    assert_eq!(results[1]["cores_allowed"], cores.min(2), "{results}");
    assert_eq!(results[0]["output_rows"], results[1]["output_rows"], "{results}");
    let rounds: Vec<u64> = (0..6).map(|i| results[i]["round"].as_u64().expect("a round")).collect();
    assert_eq!(rounds, [1, 1, 2, 2, 3, 3], "{results}");
    assert!(results[0].get("speedup").is_none() && results[1]["speedup"].as_f64().is_some(), "{results}");
    let medians = results.as_array().expect("an array")[6..].to_vec();
    assert_eq!(medians.len(), 2, "{results}");
    for (m, par) in medians.iter().zip([1, 2]) {
        assert_eq!((m["median_of"].as_u64(), m["parallelism"].as_u64()), (Some(3), Some(par)), "{results}");
        // the median round's own run
        let r = m["round"].as_u64().expect("its round") as usize;
        assert_eq!(m["events_per_second"], results[2 * (r - 1) + par as usize - 1]["events_per_second"], "{results}");
    }
    assert!(medians[1]["speedup"].as_f64().is_some_and(|s| s > 0.0), "{results}");
    let text = stdout(&out);
    let after: Vec<&str> = text.lines().skip_while(|l| *l != "q1: the median of 3 rounds").collect();
    assert_eq!(after.len(), 3, "{text}");
    assert!(after[1].starts_with("q1 ") && after[2].contains('x'), "{text}");
    // an unknown query is a usage error
    let out = weir().args(["bench", "nexmark", "--queries", "q99"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no query q99"), "{}", stderr(&out));
}

#[test]
fn connectors_are_listed_from_their_declarations() {
    let out = weir().args(["connectors"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["file (reads and writes)", "  path ", "a path, required", "nexmark (reads)", "every table"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    // SHOW CONNECTORS in a script prints the same listing
    let shown = weir().args(["run", "-e", "SHOW CONNECTORS;"]).output().unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(stdout(&shown).trim_end(), text.trim_end());
}
