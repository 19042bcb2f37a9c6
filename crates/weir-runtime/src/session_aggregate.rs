//! Aggregation over session windows: per key, rows less than `gap` apart form one session
//! `[first, last + gap)`, emitted once when the watermark passes its end.
//!
//! ```text
//!   per row, in arrival order (updates are batched per session)
//!     before a row whose watermark reaches an open session's end, that session fires
//!     row t of key k: its own window [t, t + gap)
//!       overlaps open sessions of k ──► they merge into one (an out-of-order row can bridge
//!                                        two sessions: the later one's partial aggregate is
//!                                        frozen and merged into the earlier one)
//!       overlaps none, t + gap > row watermark ──► a new session
//!       overlaps none, t + gap <= row watermark ──► late: counted, dropped
//!
//!   on Watermark(w): fire sessions with end <= w, in end order, and free them
//!
//!   state: open sessions only, HashMap<key bytes, Vec<Session>> + BTreeSet<(end, id)>
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, UInt32Array};
use datafusion_common::arrow::compute::concat;
use datafusion_common::arrow::datatypes::SchemaRef;
use datafusion_common::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::arrow::row::{RowConverter, SortField};
use datafusion_physical_expr::PhysicalExpr;
use weir_sql::WindowSpec;

use crate::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Partial};
use crate::dropped::{show_time, DroppedCollector};
use crate::error::{Result, RuntimeError};
use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};
use crate::metrics::Metrics;
use crate::operator::Operator;
use crate::window_aggregate::{to_nanos, WindowLayout};

struct Session {
    id: u64,
    start: Nanos,
    end: Nanos,
    partial: Partial,
}

/// The session window aggregate operator.
pub struct SessionAggregateOp {
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: WindowLayout,
    gap: Nanos,
    /// Encodes keys as bytes (`None` without keys: one global session sequence).
    converter: Option<RowConverter>,
    aggregates: Aggregates,
    output_schema: SchemaRef,
    num_group_columns: usize,
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
    by_end: BTreeSet<(Nanos, u64)>,
    key_of: HashMap<u64, Box<[u8]>>,
    next_id: u64,
    watermark: Nanos,
    metrics: Arc<Metrics>,
    group_ids: Vec<usize>,
}

impl SessionAggregateOp {
    /// Build the operator. `output_schema` is group columns then aggregate columns.
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        layout: WindowLayout,
        aggregates: Vec<AggregateSpec>,
        output_schema: SchemaRef,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let WindowSpec::Session { gap_nanos } = layout.window else {
            return Err(RuntimeError::Internal("a session aggregate needs a session window".into()));
        };
        let num_group_columns = group_exprs.len();
        let (key_exprs, key_fields) = layout.keys(group_exprs, &output_schema);
        let converter = if key_fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(key_fields.iter().map(|f| SortField::new(f.data_type().clone())).collect())?)
        };
        let empty_keys = Arc::new(datafusion_common::arrow::datatypes::Schema::empty());
        Ok(Self {
            key_exprs,
            layout,
            gap: gap_nanos,
            converter,
            aggregates: Aggregates::new(empty_keys, aggregates),
            output_schema,
            num_group_columns,
            sessions: HashMap::new(),
            by_end: BTreeSet::new(),
            key_of: HashMap::new(),
            next_id: 0,
            watermark: NO_WATERMARK,
            metrics,
            group_ids: Vec::new(),
        })
    }

    /// Apply the buffered (session id, row) assignments: one update per session.
    fn flush(
        &mut self,
        assigned: &mut Vec<(u64, u32)>,
        redirect: &mut HashMap<u64, u64>,
        input: &AggregateInput,
    ) -> Result<()> {
        if assigned.is_empty() {
            return Ok(());
        }
        for a in assigned.iter_mut() {
            while let Some(to) = redirect.get(&a.0) {
                a.0 = *to;
            }
        }
        assigned.sort_unstable();
        let mut i = 0;
        while i < assigned.len() {
            let id = assigned[i].0;
            let j = assigned[i..].iter().position(|a| a.0 != id).map(|p| i + p).unwrap_or(assigned.len());
            let rows = UInt32Array::from_iter_values(assigned[i..j].iter().map(|a| a.1));
            let mut group_ids = std::mem::take(&mut self.group_ids);
            self.session_mut(id)?.partial.update(input, Some(&rows), &mut group_ids)?;
            self.group_ids = group_ids;
            i = j;
        }
        assigned.clear();
        redirect.clear();
        Ok(())
    }

    fn session_mut(&mut self, id: u64) -> Result<&mut Session> {
        let key = self.key_of.get(&id).ok_or_else(|| RuntimeError::Internal(format!("session {id} has no key")))?;
        self.sessions
            .get_mut(key)
            .and_then(|list| list.iter_mut().find(|s| s.id == id))
            .ok_or_else(|| RuntimeError::Internal(format!("session {id} vanished")))
    }

    /// Assign the row at time `t` of `key`; returns its session, or `None` if it is late.
    fn assign(&mut self, key: &[u8], t: Nanos, wm: Nanos, redirect: &mut HashMap<u64, u64>) -> Result<Option<u64>> {
        let (lo, hi) = (t, t.saturating_add(self.gap));
        if !self.sessions.contains_key(key) {
            self.sessions.insert(key.into(), Vec::new());
        }
        let list = self.sessions.get_mut(key).ok_or_else(|| RuntimeError::Internal("session list vanished".into()))?;
        let mut overlapping = list.iter().enumerate().filter(|(_, s)| s.start < hi && lo < s.end).map(|(i, _)| i);
        let Some(first) = overlapping.next() else {
            if hi <= wm {
                if list.is_empty() {
                    self.sessions.remove(key);
                }
                return Ok(None);
            }
            let id = self.next_id;
            self.next_id += 1;
            list.push(Session { id, start: lo, end: hi, partial: self.aggregates.partial()? });
            self.by_end.insert((hi, id));
            self.key_of.insert(id, key.into());
            return Ok(Some(id));
        };
        // merge every other overlapping session into the first one (rarely any: an empty Vec
        // does not allocate)
        let others: Vec<usize> = overlapping.collect();
        let mut absorbed = Vec::new();
        for i in others.into_iter().rev() {
            absorbed.push(list.remove(i));
        }
        let survivor = &mut list[first];
        let old_end = survivor.end;
        survivor.start = survivor.start.min(lo);
        survivor.end = survivor.end.max(hi);
        for s in absorbed {
            survivor.start = survivor.start.min(s.start);
            survivor.end = survivor.end.max(s.end);
            let frozen = s.partial.freeze()?;
            survivor.partial.merge(&frozen, &mut self.group_ids)?;
            self.by_end.remove(&(s.end, s.id));
            self.key_of.remove(&s.id);
            redirect.insert(s.id, survivor.id);
        }
        let (id, end) = (survivor.id, survivor.end);
        if end != old_end {
            self.by_end.remove(&(old_end, id));
            self.by_end.insert((end, id));
        }
        Ok(Some(id))
    }

    /// Fire every session ending at or before `watermark`, as one batch.
    fn fire_until(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        let mut fired: Vec<(Box<[u8]>, Session)> = Vec::new();
        while let Some(&(end, id)) = self.by_end.first() {
            if end > watermark {
                break;
            }
            self.by_end.pop_first();
            let Some(key) = self.key_of.remove(&id) else { continue };
            let Some(list) = self.sessions.get_mut(&key) else { continue };
            let Some(pos) = list.iter().position(|s| s.id == id) else { continue };
            let session = list.swap_remove(pos);
            if list.is_empty() {
                self.sessions.remove(&key);
            }
            fired.push((key, session));
        }
        if !fired.is_empty() {
            Metrics::add(&self.metrics.windows_fired, fired.len() as u64);
            out.push(Message::Data(StreamBatch::new(self.emit(fired)?)));
        }
        self.metrics.open_windows.store(self.by_end.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn emit(&self, fired: Vec<(Box<[u8]>, Session)>) -> Result<RecordBatch> {
        let n = fired.len();
        let keys = match &self.converter {
            Some(c) => {
                let parser = c.parser();
                c.convert_rows(fired.iter().map(|(k, _)| parser.parse(k)))?
            }
            None => Vec::new(),
        };
        let mut windows = Vec::with_capacity(n);
        let mut values: Vec<Vec<ArrayRef>> = Vec::new();
        for (_, s) in fired {
            windows.push((s.start, s.end));
            let (_, v, _) = s.partial.evaluate()?;
            if values.is_empty() {
                values = v.into_iter().map(|a| vec![a]).collect();
            } else {
                for (column, a) in values.iter_mut().zip(v) {
                    column.push(a);
                }
            }
        }
        let mut columns = self.layout.group_columns(&self.output_schema, self.num_group_columns, keys, |b, t| {
            WindowLayout::bound_array(b, t, &windows)
        })?;
        for column in values {
            let parts: Vec<&dyn Array> = column.iter().map(|a| a.as_ref()).collect();
            columns.push(concat(&parts)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.output_schema), columns, &options)?)
    }
}

