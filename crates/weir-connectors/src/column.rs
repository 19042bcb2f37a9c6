//! Typed columns built from text (CSV fields, JSON values): parsing a value for a declared
//! SQL type, and the buffers that become Arrow arrays.
//!
//! A row is parsed completely into [`Value`]s before anything is appended, so a malformed row
//! can be skipped without leaving the batch half-written.

use std::sync::Arc;

use datafusion_common::arrow::array::NullBufferBuilder;
use datafusion_common::arrow::array::{ArrayRef, BooleanBuilder, Float64Array, Int64Array, StringBuilder};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::compute::kernels::cast_utils::{string_to_timestamp_nanos, Parser};
use datafusion_common::arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit,
};
use weir_plan::duration::nanos_per_unit;
use weir_plan::sql_type_name;

/// A parsed field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// SQL NULL (empty CSV field, JSON null or missing key).
    Null,
    /// Integer-like: integers, dates (days), timestamps (in the column's unit).
    Int(i64),
    /// Floating point.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Text borrowed from the input.
    Str(&'a str),
    /// Text that had to be produced (e.g. a JSON number read into a VARCHAR column).
    Owned(String),
}

/// What a column holds and how text is converted to it.
#[derive(Debug, Clone)]
pub struct ColumnType {
    data_type: DataType,
}

impl ColumnType {
    /// A column of the given Arrow type, if the file connectors can read it.
    pub fn new(data_type: &DataType) -> Result<Self, String> {
        match data_type {
            DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::Date32
            | DataType::Timestamp(_, None) => Ok(Self { data_type: data_type.clone() }),
            other => Err(format!("columns of type {} cannot be read from files yet", sql_type_name(other))),
        }
    }

    /// The Arrow type.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// The SQL name of the type, for messages.
    pub fn sql_name(&self) -> String {
        sql_type_name(&self.data_type)
    }

