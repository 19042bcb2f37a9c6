//! Reading a Kafka topic: weir assigns itself every partition (no consumer-group rebalancing),
//! cuts what arrives into batches of one partition each (a split, with its own watermark),
//! and keeps the offset after the last record it handed on, per partition, as its checkpoint
//! position.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{Int8Array, RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::datatypes::{Field, SchemaRef};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use weir_plan::TableDef;
use weir_runtime::{ConnectorContext, Result, RuntimeError, Source};

use crate::dead_letter::BadRows;
use crate::kafka::fetch::{Fetch, FetchQueue};
use crate::kafka::format::Decoder;
use crate::kafka::options::{KafkaOptions, StartAt, StopAt};
use crate::kafka::rows::{decode_into, finish, Column, Fill, Record};
use crate::live::LINGER;

/// How long the brokers have to answer when the query starts.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition: its rows not handed on yet, and where it is.
struct Partition {
    columns: Vec<Column>,
    /// Each row's kind (all inserts but for a changelog format).
    kinds: Vec<i8>,
    /// The offset after the last record read.
    next: i64,
    /// Where it ends (exclusive), in a bounded mode.
    end: Option<i64>,
    done: bool,
}

/// A Kafka topic read in batches.
pub struct KafkaSource {
    /// A parallel instance `k` of `n` reads the partitions whose id is `k` modulo `n`.
    share: Option<(i32, i32)>,
    /// The partitions' records (dropped before the consumer, as it must be).
    fetch: Option<FetchQueue>,
    consumer: BaseConsumer,
    topic: String,
    options: KafkaOptions,
    schema: SchemaRef,
    fills: Vec<Fill>,
    /// A column holds the records' headers.
    headers: bool,
    decoder: Decoder,
    /// The key's fields, when they are read from the key.
    key_decoder: Option<Decoder>,
    batch_size: usize,
    partitions: BTreeMap<i32, Partition>,
    /// Batches cut but not handed on, with their partition and the offset after them.
    ready: VecDeque<Ready>,
    /// The format gives a changelog: batches carry their rows' kinds.
    changelog: bool,
    /// The kinds of the batch last handed on.
    kinds: Option<Arc<Int8Array>>,
    /// The offset after the last record handed on, per partition (the checkpoint position).
    handed: BTreeMap<i32, i64>,
    /// The partition of the batch last handed on.
    last: Option<i32>,
    /// Whether the partitions are assigned (on the first read, after a possible seek).
    assigned: bool,
    /// Offsets to resume from (a checkpoint's), instead of the startup mode.
    resume: Option<BTreeMap<i32, i64>>,
    /// Where the checkpoint's partitions end, in a bounded mode.
    resume_ends: BTreeMap<i32, i64>,
    next_discovery: Option<Instant>,
    /// Until when reading partitions may wait for their leaders ([`LEADER_WAIT`] from when
    /// their reading starts).
    leader_deadline: std::cell::Cell<Instant>,
    /// When to commit the offsets handed on to the consumer group next (with a group).
    next_commit: Option<Instant>,
    bad_rows: BadRows,
}

/// How often the offsets read are committed to the consumer group, for monitoring.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// A batch cut but not handed on.
struct Ready {
    partition: i32,
    batch: RecordBatch,
    kinds: Option<Arc<Int8Array>>,
    /// The offset after its last record.
    next: i64,
}

/// The offsets a checkpoint keeps: the next record to read, per partition.
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    topic: String,
    offsets: BTreeMap<i32, i64>,
    /// Where each partition ends, in a bounded mode (fixed when reading starts).
    #[serde(default)]
    ends: BTreeMap<i32, i64>,
    /// `false`: taken before reading started, so a restart starts as the startup mode says.
    #[serde(default = "started")]
    started: bool,
}

fn started() -> bool {
    true
}

