//! Reading CSV files (with a header row) incrementally, one batch at a time.

use std::io::{BufReader, Read};
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_runtime::{Metrics, Result, RuntimeError, Source};

use crate::column::{ColumnBuffer, ColumnType, Value};
use crate::dead_letter::BadRows;
use crate::options::FileOptions;

struct CsvColumn {
    name: String,
    field_index: usize,
    column_type: ColumnType,
    is_text: bool,
    nullable: bool,
}

/// A CSV file read in batches of `batch_size` rows; memory is bounded by one batch.
pub struct CsvSource {
    reader: csv::Reader<BufReader<Box<dyn Read + Send>>>,
    display: String,
    columns: Vec<CsvColumn>,
    buffers: Vec<ColumnBuffer>,
    schema: SchemaRef,
    batch_size: usize,
    bad_rows: BadRows,
    record: csv::ByteRecord,
    scratch: Vec<Value<'static>>,
    header_len: usize,
    done: bool,
    /// To read the file again from a checkpoint's position.
    options: FileOptions,
    /// Where the current reader started (byte, line - 1), after a seek.
    base: (u64, u64),
}

/// A record as CSV text again (quoted where needed), without the line end.
fn csv_text(record: &csv::ByteRecord, delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
    let _ = writer.write_byte_record(record);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_string()
}

/// Where a CSV source is: the byte and line of the next record.
#[derive(serde::Serialize, serde::Deserialize)]
struct CsvPosition {
    byte: u64,
    line: u64,
    done: bool,
}

