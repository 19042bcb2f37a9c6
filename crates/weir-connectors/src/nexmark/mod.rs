//! The `nexmark` connector: the Nexmark benchmark's event generator (people, auctions and
//! bids), in process, deterministic for a seed.
//!
//! ```sql
//! SET nexmark.events = 1000000;   -- the built-in person, auction and bid tables
//! SELECT auction, COUNT(*) FROM bid GROUP BY TUMBLE(date_time, INTERVAL '10' SECOND), auction;
//!
//! CREATE TABLE bids WITH (connector = 'nexmark', 'table' = 'bid', events = '1000', seed = '7');
//! ```
//!
//! The generator is Beam's (Flink's harness ports it): of every 50 event ids, 1 is a person,
//! 3 are auctions and 46 are bids; person and auction ids follow from the event id (from
//! 1000); bids mostly go to a hot auction from a hot bidder, otherwise to one of the last 100
//! auctions from one of the last 1000 people; event time advances `1/rate` s per event. Each
//! table generates only its own kind of events, so two tables over the same options (a join
//! of `auction` and `person`) see the same generator. Options (checked in
//! `weir_plan::nexmark`): `events` (all kinds, default unbounded), `rate` (events per second of
//! event time, default 10 000), `seed`, `max_emit_speed` (default true; false paces the rows to
//! `rate` on the wall clock), `splits` (generators on their own threads, on the same timeline
//! with disjoint ids, merged in turn), `out_of_order_group`, `base_time`.
//!
//! Two deliberate differences from Flink's generator: ids start at event 0 (Flink starts at
//! event 2, so person 1000 never appears), and bidders are `person id + 1000` once (Flink adds
//! it twice, so its bidders never match a person).

mod fields;
mod model;

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use weir_plan::nexmark::NexmarkOptions;
use weir_plan::{ConnectorError, ConnectorSpec, OptionSpec, OptionType, TableDef};
use weir_runtime::{Connector, ConnectorContext, Result, RuntimeError, Source, StartTime};

pub use fields::{Columns, Field, Shared};
pub use model::{kind_of, next_of_kind, splits, Kind, Split, Timeline};

/// With several splits, batches end at whole seconds of event time, so the splits, read in
/// turn, stay within about a second of each other (well inside the 4 s watermark delay).
const SLOT_MS: i64 = 1000;
/// Parallel instances take event numbers in blocks of this many: one of every kind's cycle
/// (1 person, 3 auctions, 46 bids).
const BLOCK: u64 = 50;
/// When pacing, a batch holds at most this much wall-clock time of events.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// One generator: the events of one split, of one kind.
struct Generator {
    kind: Kind,
    split: Split,
    timeline: Timeline,
    columns: Columns,
    schema: SchemaRef,
    batch_size: usize,
    slots: bool,
    /// Next event number (before the out-of-order shuffle).
    next: u64,
    /// Parallel instances: instance `k` of `n` takes the blocks of [`BLOCK`] event numbers
    /// whose index is `k` modulo `n` (1 on one thread: every number).
    stride: u64,
    /// Wall clock at event number 0, when pacing.
    paced_from: Option<Instant>,
}