    /// Parse text. Empty text is NULL for every type (as DataFusion reads CSV).
    pub fn parse_text<'a>(&self, raw: &'a str) -> Option<Value<'a>> {
        if let DataType::Utf8 = self.data_type {
            return Some(if raw.is_empty() { Value::Null } else { Value::Str(raw) });
        }
        let s = raw.trim();
        if s.is_empty() {
            return Some(Value::Null);
        }
        Some(match &self.data_type {
            DataType::Boolean => Value::Bool(match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" => true,
                "false" | "f" | "0" | "no" => false,
                _ => return None,
            }),
            DataType::Int8 => Value::Int(Int8Type::parse(s)? as i64),
            DataType::Int16 => Value::Int(Int16Type::parse(s)? as i64),
            DataType::Int32 => Value::Int(Int32Type::parse(s)? as i64),
            DataType::Int64 => Value::Int(Int64Type::parse(s)?),
            DataType::Float32 => Value::Float(Float32Type::parse(s)? as f64),
            DataType::Float64 => Value::Float(Float64Type::parse(s)?),
            DataType::Date32 => Value::Int(Date32Type::parse(s)? as i64),
            DataType::Timestamp(unit, _) => Value::Int(parse_timestamp(s, *unit)?),
            _ => return None,
        })
    }

    /// Convert a JSON value.
    pub fn parse_json<'a>(&self, v: &'a serde_json::Value) -> Option<Value<'a>> {
        use serde_json::Value as J;
        match v {
            J::Null => Some(Value::Null),
            J::String(s) => self.parse_text(s),
            J::Bool(b) => self.parse_json_bool(*b),
            J::Number(n) => self.parse_json_number(n),
            J::Array(_) | J::Object(_) => match self.data_type {
                DataType::Utf8 => Some(Value::Owned(v.to_string())),
                _ => None,
            },
        }
    }

    /// Convert a JSON boolean.
    pub fn parse_json_bool(&self, b: bool) -> Option<Value<'static>> {
        match self.data_type {
            DataType::Boolean => Some(Value::Bool(b)),
            DataType::Utf8 => Some(Value::Owned(b.to_string())),
            _ => None,
        }
    }

    /// Convert a JSON number.
    pub fn parse_json_number(&self, n: &serde_json::Number) -> Option<Value<'static>> {
        match &self.data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let i = n.as_i64()?;
                let (lo, hi) = int_range(&self.data_type);
                (lo..=hi).contains(&i).then_some(Value::Int(i))
            }
            DataType::Float32 | DataType::Float64 => Some(Value::Float(n.as_f64()?)),
            // a number in a TIMESTAMP column is epoch milliseconds
            DataType::Timestamp(unit, _) => Some(Value::Int(millis_to_unit(n.as_i64()?, *unit)?)),
            DataType::Utf8 => Some(Value::Owned(n.to_string())),
            DataType::Boolean => match n.as_i64()? {
                0 => Some(Value::Bool(false)),
                1 => Some(Value::Bool(true)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The values an integer column can hold.
pub(crate) fn int_range(t: &DataType) -> (i64, i64) {
    match t {
        DataType::Int8 => (i8::MIN as i64, i8::MAX as i64),
        DataType::Int16 => (i16::MIN as i64, i16::MAX as i64),
        DataType::Int32 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Epoch milliseconds in `unit`; `None` past what a nanosecond timestamp holds (the years
/// 1677 to 2262), the range event time is computed in, so such a value is a malformed field
/// (under the table's bad-row policy) rather than an error later in the query.
pub(crate) fn millis_to_unit(ms: i64, unit: TimeUnit) -> Option<i64> {
    ms.checked_mul(1_000_000)?;
    match unit {
        TimeUnit::Second => Some(ms.div_euclid(1000)),
        TimeUnit::Millisecond => Some(ms),
        TimeUnit::Microsecond => ms.checked_mul(1_000),
        TimeUnit::Nanosecond => ms.checked_mul(1_000_000),
    }
}

/// Timestamps: `2024-01-01 00:00:01.250`, ISO-8601 (`2024-01-01T00:00:01.250Z`, with an
/// offset), a date alone, or an integer number of epoch milliseconds. Times without a zone are
/// UTC.
pub fn parse_timestamp(s: &str, unit: TimeUnit) -> Option<i64> {
    if let Some(nanos) = plain_timestamp_nanos(s.as_bytes()) {
        return Some(nanos.div_euclid(nanos_per_unit(unit)));
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return millis_to_unit(s.parse::<i64>().ok()?, unit);
    }
    let nanos = string_to_timestamp_nanos(s).ok()?;
    Some(nanos.div_euclid(nanos_per_unit(unit)))
}

/// The most common form, `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z]` in the years 1700 to 2199, read
/// without the general parser (a record's timestamp is parsed for every row); `None` for
/// anything else, which [`string_to_timestamp_nanos`] reads as before.
fn plain_timestamp_nanos(b: &[u8]) -> Option<i64> {
    let b = b.strip_suffix(b"Z").unwrap_or(b);
    if b.len() < 19 || !matches!(b[10], b'T' | b' ') || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let mut n = 0i64;
        for c in &b[from..to] {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + i64::from(d);
        }
        Some(n)
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1700..2200).contains(&year) || day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut fraction = 0;
    if b.len() > 19 {
        let digits = b.len() - 20;
        if b[19] != b'.' || digits == 0 || digits > 9 {
            return None;
        }
        fraction = num(20, b.len())? * 10i64.pow(9 - digits as u32);
    }
    // days since 1970-01-01 (the proleptic Gregorian calendar, counted from March)
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y.div_euclid(400), y.rem_euclid(400));
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60 * 1_000_000_000 + second * 1_000_000_000 + fraction)
}

/// A value for messages: cut to 100 characters.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 100;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}… ({} bytes)", &text[..i], text.len()),
        None => text.to_string(),
    }
}

enum Buffer {
    Bool(BooleanBuilder),
    Int(Vec<i64>, NullBufferBuilder),
    Float(Vec<f64>, NullBufferBuilder),
    Str(StringBuilder),
}

/// Accumulates one column of a batch.
pub struct ColumnBuffer {
    column_type: ColumnType,
    buffer: Buffer,
}

impl ColumnBuffer {
    /// An empty buffer for `column_type`, sized for `capacity` rows.
    pub fn new(column_type: ColumnType, capacity: usize) -> Self {
        let buffer = match column_type.data_type {
            DataType::Boolean => Buffer::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Float32 | DataType::Float64 => {
                Buffer::Float(Vec::with_capacity(capacity), NullBufferBuilder::new(capacity))
            }
            DataType::Utf8 => Buffer::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
            _ => Buffer::Int(Vec::with_capacity(capacity), NullBufferBuilder::new(capacity)),
        };
        Self { column_type, buffer }
    }