impl CsvSource {
    /// Open the input of `options` and map its header to the columns of `schema`.
    pub fn open(options: &FileOptions, schema: SchemaRef, batch_size: usize, metrics: Arc<Metrics>) -> Result<Self> {
        let display = options.display();
        let file = options.open_input().map_err(RuntimeError::Source)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(options.delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        let header = reader
            .headers()
            .map_err(|e| RuntimeError::Source(format!("{display}: cannot read the header row: {e}")))?
            .clone();
        let mut columns = Vec::new();
        for field in schema.fields() {
            let Some(field_index) =
                header.iter().position(|h| h.trim_start_matches('\u{feff}').trim().eq_ignore_ascii_case(field.name()))
            else {
                return Err(RuntimeError::Source(format!(
                    "{display}: the header has no column '{}' (it has: {})",
                    field.name(),
                    header.iter().collect::<Vec<_>>().join(", ")
                )));
            };
            let column_type =
                ColumnType::new(field.data_type()).map_err(|e| RuntimeError::Source(format!("{display}: {e}")))?;
            columns.push(CsvColumn {
                name: field.name().clone(),
                field_index,
                is_text: field.data_type() == &DataType::Utf8,
                nullable: field.is_nullable(),
                column_type,
            });
        }
        let buffers = columns.iter().map(|c| ColumnBuffer::new(c.column_type.clone(), batch_size)).collect();
        Ok(Self {
            reader,
            display,
            columns,
            buffers,
            schema,
            batch_size: batch_size.max(1),
            bad_rows: BadRows::new(options, &metrics),
            record: csv::ByteRecord::new(),
            scratch: Vec::new(),
            header_len: header.len(),
            done: false,
            options: options.clone(),
            base: (0, 0),
        })
    }

    fn line(&self, line: u64) -> u64 {
        self.base.1 + line
    }

    /// Parse the current record into `scratch`; on failure say why.
    fn parse_record(&mut self) -> std::result::Result<(), String> {
        self.scratch.clear();
        if self.record.len() != self.header_len {
            return Err(format!("expected {} fields as in the header, found {}", self.header_len, self.record.len()));
        }
        for c in &self.columns {
            // every field_index is below header_len, checked just above
            let raw = self.record.get(c.field_index).unwrap_or_default();
            let Ok(text) = std::str::from_utf8(raw) else {
                return Err(format!("column '{}' is not valid UTF-8", c.name));
            };
            if c.is_text {
                if text.is_empty() && !c.nullable {
                    return Err(format!("column '{}' is NOT NULL but the value is empty", c.name));
                }
                self.scratch.push(Value::Null);
                continue;
            }
            match c.column_type.parse_text(text) {
                Some(Value::Str(_)) | Some(Value::Owned(_)) | None => {
                    return Err(format!("bad value '{text}' for column '{}' ({})", c.name, c.column_type.sql_name()))
                }
                Some(Value::Null) if !c.nullable => {
                    return Err(format!("column '{}' is NOT NULL but the value is empty", c.name))
                }
                Some(Value::Null) => self.scratch.push(Value::Null),
                Some(Value::Int(v)) => self.scratch.push(Value::Int(v)),
                Some(Value::Float(v)) => self.scratch.push(Value::Float(v)),
                Some(Value::Bool(v)) => self.scratch.push(Value::Bool(v)),
            }
        }
        Ok(())
    }
}

impl Source for CsvSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        let mut rows = 0;
        while rows < self.batch_size {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    let line = self.line(e.position().map(|p| p.line()).unwrap_or(0));
                    return Err(RuntimeError::Source(format!("{}:{line}: {e}", self.display)));
                }
            }
            if self.record.len() == 1 && self.record.get(0).is_some_and(|f| f.is_empty()) {
                continue; // blank line
            }
            match self.parse_record() {
                Ok(()) => {
                    for ((c, buf), v) in self.columns.iter().zip(&mut self.buffers).zip(&self.scratch) {
                        if c.is_text {
                            // validated by parse_record; text columns are appended from the record
                            let raw = self.record.get(c.field_index).unwrap_or_default();
                            let text = std::str::from_utf8(raw).unwrap_or_default();
                            buf.append(&if text.is_empty() { Value::Null } else { Value::Str(text) });
                        } else {
                            buf.append(v);
                        }
                    }
                    rows += 1;
                }
                Err(why) => {
                    let line = self.line(self.record.position().map(|p| p.line()).unwrap_or(0));
                    let (record, delimiter) = (&self.record, self.options.delimiter);
                    self.bad_rows.handle(&self.display, line, &why, || csv_text(record, delimiter))?;
                }
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays = self.buffers.iter_mut().map(ColumnBuffer::finish).collect::<std::result::Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?))
    }

    /// The byte and line of the next record (files only).
    fn position(&self) -> Option<serde_json::Value> {
        self.options.path.as_ref()?;
        let p = self.reader.position();
        let position = CsvPosition { byte: self.base.0 + p.byte(), line: self.line(p.line()), done: self.done };
        serde_json::to_value(position).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: CsvPosition = weir_runtime::checkpoint::from_json(position, &self.display)?;
        let file = self.options.open_at(p.byte).map_err(RuntimeError::Source)?;
        self.reader = csv::ReaderBuilder::new()
            .delimiter(self.options.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        self.base = (p.byte, p.line.saturating_sub(1));
        self.done = p.done;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::AsArray;
    use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use weir_runtime::{Metrics, Source};

    use super::CsvSource;
    use crate::options::{BadRowPolicy, FileFormat, FileOptions};

    fn options(path: &std::path::Path, bad_rows: BadRowPolicy) -> FileOptions {
        FileOptions { path: Some(path.to_path_buf()), format: FileFormat::Csv, bad_rows, delimiter: b',' }
    }

    #[test]
    fn reads_in_batches_with_bom_quotes_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "\u{feff}A,\"b\"\n1,\"x,y\"\n\n2,z\n3,\n").unwrap();
        let schema =
            Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, true), Field::new("a", DataType::Int64, true)]));
        let metrics = Arc::new(Metrics::default());
        let mut src = CsvSource::open(&options(&path, BadRowPolicy::Fail), schema, 2, metrics).unwrap();
        let first = src.next_batch().unwrap().unwrap();
        assert_eq!(first.num_rows(), 2);
        assert_eq!(first.column(0).as_string::<i32>().value(0), "x,y");
        assert_eq!(first.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 2]);
        let second = src.next_batch().unwrap().unwrap();
        assert_eq!(second.num_rows(), 1);
        assert!(second.column(0).is_null(0), "an empty field is NULL");
        assert!(src.next_batch().unwrap().is_none());
    }

    #[test]
    fn bad_rows_fail_with_line_or_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a\n1\n2\nzz\n4\n").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let metrics = Arc::new(Metrics::default());
        let mut src =
            CsvSource::open(&options(&path, BadRowPolicy::Fail), Arc::clone(&schema), 10, Arc::clone(&metrics))
                .unwrap();
        let err = src.next_batch().unwrap_err().to_string();
        assert!(err.contains("x.csv:4: bad value 'zz' for column 'a' (BIGINT)"), "{err}");
        let mut src = CsvSource::open(&options(&path, BadRowPolicy::Skip), schema, 10, Arc::clone(&metrics)).unwrap();
        let batch = src.next_batch().unwrap().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 2, 4]);
        assert_eq!(Metrics::get(&metrics.bad_rows_skipped), 1);
    }

    #[test]
    fn a_bad_record_is_kept_as_csv_text_quoted_where_needed() {
        let record = csv::ByteRecord::from(vec!["a,b", "say \"hi\"", "7"]);
        assert_eq!(super::csv_text(&record, b','), "\"a,b\",\"say \"\"hi\"\"\",7");
        assert_eq!(super::csv_text(&record, b';'), "a,b;\"say \"\"hi\"\"\";7");
    }
}
