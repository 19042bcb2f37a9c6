//! The sink's side of a parallel run: the last stage's instances merged into one stream, in
//! event-time order of their watermarks.
//!
//! Each instance's output is a sequence of epochs: the rows it sent between two of its
//! watermarks, `(from, to]`. An epoch's rows are later than `from` (the instance had passed
//! `from` before sending them), so they are held, once the epoch is complete, until the merged
//! watermark (the minimum over the instances) is about to pass `from`: then every such epoch
//! goes out, ordered by `from`, `to` and instance, before the watermark. No row is held past a
//! watermark that would make it late downstream, windows reach the sink in about the order they
//! end (a window aggregate sends a watermark between windows that end at different times), and
//! when every instance sees the same watermarks (a table read whole) the output does not
//! depend on thread timing.
//!
//! ```text
//!   instance 0:  r r W5  r W9     merged 5: nothing held starts before 5 … merged 9: the epochs
//!   instance 1:  s W5  s s W9     from 5: r (5, 9, inst 0), s s (5, 9, inst 1), then W9
//! ```
//!
//! Rows whose epoch has not closed are released anyway when nothing arrives for [`STALL`] or
//! more than [`MAX_HELD_ROWS`] are held (a watermark that stopped moving must not hold results
//! back), and at once when the query has no event-time watermark.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::exec::barrier::{Aligner, Pulled};
use crate::exec::exchange::Inbox;
use crate::exec::watermark_merge::WatermarkMerge;
use datafusion_common::arrow::compute::concat_batches;

use crate::message::{Message, Nanos, StreamBatch, NO_WATERMARK};

/// How long held rows wait for their epoch to close while nothing arrives.
pub(crate) const STALL: Duration = Duration::from_millis(100);
/// The most rows held before they are released without waiting for their epoch.
pub(crate) const MAX_HELD_ROWS: usize = 1 << 20;

/// Batches of one epoch end up to this size are joined into one (a window's rows from every
/// instance print as one table).
const COALESCE_ROWS: usize = 8192;

/// A batch of inserts without per-row watermarks or origins (what a window emits): one that
/// can be joined with another.
fn plain(b: &StreamBatch) -> bool {
    b.kinds.is_none() && b.row_watermarks.is_none() && b.origin.is_none()
}

/// The merge into the sink.
pub(crate) struct SinkMerge {
    input: Aligner,
    /// When the last packet came (held rows wait at most [`STALL`] after it).
    last_input: Instant,
    watermarks: WatermarkMerge,
    /// Per instance: what it sent since its last watermark.
    open: Vec<Vec<Message>>,
    /// Per instance: its last watermark (where its open epoch starts).
    from: Vec<Nanos>,
    /// Complete epochs: (from, to, instance, messages).
    closed: Vec<(Nanos, Nanos, usize, Vec<Message>)>,
    held_rows: usize,
    /// Order by epochs (the query has an event-time watermark).
    ordered: bool,
}

impl SinkMerge {
    pub(crate) fn new(rx: Inbox, inputs: usize, ordered: bool) -> Self {
        Self {
            input: Aligner::new(rx, inputs),
            last_input: Instant::now(),
            watermarks: WatermarkMerge::new(&vec![None; inputs], Instant::now()),
            open: (0..inputs).map(|_| Vec::new()).collect(),
            from: vec![NO_WATERMARK; inputs],
            closed: Vec::new(),
            held_rows: 0,
            ordered,
        }
    }

    /// The next messages for the sink (possibly none), and a checkpoint whose barrier every
    /// instance has sent (after the messages: everything held is released before it); `None`
    /// once every instance has gone. `poll`: return after at most this long.
    pub(crate) fn next(&mut self, poll: Option<Duration>) -> Result<Option<(Vec<Message>, Option<u64>)>> {
        let stall = STALL.saturating_sub(self.last_input.elapsed());
        let wait = match (self.held_rows > 0, poll) {
            (true, Some(p)) => Some(stall.min(p)),
            (true, None) => Some(stall),
            (false, p) => p,
        };
        Ok(match self.input.next(wait)? {
            Some(Pulled::Messages(i, messages)) => {
                self.last_input = Instant::now();
                Some((self.input(i, messages), None))
            }
            Some(Pulled::Aligned(id)) => Some((self.release_all(), Some(id))),
            Some(Pulled::Idle(i)) => {
                // a source instance with nothing to read (the last stage runs here): left out
                self.watermarks.set_idle(i);
                let mut out = Vec::new();
                let merged = self.watermarks.advance();
                self.pass(merged, &mut out);
                Some((out, None))
            }
            Some(Pulled::Quiet) if self.held_rows > 0 && self.last_input.elapsed() >= STALL => {
                Some((self.release_all(), None))
            }
            Some(Pulled::Quiet) => Some((Vec::new(), None)),
            None => None,
        })
    }

    /// At-least-once: no instance's rows wait for a checkpoint's alignment.
    pub(crate) fn unaligned(&mut self) {
        self.input.unaligned();
    }

