//! The operator trait. Only `process_batch` is required; the watermark and end-of-stream
//! hooks have no-op defaults that forward the event, and a stateless operator reports no state.

use crate::error::{Result, RuntimeError};
use crate::exec::metrics::StateSize;
use crate::message::{Message, Nanos, StreamBatch};
use crate::state::checkpoint::{unsupported, KeyFilter, OperatorSnapshot};

/// A streaming operator with one input. Operators are driven by one task and need not be
/// thread-safe beyond `Send`.
pub trait Operator: Send {
    /// Short name, for metrics and errors.
    fn name(&self) -> &'static str;

    /// Handle a batch of rows, pushing any output onto `out`.
    fn process_batch(&mut self, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()>;

    /// Handle a batch of rows from input `side` of an operator with two inputs (a join: 0 is
    /// the left input, 1 the right). The default treats it as the only input.
    fn process_side(&mut self, side: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let _ = side;
        self.process_batch(batch, out)
    }

    /// The input's watermark advanced. The default forwards it.
    fn on_watermark(&mut self, watermark: Nanos, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// Input `side` of an operator with two inputs (a join) reached watermark `watermark` (its
    /// own, before the two are merged into the one [`Operator::on_watermark`] gets). The
    /// default ignores it.
    fn on_side_watermark(&mut self, side: usize, watermark: Nanos) {
        let _ = (side, watermark);
    }

    /// The input ended. The default does nothing (the driver forwards `EndOfStream`).
    fn on_end_of_stream(&mut self, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }

    /// Send what it holds back only to send less (a partial aggregate gathering more rows):
    /// called before a checkpoint's barrier, so that the snapshot need not keep it, and before
    /// its input is declared idle, so that no watermark passes it by. The default holds
    /// nothing back.
    fn release(&mut self, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }

    /// The state held now, for metrics. Called after rows several times the state's (see
    /// `exec::instrument`), so it may walk the state.
    /// The default (a stateless operator) is none.
    fn state_size(&self) -> StateSize {
        StateSize::default()
    }

    /// The operator's state, for a checkpoint. Called between messages; the operator goes on
    /// afterwards as if it had not been called. The default: not supported yet (a stateless
    /// operator returns [`OperatorSnapshot::empty`]).
    fn snapshot(&mut self) -> Result<OperatorSnapshot> {
        Err(unsupported(self.name()))
    }

    /// Take up the state of a snapshot, in a freshly built operator of the same plan.
    fn restore(&mut self, snapshot: OperatorSnapshot) -> Result<()> {
        if snapshot.is_empty() {
            return Ok(());
        }
        Err(unsupported(self.name()))
    }

    /// The state of one instance of this operator made from the snapshots of all instances of
    /// a run at another parallelism: the keys `owned` says are this instance's (it takes the
    /// key columns of some rows, as the exchange hashes them, and says which rows to keep).
    /// The instances of a stage were checkpointed at the same barrier, so they agree on the
    /// watermark. The default: a stateless operator's empty state, or not supported yet.
    fn rescale(&self, parts: Vec<OperatorSnapshot>, owned: &KeyFilter<'_>) -> Result<OperatorSnapshot> {
        let _ = owned;
        if parts.iter().all(OperatorSnapshot::is_empty) {
            return Ok(OperatorSnapshot::empty());
        }
        Err(RuntimeError::Unsupported(format!(
            "the state of the {} operator cannot be moved to another parallelism yet: resume at the parallelism the checkpoint was taken at",
            self.name()
        )))
    }
}
