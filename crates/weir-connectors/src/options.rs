//! Connector options from `WITH (…)`: validated up front so a typo fails before anything runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_plan::TableDef;

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Json,
    /// Apache Parquet.
    Parquet,
}

/// What to do with a malformed input row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRowPolicy {
    /// Stop with an error naming the file, line, column and value (the default).
    Fail,
    /// Skip the row and count it (reported in the run summary).
    Skip,
    /// Append the row, where it came from and why it was refused to this file (one JSON
    /// object per line, the path relative to the working directory), and count it.
    DeadLetter(PathBuf),
}

/// Options of the `file` and `stdin` connectors.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// The file, resolved against the working directory (or the script's directory); `None`
    /// for standard input.
    pub path: Option<PathBuf>,
    /// Its format.
    pub format: FileFormat,
    /// Malformed-row policy.
    pub bad_rows: BadRowPolicy,
    /// CSV field delimiter.
    pub delimiter: u8,
    /// `'source.monitor-interval'`: follow the file as it grows, looking for more this often
    /// (Flink's option; the input never ends then).
    pub monitor: Option<std::time::Duration>,
    /// For a directory: the files of it to read (a parallel instance's share, see
    /// `crate::live::shares`); `None`: all of them.
    pub only: Option<Arc<[PathBuf]>>,
}

fn truthy(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        other => Err(format!("expected true or false, got '{other}'")),
    }
}

impl FileOptions {
    /// The file malformed rows are appended to, if the table keeps them.
    pub fn dead_letter(&self) -> Option<&Path> {
        match &self.bad_rows {
            BadRowPolicy::DeadLetter(path) => Some(path),
            _ => None,
        }
    }

    /// How the input is named in messages: the path, or `<stdin>`.
    pub fn display(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<stdin>".to_string(),
        }
    }

    /// Open the input for reading.
    pub fn open_input(&self) -> Result<Box<dyn std::io::Read + Send>, String> {
        match &self.path {
            Some(p) => std::fs::File::open(p)
                .map(|f| Box::new(f) as Box<dyn std::io::Read + Send>)
                .map_err(|e| format!("{}: {e}", p.display())),
            None => Ok(Box::new(std::io::stdin())),
        }
    }

    /// The file, opened at byte `offset` (for a source resuming from a checkpoint). Fails for
    /// standard input, and when the file is now shorter than `offset`.
    pub fn open_at(&self, offset: u64) -> Result<Box<dyn std::io::Read + Send>, String> {
        use std::io::Seek;
        let Some(p) = &self.path else {
            return Err("standard input cannot be read again from a saved position".into());
        };
        let mut file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let len = file.metadata().map_err(|e| format!("{}: {e}", p.display()))?.len();
        if len < offset {
            return Err(format!(
                "{}: the checkpoint read it up to byte {offset}, but it now has {len} bytes (was it replaced?)",
                p.display()
            ));
        }
        file.seek(std::io::SeekFrom::Start(offset)).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Box::new(file))
    }

    /// Read and check the options of `table`. A relative path is taken from the working
    /// directory; for a source file that is not there, from `base_dir` (the directory of the
    /// SQL script) when it exists there.
    pub fn from_table(table: &TableDef, base_dir: Option<&Path>, is_source: bool) -> Result<Self, String> {
        let options = Self::parse(table, base_dir, is_source)?;
        if let Some(p) = options.path.as_ref().filter(|p| is_source && !p.exists()) {
            return Err(format!("table '{}': file '{}' not found", table.name, p.display()));
        }
        Ok(options)
    }

    /// Like [`FileOptions::from_table`], without requiring a source file to exist yet (an
    /// earlier statement of the same script may write it).
    pub fn parse(table: &TableDef, base_dir: Option<&Path>, is_source: bool) -> Result<Self, String> {
        Self::parse_as(table, base_dir, is_source, false)
    }

    /// The checks `CREATE TABLE` makes: the options alone, whether the table is read or
    /// written, whatever is on disk at the time.
    pub(crate) fn parse_declared(table: &TableDef) -> Result<Self, String> {
        Self::parse_as(table, None, true, true)
    }

    fn parse_as(table: &TableDef, base_dir: Option<&Path>, is_source: bool, declared: bool) -> Result<Self, String> {
        let name = &table.name;
        let stdin = table.connector() == Some("stdin");
        if stdin && !is_source {
            return Err(format!("table '{name}': connector 'stdin' can only be read from"));
        }
        use weir_runtime::Connector;
        let spec = if stdin { crate::StdinConnector.spec() } else { crate::FileConnector.spec() };
        let connector = spec.name;
        let mut known: Vec<&str> = vec!["connector"];
        known.extend(spec.options.iter().chain(weir_plan::TABLE_OPTIONS).map(|o| o.name));
        for key in table.options.keys() {
            if !known.contains(&key.as_str()) {
                return Err(format!(
                    "table '{name}': unknown option '{key}' for connector '{connector}' (supported: {})",
                    known.join(", ")
                ));
            }
        }
        let path = if stdin {
            None
        } else {
            let Some(path) = table.option("path") else {
                return Err(format!("table '{name}': connector 'file' needs a 'path' option"));
            };
            let mut path = PathBuf::from(path);
            if is_source && path.is_relative() && !path.exists() {
                if let Some(base) = base_dir {
                    let candidate = base.join(&path);
                    if candidate.exists() {
                        path = candidate;
                    }
                }
            }
            Some(path)
        };
        let format = match table.option("format").map(str::to_ascii_lowercase) {
            Some(f) => match f.as_str() {
                "csv" => FileFormat::Csv,
                "json" | "ndjson" | "jsonl" => FileFormat::Json,
                "parquet" if stdin => return Err(format!("table '{name}': parquet can only be read from a file")),
                "parquet" => FileFormat::Parquet,
                other => {
                    return Err(format!("table '{name}': unknown format '{other}' (supported: csv, json, parquet)"))
                }
            },
            None => match path
                .as_ref()
                .and_then(|p| p.extension())
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("csv") => FileFormat::Csv,
                Some("json" | "jsonl" | "ndjson") => FileFormat::Json,
                Some("parquet") => FileFormat::Parquet,
                _ => return Err(format!("table '{name}': add a 'format' option (csv, json or parquet)")),
            },
        };
        let bad_rows = bad_row_policy(table, is_source)?;
        let dead_letter = table.option("dead_letter");
        let delimiter = csv_delimiter(table)?;
        let monitor = match table.option("source.monitor-interval") {
            None => None,
            Some(v) => match weir_plan::duration::parse_duration(v) {
                Ok(n) if n > 0 => Some(std::time::Duration::from_nanos(n as u64)),
                Ok(_) => return Err(format!("table '{name}': 'source.monitor-interval' must be longer than zero")),
                Err(e) => return Err(format!("table '{name}': 'source.monitor-interval': {e}")),
            },
        };
        if monitor.is_some() && format == FileFormat::Parquet {
            return Err(format!(
                "table '{name}': a parquet file cannot be followed as it grows ('source.monitor-interval' is for csv and json)"
            ));
        }
        if is_source && !declared && format == FileFormat::Parquet && path.as_ref().is_some_and(|p| p.is_dir()) {
            return Err(format!(
                "table '{name}': reading a directory of parquet files is not supported yet (csv and json)"
            ));
        }
        if dead_letter.is_some() && format == FileFormat::Parquet {
            return Err(format!(
                "table '{name}': a parquet file has no malformed rows to keep ('dead_letter' is for csv and json)"
            ));
        }
        Ok(Self { path, format, bad_rows, delimiter, monitor, only: None })
    }
}

