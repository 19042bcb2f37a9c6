//! Writing a Kafka topic, with the guarantee `sink.delivery-guarantee` asks for.
//!
//! `exactly-once` stages each checkpoint's records in a file under the query's checkpoint
//! directory. When the checkpoint is durable, [`Sink::commit`] writes them in one Kafka
//! transaction, which also commits an offset of the consumer group `<prefix>.checkpoints`
//! equal to the checkpoint's id + 1: a record in Kafka, committed atomically with the rows, of
//! which checkpoints are written. After a crash, [`Sink::recover`] fences the old producer
//! (its open transaction is aborted) and writes the checkpoint's records again only if that
//! offset says they were not committed; records staged after the checkpoint are dropped (the
//! query writes them again). So a `read_committed` reader sees each row once.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, Field, Int64Type, SchemaRef, TimeUnit};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use weir_plan::TableDef;
use weir_runtime::{is_row_kind_column, ConnectorContext, Result, RowKind, RuntimeError, Sink};

use crate::kafka::format::Encoder;
use crate::kafka::options::{Delivery, Format, KafkaOptions, Partitioner};
use crate::kafka::source::CONNECT_TIMEOUT;

/// How long a flush may take before the sink gives up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a checkpoint's transaction may take (a big checkpoint sends many records), tries
/// again included; the producer's `transaction.timeout.ms` is set to match, unless a table
/// sets it.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Keeps the first delivery failure.
#[derive(Default)]
pub struct Reports {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            if let Ok(mut failed) = self.failed.lock() {
                failed.get_or_insert_with(|| format!("a record to partition {} was not written: {e}", m.partition()));
            }
        }
    }
}

/// A record: its partition, timestamp, key, value and headers.
struct Record {
    partition: Option<i32>,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
}

/// A record's headers: names and values (`None`: a header without one).
type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A Kafka topic written to.
pub struct KafkaSink {
    producer: BaseProducer<Reports>,
    topic: String,
    servers: String,
    value: Encoder,
    key: Option<Encoder>,
    /// The column of the record's timestamp (a `timestamp` metadata column).
    timestamp: Option<usize>,
    /// The column of the record's headers (a `headers` metadata column).
    headers: Option<usize>,
    partitioner: Partitioner,
    partitions: i32,
    /// The column of the changes' kinds (`op`), for debezium-json and upsert-kafka.
    op: Option<usize>,
    /// `upsert-kafka`: a key's latest row is its value; a removed key gets a tombstone.
    upsert: bool,
    turn: i32,
    delivery: Delivery,
    staging: Option<Staging>,
}

/// What the exactly-once sink keeps between a checkpoint and its commit.
struct Staging {
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    /// The consumer of group `<prefix>.checkpoints` (its metadata goes into transactions).
    marks: BaseConsumer,
    group: String,
    /// `init_transactions` has run.
    ready: bool,
    /// Names this query's run in the marker offsets (their metadata), so that a marker left
    /// by an earlier run of the same prefix, whose checkpoint numbers started again, is not
    /// taken for one of this run.
    run: String,
}

const OPEN: &str = "open.stage";

/// What a checkpoint keeps of the exactly-once sink: the file of its records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Prepared {
    checkpoint: u64,
    file: Option<String>,
    #[serde(default)]
    run: String,
}

