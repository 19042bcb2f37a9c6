//! A `kafka` table's options, read and checked together.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use weir_plan::duration::parse_duration;
use weir_plan::TableDef;

use crate::options::{bad_row_policy, csv_delimiter, BadRowPolicy};

/// How a record's value (or key) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object, keys the column names.
    Json,
    /// One CSV line, fields in column order.
    Csv,
    /// The bytes as they are: the one column.
    Raw,
    /// Debezium's change events (`{"before": …, "after": …, "op": "c|r|u|d"}`): a changelog.
    DebeziumJson,
    /// One Avro datum, binary encoded, with the schema Flink derives from the columns.
    Avro,
}

/// Where a partition starts being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// Its first offset.
    Earliest,
    /// The offset after its last record when the query starts.
    Latest,
    /// The group's committed offset (else `auto.offset.reset`, else the earliest).
    Group,
    /// The first record at or after this time (epoch milliseconds).
    Timestamp(i64),
    /// These offsets by partition (others: the earliest).
    Specific(BTreeMap<i32, i64>),
}

/// Where a partition stops being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAt {
    /// Never: the query runs until stopped.
    Never,
    /// The offset after its last record when the query starts.
    Latest,
    /// Before the first record at or after this time (epoch milliseconds).
    Timestamp(i64),
    /// These offsets (exclusive) by partition; partitions not listed are not read.
    Specific(BTreeMap<i32, i64>),
}

/// `sink.delivery-guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written as produced; nothing waits for the brokers.
    None,
    /// Every checkpoint waits for the brokers to have every row; a restart may repeat rows.
    AtLeastOnce,
    /// Kafka transactions tied to checkpoints.
    ExactlyOnce,
}

/// `sink.partitioner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// librdkafka's: by the key's hash, or spread when there is no key.
    Default,
    /// Every row to partition 0.
    Fixed,
    /// Partitions in turn.
    RoundRobin,
}

/// A `kafka` table's options.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// The topic.
    pub topic: String,
    /// `properties.bootstrap.servers`.
    pub servers: String,
    /// `properties.group.id`.
    pub group: Option<String>,
    /// Every `properties.*` option, without the prefix, for the client.
    pub properties: BTreeMap<String, String>,
    /// The value's format.
    pub format: Format,
    /// The key's format and columns.
    pub key: Option<(Format, Vec<String>)>,
    /// `value.fields-include` = `EXCEPT_KEY`: the value leaves out the key's columns (read
    /// from the key instead); `ALL` (the default): the value has every column.
    pub except_key: bool,
    /// Malformed records.
    pub bad_rows: BadRowPolicy,
    /// CSV field delimiter.
    pub delimiter: u8,
    /// Where reading starts.
    pub start: StartAt,
    /// Where reading stops.
    pub stop: StopAt,
    /// How often to look for new partitions.
    pub discovery: Option<Duration>,
    /// The sink's guarantee.
    pub delivery: Delivery,
    /// `sink.transactional-id-prefix`.
    pub transactional_id_prefix: Option<String>,
    /// `sink.partitioner`.
    pub partitioner: Partitioner,
    /// The `upsert-kafka` connector: a changelog keyed by the table's primary key.
    pub upsert: bool,
}

/// An error about an option (`None`: about several) and its message.
type OptionError = (Option<String>, String);

fn format_of(v: &str) -> Format {
    match v.to_ascii_lowercase().as_str() {
        "csv" => Format::Csv,
        "raw" => Format::Raw,
        "debezium-json" => Format::DebeziumJson,
        "avro" => Format::Avro,
        _ => Format::Json,
    }
}

/// `partition:0,offset:42;partition:1,offset:300`.
fn specific_offsets(table: &str, key: &str, v: &str) -> Result<BTreeMap<i32, i64>, OptionError> {
    let bad = || {
        (
            Some(key.to_string()),
            format!(
                "table '{table}': option '{key}': expected 'partition:0,offset:42;partition:1,offset:300', got '{v}'"
            ),
        )
    };
    let mut offsets = BTreeMap::new();
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for field in part.split(',') {
            let (name, value) = field.split_once(':').ok_or_else(bad)?;
            match name.trim() {
                "partition" => partition = Some(value.trim().parse::<i32>().map_err(|_| bad())?),
                "offset" => offset = Some(value.trim().parse::<i64>().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) if p >= 0 && o >= 0 => offsets.insert(p, o),
            _ => return Err(bad()),
        };
    }
    if offsets.is_empty() {
        return Err(bad());
    }
    Ok(offsets)
}

