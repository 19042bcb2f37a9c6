//! Runs every sqllogictest file under `tests/slt/` against weir (bounded sources, so each query
//! runs to completion and its emitted rows are compared).

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
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async { Ok(WeirDb { session: Session::new() }) });
        match runner.run_file(file) {
            Ok(()) => println!("ok   {}", file.display()),
            Err(e) => {
                println!("FAIL {}\n{e}", file.display());
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} sqllogictest file(s) failed:\n{}", failures.len(), failures.join("\n"));
}