fn frame(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(&0u32.to_le_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32 + 1).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u32::from_le_bytes(b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn unframe(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let n = read_u32(r)?.unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    let mut b = vec![0u8; n as usize - 1];
    r.read_exact(&mut b)?;
    Ok(Some(b))
}

impl KafkaSink {
    /// Connect to the brokers and look the topic up (failing within a bounded time when they
    /// do not answer).
    pub fn open(table: &TableDef, options: KafkaOptions, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Self> {
        let name = &table.name;
        let servers = options.servers.clone();
        let fail = |e: String| RuntimeError::Sink(format!("kafka ({servers}): {e}"));
        for m in &table.metadata {
            if !m.is_virtual && !WRITABLE.contains(&m.key.as_str()) && schema.field_with_name(&m.column).is_ok() {
                return Err(RuntimeError::Sink(format!(
                    "table '{name}': metadata column '{}' ('{}') cannot be written: declare it VIRTUAL",
                    m.column, m.key
                )));
            }
        }
        let metadata = |key: &str| {
            schema.fields().iter().position(|f| table.metadata_column(f.name()).is_some_and(|m| m.key == key))
        };
        let (timestamp, headers) = (metadata("timestamp"), metadata("headers"));
        // an updating query's changes: the `op` column first, written as the format or the
        // upsert connector says (with 'changelog' = 'rows' it is an ordinary column)
        let takes_changes = options.format == Format::DebeziumJson || options.upsert;
        let op = schema.fields().first().filter(|f| takes_changes && is_row_kind_column(f)).map(|_| 0);
        let key_columns: Vec<usize> = match &options.key {
            Some((_, fields)) => fields
                .iter()
                .map(|f| schema.index_of(f).map_err(|_| fail(format!("key column '{f}' is not written"))))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let in_value = |i: &usize| {
            let metadata = [timestamp, headers, op].contains(&Some(*i));
            let in_key_only = options.except_key && key_columns.contains(i);
            !(metadata || in_key_only)
        };
        let value_columns: Vec<usize> = (0..schema.fields().len()).filter(in_value).collect();
        // Avro's schema comes from the declared columns (NOT NULL included), not from what
        // the query gives
        let declared = |f: &Arc<Field>| -> bool {
            table
                .schema
                .as_ref()
                .and_then(|s| s.field_with_name(f.name()).ok())
                .map_or(f.is_nullable(), |d| d.is_nullable())
        };
        let nullable: Vec<bool> = schema.fields().iter().map(declared).collect();
        let value = Encoder::new(options.format, &schema, value_columns, &nullable, options.delimiter)
            .map_err(|e| RuntimeError::Sink(format!("table '{name}': {e}")))?;
        let key = match &options.key {
            Some((format, _)) => Some(
                Encoder::new(*format, &schema, key_columns, &nullable, options.delimiter)
                    .map_err(|e| RuntimeError::Sink(format!("table '{name}': key: {e}")))?,
            ),
            None => None,
        };
        let mut extra = vec![("bootstrap.servers", servers.as_str())];
        let transactional_id;
        let staging = if options.delivery == Delivery::ExactlyOnce {
            let Some(state) = ctx.state_dir.as_ref().filter(|_| ctx.checkpointing) else {
                return Err(RuntimeError::Sink(format!(
                    "table '{name}': 'sink.delivery-guarantee' = 'exactly-once' commits a transaction per checkpoint: run the query with checkpoints in a local directory (weir run --checkpoint-dir DIR, or SET execution.checkpointing.interval)"
                )));
            };
            let prefix = options.transactional_id_prefix.clone().unwrap_or_default();
            transactional_id = format!("{prefix}-0");
            extra.push(("transactional.id", transactional_id.as_str()));
            let group = format!("{prefix}.checkpoints");
            let marks: BaseConsumer = options
                .client(&[("bootstrap.servers", &servers), ("group.id", &group), ("enable.auto.commit", "false")])
                .create()
                .map_err(|e| fail(e.to_string()))?;
            let dir = state.join("sinks").join(&table.name);
            std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            let run = format!("{:016x}", fastrand::u64(..));
            Some(Staging { dir, file: None, marks, group, ready: false, run })
        } else {
            None
        };
        let defaults = [("transaction.timeout.ms", "900000")];
        let mut config = options.client_with(if staging.is_some() { &defaults[..] } else { &[] }, &extra);
        // the client's own properties go to the consumer, not the producer
        for key in ["group.id", "isolation.level", "auto.offset.reset", "enable.auto.commit"] {
            config.remove(key);
        }
        let producer: BaseProducer<Reports> =
            config.create_with_context(Reports::default()).map_err(|e| fail(e.to_string()))?;
        // a broker that creates topics as they are first written needs a moment for it
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let partitions = loop {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&options.topic), CONNECT_TIMEOUT)
                .map_err(|e| fail(format!("{e} (no broker answered within {} s)", CONNECT_TIMEOUT.as_secs())))?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == options.topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32);
            if partitions > 0 {
                break partitions;
            }
            if Instant::now() >= deadline {
                return Err(fail(format!("topic '{}' not found (create it first)", options.topic)));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        tracing::info!(table = %name, topic = %options.topic, delivery = ?options.delivery, "writing kafka");
        Ok(Self {
            producer,
            topic: options.topic.clone(),
            servers,
            value,
            key,
            timestamp,
            headers,
            partitioner: options.partitioner,
            partitions,
            op,
            upsert: options.upsert,
            turn: 0,
            delivery: options.delivery,
            staging,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Sink(format!("kafka ({}) topic '{}': {e}", self.servers, self.topic))
    }

    fn records(&mut self, batch: &RecordBatch) -> Result<Vec<Record>> {
        let kinds: Option<Vec<RowKind>> = match self.op {
            Some(i) => Some(
                batch
                    .column(i)
                    .as_string_opt::<i32>()
                    .ok_or_else(|| self.err("the op column is not text"))?
                    .iter()
                    .map(|op| match op {
                        Some("-U") => RowKind::UpdateBefore,
                        Some("+U") => RowKind::UpdateAfter,
                        Some("-D") => RowKind::Delete,
                        _ => RowKind::Insert,
                    })
                    .collect(),
            ),
            None => None,
        };
        let values = self.value.encode(batch, kinds.as_deref()).map_err(|e| self.err(e))?;
        let keys = match &self.key {
            Some(k) => k.encode(batch, None).map_err(|e| self.err(e))?,
            None => vec![None; batch.num_rows()],
        };
        let times = match self.timestamp {
            Some(i) => {
                let ms = cast(batch.column(i), &DataType::Timestamp(TimeUnit::Millisecond, None))?;
                let ms = cast(&ms, &DataType::Int64)?;
                ms.as_primitive::<Int64Type>().iter().collect::<Vec<_>>()
            }
            None => vec![None; batch.num_rows()],
        };
        // upsert: an update's old row is not written when its new one, of the same key, comes
        // next (the key gets the new one); without it (a filter took it), it is a removal
        let replaced: Vec<bool> = match &kinds {
            Some(k) if self.upsert => (0..k.len())
                .map(|i| {
                    k[i] == RowKind::UpdateBefore
                        && k.get(i + 1) == Some(&RowKind::UpdateAfter)
                        && keys.get(i + 1) == keys.get(i)
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut headers = match self.headers {
            Some(i) => headers_of(batch.column(i)).map_err(|e| self.err(e))?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(values.len());
        for (i, ((value, key), timestamp)) in values.into_iter().zip(keys).zip(times).enumerate() {
            // upsert: a new row is the key's value, a removed one a tombstone
            let value = match kinds.as_ref().map(|k| k[i]) {
                _ if replaced.get(i) == Some(&true) => continue,
                Some(RowKind::UpdateBefore | RowKind::Delete) if self.upsert => None,
                _ => value,
            };
            let partition = match self.partitioner {
                Partitioner::Default => None,
                Partitioner::Fixed => Some(0),
                Partitioner::RoundRobin => {
                    self.turn = (self.turn + 1) % self.partitions.max(1);
                    Some(self.turn)
                }
            };
            let headers = headers.get_mut(i).map(std::mem::take).unwrap_or_default();
            out.push(Record { partition, timestamp, key, value, headers });
        }
        Ok(out)
    }

    /// Hand a record to the client, waiting while its queue is full.
    fn produce(&self, r: &Record) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(t) = r.timestamp {
            record = record.timestamp(t);
        }
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        if !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(Header { key, value: value.as_deref() });
            }
            record = record.headers(headers);
        }
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) if Instant::now() < deadline => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(self.err(e)),
            }
        }
    }

    /// Wait until the brokers have every record sent so far.
    fn flush(&self) -> Result<()> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| self.err(e))?;
        self.failed()
    }

    fn failed(&self) -> Result<()> {
        match self.producer.context().failed.lock().map(|mut f| f.take()) {
            Ok(Some(e)) => Err(self.err(e)),
            _ => Ok(()),
        }
    }

    /// The checkpoint id + 1 that the last committed transaction recorded (0: none), and the
    /// run it names.
    fn committed_mark(&self) -> Result<(i64, String)> {
        let Some(s) = &self.staging else { return Ok((0, String::new())) };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let found = s.marks.committed_offsets(tpl, CONNECT_TIMEOUT).map_err(|e| self.err(e))?;
        Ok(match found.find_partition(&self.topic, 0) {
            Some(p) => match p.offset() {
                Offset::Offset(o) => (o, p.metadata().to_string()),
                _ => (0, String::new()),
            },
            None => (0, String::new()),
        })
    }

    /// Forget delivery failures (of a transaction that was aborted).
    fn clear_failed(&self) {
        self.producer.poll(Duration::ZERO);
        if let Ok(mut f) = self.producer.context().failed.lock() {
            *f = None;
        }
    }

    fn init_transactions(&mut self) -> Result<()> {
        if self.staging.as_ref().is_some_and(|s| !s.ready) {
            // fences an older producer with this id, aborting its open transaction
            self.producer.init_transactions(FLUSH_TIMEOUT).map_err(|e| self.err(e))?;
            if let Some(s) = &mut self.staging {
                s.ready = true;
            }
        }
        Ok(())
    }

    /// Write the records staged in `file` in one transaction that records `checkpoint`.
    fn transact(&mut self, file: &std::path::Path, checkpoint: u64) -> Result<()> {
        self.init_transactions()?;
        let Some(s) = &self.staging else { return Ok(()) };
        let group = s.group.clone();
        let metadata = s.marks.group_metadata().ok_or_else(|| self.err(format!("no metadata of group '{group}'")))?;
        let mut marks = TopicPartitionList::new();
        marks.add_partition_offset(&self.topic, 0, Offset::Offset(checkpoint as i64 + 1)).map_err(|e| self.err(e))?;
        if let Some(mut mark) = marks.find_partition(&self.topic, 0) {
            mark.set_metadata(s.run.clone());
        }
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        loop {
            let attempt = (|| -> std::result::Result<(), String> {
                // failures reported for an aborted attempt are not this one's
                self.clear_failed();
                self.producer.begin_transaction().map_err(|e| e.to_string())?;
                let mut reader = BufReader::with_capacity(
                    1 << 20,
                    File::open(file).map_err(|e| format!("{}: {e}", file.display()))?,
                );
                while let Some(record) = read_record(&mut reader).map_err(|e| format!("{}: {e}", file.display()))? {
                    self.produce(&record).map_err(|e| e.to_string())?;
                }
                self.producer
                    .send_offsets_to_transaction(&marks, &metadata, FLUSH_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                self.failed().map_err(|e| e.to_string())?;
                // once this returns, the transaction is committed: never sent again
                self.producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| e.to_string())
            })();
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(topic = %self.topic, checkpoint, error = %e, "transaction failed; writing it again");
                    let _ = self.producer.abort_transaction(FLUSH_TIMEOUT);
                    self.clear_failed();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(self.err(format!("checkpoint {checkpoint}: {e}"))),
            }
        }
    }
}

