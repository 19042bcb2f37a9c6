//! The `kafka` connector: a topic read as a table and written by `INSERT INTO`, with Flink
//! SQL's option names, so that a Flink user's DDL runs unchanged.
//!
//! - `source`: partitions assigned by weir (no consumer-group rebalancing), each a split with
//!   its own watermark; offsets are the source's checkpoint position; a bounded mode ends at
//!   the offsets of a moment; new partitions are picked up.
//! - `sink`: `none`, `at-least-once` (flushed at each checkpoint) and `exactly-once`: rows are
//!   staged on disk until their checkpoint is durable, then written in one Kafka transaction
//!   that also records the checkpoint, so that a restart finishes or skips it and nothing is
//!   written twice.
//! - [`format`]: json, csv and raw values, with the table's policy for malformed records;
//!   `json_flat` reads the common flat JSON object quickly, `json_row` the rest.
//! - `fetch`: records taken from librdkafka many at a time (the one module calling its C
//!   API); `rows`: a record's value, key and metadata (headers too) appended as a row.

mod admin;
mod avro;
mod fetch;
mod format;
mod json_flat;
mod json_row;
mod options;
mod rows;
mod sink;
mod source;

use std::sync::Arc;

use datafusion_common::arrow::datatypes::SchemaRef;
use weir_plan::{ConnectorError, ConnectorSpec, MetadataSpec, OptionSpec, OptionType, TableDef};
use weir_runtime::{Connector, ConnectorContext, Result, RuntimeError, Sink, Source};

pub use admin::{recreate_topic, topic_records};
pub use options::{Delivery, Format, KafkaOptions, Partitioner, StartAt, StopAt};
pub use sink::KafkaSink;
pub use source::KafkaSource;

/// The `kafka` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaConnector;

const FORMATS: &[&str] = &["json", "csv", "raw", "debezium-json", "avro"];

