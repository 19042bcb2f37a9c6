//! Live inputs and stopping, through the `weir` binary: rows from a named pipe, standard input
//! and a file followed as it grows (`'source.monitor-interval'`) come out as they arrive
//! (batches are cut by size or by time), and SIGINT/SIGTERM stop a query promptly at every
//! stage: a source blocked in a read or in opening a pipe nobody writes to, a generator paced
//! far into the future, a generator with absurd settings.
//!
//! The time bounds here are liveness checks (stopped at all, output before the input ended),
//! generous for a loaded machine; how fast weir is, is measured in `benches/`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("RUST_LOG");
    c
}

/// The longest a stop may take here (the product stops within about 0.1 s; CI machines are
/// busy).
const STOP_BOUND: Duration = Duration::from_secs(3);

/// A windowed count per second over a two-column CSV table read with `with`.
fn count_per_second(with: &str) -> String {
    format!(
        "CREATE TABLE t (k VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ({with}, format = 'csv');
         SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end;"
    )
}

/// `k,ts` rows, one every `every` of event time from 2024-01-01 00:00:00.
fn row(i: u64, every_ms: u64) -> String {
    format!("k{},{}\n", i % 3, 1_704_067_200_000 + i * every_ms)
}

/// Each line `child` prints on stdout, with when it came.
fn lines(child: &mut Child) -> Receiver<(Instant, String)> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    rx
}