fn read_record(r: &mut impl Read) -> std::io::Result<Option<Record>> {
    let Some(partition) = read_u32(r)? else { return Ok(None) };
    let mut t = [0u8; 8];
    r.read_exact(&mut t)?;
    let timestamp = i64::from_le_bytes(t);
    let key = unframe(r)?;
    let value = unframe(r)?;
    let n = read_u32(r)?.unwrap_or(0);
    let mut headers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = String::from_utf8_lossy(&unframe(r)?.unwrap_or_default()).into_owned();
        headers.push((name, unframe(r)?));
    }
    Ok(Some(Record {
        partition: partition.checked_sub(1).map(|p| p as i32),
        timestamp: (timestamp != i64::MIN).then_some(timestamp),
        key,
        value,
        headers,
    }))
}

fn write_record(out: &mut Vec<u8>, r: &Record) {
    let partition = r.partition.map_or(0, |p| p as u32 + 1);
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(&r.timestamp.unwrap_or(i64::MIN).to_le_bytes());
    frame(out, r.key.as_deref());
    frame(out, r.value.as_deref());
    out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
    for (name, value) in &r.headers {
        frame(out, Some(name.as_bytes()));
        frame(out, value.as_deref());
    }
}

/// The metadata a sink writes.
const WRITABLE: [&str; 2] = ["timestamp", "headers"];