impl Connector for KafkaConnector {
    fn spec(&self) -> ConnectorSpec {
        use OptionType::*;
        let options = vec![
            OptionSpec::new("topic", Text, "the topic read or written").required(),
            OptionSpec::new("properties.bootstrap.servers", Text, "the brokers, `host:port[,host:port…]`").required(),
            OptionSpec::new("properties.group.id", Text, "the consumer group: where `group-offsets` start, and where the offsets read are committed every few seconds (for monitoring; a query resumed from a checkpoint starts at its offsets)"),
            OptionSpec::new("properties.<key*>", Text, "any other client property, passed on to librdkafka (`properties.isolation.level` = `read_committed`, `properties.compression.type`, …)"),
            OptionSpec::new("format", Choice(FORMATS), "the record value: `json` (an object per record), `csv` (a line per record, fields in column order), `raw` (the value is the one column, VARCHAR or BYTES), `debezium-json` (Debezium's change events: the table is a changelog, and an updating query can be written) or `avro` (one binary Avro datum per record, with the schema Flink derives from the columns; no schema registry)").default("json"),
            OptionSpec::new("value.format", Choice(FORMATS), "the same as `format`"),
            OptionSpec::new("scan.startup.mode", Choice(&["earliest-offset", "latest-offset", "group-offsets", "timestamp", "specific-offsets"]), "where reading starts when the query does not resume from a checkpoint (default: `group-offsets` with a `properties.group.id`, which starts a partition without a committed offset as `properties.auto.offset.reset` says, else at the earliest offset; `earliest-offset` without a group)"),
            OptionSpec::new("scan.startup.specific-offsets", Text, "with `specific-offsets`: `partition:0,offset:42;partition:1,offset:300` (other partitions start at the earliest offset)"),
            OptionSpec::new("scan.startup.timestamp-millis", Integer, "with `timestamp`: the first record of each partition at or after this time (epoch milliseconds)"),
            OptionSpec::new("scan.bounded.mode", Choice(&["unbounded", "latest-offset", "timestamp", "specific-offsets"]), "where reading ends: `latest-offset` ends at the offsets of when the query starts, so the query ends").default("unbounded"),
            OptionSpec::new("scan.bounded.specific-offsets", Text, "with `specific-offsets`: `partition:0,offset:42;…`, each partition's end (exclusive; unlisted partitions are not read)"),
            OptionSpec::new("scan.bounded.timestamp-millis", Integer, "with `timestamp`: end before the first record at or after this time"),
            OptionSpec::new("scan.topic-partition-discovery.interval", Duration, "how often to look for partitions added to the topic (read from their earliest offset); `0 s` never").default("10 s"),
            OptionSpec::new("scan.watermark.idle-timeout", Duration, "a partition without records this long stops holding back the watermark (the same as `idle_timeout`)"),
            OptionSpec::new("sink.delivery-guarantee", Choice(&["none", "at-least-once", "exactly-once"]), "`exactly-once` writes each checkpoint's rows in one Kafka transaction, committed when the checkpoint is durable (readers use `isolation.level` = `read_committed`); it needs checkpoints and `sink.transactional-id-prefix`").default("at-least-once"),
            OptionSpec::new("sink.transactional-id-prefix", Text, "exactly-once: the prefix of the producer's transactional id; unique to the query writing the topic"),
            OptionSpec::new("sink.partitioner", Choice(&["default", "fixed", "round-robin"]), "which partition a row goes to: `default` (by key, or spread), `fixed` (all to partition 0), `round-robin`").default("default"),
            OptionSpec::new("key.format", Choice(FORMATS), "the record key: the `key.fields` columns in this format (with `value.fields-include` = `EXCEPT_KEY`, read from the key)"),
            OptionSpec::new("key.fields", Text, "the columns in the key, `a;b`"),
            OptionSpec::new("value.fields-include", Choice(&["ALL", "EXCEPT_KEY"]), "`EXCEPT_KEY`: the value leaves out the key's columns, which are read from and written to the key only").default("ALL"),
            OptionSpec::new("dead_letter", Path, "malformed records are appended to this file (and `bad_data` defaults to `dead_letter`), one JSON object per line with the topic, partition, offset, error and record"),
            OptionSpec::new("bad_data", Choice(&["fail", "skip", "drop", "dead_letter", "dead-letter"]), "a malformed record: `fail` stops with its topic, partition and offset; `skip` skips and counts it; `dead_letter` appends it to the `dead_letter` file").default("fail"),
            OptionSpec::new("json.ignore-parse-errors", Bool, "`true`: skip and count malformed JSON records (Flink's option)").default("false"),
            OptionSpec::new("csv.ignore-parse-errors", Bool, "`true`: skip and count malformed CSV records (Flink's option)").default("false"),
            OptionSpec::new("csv.field-delimiter", Char, "the CSV field delimiter").default(","),
        ];
        ConnectorSpec {
            name: "kafka",
            doc: "reads and writes an Apache Kafka topic (json, csv or raw records), exactly once with checkpoints",
            source: true,
            sink: true,
            loose_keys: false,
            metadata: vec![
                MetadataSpec { key: "topic", types: &["VARCHAR"], writable: false, doc: "the record's topic" },
                MetadataSpec {
                    key: "partition",
                    types: &["INT", "BIGINT"],
                    writable: false,
                    doc: "the record's partition",
                },
                MetadataSpec {
                    key: "offset",
                    types: &["BIGINT"],
                    writable: false,
                    doc: "the record's offset in its partition",
                },
                MetadataSpec {
                    key: "timestamp",
                    types: &["TIMESTAMP(3)", "TIMESTAMP(6)", "TIMESTAMP(9)", "TIMESTAMP(0)"],
                    writable: true,
                    doc: "the record's timestamp (written: the record's timestamp)",
                },
                MetadataSpec {
                    key: "key",
                    types: &["BYTES", "VARCHAR"],
                    writable: false,
                    doc: "the record's key, as it is",
                },
                MetadataSpec {
                    key: "headers",
                    types: &["MAP<VARCHAR, BYTES>", "MAP<VARCHAR, VARCHAR>"],
                    writable: true,
                    doc: "the record's headers, by name (VARCHAR values: a header that is not UTF-8 is a bad record; written: the record's headers)",
                },
            ],
            options,
        }
    }

    fn changelog_source(&self, table: &TableDef) -> bool {
        KafkaOptions::parse(table).is_ok_and(|o| o.format == Format::DebeziumJson)
    }

