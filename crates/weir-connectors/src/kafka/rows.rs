//! A Kafka record to a row: its value (and key) decoded into the table's columns, and its
//! metadata (topic, partition, offset, timestamp, key, headers) filled in.

use std::sync::Arc;

use datafusion_common::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, TimeUnit};
use weir_plan::TableDef;
use weir_runtime::{Result, RowKind};

use crate::column::{ColumnBuffer, ColumnType, Value};
use crate::kafka::format::Decoder;

/// What fills a column of the batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fill {
    /// The value's field `i` (in the decoder's order).
    Value(usize),
    /// The key's field `i` (`value.fields-include` = `EXCEPT_KEY`).
    KeyField(usize),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Headers,
}

impl Fill {
    /// The metadata column `name` of `table`, if it is one.
    pub(crate) fn metadata(table: &TableDef, name: &str) -> Option<Self> {
        Some(match table.metadata_column(name)?.key.as_str() {
            "topic" => Fill::Topic,
            "partition" => Fill::Partition,
            "offset" => Fill::Offset,
            "timestamp" => Fill::Timestamp,
            "headers" => Fill::Headers,
            _ => Fill::Key,
        })
    }
}

/// A column being filled.
pub(crate) enum Column {
    Typed(ColumnBuffer),
    Bytes(BinaryBuilder),
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    /// `MAP<VARCHAR, BYTES>` (or `MAP<VARCHAR, VARCHAR>` when `text`).
    Headers {
        map: Box<MapBuilder<StringBuilder, BinaryBuilder>>,
        text: bool,
    },
}

impl Column {
    /// An empty column of `data_type` filled by `fill`, for `n` rows.
    pub(crate) fn new(fill: Fill, data_type: &DataType, n: usize) -> Self {
        match (fill, data_type) {
            (Fill::Value(_) | Fill::KeyField(_) | Fill::Key, DataType::Binary) => {
                Column::Bytes(BinaryBuilder::with_capacity(n, n * 16))
            }
            (Fill::Value(_) | Fill::KeyField(_), t) => match ColumnType::new(t) {
                Ok(t) => Column::Typed(ColumnBuffer::new(t, n)),
                Err(_) => Column::Bytes(BinaryBuilder::new()),
            },
            (Fill::Topic | Fill::Key, _) => Column::Text(StringBuilder::with_capacity(n, n * 8)),
            (Fill::Partition, DataType::Int32) => Column::Int32(Int32Builder::with_capacity(n)),
            (Fill::Headers, t) => Column::Headers {
                map: Box::new(MapBuilder::new(Some(header_names()), StringBuilder::new(), BinaryBuilder::new())),
                text: matches!(t, DataType::Map(entries, _)
                    if matches!(entries.data_type(), DataType::Struct(f) if f.len() == 2 && f[1].data_type() == &DataType::Utf8)),
            },
            _ => Column::Int64(Int64Builder::with_capacity(n)),
        }
    }
}

/// The names of a headers map's parts, as DataFusion's `MAP` names them.
fn header_names() -> MapFieldNames {
    MapFieldNames { entry: "entries".into(), key: "key".into(), value: "value".into() }
}

/// A record as read.
pub(crate) struct Record<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
    /// Its headers (read only when the table has a headers column).
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Decode `r` (its key too, when columns come from it) and append it as a row; nothing is
/// appended when it is malformed.
pub(crate) fn decode_into(
    columns: &mut [Column],
    kinds: &mut Vec<i8>,
    fills: &[Fill],
    decoder: &Decoder,
    key_decoder: Option<&Decoder>,
    r: &Record,
) -> std::result::Result<(), String> {
    let mut with_key = |key_values: &[Value]| -> std::result::Result<(), String> {
        let Some(value) = r.value else {
            // a tombstone: the key's removal (only the key's columns are set)
            append(columns, fills, &[], key_values, r)?;
            kinds.push(RowKind::Delete as i8);
            return Ok(());
        };
        if decoder.is_bytes() {
            append(columns, fills, &[], key_values, r)?;
            kinds.push(RowKind::Insert as i8);
            return Ok(());
        }
        let mut result = Ok(());
        decoder.decode(value, &mut |kind, values| {
            if result.is_ok() {
                result = append(columns, fills, values, key_values, r);
                if result.is_ok() {
                    kinds.push(kind as i8);
                }
            }
        })?;
        result
    };
    match key_decoder {
        None => with_key(&[]),
        Some(k) => {
            let Some(key) = r.key else { return Err("the record has no key".into()) };
            if k.is_bytes() {
                return with_key(&[]);
            }
            let mut result = Ok(());
            k.decode(key, &mut |_, key_values| result = with_key(key_values)).map_err(|e| format!("its key: {e}"))?;
            result
        }
    }
}