impl Operator for SessionAggregateOp {
    fn name(&self) -> &'static str {
        "SessionAggregate"
    }

    fn process_batch(&mut self, input: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let batch = &input.batch;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let t = self.layout.time.evaluate(batch)?.into_array(n)?;
        let times = to_nanos(&t)?;
        let keys = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion_common::Result<Vec<_>>>()?;
        let rows = match &self.converter {
            Some(c) => Some(c.convert_columns(&keys)?),
            None => None,
        };
        let agg_input = self.aggregates.input(Vec::new(), batch)?;
        let row_wm = input.row_watermarks.as_deref();
        let (mut late, mut null_time) = (0u64, 0u64);
        let mut dropped = DroppedCollector::new(input.origin.as_ref());
        let mut assigned: Vec<(u64, u32)> = Vec::with_capacity(n);
        let mut redirect = HashMap::new();
        let mut next_end = self.by_end.first().map(|e| e.0).unwrap_or(Nanos::MAX);
        for i in 0..n {
            if times.is_null(i) {
                null_time += 1;
                dropped.null_time(i);
                continue;
            }
            let wm = row_wm.map(|w| w.value(i)).unwrap_or(NO_WATERMARK).max(self.watermark);
            if wm >= next_end {
                self.flush(&mut assigned, &mut redirect, &agg_input)?;
                self.watermark = wm;
                self.fire_until(wm, out)?;
            }
            let row = rows.as_ref().map(|r| r.row(i));
            let key: &[u8] = row.as_ref().map(|r| r.as_ref()).unwrap_or(&[]);
            let t = times.value(i);
            match self.assign(key, t, wm, &mut redirect)? {
                Some(id) => assigned.push((id, i as u32)),
                None => {
                    late += 1;
                    dropped.drop_row(i, || {
                        format!(
                            "late: no open session to join, and its own window [{}, {}) had ended (watermark {})",
                            show_time(t),
                            show_time(t.saturating_add(self.gap)),
                            show_time(wm)
                        )
                    });
                }
            }
            next_end = self.by_end.first().map(|e| e.0).unwrap_or(Nanos::MAX);
        }
        self.flush(&mut assigned, &mut redirect, &agg_input)?;
        self.metrics.open_windows.store(self.by_end.len() as u64, Ordering::Relaxed);
        self.metrics.dropped(late, null_time);
        dropped.finish(out)
    }

    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire_until(watermark, out)?;
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
