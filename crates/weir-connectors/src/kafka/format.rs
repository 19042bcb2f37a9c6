//! Record values (and keys) to rows and back: json, csv and raw.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, AsArray, RecordBatch};
use datafusion_common::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion_common::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion_common::arrow::json::writer::LineDelimitedWriter;

use crate::column::{ColumnType, Value};
use crate::json_source::parse_line;
use crate::kafka::json_row::JsonRow;
use crate::kafka::options::Format;
use weir_runtime::RowKind;

/// Turns one record's bytes into the values of some columns, in the order given.
pub(crate) struct Decoder {
    format: Format,
    names: Vec<String>,
    /// `None`: a BYTES column (raw only), taken as it is.
    types: Vec<Option<ColumnType>>,
    /// The same, for json (which has no BYTES columns).
    json_types: Vec<ColumnType>,
    /// Objects decoded straight into the columns.
    json_row: JsonRow,
    nullable: Vec<bool>,
    delimiter: u8,
    /// The columns and their Avro schema (`avro`).
    avro: Option<(Vec<Arc<Field>>, apache_avro::Schema)>,
}

impl Decoder {
    /// A decoder of `fields` (the columns a record holds, in the table's order).
    pub(crate) fn new(format: Format, fields: &[Arc<Field>], delimiter: u8) -> Result<Self, String> {
        let types = fields
            .iter()
            .map(|f| match f.data_type() {
                DataType::Binary if format == Format::Raw => Ok(None),
                t => ColumnType::new(t).map(Some),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if format == Format::Raw && fields.len() != 1 {
            return Err("format 'raw' reads one column".into());
        }
        let avro = match format {
            Format::Avro => Some((fields.to_vec(), crate::kafka::avro::schema_of(fields)?)),
            _ => None,
        };
        Ok(Self {
            format,
            json_types: types.iter().flatten().cloned().collect(),
            json_row: JsonRow::new(&fields.iter().map(|f| f.name().clone()).collect::<Vec<_>>()),
            names: fields.iter().map(|f| f.name().clone()).collect(),
            types,
            nullable: fields.iter().map(|f| f.is_nullable()).collect(),
            delimiter,
            avro,
        })
    }

    /// Whether the one column is BYTES (raw): use [`Decoder::raw_bytes`].
    pub(crate) fn is_bytes(&self) -> bool {
        self.types.first().is_some_and(Option::is_none)
    }

    /// Decode `bytes`, handing each row's kind and values (in the order of the fields) to
    /// `take`: one insert, or for `debezium-json` the rows of the change.
    pub(crate) fn decode(&self, bytes: &[u8], take: &mut dyn FnMut(RowKind, &[Value])) -> Result<(), String> {
        match self.format {
            Format::Json => {
                self.json_row
                    .decode(bytes, &self.json_types, &self.nullable, &mut |values| take(RowKind::Insert, values))?;
            }
            Format::DebeziumJson => {
                let value: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
                // with the schema included, the change is the payload
                let change = match value.get("payload") {
                    Some(p) if value.get("op").is_none() && p.is_object() => p,
                    _ => &value,
                };
                let row = |side: &str| -> Result<Vec<Value>, String> {
                    match change.get(side) {
                        Some(v) if v.is_object() => parse_line(v, &self.names, &self.json_types, &self.nullable)
                            .map_err(|e| format!("'{side}': {e}")),
                        _ => Err(format!("the change has no '{side}' row")),
                    }
                };
                match change.get("op").and_then(|o| o.as_str()) {
                    Some("c" | "r") => take(RowKind::Insert, &row("after")?),
                    Some("u") => {
                        let before = row("before").map_err(|e| {
                            format!("{e} (an update needs the old row: a PostgreSQL table needs REPLICA IDENTITY FULL)")
                        })?;
                        let after = row("after")?;
                        take(RowKind::UpdateBefore, &before);
                        take(RowKind::UpdateAfter, &after);
                    }
                    Some("d") => take(RowKind::Delete, &row("before")?),
                    Some(other) => return Err(format!("unknown Debezium operation '{other}' (c, r, u or d)")),
                    None => return Err("not a Debezium change event: no 'op'".into()),
                }
            }
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .delimiter(self.delimiter)
                    .flexible(true)
                    .from_reader(bytes);
                let mut record = csv::StringRecord::new();
                match reader.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => return Err("an empty record".into()),
                    Err(e) => return Err(format!("invalid CSV: {e}")),
                }
                if record.len() != self.names.len() {
                    return Err(format!("{} fields, but the table has {} columns", record.len(), self.names.len()));
                }
                let mut values = Vec::with_capacity(record.len());
                for (i, field) in record.iter().enumerate() {
                    let Some(t) = &self.types[i] else { return Err("BYTES columns are for format 'raw'".into()) };
                    let v = t.parse_text(field).ok_or_else(|| {
                        format!(
                            "bad value '{}' for column '{}' ({})",
                            crate::column::clip(field),
                            self.names[i],
                            t.sql_name()
                        )
                    })?;
                    values.push(self.not_null(i, v)?);
                }
                take(RowKind::Insert, &values);
            }
            Format::Raw => {
                let text = std::str::from_utf8(bytes).map_err(|_| "the value is not valid UTF-8".to_string())?;
                take(RowKind::Insert, &[Value::Str(text)]);
            }
            Format::Avro => {
                let Some((fields, schema)) = &self.avro else { return Err("no avro schema".into()) };
                crate::kafka::avro::decode(schema, fields, bytes, &mut |values| take(RowKind::Insert, values))?;
            }
        }
        Ok(())
    }

