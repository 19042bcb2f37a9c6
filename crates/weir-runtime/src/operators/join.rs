//! The join operator: two inputs (left = side 0, right = side 1), rows matched on equi-join
//! keys and a residual filter, each side's rows kept in a [`JoinRows`] until they can no
//! longer match.
//!
//! ```text
//!   batch of side s ─► keys ─► probe the other side's rows ─► candidate pairs ─► filter ─► matches
//!                           └► keep the rows (until: interval bound | TTL | forever)
//!   watermark w ─► forget rows with until < w (a left outer interval join emits the
//!                  unmatched ones NULL-padded) ─► forward w
//! ```
//!
//! Modes (`weir_plan::JoinState`): an **interval** join drops rows whose time is behind the
//! watermark when they arrive (counted as late: their matches may be gone) and is
//! append-only; a **regular** join keeps rows for a TTL, and over a changelog matches
//! retractions with the rows they take back (`-U`/`-D` out for each match), and as a left
//! outer join retracts a NULL-padded row when its first match arrives; a **lookup** join
//! reads the right table whole first and keeps no left rows.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion_common::arrow::array::{new_null_array, Array, ArrayRef, AsArray, UInt32Array};
use datafusion_common::arrow::compute::{cast, interleave, prep_null_mask_filter, take, take_record_batch};
use datafusion_common::arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_common::tree_node::{Transformed, TreeNode};
use datafusion_physical_expr::expressions::Column;
use datafusion_physical_expr::utils::collect_columns;
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::{RowTime, StateTtl};

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::{Metrics, StateSize};
use crate::message::{Message, Nanos, RowKind, StreamBatch, NO_WATERMARK};
use crate::operator::Operator;
use crate::operators::window_aggregate::to_nanos;
use crate::state::checkpoint::{concat_saved, shift_ids, KeyFilter, OperatorSnapshot};
use crate::state::join_rows::{JoinRows, Kept};

const LEFT: usize = 0;
const RIGHT: usize = 1;

/// How the join bounds its state (see the module docs).
#[derive(Debug, Clone, Copy)]
pub enum JoinMode {
    /// Rows kept until the watermark passes their `until`; rows behind the watermark are late.
    Interval {
        /// Each side's event time.
        time: [RowTime; 2],
        /// Each side's last possible match time.
        until: [RowTime; 2],
    },
    /// Rows kept for the TTL (in event time: after their time, or for a side without one
    /// after the next watermark), or forever.
    Regular {
        /// How long rows are kept.
        ttl: Option<StateTtl>,
        /// Each side's event time, if it has one.
        times: [Option<RowTime>; 2],
    },
    /// The right side read whole first; left rows not kept.
    Lookup,
}

/// What a join emits for its matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutput {
    /// The pairs of matching rows (inner and outer joins).
    Pairs,
    /// Each left row once, when its first match comes (`IN`, `EXISTS`).
    Semi,
    /// Each left row that never found a match, once nothing can match it any more (`NOT
    /// EXISTS`).
    Anti,
}

/// What a join operator is built from.
pub struct JoinSpec {
    /// Keep each side's unmatched rows, NULL-padded (left outer: the left side's; full outer:
    /// both).
    pub outer: [bool; 2],
    /// Pairs, or left rows only.
    pub output_rows: JoinOutput,
    /// How state is bounded.
    pub mode: JoinMode,
    /// Equi-join keys of each side.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The rest of the condition, over output rows.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Schema of each side's rows.
    pub sides: [SchemaRef; 2],
    /// The left columns, then the right ones: the pairs the filter is evaluated on.
    pub pairs: SchemaRef,
    /// Output schema: `pairs`, or the left columns of a semi or anti join.
    pub output: SchemaRef,
    /// Whether the output is a changelog.
    pub changelog: bool,
}

/// The rest of a join's condition, over the output columns it reads only.
struct Residual {
    expr: Arc<dyn PhysicalExpr>,
    /// The output columns it reads, in order.
    columns: Vec<usize>,
    /// Their schema (`expr`'s columns are numbered in it).
    schema: SchemaRef,
}