/// The malformed-row policy of a table read from: `bad_data`, `dead_letter` and Flink's
/// `csv.ignore-parse-errors` / `json.ignore-parse-errors`, checked together.
pub(crate) fn bad_row_policy(table: &TableDef, is_source: bool) -> Result<BadRowPolicy, String> {
    let name = &table.name;
    let dead_letter = table.option("dead_letter").map(PathBuf::from);
    if dead_letter.is_some() && !is_source {
        return Err(format!("table '{name}': 'dead_letter' is for tables read from (malformed input rows)"));
    }
    if dead_letter.as_ref().is_some_and(|p| p.as_os_str().is_empty() || p.is_dir()) {
        return Err(format!("table '{name}': 'dead_letter' must name a file"));
    }
    let mut bad_rows = dead_letter.clone().map_or(BadRowPolicy::Fail, BadRowPolicy::DeadLetter);
    if let Some(v) = table.option("bad_data") {
        bad_rows = match (v.to_ascii_lowercase().as_str(), &dead_letter) {
                ("fail", None) => BadRowPolicy::Fail,
                ("skip" | "drop", None) => BadRowPolicy::Skip,
                ("dead_letter" | "dead-letter", Some(path)) => BadRowPolicy::DeadLetter(path.clone()),
                ("dead_letter" | "dead-letter", None) => {
                    return Err(format!(
                        "table '{name}': bad_data = 'dead_letter' needs the file to write them to: add 'dead_letter' = 'bad_rows.jsonl'"
                    ))
                }
                ("fail" | "skip" | "drop", Some(_)) => {
                    return Err(format!(
                        "table '{name}': bad_data = '{v}' and a 'dead_letter' file contradict each other (the file is for bad_data = 'dead_letter')"
                    ))
                }
                (other, _) => {
                    return Err(format!(
                        "table '{name}': bad_data must be 'fail', 'skip' or 'dead_letter', got '{other}'"
                    ))
                }
            };
    }
    for key in ["csv.ignore-parse-errors", "json.ignore-parse-errors"] {
        if let Some(v) = table.option(key) {
            if truthy(v).map_err(|e| format!("table '{name}': option '{key}': {e}"))? {
                if dead_letter.is_some() {
                    return Err(format!(
                            "table '{name}': '{key}' and a 'dead_letter' file contradict each other (skip the rows, or keep them there)"
                        ));
                }
                bad_rows = BadRowPolicy::Skip;
            }
        }
    }
    Ok(bad_rows)
}

/// The CSV field delimiter (`csv.field-delimiter`, or `delimiter`).
pub(crate) fn csv_delimiter(table: &TableDef) -> Result<u8, String> {
    let name = &table.name;
    match table.option("csv.field-delimiter").or(table.option("delimiter")) {
        None => Ok(b','),
        Some("\\t") => Ok(b'\t'),
        Some(d) if d.len() == 1 => Ok(d.as_bytes()[0]),
        Some(d) => Err(format!("table '{name}': the CSV delimiter must be one character, got '{d}'")),
    }
}
