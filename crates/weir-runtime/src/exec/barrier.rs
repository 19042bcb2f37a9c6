//! Checkpoint barriers of a parallel run (Chandy–Lamport, aligned as in Flink):
//!
//! ```text
//!   sink thread ── request N ──► every source instance: state (position, operators) ──► report
//!                                                        then Barrier(N) to every target
//!   instance: Barrier(N) from sender s ─► s is held (its later packets wait in a queue, the
//!             shared channel is still drained) … until every sender has sent Barrier(N) or
//!             ended ─► state (watermarks, operators) ──► report, Barrier(N) on, then the held
//!   sink thread: aligned N ─► every report of N is in ─► manifest, sinks commit
//! ```
//!
//! Every instance has a path to the sink, and reports before it forwards the barrier, so once
//! the sink has aligned checkpoint N every report of N has been sent. An instance whose senders
//! all ended reports its state at its end (and so does a source that ended): later checkpoints
//! take it from there. Rows a sender sent before its barrier are in the state of the checkpoint;
//! rows after it are read again after a restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, RuntimeError};
use crate::exec::exchange::{Credits, Envelope, Inbox, Packet};
use crate::exec::instrument::Instrumented;
use crate::message::Message;
use crate::state::checkpoint::OperatorSnapshot;

/// What the sink thread asks of every thread: the barrier to inject, and when to stop.
#[derive(Default)]
pub(crate) struct Barriers {
    /// The newest checkpoint requested (0: none yet).
    requested: AtomicU64,
    /// The last checkpoint of a stop is complete: every thread stops.
    halt: AtomicBool,
}

impl Barriers {
    pub(crate) fn request(&self, id: u64) {
        self.requested.fetch_max(id, Ordering::SeqCst);
    }

    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    pub(crate) fn halt(&self) {
        self.halt.store(true, Ordering::SeqCst);
    }

    pub(crate) fn halted(&self) -> bool {
        self.halt.load(Ordering::SeqCst)
    }
}

/// One thread's state for a checkpoint.
pub(crate) struct Report {
    /// The thread: source instances first, then the instances of later stages, in build order.
    pub(crate) part: usize,
    /// The checkpoint; `None`: the state at the thread's end, for every later checkpoint.
    pub(crate) id: Option<u64>,
    /// A source instance's position (and watermark generator).
    pub(crate) position: Option<serde_json::Value>,
    /// The watermarks of the instance's merge of its senders.
    pub(crate) stages: Vec<serde_json::Value>,
    /// Its operators' state, in order.
    pub(crate) operators: Vec<(&'static str, OperatorSnapshot)>,
}

/// A thread's side of checkpointing: where requests come from and reports go.
#[derive(Clone)]
pub(crate) struct Checkpointer {
    pub(crate) barriers: Arc<Barriers>,
    pub(crate) reports: Sender<Report>,
    pub(crate) part: usize,
}

impl Checkpointer {
    /// Send this thread's state (`id`: the checkpoint, `None`: at its end).
    pub(crate) fn report(
        &self,
        id: Option<u64>,
        position: Option<serde_json::Value>,
        stages: Vec<serde_json::Value>,
        ops: &mut [&mut Instrumented],
    ) -> Result<()> {
        let operators = snapshot_all(ops)?;
        let report = Report { part: self.part, id, position, stages, operators };
        // the sink thread has gone: the query is stopping, and this report is not needed
        let _ = self.reports.send(report);
        Ok(())
    }
}

/// The state of each of `ops`, with its name.
pub(crate) fn snapshot_all(ops: &mut [&mut Instrumented]) -> Result<Vec<(&'static str, OperatorSnapshot)>> {
    ops.iter_mut().map(|op| Ok((op.name(), op.snapshot()?))).collect()
}

/// What [`Aligner::next`] found.
pub(crate) enum Pulled {
    /// Messages of sender `.0`.
    Messages(usize, Vec<Message>),
    /// Every sender has sent checkpoint `.0`'s barrier (or ended): take the state now.
    Aligned(u64),
    /// Sender `.0` has nothing to read for now (see [`Packet::Idle`]).
    Idle(usize),
    /// Nothing came within the wait.
    Quiet,
}

/// The receiving side of an instance's channel, aligning barriers across its senders. A
/// held sender's credits are given back only as its packets are taken up (see
/// [`crate::exec::exchange`]), so it sends at most [`crate::exec::exchange::CREDITS`] packets,
/// and [`crate::exec::exchange::CREDIT_BATCHES`] × `batch.size` rows, past its barrier.
pub(crate) struct Aligner {
    rx: Receiver<Envelope>,
    credits: Arc<Credits>,
    /// Per sender: it sent the barrier being aligned.
    arrived: Vec<bool>,
    /// Per sender: it ended its stream.
    ended: Vec<bool>,
    /// The checkpoint being aligned.
    aligning: Option<u64>,
    /// Packets of senders that sent the barrier, in arrival order, until it is aligned.
    held: VecDeque<Envelope>,
    /// Packets held during the last alignment, read before the channel.
    replay: VecDeque<Envelope>,
    /// Whether a sender's rows after its barrier wait for the alignment (exactly-once); under
    /// at-least-once they go on (only its next barrier waits), and a restart reads them again.
    hold: bool,
}

impl Aligner {
    pub(crate) fn new(inbox: Inbox, senders: usize) -> Self {
        let Inbox { rx, credits } = inbox;
        Self {
            rx,
            credits,
            arrived: vec![false; senders],
            ended: vec![false; senders],
            aligning: None,
            held: VecDeque::new(),
            replay: VecDeque::new(),
            hold: true,
        }
    }

