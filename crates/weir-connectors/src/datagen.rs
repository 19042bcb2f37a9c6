//! The `datagen` connector: rows made up in process, as Flink's `datagen` does, for trying
//! queries in the shell and for tests, with no file or service.
//!
//! ```sql
//! CREATE TABLE clicks (
//!     id BIGINT, user_id INT, url VARCHAR, ts TIMESTAMP(3),
//!     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
//! ) WITH (
//!     connector = 'datagen', 'rows-per-second' = '100',
//!     'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
//!     'fields.user_id.min' = '1', 'fields.user_id.max' = '20'
//! );
//! ```
//!
//! Every column is `random` unless `fields.<col>.kind = 'sequence'`:
//! - integers: uniform in `[min, max]` (default the type's range); a sequence counts from
//!   `start` up to `end` (or the type's maximum), and the input ends when it runs out;
//! - `FLOAT`/`DOUBLE`: uniform in `[min, max)` (default `[0, 1)`);
//! - `VARCHAR`: `length` random lower-case letters (default 10), or a sequence's numbers as text;
//! - `BOOLEAN`: either, evenly; `DATE`: today (UTC);
//! - `TIMESTAMP`: the wall clock when the row is made, minus a random amount up to
//!   `max-past` (default `0 s`), so the rows are in event-time order unless `max-past` is set.
//!
//! `rows-per-second` paces the rows (default 10000), `number-of-rows` bounds them (default: no
//! bound), and `seed` makes the random values repeatable. Each column draws from its own random
//! stream, so its values do not depend on which other columns a query reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_plan::duration::nanos_per_unit;
use weir_plan::{sql_type_name, TableDef};
use weir_plan::{ConnectorError, ConnectorSpec, OptionSpec, OptionType};
use weir_runtime::{Connector, ConnectorContext, Result, RuntimeError, Source};

use crate::column::int_range;

/// Options of the `datagen` connector (besides `connector` and the planner's own).
const OPTIONS: &[&str] = &["connector", "rows-per-second", "number-of-rows", "seed"];
/// Per-column options: `fields.<column>.<key>`.
const FIELD_OPTIONS: &[&str] = &["kind", "min", "max", "length", "start", "end", "max-past"];

/// How one column's values are made.
#[derive(Debug, Clone, PartialEq)]
enum Gen {
    /// Consecutive integers from `next`, `left` more of them.
    Sequence { next: i64, left: u64 },
    /// Uniform integers in `[min, max]`.
    Int { min: i64, max: i64 },
    /// Uniform floats in `[min, max)`.
    Float { min: f64, max: f64 },
    /// Either boolean.
    Bool,
    /// Random lower-case text of this many characters.
    Text { length: usize },
    /// Today's date.
    Today,
    /// The wall clock minus up to this many nanoseconds.
    Now { max_past: i64 },
}

/// Checked `datagen` options of one table.
#[derive(Debug, Clone)]
pub struct DatagenOptions {
    /// Rows per second of wall-clock time.
    pub rows_per_second: u64,
    /// Rows in all, if bounded.
    pub number_of_rows: Option<u64>,
    /// Seed of the random values (random if not given).
    pub seed: Option<u64>,
    /// Generators of the physical columns, by name.
    columns: BTreeMap<String, Gen>,
}

fn positive(name: &str, key: &str, v: &str) -> std::result::Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("table '{name}': option '{key}' must be a positive integer, got '{v}'")),
    }
}