/// `weir run -q --format csv ARGS -e SQL` in `dir`, stdout and stderr piped.
fn spawn_csv(dir: &Path, args: &[&str], sql: &str) -> Child {
    weir()
        .current_dir(dir)
        .args(["run", "-q", "--format", "csv"])
        .args(args)
        .args(["-e", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts")
}

/// The writing end of a named pipe, opened read-write so that it never blocks (a plain open
/// for writing waits for a reader, for ever if weir failed before opening its end).
fn open_fifo(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().read(true).write(true).open(path).expect("the pipe opens")
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Send `signal` to `child` and wait for it to end; how long that took.
fn stop(child: &mut Child, signal: &str) -> (Duration, std::process::ExitStatus) {
    let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
    assert!(status.expect("kill runs").success());
    let asked = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (asked.elapsed(), status);
        }
        if asked.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("weir did not stop within 20 s of SIG{signal}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Rows written slowly (one every 10 ms for 2.5 s, 100 per second of event time) to `write`
/// come out as windows while the writer is still writing.
fn windows_flow_while_rows_arrive(
    mut child: Child,
    write: impl FnOnce(Box<dyn FnMut(&str) + Send>) + Send + 'static,
    sink: Box<dyn Write + Send>,
) {
    let got = lines(&mut child);
    let writer = std::thread::spawn(move || {
        let mut sink = sink;
        write(Box::new(move |text: &str| {
            let _ = sink.write_all(text.as_bytes());
            let _ = sink.flush();
        }));
        Instant::now()
    });
    let out = child.wait_with_output().expect("weir ends");
    let finished_writing = writer.join().expect("writer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<(Instant, String)> = got.try_iter().collect();
    let first_window = got.iter().find(|(_, l)| l.starts_with("2024-01-01T00:00:00,")).expect("the first window");
    assert_eq!(first_window.1, "2024-01-01T00:00:00,100");
    assert!(
        first_window.0 + Duration::from_millis(500) < finished_writing,
        "the first window came only when the writer had finished: {got:?}"
    );
    let rows: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(rows.len(), 1 + 3, "{rows:?}");
}

fn slow_rows(mut send: Box<dyn FnMut(&str) + Send>) {
    send("k,ts\n");
    for i in 0..250 {
        send(&row(i, 10));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn rows_from_a_named_pipe_come_out_as_they_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("rows.fifo");
    mkfifo(&fifo);
    let sql = count_per_second("connector = 'file', path = 'rows.fifo'");
    let child = spawn_csv(dir.path(), &[], &sql);
    // opening a FIFO for writing waits for its reader: weir must open it without blocking
    // anything else, and read rows as they come
    let pipe = open_fifo(&fifo);
    windows_flow_while_rows_arrive(child, slow_rows, Box::new(pipe));
}

#[test]
fn rows_from_standard_input_come_out_as_they_arrive() {
    let sql = count_per_second("connector = 'stdin'");
    let mut child = weir()
        .args(["run", "-q", "--format", "csv", "-e", &sql])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let stdin = child.stdin.take().expect("stdin");
    windows_flow_while_rows_arrive(child, slow_rows, Box::new(stdin));
}

#[test]
fn a_followed_file_is_read_as_it_grows_and_checkpoints_where_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("grow.csv");
    std::fs::write(&path, format!("k,ts\n{}", (0..150).map(|i| row(i, 10)).collect::<String>())).unwrap();
    let sql = count_per_second("connector = 'file', path = 'grow.csv', 'source.monitor-interval' = '20 ms'");
    let mut child = spawn_csv(dir.path(), &["--checkpoint-dir", "ck", "--checkpoint-interval", "100ms"], &sql);
    let got = lines(&mut child);
    let next = |what: &str| got.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{what}")).1;
    assert_eq!(next("the header"), "window_start,n");
    assert_eq!(next("the first window, from the rows there at the start"), "2024-01-01T00:00:00,100");
    // the file grows: its end is not the end of the input
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all((150..320).map(|i| row(i, 10)).collect::<String>().as_bytes()).unwrap();
    f.flush().unwrap();
    assert_eq!(next("the second window, from rows appended"), "2024-01-01T00:00:01,100");
    assert_eq!(next("the third window"), "2024-01-01T00:00:02,100");
    let (took, status) = stop(&mut child, "INT");
    assert!(status.success(), "{status:?}");
    assert!(took < STOP_BOUND, "took {took:?}");
    // resumed, it continues after the rows it read: appended rows close the fourth window
    f.write_all((320..450).map(|i| row(i, 10)).collect::<String>().as_bytes()).unwrap();
    let mut child = spawn_csv(dir.path(), &["--checkpoint-dir", "ck"], &sql);
    let got = lines(&mut child);
    let mut seen = Vec::new();
    while let Ok((_, line)) = got.recv_timeout(Duration::from_secs(20)) {
        seen.push(line.clone());
        if line.starts_with("2024-01-01T00:00:03") {
            break;
        }
    }
    let _ = stop(&mut child, "TERM");
    assert!(seen.contains(&"2024-01-01T00:00:03,100".to_string()), "{seen:?}");
    assert!(!seen.iter().any(|l| l.starts_with("2024-01-01T00:00:00")), "no window twice: {seen:?}");
}

/// Start `sql`, let it run for `after`, signal it, and check that it stopped in time and
/// cleanly (exit 0, the summary printed).
fn stops_promptly(sql: &str, after: Duration, signal: &str, extra: &[&str], dir: &Path) {
    let mut child = weir()
        .current_dir(dir)
        .args(["run", "--format", "csv"])
        .args(extra)
        .args(["-e", sql])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    std::thread::sleep(after);
    let (took, status) = stop(&mut child, signal);
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
    assert!(took < STOP_BOUND, "{sql}: took {took:?} to stop\n{err}");
    assert!(status.success(), "{sql}: {status:?}\n{err}");
    assert!(err.contains("rows in"), "{sql}: the summary after a stop\n{err}");
    assert!(!err.contains("did not stop in time") && !err.contains("panicked"), "{err}");
}

#[test]
fn sigint_and_sigterm_stop_a_query_at_every_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wait = Duration::from_millis(700);
    // blocked opening a named pipe nobody writes to
    mkfifo(&dir.path().join("silent.fifo"));
    stops_promptly(&count_per_second("connector = 'file', path = 'silent.fifo'"), wait, "INT", &[], dir.path());
    // blocked in a read of standard input (open, nothing written)
    stops_promptly(&count_per_second("connector = 'stdin'"), wait, "TERM", &[], dir.path());
    // a datagen table paced at one row a second, its next row not yet due
    let datagen = "CREATE TABLE g (id BIGINT, ts AS PROCTIME()) WITH (connector = 'datagen', 'rows-per-second' = '1');
                   SELECT COUNT(*) FROM g;";
    stops_promptly(datagen, wait, "INT", &[], dir.path());
    // the paced Nexmark generator at one event a second, in splits; and events near the end
    // of the id range, as fast as it can, in splits
    let paced = ["--set", "nexmark.rate=1", "--set", "nexmark.max_emit_speed=false", "--set", "nexmark.splits=3"];
    stops_promptly("SELECT COUNT(*) FROM bid", wait, "TERM", &paced, dir.path());
    let huge = ["--set", "nexmark.events=9223372036854775000", "--set", "nexmark.splits=4"];
    stops_promptly("SELECT COUNT(*) FROM bid", wait, "INT", &huge, dir.path());
    // while the planner works on a huge statement (twenty thousand computed columns take many
    // seconds to plan): weir ends (exit 130, as a shell reports Ctrl-C), also when it started
    // with SIGINT ignored (a script's background job): the signal is weir's from the start
    let columns: Vec<String> = (0..20_000).map(|i| format!("auction + {i} AS c{i}")).collect();
    std::fs::write(dir.path().join("huge.sql"), format!("SELECT {} FROM bid;", columns.join(", "))).unwrap();
    let weir_path = weir().get_program().to_owned();
    for ignored in [false, true] {
        let mut command = match ignored {
            false => weir(),
            true => {
                let mut sh = Command::new("sh");
                sh.env_remove("RUST_LOG").args(["-c", "trap '' INT; exec \"$0\" \"$@\""]).arg(&weir_path);
                sh
            }
        };
        let mut child =
            command.current_dir(dir.path()).args(["run", "huge.sql"]).stdout(Stdio::null()).spawn().unwrap();
        // (weir listens before it reads the script, well within this; planning takes longer)
        std::thread::sleep(Duration::from_millis(1500));
        let (took, status) = stop(&mut child, "INT");
        assert!(took < STOP_BOUND && status.code() == Some(130), "ignored on entry: {ignored}: {took:?} {status:?}");
    }
    // a followed file at its end
    std::fs::write(dir.path().join("tail.csv"), "k,ts\n").unwrap();
    let tail = count_per_second("connector = 'file', path = 'tail.csv', 'source.monitor-interval' = '1 h'");
    stops_promptly(&tail, wait, "INT", &[], dir.path());
}

#[test]
fn a_directory_is_read_file_by_file_and_watched_for_new_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let file = |name: &str, rows: std::ops::Range<u64>| {
        let text: String = rows.map(|i| row(i, 10)).collect();
        // written under a hidden name, then moved in whole
        let hidden = data.join(format!("_{name}"));
        std::fs::write(&hidden, format!("k,ts\n{text}")).unwrap();
        std::fs::rename(&hidden, data.join(name)).unwrap();
    };
    file("b.csv", 100..200);
    file("a.csv", 0..100);
    std::fs::write(data.join(".partial.csv"), "k,ts\nnot,a row\n").unwrap();
    std::fs::write(data.join("empty.csv"), "").unwrap();
    // bounded: the files there, in name order; a bad row names its file and line
    let sql = count_per_second("connector = 'file', path = 'data'");
    let out = weir().current_dir(dir.path()).args(["run", "-q", "--format", "csv", "-e", &sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "window_start,n\n2024-01-01T00:00:00,100\n2024-01-01T00:00:01,100\n"
    );
    std::fs::write(data.join("c.csv"), "k,ts\nk1,2024-01-01 00:00:02\nk2,soon\n").unwrap();
    let out = weir().current_dir(dir.path()).args(["run", "-q", "-e", &sql]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("c.csv:3: bad value 'soon' for column 'ts'"), "{err}");
    std::fs::remove_file(data.join("c.csv")).unwrap();
    // nothing the query writes may go inside a directory it reads
    let dead = count_per_second("connector = 'file', path = 'data', dead_letter = 'data/bad.jsonl'");
    let out = weir().current_dir(dir.path()).args(["run", "-q", "-e", &dead]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("'data/bad.jsonl' is written inside 'data', a directory the query reads"), "{err}");
    // watched: new files are read as they appear
    let sql = count_per_second("connector = 'file', path = 'data', 'source.monitor-interval' = '50 ms'");
    let mut child = spawn_csv(dir.path(), &[], &sql);
    let got = lines(&mut child);
    let next = |what: &str| got.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{what}")).1;
    assert_eq!(next("the header"), "window_start,n");
    assert_eq!(next("the first window"), "2024-01-01T00:00:00,100");
    file("0-late-name.csv", 200..300);
    assert_eq!(next("a window of a file that appeared"), "2024-01-01T00:00:01,100");
    file("z.csv", 300..350);
    let (took, status) = stop(&mut child, "INT");
    assert!(status.success() && took < STOP_BOUND, "{status:?} {took:?}");
}

#[test]
fn a_silent_live_input_goes_idle_in_a_union_while_another_flows() {
    silent_input_in_a_union(&[]);
}

/// The same in parallel (the union hashed by key into two instances of the window): the
/// pipe's source instance, with nothing to read for its idle timeout, declares itself idle and
/// both instances leave it out of their watermarks.
#[test]
fn a_silent_live_input_goes_idle_in_a_union_in_parallel() {
    silent_input_in_a_union(&["--parallelism", "2"]);
}

fn silent_input_in_a_union(args: &[&str]) {
    // a named pipe whose writer stays silent, in a union with rows arriving on stdin: with an
    // idle timeout, the pipe stops holding back the watermark and windows fire as rows come
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("quiet.fifo");
    mkfifo(&fifo);
    let sql = "CREATE TABLE quiet (k VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH (connector = 'file', path = 'quiet.fifo', format = 'csv', idle_timeout = '300 ms');
               CREATE TABLE busy (k VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
               WITH (connector = 'stdin', format = 'csv');
               SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS window_start, COUNT(*) AS n
               FROM (SELECT k, ts FROM quiet UNION ALL SELECT k, ts FROM busy)
               GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;";
    let mut child = weir()
        .current_dir(dir.path())
        .args(["run", "-q", "--format", "csv", "-e", sql])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut quiet = open_fifo(&fifo);
    quiet.write_all(b"k,ts\n").unwrap();
    let got = lines(&mut child);
    let mut busy = child.stdin.take().expect("stdin");
    busy.write_all(b"k,ts\n").unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..250 {
            if busy.write_all(row(i, 10).as_bytes()).and_then(|_| busy.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(busy);
    });
    let first = got.recv_timeout(Duration::from_secs(20)).map(|(_, l)| l);
    // the first window's three keys (rows 0-99: k0 34 times, k1 and k2 33)
    let mut window: Vec<String> =
        (0..3).filter_map(|_| got.recv_timeout(Duration::from_secs(20)).ok().map(|(_, l)| l)).collect();
    let still_writing = !writer.is_finished();
    writer.join().unwrap();
    drop(quiet);
    let _ = child.wait();
    window.sort();
    assert_eq!(first.as_deref(), Ok("k,window_start,n"));
    assert_eq!(window, ["k0,2024-01-01T00:00:00,34", "k1,2024-01-01T00:00:00,33", "k2,2024-01-01T00:00:00,33"]);
    assert!(still_writing, "the window fired only when stdin ended");
}
