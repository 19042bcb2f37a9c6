//! `weir run --checkpoint-dir` end to end: a graceful stop takes a last checkpoint and the same
//! command resumes from it (saying so); a finished run is not run again; a checkpoint of
//! another query is refused; a damaged checkpoint is skipped for the previous one, and when
//! none is usable the run fails with a clear error; `--from-checkpoint` resumes from a chosen
//! one. Each time, the committed output equals an uninterrupted run's.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::job::*;

#[test]
fn a_stopped_run_resumes_from_its_last_checkpoint_and_a_finished_one_is_not_run_again() {
    let job = Job::new();
    let err = job.run_and_stop(Duration::from_millis(800));
    assert!(err.contains("stopped after checkpoint"), "{err}");
    assert!(rows(&job.dir.path().join("out")).len() < job.expected.len(), "stopped before the end");
    let o = job.run(&[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert!(err.contains("checkpoints (last: #"), "the summary reports checkpoints: {err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);
    let o = job.run(&[]);
    let err = stderr(&o);
    assert!(o.status.success() && err.contains("nothing left to do"), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected, "running a finished job again changes nothing");
    // at most the retained number of checkpoints is kept
    assert!(job.checkpoint_dirs().len() <= 3, "{:?}", job.checkpoint_dirs());
}

/// The newest checkpoint's manifest.
fn newest_manifest(job: &Job) -> serde_json::Value {
    let newest = job.checkpoint_dirs().last().expect("a checkpoint").join("_manifest.json");
    serde_json::from_str(&std::fs::read_to_string(newest).expect("manifest")).expect("json")
}

#[test]
fn a_parallel_run_resumes_at_its_parallelism_or_rescaled_to_another() {
    let job = Job::new();
    let err = job.run_and_stop_with(&["--parallelism", "2"], Duration::from_millis(700));
    assert!(err.contains("stopped after checkpoint"), "{err}");
    let manifest = newest_manifest(&job);
    assert_eq!(manifest["parallel"]["parallelism"], 2, "{manifest}");
    assert_eq!(manifest["sources"].as_array().map(Vec::len), Some(2), "one position per split: {manifest}");
    // rescaled to one instance per stage (the table still in its two splits), stopped again
    let err = job.run_and_stop_with(&["--parallelism", "1"], Duration::from_millis(500));
    assert!(err.contains("resuming from checkpoint") && err.contains("stopped after checkpoint"), "{err}");
    let manifest = newest_manifest(&job);
    assert_eq!(manifest["parallel"]["parallelism"], 1, "{manifest}");
    assert_eq!(manifest["parallel"]["splits"], serde_json::json!([2]), "{manifest}");
    // then to three, to the end
    let o = job.run(&["--parallelism", "3"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected, "exactly once across the stops and rescales");

    // none asked for: the checkpoint's parallelism
    let job = Job::new();
    job.run_and_stop_with(&["--parallelism", "3"], Duration::from_millis(700));
    let o = job.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(newest_manifest(&job)["parallel"]["parallelism"], 3);
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);

    // a checkpoint taken on one thread resumes in parallel (a query over one table): the
    // table read whole, the windows' state spread over the instances
    let job = Job::new();
    job.run_and_stop(Duration::from_millis(500));
    assert!(newest_manifest(&job).get("parallel").is_none());
    let o = job.run(&["--parallelism", "2"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(newest_manifest(&job)["parallel"]["splits"], serde_json::json!([1]));
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);

    // the checkpoint of a run that finished on one thread: nothing left to do, at any parallelism
    let job = Job::new();
    assert!(job.run(&[]).status.success());
    let o = job.run(&["--parallelism", "2"]);
    let err = stderr(&o);
    assert!(o.status.success() && err.contains("nothing left to do"), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);
}

#[test]
fn a_checkpoint_of_another_query_is_refused() {
    let job = Job::new();
    job.run_and_stop(Duration::from_millis(500));
    let other = job.dir.path().join("other.sql");
    let text = std::fs::read_to_string(&job.sql).expect("read").replace("MAX(price)", "MIN(price)");
    std::fs::write(&other, text).expect("write");
    let o = weir().arg("run").arg(&other).arg("--checkpoint-dir").arg(job.checkpoints()).output().expect("runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("was taken by another query"), "{err}");
    assert!(err.contains("max(bid.price)"), "the error shows the checkpoint's query: {err}");
    assert!(!err.contains("resuming"), "{err}");
}

#[test]
fn a_damaged_checkpoint_is_skipped_for_the_previous_one_and_none_usable_is_an_error() {
    let job = Job::new();
    job.run_and_stop(Duration::from_millis(1000));
    let dirs = job.checkpoint_dirs();
    assert!(dirs.len() >= 2, "several checkpoints: {dirs:?}");
    // the newest: its state files cut short (or, without any, its manifest)
    let newest = dirs.last().expect("a checkpoint");
    let mut damaged = 0;
    for e in std::fs::read_dir(newest).expect("checkpoint") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "arrow") {
            let bytes = std::fs::read(&p).expect("read");
            std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("truncate");
            damaged += 1;
        }
    }
    if damaged == 0 {
        std::fs::write(newest.join("_manifest.json"), "{\"format\": ").expect("damage");
    }
    let o = job.run(&[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped a damaged checkpoint"), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected, "exactly once from the previous checkpoint");

    // every manifest damaged: an error naming each, not a fresh start
    let job = Job::new();
    job.run_and_stop(Duration::from_millis(500));
    for d in job.checkpoint_dirs() {
        std::fs::write(d.join("_manifest.json"), "not json").expect("damage");
    }
    let o = job.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no usable checkpoint") && err.contains("not a valid manifest"), "{err}");
}

#[test]
fn from_checkpoint_resumes_from_a_chosen_checkpoint() {
    let job = Job::new();
    job.run_and_stop(Duration::from_millis(1000));
    let dirs = job.checkpoint_dirs();
    let oldest = dirs.first().expect("a checkpoint").clone();
    let name = oldest.file_name().expect("name").to_string_lossy().into_owned();
    let id: u64 = name.trim_start_matches("chk-").parse().expect("numbered");
    let o = weir().arg("run").arg(&job.sql).arg("--from-checkpoint").arg(&oldest).output().expect("runs");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("resuming from checkpoint {id} ")), "{err}");
    assert_eq!(rows(&job.dir.path().join("out")), job.expected);
}

#[test]
fn checkpoints_of_a_generated_table_through_a_file_url_are_reported_in_the_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/ck", dir.path().display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let sql = "CREATE TABLE ticks (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
               WITH (connector = 'datagen', 'rows-per-second' = '500', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1'); \
               SELECT COUNT(*) AS n, MAX(id) AS hi FROM ticks GROUP BY TUMBLE(ts, INTERVAL '1' SECOND);";
    let child = weir()
        .args(["run", "--quiet", "--format", "csv", "--checkpoint-dir", &url, "--checkpoint-interval", "200ms"])
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-e", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        assert!(std::time::Instant::now() < deadline, "no checkpoints in time");
        std::thread::sleep(Duration::from_millis(200));
        let Some(text) = scrape(port) else { continue };
        if sample(&text, "weir_checkpoints_total{query=\"1\"}").is_some_and(|n| n >= 2.0) {
            break text;
        }
    };
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let o = child.wait_with_output().expect("exits");
    assert!(o.status.success(), "{}", stderr(&o));
    let before = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("# TYPE weir_checkpoints_total counter"), "{text}");
    assert!(sample(&text, "weir_checkpoint_last_bytes{query=\"1\"}").is_some_and(|b| b > 0.0), "{text}");
    assert!(sample(&text, "weir_checkpoint_last_duration_seconds{query=\"1\"}").is_some_and(|s| s > 0.0), "{text}");
    assert!(sample(&text, "weir_checkpoint_last_id{query=\"1\"}").is_some_and(|n| n >= 2.0), "{text}");
    // the generated table resumes where it stopped: the sequence goes on from the checkpoint
    let ck = dir.path().join("ck");
    let chk: Vec<_> = std::fs::read_dir(&ck).expect("checkpoints under the URL's path").collect();
    assert!(!chk.is_empty());
    let o = weir()
        .args(["run", "--format", "csv", "--checkpoint-dir", &url, "-e", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(Duration::from_millis(2500));
    Command::new("kill").args(["-TERM", &o.id().to_string()]).status().expect("kill");
    let o = o.wait_with_output().expect("exits");
    let err = stderr(&o);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    let after = String::from_utf8_lossy(&o.stdout).into_owned();
    // every id up to the last one emitted counted exactly once across the two runs: the
    // windows open at the stop were saved, and the sequence went on from where it stopped
    let windows: Vec<(i64, i64)> = before
        .lines()
        .chain(after.lines())
        .filter_map(|l| l.split_once(','))
        .filter_map(|(n, hi)| Some((n.parse().ok()?, hi.parse().ok()?)))
        .collect();
    let counted: i64 = windows.iter().map(|w| w.0).sum();
    let last = windows.iter().map(|w| w.1).max().unwrap_or(0);
    assert!(windows.len() >= 2 && counted == last, "before the stop:\n{before}\nafter:\n{after}");
}

/// A query over processing time, checkpointed on one thread (the `PROCTIME()` stamp is then
/// among the checkpoint's operators, unnumbered) and resumed at parallelism 2 (the table read
/// whole, the windows' keys over two instances): every generated row is counted once across
/// the stop, whichever wall-clock window it fell in.
#[test]
fn a_processing_time_checkpoint_taken_on_one_thread_resumes_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = dir.path().join("q.sql");
    let out = dir.path().join("out");
    std::fs::write(
        &sql,
        format!(
            "CREATE TABLE g (v INT, p AS PROCTIME()) WITH (connector = 'datagen', 'rows-per-second' = '1000000',
               'number-of-rows' = '3000000', 'fields.v.min' = '1', 'fields.v.max' = '3');
             CREATE TABLE out (v INT, n BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
             INSERT INTO out SELECT v, COUNT(*) FROM TABLE(TUMBLE(TABLE g, DESCRIPTOR(p), INTERVAL '1' SECOND))
             GROUP BY v, window_start, window_end;",
            out.display()
        ),
    )
    .expect("write");
    let job = Job { dir, sql, expected: Default::default(), location: None, envs: Vec::new() };
    let err = job.run_and_stop_with(&["--parallelism", "1"], Duration::from_millis(1200));
    assert!(err.contains("stopped after checkpoint"), "{err}");
    let manifest = newest_manifest(&job);
    assert!(manifest.get("parallel").is_none(), "{manifest}");
    assert!(
        manifest["operators"].as_array().is_some_and(|ops| ops.iter().any(|o| o["name"] == "ProcTime")),
        "{manifest}"
    );
    let o = job.run(&["--parallelism", "2"]);
    let err = stderr(&o);
    assert!(o.status.success() && err.contains("resuming from checkpoint"), "{err}");
    assert_eq!(newest_manifest(&job)["parallel"]["parallelism"], 2);
    let counted: usize = rows(&out)
        .iter()
        .map(|(line, times)| line.split(',').nth(1).and_then(|n| n.parse::<usize>().ok()).expect("a count") * times)
        .sum();
    assert_eq!(counted, 3_000_000, "every row once");
}
