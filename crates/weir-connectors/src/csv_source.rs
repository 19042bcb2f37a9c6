//! Reading CSV files (with a header row) incrementally, one batch at a time.

use std::io::{BufReader, Read};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_runtime::{Metrics, Result, RuntimeError, Source};

use crate::column::{clip, ColumnBuffer, ColumnType, Value};
use crate::dead_letter::BadRows;
use crate::live::{follow, DirFiles, LineGuard, Mode, Pump, Pumped, Tail, LINGER};
use crate::options::FileOptions;

struct CsvColumn {
    name: String,
    field_index: usize,
    column_type: ColumnType,
    is_text: bool,
    nullable: bool,
    /// Whether the query reads it: an unread column is checked but not kept.
    read: bool,
}

/// A CSV reader over any input.
type CsvReader = csv::Reader<BufReader<Box<dyn Read + Send>>>;

/// Where records come from.
enum Records {
    /// A regular file, read on the source's thread, with what its reader has read.
    Direct(CsvReader, Arc<Tail>),
    /// An input that can block, read on a pump thread (its header first).
    Pumped(Pump<CsvItem>),
}

/// What a pump thread reads.
enum CsvItem {
    /// The header, with the byte and line where the first record starts, and the file it
    /// is of when reading a directory.
    Header(csv::ByteRecord, (u64, u64), Option<String>),
    /// A record, with the byte and line where the next one starts, and whether the input
    /// ended with it.
    Record(csv::ByteRecord, (u64, u64), bool),
}

/// A CSV file read in batches of `batch_size` rows; memory is bounded by one batch. Standard
/// input, named pipes and followed files are read on a thread of their own and cut into
/// batches by size or by time (`crate::live`).
pub struct CsvSource {
    records: Records,
    display: String,
    columns: Vec<CsvColumn>,
    buffers: Vec<ColumnBuffer>,
    schema: SchemaRef,
    /// Declared columns the query does not read: checked, not kept.
    unread: SchemaRef,
    batch_size: usize,
    bad_rows: BadRows,
    record: csv::ByteRecord,
    /// Where the current record ends: the line the reader is on after it, and whether the
    /// input ended with it (no line end after it). See [`CsvSource::record_line`].
    record_end: (u64, bool),
    scratch: Vec<Value<'static>>,
    header_len: usize,
    done: bool,
    /// To read the file again from a checkpoint's position.
    options: FileOptions,
    mode: Mode,
    /// Where the current direct reader started (byte, line - 1), after a seek.
    base: (u64, u64),
    /// Where the next pumped record starts (byte, line).
    next: (u64, u64),
    /// A parallel instance's range: its records end where the next range's start (a byte).
    stop_at: Option<u64>,
}

/// A record as CSV text again (quoted where needed), without the line end.
fn csv_text(record: &csv::ByteRecord, delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(Vec::new());
    let _ = writer.write_byte_record(&(0..record.len()).map(|i| field(record, i)).collect::<csv::ByteRecord>());
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

/// Records end at `\n` only: with the csv crate's default (`\r`, `\n` or `\r\n`), a record
/// after a `\r\n` starts at its `\n`, one line too early in messages and dead letters. The
/// `\r` of a `\r\n` is taken off the last field instead ([`field`]).
fn reader_builder(delimiter: u8, headers: bool) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.delimiter(delimiter).has_headers(headers).flexible(true).terminator(csv::Terminator::Any(b'\n'));
    b
}

/// Field `i` of `record`, without the `\r` of a `\r\n` line end.
fn field(record: &csv::ByteRecord, i: usize) -> &[u8] {
    let raw = record.get(i).unwrap_or_default();
    if i + 1 == record.len() {
        raw.strip_suffix(b"\r").unwrap_or(raw)
    } else {
        raw
    }
}

/// Whether a record is a blank or whitespace-only line (skipped, not a row).
fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && record.get(0).is_some_and(|f| f.iter().all(u8::is_ascii_whitespace))
}

