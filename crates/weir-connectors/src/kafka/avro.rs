//! Flink's `avro` format: a record's value (or key) is one Avro datum in the binary encoding,
//! without a schema or a schema registry's id in front, written and read with the schema
//! Flink derives from the table's columns: a record named `record`, a field per column, a
//! nullable column a union of `null` and its type (as Flink's `AvroSchemaConverter` writes it).

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit,
};

use crate::column::{int_range, Value};

/// The Avro schema of `fields`, as Flink derives it.
pub(crate) fn schema_of(fields: &[Arc<Field>]) -> Result<Schema, String> {
    let fields = fields
        .iter()
        .map(|f| {
            let t = avro_type(f.data_type())
                .ok_or_else(|| format!("column '{}': the avro format has no {} type", f.name(), f.data_type()))?;
            let t = if f.is_nullable() { serde_json::json!(["null", t]) } else { t };
            let mut field = serde_json::json!({"name": f.name(), "type": t});
            if f.is_nullable() {
                field["default"] = serde_json::Value::Null;
            }
            Ok(field)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let schema = serde_json::json!({"type": "record", "name": "record", "fields": fields});
    Schema::parse(&schema).map_err(|e| format!("avro schema: {e}"))
}

fn avro_type(t: &DataType) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match t {
        DataType::Boolean => json!("boolean"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 => json!("int"),
        DataType::Int64 => json!("long"),
        DataType::Float32 => json!("float"),
        DataType::Float64 => json!("double"),
        DataType::Utf8 => json!("string"),
        DataType::Binary => json!("bytes"),
        DataType::Date32 => json!({"type": "int", "logicalType": "date"}),
        DataType::Timestamp(TimeUnit::Second | TimeUnit::Millisecond, None) => {
            json!({"type": "long", "logicalType": "timestamp-millis"})
        }
        DataType::Timestamp(_, None) => json!({"type": "long", "logicalType": "timestamp-micros"}),
        _ => return None,
    })
}

/// Decode one datum into the values of `fields` (BYTES columns are not read as values: they
/// are refused when the decoder is made).
pub(crate) fn decode(
    schema: &Schema,
    fields: &[Arc<Field>],
    bytes: &[u8],
    take: &mut dyn FnMut(&[Value]),
) -> Result<(), String> {
    let mut reader = bytes;
    let datum = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|r| r.read_value(&mut reader))
        .map_err(|e| format!("invalid avro: {e}"))?;
    if !reader.is_empty() {
        return Err(format!("invalid avro: {} bytes after the record", reader.len()));
    }
    let Avro::Record(values) = datum else { return Err("invalid avro: not a record".into()) };
    let mut out = Vec::with_capacity(fields.len());
    for (f, (_, v)) in fields.iter().zip(values) {
        let v = value(f, v).ok_or_else(|| format!("column '{}': a value of the wrong type", f.name()))?;
        if v == Value::Null && !f.is_nullable() {
            return Err(format!("column '{}' is NOT NULL but the value is null", f.name()));
        }
        out.push(v);
    }
    take(&out);
    Ok(())
}

fn value(f: &Field, v: Avro) -> Option<Value<'static>> {
    let unit = |micros: bool, n: i64| -> Option<i64> {
        let nanos = if micros { n.checked_mul(1_000)? } else { n.checked_mul(1_000_000)? };
        match f.data_type() {
            DataType::Timestamp(u, _) => Some(nanos.div_euclid(weir_plan::duration::nanos_per_unit(*u))),
            _ => None,
        }
    };
    Some(match v {
        Avro::Null => Value::Null,
        Avro::Union(_, v) => return value(f, *v),
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(i) | Avro::Date(i) => Value::Int(i64::from(i)).checked(f)?,
        Avro::Long(i) => Value::Int(i).checked(f)?,
        Avro::Float(x) => Value::Float(f64::from(x)),
        Avro::Double(x) => Value::Float(x),
        Avro::String(s) => Value::Owned(s),
        Avro::TimestampMillis(ms) => Value::Int(unit(false, ms)?),
        Avro::TimestampMicros(us) => Value::Int(unit(true, us)?),
        _ => return None,
    })
}

impl Value<'_> {
    /// An integer in the range of `f`'s integer type.
    fn checked(self, f: &Field) -> Option<Self> {
        match (&self, f.data_type()) {
            (Value::Int(i), t @ (DataType::Int8 | DataType::Int16 | DataType::Int32)) => {
                let (lo, hi) = int_range(t);
                (lo..=hi).contains(i).then_some(self)
            }
            _ => Some(self),
        }
    }
}