    /// Append a value that [`ColumnType`] produced for this column.
    pub fn append(&mut self, v: &Value) {
        match (&mut self.buffer, v) {
            (Buffer::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (Buffer::Bool(b), _) => b.append_null(),
            (Buffer::Int(vals, nulls), Value::Int(x)) => {
                vals.push(*x);
                nulls.append_non_null();
            }
            (Buffer::Int(vals, nulls), _) => {
                vals.push(0);
                nulls.append_null();
            }
            (Buffer::Float(vals, nulls), Value::Float(x)) => {
                vals.push(*x);
                nulls.append_non_null();
            }
            (Buffer::Float(vals, nulls), _) => {
                vals.push(0.0);
                nulls.append_null();
            }
            (Buffer::Str(b), Value::Str(s)) => b.append_value(s),
            (Buffer::Str(b), Value::Owned(s)) => b.append_value(s),
            (Buffer::Str(b), _) => b.append_null(),
        }
    }

    /// Take the buffered values as an array of the column's type, leaving the buffer empty.
    pub fn finish(&mut self) -> Result<ArrayRef, datafusion_common::arrow::error::ArrowError> {
        let target = self.column_type.data_type.clone();
        Ok(match &mut self.buffer {
            Buffer::Bool(b) => Arc::new(b.finish()),
            Buffer::Str(b) => Arc::new(b.finish()),
            Buffer::Float(vals, nulls) => {
                let a: ArrayRef = Arc::new(Float64Array::new(std::mem::take(vals).into(), nulls.finish()));
                if target == DataType::Float64 {
                    a
                } else {
                    cast(&a, &target)?
                }
            }
            Buffer::Int(vals, nulls) => {
                let a: ArrayRef = Arc::new(Int64Array::new(std::mem::take(vals).into(), nulls.finish()));
                match &target {
                    DataType::Int64 => a,
                    DataType::Date32 => cast(&cast(&a, &DataType::Int32)?, &target)?,
                    _ => cast(&a, &target)?,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        let ms = TimeUnit::Millisecond;
        let want = Some(1_704_067_201_250);
        assert_eq!(parse_timestamp("2024-01-01 00:00:01.250", ms), want);
        assert_eq!(parse_timestamp("2024-01-01T00:00:01.250Z", ms), want);
        assert_eq!(parse_timestamp("2024-01-01T00:00:01.250", ms), want);
        assert_eq!(parse_timestamp("2024-01-01T01:00:01.250+01:00", ms), want);
        assert_eq!(parse_timestamp("1704067201250", ms), want);
        assert_eq!(parse_timestamp("1704067201250", TimeUnit::Second), Some(1_704_067_201));
        assert_eq!(parse_timestamp("yesterday", ms), None);
        // past the years a nanosecond timestamp holds: malformed, not an overflow later
        assert_eq!(parse_timestamp("253402300799000", ms), None);
        assert_eq!(parse_timestamp("9999-12-31 23:59:59", ms), None);
        assert_eq!(parse_timestamp("-9300000000000", ms), None);
    }

    #[test]
    fn the_quick_form_agrees_with_the_general_parser() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut quick = 0;
        for _ in 0..20_000 {
            let (y, mo, d) = (rng.i64(1690..2210), rng.u32(0..14), rng.u32(0..33));
            let (h, mi, sec) = (rng.u32(0..25), rng.u32(0..61), rng.u32(0..61));
            let sep = if rng.bool() { 'T' } else { ' ' };
            let fraction = match rng.u32(0..4) {
                0 => String::new(),
                1 => ".".to_string(),
                _ => format!(".{}", &rng.u64(..).to_string()[..rng.usize(1..11)]),
            };
            let zone = if rng.bool() { "Z" } else { "" };
            let s = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}{fraction}{zone}");
            let general = string_to_timestamp_nanos(&s).ok();
            match plain_timestamp_nanos(s.as_bytes()) {
                Some(nanos) => {
                    assert_eq!(Some(nanos), general, "{s}");
                    quick += 1;
                }
                None => assert!(
                    general.is_none() || !(1700..2200).contains(&y) || sec == 60 || fraction.len() > 10,
                    "{s} left out"
                ),
            }
        }
        assert!(quick > 5_000, "only {quick} took the quick path");
    }

    #[test]
    fn parse_failures_and_nulls() {
        let t = ColumnType::new(&DataType::Int64).unwrap();
        assert_eq!(t.parse_text("abc"), None);
        assert_eq!(t.parse_text(""), Some(Value::Null));
        assert_eq!(t.parse_text(" 42 "), Some(Value::Int(42)));
        let small = ColumnType::new(&DataType::Int8).unwrap();
        assert_eq!(small.parse_text("300"), None);
    }
}