impl DatagenOptions {
    /// Read and check the options of a `datagen` table.
    pub fn parse(table: &TableDef) -> std::result::Result<Self, String> {
        let name = &table.name;
        let schema = table.physical_schema().map_err(|e| e.to_string())?;
        let mut fields: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for (key, value) in &table.options {
            if OPTIONS.contains(&key.as_str()) || weir_plan::TABLE_OPTIONS.iter().any(|o| o.name == key) {
                continue;
            }
            let field = key.strip_prefix("fields.").and_then(|rest| rest.rsplit_once('.'));
            let Some((column, option)) = field.filter(|(_, o)| FIELD_OPTIONS.contains(o)) else {
                return Err(format!(
                    "table '{name}': unknown option '{key}' for connector 'datagen' (supported: {}, and fields.<column>.{{{}}})",
                    OPTIONS.join(", "),
                    FIELD_OPTIONS.join(",")
                ));
            };
            if schema.field_with_name(column).is_err() {
                return Err(format!("table '{name}': option '{key}' names no column of the table"));
            }
            fields.entry(column).or_default().insert(option, value.as_str());
        }
        let rows_per_second = match table.option("rows-per-second") {
            Some(v) => positive(name, "rows-per-second", v)?,
            None => 10_000,
        };
        let number_of_rows = table.option("number-of-rows").map(|v| positive(name, "number-of-rows", v)).transpose()?;
        let seed = match table.option("seed").map(str::trim) {
            // any integer: a negative seed is taken as its two's complement
            Some(v) => Some(match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    v.parse::<i64>().map_err(|_| format!("table '{name}': seed must be an integer, got '{v}'"))? as u64
                }
            }),
            None => None,
        };
        let mut columns = BTreeMap::new();
        for f in schema.fields() {
            let spec = fields.remove(f.name().as_str()).unwrap_or_default();
            let gen =
                column_gen(f.data_type(), &spec).map_err(|e| format!("table '{name}', column '{}': {e}", f.name()))?;
            columns.insert(f.name().clone(), gen);
        }
        Ok(Self { rows_per_second, number_of_rows, seed, columns })
    }
}

fn column_gen(t: &DataType, spec: &BTreeMap<&str, &str>) -> std::result::Result<Gen, String> {
    let get = |k: &str| spec.get(k).map(|v| v.trim());
    let allow = |allowed: &[&str]| -> std::result::Result<(), String> {
        match spec.keys().find(|k| !allowed.contains(k)) {
            Some(k) => Err(format!("option '{k}' does not apply to a {} column", sql_type_name(t))),
            None => Ok(()),
        }
    };
    let int = |k: &str, v: &str| v.parse::<i64>().map_err(|_| format!("'{k}' must be an integer, got '{v}'"));
    let sequence = match get("kind").map(str::to_ascii_lowercase).as_deref() {
        None | Some("random") => false,
        Some("sequence") => true,
        Some(other) => return Err(format!("kind must be 'random' or 'sequence', got '{other}'")),
    };
    let is_int = matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64);
    if sequence {
        if !is_int && *t != DataType::Utf8 {
            return Err(format!("a sequence must be an integer or VARCHAR column, not {}", sql_type_name(t)));
        }
        allow(&["kind", "start", "end"])?;
        let (lo, hi) = int_range(if is_int { t } else { &DataType::Int64 });
        let start = get("start").ok_or("a sequence needs 'start'")?;
        let start = int("start", start)?;
        let end = get("end").map(|v| int("end", v)).transpose()?.unwrap_or(hi);
        if start < lo || end > hi || start > end {
            return Err(format!("the sequence {start}..{end} does not fit the column (or ends before it starts)"));
        }
        return Ok(Gen::Sequence { next: start, left: (end as i128 - start as i128 + 1).min(u64::MAX as i128) as u64 });
    }
    match t {
        _ if is_int => {
            allow(&["kind", "min", "max"])?;
            let (lo, hi) = int_range(t);
            let min = get("min").map(|v| int("min", v)).transpose()?.unwrap_or(lo);
            let max = get("max").map(|v| int("max", v)).transpose()?.unwrap_or(hi);
            if min < lo || max > hi || min > max {
                return Err(format!("min {min} and max {max} do not fit the column (or min > max)"));
            }
            Ok(Gen::Int { min, max })
        }
        DataType::Float32 | DataType::Float64 => {
            allow(&["kind", "min", "max"])?;
            let float = |k: &str, d: f64| match get(k) {
                Some(v) => v.parse::<f64>().map_err(|_| format!("'{k}' must be a number, got '{v}'")),
                None => Ok(d),
            };
            let (min, max) = (float("min", 0.0)?, float("max", 1.0)?);
            if !(min <= max && (max - min).is_finite()) {
                return Err(format!("min {min} must not be above max {max}, and both must be finite"));
            }
            Ok(Gen::Float { min, max })
        }
        DataType::Utf8 => {
            allow(&["kind", "length"])?;
            let length = match get("length") {
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 && n <= 1 << 20 => n,
                    _ => return Err(format!("'length' must be a positive integer, got '{v}'")),
                },
                None => 10,
            };
            Ok(Gen::Text { length })
        }
        DataType::Boolean => allow(&["kind"]).map(|_| Gen::Bool),
        DataType::Date32 => allow(&["kind"]).map(|_| Gen::Today),
        DataType::Timestamp(_, None) => {
            allow(&["kind", "max-past"])?;
            let max_past = match get("max-past") {
                Some(v) => weir_plan::duration::parse_duration(v).map_err(|e| format!("max-past: {e}"))?,
                None => 0,
            };
            Ok(Gen::Now { max_past })
        }
        other => Err(format!("datagen cannot make values of type {}", sql_type_name(other))),
    }
}

