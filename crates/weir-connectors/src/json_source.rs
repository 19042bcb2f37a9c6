//! Reading newline-delimited JSON (one object per line) incrementally.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_runtime::{Metrics, Result, RuntimeError, Source};

use crate::column::{clip, ColumnBuffer, ColumnType, Value};
use crate::dead_letter::BadRows;
use crate::live::{follow, DirFiles, LineGuard, Mode, Pump, Pumped, LINGER};
use crate::options::FileOptions;

/// Where lines come from.
enum Lines {
    /// A regular file, read on the source's thread.
    Direct(BufReader<Box<dyn Read + Send>>),
    /// An input that can block, or a directory, read on a pump thread ([`crate::live`]).
    Pumped(Pump<JsonItem>),
}

/// What a pump thread reads.
enum JsonItem {
    /// A directory's next file starts.
    File(String),
    Line(Vec<u8>),
}

/// A JSON-lines file read in batches. Keys match column names exactly, or else ignoring case;
/// a missing key is NULL. Standard input, named pipes and followed files are read on a thread
/// of their own and cut into batches by size or by time.
pub struct JsonSource {
    lines: Lines,
    mode: Mode,
    display: String,
    /// The columns read, then the table's other columns (checked in every row, not kept).
    names: Vec<String>,
    /// How many of `names` are read.
    read: usize,
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
    /// Read up to this byte only (a range of the file, see [`crate::file_splits`]).
    stop_at: Option<u64>,
}

/// Where a JSON source is: the byte where the next line starts, and that line's number - 1.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonPosition {
    byte: u64,
    line: u64,
    done: bool,
}

