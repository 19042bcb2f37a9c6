//! Per-operator metrics: every operator of a pipeline runs inside an [`Instrumented`], which
//! counts its rows in and out, batches, busy time, dropped rows and watermark, and samples the
//! state it holds, into the operator's [`OperatorMetrics`] in the query's registry.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use weir_plan::OpRef;

use crate::error::Result;
use crate::exec::metrics::{Metrics, OperatorMetrics};
use crate::message::Message;
use crate::operator::Operator;

/// A sample walks the whole state, so the next one waits until the operator has taken in this
/// many times as many rows as the state then held (a walk costs a few nanoseconds an entry, a
/// row in ten to a hundred times that: at most a few per cent of the operator's time). Counted
/// in rows, not time, the samples fall at the same points of the input on every run.
const SAMPLE_SPACING: u64 = 4;

/// An operator and its counters.
pub struct Instrumented {
    op: Box<dyn Operator>,
    /// Absent for helpers that are not plan nodes (the processing-time stamp).
    metrics: Option<Arc<OperatorMetrics>>,
    /// Rows to take in before the state size is next sampled.
    sample_in: u64,
}

impl Instrumented {
    /// `op` at `place` in the plan, registered in `totals`' registry.
    pub fn new(op: Box<dyn Operator>, place: OpRef, totals: &Arc<Metrics>) -> Self {
        let metrics = Some(totals.register(op.name(), place));
        Self { op, metrics, sample_in: 0 }
    }

    /// `op`, not counted on its own.
    pub fn unregistered(op: Box<dyn Operator>) -> Self {
        Self { op, metrics: None, sample_in: 0 }
    }

    /// The operator's name.
    pub fn name(&self) -> &'static str {
        self.op.name()
    }

    /// The operator's state, for a checkpoint.
    pub fn snapshot(&mut self) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        self.op.snapshot()
    }

    /// Take up a state [`Instrumented::snapshot`] returned.
    pub fn restore(&mut self, snapshot: crate::state::checkpoint::OperatorSnapshot) -> Result<()> {
        self.op.restore(snapshot)
    }

    /// This operator's state from the snapshots of all instances of another parallelism (see
    /// [`Operator::rescale`]).
    pub fn rescale(
        &self,
        parts: Vec<crate::state::checkpoint::OperatorSnapshot>,
        owned: &crate::state::checkpoint::KeyFilter<'_>,
    ) -> Result<crate::state::checkpoint::OperatorSnapshot> {
        self.op.rescale(parts, owned)
    }

    /// `op` at `place` in the plan, as parallel instance `instance`.
    pub fn new_instance(op: Box<dyn Operator>, place: OpRef, instance: usize, totals: &Arc<Metrics>) -> Self {
        let metrics = Some(totals.register_instance(op.name(), place, instance));
        Self { op, metrics, sample_in: 0 }
    }

    fn dropped_so_far(&self) -> u64 {
        Metrics::dropped_on_this_thread()
    }

    /// What the operator holds back, sent (see [`Operator::release`]), counted as its output.
    pub fn release(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let first_out = out.len();
        self.op.release(out)?;
        if let Some(m) = &self.metrics {
            for produced in &out[first_out..] {
                if let Message::Data(b) = produced {
                    Metrics::add(&m.rows_out, b.batch.num_rows() as u64);
                }
            }
        }
        Ok(())
    }

    /// Input `side` of a two-input operator reached `watermark` (see
    /// [`Operator::on_side_watermark`]).
    pub fn side_watermark(&mut self, side: usize, watermark: crate::message::Nanos) {
        self.op.on_side_watermark(side, watermark);
    }

    /// Hand `message` to the operator, its output onto `out`.
    pub fn handle(&mut self, message: Message, out: &mut Vec<Message>) -> Result<()> {
        self.handle_side(None, message, out)
    }

    /// Hand `message` from input `side` (of a two-input operator, `None`: the only input) to
    /// the operator, its output onto `out`.
    pub fn handle_side(&mut self, side: Option<usize>, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let Some(m) = self.metrics.clone() else { return forward(self.op.as_mut(), side, message, out) };
        let (first_out, dropped_before, started) = (out.len(), self.dropped_so_far(), Instant::now());
        match &message {
            Message::Data(b) => {
                let rows = b.batch.num_rows() as u64;
                self.sample_in = self.sample_in.saturating_sub(rows);
                Metrics::add(&m.rows_in, rows);
                Metrics::add(&m.batches, 1);
            }
            // the state at its fullest, before the end of input fires every window
            Message::EndOfStream => m.state(self.op.state_size()),
            _ => {}
        }
        forward(self.op.as_mut(), side, message, out)?;
        let now = Instant::now();
        Metrics::add(&m.busy_nanos, now.duration_since(started).as_nanos() as u64);
        Metrics::add(&m.late_rows, self.dropped_so_far() - dropped_before);
        for produced in &out[first_out..] {
            match produced {
                Message::Data(b) => Metrics::add(&m.rows_out, b.batch.num_rows() as u64),
                Message::Watermark(w) => m.watermark.store(*w, Ordering::Relaxed),
                _ => {}
            }
        }
        if self.sample_in == 0 {
            let size = self.op.state_size();
            m.state(size);
            self.sample_in = (size.rows + 1).saturating_mul(SAMPLE_SPACING);
        }
        Ok(())
    }
}

fn forward(op: &mut dyn Operator, side: Option<usize>, message: Message, out: &mut Vec<Message>) -> Result<()> {
    match message {
        // on their way to the side output, past the other operators
        Message::Dropped(d) => out.push(Message::Dropped(d)),
        Message::Data(b) => match side {
            Some(s) => op.process_side(s, b, out)?,
            None => op.process_batch(b, out)?,
        },
        Message::Watermark(w) => op.on_watermark(w, out)?,
        Message::EndOfStream => {
            op.on_end_of_stream(out)?;
            out.push(Message::EndOfStream);
        }
    }
    Ok(())
}

/// Pass messages through operators in order.
pub fn through(ops: &mut [Instrumented], messages: Vec<Message>) -> Result<Vec<Message>> {
    let mut current = messages;
    for op in ops {
        let mut next = Vec::with_capacity(current.len());
        for m in current {
            op.handle(m, &mut next)?;
        }
        current = next;
    }
    Ok(current)
}