    /// At-least-once: rows after a barrier are not held (see [`Aligner::hold`]).
    pub(crate) fn unaligned(&mut self) {
        self.hold = false;
    }

    /// The next messages, or an aligned barrier; `None` once every sender has gone. `wait`:
    /// how long to wait for a packet (`None`: until one comes).
    pub(crate) fn next(&mut self, wait: Option<Duration>) -> Result<Option<Pulled>> {
        // (one deadline for the whole call: packets held by an alignment do not restart it)
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            if let Some(id) = self.aligning {
                if self.arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e) {
                    self.aligning = None;
                    self.arrived.iter_mut().for_each(|a| *a = false);
                    // held packets came after what is still to replay (nothing is read from the
                    // channel while the replay queue has packets)
                    let mut held = std::mem::take(&mut self.held);
                    held.append(&mut self.replay);
                    self.replay = held;
                    return Ok(Some(Pulled::Aligned(id)));
                }
            }
            let (i, packet) = match self.replay.pop_front() {
                Some(e) => e,
                None => match deadline {
                    None => match self.rx.recv() {
                        Ok(e) => e,
                        Err(_) => return Ok(None),
                    },
                    Some(d) => match self.rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                        Ok(e) => e,
                        Err(RecvTimeoutError::Timeout) => return Ok(Some(Pulled::Quiet)),
                        Err(RecvTimeoutError::Disconnected) => return Ok(None),
                    },
                },
            };
            if self.aligning.is_some()
                && self.arrived.get(i).copied().unwrap_or(false)
                && (self.hold || matches!(packet, Packet::Barrier(_)))
            {
                self.held.push_back((i, packet));
                continue;
            }
            match packet {
                Packet::Messages(messages) => {
                    if messages.iter().any(|m| matches!(m, Message::EndOfStream)) {
                        if let Some(e) = self.ended.get_mut(i) {
                            *e = true;
                        }
                    }
                    self.credits.release(i, crate::exec::exchange::rows_of(&messages));
                    return Ok(Some(Pulled::Messages(i, messages)));
                }
                Packet::Idle => return Ok(Some(Pulled::Idle(i))),
                Packet::Barrier(id) => {
                    match self.aligning {
                        None => self.aligning = Some(id),
                        Some(current) if current != id => {
                            return Err(RuntimeError::Internal(format!(
                                "checkpoint barrier {id} arrived while {current} was aligned"
                            )))
                        }
                        Some(_) => {}
                    }
                    if let Some(a) = self.arrived.get_mut(i) {
                        *a = true;
                    }
                }
            }
        }
    }
}