    fn not_null<'a>(&self, i: usize, v: Value<'a>) -> Result<Value<'a>, String> {
        if v == Value::Null && !self.nullable[i] {
            return Err(format!("column '{}' is NOT NULL but the value is null or missing", self.names[i]));
        }
        Ok(v)
    }
}

/// Turns rows (some columns of a batch) into record values or keys.
pub(crate) struct Encoder {
    format: Format,
    /// The columns encoded, by index in the batch.
    columns: Vec<usize>,
    schema: SchemaRef,
    delimiter: u8,
    /// The columns as declared, and their Avro schema (`avro`).
    avro: Option<(Vec<Arc<Field>>, apache_avro::Schema)>,
}

impl Encoder {
    /// An encoder of columns `columns` of batches of `schema`; `nullable`: whether the table
    /// declares each column of `schema` nullable (the Avro schema follows the declaration).
    pub(crate) fn new(
        format: Format,
        schema: &SchemaRef,
        columns: Vec<usize>,
        nullable: &[bool],
        delimiter: u8,
    ) -> Result<Self, String> {
        let schema = Arc::new(schema.project(&columns).map_err(|e| e.to_string())?);
        if format == Format::Raw
            && !(schema.fields().len() == 1 && matches!(schema.field(0).data_type(), DataType::Utf8 | DataType::Binary))
        {
            return Err("format 'raw' writes one VARCHAR or BYTES column".into());
        }
        let avro = match format {
            Format::Avro => {
                let fields: Vec<Arc<Field>> = columns
                    .iter()
                    .zip(schema.fields())
                    .map(|(i, f)| Arc::new(f.as_ref().clone().with_nullable(nullable.get(*i).copied().unwrap_or(true))))
                    .collect();
                let avro = crate::kafka::avro::schema_of(&fields)?;
                Some((fields, avro))
            }
            _ => None,
        };
        Ok(Self { format, columns, schema, delimiter, avro })
    }

    /// The encoded rows of `batch`, one per row (`None`: a NULL raw value). `kinds`: each
    /// row's change (`debezium-json`; all inserts when `None`).
    pub(crate) fn encode(
        &self,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let batch = batch.project(&self.columns).map_err(|e| e.to_string())?;
        let batch =
            RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec()).map_err(|e| e.to_string())?;
        let n = batch.num_rows();
        match self.format {
            Format::Json | Format::DebeziumJson => {
                let mut out = Vec::new();
                let mut w = LineDelimitedWriter::new(&mut out);
                w.write(&batch).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
                drop(w);
                let rows: Vec<Option<Vec<u8>>> =
                    out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| Some(l.to_vec())).collect();
                if rows.len() != n {
                    return Err(format!("{} rows encoded as {} JSON lines", n, rows.len()));
                }
                if self.format == Format::Json {
                    return Ok(rows);
                }
                // as Flink writes them: an insert or update's new row as a create, a removed
                // row (or an update's old one) as a delete
                Ok(rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let row = String::from_utf8_lossy(row.as_deref().unwrap_or_default()).into_owned();
                        let kind = kinds.and_then(|k| k.get(i)).copied().unwrap_or(RowKind::Insert);
                        Some(match kind {
                            RowKind::Insert | RowKind::UpdateAfter => {
                                format!(r#"{{"before":null,"after":{row},"op":"c"}}"#).into_bytes()
                            }
                            RowKind::UpdateBefore | RowKind::Delete => {
                                format!(r#"{{"before":{row},"after":null,"op":"d"}}"#).into_bytes()
                            }
                        })
                    })
                    .collect())
            }
            Format::Csv => (0..n)
                .map(|i| {
                    let mut out = Vec::new();
                    let mut w =
                        CsvWriterBuilder::new().with_header(false).with_delimiter(self.delimiter).build(&mut out);
                    w.write(&batch.slice(i, 1)).map_err(|e| e.to_string())?;
                    drop(w);
                    while out.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        out.pop();
                    }
                    Ok(Some(out))
                })
                .collect(),
            Format::Avro => match &self.avro {
                Some((fields, schema)) => crate::kafka::avro::encode(schema, fields, &batch),
                None => Err("no avro schema".into()),
            },
            Format::Raw => {
                let column = batch.column(0);
                Ok(match column.data_type() {
                    DataType::Binary => column.as_binary::<i32>().iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
                    _ => column.as_string::<i32>().iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect(),
                })
            }
        }
    }
}
