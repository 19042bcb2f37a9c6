//! Generated input, in process through the same `Session` the shell and the slt files use:
//!
//! - data: CSV files mixing good rows, malformed values, bad timestamps, wrong field counts,
//!   blank lines and CRLF line ends, read in random batch sizes. Every row either reaches the
//!   output, is counted late, or is counted malformed with its line in the dead-letter file.
//! - SQL: valid statements cut, spliced and salted with tokens. Planning and running never
//!   panics and never hangs; an error has a message, and a syntax error its position.
//!
//! Sized to run in seconds; `PROPTEST_CASES` runs more.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use proptest::prelude::*;
use weir_cli::{Session, SessionError, StatementResult};
use weir_runtime::Metrics;

/// The longest one generated case may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(60);

/// Run `f` on a thread of its own; fail if it panics or takes longer than [`HANG`].
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let what_owned = what.to_string();
    let worker = std::thread::Builder::new().stack_size(8 << 20).spawn(move || {
        let _ = tx.send(f());
    });
    assert!(worker.is_ok(), "a thread for {what_owned}");
    match rx.recv_timeout(HANG) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("hung: {what}"),
        Err(RecvTimeoutError::Disconnected) => panic!("panicked: {what}"),
    }
}

/// One line of a generated file.
#[derive(Debug, Clone)]
enum Line {
    Good { key: u8, v: i32, ms: u32 },
    BadNumber { key: u8, ms: u32 },
    BadTime { key: u8, v: i32, far: bool },
    Fields(u8),
    Blank(bool),
}

impl Line {
    fn is_row(&self) -> bool {
        matches!(self, Line::Good { .. })
    }

    fn is_malformed(&self) -> bool {
        !matches!(self, Line::Good { .. } | Line::Blank(_))
    }

    fn text(&self) -> String {
        let ts = |ms: u32| format!("2024-01-01 00:00:{:02}.{:03}", ms / 1000 % 60, ms % 1000);
        match self {
            Line::Good { key, v, ms } => format!("k{key},{v},{}", ts(*ms)),
            Line::BadNumber { key, ms } => format!("k{key},12x,{}", ts(*ms)),
            Line::BadTime { key, v, far: true } => format!("k{key},{v},99999999999999999"),
            Line::BadTime { key, v, far: false } => format!("k{key},{v},not a time"),
            Line::Fields(n) => vec!["1"; usize::from(*n)].join(","),
            Line::Blank(spaces) => {
                if *spaces {
                    " \t ".to_string()
                } else {
                    String::new()
                }
            }
        }
    }
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        8 => (0u8..4, -1000i32..1000, 0u32..20_000).prop_map(|(key, v, ms)| Line::Good { key, v, ms }),
        1 => (0u8..4, 0u32..20_000).prop_map(|(key, ms)| Line::BadNumber { key, ms }),
        1 => (0u8..4, any::<i32>(), any::<bool>()).prop_map(|(key, v, far)| Line::BadTime { key, v, far }),
        1 => prop_oneof![Just(1u8), Just(2), Just(4)].prop_map(Line::Fields),
        1 => any::<bool>().prop_map(Line::Blank),
    ]
}

fn sum_column(batches: &[datafusion::arrow::record_batch::RecordBatch], name: &str) -> i64 {
    batches
        .iter()
        .map(|b| {
            let c = b.column(b.schema().index_of(name).expect("column"));
            let c = datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64).expect("cast");
            let c = c.as_primitive::<Int64Type>();
            (0..c.len()).filter(|&i| c.is_valid(i)).map(|i| c.value(i)).sum::<i64>()
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_row_is_in_the_output_late_or_malformed_with_its_line(
        lines in proptest::collection::vec(line(), 0..120),
        batch in 1usize..40,
        crlf in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = std::iter::once("k,v,ts".to_string()).chain(lines.iter().map(Line::text)).map(|l| l + end).collect();
        std::fs::write(dir.path().join("in.csv"), text).expect("write");
        let good = lines.iter().filter(|l| l.is_row()).count() as u64;
        // the header is line 1
        let bad_lines: Vec<u64> = lines.iter().enumerate().filter(|(_, l)| l.is_malformed()).map(|(i, _)| i as u64 + 2).collect();
        let base = dir.path().to_path_buf();
        let sql = format!(
            "SET batch.size = '{batch}';
             CREATE TABLE t (k VARCHAR, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'file', path = '{0}/in.csv', format = 'csv', dead_letter = '{0}/dead.jsonl');
             SELECT k, v, ts FROM t;
             SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND))
             GROUP BY window_start, window_end;",
            base.display()
        );
        let results = bounded("a generated file", move || Session::new().execute(&sql).map_err(|e| e.to_string()));
        let results = results.map_err(TestCaseError::fail)?;
        let rows: Vec<_> = results.into_iter().filter_map(|r| match r {
            StatementResult::Rows { batches, metrics, .. } => Some((batches, metrics)),
            _ => None,
        }).collect();
        prop_assert_eq!(rows.len(), 2);
        let (plain, m) = &rows[0];
        let out: usize = plain.iter().map(|b| b.num_rows()).sum();
        prop_assert_eq!(out as u64, good, "every good row is output by a stateless query");
        prop_assert_eq!(Metrics::get(&m.bad_rows_dead_lettered), bad_lines.len() as u64);
        let (windows, m) = &rows[1];
        let counted = sum_column(windows, "n") as u64;
        prop_assert_eq!(counted + Metrics::get(&m.late_rows), good, "every good row is counted or late");
        prop_assert_eq!(Metrics::get(&m.bad_rows_dead_lettered), bad_lines.len() as u64);
        // both queries kept each malformed row with its line
        let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
        let mut seen: Vec<u64> = dead
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["line"].as_u64().expect("a line"))
            .collect();
        seen.sort_unstable();
        let mut want: Vec<u64> = bad_lines.iter().chain(&bad_lines).copied().collect();
        want.sort_unstable();
        prop_assert_eq!(seen, want);
    }
}

