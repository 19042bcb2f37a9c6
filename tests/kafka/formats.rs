//! The `headers` metadata column and the `avro` format, read and written (part of the
//! `kafka` test binary, with its shared broker).

use crate::broker::Broker;
use crate::support::*;

#[test]
fn headers_are_a_map_column() {
    let b = Broker::shared();
    let t = topic("headers");
    b.create_topic(&t, 1);
    let not_text: &[u8] = &[0xff, 0x00];
    b.produce_with_headers(
        &t,
        &[
            (r#"{"v": 1}"#, &[("trace", Some(b"abc".as_slice())), ("bin", Some(not_text))]),
            (r#"{"v": 2}"#, &[]),
            (r#"{"v": 3}"#, &[("trace", Some(b"def".as_slice())), ("empty", None)]),
        ],
    );
    // as bytes, every record
    let ddl = source("r", "v BIGINT, h MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL", &t, "");
    let out = ok(&format!(
        "{ddl} SELECT v, CAST(h['trace'] AS VARCHAR) AS trace, h['bin'] = X'ff00' AS bin, cardinality(h) AS n, \
         array_to_string(map_keys(h), '|') AS names FROM r;"
    ));
    assert_eq!(lines(&out), vec!["1,abc,true,2,trace|bin", "2,,,0,", "3,def,,2,trace|empty"]);
    // as text, a header that is not UTF-8 makes the record bad, under the table's policy
    let ddl = source(
        "r",
        "v BIGINT, headers MAP<VARCHAR, VARCHAR> METADATA VIRTUAL",
        &t,
        ", 'json.ignore-parse-errors' = 'true'",
    );
    let out = ok(&format!("{ddl} SELECT v, headers['trace'] AS trace FROM r;"));
    assert_eq!(lines(&out), vec!["2,", "3,def"]);
    let ddl = source("r", "v BIGINT, headers MAP<VARCHAR, VARCHAR> METADATA", &t, "");
    let o = run(&format!("{ddl} SELECT v, headers['trace'] FROM r;"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("header 'bin' is not UTF-8") && err.contains("offset 0"), "{err}");
    // written: copied from the records read, and made by the query
    let (copied, made) = (topic("headers-copied"), topic("headers-made"));
    b.create_topic(&copied, 1);
    b.create_topic(&made, 1);
    let sink = |name: &str, t: &str, map: &str| {
        format!(
            "CREATE TABLE {name} (v BIGINT, hs {map} METADATA FROM 'headers') WITH ('connector' = 'kafka', \
             'topic' = '{t}', 'properties.bootstrap.servers' = '{}', 'format' = 'json');",
            b.servers
        )
    };
    let ddl = source("r", "v BIGINT, h MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL", &t, "");
    ok(&format!(
        "{ddl} {} {} INSERT INTO copied SELECT v, h FROM r; \
         INSERT INTO made SELECT v, make_map('source', 'weir', 'v', CAST(v AS VARCHAR)) FROM r;",
        sink("copied", &copied, "MAP<STRING, BYTES>"),
        sink("made", &made, "MAP<VARCHAR, VARCHAR>")
    ));
    // the headers are not in the value
    assert_eq!(b.values(&copied, false), vec![r#"{"v":1}"#, r#"{"v":2}"#, r#"{"v":3}"#]);
    let back = source("back", "v BIGINT, h MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL", &copied, "");
    let out = ok(&format!(
        "{back} SELECT v, CAST(h['trace'] AS VARCHAR) AS trace, h['bin'] = X'ff00' AS bin, \
         array_to_string(map_keys(h), '|') AS names FROM back;"
    ));
    assert_eq!(lines(&out), vec!["1,abc,true,trace|bin", "2,,,", "3,def,,trace|empty"]);
    let back = source("back", "v BIGINT, h MAP<STRING, STRING> METADATA FROM 'headers' VIRTUAL", &made, "");
    let out = ok(&format!("{back} SELECT v, h['source'] AS s, h['v'] AS hv FROM back;"));
    assert_eq!(lines(&out), vec!["1,weir,1", "2,weir,2", "3,weir,3"]);
}

#[test]
fn avro_values_and_keys_are_written_and_read_back() {
    let b = Broker::shared();
    let (input, output) = (topic("avro-in"), topic("avro-out"));
    b.create_topic(&input, 1);
    b.create_topic(&output, 1);
    b.produce(
        &input,
        &[
            (None, r#"{"id": 1, "name": "alpha", "score": 1.5, "ts": "2024-01-01 00:00:01"}"#),
            (None, r#"{"id": 2, "name": null, "score": null, "ts": "2024-01-01 00:00:02.250"}"#),
        ],
    );
    let columns = "id BIGINT NOT NULL, name VARCHAR, score DOUBLE, ts TIMESTAMP(3)";
    let avro = ", 'format' = 'avro', 'key.format' = 'avro', 'key.fields' = 'id'";
    ok(&format!(
        "{} CREATE TABLE o ({columns}) WITH ('connector' = 'kafka', 'topic' = '{output}', \
         'properties.bootstrap.servers' = '{}'{avro}); INSERT INTO o SELECT * FROM i;",
        source("i", columns, &input, ""),
        b.servers
    ));
    // read back through the same schema
    let back = source("back", columns, &output, avro).replace("'format' = 'json', ", "");
    let out = ok(&format!("{back} SELECT id, name, score, ts FROM back;"));
    assert_eq!(lines(&out), vec!["1,alpha,1.5,2024-01-01T00:00:01", "2,,,2024-01-01T00:00:02.250"]);
    // the bytes are Avro's binary encoding, as Flink writes it. The key: id, a long (1 is
    // zig-zag 2). The value: id again (NOT NULL: no union); name, a union's second branch (02)
    // and a string of 5 bytes (0a); score, branch 1 and a double (1.5, little-endian); ts,
    // branch 1 and a long of milliseconds. The second row's NULLs are branch 0 (00).
    let raw = source("raw", "v BYTES, k BYTES METADATA FROM 'key' VIRTUAL", &output, ", 'format' = 'raw'")
        .replace("'format' = 'json', ", "");
    let out = ok(&format!("{raw} SELECT encode(k, 'hex') AS k, encode(v, 'hex') AS v FROM raw;"));
    assert_eq!(lines(&out), vec!["02,02020a616c70686102000000000000f83f02d0df8fa59863", "04,0400000294f38fa59863"]);
    // a record that is not Avro is a bad record, with its place
    b.produce(&output, &[(None, "not avro")]);
    let o = run(&format!("{back} SELECT id FROM back;"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("invalid avro") && err.contains("offset 2"), "{err}");
}