/// How long a query waits, when it starts reading, for partitions that have no leader for now.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// Whether `code` says a partition has no leader for now, or its leader did not answer (a
/// broker restarting, a leader election): it passes, unlike a broker that never answered
/// (the topic's metadata fails first, within [`CONNECT_TIMEOUT`]) or a missing topic.
fn leaderless(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::UnknownPartition
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::FencedLeaderEpoch
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::OperationTimedOut
                | C::RequestTimedOut
        )
    )
}

fn kafka_error(servers: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Source(format!("kafka ({servers}): {e}"))
}

impl KafkaSource {
    /// Connect and look the topic up (failing within `CONNECT_TIMEOUT` when the brokers do
    /// not answer); nothing is read before the first batch is asked for.
    pub fn open(table: &TableDef, options: KafkaOptions, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Self> {
        // partitions are assigned, never subscribed: the group (librdkafka wants one) only
        // names where `group-offsets` start
        let group = options.group.clone().unwrap_or_else(|| format!("weir-{}", options.topic));
        // librdkafka stops fetching a partition that has queued.min.messages waiting and looks
        // again only after fetch.queue.backoff.ms (1 s by default): weir empties its queue
        // far faster than that, so it would mostly wait
        // and an offset no longer there (retention) goes to the earliest one, not to the end
        let defaults =
            [("fetch.queue.backoff.ms", "10"), ("queued.min.messages", "200000"), ("auto.offset.reset", "earliest")];
        let consumer: BaseConsumer = options
            .client_with(
                &defaults,
                &[
                    ("bootstrap.servers", &options.servers),
                    ("group.id", &group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                    ("enable.partition.eof", "true"),
                ],
            )
            .create()
            .map_err(|e| kafka_error(&options.servers, e))?;
        let topic = options.topic.clone();
        // the record's fields: the table's columns that are not metadata, in its order
        let table_schema = table.physical_schema().map_err(|e| RuntimeError::Source(e.to_string()))?;
        // the key's columns are read from the key when the value leaves them out, and always
        // for upserts (a tombstone has only the key)
        let key_names: Vec<String> = match &options.key {
            Some((_, fields)) if options.except_key || options.upsert => fields.clone(),
            _ => Vec::new(),
        };
        let value_fields: Vec<Arc<Field>> = table_schema
            .fields()
            .iter()
            .filter(|f| {
                table.metadata_column(f.name()).is_none() && !(options.except_key && key_names.contains(f.name()))
            })
            .cloned()
            .collect();
        let decoder = Decoder::new(options.format, &value_fields, options.delimiter)
            .map_err(|e| RuntimeError::Source(format!("table '{}': {e}", table.name)))?;
        let key_fields = key_names
            .iter()
            .map(|k| {
                table_schema
                    .field_with_name(k)
                    .map(|f| Arc::new(f.clone()))
                    .map_err(|e| RuntimeError::Source(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let key_decoder = match &options.key {
            Some((format, _)) if !key_names.is_empty() => Some(
                Decoder::new(*format, &key_fields, options.delimiter)
                    .map_err(|e| RuntimeError::Source(format!("table '{}': key: {e}", table.name)))?,
            ),
            _ => None,
        };
        let fills = schema
            .fields()
            .iter()
            .map(|f| match Fill::metadata(table, f.name()) {
                Some(fill) => Ok(fill),
                None => match key_names.iter().position(|k| k == f.name()) {
                    Some(i) => Ok(Fill::KeyField(i)),
                    None => value_fields.iter().position(|v| v.name() == f.name()).map(Fill::Value).ok_or_else(|| {
                        RuntimeError::Internal(format!("column {} is not in table '{}'", f.name(), table.name))
                    }),
                },
            })
            .collect::<Result<Vec<_>>>()?;
        // a tombstone's row has NULLs in the columns that are not the key, NOT NULL or not
        let schema = if options.upsert { weir_runtime::relaxed(&schema) } else { schema };
        let fetch = FetchQueue::new(&consumer)
            .ok_or_else(|| kafka_error(&options.servers, "the client has no queue for the partitions"))?;
        let source = Self {
            share: None,
            fetch: Some(fetch),
            consumer,
            headers: fills.contains(&Fill::Headers),
            topic,
            schema,
            fills,
            decoder,
            key_decoder,
            batch_size: ctx.batch_size.max(1),
            partitions: BTreeMap::new(),
            ready: VecDeque::new(),
            changelog: options.format == crate::kafka::options::Format::DebeziumJson || options.upsert,
            kinds: None,
            handed: BTreeMap::new(),
            last: None,
            assigned: false,
            resume: None,
            resume_ends: BTreeMap::new(),
            next_discovery: None,
            leader_deadline: std::cell::Cell::new(Instant::now() + LEADER_WAIT),
            next_commit: None,
            bad_rows: BadRows::with_policy(&options.bad_rows, &ctx.metrics),
            options,
        };
        // an unreachable broker or a missing topic fails now, not at the first read
        let ids = source.partition_ids(LEADER_WAIT)?;
        if ids.is_empty() {
            return Err(kafka_error(&source.options.servers, format!("topic '{}' has no partitions", source.topic)));
        }
        tracing::info!(table = %table.name, topic = %source.topic, partitions = ids.len(), "reading kafka");
        Ok(source)
    }

    /// Read only the partitions of parallel instance `k` of `n`: those whose id is `k` modulo
    /// `n` (partitions found later too).
    pub fn share(mut self, k: usize, n: usize) -> Self {
        self.share = Some((k as i32, n as i32));
        self
    }

    /// How many partitions the topic has now.
    pub fn partition_count(&self) -> Result<usize> {
        Ok(self.partition_ids(LEADER_WAIT)?.len())
    }

    /// Whether this source reads partition `id` (see [`KafkaSource::share`]).
    fn owns(&self, id: i32) -> bool {
        self.share.is_none_or(|(k, n)| id.rem_euclid(n.max(1)) == k)
    }

    /// The topic's partitions, as the brokers say now (waiting up to `wait` while the topic
    /// has no leader).
    fn partition_ids(&self, wait: Duration) -> Result<Vec<i32>> {
        let servers = &self.options.servers;
        let deadline = Instant::now() + wait;
        loop {
            let metadata = self.consumer.fetch_metadata(Some(&self.topic), CONNECT_TIMEOUT).map_err(|e| {
                kafka_error(servers, format!("{e} (no broker answered within {} s)", CONNECT_TIMEOUT.as_secs()))
            })?;
            let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
                return Err(kafka_error(servers, format!("topic '{}' not found", self.topic)));
            };
            match topic.error().map(RDKafkaErrorCode::from) {
                None => {
                    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
                    ids.sort_unstable();
                    return Ok(ids);
                }
                // a broker that has just started
                Some(RDKafkaErrorCode::LeaderNotAvailable) if Instant::now() < deadline => {
                    tracing::info!(topic = %self.topic, "waiting for a leader");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(code) => return Err(kafka_error(servers, format!("topic '{}': {code:?}", self.topic))),
            }
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> RuntimeError {
        kafka_error(&self.options.servers, e)
    }

    /// The offset of the first record at or after `millis` in each of `ids` (the end when none).
    fn offsets_at(&self, ids: &[i32], millis: i64) -> Result<BTreeMap<i32, i64>> {
        // (an instance of a parallel run may own none of the partitions: nothing to ask)
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tpl = TopicPartitionList::new();
        for id in ids {
            tpl.add_partition_offset(&self.topic, *id, Offset::Offset(millis)).map_err(|e| self.err(e))?;
        }
        let found = loop {
            // (a partition without a leader fails the whole request when none has one, else
            // only its own entry, which keeps the time asked for)
            let waiting = match self.consumer.offsets_for_times(tpl.clone(), CONNECT_TIMEOUT) {
                Ok(found) => match found.elements().iter().find_map(|p| p.error().err()) {
                    None => break found,
                    Some(e) => e,
                },
                Err(e) => e,
            };
            if !(leaderless(waiting.rdkafka_error_code()) && self.may_wait()) {
                return Err(self.err(waiting));
            }
            tracing::info!(topic = %self.topic, error = %waiting, "waiting for a leader");
        };
        let mut out = BTreeMap::new();
        for id in ids {
            let offset = match found.find_partition(&self.topic, *id).map(|p| p.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => self.watermarks(*id)?.1,
            };
            out.insert(*id, offset);
        }
        Ok(out)
    }

    /// The low and high offsets of partition `id`. A partition without a leader for now (a
    /// broker restarting, a leader election) is asked again until the reading's
    /// [`LEADER_WAIT`] has passed, as Kafka's Java clients wait for metadata, rather than
    /// failing the query.
    fn watermarks(&self, id: i32) -> Result<(i64, i64)> {
        loop {
            match self.consumer.fetch_watermarks(&self.topic, id, CONNECT_TIMEOUT) {
                Ok(w) => return Ok(w),
                Err(e) if leaderless(e.rdkafka_error_code()) && self.may_wait() => {
                    tracing::info!(topic = %self.topic, partition = id, error = %e, "waiting for a leader");
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// Whether reading may still wait for partitions without a leader (after a pause).
    fn may_wait(&self) -> bool {
        if Instant::now() >= self.leader_deadline.get() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
        true
    }

    /// Where each of `ids` starts: a checkpoint's offset, else the startup mode's (`fresh`:
    /// partitions added while running start at their earliest offset).
    fn start_offsets(&self, ids: &[i32], fresh: bool) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        let mut rest = Vec::new();
        for id in ids {
            match self.resume.as_ref().and_then(|r| r.get(id)) {
                Some(o) => {
                    out.insert(*id, *o);
                }
                None => rest.push(*id),
            }
        }
        let start = if fresh || self.resume.is_some() { &StartAt::Earliest } else { &self.options.start };
        match start {
            StartAt::Timestamp(ms) => out.extend(self.offsets_at(&rest, *ms)?),
            StartAt::Group => {
                let mut tpl = TopicPartitionList::new();
                for id in &rest {
                    tpl.add_partition(&self.topic, *id);
                }
                let committed = self.consumer.committed_offsets(tpl, CONNECT_TIMEOUT).map_err(|e| self.err(e))?;
                let latest = self
                    .options
                    .properties
                    .get("auto.offset.reset")
                    .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "latest" | "largest" | "end"));
                for id in rest {
                    let offset = match committed.find_partition(&self.topic, id).map(|p| p.offset()) {
                        Some(Offset::Offset(o)) if o >= 0 => o,
                        _ if latest => self.watermarks(id)?.1,
                        _ => self.watermarks(id)?.0,
                    };
                    out.insert(id, offset);
                }
            }
            other => {
                for id in rest {
                    let (low, high) = self.watermarks(id)?;
                    let offset = match other {
                        StartAt::Latest => high,
                        StartAt::Specific(offsets) => offsets.get(&id).copied().unwrap_or(low).max(low),
                        _ => low,
                    };
                    out.insert(id, offset);
                }
            }
        }
        Ok(out)
    }

    /// Where each of `ids` ends in a bounded mode.
    fn end_offsets(&self, ids: &[i32]) -> Result<BTreeMap<i32, Option<i64>>> {
        // a resumed bounded query ends where it was to end when it first started
        if self.options.stop != StopAt::Never && ids.iter().all(|id| self.resume_ends.contains_key(id)) {
            return Ok(ids.iter().map(|id| (*id, self.resume_ends.get(id).copied())).collect());
        }
        Ok(match &self.options.stop {
            StopAt::Never => ids.iter().map(|id| (*id, None)).collect(),
            StopAt::Latest => ids.iter().map(|id| Ok((*id, Some(self.watermarks(*id)?.1)))).collect::<Result<_>>()?,
            StopAt::Timestamp(ms) => self.offsets_at(ids, *ms)?.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            StopAt::Specific(offsets) => {
                ids.iter().map(|id| (*id, Some(offsets.get(id).copied().unwrap_or(0)))).collect()
            }
        })
    }

    /// Start reading `ids` (all of them at first; partitions added to the topic later).
    fn assign(&mut self, ids: &[i32], fresh: bool) -> Result<()> {
        self.leader_deadline.set(Instant::now() + LEADER_WAIT);
        let starts = self.start_offsets(ids, fresh)?;
        let ends = self.end_offsets(ids)?;
        let mut tpl = TopicPartitionList::new();
        for id in ids {
            let next = starts.get(id).copied().unwrap_or(0);
            let end = ends.get(id).copied().flatten();
            let done = end.is_some_and(|e| next >= e);
            self.handed.insert(*id, next);
            let columns = self.new_columns();
            self.partitions
                .insert(*id, Partition { columns, kinds: Vec::with_capacity(self.batch_size), next, end, done });
            if !done {
                let routed = self.fetch.as_mut().is_some_and(|f| f.route(&self.topic, *id));
                if !routed {
                    return Err(self.err(format!("partition {id} of '{}' has no queue", self.topic)));
                }
                tpl.add_partition_offset(&self.topic, *id, Offset::Offset(next)).map_err(|e| self.err(e))?;
            }
        }
        tracing::debug!(topic = %self.topic, ?starts, ?ends, "assigning");
        self.consumer.incremental_assign(&tpl).map_err(|e| self.err(e))
    }

    fn new_columns(&self) -> Vec<Column> {
        self.schema
            .fields()
            .iter()
            .zip(&self.fills)
            .map(|(f, fill)| Column::new(*fill, f.data_type(), self.batch_size))
            .collect()
    }

    /// Look for partitions added to the topic, now and then.
    fn discover(&mut self) -> Result<()> {
        let Some(every) = self.options.discovery else { return Ok(()) };
        let now = Instant::now();
        if self.next_discovery.is_some_and(|t| now < t) {
            return Ok(());
        }
        self.next_discovery = Some(now + every);
        let new: Vec<i32> = match self.partition_ids(Duration::ZERO) {
            Ok(ids) => ids.into_iter().filter(|id| !self.partitions.contains_key(id) && self.owns(*id)).collect(),
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "looking for new partitions");
                return Ok(());
            }
        };
        if !new.is_empty() {
            tracing::info!(topic = %self.topic, partitions = ?new, "new partitions");
            self.assign(&new, true)?;
        }
        Ok(())
    }

    /// Now and then, commit the offsets handed on to the table's consumer group, so that
    /// tools watching the group see how far weir has read. Only for monitoring: a restart
    /// resumes from weir's checkpoint, never from these.
    fn commit_offsets(&mut self) {
        if self.options.group.is_none() || self.handed.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.next_commit.is_some_and(|t| now < t) {
            return;
        }
        self.next_commit = Some(now + COMMIT_EVERY);
        let mut tpl = TopicPartitionList::new();
        for (id, offset) in &self.handed {
            if tpl.add_partition_offset(&self.topic, *id, Offset::Offset(*offset)).is_err() {
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, rdkafka::consumer::CommitMode::Async) {
            tracing::debug!(topic = %self.topic, error = %e, "committing offsets to the group");
        }
    }

    /// Read until a partition has a batch's worth of rows or `deadline` passes.
    fn fill(&mut self, deadline: Instant) -> Result<()> {
        let Some(mut fetch) = self.fetch.take() else {
            return Err(RuntimeError::Internal("a kafka source without its queue".into()));
        };
        let result = self.fill_from(&mut fetch, deadline);
        self.fetch = Some(fetch);
        result
    }

    fn fill_from(&mut self, fetch: &mut FetchQueue, deadline: Instant) -> Result<()> {
        let topic = self.topic.clone();
        loop {
            if self.partitions.values().all(|p| p.done) {
                return Ok(());
            }
            self.serve_client()?;
            // no partition gets more than a batch's worth
            let fullest = self.partitions.values().map(|p| p.kinds.len()).max().unwrap_or(0);
            let room = self.batch_size.saturating_sub(fullest).max(1);
            let fetched = fetch.read(deadline.saturating_duration_since(Instant::now()), room);
            for i in 0..fetched.len() {
                match fetched.get(i) {
                    None => {}
                    Some(Fetch::Error { partition, offset, code }) => {
                        self.client_error(partition, code, Some(offset))?
                    }
                    Some(Fetch::Record(raw)) => {
                        let headers = if self.headers { raw.headers() } else { Vec::new() };
                        let record = Record {
                            topic: &topic,
                            partition: raw.partition,
                            offset: raw.offset,
                            timestamp: raw.timestamp,
                            key: raw.key,
                            value: raw.value,
                            headers: &headers,
                        };
                        self.take(&record)?;
                    }
                }
            }
            if self.partitions.values().any(|p| p.kinds.len() >= self.batch_size) || Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Serve the client's own queue (errors, commit replies, logs): the records come through
    /// the source's queue.
    fn serve_client(&mut self) -> Result<()> {
        for _ in 0..64 {
            match self.consumer.poll(Duration::ZERO) {
                None => return Ok(()),
                Some(Ok(m)) => {
                    return Err(RuntimeError::Internal(format!(
                        "kafka: a record of partition {} came outside the source's queue",
                        m.partition()
                    )))
                }
                Some(Err(KafkaError::PartitionEOF(id))) => {
                    self.client_error(id, RDKafkaErrorCode::PartitionEOF, None)?
                }
                Some(Err(e)) if is_fatal(e.rdkafka_error_code()) => return Err(self.err(e)),
                Some(Err(e)) => tracing::warn!(topic = %self.topic, error = %e, "kafka"),
            }
        }
        Ok(())
    }

    /// An error the client reported for partition `id` (its end at `offset`, with
    /// `enable.partition.eof`).
    fn client_error(&mut self, id: i32, code: RDKafkaErrorCode, offset: Option<i64>) -> Result<()> {
        if code == RDKafkaErrorCode::PartitionEOF {
            // reached the end: a bounded partition whose last offsets were not records
            // (transaction markers) is done here. (Not the client's position: it is already
            // past the records of this read that come after the end was seen.)
            if let Some(p) = self.partitions.get_mut(&id) {
                if p.end.is_some_and(|e| offset.unwrap_or(p.next).max(p.next) >= e) {
                    p.done = true;
                }
            }
            return Ok(());
        }
        if is_fatal(Some(code)) {
            return Err(self.err(format!("partition {id}: {code}")));
        }
        tracing::warn!(topic = %self.topic, partition = id, error = %code, "kafka");
        Ok(())
    }

    /// Append `record` to its partition's rows (or hand it to the bad-row policy).
    fn take(&mut self, record: &Record) -> Result<()> {
        let (id, offset) = (record.partition, record.offset);
        let Some(p) = self.partitions.get_mut(&id) else { return Ok(()) };
        if p.done || p.end.is_some_and(|e| offset >= e) {
            p.done = true;
            return Ok(());
        }
        p.next = offset + 1;
        if p.end.is_some_and(|e| p.next >= e) {
            p.done = true;
        }
        // a record without a value (a tombstone) is no row of an append-only table, and the
        // removal of its key from an upsert table
        if record.value.is_some() || self.options.upsert {
            let key_decoder = self.key_decoder.as_ref();
            let result = decode_into(&mut p.columns, &mut p.kinds, &self.fills, &self.decoder, key_decoder, record);
            if let Err(why) = result {
                let text = || String::from_utf8_lossy(record.value.or(record.key).unwrap_or_default()).into_owned();
                self.bad_rows.handle_record(&self.topic, id, offset, &why, text)?;
            }
        }
        Ok(())
    }

    /// Cut every partition's rows into a batch, ready to be handed on.
    fn cut(&mut self) -> Result<()> {
        for (id, p) in &mut self.partitions {
            if p.kinds.is_empty() {
                // what it read made no rows (skipped, dead-lettered, tombstones): all handed on
                self.handed.insert(*id, p.next);
                continue;
            }
            let arrays = p
                .columns
                .iter_mut()
                .zip(self.schema.fields())
                .map(|(c, f)| finish(c, f.data_type()))
                .collect::<Result<Vec<_>>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(p.kinds.len()));
            let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?;
            let kinds = std::mem::take(&mut p.kinds);
            let kinds = self.changelog.then(|| Arc::new(Int8Array::from(kinds)));
            self.ready.push_back(Ready { partition: *id, batch, kinds, next: p.next });
        }
        Ok(())
    }
}

fn is_fatal(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(code, Some(C::Fatal | C::TopicAuthorizationFailed | C::GroupAuthorizationFailed | C::UnknownTopic))
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // the last offsets read (the client sends them as it closes)
        self.next_commit = None;
        self.commit_offsets();
    }
}

impl Source for KafkaSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if !self.assigned {
            self.assigned = true;
            let ids: Vec<i32> = self.partition_ids(LEADER_WAIT)?.into_iter().filter(|id| self.owns(*id)).collect();
            self.assign(&ids, false)?;
            self.next_discovery = self.options.discovery.map(|every| Instant::now() + every);
        }
        if self.ready.is_empty() {
            self.commit_offsets();
            self.discover()?;
            self.fill(Instant::now() + LINGER)?;
            self.cut()?;
        }
        match self.ready.pop_front() {
            Some(ready) => {
                self.handed.insert(ready.partition, ready.next);
                self.last = Some(ready.partition);
                self.kinds = ready.kinds;
                Ok(Some(ready.batch))
            }
            None if self.partitions.values().all(|p| p.done) => Ok(None),
            None => {
                self.last = None;
                Ok(Some(RecordBatch::new_empty(Arc::clone(&self.schema))))
            }
        }
    }

    fn position(&self) -> Option<serde_json::Value> {
        let position = if self.assigned {
            let ends = self.partitions.iter().filter_map(|(id, p)| Some((*id, p.end?))).collect();
            Position { topic: self.topic.clone(), offsets: self.handed.clone(), ends, started: true }
        } else {
            // not started yet: what the checkpoint resumed from, or nothing (the startup mode)
            Position {
                topic: self.topic.clone(),
                offsets: self.resume.clone().unwrap_or_default(),
                ends: self.resume_ends.clone(),
                started: self.resume.is_some(),
            }
        };
        serde_json::to_value(position).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: Position = weir_runtime::checkpoint::from_json(position, &self.topic)?;
        if p.topic != self.topic {
            return Err(RuntimeError::Checkpoint(format!(
                "the checkpoint read topic '{}', the table now reads '{}'",
                p.topic, self.topic
            )));
        }
        if p.started {
            self.resume = Some(p.offsets);
            self.resume_ends = p.ends;
        }
        Ok(())
    }

    fn row_kinds(&mut self) -> Option<Arc<Int8Array>> {
        self.kinds.take()
    }

    fn split(&self) -> Option<u32> {
        self.last.map(|id| id as u32)
    }

    /// The partitions still read, or with rows not handed on yet, and the last one handed on.
    fn splits(&self) -> Vec<u32> {
        let pending = |id: &i32, p: &Partition| {
            !p.done || !p.kinds.is_empty() || self.handed.get(id).is_some_and(|h| *h < p.next)
        };
        self.partitions
            .iter()
            .filter(|(id, p)| pending(id, p) || self.last == Some(**id))
            .map(|(id, _)| *id as u32)
            .collect()
    }
}
