//! A topic read in parallel, by partition (part of the `kafka` test binary, with its shared
//! broker).

use crate::broker::Broker;
use crate::support::*;

/// Instance *k* of *m* reads the partitions whose id is *k* modulo *m*: a windowed query over
/// three partitions gives at parallelism 2 (and 4: more instances than partitions) what it
/// gives on one thread, and EXPLAIN says the topic is split, with an idle timeout too.
#[test]
fn a_topic_is_read_by_partition_in_parallel() {
    let b = Broker::shared();
    let t = topic("parallel");
    b.create_topic(&t, 3);
    let records: Vec<(Option<i32>, String)> = (0..3000u64)
        .map(|i| {
            let (_, value) = event(i);
            (Some((i % 3) as i32), value)
        })
        .collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    b.produce(&t, &refs);
    let ddl = source("r", "k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", &t, "");
    let query = format!(
        "{ddl} SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total
         FROM r GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k;"
    );
    let at_with = |query: &str, n: &str| {
        let o = weir().args(["run", "--format", "csv", "--quiet", "--parallelism", n, "-e", query]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        lines(&String::from_utf8_lossy(&o.stdout))
    };
    let at = |n: &str| at_with(&query, n);
    let one = at("1");
    assert!(one.len() > 20, "{one:?}");
    let counted: u64 = one.iter().map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(counted, 3000, "no row is late");
    assert_eq!(at("2"), one);
    assert_eq!(at("4"), one);
    let explain = |sql: &str| {
        let o = weir().args(["explain", "--parallelism", "2", "-e", sql]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plan = explain(&query);
    assert!(plan.contains("[2 splits]") && plan.contains("Exchange: hash [r.k]"), "{plan}");
    let idle = query.replace("'format' = 'json'", "'format' = 'json', 'scan.watermark.idle-timeout' = '5 s'");
    assert!(explain(&idle).contains("[2 splits]"), "{}", explain(&idle));
    assert_eq!(at_with(&idle, "2"), one);
}

/// Checkpointed at parallelism 2 (two instances, each reading its partitions, barriers aligned
/// across them), then resumed from its first checkpoint at parallelism 3: the committed output
/// equals a run on one thread without checkpoints (each instance resumes its partitions at the
/// offsets it had reached; the windows' state moves to three instances).
#[test]
fn a_topic_read_in_parallel_resumes_from_a_checkpoint_at_another_parallelism() {
    let b = Broker::shared();
    let t = topic("parallel-ck");
    b.create_topic(&t, 3);
    // enough rows that a fast machine still takes several checkpoints while it reads them
    let records: Vec<(Option<i32>, String)> = (0..30000u64).map(|i| (Some((i % 3) as i32), event(i).1)).collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    b.produce(&t, &refs);
    let dir = tempfile::tempdir().unwrap();
    let ddl = source("r", "k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", &t, "");
    let select = "SELECT k, TUMBLE_START(ts, INTERVAL '1' SECOND) AS w, COUNT(*) AS n, SUM(v) AS total
         FROM r GROUP BY TUMBLE(ts, INTERVAL '1' SECOND), k";
    let o = weir()
        .args(["run", "--format", "csv", "--quiet", "--parallelism", "1", "-e", &format!("{ddl} {select};")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = lines(&String::from_utf8_lossy(&o.stdout));
    let out = dir.path().join("out");
    let script = format!(
        "SET 'state.checkpoints.num-retained' = '1000'; SET batch.size = '100'; {ddl}
         CREATE TABLE out (k BIGINT, w TIMESTAMP(3), n BIGINT, total BIGINT) WITH (connector = 'file', path = '{}', format = 'csv');
         INSERT INTO out {select};",
        out.display()
    );
    let ck = dir.path().join("ck");
    let run = |extra: &[&str]| {
        let mut cmd = weir();
        cmd.args(["run", "--quiet", "--checkpoint-dir"]).arg(&ck).args(["-e", &script]).args(extra);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["--parallelism", "2", "--checkpoint-interval", "1ms"]);
    let mut taken: Vec<std::path::PathBuf> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("_manifest.json").exists())
        .collect();
    taken.sort();
    assert!(taken.len() >= 3, "{taken:?}");
    // one taken midway: not the first (before any row) nor the last (the finished run)
    let midway = taken[taken.len() / 2].clone();
    let manifest = std::fs::read_to_string(midway.join("_manifest.json")).unwrap();
    assert!(manifest.contains("\"parallelism\": 2") || manifest.contains("\"parallelism\":2"), "{manifest}");
    run(&["--parallelism", "3", "--from-checkpoint", midway.to_str().unwrap()]);
    let mut got = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("part-")) {
            got.extend(std::fs::read_to_string(&p).unwrap().lines().skip(1).map(str::to_string));
        }
    }
    got.sort();
    assert_eq!(got, expected);
}

/// A window over processing time, read by partition at parallelism 2, one partition empty: the
/// instance reading it has nothing to stamp, and sends its clock as its watermark on a timer,
/// so the windows close as the wall clock passes them while the other partition streams.
#[test]
fn processing_time_windows_close_with_an_empty_partition_in_parallel() {
    let b = Broker::shared();
    let t = topic("proctime");
    b.create_topic(&t, 2);
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..40 {
                let record = format!(r#"{{"k": {}}}"#, i % 3);
                Broker::shared().produce(&t, &[(Some(0), record.as_str())]);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let sql = format!(
        "SET parallelism = 2;
         CREATE TABLE e (k BIGINT, p AS PROCTIME()) WITH ('connector' = 'kafka', 'topic' = '{t}',
           'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
         SELECT COUNT(*) AS n FROM e GROUP BY TUMBLE(p, INTERVAL '1' SECOND), k;",
        b.servers
    );
    let out = run_for(&sql, 5);
    writer.join().unwrap();
    let counts: Vec<u64> = out.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(counts.len() >= 3, "windows closed while the query ran: {out}");
}

/// At parallelism 2 a keyed window aggregate runs in two phases: each instance reading a
/// partition holds its partial aggregates until the watermark could close their windows. One
/// partition gets a few rows and then nothing: when it is declared idle it sends what it holds
/// first, so the other partition's watermark closes the window with those rows in it.
#[test]
fn a_partition_going_idle_first_sends_the_partial_aggregates_it_holds() {
    let b = Broker::shared();
    let t = topic("idle-held");
    b.create_topic(&t, 2);
    let early: Vec<String> = (0..6).map(|s| format!(r#"{{"k": "a", "ts": "2024-01-01 00:00:0{s}"}}"#)).collect();
    let refs: Vec<(Option<i32>, &str)> = early.iter().map(|r| (Some(0), r.as_str())).collect();
    b.produce(&t, &refs);
    // partition 1 keeps getting rows of later windows while the query runs
    let writer = {
        let t = t.clone();
        std::thread::spawn(move || {
            for s in 0..40 {
                let record = format!(r#"{{"k": "b", "ts": "2024-01-01 00:00:{:02}"}}"#, 10 + s);
                Broker::shared().produce(&t, &[(Some(1), record.as_str())]);
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let sql = counts_per_key_at_parallelism_2(&t);
    let out = run_until(&sql, 60, |out| out.contains("a,2024-01-01T00:00:00,"));
    writer.join().unwrap();
    assert!(out.lines().any(|l| l == "a,2024-01-01T00:00:00,6"), "{out}");
    let o = weir().args(["explain", "-e", &sql]).output().unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(plan.contains("of partial aggregates"), "{plan}");
}

/// A partition declared idle that reads again holds the other's watermark back once more in
/// every instance, even when its rows are held in partial aggregates (or go to some instances
/// only) and move no watermark: its watermark goes to all of them again, so the other
/// partition cannot close a window those rows belong in.
#[test]
fn a_partition_back_from_idle_holds_the_watermark_back_again() {
    let b = Broker::shared();
    let t = topic("idle-back");
    b.create_topic(&t, 2);
    let early: Vec<String> = (10..20).map(|s| format!(r#"{{"k": "b", "ts": "2024-01-01 00:00:{s}"}}"#)).collect();
    let refs: Vec<(Option<i32>, &str)> = early.iter().map(|r| (Some(1), r.as_str())).collect();
    b.produce(&t, &refs);
    let sql = counts_per_key_at_parallelism_2(&t);
    // (until the windows of keys a, b and e from 10 s are out: on a busy machine that can take long)
    let closed = |out: &str| ["a", "b", "e"].iter().all(|k| out.contains(&format!("{k},2024-01-01T00:00:10,")));
    let query = std::thread::spawn(move || run_until(&sql, 90, closed));
    // partition 1 has been read (watermark 19 s) and declared idle, partition 0 not read yet
    std::thread::sleep(std::time::Duration::from_secs(3));
    // partition 1 reads again: rows behind its watermark, on time for [10 s, 20 s), while
    // partition 0 goes from 5 s past 20 s
    // (its first rows back of key b only, the next also of keys c, d and e: some of those
    // belong to the other instance)
    for i in 0..15 {
        let a = format!(r#"{{"k": "a", "ts": "2024-01-01 00:00:{:02}"}}"#, 5 + 2 * i);
        let keys: &[&str] = if i == 0 { &["b"] } else { &["b", "c", "d", "e"] };
        let back: Vec<String> =
            keys.iter().map(|k| format!(r#"{{"k": "{k}", "ts": "2024-01-01 00:00:17"}}"#)).collect();
        let mut records: Vec<(Option<i32>, &str)> = back.iter().map(|r| (Some(1), r.as_str())).collect();
        records.push((Some(0), a.as_str()));
        b.produce(&t, &records);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = query.join().unwrap();
    // [10 s, 20 s) closed only once partition 1 was idle again, with all its rows
    assert!(out.lines().any(|l| l == "b,2024-01-01T00:00:10,25"), "{out}");
    for k in ["c", "d", "e"] {
        assert!(out.lines().any(|l| l == format!("{k},2024-01-01T00:00:10,14")), "{out}");
    }
    // (partition 0 read nothing before: its first rows, behind the watermark of partition 1
    // alone, were late for [0 s, 10 s))
    assert!(out.lines().any(|l| l == "a,2024-01-01T00:00:10,5"), "{out}");
}

/// Rows per key in windows of 10 s at parallelism 2, over `topic` with the watermark at the
/// newest row and partitions idle after 500 ms.
fn counts_per_key_at_parallelism_2(topic: &str) -> String {
    format!(
        "SET parallelism = 2;
         CREATE TABLE e (k STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'kafka',
           'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset',
           'format' = 'json', 'scan.watermark.idle-timeout' = '500 ms');
         SELECT k, TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS n FROM e GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k;",
        Broker::shared().servers
    )
}