impl Residual {
    fn new(expr: &Arc<dyn PhysicalExpr>, output: &SchemaRef) -> Result<Self> {
        let mut columns: Vec<usize> = collect_columns(expr).iter().map(|c| c.index()).collect();
        columns.sort_unstable();
        let expr = Arc::clone(expr)
            .transform(|e| {
                let Some(c) = e.downcast_ref::<Column>() else { return Ok(Transformed::no(e)) };
                let at = columns.binary_search(&c.index()).unwrap_or_default();
                Ok(Transformed::yes(Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>))
            })?
            .data;
        let schema = Arc::new(output.project(&columns)?);
        Ok(Self { expr, columns, schema })
    }
}

/// What a join's checkpoint saves besides its rows: the watermark, the rows waiting for their
/// TTL to start, and each side's own watermark (which judges the side's late rows).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Meta {
    Sides(Nanos, Vec<(usize, u32)>, [Nanos; 2]),
    /// Checkpoints written before the sides' watermarks were saved.
    Before(Nanos, Vec<(usize, u32)>),
}

impl Meta {
    fn parts(self) -> (Nanos, Vec<(usize, u32)>, [Nanos; 2]) {
        match self {
            Meta::Sides(w, pending, sides) => (w, pending, sides),
            Meta::Before(w, pending) => (w, pending, [NO_WATERMARK; 2]),
        }
    }
}

/// A streaming join.
pub struct JoinOp {
    spec: JoinSpec,
    filter: Option<Residual>,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    rows: [JoinRows; 2],
    watermark: Nanos,
    /// Each side's own watermark (rows behind it are late).
    side_watermarks: [Nanos; 2],
    /// Regular join in event time: rows waiting for the next watermark to start their TTL.
    pending: Vec<(usize, u32)>,
    metrics: Arc<Metrics>,
}

/// An output row: both sides from candidate row `r`, or one side's row with the other's
/// columns NULL.
#[derive(Clone, Copy)]
enum Out {
    Pair(usize),
    /// The incoming batch's row `i`.
    Incoming(usize),
    /// The kept row (the other side's) of candidate `r`.
    Candidate(usize),
}