/// Encode each row of `batch` (the columns of `fields`, as declared, which `schema` is made
/// of) as a datum.
pub(crate) fn encode(
    schema: &Schema,
    fields: &[Arc<Field>],
    batch: &RecordBatch,
) -> Result<Vec<Option<Vec<u8>>>, String> {
    let writer =
        apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().map_err(|e| format!("avro: {e}"))?;
    // each column's values, taken in row order
    let mut columns: Vec<std::vec::IntoIter<Avro>> = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| column(c, f).map(Vec::into_iter).map_err(|e| format!("column '{}': {e}", f.name())))
        .collect::<Result<_, _>>()?;
    (0..batch.num_rows())
        .map(|_| {
            let record = fields
                .iter()
                .zip(columns.iter_mut())
                .map(|(f, c)| {
                    let v = match c.next().unwrap_or(Avro::Null) {
                        Avro::Null if !f.is_nullable() => {
                            return Err(format!("column '{}' is NOT NULL but the row has NULL", f.name()))
                        }
                        Avro::Null => Avro::Union(0, Box::new(Avro::Null)),
                        v if f.is_nullable() => Avro::Union(1, Box::new(v)),
                        v => v,
                    };
                    Ok((f.name().clone(), v))
                })
                .collect::<Result<Vec<_>, String>>()?;
            writer.write_value_to_vec(Avro::Record(record)).map(Some).map_err(|e| format!("avro: {e}"))
        })
        .collect()
}

/// A column's values as Avro values.
fn column(c: &ArrayRef, f: &Field) -> Result<Vec<Avro>, String> {
    let e = |e: datafusion_common::arrow::error::ArrowError| e.to_string();
    let n = c.len();
    let each = |v: &dyn Fn(usize) -> Avro| (0..n).map(|i| if c.is_null(i) { Avro::Null } else { v(i) }).collect();
    Ok(match f.data_type() {
        DataType::Boolean => each(&|i| Avro::Boolean(c.as_boolean().value(i))),
        DataType::Int8 => each(&|i| Avro::Int(i32::from(c.as_primitive::<Int8Type>().value(i)))),
        DataType::Int16 => each(&|i| Avro::Int(i32::from(c.as_primitive::<Int16Type>().value(i)))),
        DataType::Int32 => each(&|i| Avro::Int(c.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => each(&|i| Avro::Long(c.as_primitive::<Int64Type>().value(i))),
        DataType::Float32 => each(&|i| Avro::Float(c.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => each(&|i| Avro::Double(c.as_primitive::<Float64Type>().value(i))),
        DataType::Utf8 => each(&|i| Avro::String(c.as_string::<i32>().value(i).to_string())),
        DataType::Binary => each(&|i| Avro::Bytes(c.as_binary::<i32>().value(i).to_vec())),
        DataType::Date32 => each(&|i| Avro::Date(c.as_primitive::<Date32Type>().value(i))),
        DataType::Timestamp(unit, None) => {
            let millis = matches!(unit, TimeUnit::Second | TimeUnit::Millisecond);
            let target = if millis { TimeUnit::Millisecond } else { TimeUnit::Microsecond };
            let t = cast(c, &DataType::Timestamp(target, None)).map_err(e)?;
            let t = cast(&t, &DataType::Int64).map_err(e)?;
            let t = t.as_primitive::<Int64Type>();
            each(&|i| if millis { Avro::TimestampMillis(t.value(i)) } else { Avro::TimestampMicros(t.value(i)) })
        }
        other => return Err(format!("the avro format has no {other} type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion_common::arrow::datatypes::Schema as ArrowSchema;

    #[test]
    fn rows_are_written_as_flink_writes_them_and_read_back() {
        let fields: Vec<Arc<Field>> = vec![
            Arc::new(Field::new("id", DataType::Int64, false)),
            Arc::new(Field::new("name", DataType::Utf8, true)),
            Arc::new(Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true)),
        ];
        let schema = schema_of(&fields).unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(ArrowSchema::new(fields.clone())),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1000), None])),
            ],
        )
        .unwrap();
        let rows = encode(&schema, &fields, &batch).unwrap();
        // id: long 1 (zig-zag 2); name: union branch 1, a string of one byte; ts: branch 1,
        // long 1000 (zig-zag 2000, two varint bytes); the second row's NULLs: branch 0
        assert_eq!(rows[0].as_deref(), Some([0x02, 0x02, 0x02, b'x', 0x02, 0xD0, 0x0F].as_slice()));
        assert_eq!(rows[1].as_deref(), Some([0x04, 0x00, 0x00].as_slice()));
        let mut back = Vec::new();
        for row in rows.iter().flatten() {
            decode(&schema, &fields, row, &mut |v| back.push(format!("{v:?}"))).unwrap();
        }
        assert_eq!(back, vec![r#"[Int(1), Owned("x"), Int(1000)]"#, "[Int(2), Null, Null]"]);
        // malformed: cut short, and one byte too many
        assert!(decode(&schema, &fields, &[0x02, 0x02], &mut |_| ()).unwrap_err().contains("invalid avro"));
        assert!(decode(&schema, &fields, &[0x04, 0x00, 0x00, 0x00], &mut |_| ()).unwrap_err().contains("after"));
        // a type Avro has no counterpart for here
        assert!(schema_of(&[Arc::new(Field::new("m", DataType::Decimal128(10, 2), true))]).is_err());
    }
}
