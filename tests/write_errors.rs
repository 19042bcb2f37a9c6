//! Failed writes fail the query: the sink, the dead-letter file, checkpoints and stdout each
//! end `weir run` with a message naming the path and the OS error and a non-zero exit (a
//! closed stdout ends quietly, as Unix tools do), never a panic, never a success that lost
//! rows; and exactly-once output stays exactly-once across such a failure and a restart.
//!
//! A full disk is a small tmpfs mounted in a private mount namespace (`unshare`, as root in
//! CI or as an unprivileged user where user namespaces are allowed), or `/dev/full`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("RUST_LOG");
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// 5000 rows whose `v` is not a number.
fn bad_rows(dir: &Path) {
    let rows: String = (0..5000).map(|i| format!("k{i},bad{i}\n")).collect();
    std::fs::write(dir.join("bad.csv"), format!("k,v\n{rows}")).unwrap();
}

#[test]
fn a_dead_letter_file_that_cannot_be_written_fails_the_query() {
    let dir = tempfile::tempdir().unwrap();
    bad_rows(dir.path());
    let out = weir()
        .current_dir(dir.path())
        .args(["run", "--format", "csv", "-e"])
        .arg("CREATE TABLE t (k VARCHAR, v INT) WITH (connector = 'file', path = 'bad.csv', format = 'csv', dead_letter = '/dev/full'); SELECT * FROM t;")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("dead-letter file /dev/full: No space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn stdout_closed_ends_quietly_and_a_full_stdout_or_stderr_is_an_error() {
    let sql = "SELECT auction, price FROM bid";
    let args = ["run", "--format", "csv", "--set", "nexmark.events=200000", "-e", sql];
    // `weir run … | head -1`
    let mut child = weir().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert_eq!(first.trim(), "auction,price");
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    // stdout on a full device: every command that prints
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for command in [&args[..], &["explain", "-e", sql], &["--help"]] {
        let out = weir().args(command).stdout(full()).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(err.contains("No space left on device"), "{command:?}: {err}");
        assert!(!err.contains("panicked"), "{command:?}: {err}");
    }
    // stderr on a full device: nothing can be said, but the exit says it
    let out = weir().args(args).stdout(Stdio::null()).stderr(full()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = weir().args(["run", "-e", "SELEC 1"]).stderr(full()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a SQL error keeps its code");
}

/// Run `script` (sh) in a private mount namespace; `None` where none can be made here.
fn in_mount_namespace(dir: &Path, script: &str) -> Option<Output> {
    let out = Command::new("unshare").args(["-rm", "sh", "-ec", script]).current_dir(dir).output().ok()?;
    let err = text(&out.stderr);
    if err.contains("unshare failed") || err.contains("Operation not permitted") && !err.contains("weir") {
        return None;
    }
    Some(out)
}

/// The rows of the part files under `dir` (exactly-once output), counted.
fn published(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            for line in std::fs::read_to_string(entry.path()).unwrap().lines().skip(1) {
                *rows.entry(line.to_string()).or_default() += 1;
            }
        }
    }
    rows
}

#[test]
fn a_full_checkpoint_disk_fails_the_query_and_a_restart_stays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "SET nexmark.events = '3000000';
        CREATE TABLE o (auction BIGINT, n BIGINT) WITH (connector = 'file', path = 'out', format = 'csv');
        INSERT INTO o SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, auction;";
    std::fs::write(dir.path().join("q.sql"), sql).unwrap();
    let weir = env!("CARGO_BIN_EXE_weir");
    // the checkpoints fill a 64 KiB disk and fail; given room, the same command resumes
    let script = format!(
        "mkdir -p ck && mount -t tmpfs -o size=64k tmpfs ck
         set +e
         {weir} run q.sql --checkpoint-dir ck --checkpoint-interval 50ms > first.out 2> first.err
         echo $? > first.code
         set -e
         mount -o remount,size=64m ck
         {weir} run q.sql --checkpoint-dir ck > second.out 2> second.err"
    );
    let Some(out) = in_mount_namespace(dir.path(), &script) else {
        eprintln!("note: no private mount namespace here (unshare -rm); the full-disk checkpoint test cannot run");
        return;
    };
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert!(out.status.success(), "{}{}", text(&out.stderr), read("second.err"));
    let err = read("first.err");
    assert_eq!(read("first.code").trim(), "1", "{err}");
    assert!(err.contains("ck") && err.contains("No space left on device"), "the path and the OS error: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // the restart resumes from the last complete checkpoint (or starts afresh if none
    // completed); either way what the sink published is each result once
    let resumed = read("second.err");
    assert!(resumed.contains("INSERT INTO o:"), "{resumed}");
    let after_failure = published(&dir.path().join("out"));
    // the same query, uninterrupted
    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("q.sql"), sql).unwrap();
    let out =
        Command::new(weir).current_dir(clean.path()).args(["run", "q.sql", "--checkpoint-dir", "ck"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = published(&clean.path().join("out"));
    assert!(!expected.is_empty());
    assert_eq!(after_failure, expected, "each result exactly once after the failure and the restart");
}

#[test]
fn a_sink_on_a_full_disk_fails_the_query_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let weir = env!("CARGO_BIN_EXE_weir");
    let script = format!(
        "mkdir -p small && mount -t tmpfs -o size=16k tmpfs small
         set +e
         {weir} run --set nexmark.events=100000 -e \"CREATE TABLE o (auction BIGINT, price BIGINT) WITH (connector = 'file', path = 'small/o.csv', format = 'csv'); INSERT INTO o SELECT auction, price FROM bid;\" 2> err
         echo $? > code"
    );
    let Some(out) = in_mount_namespace(dir.path(), &script) else {
        eprintln!("note: no private mount namespace here (unshare -rm); the full-disk sink test cannot run");
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("code")).unwrap().trim(), "1", "{err}");
    assert!(err.contains("small/o.csv") && err.contains("No space left on device"), "{err}");
}