/// A column being generated: its generator and its own random stream.
struct Column {
    gen: Gen,
    rng: fastrand::Rng,
    /// Output position, if the pipeline reads this column.
    output: Option<(usize, DataType)>,
}

/// The `datagen` source.
pub struct DatagenSource {
    table: String,
    schema: SchemaRef,
    columns: Vec<Column>,
    batch_size: usize,
    rows_per_second: u64,
    remaining: Option<u64>,
    emitted: u64,
    started: Option<Instant>,
}

impl DatagenSource {
    /// A source making the columns of `schema` (a projection of the table's columns).
    pub fn open(table: &TableDef, schema: SchemaRef, batch_size: usize) -> Result<Self> {
        let options = DatagenOptions::parse(table).map_err(RuntimeError::Source)?;
        let seed = options.seed.unwrap_or_else(|| fastrand::u64(..));
        let columns = options
            .columns
            .into_iter()
            .enumerate()
            .map(|(i, (name, gen))| {
                let output = schema.index_of(&name).ok().map(|p| (p, schema.field(p).data_type().clone()));
                // one stream per column, so a column's values do not depend on the others read
                let rng = fastrand::Rng::with_seed(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                Column { gen, rng, output }
            })
            .collect();
        // at slow rates, about ten batches a second, so rows appear steadily
        let chunk = (options.rows_per_second / 10).max(1) as usize;
        Ok(Self {
            table: table.name.clone(),
            schema,
            columns,
            batch_size: batch_size.min(chunk).max(1),
            rows_per_second: options.rows_per_second,
            remaining: options.number_of_rows,
            emitted: 0,
            started: None,
        })
    }

    /// Rows the next batch can have: bounded by `number-of-rows` and by every sequence.
    fn next_len(&self) -> usize {
        let mut n = self.batch_size as u64;
        if let Some(r) = self.remaining {
            n = n.min(r);
        }
        for c in &self.columns {
            if let Gen::Sequence { left, .. } = c.gen {
                n = n.min(left);
            }
        }
        n as usize
    }

    /// Wait until `emitted` rows are due at `rows_per_second`, at most [`crate::live::LINGER`]
    /// (so a stop is noticed in time however slow the pace); false if they are not due yet.
    fn pace(&mut self) -> bool {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = Duration::try_from_secs_f64(self.emitted as f64 / self.rows_per_second as f64)
            .ok()
            .and_then(|ahead| started.checked_add(ahead));
        let now = Instant::now();
        match due {
            Some(due) if due <= now => true,
            Some(due) if due - now <= crate::live::LINGER => {
                std::thread::sleep(due - now);
                true
            }
            _ => {
                std::thread::sleep(crate::live::LINGER);
                false
            }
        }
    }
}

/// Move a sequence on by `n` values (`n` is at most `left`).
fn advance(next: &mut i64, left: &mut u64, n: usize) {
    *left -= n as u64;
    if *left > 0 {
        *next += n as i64;
    }
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn make(gen: &mut Gen, rng: &mut fastrand::Rng, n: usize, t: &DataType) -> ArrayRef {
    match gen {
        Gen::Sequence { next, left } => {
            let start = *next;
            advance(next, left, n);
            let values = (0..n as i64).map(|i| start + i);
            if *t == DataType::Utf8 {
                Arc::new(StringArray::from_iter_values(values.map(|v| v.to_string())))
            } else {
                Arc::new(Int64Array::from_iter_values(values))
            }
        }
        Gen::Int { min, max } => Arc::new(Int64Array::from_iter_values((0..n).map(|_| rng.i64(*min..=*max)))),
        Gen::Float { min, max } => {
            Arc::new(Float64Array::from_iter_values((0..n).map(|_| *min + rng.f64() * (*max - *min))))
        }
        Gen::Bool => Arc::new(BooleanArray::from_iter((0..n).map(|_| Some(rng.bool())))),
        Gen::Text { length } => {
            let mut s = String::with_capacity(*length);
            Arc::new(StringArray::from_iter_values((0..n).map(|_| {
                s.clear();
                s.extend((0..*length).map(|_| rng.lowercase()));
                s.clone()
            })))
        }
        Gen::Today => {
            let days = now_nanos().div_euclid(86_400_000_000_000) as i32;
            Arc::new(Date32Array::from_iter_values(std::iter::repeat_n(days, n)))
        }
        Gen::Now { max_past } => {
            let unit = match t {
                DataType::Timestamp(unit, _) => nanos_per_unit(*unit),
                _ => 1,
            };
            let now = now_nanos();
            let max_past = *max_past;
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| (now - if max_past > 0 { rng.i64(0..=max_past) } else { 0 }).div_euclid(unit)),
            ))
        }
    }
}