impl Generator {
    fn end(&self) -> u64 {
        self.split.events.unwrap_or(u64::MAX)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let end = self.end();
        if self.next >= end {
            return Ok(None);
        }
        let t = self.timeline;
        let mut limit_ms = i64::MAX;
        if self.slots {
            let start = t.timestamp_ms(self.next) - t.base_ms;
            limit_ms = t.base_ms + (start / SLOT_MS + 1) * SLOT_MS;
        }
        if let Some(from) = self.paced_from {
            let due = t.base_ms + (from.elapsed() + PACE_SLICE).as_millis() as i64;
            limit_ms = limit_ms.min(due);
        }
        let mut n = self.next;
        while self.columns.rows() < self.batch_size && n < end {
            if t.group == 1 {
                // events in order: straight to the next one of this table's kind
                n = next_of_kind(self.kind, self.split.first_event_id, n, end, BLOCK, self.stride);
                if n >= end {
                    break;
                }
            }
            if limit_ms != i64::MAX && t.timestamp_ms(n) >= limit_ms {
                break;
            }
            let adjusted = t.adjust(n, end);
            let id = self.split.first_event_id + adjusted as i64;
            if kind_of(id) == self.kind {
                self.columns.push(self.kind, id, adjusted, &t);
            }
            n += 1;
            if self.stride > 1 && n.is_multiple_of(BLOCK) {
                // on to this instance's next block
                n += (self.stride - 1) * BLOCK;
            }
        }
        self.next = n;
        if let Some(from) = self.paced_from {
            if n < end {
                // wait until the next event is due (at most one slice)
                let due = Duration::from_millis((t.timestamp_ms(n) - t.base_ms).max(0) as u64);
                let wait = due.saturating_sub(from.elapsed()).min(PACE_SLICE);
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
        }
        let rows = self.columns.rows();
        let arrays = self.columns.finish();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(Some(RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?))
    }
}

/// Reads one of the generated tables.
pub struct NexmarkSource {
    inner: Inner,
    /// The event time of event 0.
    base_ms: i64,
}

enum Inner {
    One(Box<Generator>),
    /// Splits on their own threads (started at the first read), read in turn (so the order
    /// does not depend on timing).
    Many {
        /// The generators, until their threads start.
        idle: Vec<Generator>,
        splits: Vec<Option<Receiver<Generated>>>,
        /// Each split's next event number after the last batch returned.
        nexts: Vec<u64>,
        turn: usize,
        name: String,
    },
}

impl NexmarkSource {
    /// A source generating the columns of `schema` (a projection of the table's columns).
    /// `started` is the query's start: when pacing, event 0 is due then, and by default it is
    /// its event time.
    pub fn open(table: &TableDef, schema: SchemaRef, batch_size: usize, started: StartTime) -> Result<Self> {
        let options = NexmarkOptions::parse(table).map_err(RuntimeError::Source)?;
        let kind = Kind::of_table(options.table);
        let fields = schema
            .fields()
            .iter()
            .map(|f| {
                Field::of(kind, f.name()).ok_or_else(|| {
                    RuntimeError::Source(format!(
                        "table '{}': the nexmark table '{}' has no column '{}'",
                        table.name,
                        options.table,
                        f.name()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let base_ms = options.base_time_ms.unwrap_or(started.wall_ms);
        let timeline = Timeline::new(base_ms, options.rate, options.splits, options.out_of_order_group);
        warn_if_late(table, &timeline, options.out_of_order_group, options.splits);
        let shared = Shared::new(options.seed);
        let paced_from = (!options.max_emit_speed).then_some(started.instant);
        let batch_size = batch_size.max(1);
        let mut gens: Vec<Generator> = splits(options.events, options.splits)
            .into_iter()
            .map(|split| Generator {
                kind,
                split,
                timeline,
                columns: Columns::new(Arc::clone(&shared), &fields, batch_size),
                schema: Arc::clone(&schema),
                batch_size,
                slots: options.splits > 1,
                next: 0,
                stride: 1,
                paced_from,
            })
            .collect();
        let inner = if gens.len() == 1 {
            Inner::One(Box::new(gens.remove(0)))
        } else {
            let n = gens.len();
            Inner::Many { idle: gens, splits: Vec::new(), nexts: vec![0; n], turn: 0, name: options.table.to_string() }
        };
        Ok(Self { inner, base_ms })
    }

    /// Instance `k` of `n` parallel ones, which together generate the events one source does:
    /// this one the blocks of [`BLOCK`] event numbers whose index is `k` modulo `n` (whole
    /// blocks, so that every instance has each kind of event: the kind follows the id modulo
    /// 50). `None` with the `splits` option, whose generators already run on threads of their
    /// own.
    fn parallel(mut self, k: u64, n: u64) -> Option<Self> {
        let Inner::One(g) = &mut self.inner else { return None };
        g.next = k * BLOCK;
        g.stride = n;
        Some(self)
    }
}

/// Out-of-order groups, and splits a second apart, put rows behind the watermark when the
/// event time they span is more than the table's watermark delay: say so before they are
/// counted late.
fn warn_if_late(table: &TableDef, timeline: &Timeline, group: u64, splits: u32) {
    let Some(watermark) = &table.watermark else { return };
    let delay_ms = watermark.delay_nanos / 1_000_000;
    // a group's first and last events are this far apart
    let group_ms = if group > 1 { timeline.timestamp_ms(group - 1) - timeline.timestamp_ms(0) } else { 0 };
    let drift_ms = if splits > 1 { SLOT_MS } else { 0 };
    if group_ms + drift_ms <= delay_ms {
        return;
    }
    let (why, fix) = match (group_ms > 0, drift_ms > 0) {
        (true, true) => {
            (format!("groups of {group} events, and {splits} splits up to {SLOT_MS} ms apart"), "shorten the groups")
        }
        (true, false) => (format!("groups of {group} events"), "shorten the groups"),
        _ => (format!("{splits} splits up to {SLOT_MS} ms apart"), "use one split"),
    };
    tracing::warn!(
        "table '{}': its events are out of order by up to {} ms of event time ({why}), more than its watermark delay \
         ({delay_ms} ms): some rows will be late (counted, and dropped by windows); declare a longer WATERMARK \
         delay, or {fix}",
        table.name,
        group_ms + drift_ms,
    );
}

/// A split's batch and the generator's next event number after it.
type Generated = Result<Option<(RecordBatch, u64)>>;

/// Where a nexmark source is: the event time of event 0, each split's next event number, and
/// whose turn it is.
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    base_ms: i64,
    next: Vec<u64>,
    turn: usize,
}

impl Generator {
    /// Continue at event number `next` of a timeline starting at `base_ms`; when pacing, as if
    /// event `next` were due now.
    fn seek(&mut self, base_ms: i64, next: u64) {
        self.timeline.base_ms = base_ms;
        self.next = next;
        if self.paced_from.is_some() {
            let ahead = Duration::from_millis((self.timeline.timestamp_ms(next) - base_ms).max(0) as u64);
            let now = Instant::now();
            self.paced_from = Some(now.checked_sub(ahead).unwrap_or(now));
        }
    }
}

/// Start a generator thread per split.
fn spawn(gens: Vec<Generator>, name: &str) -> Result<Vec<Option<Receiver<Generated>>>> {
    gens.into_iter()
        .enumerate()
        .map(|(i, mut g)| {
            let (tx, rx) = sync_channel(2);
            std::thread::Builder::new()
                .name(format!("nexmark-{name}-{i}"))
                .spawn(move || loop {
                    let batch = g.next_batch().map(|b| b.map(|b| (b, g.next)));
                    let last = !matches!(batch, Ok(Some(_)));
                    // the reader went away (the query stopped): stop too
                    if tx.send(batch).is_err() || last {
                        break;
                    }
                })
                .map(|_| Some(rx))
                .map_err(|e| RuntimeError::Source(format!("cannot start a generator thread: {e}")))
        })
        .collect()
}

/// The `nexmark` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct NexmarkConnector;

impl Connector for NexmarkConnector {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "nexmark",
            doc: "the Nexmark benchmark's people, auctions and bids, generated in process",
            source: true,
            sink: false,
            loose_keys: true,
            metadata: vec![],
            options: vec![
                OptionSpec::new(
                    "table",
                    OptionType::Choice(&["person", "auction", "bid"]),
                    "which events the table holds (default: the table's name); keys may be written Flink's way (`max-emit-speed`)",
                ),
                OptionSpec::new("events", OptionType::Integer, "events of all three kinds in all; `0` = unbounded (also `SET nexmark.events`, as for every option here)")
                    .default("0"),
                OptionSpec::new("rate", OptionType::Positive, "events per second of event time (the density of event time, not a speed limit)").default("10000"),
                OptionSpec::new("seed", OptionType::Integer, "seed of the field values (ids, kinds and times do not depend on it)").default("0"),
                OptionSpec::new(
                    "max_emit_speed",
                    OptionType::Bool,
                    "`false`: emit at `rate` events per wall-clock second (and start event time at the wall clock)",
                )
                .default("true"),
                OptionSpec::new("splits", OptionType::Positive, "generators on threads of their own, each with a disjoint block of ids, on the same timeline (Flink's parallel sources), read in turn; at most 64")
                    .default("1"),
                OptionSpec::new("out_of_order_group", OptionType::Positive, "shuffle events within groups of this many (Beam's out-of-order groups); a group spanning more event time than the watermark delay makes rows late")
                    .default("1"),
                OptionSpec::new(
                    "base_time",
                    OptionType::Timestamp,
                    "event time of the first event, or `now` for the wall clock (the default when pacing; else `2015-07-15 00:00:00`)",
                ),
            ],
        }
    }

    fn check(&self, table: &TableDef) -> std::result::Result<(), ConnectorError> {
        NexmarkOptions::parse(table).map(|_| ()).map_err(ConnectorError::invalid)
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        tracing::info!(table = %table.name, columns = schema.fields().len(), "generating nexmark events");
        Ok(Box::new(NexmarkSource::open(table, schema, ctx.batch_size, ctx.start_time())?))
    }

    fn splittable(&self, table: &TableDef, _: &ConnectorContext) -> bool {
        NexmarkOptions::parse(table).is_ok_and(|o| o.splits <= 1)
    }

    fn splits_interleave(&self, _: &TableDef) -> bool {
        // split k of n takes every nth block of event numbers
        true
    }

    fn open_splits(
        &self,
        table: &TableDef,
        schema: SchemaRef,
        ctx: &ConnectorContext,
        n: usize,
    ) -> Result<Option<Vec<Box<dyn Source>>>> {
        let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(n);
        for k in 0..n {
            let source = NexmarkSource::open(table, Arc::clone(&schema), ctx.batch_size, ctx.start_time())?;
            match source.parallel(k as u64, n as u64) {
                Some(s) => sources.push(Box::new(s)),
                None => return Ok(None),
            }
        }
        tracing::info!(table = %table.name, splits = n, "generating nexmark events in parallel");
        Ok(Some(sources))
    }
}

impl Source for NexmarkSource {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match &mut self.inner {
            Inner::One(g) => g.next_batch(),
            Inner::Many { idle, splits, nexts, turn, name } => {
                if !idle.is_empty() {
                    *splits = spawn(std::mem::take(idle), name)?;
                }
                while splits.iter().any(Option::is_some) {
                    let i = *turn % splits.len();
                    *turn += 1;
                    let Some(rx) = &splits[i] else { continue };
                    match rx.recv() {
                        Ok(Ok(Some((batch, next)))) => {
                            nexts[i] = next;
                            return Ok(Some(batch));
                        }
                        Ok(Err(e)) => return Err(e),
                        Ok(Ok(None)) => splits[i] = None,
                        Err(_) => {
                            return Err(RuntimeError::Source(format!("nexmark generator {i} stopped before its end")))
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    /// Each split's next event number (of the batches returned, not those generated ahead).
    fn position(&self) -> Option<serde_json::Value> {
        let base_ms = self.base_ms;
        let position = match &self.inner {
            Inner::One(g) => Position { base_ms, next: vec![g.next], turn: 0 },
            Inner::Many { nexts, turn, .. } => Position { base_ms, next: nexts.clone(), turn: *turn },
        };
        serde_json::to_value(position).ok()
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: Position = weir_runtime::checkpoint::from_json(position, "a nexmark table's position")?;
        let bad = || RuntimeError::Checkpoint("the saved nexmark position has another number of splits".into());
        match &mut self.inner {
            Inner::One(g) => g.seek(p.base_ms, *p.next.first().ok_or_else(bad)?),
            Inner::Many { idle, nexts, turn, .. } => {
                if idle.len() != p.next.len() {
                    return Err(bad());
                }
                for (g, next) in idle.iter_mut().zip(&p.next) {
                    g.seek(p.base_ms, *next);
                }
                (*nexts, *turn) = (p.next, p.turn);
            }
        }
        self.base_ms = p.base_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
