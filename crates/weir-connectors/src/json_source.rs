//! Reading newline-delimited JSON (one object per line) incrementally.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_runtime::{Metrics, Result, RuntimeError, Source};

use crate::column::{ColumnBuffer, ColumnType, Value};
use crate::dead_letter::BadRows;
use crate::options::FileOptions;

/// A JSON-lines file read in batches. Keys match column names exactly, or else ignoring case;
/// a missing key is NULL.
pub struct JsonSource {
    reader: BufReader<Box<dyn Read + Send>>,
    display: String,
    names: Vec<String>,
    types: Vec<ColumnType>,
    nullable: Vec<bool>,
    buffers: Vec<ColumnBuffer>,
    schema: SchemaRef,
    batch_size: usize,
    bad_rows: BadRows,
    line: Vec<u8>,
    line_number: u64,
    /// Bytes read so far (where the next line starts).
    byte: u64,
    done: bool,
    /// To read the file again from a checkpoint's position.
    options: FileOptions,
}

/// Where a JSON source is: the byte where the next line starts, and that line's number - 1.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonPosition {
    byte: u64,
    line: u64,
    done: bool,
}

impl JsonSource {
    /// Open the input of `options` for the columns of `schema`.
    pub fn open(options: &FileOptions, schema: SchemaRef, batch_size: usize, metrics: Arc<Metrics>) -> Result<Self> {
        let display = options.display();
        let file = options.open_input().map_err(RuntimeError::Source)?;
        let types = schema
            .fields()
            .iter()
            .map(|f| ColumnType::new(f.data_type()).map_err(|e| RuntimeError::Source(format!("{display}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let buffers = types.iter().map(|t| ColumnBuffer::new(t.clone(), batch_size)).collect();
        Ok(Self {
            reader: BufReader::with_capacity(1 << 20, file),
            display,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            nullable: schema.fields().iter().map(|f| f.is_nullable()).collect(),
            types,
            buffers,
            schema,
            batch_size: batch_size.max(1),
            bad_rows: BadRows::new(options, &metrics),
            line: Vec::new(),
            line_number: 0,
            byte: 0,
            done: false,
            options: options.clone(),
        })
    }
}

fn lookup<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> Option<&'a serde_json::Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn parse_line<'a>(
    obj: &'a serde_json::Value,
    names: &[String],
    types: &[ColumnType],
    nullable: &[bool],
) -> std::result::Result<Vec<Value<'a>>, String> {
    let Some(obj) = obj.as_object() else {
        return Err("expected a JSON object".to_string());
    };
    names
        .iter()
        .zip(types)
        .zip(nullable)
        .map(|((name, t), nullable)| {
            let value = match lookup(obj, name) {
                None => Value::Null,
                Some(v) => {
                    t.parse_json(v).ok_or_else(|| format!("bad value {v} for column '{name}' ({})", t.sql_name()))?
                }
            };
            if value == Value::Null && !nullable {
                return Err(format!("column '{name}' is NOT NULL but the value is null or missing"));
            }
            Ok(value)
        })
        .collect()
}

impl JsonSource {
    /// The line just read is malformed for `why`.
    fn bad_row(&mut self, why: String) -> Result<()> {
        let line = &self.line;
        self.bad_rows.handle(&self.display, self.line_number, &why, || {
            String::from_utf8_lossy(line).trim_end_matches(['\n', '\r']).to_string()
        })
    }
}

impl Source for JsonSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        let mut rows = 0;
        while rows < self.batch_size {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| RuntimeError::Source(format!("{}:{}: {e}", self.display, self.line_number + 1)))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.byte += n as u64;
            self.line_number += 1;
            let Ok(text) = std::str::from_utf8(&self.line) else {
                self.bad_row("the line is not valid UTF-8".to_string())?;
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let value = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => v,
                Err(e) => {
                    self.bad_row(format!("invalid JSON: {e}"))?;
                    continue;
                }
            };
            match parse_line(&value, &self.names, &self.types, &self.nullable) {
                Ok(values) => {
                    for (buf, val) in self.buffers.iter_mut().zip(&values) {
                        buf.append(val);
                    }
                    rows += 1;
                }
                Err(why) => self.bad_row(why)?,
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays = self.buffers.iter_mut().map(ColumnBuffer::finish).collect::<std::result::Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?))
    }

    /// The byte and line where the next line starts (files only).
    fn position(&self) -> Option<serde_json::Value> {
        self.options.path.as_ref()?;
        let position = JsonPosition { byte: self.byte, line: self.line_number, done: self.done };
        serde_json::to_value(position).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: JsonPosition = weir_runtime::checkpoint::from_json(position, &self.display)?;
        let file = self.options.open_at(p.byte).map_err(RuntimeError::Source)?;
        self.reader = BufReader::with_capacity(1 << 20, file);
        (self.byte, self.line_number, self.done) = (p.byte, p.line, p.done);
        Ok(())
    }
}