    /// How many instances it merges.
    pub(crate) fn inputs(&self) -> usize {
        self.from.len()
    }

    /// The merge's state for a checkpoint (taken when nothing is held).
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({ "watermarks": self.watermarks.snapshot(), "from": self.from })
    }

    /// Take up what [`SinkMerge::snapshot`] saved.
    pub(crate) fn restore(&mut self, saved: &serde_json::Value) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct Saved {
            watermarks: serde_json::Value,
            from: Vec<Nanos>,
        }
        let s: Saved = crate::state::checkpoint::from_json(saved, "the merge into the sink")?;
        if s.from.len() != self.from.len() {
            return Err(crate::error::RuntimeError::Checkpoint(format!(
                "the merge into the sink had {} inputs, it has {} now",
                s.from.len(),
                self.from.len()
            )));
        }
        self.watermarks.restore(&s.watermarks, Instant::now())?;
        self.from = s.from;
        Ok(())
    }

    fn input(&mut self, i: usize, messages: Vec<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        let now = Instant::now();
        for m in messages {
            match m {
                Message::Data(mut b) => {
                    self.watermarks.active(i, now);
                    let cap = self.watermarks.cap_for(i);
                    b.cap_watermarks(cap);
                    if !self.ordered {
                        out.push(Message::Data(b));
                        continue;
                    }
                    self.held_rows += b.batch.num_rows();
                    self.open[i].push(Message::Data(b));
                }
                Message::Dropped(d) if self.ordered => {
                    self.held_rows += d.rows.num_rows();
                    self.open[i].push(Message::Dropped(d));
                }
                Message::Dropped(d) => out.push(Message::Dropped(d)),
                Message::Watermark(w) => {
                    self.close(i, w);
                    let merged = self.watermarks.watermark(i, w, now);
                    self.pass(merged, &mut out);
                }
                Message::EndOfStream => {
                    self.close(i, Nanos::MAX);
                    let merged = self.watermarks.end(i);
                    if self.watermarks.all_ended() {
                        out.extend(self.release_all());
                        out.extend(merged.map(Message::Watermark));
                        out.push(Message::EndOfStream);
                    } else {
                        self.pass(merged, &mut out);
                    }
                }
            }
        }
        if self.held_rows > MAX_HELD_ROWS {
            out.extend(self.release_all());
        }
        out
    }

    /// The merged watermark moved to `merged` (if it did): what it lets out, then it.
    fn pass(&mut self, merged: Option<Nanos>, out: &mut Vec<Message>) {
        if let Some(merged) = merged {
            self.release(merged, out);
            out.push(Message::Watermark(merged));
        }
    }

    /// Instance `i`'s open epoch closes at watermark `w`.
    fn close(&mut self, i: usize, w: Nanos) {
        if !self.open[i].is_empty() {
            self.closed.push((self.from[i], w, i, std::mem::take(&mut self.open[i])));
        }
        self.from[i] = self.from[i].max(w);
    }

    /// Before the merged watermark `merged` goes out: the complete epochs whose rows it could
    /// pass (those starting before it), in order.
    fn release(&mut self, merged: Nanos, out: &mut Vec<Message>) {
        if self.closed.iter().all(|(from, ..)| *from >= merged) {
            return;
        }
        // stable: an instance's epochs stay in the order it sent them; by the watermark that
        // closed them first, so windows (a window aggregate closes an epoch at each window's
        // end) go out in the order they end
        self.closed.sort_by_key(|(from, to, i, _)| (*from >= merged, *to, *from, *i));
        let keep = self.closed.iter().position(|(from, ..)| *from >= merged).unwrap_or(self.closed.len());
        // the small batches of one end (one window's rows from every instance) go out as one
        let mut last: Option<(Nanos, usize)> = None;
        for (_, to, _, messages) in self.closed.drain(..keep) {
            for m in messages {
                match &m {
                    Message::Data(b) => self.held_rows = self.held_rows.saturating_sub(b.batch.num_rows()),
                    Message::Dropped(d) => self.held_rows = self.held_rows.saturating_sub(d.rows.num_rows()),
                    _ => {}
                }
                if let (Message::Data(b), Some((end, at))) = (&m, last) {
                    if end == to && plain(b) {
                        if let Some(Message::Data(prev)) = out.get_mut(at) {
                            if plain(prev) && prev.batch.num_rows() + b.batch.num_rows() <= COALESCE_ROWS {
                                if let Ok(joined) = concat_batches(&prev.batch.schema(), [&prev.batch, &b.batch]) {
                                    prev.batch = joined;
                                    continue;
                                }
                            }
                        }
                    }
                }
                if matches!(&m, Message::Data(b) if plain(b)) {
                    last = Some((to, out.len()));
                }
                out.push(m);
            }
        }
    }

    /// Everything held: the closed epochs in order, then the open ones by instance.
    fn release_all(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        self.release(Nanos::MAX, &mut out);
        for open in &mut self.open {
            out.append(open);
        }
        self.held_rows = 0;
        out
    }
}