impl CsvSource {
    /// Open the input of `options` and map its header to the columns of `schema`; `unread`
    /// are the table's other columns, checked in every row (a row is malformed whichever
    /// columns a query reads) but not returned.
    pub fn open(
        options: &FileOptions,
        schema: SchemaRef,
        unread: SchemaRef,
        batch_size: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let display = options.display();
        let mode = Mode::of(options.path.as_ref(), options.monitor);
        let mut source = Self {
            records: Records::Direct(
                reader_builder(options.delimiter, false)
                    .from_reader(BufReader::new(Box::new(std::io::empty()) as Box<dyn Read + Send>)),
                Arc::default(),
            ),
            display,
            columns: Vec::new(),
            buffers: Vec::new(),
            schema,
            unread,
            batch_size: batch_size.max(1),
            bad_rows: BadRows::new(options, &metrics),
            record: csv::ByteRecord::new(),
            record_end: (0, false),
            scratch: Vec::new(),
            header_len: 0,
            done: false,
            options: options.clone(),
            mode,
            base: (0, 0),
            next: (0, 1),
            stop_at: None,
        };
        source.start(0, 0)?;
        Ok(source)
    }

    /// The records of a regular file in `range` only (a parallel instance's share, see
    /// `crate::file_splits`); the header is read from the file's start.
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
            source.start(range.start, range.lines_before)?;
        }
        source.stop_at = Some(range.end);
        Ok(source)
    }

    /// Start reading at byte `byte` (line `line` - 1 before it), the header from the start.
    fn start(&mut self, byte: u64, line: u64) -> Result<()> {
        let delimiter = self.options.delimiter;
        if !self.mode.pumped() {
            let (input, mut tail) = self.open_input(0).map_err(RuntimeError::Source)?;
            let mut reader = reader_builder(delimiter, true).from_reader(BufReader::with_capacity(1 << 20, input));
            let header = reader
                .byte_headers()
                .map_err(|e| RuntimeError::Source(format!("{}: cannot read the header row: {e}", self.display)))?
                .clone();
            self.map_header(&header)?;
            if byte > 0 {
                let (input, at) = self.open_input(byte).map_err(RuntimeError::Source)?;
                reader = reader_builder(delimiter, false).from_reader(BufReader::with_capacity(1 << 20, input));
                tail = at;
            }
            self.records = Records::Direct(reader, tail);
            self.base = (byte, line);
            return Ok(());
        }
        // read on a thread of its own: opening a FIFO and reading its header can block too
        let source = self.clone_for_pump();
        let stop = Arc::new(AtomicBool::new(false));
        let follow_stop = Arc::clone(&stop);
        let mut files = match (&self.mode, &self.options.path) {
            (Mode::Directory(monitor), Some(dir)) => Some(match &self.options.only {
                Some(files) => DirFiles::only(files),
                None => DirFiles::new(dir.clone(), *monitor, Arc::clone(&stop)),
            }),
            _ => None,
        };
        let mut reader: Option<(CsvReader, Arc<Tail>)> = None;
        let mut at = (byte, line);
        let mut display = self.display.clone();
        let pump = Pump::start(&display.clone(), self.batch_size, stop, move || loop {
            let Some((r, tail)) = reader.as_mut() else {
                // the input, or a directory's next file
                let ((input, mut tail), file) = match files.as_mut() {
                    Some(files) => match files.next_file()? {
                        Some(path) => {
                            let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                            display = path.display().to_string();
                            (guarded(file), Some(display.clone()))
                        }
                        None => return Ok(None),
                    },
                    None => (source.open(0, &follow_stop)?, None),
                };
                let mut r = reader_builder(delimiter, true).from_reader(BufReader::with_capacity(1 << 20, input));
                let header =
                    r.byte_headers().map_err(|e| format!("{display}: cannot read the header row: {e}"))?.clone();
                if header.is_empty() && file.is_some() {
                    continue; // an empty file of a directory: nothing to read
                }
                let first = if at.0 > 0 {
                    let (input, at_tail) = source.open(at.0, &follow_stop)?;
                    r = reader_builder(delimiter, false).from_reader(BufReader::with_capacity(1 << 20, input));
                    tail = at_tail;
                    (at.0, at.1 + 1)
                } else {
                    at = (0, 0);
                    (r.position().byte(), r.position().line())
                };
                reader = Some((r, tail));
                return Ok(Some(CsvItem::Header(header, first, file)));
            };
            let mut record = csv::ByteRecord::new();
            match r.read_byte_record(&mut record) {
                Ok(true) => {
                    let p = r.position();
                    let unterminated = tail.unterminated_at(p.byte());
                    return Ok(Some(CsvItem::Record(record, (at.0 + p.byte(), at.1 + p.line()), unterminated)));
                }
                // a directory: on to its next file
                Ok(false) if files.is_some() => reader = None,
                Ok(false) => return Ok(None),
                Err(e) => {
                    let line = at.1 + e.position().map_or(r.position().line(), |p| p.line());
                    return Err(format!("{display}:{line}: {e}"));
                }
            }
        })?;
        self.records = Records::Pumped(pump);
        self.next = (byte, line + 1);
        Ok(())
    }

    fn clone_for_pump(&self) -> PumpInput {
        PumpInput { options: self.options.clone(), mode: self.mode.clone() }
    }

    /// The file (read directly: a regular file) from byte `byte`.
    fn open_input(&self, byte: u64) -> std::result::Result<(Box<dyn Read + Send>, Arc<Tail>), String> {
        Ok(guarded(self.options.open_at(byte)?))
    }

    /// Map the header to the columns read and checked.
    fn map_header(&mut self, header: &csv::ByteRecord) -> Result<()> {
        let names: Vec<String> = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        let find = |name: &str| names.iter().position(|h| h.eq_ignore_ascii_case(name));
        let mut columns = Vec::new();
        for (read, field) in
            self.schema.fields().iter().map(|f| (true, f)).chain(self.unread.fields().iter().map(|f| (false, f)))
        {
            let Some(field_index) = find(field.name()) else {
                // read or not, as every column is checked
                return Err(RuntimeError::Source(format!(
                    "{}: the header has no column '{}' (it has: {})",
                    self.display,
                    field.name(),
                    clip(&names.join(", "))
                )));
            };
            let column_type = ColumnType::new(field.data_type())
                .map_err(|e| RuntimeError::Source(format!("{}: {e}", self.display)))?;
            columns.push(CsvColumn {
                name: field.name().clone(),
                field_index,
                is_text: field.data_type() == &DataType::Utf8,
                nullable: field.is_nullable(),
                column_type,
                read,
            });
        }
        if self.buffers.is_empty() {
            // a directory's next file keeps the rows buffered from the one before (the
            // columns read are the table's, in the same order, whatever the file's header)
            self.buffers = columns
                .iter()
                .filter(|c| c.read)
                .map(|c| ColumnBuffer::new(c.column_type.clone(), self.batch_size))
                .collect();
        }
        self.columns = columns;
        self.header_len = header.len();
        Ok(())
    }

    /// Parse the current record into `scratch` (the columns read); on failure say why.
    fn parse_record(&mut self) -> std::result::Result<(), String> {
        self.scratch.clear();
        if self.record.len() != self.header_len {
            return Err(format!("expected {} fields as in the header, found {}", self.header_len, self.record.len()));
        }
        for c in &self.columns {
            // every field_index is below header_len, checked just above
            let raw = field(&self.record, c.field_index);
            let Ok(text) = std::str::from_utf8(raw) else {
                return Err(format!("column '{}' is not valid UTF-8", c.name));
            };
            if c.is_text {
                if text.is_empty() && !c.nullable {
                    return Err(format!("column '{}' is NOT NULL but the value is empty", c.name));
                }
                if c.read {
                    self.scratch.push(Value::Null);
                }
                continue;
            }
            let value = match c.column_type.parse_text(text) {
                Some(Value::Str(_)) | Some(Value::Owned(_)) | None => {
                    return Err(format!(
                        "bad value '{}' for column '{}' ({})",
                        clip(text),
                        c.name,
                        c.column_type.sql_name()
                    ))
                }
                Some(Value::Null) if !c.nullable => {
                    return Err(format!("column '{}' is NOT NULL but the value is empty", c.name))
                }
                Some(Value::Null) => Value::Null,
                Some(Value::Int(v)) => Value::Int(v),
                Some(Value::Float(v)) => Value::Float(v),
                Some(Value::Bool(v)) => Value::Bool(v),
            };
            if c.read {
                self.scratch.push(value);
            }
        }
        Ok(())
    }

    /// The line the current record starts on, counted back from its end: the csv crate's own
    /// record position is where reading started, before any blank lines it skipped.
    fn record_line(&self) -> u64 {
        let (end, input_ended) = self.record_end;
        let inside = self.record.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
        end.saturating_sub(inside + u64::from(!input_ended)).max(1)
    }

    /// Read the next record into `record`; `Ok(false)` when none came by `deadline` (a
    /// pumped input) or the input ended (`done` is set then).
    fn next_record(&mut self, deadline: Instant) -> Result<bool> {
        match &mut self.records {
            Records::Direct(reader, _)
                if self.stop_at.is_some_and(|end| self.base.0 + reader.position().byte() >= end) =>
            {
                self.done = true;
                Ok(false)
            }
            Records::Direct(reader, tail) => match reader.read_byte_record(&mut self.record) {
                Ok(true) => {
                    let end = reader.position();
                    self.record_end = (self.base.1 + end.line(), tail.unterminated_at(end.byte()));
                    Ok(true)
                }
                Ok(false) => {
                    self.done = true;
                    Ok(false)
                }
                Err(e) => {
                    let line = self.base.1 + e.position().map_or(reader.position().line(), |p| p.line());
                    Err(RuntimeError::Source(format!("{}:{line}: {e}", self.display)))
                }
            },
            Records::Pumped(_) => loop {
                let Records::Pumped(pump) = &mut self.records else { return Ok(false) };
                match pump.next_until(deadline).map_err(RuntimeError::Source)? {
                    Pumped::Item(CsvItem::Header(header, first, file)) => {
                        if let Some(file) = file {
                            self.display = file;
                        }
                        self.map_header(&header)?;
                        self.next = first;
                    }
                    Pumped::Item(CsvItem::Record(record, next, ended)) => {
                        self.record = record;
                        self.record_end = (next.1, ended);
                        self.next = next;
                        return Ok(true);
                    }
                    Pumped::Wait => return Ok(false),
                    Pumped::End => {
                        self.done = true;
                        return Ok(false);
                    }
                }
            },
        }
    }
}