/// Each row's headers, from a `MAP<VARCHAR, BYTES>` (or `VARCHAR` values) column.
fn headers_of(column: &ArrayRef) -> std::result::Result<Vec<Headers>, String> {
    let Some(map) = column.as_map_opt() else {
        return Err(format!("headers must be a MAP, not {}", column.data_type()));
    };
    let names = cast(map.keys(), &DataType::Utf8).map_err(|e| e.to_string())?;
    let values = cast(map.values(), &DataType::Binary).map_err(|e| e.to_string())?;
    let (names, values) = (names.as_string::<i32>(), values.as_binary::<i32>());
    let offsets = map.value_offsets();
    Ok((0..map.len())
        .map(|row| {
            // a NULL map: no headers
            let (from, to) = match map.is_valid(row) {
                true => (offsets[row] as usize, offsets[row + 1] as usize),
                false => (0, 0),
            };
            (from..to)
                .filter(|i| names.is_valid(*i))
                .map(|i| (names.value(i).to_string(), values.is_valid(i).then(|| values.value(i).to_vec())))
                .collect()
        })
        .collect())
}

impl Staging {
    fn stage(&mut self, records: &[Record]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::with_capacity(1 << 20, File::create(self.dir.join(OPEN))?));
        }
        let mut bytes = Vec::new();
        for r in records {
            write_record(&mut bytes, r);
        }
        if let Some(f) = &mut self.file {
            f.write_all(&bytes)?;
        }
        Ok(())
    }

    /// Make the open file durable under the checkpoint's name.
    fn seal(&mut self, checkpoint: u64) -> std::io::Result<Option<String>> {
        let Some(mut f) = self.file.take() else { return Ok(None) };
        f.flush()?;
        f.get_ref().sync_all()?;
        drop(f);
        let name = format!("checkpoint-{checkpoint:010}.stage");
        std::fs::rename(self.dir.join(OPEN), self.dir.join(&name))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(Some(name))
    }

    /// Remove staged files but `keep`.
    fn clear(&mut self, keep: Option<&str>) -> std::io::Result<()> {
        self.file = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".stage") && Some(name.as_str()) != keep {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let records = self.records(batch)?;
        if let Some(s) = &mut self.staging {
            let dir = s.dir.display().to_string();
            return s.stage(&records).map_err(|e| RuntimeError::Sink(format!("{dir}: {e}")));
        }
        for r in &records {
            self.produce(r)?;
        }
        self.producer.poll(Duration::ZERO);
        self.failed()
    }

    fn finish(&mut self) -> Result<()> {
        match &mut self.staging {
            // the last rows wait for the final checkpoint
            Some(s) => match &mut s.file {
                Some(f) => f.flush().map_err(|e| RuntimeError::Sink(e.to_string())),
                None => Ok(()),
            },
            None => self.flush(),
        }
    }

    fn prepare_commit(&mut self, id: u64) -> Result<serde_json::Value> {
        match &mut self.staging {
            Some(s) => {
                let dir = s.dir.display().to_string();
                let file = s.seal(id).map_err(|e| RuntimeError::Sink(format!("{dir}: {e}")))?;
                let run = s.run.clone();
                serde_json::to_value(Prepared { checkpoint: id, file, run }).map_err(|e| self.err(e))
            }
            None => {
                if self.delivery == Delivery::AtLeastOnce {
                    self.flush()?;
                }
                Ok(serde_json::Value::Null)
            }
        }
    }

    fn commit(&mut self, prepared: &serde_json::Value) -> Result<()> {
        if prepared.is_null() || self.staging.is_none() {
            return Ok(());
        }
        let p: Prepared = weir_runtime::checkpoint::from_json(prepared, &self.topic)?;
        let Some(name) = p.file else { return Ok(()) };
        let Some(dir) = self.staging.as_ref().map(|s| s.dir.clone()) else { return Ok(()) };
        let path = dir.join(&name);
        if !path.exists() {
            return Ok(()); // committed, then removed
        }
        self.transact(&path, p.checkpoint)?;
        std::fs::remove_file(&path).map_err(|e| RuntimeError::Sink(format!("{}: {e}", path.display())))
    }

    fn recover(&mut self, prepared: Option<&serde_json::Value>) -> Result<()> {
        if self.staging.is_none() {
            return Ok(());
        }
        self.init_transactions()?;
        let p: Option<Prepared> = match prepared {
            Some(p) if !p.is_null() => Some(weir_runtime::checkpoint::from_json(p, &self.topic)?),
            _ => None,
        };
        let keep = p.as_ref().and_then(|p| p.file.clone());
        if let Some(s) = &mut self.staging {
            // the run goes on (a fresh start is a new run)
            if let Some(run) = p.as_ref().map(|p| &p.run).filter(|r| !r.is_empty()) {
                s.run = run.clone();
            }
            let dir = s.dir.display().to_string();
            s.clear(keep.as_deref()).map_err(|e| RuntimeError::Sink(format!("{dir}: {e}")))?;
        }
        if let (Some(p), Some(name)) = (p, keep) {
            let path = self.staging.as_ref().map(|s| s.dir.join(&name));
            if let Some(path) = path.filter(|p| p.exists()) {
                let (mark, run) = self.committed_mark()?;
                if mark > p.checkpoint as i64 && (p.run.is_empty() || run == p.run) {
                    tracing::info!(topic = %self.topic, checkpoint = p.checkpoint, "its transaction was committed");
                } else {
                    tracing::info!(topic = %self.topic, checkpoint = p.checkpoint, "writing its transaction again");
                    self.transact(&path, p.checkpoint)?;
                }
                std::fs::remove_file(&path).map_err(|e| RuntimeError::Sink(format!("{}: {e}", path.display())))?;
            }
        }
        Ok(())
    }

    fn transactional(&self) -> bool {
        self.staging.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = (Option<i32>, Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>, Headers);

    fn staged(bytes: &[u8]) -> Vec<Fields> {
        let mut r = bytes;
        std::iter::from_fn(|| read_record(&mut r).ok().flatten())
            .map(|x| (x.partition, x.timestamp, x.key, x.value, x.headers))
            .collect()
    }

    #[test]
    fn staged_records_read_back_as_written() {
        let headers = vec![("trace".to_string(), Some(b"abc".to_vec())), ("empty".to_string(), None)];
        let records = [
            Record {
                partition: Some(2),
                timestamp: Some(1_700_000_000_000),
                key: Some(b"k".to_vec()),
                value: Some(b"{}".to_vec()),
                headers: headers.clone(),
            },
            Record { partition: None, timestamp: None, key: None, value: None, headers: Vec::new() },
            Record {
                partition: Some(0),
                timestamp: Some(-5),
                key: Some(Vec::new()),
                value: Some(b"x".to_vec()),
                headers: Vec::new(),
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            write_record(&mut bytes, r);
        }
        let back = staged(&bytes);
        assert_eq!(
            back,
            vec![
                (Some(2), Some(1_700_000_000_000), Some(b"k".to_vec()), Some(b"{}".to_vec()), headers),
                (None, None, None, None, Vec::new()),
                (Some(0), Some(-5), Some(Vec::new()), Some(b"x".to_vec()), Vec::new()),
            ]
        );
    }
}