/// Valid statements the SQL generator starts from.
const SEEDS: &[&str] = &[
    "SELECT k, COUNT(*) AS n, SUM(v) FROM t GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), k",
    "SELECT window_start, MAX(v) FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '5' SECOND)) GROUP BY window_start, window_end",
    "SELECT k, v * 2 + 1 AS w, CASE WHEN v > 0 THEN 'p' ELSE 'n' END AS s FROM t WHERE v <> 3 AND k LIKE 'k%'",
    "SELECT k, COUNT(DISTINCT v) FROM t GROUP BY k",
    "SELECT a.k, b.v FROM t a JOIN t b ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '1' SECOND AND b.ts",
    "SELECT * FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS r FROM t) WHERE r <= 2",
    "SELECT SESSION_START(ts, INTERVAL '2' SECOND), k, AVG(v) FROM t GROUP BY SESSION(ts, INTERVAL '2' SECOND), k",
];

/// Tokens salted into generated statements.
const SALT: &[&str] = &[
    "(",
    ")",
    ",",
    "'",
    "\"",
    ";",
    "*",
    "+",
    "-",
    "/",
    "%",
    "||",
    "=",
    "<",
    ">",
    "<>",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "HAVING",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "ON",
    "AS",
    "CAST(",
    "AS BIGINT)",
    "INTERVAL '1' SECOND",
    "TUMBLE(",
    "HOP(",
    "SESSION(",
    "TABLE",
    "DESCRIPTOR(ts)",
    "k",
    "v",
    "ts",
    "t",
    "0",
    "-1",
    "9223372036854775807",
    "99999999999999999999",
    "1e308",
    "'x'",
    "''",
    "lpad(k, 2147483647)",
    "repeat('a', 100000000)",
    "COUNT(*)",
    "SUM(k)",
    "MAX(",
    "ROW_NUMBER() OVER (",
    "PARTITION BY",
    "EXPLAIN",
    "SET",
    "batch.size",
    "= '0'",
    "WATERMARK",
    "/*",
    "*/",
    "--",
    "\n",
    "é",
    "\u{0}",
];

fn statement() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| (0u8, a, b)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| (1u8, a, b)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>()).prop_map(|(a, b)| (2u8, a, b)),
    ];
    (prop::sample::select(SEEDS), proptest::collection::vec(edit, 0..4), 0usize..3).prop_map(|(seed, edits, nest)| {
        let mut words: Vec<String> = seed.split(' ').map(str::to_string).collect();
        for (kind, a, b) in edits {
            match kind {
                // drop a run of words (a statement cut short, a clause lost)
                0 if !words.is_empty() => {
                    let from = a.index(words.len());
                    let to = (from + 1 + b.index(3)).min(words.len());
                    words.drain(from..to);
                }
                // salt in a token
                1 => {
                    let at = a.index(words.len() + 1);
                    words.insert(at, SALT[b.index(SALT.len())].to_string());
                }
                // splice in part of another statement
                _ => {
                    let other: Vec<&str> = SEEDS[b.index(SEEDS.len())].split(' ').collect();
                    let at = a.index(words.len() + 1);
                    let take = other.len() / 2;
                    for (i, w) in other[..take].iter().enumerate() {
                        words.insert(at + i, w.to_string());
                    }
                }
            }
        }
        let mut sql = words.join(" ");
        // now and then, deep nesting past the limit
        if nest == 2 {
            sql = sql.replacen("SELECT ", &format!("SELECT {} 1 {} AS deep, ", "(".repeat(300), ")".repeat(300)), 1);
        }
        sql
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_sql_gets_a_result_or_a_clear_error(sql in statement()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: String = (0..50).map(|i| format!("k{},{},2024-01-01 00:00:{:02}\n", i % 3, i - 20, i)).collect();
        std::fs::write(dir.path().join("t.csv"), format!("k,v,ts\n{rows}")).expect("write");
        let ddl = format!(
            "CREATE TABLE t (k VARCHAR, v INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'file', path = '{}/t.csv', format = 'csv');",
            dir.path().display()
        );
        let text = sql.clone();
        let result = bounded(&sql, move || {
            let mut session = Session::new();
            session.execute(&ddl).expect("the table");
            session.execute(&text).map(|_| ())
        });
        match result {
            Ok(()) => {}
            Err(SessionError::Sql(e)) => {
                prop_assert!(!e.message.trim().is_empty(), "{sql}: an empty message");
                if e.kind == weir_sql::ErrorKind::Syntax {
                    prop_assert!(e.position.is_some(), "{sql}: a syntax error without a position: {e}");
                }
            }
            Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "{sql}: an empty message"),
        }
    }
}
