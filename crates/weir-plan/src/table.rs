//! Tables as the plan sees them: declared columns, the watermark clause and the `WITH (…)`
//! options, with the helpers every layer needs to read them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

use crate::duration::parse_duration;
use crate::error::PlanError;

/// A `WATERMARK FOR col AS col - INTERVAL …` clause: bounded out-of-orderness on `column`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatermarkDef {
    /// The event-time column (a TIMESTAMP column of the table).
    pub column: String,
    /// How far behind the largest event time seen the watermark trails, in nanoseconds.
    pub delay_nanos: i64,
}

/// A column filled from what the connector knows about each row rather than from its payload
/// (Flink's `col TYPE METADATA [FROM 'key'] [VIRTUAL]`): a Kafka record's partition, offset,
/// timestamp or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataColumn {
    /// The column.
    pub column: String,
    /// The connector's name for the value (`FROM 'key'`; the column's name when omitted).
    pub key: String,
    /// `VIRTUAL`: read only; an `INSERT INTO` the table does not give it.
    pub is_virtual: bool,
}

/// A table (source or sink) declared in SQL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableDef {
    /// Table name, normalised to lower case.
    pub name: String,
    /// Declared columns. `None` for a sink declared without columns: its schema is taken from
    /// the query that writes to it.
    #[serde(skip)]
    pub schema: Option<SchemaRef>,
    /// The `WATERMARK FOR` clause, if any.
    pub watermark: Option<WatermarkDef>,
    /// The processing-time column (`name AS PROCTIME()`), if any: part of the schema, but
    /// filled with the wall clock as rows arrive rather than read from the input.
    pub proctime: Option<String>,
    /// The `WITH (…)` options, keys normalised to lower case, in declaration order.
    pub options: BTreeMap<String, String>,
    /// The metadata columns, in declaration order (part of the schema).
    pub metadata: Vec<MetadataColumn>,
    /// `PRIMARY KEY (…) NOT ENFORCED`: the columns a changelog table (`upsert-kafka`) is keyed
    /// by. Empty without one.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (…)`: the columns a file table's rows are written under, as
    /// `col=value/` directories. Empty without one.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

impl TableDef {
    /// The `connector` option.
    pub fn connector(&self) -> Option<&str> {
        self.options.get("connector").map(String::as_str)
    }

    /// An option by (lower-case) key.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    /// The declared schema, or an error for a table declared without columns.
    pub fn require_schema(&self) -> Result<SchemaRef, PlanError> {
        self.schema.clone().ok_or_else(|| {
            PlanError::new(format!("table '{}' was declared without columns and cannot be read", self.name))
                .with_hint("declare the columns: CREATE TABLE name (col TYPE, …) WITH (…)")
        })
    }

    /// Index of the processing-time column in the declared schema.
    pub fn proctime_index(&self) -> Option<usize> {
        let (schema, name) = (self.schema.as_ref()?, self.proctime.as_ref()?);
        schema.index_of(name).ok()
    }

    /// The columns read from the input: the declared ones without the processing-time column.
    pub fn physical_schema(&self) -> Result<SchemaRef, PlanError> {
        let schema = self.require_schema()?;
        Ok(match self.proctime_index() {
            None => schema,
            Some(p) => Arc::new(Schema::new(
                schema.fields().iter().enumerate().filter(|(i, _)| *i != p).map(|(_, f)| f.clone()).collect::<Vec<_>>(),
            )),
        })
    }

    /// The metadata column named `column`, if it is one.
    pub fn metadata_column(&self, column: &str) -> Option<&MetadataColumn> {
        self.metadata.iter().find(|m| m.column == column)
    }

    /// The columns an `INSERT INTO` the table gives: the declared ones without the `VIRTUAL`
    /// metadata columns. `None` for a table declared without columns.
    pub fn writable_schema(&self) -> Option<SchemaRef> {
        let schema = self.schema.as_ref()?;
        if !self.metadata.iter().any(|m| m.is_virtual) {
            return Some(Arc::clone(schema));
        }
        let keep = |f: &&Arc<Field>| !self.metadata_column(f.name()).is_some_and(|m| m.is_virtual);
        Some(Arc::new(Schema::new(schema.fields().iter().filter(keep).cloned().collect::<Vec<_>>())))
    }

    /// How long the table's source (or one of its splits, a Kafka partition) may send nothing
    /// before it stops holding back the watermark (its `'idle_timeout'` option, or Flink's
    /// `'scan.watermark.idle-timeout'`), in nanoseconds.
    pub fn idle_timeout(&self) -> Option<i64> {
        // `scan.watermark.idle-timeout` is Flink's name (the kafka connector's partitions)
        self.option("idle_timeout").or(self.option("scan.watermark.idle-timeout")).and_then(|v| parse_duration(v).ok())
    }

    /// Column names and types as text, for EXPLAIN.
    pub fn columns_text(&self) -> String {
        match &self.schema {
            Some(s) => s
                .fields()
                .iter()
                .map(|f| match (&self.proctime, self.metadata_column(f.name())) {
                    (Some(p), _) if p == f.name() => format!("{p} AS PROCTIME()"),
                    (_, Some(m)) => format!(
                        "{} {} METADATA FROM '{}'{}",
                        f.name(),
                        sql_type_name(f.data_type()),
                        m.key,
                        if m.is_virtual { " VIRTUAL" } else { "" }
                    ),
                    _ => format!("{} {}", f.name(), sql_type_name(f.data_type())),
                })
                .collect::<Vec<_>>()
                .join(", "),
            None => "(from the query)".to_string(),
        }
    }
}

/// Build an Arrow schema from column definitions.
pub fn schema_of(columns: Vec<(String, DataType, bool)>) -> SchemaRef {
    Arc::new(Schema::new(columns.into_iter().map(|(n, t, nullable)| Field::new(n, t, nullable)).collect::<Vec<_>>()))
}

/// The SQL spelling of an Arrow type, for messages and EXPLAIN.
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Timestamp(unit, _) => format!(
            "TIMESTAMP({})",
            match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            }
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) if f.len() == 2 => {
                format!("MAP<{}, {}>", sql_type_name(f[0].data_type()), sql_type_name(f[1].data_type()))
            }
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}
