//! The `kafka` connector against a real Apache Kafka broker (KRaft, one node, on 127.0.0.1,
//! started by `kafka/broker.rs` and shared by these tests): records read as rows with their
//! metadata, bounded reads that end, startup modes, malformed records under each policy,
//! watermarks per partition, partitions added while reading, the sink's formats and
//! guarantees (the headers column and avro in `kafka/formats.rs`), an unreachable broker, a broker restarted mid-query, and `weir run` killed with
//! SIGKILL while writing exactly once.

#[path = "kafka/broker.rs"]
mod broker;
#[path = "kafka/formats.rs"]
mod formats;
#[path = "kafka/parallel.rs"]
mod parallel;
#[path = "kafka/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker::Broker;
use support::*;

#[test]
fn json_records_are_rows_with_their_partition_offset_and_timestamp_and_a_bounded_read_ends() {
    let b = Broker::shared();
    let t = topic("bids");
    b.create_topic(&t, 2);
    let records: Vec<(Option<i32>, String)> = (0..6)
        .map(|i| {
            (Some(i % 2), format!(r#"{{"auction": {}, "price": {}, "ts": "2024-01-01 00:00:0{i}"}}"#, 100 + i, i * 10))
        })
        .collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    b.produce(&t, &refs);
    let ddl = source(
        "bids",
        "auction BIGINT, price BIGINT, ts TIMESTAMP(3), part INT METADATA FROM 'partition' VIRTUAL, \
         off BIGINT METADATA FROM 'offset' VIRTUAL, kt TIMESTAMP(3) METADATA FROM 'timestamp', \
         WATERMARK FOR ts AS ts - INTERVAL '2' SECOND",
        &t,
        "",
    );
    let out = ok(&format!("{ddl} SELECT auction, price, part, off, kt IS NOT NULL AS has_time FROM bids;"));
    assert_eq!(
        lines(&out),
        vec![
            "100,0,0,0,true",
            "101,10,1,0,true",
            "102,20,0,1,true",
            "103,30,1,1,true",
            "104,40,0,2,true",
            "105,50,1,2,true"
        ]
    );
}

#[test]
fn windows_over_partitions_close_on_the_slowest_partition() {
    // partition 0 runs ahead of partition 1: with one watermark for the topic, partition 1's
    // rows would be late; with a watermark per partition none is
    let b = Broker::shared();
    let t = topic("events");
    b.create_topic(&t, 2);
    let mut records = Vec::new();
    for s in 0..20 {
        records.push((Some(0), format!(r#"{{"k": "a", "ts": "2024-01-01 00:00:{:02}"}}"#, s + 30)));
    }
    for s in 0..20 {
        records.push((Some(1), format!(r#"{{"k": "b", "ts": "2024-01-01 00:00:{:02}"}}"#, s)));
    }
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    b.produce(&t, &refs);
    let ddl = source("e", "k VARCHAR, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND", &t, "");
    let out = ok(&format!(
        "{ddl} SELECT k, TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS n FROM e \
         GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k;"
    ));
    assert_eq!(
        lines(&out),
        vec![
            "a,2024-01-01T00:00:30,10",
            "a,2024-01-01T00:00:40,10",
            "b,2024-01-01T00:00:00,10",
            "b,2024-01-01T00:00:10,10"
        ]
    );
}

#[test]
fn startup_modes_choose_where_reading_starts() {
    let b = Broker::shared();
    let t = topic("modes");
    b.create_topic(&t, 1);
    let values: Vec<String> = (0..5).map(|i| format!(r#"{{"v": {i}}}"#)).collect();
    let refs: Vec<(Option<i32>, &str)> = values.iter().map(|v| (Some(0), v.as_str())).collect();
    b.produce(&t, &refs);
    let read = |options: &str| {
        let bounded = if options.contains("scan.bounded") { "" } else { ", 'scan.bounded.mode' = 'latest-offset'" };
        let ddl = format!(
            "CREATE TABLE t (v BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
             'properties.bootstrap.servers' = '{}'{bounded}{options});",
            b.servers
        );
        lines(&ok(&format!("{ddl} SELECT v FROM t;")))
    };
    assert_eq!(read(", 'scan.startup.mode' = 'earliest-offset'"), vec!["0", "1", "2", "3", "4"]);
    assert_eq!(read(", 'scan.startup.mode' = 'latest-offset'"), Vec::<String>::new());
    assert_eq!(
        read(", 'scan.startup.mode' = 'specific-offsets', 'scan.startup.specific-offsets' = 'partition:0,offset:3'"),
        vec!["3", "4"]
    );
    assert_eq!(read(", 'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = 'partition:0,offset:2', 'scan.startup.mode' = 'earliest-offset'"), vec!["0", "1"]);
    // a group without committed offsets starts at the earliest; the offsets read are
    // committed to the group, so the next query of the group starts after them
    let group = format!(", 'properties.group.id' = '{t}-group'");
    assert_eq!(read(&group), vec!["0", "1", "2", "3", "4"]);
    b.produce(&t, &[(Some(0), r#"{"v": 5}"#)]);
    assert_eq!(read(&group), vec!["5"]);
    // timestamps: every record was written before now, none after
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    assert_eq!(
        read(&format!(", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{}'", now + 60_000)),
        Vec::<String>::new()
    );
    assert_eq!(read(", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '0'").len(), 6);
}

#[test]
fn a_malformed_record_fails_with_its_topic_partition_and_offset_or_is_skipped_or_dead_lettered() {
    let b = Broker::shared();
    let t = topic("bad");
    b.create_topic(&t, 1);
    b.produce(
        &t,
        &[(Some(0), r#"{"v": 1}"#), (Some(0), r#"{"v": "zz"}"#), (Some(0), "not json"), (Some(0), r#"{"v": 4}"#)],
    );
    let ddl = |extra: &str| source("t", "v BIGINT", &t, extra);
    let o = run(&format!("{} SELECT v FROM t;", ddl("")));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("topic '{t}' partition 0 offset 1")), "{err}");
    assert!(err.contains("bad value \"zz\" for column 'v' (BIGINT)"), "{err}");

    assert_eq!(
        lines(&ok(&format!("{} SELECT v FROM t;", ddl(", 'json.ignore-parse-errors' = 'true'")))),
        vec!["1", "4"]
    );
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out = ok(&format!("{} SELECT v FROM t;", ddl(&format!(", 'dead_letter' = '{}'", dead.display()))));
    assert_eq!(lines(&out), vec!["1", "4"]);
    let kept: Vec<serde_json::Value> =
        std::fs::read_to_string(&dead).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["topic"], t.as_str());
    assert_eq!((kept[0]["partition"].as_i64(), kept[0]["offset"].as_i64()), (Some(0), Some(1)));
    assert_eq!(kept[1]["offset"].as_i64(), Some(2));
    assert_eq!(kept[1]["row"], "not json");
    assert!(kept[1]["error"].as_str().unwrap().starts_with("invalid JSON"), "{:?}", kept[1]);
}

#[test]
fn csv_and_raw_records_and_the_sink_formats() {
    let b = Broker::shared();
    let (input, json_out, csv_out, raw_out) = (topic("csv-in"), topic("json-out"), topic("csv-out"), topic("raw-out"));
    b.create_topic(&input, 1);
    for t in [&json_out, &csv_out, &raw_out] {
        b.create_topic(t, 3);
    }
    b.produce(&input, &[(None, "1,alpha,2024-01-01 00:00:01"), (None, "2,\"be,ta\",2024-01-01 00:00:02")]);
    let sink = |name: &str, t: &str, columns: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{t}', \
             'properties.bootstrap.servers' = '{}', 'sink.delivery-guarantee' = 'at-least-once'{extra});",
            b.servers
        )
    };
    let script = format!(
        "{} {} {} {}
         INSERT INTO j SELECT id, name, ts FROM c;
         INSERT INTO k SELECT id, name, ts FROM c;
         INSERT INTO r SELECT name FROM c;",
        source("c", "id BIGINT, name VARCHAR, ts TIMESTAMP(3)", &input, ", 'format' = 'csv'")
            .replace("'format' = 'json', ", ""),
        sink(
            "j",
            &json_out,
            "id BIGINT, name VARCHAR, ts TIMESTAMP(3)",
            ", 'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'name'"
        ),
        sink(
            "k",
            &csv_out,
            "id BIGINT, name VARCHAR, ts TIMESTAMP(3)",
            ", 'format' = 'csv', 'sink.partitioner' = 'fixed'"
        ),
        sink("r", &raw_out, "name VARCHAR", ", 'format' = 'raw', 'sink.partitioner' = 'round-robin'"),
    );
    ok(&script);
    let mut json = b.values(&json_out, false);
    json.sort();
    assert_eq!(
        json,
        vec![
            r#"{"id":1,"name":"alpha","ts":"2024-01-01T00:00:01"}"#,
            r#"{"id":2,"name":"be,ta","ts":"2024-01-01T00:00:02"}"#
        ]
    );
    assert_eq!(b.values(&csv_out, false), vec!["1,alpha,2024-01-01T00:00:01", "2,\"be,ta\",2024-01-01T00:00:02"]);
    let mut raw = b.values(&raw_out, false);
    raw.sort();
    assert_eq!(raw, vec!["alpha", "be,ta"]);
    // what was written reads back the same
    let ddl = source("back", "id BIGINT, name VARCHAR, ts TIMESTAMP(3), key BYTES METADATA VIRTUAL", &json_out, "");
    assert_eq!(
        lines(&ok(&format!("{ddl} SELECT id, name, CAST(key AS VARCHAR) = name AS keyed FROM back;"))),
        vec!["1,alpha,true", "2,\"be,ta\",true"]
    );
}

#[test]
fn key_fields_are_written_to_and_read_from_the_key() {
    let b = Broker::shared();
    let t = topic("keyed");
    b.create_topic(&t, 2);
    let options = format!(
        "'connector' = 'kafka', 'topic' = '{t}', 'properties.bootstrap.servers' = '{}', \
         'key.format' = 'json', 'key.fields' = 'id', 'value.fields-include' = 'EXCEPT_KEY'",
        b.servers
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "id,name\n1,one\n2,two\n").unwrap();
    ok(&format!(
        "CREATE TABLE i (id BIGINT, name VARCHAR) WITH ('connector' = 'file', 'path' = '{}');
         CREATE TABLE o (id BIGINT, name VARCHAR) WITH ({options});
         INSERT INTO o SELECT id, name FROM i;",
        input.display()
    ));
    let mut values = b.values(&t, false);
    values.sort();
    assert_eq!(values, vec![r#"{"name":"one"}"#, r#"{"name":"two"}"#]);
    let read = ok(&format!(
        "CREATE TABLE k (name VARCHAR, id BIGINT, raw VARCHAR METADATA FROM 'key' VIRTUAL) WITH ({options}, \
         'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         SELECT id, name, raw FROM k;"
    ));
    assert_eq!(lines(&read), vec![r#"1,one,"{""id"":1}""#, r#"2,two,"{""id"":2}""#]);
}

#[test]
fn debezium_json_is_read_as_a_changelog_and_an_updating_query_is_written_as_one() {
    let b = Broker::shared();
    let (input, output) = (topic("dbz-in"), topic("dbz-out"));
    b.create_topic(&input, 1);
    b.create_topic(&output, 1);
    b.produce(
        &input,
        &[
            (None, r#"{"before": null, "after": {"k": "a", "v": 1}, "op": "c"}"#),
            (None, r#"{"before": null, "after": {"k": "b", "v": 2}, "op": "r"}"#),
            (None, r#"{"before": {"k": "a", "v": 1}, "after": {"k": "a", "v": 5}, "op": "u"}"#),
            (None, r#"{"schema": {}, "payload": {"before": {"k": "b", "v": 2}, "after": null, "op": "d"}}"#),
            (None, r#"{"before": null, "after": {"k": "c", "v": 7}, "op": "c"}"#),
        ],
    );
    let ddl =
        source("t", "k VARCHAR, v BIGINT", &input, ", 'format' = 'debezium-json'").replace("'format' = 'json', ", "");
    let out = ok(&format!("{ddl} SELECT k, SUM(v) AS s FROM t GROUP BY k;"));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["a,5", "c,7"], "{out}");

    // an updating query into a debezium-json topic, read back as a changelog
    let sink = format!(
        "CREATE TABLE totals (k VARCHAR, s BIGINT) WITH ('connector' = 'kafka', 'topic' = '{output}', \
         'properties.bootstrap.servers' = '{}', 'format' = 'debezium-json');",
        b.servers
    );
    ok(&format!("{ddl} {sink} INSERT INTO totals SELECT k, SUM(v) AS s FROM t GROUP BY k;"));
    let events: Vec<serde_json::Value> =
        b.values(&output, false).iter().map(|v| serde_json::from_str(v).unwrap()).collect();
    assert!(events.iter().all(|e| matches!(e["op"].as_str(), Some("c" | "d"))), "{events:?}");
    let back = source("back", "k VARCHAR, s BIGINT", &output, ", 'format' = 'debezium-json'")
        .replace("'format' = 'json', ", "");
    let out = ok(&format!("{back} SELECT k, MAX(s) AS s FROM back GROUP BY k;"));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["a,5", "c,7"], "{out}");
    // a plain json table refuses the updating query
    let o = run(&format!(
        "{ddl} CREATE TABLE plain (k VARCHAR, s BIGINT) WITH ('connector' = 'kafka', 'topic' = '{output}', \
         'properties.bootstrap.servers' = '{}'); INSERT INTO plain SELECT k, SUM(v) FROM t GROUP BY k;",
        b.servers
    ));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("updating"));
}

#[test]
fn the_kafka_examples_run() {
    let b = Broker::shared();
    for (t, partitions) in [("bids", 4), ("bid_counts", 2), ("bidder_totals", 2)] {
        b.create_topic(t, partitions);
    }
    let dir = tempfile::tempdir().unwrap();
    let example = |name: &str| {
        let text =
            std::fs::read_to_string(format!("{}/sql-examples/kafka/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(text.starts_with("--"), "{name} must start with a comment saying what it shows");
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("localhost:9092", &b.servers)).unwrap();
        path
    };
    let run_example = |name: &str, extra: &[&str]| {
        let o = weir()
            .current_dir(dir.path())
            .arg("run")
            .arg(example(name))
            .args(["--format", "csv", "--quiet"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    run_example("load_bids.sql", &[]);
    assert_eq!(b.values("bids", false).len(), 200_000 * 46 / 50, "the Nexmark generator makes 46 bids in 50 events");
    let top = run_example("top_bids.sql", &[]);
    assert!(top.lines().count() > 10, "{top}");
    run_example("exactly_once.sql", &["--checkpoint-dir", "ck", "--checkpoint-interval", "500ms"]);
    let counts = b.values("bid_counts", true);
    let total: i64 =
        counts.iter().map(|c| serde_json::from_str::<serde_json::Value>(c).unwrap()["bids"].as_i64().unwrap()).sum();
    assert_eq!(total, 200_000 * 46 / 50, "every bid counted once");
    run_example("changelog.sql", &[]);
    assert!(!b.values("bidder_totals", false).is_empty());
}

#[test]
fn upsert_kafka_reads_the_latest_row_per_key_and_writes_an_updating_query() {
    let b = Broker::shared();
    let (input, output) = (topic("upsert-in"), topic("upsert-out"));
    b.create_topic(&input, 1);
    b.create_topic(&output, 2);
    b.produce_keyed(
        &input,
        &[
            (r#"{"id":1}"#, Some(r#"{"id":1,"name":"a","n":1}"#)),
            (r#"{"id":2}"#, Some(r#"{"id":2,"name":"b","n":2}"#)),
            (r#"{"id":3}"#, Some(r#"{"id":3,"name":"a","n":4}"#)),
            (r#"{"id":1}"#, Some(r#"{"id":1,"name":"a","n":10}"#)),
            (r#"{"id":2}"#, None),
            (r#"{"id":9}"#, None),
        ],
    );
    let table = |name: &str, t: &str, columns: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} ({columns}) WITH ('connector' = 'upsert-kafka', 'topic' = '{t}', \
             'properties.bootstrap.servers' = '{}', 'key.format' = 'json', 'value.format' = 'json'{extra});",
            b.servers
        )
    };
    let users = table(
        "users",
        &input,
        "id BIGINT, name VARCHAR, n BIGINT NOT NULL, PRIMARY KEY (id) NOT ENFORCED",
        ", 'scan.bounded.mode' = 'latest-offset'",
    );
    // a key's new row replaces its old one, a tombstone removes it
    let out = ok(&format!("{users} SELECT name, SUM(n) AS total, COUNT(*) AS users FROM users GROUP BY name;"));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["a,14,2"], "{out}");
    let out = ok(&format!("{users} SELECT id, n FROM users;"));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["1,10", "3,4"], "{out}");

    // an updating query written by key: the latest value per key, tombstones for removed keys
    let totals = table("totals", &output, "name VARCHAR, total BIGINT, PRIMARY KEY (name) NOT ENFORCED", "");
    ok(&format!("{users} {totals} INSERT INTO totals SELECT name, SUM(n) AS total FROM users GROUP BY name;"));
    let back = table(
        "back",
        &output,
        "name VARCHAR, total BIGINT, PRIMARY KEY (name) NOT ENFORCED",
        ", 'scan.bounded.mode' = 'latest-offset'",
    );
    let out = ok(&format!("{back} SELECT name, total FROM back;"));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["a,14"], "{out}");
    // an update whose new row a filter drops removes the key
    let (moved, moved_out) = (topic("upsert-moved"), topic("upsert-moved-out"));
    b.create_topic(&moved, 1);
    b.create_topic(&moved_out, 1);
    b.produce_keyed(
        &moved,
        &[
            (r#"{"id":1}"#, Some(r#"{"id":1,"city":"x"}"#)),
            (r#"{"id":2}"#, Some(r#"{"id":2,"city":"x"}"#)),
            (r#"{"id":1}"#, Some(r#"{"id":1,"city":"y"}"#)),
        ],
    );
    let cities = |name: &str, t: &str| {
        table(
            name,
            t,
            "id BIGINT, city VARCHAR, PRIMARY KEY (id) NOT ENFORCED",
            ", 'scan.bounded.mode' = 'latest-offset'",
        )
    };
    let in_x = table("in_x", &moved_out, "id BIGINT, city VARCHAR, PRIMARY KEY (id) NOT ENFORCED", "");
    ok(&format!("{} {in_x} INSERT INTO in_x SELECT id, city FROM people WHERE city = 'x';", cities("people", &moved)));
    let out = ok(&format!("{} SELECT id, city FROM back_x;", cities("back_x", &moved_out)));
    let changes: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
    assert_eq!(consolidate(&changes), vec!["2,x"], "{out}");

    // without a primary key
    let o = run(&table("nokey", &output, "name VARCHAR, total BIGINT", ""));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("primary key"));
}

#[test]
fn the_shell_runs_a_continuous_query_over_a_topic_until_ctrl_c() {
    use rexpect::session::spawn_command;
    let b = Broker::shared();
    let t = topic("shell");
    b.create_topic(&t, 2);
    b.produce(&t, &[(Some(0), r#"{"user": "ann", "n": 1}"#), (Some(1), r#"{"user": "bob", "n": 2}"#)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = weir();
    cmd.env("WEIR_HISTORY", dir.path().join("history")).env("TERM", "xterm").env_remove("RUST_LOG");
    let mut p = spawn_command(cmd, Some(30_000)).expect("the shell starts in a pty");
    let prompt = |p: &mut rexpect::session::PtySession| {
        p.exp_string("weir> ").expect("a prompt");
        std::thread::sleep(Duration::from_millis(200));
    };
    prompt(&mut p);
    p.send_line("\\format csv").unwrap();
    prompt(&mut p);
    p.send_line(&format!(
        "CREATE TABLE clicks (user VARCHAR, n BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
         'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset');",
        b.servers
    ))
    .unwrap();
    p.exp_string("CREATE TABLE clicks").unwrap();
    prompt(&mut p);
    p.send_line("SELECT user, SUM(n) AS total FROM clicks GROUP BY user;").unwrap();
    p.exp_string("+I,ann,1").unwrap();
    // records written while the query runs come through
    b.produce(&t, &[(Some(0), r#"{"user": "ann", "n": 40}"#)]);
    p.exp_string("+U,ann,41").unwrap();
    let asked = Instant::now();
    p.send_control('c').unwrap();
    p.exp_string("query stopped (Ctrl-C)").unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped in {:?}", asked.elapsed());
    prompt(&mut p);
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    let b = Broker::shared();
    let t = topic("idle");
    b.create_topic(&t, 2);
    // partition 1 never gets a record
    let records: Vec<String> = (0..30).map(|s| format!(r#"{{"ts": "2024-01-01 00:00:{s:02}"}}"#)).collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|r| (Some(0), r.as_str())).collect();
    b.produce(&t, &refs);
    let query = |extra: &str| {
        format!(
            "CREATE TABLE e (ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'kafka', 'topic' = '{t}', \
             'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset'{extra}); \
             SELECT TUMBLE_START(ts, INTERVAL '10' SECOND) AS w, COUNT(*) AS n FROM e GROUP BY TUMBLE(ts, INTERVAL '10' SECOND);",
            b.servers
        )
    };
    let rows = |out: &str| {
        let mut rows: Vec<String> = out.lines().filter(|l| l.starts_with("2024")).map(str::to_string).collect();
        rows.sort();
        rows
    };
    // partition 0 keeps getting records while the query runs (as in Flink, a partition with
    // no records for the timeout is idle)
    let trickle = |seconds: u64| {
        let t = t.clone();
        std::thread::spawn(move || {
            for s in 0..seconds * 10 {
                let record = format!(r#"{{"ts": "2024-01-01 00:01:{:02}"}}"#, s % 60);
                Broker::shared().produce(&t, &[(Some(0), record.as_str())]);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // the empty partition holds every window open
    let writer = trickle(3);
    assert_eq!(rows(&run_for(&query(""), 3)), Vec::<String>::new());
    writer.join().unwrap();
    // idle, it no longer does: the windows the watermark passed fire while the query runs
    let writer = trickle(4);
    let out = run_for(&query(", 'scan.watermark.idle-timeout' = '500 ms'"), 4);
    writer.join().unwrap();
    let fired = rows(&out);
    assert!(fired.starts_with(&["2024-01-01T00:00:00,10".to_string(), "2024-01-01T00:00:10,10".to_string()]), "{out}");
    // in parallel, one instance per partition: the one reading the empty partition declares
    // itself idle, and the merge of the two leaves it out
    let writer = trickle(4);
    let out = run_for(&format!("SET parallelism = 2; {}", query(", 'scan.watermark.idle-timeout' = '500 ms'")), 4);
    writer.join().unwrap();
    let fired = rows(&out);
    assert!(fired.starts_with(&["2024-01-01T00:00:00,10".to_string(), "2024-01-01T00:00:10,10".to_string()]), "{out}");
}

#[test]
fn a_checkpoint_taken_before_reading_started_keeps_the_startup_mode() {
    let b = Broker::shared();
    let t = topic("late-start");
    b.create_topic(&t, 1);
    b.produce(&t, &[(Some(0), r#"{"v": 1}"#)]);
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "CREATE TABLE t (v BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
         'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'latest-offset'); SELECT v FROM t;",
        b.servers
    );
    let run_then_stop = |seconds: u64, during: &dyn Fn()| {
        let mut child = weir()
            .args(["run", "--format", "csv", "--quiet", "--checkpoint-interval", "200ms", "--checkpoint-dir"])
            .arg(dir.path().join("ck"))
            .args(["-e", &sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        std::thread::sleep(Duration::from_secs(1));
        during();
        std::thread::sleep(Duration::from_secs(seconds));
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        let _ = child.wait();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        out
    };
    // nothing new arrives: checkpoints are taken before any record is read
    let first = run_then_stop(1, &|| {});
    assert!(!first.contains('1'), "{first}");
    // resumed, it still starts at the latest offset, not at the earliest
    let second = run_then_stop(2, &|| b.produce(&t, &[(Some(0), r#"{"v": 2}"#)]));
    let rows: Vec<&str> = second.lines().filter(|l| *l != "v").collect();
    assert_eq!(rows, vec!["2"], "{second}");
}

#[test]
fn partitions_added_to_the_topic_are_read() {
    let b = Broker::shared();
    let t = topic("grows");
    b.create_topic(&t, 1);
    b.produce(&t, &[(Some(0), r#"{"v": 1}"#)]);
    let ddl = format!(
        "CREATE TABLE t (v BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
         'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'earliest-offset', \
         'scan.topic-partition-discovery.interval' = '200 ms');",
        b.servers
    );
    let mut child = weir()
        .args(["run", "--format", "csv", "--quiet", "-e", &format!("{ddl} SELECT v FROM t;")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    std::thread::sleep(Duration::from_secs(2));
    b.add_partitions(&t, 3);
    std::thread::sleep(Duration::from_secs(1));
    b.produce(&t, &[(Some(1), r#"{"v": 2}"#), (Some(2), r#"{"v": 3}"#)]);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(&mut stdout).lines().map_while(Result::ok) {
            seen.push(line);
            if seen.len() == 4 {
                break;
            }
        }
        seen
    });
    let started = Instant::now();
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut seen = reader.join().unwrap();
    seen.sort();
    assert_eq!(seen, vec!["1", "2", "3", "v"], "the rows of the new partitions were not read");
}

#[test]
fn an_unreachable_broker_fails_fast_naming_the_servers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let o = run(&format!(
        "CREATE TABLE t (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'x', \
         'properties.bootstrap.servers' = '127.0.0.1:{port}'); SELECT v FROM t;"
    ));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn exactly_once_needs_a_prefix_and_checkpoints() {
    let b = Broker::shared();
    let t = topic("eo");
    b.create_topic(&t, 1);
    let o = run(&format!(
        "CREATE TABLE o (v BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
         'properties.bootstrap.servers' = '{}', 'sink.delivery-guarantee' = 'exactly-once');",
        b.servers
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sink.transactional-id-prefix"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "v\n1\n").unwrap();
    let o = run(&format!(
        "CREATE TABLE i (v BIGINT) WITH ('connector' = 'file', 'path' = '{}', 'format' = 'csv');
         CREATE TABLE o (v BIGINT) WITH ('connector' = 'kafka', 'topic' = '{t}', \
         'properties.bootstrap.servers' = '{}', 'sink.delivery-guarantee' = 'exactly-once', \
         'sink.transactional-id-prefix' = 'p'); INSERT INTO o SELECT v FROM i;",
        input.display(),
        b.servers
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("checkpoint"), "{err}");
}

#[test]
fn kafka_to_kafka_exactly_once_across_sigkills() {
    const EVENTS: u64 = 40_000;
    const MIN_KILLS: usize = 5;
    let b = Broker::shared();
    let (input, output, reference) = (topic("eo-in"), topic("eo-out"), topic("eo-ref"));
    b.create_topic(&input, 2);
    b.create_topic(&output, 2);
    b.create_topic(&reference, 2);
    let writer = paced_writer(input.clone(), EVENTS, 5_000);
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    let delivery = "'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'crash-test'";
    std::fs::write(&sql, window_script(b, &input, &output, EVENTS / 2, delivery)).unwrap();
    let seed = std::env::var("WEIR_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("kafka crash test: seed {seed}");
    let kills = run_with_kills(dir.path(), &sql, seed, MIN_KILLS);
    writer.join().unwrap();
    // the same query, uninterrupted
    let reference_sql = dir.path().join("reference.sql");
    std::fs::write(
        &reference_sql,
        window_script(b, &input, &reference, EVENTS / 2, "'sink.delivery-guarantee' = 'at-least-once'"),
    )
    .unwrap();
    let o = weir().arg("run").arg(&reference_sql).arg("--quiet").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = multiset(b.values(&reference, true));
    assert!(expected.len() > 100, "the reference wrote {} rows", expected.len());
    let got = multiset(b.values(&output, true));
    let differ: Vec<_> = expected
        .iter()
        .filter(|(v, n)| got.get(*v) != Some(n))
        .map(|(v, n)| format!("{v}: {n} expected, {} seen", got.get(v).unwrap_or(&0)))
        .chain(
            got.iter()
                .filter(|(v, _)| !expected.contains_key(*v))
                .map(|(v, n)| format!("{v}: {n} seen, none expected")),
        )
        .take(6)
        .collect();
    assert!(
        got == expected,
        "seed {seed}, {kills} kills: a read_committed reader sees {} distinct rows ({} in all), the uninterrupted run {}; \
         for example:\n{}",
        got.len(),
        got.values().sum::<usize>(),
        expected.len(),
        differ.join("\n")
    );
}

#[test]
fn a_broker_restarted_mid_query_loses_and_repeats_nothing_under_exactly_once() {
    const EVENTS: u64 = 20_000;
    let mut own = Broker::start();
    let (input, output) = ("restart-in", "restart-out");
    own.create_topic(input, 2);
    own.create_topic(output, 1);
    let records: Vec<(Option<i32>, String)> = (0..EVENTS).map(event).collect();
    let refs: Vec<(Option<i32>, &str)> = records.iter().map(|(p, v)| (*p, v.as_str())).collect();
    let (first, rest) = refs.split_at(refs.len() / 2);
    own.produce(input, first);
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    let delivery = "'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'restart-test'";
    // the query reads up to offsets the topic reaches only once the second half is written,
    // after the restart: it cannot end before it, however fast it reads
    std::fs::write(&sql, window_script(&own, input, output, EVENTS / 2, delivery)).unwrap();
    let mut child = weir()
        .arg("run")
        .arg(&sql)
        .args(["--quiet", "--batch-size", "50", "--checkpoint-interval", "100ms", "--checkpoint-dir"])
        .arg(dir.path().join("checkpoints"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // restart the broker once the query is reading (its first checkpoint is complete), however
    // long a busy machine takes to start it
    let checkpoints = dir.path().join("checkpoints");
    let started = std::time::Instant::now();
    let reading = || {
        std::fs::read_dir(&checkpoints)
            .map(|d| d.flatten().any(|e| e.path().join("_manifest.json").exists()))
            .unwrap_or(false)
    };
    while !reading() && started.elapsed() < Duration::from_secs(60) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the query ended before the broker restarted");
    assert!(reading(), "no checkpoint within a minute");
    own.restart();
    own.produce(input, rest);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
    assert!(status.success(), "{err}\n{}", own.log());
    // the expected windows, computed here
    let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let ts = (i * 3 + (i * 7919) % 40) as i64;
        let e = expected.entry(((i % 20) as i64, ts / 1000)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i as i64;
    }
    let got: Vec<serde_json::Value> =
        own.values(output, true).iter().map(|v| serde_json::from_str(v).unwrap()).collect();
    assert_eq!(got.len(), expected.len(), "rows lost or repeated");
    for row in got {
        let w = row["w"].as_str().unwrap();
        let (m, s): (i64, i64) = (w[14..16].parse().unwrap(), w[17..19].parse().unwrap());
        let key = (row["k"].as_i64().unwrap(), m * 60 + s);
        assert_eq!(Some(&(row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap())), expected.get(&key), "{row}");
    }
}