impl Source for DatagenSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let n = self.next_len();
        if n == 0 {
            return Ok(None);
        }
        if !self.pace() {
            return Ok(Some(RecordBatch::new_empty(Arc::clone(&self.schema))));
        }
        let mut arrays: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        for c in &mut self.columns {
            match &c.output {
                Some((p, t)) => {
                    let raw = make(&mut c.gen, &mut c.rng, n, t);
                    let array = if raw.data_type() == t { raw } else { cast(&raw, t)? };
                    arrays[*p] = Some(array);
                }
                // an unread sequence still advances, so it still ends the input on time
                None => {
                    if let Gen::Sequence { next, left } = &mut c.gen {
                        advance(next, left, n);
                    }
                }
            }
        }
        let arrays = arrays
            .into_iter()
            .zip(self.schema.fields())
            .map(|(a, f)| {
                a.ok_or_else(|| RuntimeError::Source(format!("table '{}' has no column '{}'", self.table, f.name())))
            })
            .collect::<Result<Vec<_>>>()?;
        self.emitted += n as u64;
        if let Some(r) = &mut self.remaining {
            *r -= n as u64;
        }
        // a query may read no column at all (COUNT(*)): the batch still has its rows
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?))
    }

    /// Rows made so far, each column's random state and sequence.
    fn position(&self) -> Option<serde_json::Value> {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let sequence = match c.gen {
                    Gen::Sequence { next, left } => Some((next, left)),
                    _ => None,
                };
                (c.rng.get_seed(), sequence)
            })
            .collect();
        serde_json::to_value(DatagenPosition { emitted: self.emitted, remaining: self.remaining, columns }).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: DatagenPosition = weir_runtime::checkpoint::from_json(position, &format!("table '{}'", self.table))?;
        if p.columns.len() != self.columns.len() {
            return Err(RuntimeError::Checkpoint(format!(
                "table '{}': the checkpoint has {} generated columns, the table {}",
                self.table,
                p.columns.len(),
                self.columns.len()
            )));
        }
        for (c, (seed, sequence)) in self.columns.iter_mut().zip(p.columns) {
            c.rng = fastrand::Rng::with_seed(seed);
            if let (Gen::Sequence { next, left }, Some((n, l))) = (&mut c.gen, sequence) {
                (*next, *left) = (n, l);
            }
        }
        (self.emitted, self.remaining) = (p.emitted, p.remaining);
        // paced from now on, as if the rows made so far had been made at the configured rate
        let ahead = Duration::from_secs_f64(self.emitted as f64 / self.rows_per_second as f64);
        let now = Instant::now();
        self.started = Some(now.checked_sub(ahead).unwrap_or(now));
        Ok(())
    }
}