impl KafkaOptions {
    /// Read and check `table`'s options (whether it is read or written).
    pub fn parse(table: &TableDef) -> Result<Self, OptionError> {
        let name = &table.name;
        let need = |key: &str| -> Result<String, OptionError> {
            table
                .option(key)
                .map(str::to_string)
                .ok_or_else(|| (None, format!("table '{name}': connector 'kafka' needs a '{key}' option")))
        };
        let topic = need("topic")?;
        if topic.contains(';') {
            return Err((
                Some("topic".into()),
                format!("table '{name}': one topic per table, for now (got '{topic}')"),
            ));
        }
        // Kafka's rule for topic names
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) || topic == "." || topic == ".." {
            return Err((
                Some("topic".into()),
                format!(
                    "table '{name}': '{topic}' is not a Kafka topic name (up to 249 of a-z, A-Z, 0-9, '.', '_' and '-')"
                ),
            ));
        }
        if table.options.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
            return Err((None, format!("table '{name}': an option holds a NUL character")));
        }
        let servers = need("properties.bootstrap.servers")?;
        let properties: BTreeMap<String, String> = table
            .options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("properties.").map(|k| (k.to_string(), v.clone())))
            .collect();
        let group = properties.get("group.id").cloned();
        let format = match (table.option("format"), table.option("value.format")) {
            (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
                return Err((
                    Some("value.format".into()),
                    format!("table '{name}': 'format' = '{a}' and 'value.format' = '{b}' contradict each other"),
                ))
            }
            (Some(f), _) | (None, Some(f)) => format_of(f),
            (None, None) => Format::Json,
        };
        let key = match (table.option("key.format"), table.option("key.fields")) {
            (None, None) => None,
            (Some(f), Some(fields)) => {
                let mut fields: Vec<String> =
                    fields.split(';').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
                if let Some(schema) = &table.schema {
                    // a column by its name, or else ignoring case
                    for f in &mut fields {
                        let column = schema
                            .fields()
                            .iter()
                            .find(|c| c.name() == f)
                            .or_else(|| schema.fields().iter().find(|c| c.name().eq_ignore_ascii_case(f)));
                        match column {
                            Some(c) => *f = c.name().clone(),
                            None => {
                                return Err((
                                    Some("key.fields".into()),
                                    format!("table '{name}': 'key.fields' names '{f}', which is not a column"),
                                ))
                            }
                        }
                    }
                }
                if format_of(f) == Format::DebeziumJson {
                    return Err((
                        Some("key.format".into()),
                        format!(
                            "table '{name}': 'key.format' can be json, csv, raw or avro (debezium-json is for the value)"
                        ),
                    ));
                }
                Some((format_of(f), fields))
            }
            (Some(_), None) => {
                return Err((
                    Some("key.format".into()),
                    format!("table '{name}': 'key.format' needs 'key.fields' (the columns in the key, 'a;b')"),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    Some("key.fields".into()),
                    format!("table '{name}': 'key.fields' needs 'key.format' (json, csv or raw)"),
                ))
            }
        };
        let except_key = table.option("value.fields-include").is_some_and(|v| v.eq_ignore_ascii_case("except_key"));
        if except_key && key.is_none() {
            return Err((
                Some("value.fields-include".into()),
                format!("table '{name}': 'EXCEPT_KEY' needs a key: add 'key.format' and 'key.fields'"),
            ));
        }
        let bad_rows = bad_row_policy(table, true).map_err(|e| (None, e))?;
        let delimiter = csv_delimiter(table).map_err(|e| (Some("csv.field-delimiter".into()), e))?;
        let millis = |key: &str| -> Result<i64, OptionError> {
            need(key)?
                .trim()
                .parse::<i64>()
                .map_err(|_| (Some(key.to_string()), format!("table '{name}': '{key}' must be epoch milliseconds")))
        };
        let start = match table.option("scan.startup.mode").map(str::to_ascii_lowercase).as_deref() {
            Some("earliest-offset") => StartAt::Earliest,
            Some("latest-offset") => StartAt::Latest,
            Some("group-offsets") if group.is_none() => {
                return Err((
                    Some("scan.startup.mode".into()),
                    format!("table '{name}': 'group-offsets' needs the group: add 'properties.group.id' = '…'"),
                ))
            }
            Some("group-offsets") => StartAt::Group,
            Some("timestamp") => StartAt::Timestamp(millis("scan.startup.timestamp-millis")?),
            Some("specific-offsets") => {
                let key = "scan.startup.specific-offsets";
                StartAt::Specific(specific_offsets(name, key, &need(key)?)?)
            }
            _ if group.is_some() => StartAt::Group,
            _ => StartAt::Earliest,
        };
        let stop = match table.option("scan.bounded.mode").map(str::to_ascii_lowercase).as_deref() {
            Some("latest-offset") => StopAt::Latest,
            Some("timestamp") => StopAt::Timestamp(millis("scan.bounded.timestamp-millis")?),
            Some("specific-offsets") => {
                let key = "scan.bounded.specific-offsets";
                StopAt::Specific(specific_offsets(name, key, &need(key)?)?)
            }
            _ => StopAt::Never,
        };
        let discovery = match table.option("scan.topic-partition-discovery.interval") {
            None => Some(Duration::from_secs(10)),
            Some(v) => match parse_duration(v) {
                Ok(0) => None,
                Ok(n) => Some(Duration::from_nanos(n.max(0) as u64)),
                Err(e) => return Err((Some("scan.topic-partition-discovery.interval".into()), e)),
            },
        };
        let delivery = match table.option("sink.delivery-guarantee").map(str::to_ascii_lowercase).as_deref() {
            Some("none") => Delivery::None,
            Some("exactly-once") => Delivery::ExactlyOnce,
            _ => Delivery::AtLeastOnce,
        };
        let transactional_id_prefix = table.option("sink.transactional-id-prefix").map(str::to_string);
        if delivery == Delivery::ExactlyOnce && transactional_id_prefix.as_deref().is_none_or(str::is_empty) {
            return Err((
                Some("sink.delivery-guarantee".into()),
                format!("table '{name}': 'exactly-once' needs 'sink.transactional-id-prefix' = '…', unique to the query writing the topic (as in Flink)"),
            ));
        }
        let partitioner = match table.option("sink.partitioner").map(str::to_ascii_lowercase).as_deref() {
            Some("fixed") => Partitioner::Fixed,
            Some("round-robin") => Partitioner::RoundRobin,
            _ => Partitioner::Default,
        };
        if format == Format::Raw {
            let in_key = |c: &str| except_key && key.as_ref().is_some_and(|(_, k)| k.iter().any(|f| f == c));
            let columns = table.schema.as_ref().map(|s| {
                s.fields().iter().filter(|f| table.metadata_column(f.name()).is_none() && !in_key(f.name())).count()
            });
            if columns.is_some_and(|n| n != 1) {
                return Err((
                    Some("format".into()),
                    format!("table '{name}': format 'raw' reads and writes one column (besides metadata columns), a VARCHAR or BYTES"),
                ));
            }
        }
        Ok(Self {
            topic,
            servers,
            group,
            properties,
            format,
            key,
            except_key,
            bad_rows,
            delimiter,
            start,
            stop,
            discovery,
            delivery,
            transactional_id_prefix,
            partitioner,
            upsert: false,
        })
    }

    /// Read and check an `upsert-kafka` table's options: its key is its primary key, and it
    /// is read from the earliest offset.
    pub fn parse_upsert(table: &TableDef) -> Result<Self, OptionError> {
        if table.primary_key.is_empty() {
            return Err((
                None,
                format!(
                    "table '{}': connector 'upsert-kafka' needs a primary key: add PRIMARY KEY (col, …) NOT ENFORCED",
                    table.name
                ),
            ));
        }
        let mut keyed = table.clone();
        keyed.options.insert("key.fields".into(), table.primary_key.join(";"));
        keyed.options.insert("scan.startup.mode".into(), "earliest-offset".into());
        let mut options = Self::parse(&keyed)?;
        options.upsert = true;
        Ok(options)
    }

    /// The client configuration: every `properties.*` option, and `extra` over them.
    pub fn client(&self, extra: &[(&str, &str)]) -> ClientConfig {
        self.client_with(&[], extra)
    }

    /// [`KafkaOptions::client`] with `defaults` under the table's properties.
    pub fn client_with(&self, defaults: &[(&str, &str)], extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config
    }
}