/// Whether the headers of `r` can fill a `MAP<VARCHAR, VARCHAR>` column (every value text).
fn headers_as_text(r: &Record) -> std::result::Result<(), String> {
    match r.headers.iter().find(|(_, v)| v.is_some_and(|v| std::str::from_utf8(v).is_err())) {
        Some((name, _)) => Err(format!("header '{name}' is not UTF-8 text (declare the column MAP<VARCHAR, BYTES>)")),
        None => Ok(()),
    }
}

fn append(
    columns: &mut [Column],
    fills: &[Fill],
    values: &[Value],
    key_values: &[Value],
    r: &Record,
) -> std::result::Result<(), String> {
    // the one metadata that can be malformed is checked before anything is appended
    for column in columns.iter() {
        if let Column::Headers { text: true, .. } = column {
            headers_as_text(r)?;
        }
    }
    for (column, fill) in columns.iter_mut().zip(fills) {
        match (column, fill) {
            (Column::Typed(b), Fill::Value(i)) => b.append(values.get(*i).unwrap_or(&Value::Null)),
            (Column::Typed(b), Fill::KeyField(i)) => b.append(key_values.get(*i).unwrap_or(&Value::Null)),
            (Column::Bytes(b), Fill::Value(_)) => b.append_option(r.value),
            (Column::Bytes(b), _) => b.append_option(r.key),
            (Column::Text(b), Fill::Topic) => b.append_value(r.topic),
            (Column::Text(b), _) => b.append_option(r.key.map(|k| String::from_utf8_lossy(k))),
            (Column::Int32(b), _) => b.append_value(r.partition),
            (Column::Int64(b), Fill::Partition) => b.append_value(i64::from(r.partition)),
            (Column::Int64(b), Fill::Offset) => b.append_value(r.offset),
            (Column::Int64(b), _) => b.append_option(r.timestamp),
            (Column::Headers { map, .. }, _) => {
                for (name, value) in r.headers {
                    map.keys().append_value(name);
                    map.values().append_option(*value);
                }
                map.append(true).map_err(|e| e.to_string())?;
            }
            (Column::Typed(b), _) => b.append(&Value::Null),
        }
    }
    Ok(())
}

/// The array of a column's rows, leaving it empty.
pub(crate) fn finish(column: &mut Column, data_type: &DataType) -> Result<ArrayRef> {
    Ok(match column {
        Column::Typed(b) => b.finish()?,
        Column::Bytes(b) => Arc::new(b.finish()),
        Column::Text(b) => Arc::new(b.finish()),
        Column::Int32(b) => Arc::new(b.finish()),
        Column::Headers { map, .. } => {
            let a: ArrayRef = Arc::new(map.finish());
            if a.data_type() == data_type {
                a
            } else {
                cast(&a, data_type)?
            }
        }
        Column::Int64(b) => {
            let a: ArrayRef = Arc::new(b.finish());
            match data_type {
                // the record's timestamp, in milliseconds
                DataType::Timestamp(unit, _) => {
                    let ms = cast(&a, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                    cast(&ms, &DataType::Timestamp(*unit, None))?
                }
                DataType::Int64 => a,
                other => cast(&a, other)?,
            }
        }
    })
}