/// Where a `datagen` table is.
#[derive(serde::Serialize, serde::Deserialize)]
struct DatagenPosition {
    emitted: u64,
    remaining: Option<u64>,
    /// Per column: its random state, and for a sequence its next value and how many are left.
    columns: Vec<(u64, Option<(i64, u64)>)>,
}

/// The `datagen` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct DatagenConnector;

impl Connector for DatagenConnector {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "datagen",
            doc: "makes up rows in process, paced (Flink's datagen)",
            source: true,
            sink: false,
            loose_keys: false,
            metadata: vec![],
            options: vec![
                OptionSpec::new("rows-per-second", OptionType::Positive, "pacing on the wall clock")
                    .default("10000"),
                OptionSpec::new("number-of-rows", OptionType::Positive, "the input ends after this many rows (default: never)"),
                OptionSpec::new("seed", OptionType::Integer, "repeatable random values (each column has its own stream)"),
                OptionSpec::new(
                    "fields.<column>.kind",
                    OptionType::Choice(&["random", "sequence"]),
                    "a `sequence` counts up from `fields.<column>.start` to `fields.<column>.end` (default the type's maximum), then the input ends; integer and `VARCHAR` columns",
                )
                .default("random"),
                OptionSpec::new("fields.<column>.min", OptionType::Text, "integers uniform in `[min, max]` (default the type's range), `FLOAT`/`DOUBLE` in `[min, max)` (default `[0, 1)`)"),
                OptionSpec::new("fields.<column>.max", OptionType::Text, "see `fields.<column>.min`"),
                OptionSpec::new("fields.<column>.length", OptionType::Positive, "random `VARCHAR`s of this many lower-case letters (Flink's default is 100)")
                    .default("10"),
                OptionSpec::new("fields.<column>.start", OptionType::Integer, "first value of a sequence (required for one)"),
                OptionSpec::new("fields.<column>.end", OptionType::Integer, "last value of a sequence"),
                OptionSpec::new(
                    "fields.<column>.max-past",
                    OptionType::Duration,
                    "a `TIMESTAMP` is the wall clock when the row is made, minus up to this much (`0 s`: in order)",
                )
                .default("0 s"),
            ],
        }
    }

    fn check(&self, table: &TableDef) -> std::result::Result<(), ConnectorError> {
        DatagenOptions::parse(table).map(|_| ()).map_err(ConnectorError::invalid)
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        tracing::info!(table = %table.name, columns = schema.fields().len(), "generating rows");
        Ok(Box::new(DatagenSource::open(table, schema, ctx.batch_size)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Array, AsArray};
    use datafusion_common::arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};

    fn table(options: &[(&str, &str)]) -> TableDef {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let mut opts: BTreeMap<String, String> = [("connector", "datagen"), ("rows-per-second", "1000000")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        opts.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TableDef { name: "g".into(), schema: Some(schema), options: opts, ..TableDef::default() }
    }

    fn drain(source: &mut DatagenSource) -> Vec<RecordBatch> {
        std::iter::from_fn(|| source.next_batch().unwrap()).collect()
    }

    #[test]
    fn bounded_sequence_and_ranges() {
        let t = table(&[
            ("number-of-rows", "2500"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "10"),
            ("fields.v.min", "-3"),
            ("fields.v.max", "3"),
            ("fields.name.length", "4"),
            ("seed", "7"),
        ]);
        let schema = t.physical_schema().unwrap();
        let mut s = DatagenSource::open(&t, schema, 1000).unwrap();
        let batches = drain(&mut s);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2500);
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0).as_primitive::<datafusion_common::arrow::datatypes::Int64Type>().values().to_vec()
            })
            .collect();
        assert_eq!(ids, (10..2510).collect::<Vec<_>>());
        for b in &batches {
            let v = b.column(1).as_primitive::<Int32Type>();
            assert!(v.values().iter().all(|x| (-3..=3).contains(x)));
            assert!(v.values().contains(&-3) && v.values().contains(&3));
            assert!(b.column(2).as_string::<i32>().iter().all(|s| s.is_some_and(|s| s.len() == 4)));
            assert_eq!(b.column(3).null_count(), 0);
        }
    }

    #[test]
    fn a_sequence_end_ends_the_input_even_when_not_read() {
        let t = table(&[("fields.id.kind", "sequence"), ("fields.id.start", "1"), ("fields.id.end", "95")]);
        let only_v = Arc::new(t.physical_schema().unwrap().project(&[1]).unwrap());
        let mut s = DatagenSource::open(&t, only_v, 10).unwrap();
        assert_eq!(drain(&mut s).iter().map(|b| b.num_rows()).sum::<usize>(), 95);
    }

    #[test]
    fn same_seed_same_values_whatever_else_is_read() {
        let t = table(&[("number-of-rows", "300"), ("seed", "42")]);
        let all = t.physical_schema().unwrap();
        let only_v = Arc::new(all.project(&[1]).unwrap());
        let a = drain(&mut DatagenSource::open(&t, all, 64).unwrap());
        let b = drain(&mut DatagenSource::open(&t, only_v, 64).unwrap());
        let values = |bs: &[RecordBatch], i: usize| -> Vec<i32> {
            bs.iter().flat_map(|b| b.column(i).as_primitive::<Int32Type>().values().to_vec()).collect()
        };
        assert_eq!(values(&a, 1), values(&b, 0));
    }

    #[test]
    fn paced_by_rows_per_second() {
        let mut t = table(&[("number-of-rows", "30")]);
        t.options.insert("rows-per-second".into(), "100".into());
        let mut s = DatagenSource::open(&t, t.physical_schema().unwrap(), 8192).unwrap();
        let started = Instant::now();
        let batches = drain(&mut s);
        assert!(batches.iter().all(|b| b.num_rows() == 10), "ten rows a batch at 100 rows/s");
        // the third batch is due 0.2 s after the first
        assert!(started.elapsed() >= Duration::from_millis(190));
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        let err = |o: &[(&str, &str)]| DatagenOptions::parse(&table(o)).unwrap_err();
        assert!(err(&[("fields.nope.min", "1")]).contains("names no column"));
        assert!(err(&[("rows-per-second", "0")]).contains("positive integer"));
        assert!(err(&[("fields.v.kind", "sequence")]).contains("needs 'start'"));
        assert!(err(&[("fields.v.min", "5"), ("fields.v.max", "1")]).contains("min > max"));
        assert!(err(&[("fields.v.max", "9999999999")]).contains("do not fit"));
        assert!(err(&[("fields.name.min", "1")]).contains("does not apply to a VARCHAR"));
        assert!(err(&[("fields.ts.kind", "sequence")]).contains("integer or VARCHAR"));
        assert!(err(&[("bogus", "1")]).contains("unknown option 'bogus'"));
    }
}