impl JsonSource {
    /// Open the input of `options` for the columns of `schema`; `unread` are the table's
    /// other columns, checked in every row (a row is malformed whichever columns a query
    /// reads) but not returned.
    pub fn open(
        options: &FileOptions,
        schema: SchemaRef,
        unread: SchemaRef,
        batch_size: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let display = options.display();
        let fields: Vec<_> = schema.fields().iter().chain(unread.fields().iter()).cloned().collect();
        let types = fields
            .iter()
            .map(|f| ColumnType::new(f.data_type()).map_err(|e| RuntimeError::Source(format!("{display}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let read = schema.fields().len();
        let buffers = types[..read].iter().map(|t| ColumnBuffer::new(t.clone(), batch_size)).collect();
        let mode = Mode::of(options.path.as_ref(), options.monitor);
        let mut source = Self {
            lines: Lines::Direct(BufReader::new(Box::new(std::io::empty()))),
            mode,
            display,
            names: fields.iter().map(|f| f.name().clone()).collect(),
            read,
            nullable: fields.iter().map(|f| f.is_nullable()).collect(),
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
            stop_at: None,
        };
        source.start(0)?;
        Ok(source)
    }

    /// The lines of a regular file in `range` only (a parallel instance's share).
    pub fn open_range(
        options: &FileOptions,
        schema: SchemaRef,
        unread: SchemaRef,
        batch_size: usize,
        metrics: Arc<Metrics>,
        range: crate::file_splits::Range,
    ) -> Result<Self> {
        let mut source = Self::open(options, schema, unread, batch_size, metrics)?;
        if source.mode.pumped() {
            return Err(RuntimeError::Internal(format!("{}: only a regular file is read in ranges", source.display)));
        }
        if range.start > 0 {
            (source.byte, source.line_number) = (range.start, range.lines_before);
            source.start(range.start)?;
        }
        source.stop_at = Some(range.end);
        Ok(source)
    }

    /// Read from byte `byte` on.
    fn start(&mut self, byte: u64) -> Result<()> {
        if !self.mode.pumped() {
            // a regular file
            let input = LineGuard::new(self.options.open_at(byte).map_err(RuntimeError::Source)?);
            self.lines = Lines::Direct(BufReader::with_capacity(1 << 20, Box::new(input)));
            return Ok(());
        }
        // read on a thread of its own: opening a FIFO can block too
        let (options, mode, mut display) = (self.options.clone(), self.mode.clone(), self.display.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let follow_stop = Arc::clone(&stop);
        let mut files = match (&self.mode, &self.options.path) {
            (Mode::Directory(monitor), Some(dir)) => Some(match &self.options.only {
                Some(files) => DirFiles::only(files),
                None => DirFiles::new(dir.clone(), *monitor, Arc::clone(&stop)),
            }),
            _ => None,
        };
        let mut reader: Option<BufReader<Box<dyn Read + Send>>> = None;
        let mut line_number = self.line_number;
        let pump = Pump::start(&self.display, self.batch_size, stop, move || loop {
            let Some(r) = reader.as_mut() else {
                let input: Box<dyn Read + Send> = match (&mode, &options.path, files.as_mut()) {
                    // a directory's next file
                    (_, _, Some(files)) => match files.next_file()? {
                        Some(path) => {
                            display = path.display().to_string();
                            line_number = 0;
                            let file = std::fs::File::open(&path).map_err(|e| format!("{display}: {e}"))?;
                            reader = Some(BufReader::with_capacity(1 << 20, Box::new(LineGuard::new(file))));
                            return Ok(Some(JsonItem::File(display.clone())));
                        }
                        None => return Ok(None),
                    },
                    (Mode::Follow(interval), Some(path), None) => follow(path, byte, *interval, &follow_stop)?,
                    _ => options.open_input()?,
                };
                reader = Some(BufReader::with_capacity(1 << 20, Box::new(LineGuard::new(input))));
                continue;
            };
            let mut line = Vec::new();
            line_number += 1;
            match r.read_until(b'\n', &mut line) {
                // a directory: on to its next file
                Ok(0) if files.is_some() => reader = None,
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(JsonItem::Line(line))),
                Err(e) => return Err(format!("{display}:{line_number}: {e}")),
            }
        })?;
        self.lines = Lines::Pumped(pump);
        Ok(())
    }

    /// Read the next line into `line`: its length in bytes, or 0 when none came by
    /// `deadline` (a pumped input) or the input ended (`done` is set then).
    fn next_line(&mut self, deadline: Instant) -> Result<usize> {
        self.line.clear();
        match &mut self.lines {
            Lines::Direct(reader) => {
                let n = reader
                    .read_until(b'\n', &mut self.line)
                    .map_err(|e| RuntimeError::Source(format!("{}:{}: {e}", self.display, self.line_number + 1)))?;
                self.done = n == 0;
                Ok(n)
            }
            Lines::Pumped(_) => loop {
                let Lines::Pumped(pump) = &mut self.lines else { return Ok(0) };
                match pump.next_until(deadline).map_err(RuntimeError::Source)? {
                    Pumped::Item(JsonItem::File(name)) => {
                        (self.display, self.line_number, self.byte) = (name, 0, 0);
                    }
                    Pumped::Item(JsonItem::Line(line)) => {
                        self.line = line;
                        return Ok(self.line.len());
                    }
                    Pumped::Wait => return Ok(0),
                    Pumped::End => {
                        self.done = true;
                        return Ok(0);
                    }
                }
            },
        }
    }
}

fn lookup<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, name: &str) -> Option<&'a serde_json::Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

pub(crate) fn parse_line<'a>(
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
                Some(v) => t.parse_json(v).ok_or_else(|| {
                    format!("bad value {} for column '{name}' ({})", clip(&v.to_string()), t.sql_name())
                })?,
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
        let deadline = Instant::now() + LINGER;
        let mut rows = 0;
        while rows < self.batch_size {
            if self.stop_at.is_some_and(|end| self.byte >= end) {
                // the next line is the next range's
                self.done = true;
                break;
            }
            let n = self.next_line(deadline)?;
            if n == 0 {
                break;
            }
            self.byte += n as u64;
            self.line_number += 1;
            let Ok(text) = std::str::from_utf8(&self.line) else {
                self.bad_row("the line is not valid UTF-8".to_string())?;
                continue;
            };
            // a byte-order mark before the first line is not part of the row
            let text = if self.byte == n as u64 { text.trim_start_matches('\u{feff}') } else { text };
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
                    for (buf, val) in self.buffers.iter_mut().zip(&values[..self.read]) {
                        buf.append(val);
                    }
                    rows += 1;
                }
                Err(why) => self.bad_row(why)?,
            }
        }
        if rows == 0 && self.done {
            return Ok(None);
        }
        if rows == 0 {
            // nothing arrived in time: an empty batch, so the caller can look up
            return Ok(Some(RecordBatch::new_empty(Arc::clone(&self.schema))));
        }
        let arrays = self.buffers.iter_mut().map(ColumnBuffer::finish).collect::<std::result::Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?))
    }

    /// The byte and line where the next line starts (files only).
    fn position(&self) -> Option<serde_json::Value> {
        self.options.path.as_ref()?;
        if !self.mode.seekable() {
            return None; // a pipe, a device or a directory cannot be read again from a position
        }
        let position = JsonPosition { byte: self.byte, line: self.line_number, done: self.done };
        serde_json::to_value(position).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: JsonPosition = weir_runtime::checkpoint::from_json(position, &self.display)?;
        (self.byte, self.line_number, self.done) = (p.byte, p.line, p.done);
        self.start(p.byte)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion_common::arrow::array::AsArray;
    use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use weir_runtime::{Metrics, Source};

    use super::JsonSource;
    use crate::file_splits::{json_ranges, Range};
    use crate::options::{BadRowPolicy, FileFormat, FileOptions};

    /// Ranges as [`json_ranges`] cuts them: each line is read by exactly one, blank lines are
    /// skipped, a range's position resumes inside it, and a bad line in a later range names its
    /// line in the file.
    #[test]
    fn ranges_read_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let text = "{\"a\": 1}\n{\"a\": 2}\n\n{\"a\": 3, \"s\": \"q\\\"\"}\n{\"a\": 4}\n{\"a\": \"x\"}\n{\"a\": 5}\n";
        std::fs::write(&path, text).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let options = |bad_rows| FileOptions {
            path: Some(path.clone()),
            format: FileFormat::Json,
            bad_rows,
            delimiter: b',',
            monitor: None,
            only: None,
        };
        let open = |range: Range, policy| {
            let none = Arc::new(Schema::empty());
            JsonSource::open_range(&options(policy), Arc::clone(&schema), none, 2, Arc::new(Metrics::default()), range)
        };
        let read = |src: &mut JsonSource| {
            let mut out = Vec::new();
            while let Some(b) = src.next_batch()? {
                out.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
            }
            Ok::<_, weir_runtime::RuntimeError>(out)
        };
        let ranges = json_ranges(&path, 3, 1).unwrap().unwrap();
        let mut all = Vec::new();
        for r in &ranges {
            all.extend(read(&mut open(*r, BadRowPolicy::Skip).unwrap()).unwrap());
        }
        assert_eq!(all, vec![1, 2, 3, 4, 5], "{ranges:?}");
        // a range starting at line 4 ("a": 3), up to the end: its bad line is line 6
        let at = |s: &str| text.find(s).unwrap() as u64;
        let late = Range { start: at("{\"a\": 3"), lines_before: 3, end: text.len() as u64 };
        let err = read(&mut open(late, BadRowPolicy::Fail).unwrap()).unwrap_err().to_string();
        assert!(err.contains(":6:"), "the bad line is line 6: {err}");
        // resumed from a position taken after its first batch, it reads on to its end only
        let middle = Range { start: 0, lines_before: 0, end: at("{\"a\": 5") };
        let mut src = open(middle, BadRowPolicy::Skip).unwrap();
        let first = src.next_batch().unwrap().unwrap();
        assert_eq!(first.num_rows(), 2);
        let position = src.position().unwrap();
        let mut resumed = open(middle, BadRowPolicy::Skip).unwrap();
        resumed.seek(&position).unwrap();
        assert_eq!(read(&mut resumed).unwrap(), vec![3, 4]);
    }
}