    fn changelog_sink(&self, table: &TableDef) -> bool {
        self.changelog_source(table)
    }

    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        KafkaOptions::parse(table).map(|_| ()).map_err(|(option, message)| ConnectorError::Invalid { option, message })
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        let options = KafkaOptions::parse(table).map_err(|(_, m)| RuntimeError::Source(m))?;
        Ok(Box::new(KafkaSource::open(table, options, schema, ctx)?))
    }

    /// By partition (an instance whose partitions are all idle is left out of the watermark
    /// by the instances it sends to, once it has sent nothing for the idle timeout).
    fn splittable(&self, _: &TableDef, _: &ConnectorContext) -> bool {
        true
    }

    /// Instance `k` of `m` reads the partitions whose id is `k` modulo `m`, where `m` is the
    /// parallelism or the number of partitions, whichever is smaller.
    fn open_splits(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &ConnectorContext,
        n: usize,
    ) -> Result<Option<Vec<Box<dyn Source>>>> {
        if !self.splittable(table, ctx) {
            return Ok(None);
        }
        let options = KafkaOptions::parse(table).map_err(|(_, m)| RuntimeError::Source(m))?;
        let first = KafkaSource::open(table, options.clone(), Arc::clone(&schema), ctx)?;
        let m = n.min(first.partition_count()?);
        if m < 2 {
            return Ok(None);
        }
        let mut sources: Vec<Box<dyn Source>> = vec![Box::new(first.share(0, m))];
        for k in 1..m {
            let source = KafkaSource::open(table, options.clone(), Arc::clone(&schema), ctx)?;
            sources.push(Box::new(source.share(k, m)));
        }
        tracing::info!(table = %table.name, splits = m, "reading kafka partitions in parallel");
        Ok(Some(sources))
    }

    fn open_sink(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
        let options = KafkaOptions::parse(table).map_err(|(_, m)| RuntimeError::Sink(m))?;
        Ok(Box::new(KafkaSink::open(table, options, schema, ctx)?))
    }
}

/// The `upsert-kafka` connector: a topic as a changelog keyed by the table's primary key. A
/// record is the latest row of its key, a record without a value (a tombstone) the key's
/// removal; an updating query is written the same way.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpsertKafkaConnector;

impl Connector for UpsertKafkaConnector {
    fn spec(&self) -> ConnectorSpec {
        let kafka = KafkaConnector.spec();
        let left_out = ["format", "key.fields", "sink.partitioner", "value.format", "key.format"];
        let mut options: Vec<OptionSpec> = kafka
            .options
            .into_iter()
            .filter(|o| !left_out.contains(&o.name) && !o.name.starts_with("scan.startup."))
            .collect();
        options.insert(
            2,
            OptionSpec::new(
                "key.format",
                OptionType::Choice(&["json", "csv", "raw", "avro"]),
                "the record key: the primary key's columns in this format",
            )
            .required(),
        );
        options.insert(
            3,
            OptionSpec::new(
                "value.format",
                OptionType::Choice(&["json", "csv", "raw", "avro"]),
                "the record value: the row (without the key's columns with `value.fields-include` = `EXCEPT_KEY`)",
            )
            .required(),
        );
        ConnectorSpec {
            name: "upsert-kafka",
            doc: "reads and writes an Apache Kafka topic as a changelog keyed by the table's PRIMARY KEY (a record is its key's latest row, a tombstone its removal)",
            source: true,
            sink: true,
            loose_keys: false,
            metadata: kafka.metadata,
            options,
        }
    }

    fn changelog_source(&self, _: &TableDef) -> bool {
        true
    }

    fn upsert_source(&self, _: &TableDef) -> bool {
        true
    }

    fn changelog_sink(&self, _: &TableDef) -> bool {
        true
    }

    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        KafkaOptions::parse_upsert(table)
            .map(|_| ())
            .map_err(|(option, message)| ConnectorError::Invalid { option, message })
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        let options = KafkaOptions::parse_upsert(table).map_err(|(_, m)| RuntimeError::Source(m))?;
        Ok(Box::new(KafkaSource::open(table, options, schema, ctx)?))
    }

    fn open_sink(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Sink>> {
        let options = KafkaOptions::parse_upsert(table).map_err(|(_, m)| RuntimeError::Sink(m))?;
        Ok(Box::new(KafkaSink::open(table, options, schema, ctx)?))
    }
}
