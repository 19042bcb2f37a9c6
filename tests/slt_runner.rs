//! Runs every sqllogictest file under `tests/slt/` against weir (bounded sources, so each query
//! runs to completion and its emitted rows are compared): once on one thread, comparing rows in
//! order, and once at parallelism 2 (label `parallel`), comparing them as a multiset (the
//! instances' outputs interleave in any order). Records whose text depends on the parallelism
//! (EXPLAIN) say `skipif parallel` or `onlyif parallel`.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use weir_cli::{Session, SessionError, StatementResult};

struct WeirDb {
    session: Session,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt64 => {
            DefaultColumnType::Integer
        }
        DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

impl sqllogictest::DB for WeirDb {
    type Error = SessionError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SessionError> {
        let mut results = self.session.execute(sql)?;
        let Some(last) = results.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        match last {
            StatementResult::Done => Ok(DBOutput::StatementComplete(0)),
            StatementResult::Inserted { metrics } => {
                Ok(DBOutput::StatementComplete(weir_runtime::Metrics::get(&metrics.rows_out)))
            }
            StatementResult::Explain(text) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Text],
                rows: text.lines().map(|l| vec![l.trim_end().to_string()]).collect(),
            }),
            StatementResult::Rows { schema, batches, .. } => {
                let types = schema.fields().iter().map(|f| column_type(f.data_type())).collect();
                let options = FormatOptions::default().with_null("NULL");
                let mut rows = Vec::new();
                for batch in &batches {
                    let formatters = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| SessionError::Runtime(e.into()))?;
                    for i in 0..batch.num_rows() {
                        rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
                    }
                }
                Ok(DBOutput::Rows { types, rows })
            }
        }
    }

    fn engine_name(&self) -> &str {
        "weir"
    }
}

/// Rows compared as a multiset: each normalized line of the expected rows, sorted, against the
/// actual rows likewise. A changelog (rows led by `+I`, `-U`, `+U`, `-D`) is compared once
/// consolidated: in parallel, an updating aggregate over another sees the first one's changes
/// in another order, so its intermediate changes differ, not its result.
fn same_multiset(normalizer: sqllogictest::Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    let actual: Vec<String> = actual.iter().map(|row| normalizer(&row.join(" "))).collect();
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let changelog = |rows: &[String]| {
        !rows.is_empty() && rows.iter().all(|r| ["+I ", "-U ", "+U ", "-D "].iter().any(|op| r.starts_with(op)))
    };
    if changelog(&actual) && changelog(&expected) {
        return consolidated(&actual) == consolidated(&expected);
    }
    let (mut actual, mut expected) = (actual, expected);
    actual.sort();
    expected.sort();
    actual == expected
}

/// The rows a changelog leaves, with how many times each is there.
fn consolidated(rows: &[String]) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        let (op, row) = r.split_at(3);
        *out.entry(row.to_string()).or_insert(0) += if op.starts_with('+') { 1 } else { -1 };
    }
    out.retain(|_, n| *n != 0);
    out
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[test]
fn sqllogictest_files() {
    // paths in the .slt files are relative to the repository root
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd to the repository root");
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for parallelism in [1, 2] {
        for file in &files {
            let mut runner = sqllogictest::Runner::new(move || async move {
                let mut session = Session::new();
                session.execute(&format!("SET parallelism = {parallelism}"))?;
                Ok(WeirDb { session })
            });
            if parallelism > 1 {
                runner.add_label("parallel");
                runner.with_validator(same_multiset);
            }
            match runner.run_file(file) {
                Ok(()) => println!("ok   {} (parallelism {parallelism})", file.display()),
                Err(e) => {
                    println!("FAIL {} (parallelism {parallelism})\n{e}", file.display());
                    failures.push(format!("{} at parallelism {parallelism}: {e}", file.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} sqllogictest file(s) failed:\n{}", failures.len(), failures.join("\n"));
}