impl Drop for Aligner {
    /// Senders waiting for credits give up: the instance has gone.
    fn drop(&mut self) {
        self.credits.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn wm(w: i64) -> Packet {
        Packet::Messages(vec![Message::Watermark(w)])
    }

    fn pulled(a: &mut Aligner) -> String {
        match a.next(Some(Duration::ZERO)).unwrap() {
            Some(Pulled::Messages(i, m)) => match m.first() {
                Some(Message::Watermark(w)) => format!("{i}:{w}"),
                Some(Message::EndOfStream) => format!("{i}:end"),
                _ => format!("{i}:?"),
            },
            Some(Pulled::Aligned(id)) => format!("aligned {id}"),
            Some(Pulled::Idle(i)) => format!("{i}:idle"),
            Some(Pulled::Quiet) => "quiet".into(),
            None => "gone".into(),
        }
    }

    #[test]
    fn a_sender_past_the_barrier_waits_until_every_sender_sent_it() {
        let (tx, rx) = sync_channel(16);
        let mut a = Aligner::new(Inbox { rx, credits: Arc::new(Credits::new(3, 8192)) }, 3);
        for e in [
            (0, wm(1)),
            (0, Packet::Barrier(7)),
            (0, wm(2)), // after the barrier: held
            (1, wm(3)),
            (1, Packet::Barrier(7)),
            (2, Packet::Messages(vec![Message::EndOfStream])), // ended: not waited for
            (1, wm(4)),
        ] {
            tx.send(e).unwrap();
        }
        let got: Vec<String> = (0..6).map(|_| pulled(&mut a)).collect();
        assert_eq!(got, ["0:1", "1:3", "2:end", "aligned 7", "0:2", "1:4"]);
        assert_eq!(pulled(&mut a), "quiet");
        // the next barrier, with a held packet of one sender replayed in order
        tx.send((1, Packet::Barrier(8))).unwrap();
        tx.send((1, wm(5))).unwrap();
        tx.send((0, wm(6))).unwrap();
        tx.send((0, Packet::Barrier(8))).unwrap();
        let got: Vec<String> = (0..3).map(|_| pulled(&mut a)).collect();
        assert_eq!(got, ["0:6", "aligned 8", "1:5"]);
        // a sender's idleness comes in its order: held after its barrier like its rows
        tx.send((1, Packet::Barrier(9))).unwrap();
        tx.send((1, Packet::Idle)).unwrap();
        tx.send((0, Packet::Idle)).unwrap();
        tx.send((0, Packet::Barrier(9))).unwrap();
        let got: Vec<String> = (0..3).map(|_| pulled(&mut a)).collect();
        assert_eq!(got, ["0:idle", "aligned 9", "1:idle"]);
        drop(tx);
        assert_eq!(pulled(&mut a), "gone");
    }

    #[test]
    fn unaligned_a_sender_past_the_barrier_goes_on_and_only_its_next_barrier_waits() {
        let (tx, rx) = sync_channel(16);
        let mut a = Aligner::new(Inbox { rx, credits: Arc::new(Credits::new(2, 8192)) }, 2);
        a.unaligned();
        for e in [(0, Packet::Barrier(7)), (0, wm(1)), (0, Packet::Barrier(8)), (0, wm(2)), (1, Packet::Barrier(7))] {
            tx.send(e).unwrap();
        }
        let got: Vec<String> = (0..4).map(|_| pulled(&mut a)).collect();
        assert_eq!(got, ["0:1", "0:2", "aligned 7", "quiet"]);
        tx.send((1, Packet::Barrier(8))).unwrap();
        assert_eq!(pulled(&mut a), "aligned 8");
    }

    /// Wait (up to 20 s) until a sender whose packets the aligner `a` holds has sent `expected`
    /// packets, `a` taking nothing up meanwhile, then a moment more: it must stay there.
    fn held_sender_stops_at(a: &mut Aligner, sent: &std::sync::atomic::AtomicUsize, expected: usize, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sent.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
            assert_eq!(pulled(a), "quiet");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(pulled(a), "quiet");
        assert_eq!(sent.load(Ordering::SeqCst), expected, "{what}");
    }

    /// Start sending `count` packets of one watermark each as sender 0, `pause` before each:
    /// how many it has sent so far, and the thread.
    fn send_watermarks(
        link: &crate::exec::exchange::Link,
        count: usize,
        pause: Duration,
    ) -> (Arc<std::sync::atomic::AtomicUsize>, std::thread::JoinHandle<()>) {
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, s) = (link.clone(), Arc::clone(&sent));
        let sender = std::thread::spawn(move || {
            for w in 0..count {
                std::thread::sleep(pause);
                if !l.messages(0, vec![Message::Watermark(w as i64)]) {
                    return;
                }
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        (sent, sender)
    }

    #[test]
    fn packets_held_by_an_alignment_do_not_stretch_the_wait() {
        use crate::exec::exchange::{channel, CREDITS};
        let (link, inbox) = channel(2, 8192);
        let mut a = Aligner::new(inbox, 2);
        assert!(link.barrier(0, 1));
        // sender 0, past the barrier, sends a packet every 30 ms: each is held
        let (sent, sender) = send_watermarks(&link, CREDITS, Duration::from_millis(30));
        // the wait ends when its time is up, not 50 ms after the last held packet
        let started = std::time::Instant::now();
        assert!(matches!(a.next(Some(Duration::from_millis(50))).unwrap(), Some(Pulled::Quiet)));
        let (waited, by_then) = (started.elapsed(), sent.load(Ordering::SeqCst));
        assert!(by_then < CREDITS, "the wait lasted {waited:?}, until every held packet ({by_then}) had come");
        assert!(link.barrier(1, 1));
        assert_eq!(pulled(&mut a), "aligned 1");
        sender.join().unwrap();
    }

    #[test]
    fn a_sender_past_the_barrier_waits_once_its_credits_are_held() {
        use crate::exec::exchange::{channel, CREDITS};
        let total = CREDITS + 1;
        let (link, inbox) = channel(2, 8192);
        let mut a = Aligner::new(inbox, 2);
        assert!(link.barrier(0, 1));
        let (sent, sender) = send_watermarks(&link, total, Duration::ZERO);
        // everything sender 0 sends is held: it stops after its credits
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        held_sender_stops_at(&mut a, &sent, CREDITS, "a held sender waits");
        // sender 1's barrier aligns the checkpoint: the held packets are taken up, the rest sent
        assert!(link.barrier(1, 1));
        assert_eq!(pulled(&mut a), "aligned 1");
        let mut got = Vec::new();
        while got.len() < total && std::time::Instant::now() < deadline {
            match a.next(Some(Duration::from_millis(50))).unwrap() {
                Some(Pulled::Messages(0, m)) => got.extend(m),
                Some(Pulled::Quiet) => {}
                _ => panic!("only sender 0's packets"),
            }
        }
        sender.join().unwrap();
        assert_eq!(got.len(), total);
        assert_eq!(sent.load(Ordering::SeqCst), total);
        // a sender waiting for credits of an instance that has gone gives up
        let (link, inbox) = channel(1, 8192);
        assert!((0..CREDITS).all(|_| link.messages(0, vec![])));
        let waiting = std::thread::spawn(move || link.messages(0, vec![]));
        std::thread::sleep(Duration::from_millis(50));
        drop(Aligner::new(inbox, 1));
        assert!(!waiting.join().unwrap());
    }

    /// Start sending `count` packets of `rows` rows as sender `me`: how many it has sent so far,
    /// and the thread.
    fn send_rows(
        link: &crate::exec::exchange::Link,
        me: usize,
        rows: usize,
        count: usize,
    ) -> (Arc<std::sync::atomic::AtomicUsize>, std::thread::JoinHandle<()>) {
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, s) = (link.clone(), Arc::clone(&sent));
        let sender = std::thread::spawn(move || {
            for _ in 0..count {
                if !l.messages(me, vec![batch_of(rows)]) {
                    return;
                }
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        (sent, sender)
    }

    /// Wait (up to 20 s) until `sent` reaches `expected`, then a moment more: it must stay.
    fn sent_stays_at(sent: &std::sync::atomic::AtomicUsize, expected: usize, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sent.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sent.load(Ordering::SeqCst), expected, "{what}");
    }

    /// Join `sender`, failing (not hanging) when it does not end within 20 s.
    fn ends(sender: std::thread::JoinHandle<()>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !sender.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(sender.is_finished(), "the sender still waits for credits");
        sender.join().unwrap();
    }

    /// A batch of `rows` rows of one column.
    fn batch_of(rows: usize) -> Message {
        use datafusion_common::arrow::array::Int64Array;
        use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
        use datafusion_common::arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let column = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        Message::Data(crate::message::StreamBatch::new(RecordBatch::try_new(schema, vec![column]).unwrap()))
    }

    #[test]
    fn a_sender_has_as_many_rows_on_their_way_as_its_credits_allow_whatever_its_packets() {
        use crate::exec::exchange::{channel, CREDIT_BATCHES};
        // batches of 100 rows: a sender of 50-row packets has 2 × CREDIT_BATCHES on their way,
        // one of 100-row packets CREDIT_BATCHES, one of a larger packet that one alone
        for (packet, expected) in [(50, 2 * CREDIT_BATCHES), (100, CREDIT_BATCHES), (1000, 1)] {
            let (link, inbox) = channel(1, 100);
            let mut a = Aligner::new(inbox, 1);
            let (sent, sender) = send_rows(&link, 0, packet, expected + 1);
            sent_stays_at(&sent, expected, &format!("packets of {packet} rows on their way"));
            // taking one packet up lets the next go
            assert!(matches!(a.next(Some(Duration::from_millis(50))).unwrap(), Some(Pulled::Messages(0, _))));
            ends(sender);
            assert_eq!(sent.load(Ordering::SeqCst), expected + 1);
        }
    }

    #[test]
    fn the_rows_an_alignment_holds_keep_their_credits_until_they_are_taken_up() {
        use crate::exec::exchange::{channel, CREDIT_BATCHES};
        let (link, inbox) = channel(2, 100);
        let mut a = Aligner::new(inbox, 2);
        assert!(link.barrier(0, 1));
        // sender 0 is past the barrier: its packets are held, and it stops once its rows are
        let (sent, sender) = send_rows(&link, 0, 100, CREDIT_BATCHES + 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        held_sender_stops_at(&mut a, &sent, CREDIT_BATCHES, "a held sender waits once its rows are held");
        // sender 1's barrier aligns the checkpoint: the held packets are taken up, the rest sent
        assert!(link.barrier(1, 1));
        assert_eq!(pulled(&mut a), "aligned 1");
        let mut rows = 0;
        while rows < 100 * (CREDIT_BATCHES + 2) && std::time::Instant::now() < deadline {
            if let Some(Pulled::Messages(0, m)) = a.next(Some(Duration::from_millis(50))).unwrap() {
                rows += crate::exec::exchange::rows_of(&m);
            }
        }
        ends(sender);
        assert_eq!(rows, 100 * (CREDIT_BATCHES + 2));
    }
}