/// What a pump thread needs to open the input.
struct PumpInput {
    options: FileOptions,
    mode: Mode,
}

impl PumpInput {
    fn open(
        &self,
        byte: u64,
        stop: &Arc<AtomicBool>,
    ) -> std::result::Result<(Box<dyn Read + Send>, Arc<Tail>), String> {
        let input: Box<dyn Read + Send> = match (&self.mode, &self.options.path) {
            (Mode::Follow(interval), Some(path)) => follow(path, byte, *interval, stop)?,
            _ if byte == 0 => self.options.open_input()?,
            _ => self.options.open_at(byte)?,
        };
        Ok(guarded(input))
    }
}

/// `input` behind a [`LineGuard`], with its [`Tail`].
fn guarded(input: impl Read + Send + 'static) -> (Box<dyn Read + Send>, Arc<Tail>) {
    let guard = LineGuard::new(input);
    let tail = guard.tail();
    (Box::new(guard), tail)
}

impl Source for CsvSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        let deadline = Instant::now() + LINGER;
        let mut rows = 0;
        while rows < self.batch_size {
            if !self.next_record(deadline)? {
                break;
            }
            if is_blank(&self.record) {
                continue;
            }
            match self.parse_record() {
                Ok(()) => {
                    let mut values = self.scratch.iter();
                    let read = self.columns.iter().filter(|c| c.read);
                    for ((c, buf), v) in read.zip(&mut self.buffers).zip(&mut values) {
                        if c.is_text {
                            // validated by parse_record; text columns are appended from the record
                            let raw = field(&self.record, c.field_index);
                            let text = std::str::from_utf8(raw).unwrap_or_default();
                            buf.append(&if text.is_empty() { Value::Null } else { Value::Str(text) });
                        } else {
                            buf.append(v);
                        }
                    }
                    rows += 1;
                }
                Err(why) => {
                    let (record, delimiter) = (&self.record, self.options.delimiter);
                    let line = self.record_line();
                    self.bad_rows.handle(&self.display, line, &why, || csv_text(record, delimiter))?;
                }
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

    /// The byte and line of the next record (files, followed or not; not pipes or stdin).
    fn position(&self) -> Option<serde_json::Value> {
        self.options.path.as_ref()?;
        let (byte, line) = match (&self.records, &self.mode) {
            (_, mode) if !mode.seekable() => return None,
            (Records::Direct(reader, _), _) => {
                let p = reader.position();
                (self.base.0 + p.byte(), self.base.1 + p.line())
            }
            (Records::Pumped(_), _) => self.next,
        };
        serde_json::to_value(CsvPosition { byte, line, done: self.done }).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: CsvPosition = weir_runtime::checkpoint::from_json(position, &self.display)?;
        self.start(p.byte, p.line.saturating_sub(1))?;
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

    fn none() -> Arc<Schema> {
        Arc::new(Schema::empty())
    }

    fn options(path: &std::path::Path, bad_rows: BadRowPolicy) -> FileOptions {
        FileOptions {
            path: Some(path.to_path_buf()),
            format: FileFormat::Csv,
            bad_rows,
            delimiter: b',',
            monitor: None,
            only: None,
        }
    }

    #[test]
    fn reads_in_batches_with_bom_quotes_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "\u{feff}A,\"b\"\n1,\"x,y\"\n\n2,z\n3,\n").unwrap();
        let schema =
            Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, true), Field::new("a", DataType::Int64, true)]));
        let metrics = Arc::new(Metrics::default());
        let mut src = CsvSource::open(&options(&path, BadRowPolicy::Fail), schema, none(), 2, metrics).unwrap();
        let first = src.next_batch().unwrap().unwrap();
        assert_eq!(first.num_rows(), 2);
        assert_eq!(first.column(0).as_string::<i32>().value(0), "x,y");
        assert_eq!(first.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 2]);
        let second = src.next_batch().unwrap().unwrap();
        assert_eq!(second.num_rows(), 1);
        assert!(second.column(0).is_null(0), "an empty field is NULL");
        assert!(src.next_batch().unwrap().is_none());
    }

    /// Ranges cut where [`crate::file_splits::csv_ranges`] cuts (never after a blank line, which
    /// the reader would skip into the next range): each record is read by exactly one range,
    /// and a bad row in a later range names its line in the file.
    #[test]
    fn ranges_read_each_record_once() {
        use crate::file_splits::Range;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        let text = "a\n1\n\n\n2\n3\n\nx\n4\n";
        std::fs::write(&path, text).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let read = |range: Range, policy: BadRowPolicy| {
            let metrics = Arc::new(Metrics::default());
            let mut src =
                CsvSource::open_range(&options(&path, policy), Arc::clone(&schema), none(), 100, metrics, range)?;
            let mut out = Vec::new();
            while let Some(b) = src.next_batch()? {
                out.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
            }
            Ok::<_, weir_runtime::RuntimeError>(out)
        };
        // cut after "1" (before two blank lines) and after "3" (before one)
        let at = |s: &str| text.find(s).unwrap() as u64 + s.len() as u64;
        let len = text.len() as u64;
        let ranges = [
            Range { start: 0, lines_before: 0, end: at("1\n") },
            Range { start: at("1\n"), lines_before: 2, end: at("3\n") },
            Range { start: at("3\n"), lines_before: 6, end: len },
        ];
        let cut = crate::file_splits::csv_ranges(&path, 3, 1).unwrap().unwrap();
        assert!(cut.iter().skip(1).all(|r| text.as_bytes()[r.start as usize - 2] != b'\n'), "{cut:?}");
        let skip = |r| read(r, BadRowPolicy::Skip).unwrap();
        assert_eq!((skip(ranges[0]), skip(ranges[1]), skip(ranges[2])), (vec![1], vec![2, 3], vec![4]));
        let err = read(ranges[2], BadRowPolicy::Fail).unwrap_err().to_string();
        assert!(err.contains(":8:"), "the bad row is on line 8: {err}");
    }

    #[test]
    fn bad_rows_fail_with_line_or_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a\n1\n2\nzz\n4\n").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let metrics = Arc::new(Metrics::default());
        let mut src =
            CsvSource::open(&options(&path, BadRowPolicy::Fail), Arc::clone(&schema), none(), 10, Arc::clone(&metrics))
                .unwrap();
        let err = src.next_batch().unwrap_err().to_string();
        assert!(err.contains("x.csv:4: bad value 'zz' for column 'a' (BIGINT)"), "{err}");
        let mut src =
            CsvSource::open(&options(&path, BadRowPolicy::Skip), schema, none(), 10, Arc::clone(&metrics)).unwrap();
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