fn wall_clock() -> Nanos {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn row_times(batch: &RecordBatch, t: RowTime) -> Result<Vec<Nanos>> {
    let ns = to_nanos(batch.column(t.column))?;
    // a NULL time can never be matched by time: treat it as already past
    Ok((0..ns.len())
        .map(|i| if ns.is_null(i) { Nanos::MIN } else { ns.value(i).saturating_add(t.offset_nanos) })
        .collect())
}

impl JoinOp {
    /// A join operator.
    pub fn new(spec: JoinSpec, metrics: Arc<Metrics>) -> Result<Self> {
        let key_types: Vec<DataType> = spec.keys[LEFT]
            .iter()
            .map(|k| k.data_type(spec.sides[LEFT].as_ref()))
            .collect::<std::result::Result<_, _>>()?;
        // a join without equality keys matches every row with every row: one constant key
        let key_fields = match key_types.is_empty() {
            true => vec![SortField::new(DataType::Boolean)],
            false => key_types.iter().map(|t| SortField::new(t.clone())).collect(),
        };
        let key_converter = RowConverter::new(key_fields)?;
        let hasher = ahash::RandomState::new();
        let rows = [JoinRows::new(&spec.sides[LEFT], hasher.clone())?, JoinRows::new(&spec.sides[RIGHT], hasher)?];
        let filter = spec.filter.as_ref().map(|f| Residual::new(f, &spec.pairs)).transpose()?;
        Ok(Self {
            spec,
            filter,
            key_types,
            key_converter,
            rows,
            watermark: NO_WATERMARK,
            side_watermarks: [NO_WATERMARK; 2],
            pending: Vec::new(),
            metrics,
        })
    }

    /// How long a row stored now can match: per row for an interval join.
    fn until(&self, side: usize, batch: &RecordBatch) -> Result<Option<Vec<Nanos>>> {
        Ok(match self.spec.mode {
            JoinMode::Interval { until, .. } => Some(row_times(batch, until[side])?),
            JoinMode::Regular { ttl: Some(t), times } if t.event_time => match times[side] {
                Some(time) => Some(row_times(batch, time)?.into_iter().map(|x| x.saturating_add(t.nanos)).collect()),
                None => None,
            },
            _ => None,
        })
    }

    fn expire_now(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let now = match self.spec.mode {
            JoinMode::Regular { ttl: Some(StateTtl { event_time: false, .. }), .. } => wall_clock(),
            JoinMode::Regular { ttl: None, .. } | JoinMode::Lookup => return Ok(()),
            _ => self.watermark,
        };
        if now == NO_WATERMARK {
            return Ok(());
        }
        // an outer interval join pads the rows of its outer sides that found no match; an
        // anti join emits its left rows that found none
        let interval = matches!(self.spec.mode, JoinMode::Interval { .. });
        let anti = self.spec.output_rows == JoinOutput::Anti;
        let pad = [(self.spec.outer[LEFT] || anti) && interval, self.spec.outer[RIGHT] && interval];
        for side in [LEFT, RIGHT] {
            if let Some(rows) = self.rows[side].expire(now, |k: &Kept| pad[side] && k.matches == 0)? {
                let n = rows.first().map(|c| c.len()).unwrap_or(0);
                out.push(Message::Data(StreamBatch::new(self.unmatched(side, rows, n)?)));
            }
        }
        Ok(())
    }

    /// Rows of one side that found no match, as output rows: NULL-padded, or (left rows of a
    /// semi or anti join) as they are.
    fn unmatched(&self, side: usize, rows: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
        let nulls = |s: usize| self.spec.sides[s].fields().iter().map(|f| new_null_array(f.data_type(), n));
        let columns: Vec<ArrayRef> = match (side, self.spec.output_rows) {
            (LEFT, JoinOutput::Pairs) => rows.into_iter().chain(nulls(RIGHT)).collect(),
            (LEFT, _) => rows,
            _ => nulls(LEFT).chain(rows).collect(),
        };
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.spec.output), columns, &options)?)
    }

    /// Key rows of a batch, and which rows have a NULL key (they match nothing).
    fn keys(&self, side: usize, batch: &RecordBatch) -> Result<(datafusion_common::arrow::row::Rows, Vec<bool>)> {
        let n = batch.num_rows();
        let mut cols = Vec::with_capacity(self.key_types.len());
        for (k, t) in self.spec.keys[side].iter().zip(&self.key_types) {
            let a = k.evaluate(batch)?.into_array(n)?;
            cols.push(if a.data_type() == t { a } else { cast(&a, t)? });
        }
        if cols.is_empty() {
            cols.push(Arc::new(datafusion_common::arrow::array::BooleanArray::from(vec![true; n])));
        }
        let mut null = vec![false; n];
        for c in &cols {
            if c.null_count() > 0 {
                for (i, x) in null.iter_mut().enumerate() {
                    *x |= c.is_null(i);
                }
            }
        }
        Ok((self.key_converter.convert_columns(&cols)?, null))
    }

    fn process(&mut self, side: usize, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let other = 1 - side;
        let (keys, null_key) = self.keys(side, batch)?;
        let late: Vec<bool> = match self.spec.mode {
            // behind its own side's watermark (where that side was when the batch came): with
            // one thread reading the side whose watermark is lowest, the join's watermark then;
            // in parallel, the same whatever order the sides' batches arrive in
            JoinMode::Interval { time, .. } if self.side_watermarks[side] != NO_WATERMARK => {
                let own = self.side_watermarks[side];
                row_times(batch, time[side])?.into_iter().map(|t| t < own).collect()
            }
            _ => vec![false; n],
        };
        let late_count = late.iter().filter(|l| **l).count();
        if late_count > 0 {
            self.metrics.dropped(late_count as u64, 0);
        }
        let until = self.until(side, batch)?;
        // a row is kept while a later row of the other side can still match it: in an interval
        // join, one not late on its side (at or past that side's watermark, which is what the
        // late check above judges it by; Flink's time-interval join uses the lower of the two
        // watermarks); a window join thus keeps only the rows of the side that closes a window
        // first (the other's probe them)
        let horizon = match self.spec.mode {
            JoinMode::Interval { .. } => self.watermark.max(self.side_watermarks[other]),
            _ => self.watermark,
        };

        // candidate pairs, in the order of the incoming rows
        // each key hashed once, for the other side's rows and its own (they share a hasher)
        let hashes: Vec<u64> = (0..n).map(|i| self.rows[side].hash(keys.row(i).as_ref())).collect();
        let (mut probe, mut stored, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            if late[i] || null_key[i] {
                continue;
            }
            scratch.clear();
            self.rows[other].matches(keys.row(i).as_ref(), hashes[i], &mut scratch);
            for s in &scratch {
                probe.push(i as u32);
                stored.push(*s);
            }
        }
        // the rest of the condition on the columns it reads, then the pairs that pass as
        // output rows (`compact[c]`: candidate `c`'s row among them)
        let passed = self.pass(side, batch, &probe, &stored)?;
        let (mut compact, mut passing) = (Vec::with_capacity(passed.len()), 0u32);
        for p in &passed {
            compact.push(passing);
            passing += u32::from(*p);
        }
        let candidates = if passing == 0 {
            None
        } else if passing as usize == probe.len() {
            Some(self.candidates(side, batch, &probe, &stored)?)
        } else {
            let picked = |v: &[u32]| v.iter().zip(&passed).filter(|(_, p)| **p).map(|(x, _)| *x).collect::<Vec<_>>();
            Some(self.candidates(side, batch, &picked(&probe), &picked(&stored))?)
        };

        // in input order: matches out, counts kept, rows stored or taken back
        let stores_side = !(side == LEFT && matches!(self.spec.mode, JoinMode::Lookup));
        let own = if stores_side { Some(self.rows[side].hold(batch.columns())?) } else { None };
        let regular = matches!(self.spec.mode, JoinMode::Regular { .. });
        let output_rows = self.spec.output_rows;
        let pairs = output_rows == JoinOutput::Pairs;
        // whether the kept rows of the other side count their matches (to be padded, or
        // emitted by a semi join at the first, or by an anti join if there is none)
        let counts_other = self.spec.outer[other] || (other == LEFT && !pairs);
        let (mut outs, mut kinds) = (Vec::new(), Vec::new());
        let mut c = 0;
        for i in 0..n {
            if late[i] {
                continue;
            }
            let kind = input.kind(i);
            let key = keys.row(i);
            // a retraction takes back the matches of a row this side kept; a row it no longer
            // keeps (forgotten by the TTL) has matches nobody knows: nothing to take back
            let mut taken = None;
            if kind.is_retraction() && stores_side && !null_key[i] {
                if let Some(own) = &own {
                    taken = self.rows[side].find_equal(key.as_ref(), own, i)?;
                }
                if taken.is_none() {
                    while c < probe.len() && probe[c] as usize == i {
                        c += 1;
                    }
                    continue;
                }
            }
            let mut matches = 0u32;
            while c < probe.len() && probe[c] as usize == i {
                if passed[c] {
                    matches += 1;
                    let r = compact[c] as usize;
                    let kept = if counts_other { self.rows[other].get_mut(stored[c]) } else { None };
                    match kept {
                        // a retraction (a regular left join over a changelog): a pair never
                        // emitted (the left row came after this one was forgotten, or never
                        // matched it) is not taken back
                        Some(k) if kind.is_retraction() && k.matches > 0 => {
                            k.matches -= 1;
                            outs.push(Out::Pair(r));
                            kinds.push(kind);
                            if regular && k.matches == 0 {
                                outs.push(Out::Candidate(r));
                                kinds.push(RowKind::Insert);
                            }
                        }
                        Some(_) if kind.is_retraction() => {}
                        Some(k) => {
                            let first = k.matches == 0;
                            k.matches += 1;
                            if pairs {
                                if regular && first {
                                    outs.push(Out::Candidate(r));
                                    kinds.push(RowKind::Delete);
                                }
                                outs.push(Out::Pair(r));
                                kinds.push(kind);
                            } else if first && output_rows == JoinOutput::Semi {
                                outs.push(Out::Candidate(r));
                                kinds.push(kind);
                            }
                        }
                        None if pairs => {
                            outs.push(Out::Pair(r));
                            kinds.push(kind);
                        }
                        None => {}
                    }
                }
                c += 1;
            }
            let keeps = stores_side && !null_key[i];
            let row_until = until.as_ref().map(|u| u[i]);
            let expired = row_until.is_some_and(|u| u < horizon);
            if kind.is_retraction() {
                if let Some(slot) = taken {
                    self.rows[side].remove(slot);
                }
                if self.spec.outer[side] && matches == 0 {
                    outs.push(Out::Incoming(i));
                    kinds.push(kind);
                }
                continue;
            }
            let stores = keeps && !expired;
            // a row alone for good: padded by an outer join, emitted by an anti join; a left
            // row with a match already: emitted by a semi join
            let alone = matches == 0 && (regular || !stores || null_key[i]);
            let emits = match output_rows {
                JoinOutput::Pairs => self.spec.outer[side] && alone,
                JoinOutput::Semi => side == LEFT && matches > 0,
                JoinOutput::Anti => side == LEFT && alone,
            };
            if emits {
                outs.push(Out::Incoming(i));
                kinds.push(kind);
            }
            if let (true, Some(own)) = (stores, &own) {
                let u = match (row_until, self.spec.mode) {
                    (Some(u), _) => Some(u),
                    (None, JoinMode::Regular { ttl: Some(t), .. }) if !t.event_time => {
                        Some(wall_clock().saturating_add(t.nanos))
                    }
                    _ => None,
                };
                let slot = self.rows[side].insert(key.as_ref(), hashes[i], own, i, u);
                if let Some(k) = self.rows[side].get_mut(slot) {
                    k.matches = matches;
                }
                if let JoinMode::Regular { ttl: Some(t), .. } = self.spec.mode {
                    if t.event_time && row_until.is_none() {
                        self.pending.push((side, slot));
                    }
                }
            }
        }
        if let Some(own) = own {
            self.rows[side].release(own);
        }
        if !outs.is_empty() {
            let batch = self.assemble(side, batch, candidates.as_ref(), &outs)?;
            out.push(Message::Data(if self.spec.changelog {
                StreamBatch::changelog(batch, &kinds)
            } else {
                StreamBatch::new(batch)
            }));
        }
        if matches!(self.spec.mode, JoinMode::Regular { ttl: Some(StateTtl { event_time: false, .. }), .. }) {
            self.expire_now(out)?;
        }
        Ok(())
    }

    /// The candidate pairs as output rows.
    fn candidates(&self, side: usize, batch: &RecordBatch, probe: &[u32], stored: &[u32]) -> Result<RecordBatch> {
        let idx = UInt32Array::from(probe.to_vec());
        let mine =
            batch.columns().iter().map(|c| take(c.as_ref(), &idx, None)).collect::<std::result::Result<Vec<_>, _>>()?;
        let theirs = self.rows[1 - side].columns_of(stored)?;
        let columns = if side == LEFT { [mine, theirs].concat() } else { [theirs, mine].concat() };
        let options = RecordBatchOptions::new().with_row_count(Some(probe.len()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.spec.pairs), columns, &options)?)
    }

    /// Which candidate pairs (row `probe[c]` of the batch with kept row `stored[c]`) meet the
    /// rest of the condition, evaluated on the columns it reads only.
    fn pass(&self, side: usize, batch: &RecordBatch, probe: &[u32], stored: &[u32]) -> Result<Vec<bool>> {
        let n = probe.len();
        let Some(filter) = &self.filter else { return Ok(vec![true; n]) };
        if n == 0 {
            return Ok(Vec::new());
        }
        let left_width = self.spec.sides[LEFT].fields().len();
        let idx = UInt32Array::from(probe.to_vec());
        let mine = |c: usize| (c < left_width) == (side == LEFT);
        let at = |c: usize| if c < left_width { c } else { c - left_width };
        let theirs: Vec<usize> = filter.columns.iter().filter(|c| !mine(**c)).map(|c| at(*c)).collect();
        let mut theirs = self.rows[1 - side].some_columns_of(stored, &theirs)?.into_iter();
        let mut columns = Vec::with_capacity(filter.columns.len());
        for &c in &filter.columns {
            columns.push(match mine(c) {
                true => take(batch.column(at(c)).as_ref(), &idx, None)?,
                false => theirs.next().ok_or_else(|| RuntimeError::Internal("a join column is missing".into()))?,
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let input = RecordBatch::try_new_with_options(Arc::clone(&filter.schema), columns, &options)?;
        let mask = filter.expr.evaluate(&input)?.into_array(n)?;
        let Some(mask) = mask.as_boolean_opt() else {
            return Err(RuntimeError::Internal(format!("join condition returned {}", mask.data_type())));
        };
        let mask = if mask.null_count() > 0 { prep_null_mask_filter(mask) } else { mask.clone() };
        Ok(mask.values().iter().collect())
    }

    /// The output rows `outs` as one batch.
    fn assemble(
        &self,
        side: usize,
        batch: &RecordBatch,
        candidates: Option<&RecordBatch>,
        outs: &[Out],
    ) -> Result<RecordBatch> {
        let n = outs.len();
        if let Some(c) = candidates {
            // only pairs: each candidate at most once, in order (the usual case)
            let pairs: Option<Vec<u32>> =
                outs.iter().map(|o| if let Out::Pair(r) = *o { Some(r as u32) } else { None }).collect();
            if let Some(pairs) = pairs {
                return Ok(if n == c.num_rows() {
                    c.clone()
                } else {
                    take_record_batch(c, &UInt32Array::from(pairs))?
                });
            }
        }
        let left_width = self.spec.sides[LEFT].fields().len();
        let width =
            if self.spec.output_rows == JoinOutput::Pairs { self.spec.pairs.fields().len() } else { left_width };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
        for (col, field) in self.spec.pairs.fields().iter().enumerate().take(width) {
            let incoming_side = (col < left_width) == (side == LEFT);
            // sources: 0 = candidate rows, 1 = the incoming batch, 2 = NULL
            let first: ArrayRef = match candidates {
                Some(c) => Arc::clone(c.column(col)),
                None => new_null_array(field.data_type(), 0),
            };
            let second: ArrayRef = match incoming_side {
                true => Arc::clone(batch.column(if side == LEFT { col } else { col - left_width })),
                false => new_null_array(field.data_type(), 0),
            };
            let null = new_null_array(field.data_type(), 1);
            let indices: Vec<(usize, usize)> = outs
                .iter()
                .map(|o| match *o {
                    Out::Pair(r) => (0, r),
                    Out::Candidate(r) if !incoming_side => (0, r),
                    Out::Incoming(i) if incoming_side => (1, i),
                    _ => (2, 0),
                })
                .collect();
            columns.push(interleave(&[first.as_ref(), second.as_ref(), null.as_ref()], &indices)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.spec.output), columns, &options)?)
    }
}

impl Operator for JoinOp {
    fn name(&self) -> &'static str {
        match self.spec.mode {
            JoinMode::Interval { .. } => "IntervalJoin",
            JoinMode::Regular { .. } => "Join",
            JoinMode::Lookup => "LookupJoin",
        }
    }

    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.process(LEFT, batch, out)
    }

    fn process_side(&mut self, side: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.process(side.min(RIGHT), batch, out)
    }

    fn on_side_watermark(&mut self, side: usize, watermark: Nanos) {
        if let Some(w) = self.side_watermarks.get_mut(side) {
            *w = (*w).max(watermark);
        }
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        if let JoinMode::Regular { ttl: Some(t), .. } = self.spec.mode {
            // rows stored since the last watermark start their TTL now
            for (side, slot) in std::mem::take(&mut self.pending) {
                self.rows[side].schedule(slot, watermark.saturating_add(t.nanos));
            }
        }
        self.expire_now(out)?;
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Each side's kept rows (with their columns, keys, bounds and match counts), the
    /// watermark, and which rows wait for the next watermark to start their TTL.
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        let pending: Vec<(usize, u32)> = self.pending.clone();
        let mut snapshot = OperatorSnapshot::with_meta(&Meta::Sides(self.watermark, pending, self.side_watermarks))?;
        for side in [LEFT, RIGHT] {
            if let Some(batch) = self.rows[side].to_batch(&self.spec.sides[side])? {
                snapshot.push(if side == LEFT { "left" } else { "right" }, batch);
            }
        }
        Ok(snapshot)
    }

    /// Each side's rows whose join keys this instance owns (the keys evaluated on the saved
    /// rows, as the exchange evaluates them on the side's rows), slots numbered apart per old
    /// instance; the watermark (they agree) and the rows waiting for their TTL.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        let mut watermark = None;
        let mut sides_seen = [NO_WATERMARK; 2];
        let mut pending: Vec<(usize, u32)> = Vec::new();
        let mut sides: [Vec<RecordBatch>; 2] = [Vec::new(), Vec::new()];
        // slots of each old instance after those of the ones before
        let mut offset = 0u32;
        for mut part in parts.into_iter().filter(|p| !p.is_empty()) {
            let (w, waiting, own) = part.meta::<Meta>(self.name())?.parts();
            watermark = Some(watermark.map_or(w, |m: Nanos| m.max(w)));
            sides_seen = [sides_seen[0].max(own[0]), sides_seen[1].max(own[1])];
            let mut next = offset;
            for side in [LEFT, RIGHT] {
                let Some(batch) = part.take(if side == LEFT { "left" } else { "right" }) else { continue };
                let (batch, after) = shift_ids(&batch, 3, offset)?;
                next = next.max(after);
                let rows = batch.project(&(4..batch.num_columns()).collect::<Vec<_>>())?;
                let keys = self.spec.keys[side]
                    .iter()
                    .map(|k| k.evaluate(&rows).and_then(|v| v.into_array(rows.num_rows())))
                    .collect::<datafusion_common::Result<Vec<_>>>()?;
                let keep = datafusion_common::arrow::array::BooleanArray::from(owned(&keys)?);
                sides[side].push(datafusion_common::arrow::compute::filter_record_batch(&batch, &keep)?);
            }
            pending.extend(waiting.into_iter().map(|(side, slot)| (side, slot + offset)));
            offset = next;
        }
        let Some(watermark) = watermark else { return Ok(OperatorSnapshot::empty()) };
        let mut snapshot = OperatorSnapshot::with_meta(&Meta::Sides(watermark, pending, sides_seen))?;
        for (side, batches) in sides.iter().enumerate() {
            if let Some(batch) = concat_saved(batches)? {
                snapshot.push(if side == LEFT { "left" } else { "right" }, batch);
            }
        }
        Ok(snapshot)
    }

    fn restore(&mut self, mut snapshot: OperatorSnapshot) -> Result<()> {
        let (watermark, pending, sides) = snapshot.meta::<Meta>(self.name())?.parts();
        self.watermark = watermark;
        self.side_watermarks = sides;
        for side in [LEFT, RIGHT] {
            let name = if side == LEFT { "left" } else { "right" };
            let Some(rows) = snapshot.take(name) else { continue };
            let moved = self.rows[side].restore(&rows)?;
            let renamed: std::collections::HashMap<u32, u32> = moved.into_iter().collect();
            for (s, slot) in &pending {
                if *s == side {
                    if let Some(now) = renamed.get(slot) {
                        self.pending.push((side, *now));
                    }
                }
            }
        }
        Ok(())
    }

    fn state_size(&self) -> StateSize {
        let (l, r) = (self.rows[LEFT].size(), self.rows[RIGHT].size());
        StateSize { rows: l.rows + r.rows, bytes: l.bytes + r.bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion_common::arrow::datatypes::{Field, Schema, TimeUnit};

    /// Each side's rows: a key and a time.
    fn side() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        ]))
    }

    /// `a JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts` (an interval join on equal times).
    fn join() -> Result<JoinOp> {
        join_outer([false; 2])
    }

    /// [`join`], outer on the sides `outer` says (the output's columns nullable).
    fn join_outer(outer: [bool; 2]) -> Result<JoinOp> {
        let side = side();
        let nullable: Vec<Field> = side.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let output = Arc::new(Schema::new([nullable.clone(), nullable].concat()));
        let time = RowTime { column: 1, offset_nanos: 0 };
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let spec = JoinSpec {
            outer,
            output_rows: JoinOutput::Pairs,
            mode: JoinMode::Interval { time: [time; 2], until: [time; 2] },
            keys: [vec![Arc::clone(&key)], vec![key]],
            filter: None,
            sides: [Arc::clone(&side), side],
            pairs: Arc::clone(&output),
            output,
            changelog: false,
        };
        JoinOp::new(spec, Arc::new(Metrics::default()))
    }

    fn rows(k: i64, ms: i64) -> Result<StreamBatch> {
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(vec![k])), Arc::new(TimestampMillisecondArray::from(vec![ms]))];
        Ok(StreamBatch::new(RecordBatch::try_new(side(), columns)?))
    }

    fn joined(out: &[Message]) -> usize {
        out.iter().map(|m| if let Message::Data(b) = m { b.batch.num_rows() } else { 0 }).sum()
    }

    #[test]
    fn a_row_no_later_row_of_the_other_side_can_match_is_not_kept() -> Result<()> {
        for outer in [false, true] {
            let mut j = join_outer([false, outer])?;
            // the left side has closed 5 s; the right side (and so the join) has no watermark
            j.on_side_watermark(LEFT, 5_000_000_000);
            let mut out = Vec::new();
            j.process(RIGHT, rows(1, 2_000)?, &mut out)?;
            assert_eq!(j.state_size().rows, 0, "a left row of 2 s would be late: nothing can match");
            // a right outer join pads it at once (before: when the join's watermark passed it)
            assert_eq!(joined(&out), usize::from(outer));
            assert_eq!(j.metrics.late_rows.load(std::sync::atomic::Ordering::Relaxed), 0, "not late itself");
            // one at the left side's watermark is kept, and joins
            out.clear();
            j.process(RIGHT, rows(1, 5_000)?, &mut out)?;
            assert_eq!(j.state_size().rows, 1);
            j.process(LEFT, rows(1, 5_000)?, &mut out)?;
            assert_eq!(joined(&out), 1);
        }
        Ok(())
    }

    #[test]
    fn a_restored_join_judges_late_rows_by_the_watermarks_its_sides_had() -> Result<()> {
        let mut first = join()?;
        first.on_side_watermark(LEFT, 5_000_000_000);
        first.on_side_watermark(RIGHT, 5_000_000_000);
        let mut out = Vec::new();
        first.process(RIGHT, rows(1, 1_000)?, &mut out)?;
        assert_eq!(joined(&out), 0, "a right row behind its side's watermark is late");
        let saved = first.snapshot()?;
        let mut restored = join()?;
        restored.restore(saved)?;
        // before either side sends a watermark again: the left row is still late, so the right
        // row arriving next has nothing to join
        restored.process(LEFT, rows(1, 1_000)?, &mut out)?;
        restored.process(RIGHT, rows(1, 1_000)?, &mut out)?;
        assert_eq!(joined(&out), 0);
        assert_eq!(restored.metrics.late_rows.load(std::sync::atomic::Ordering::Relaxed), 2);
        // a checkpoint written without the sides' watermarks still restores
        let mut old = OperatorSnapshot::with_meta(&(NO_WATERMARK, Vec::<(usize, u32)>::new()))?;
        let mut fresh = join()?;
        fresh.restore(std::mem::replace(&mut old, OperatorSnapshot::empty()))?;
        fresh.process(LEFT, rows(1, 1_000)?, &mut out)?;
        fresh.process(RIGHT, rows(1, 1_000)?, &mut out)?;
        assert_eq!(joined(&out), 1);
        Ok(())
    }
}
