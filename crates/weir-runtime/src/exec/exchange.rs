//! An exchange's sending side: rows routed by key group to the instances of the next stage,
//! watermarks, checkpoint barriers and the end of the stream to all of them, in order, over
//! bounded channels (a full channel blocks the sender: backpressure).
//!
//! ```text
//!   batch ─► keys ─► hash ─► key group (of KEY_GROUPS) ─► instance = group · n / KEY_GROUPS
//!   Watermark, EndOfStream, Barrier ─► every instance   Dropped ─► instance 0 (the side output)
//! ```
//!
//! A small packet (nothing but a watermark, or batches of fewer than a quarter of the batch
//! size's rows) goes to an instance at most once every [`WATERMARK_EVERY`]: the later ones wait,
//! and go with the sender's next packet to it that is not small, or together when the time is
//! up.
//!
//! An instance's senders share its channel, and each holds credits for it: it may have up to
//! [`CREDIT_BATCHES`] × `batch.size` rows (and at most [`CREDITS`] packets) on their way to the
//! instance, and the instance gives a packet's credit back when it takes the packet up. Rows,
//! not packets, so that small packets (a split of a generated table reading part of a batch,
//! shared among the instances; a window's few results) do not stop a sender after four of
//! them. While a checkpoint's barrier is aligned, the packets of senders past the barrier
//! are held (by its aligner) and their credits not given back, so such a sender waits once its
//! credits are spent, as a blocked channel waits in Flink: what an alignment holds is bounded
//! by the senders and the batch size. Barriers take no credit.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use datafusion_common::arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use datafusion_common::arrow::buffer::BooleanBuffer;
use datafusion_common::arrow::compute::FilterBuilder;
use datafusion_common::hash_utils::{create_hashes, RandomState};
use datafusion_physical_expr::PhysicalExpr;
use weir_plan::parallel::KEY_GROUPS;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch};

/// What one sender hands an instance at a time: its index among the instance's inputs, and
/// messages in order or a checkpoint barrier.
pub(crate) type Envelope = (usize, Packet);

/// What travels on an exchange.
pub(crate) enum Packet {
    /// Messages, in order.
    Messages(Vec<Message>),
    /// Checkpoint `id`'s barrier: the sender's state for it is taken, what it sends next comes
    /// after the checkpoint (aligned by the receiving instance).
    Barrier(u64),
    /// The sender (a source instance) has had nothing to read for its table's idle timeout: it
    /// is left out of the receiver's watermark until it sends again (Flink's idle watermark
    /// status). Declared by the sender, so a sender slowed by backpressure never counts as idle.
    Idle,
}

/// Packets of messages one sender may have on their way to an instance: in its channel, or
/// held by its alignment of a checkpoint barrier (whatever their rows).
pub(crate) const CREDITS: usize = 16;

/// Rows one sender may have on their way to an instance, in batches of `batch.size` rows (a
/// first packet goes whatever its rows).
pub(crate) const CREDIT_BATCHES: usize = 4;

/// The credits of an instance's senders.
pub(crate) struct Credits {
    state: Mutex<CreditState>,
    freed: Condvar,
    /// Rows a sender may have on their way.
    rows: usize,
}

struct CreditState {
    /// Per sender, its packets on their way, and their rows.
    in_flight: Vec<(usize, usize)>,
    /// Senders waiting for a credit (only then is a given-back credit announced).
    waiting: usize,
    /// The instance has gone.
    closed: bool,
}

/// The rows of a packet's batches (dropped rows too).
pub(crate) fn rows_of(messages: &[Message]) -> usize {
    messages
        .iter()
        .map(|m| match m {
            Message::Data(b) => b.batch.num_rows(),
            Message::Dropped(d) => d.rows.num_rows(),
            _ => 0,
        })
        .sum()
}

impl Credits {
    /// Credits for `senders`, each with room for `rows` rows.
    pub(crate) fn new(senders: usize, rows: usize) -> Self {
        let state = CreditState { in_flight: vec![(0, 0); senders], waiting: 0, closed: false };
        Self { state: Mutex::new(state), freed: Condvar::new(), rows }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a credit for a packet of `rows` rows from `sender`, waiting until enough are given
    /// back; `false` once the instance has gone.
    fn acquire(&self, sender: usize, rows: usize) -> bool {
        let mut state = self.lock();
        loop {
            if state.closed {
                return false;
            }
            match state.in_flight.get_mut(sender) {
                Some((packets, held)) if *packets > 0 && (*packets >= CREDITS || *held + rows > self.rows) => {}
                Some((packets, held)) => {
                    *packets += 1;
                    *held += rows;
                    return true;
                }
                None => return true,
            }
            state.waiting += 1;
            state = self.freed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            state.waiting -= 1;
        }
    }

    /// The instance took up a packet of `rows` rows from `sender`.
    pub(crate) fn release(&self, sender: usize, rows: usize) {
        let mut state = self.lock();
        if let Some((packets, held)) = state.in_flight.get_mut(sender) {
            *packets = packets.saturating_sub(1);
            *held = held.saturating_sub(rows);
        }
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.freed.notify_all();
        }
    }

    /// The instance has gone: no sender waits for it any more.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

/// The sending end of an instance's channel (every sender has a clone).
#[derive(Clone)]
pub(crate) struct Link {
    tx: SyncSender<Envelope>,
    credits: Arc<Credits>,
}

impl Link {
    /// Send `messages` as sender `me`, with its credits for their rows; `false` once the
    /// instance has gone.
    pub(crate) fn messages(&self, me: usize, messages: Vec<Message>) -> bool {
        self.credits.acquire(me, rows_of(&messages)) && self.tx.send((me, Packet::Messages(messages))).is_ok()
    }

    pub(crate) fn barrier(&self, me: usize, id: u64) -> bool {
        self.tx.send((me, Packet::Barrier(id))).is_ok()
    }

    fn idle(&self, me: usize) -> bool {
        self.tx.send((me, Packet::Idle)).is_ok()
    }

    /// The credits of the instance it sends to.
    pub(crate) fn credits(&self) -> Arc<Credits> {
        Arc::clone(&self.credits)
    }
}

/// The receiving end of an instance's channel.
pub(crate) struct Inbox {
    pub(crate) rx: Receiver<Envelope>,
    pub(crate) credits: Arc<Credits>,
}

/// A channel into an instance with `senders` senders, whose batches have about `batch_size`
/// rows: room for every sender's credits and a barrier each.
pub(crate) fn channel(senders: usize, batch_size: usize) -> (Link, Inbox) {
    let (tx, rx) = sync_channel((CREDITS + 1) * senders.max(1));
    let credits = Arc::new(Credits::new(senders, CREDIT_BATCHES.saturating_mul(batch_size.max(1))));
    (Link { tx, credits: Arc::clone(&credits) }, Inbox { rx, credits })
}

/// The seed of the key hash: fixed, so a key's group is the same in every run and process.
const SEED: u64 = 0x7765_6972_6b67;

/// The key group of each row, from the values of its keys.
pub(crate) fn key_groups(keys: &[ArrayRef], rows: usize) -> Result<Vec<u32>> {
    let mut hashes = Vec::new();
    hash_keys(keys, rows, &mut hashes)?;
    Ok(hashes.iter().map(|h| group_of(*h)).collect())
}

/// The hash of each row's keys, into `hashes` (cleared first).
fn hash_keys(keys: &[ArrayRef], rows: usize, hashes: &mut Vec<u64>) -> Result<()> {
    hashes.clear();
    hashes.resize(rows, 0);
    create_hashes(keys, &RandomState::with_seed(SEED), hashes)?;
    Ok(())
}

/// The key group of a key hash.
fn group_of(hash: u64) -> u32 {
    ((u128::from(hash) * KEY_GROUPS as u128) >> 64) as u32
}

/// The instance (of `instances`) that owns key group `group`: each owns a contiguous range.
pub(crate) fn owner(group: u32, instances: usize) -> usize {
    group as usize * instances / KEY_GROUPS
}

/// Up to this many targets, a hashed batch's rows are selected for each by a bit mask (one
/// pass over the rows' targets per target, then a filter); with more, by the list of each
/// target's rows (one pass, then a take).
const MASKED_TARGETS: usize = 4;

/// `b`'s rows to the targets `dests` names (one per row), each target's as one batch in `out`.
fn split_by_masks(b: &StreamBatch, dests: &[u16], out: &mut [Vec<Message>]) -> Result<()> {
    let rows = dests.len();
    for (target, to) in out.iter_mut().enumerate() {
        let t = target as u16;
        let mask = BooleanBuffer::collect_bool(rows, |i| dests[i] == t);
        match mask.count_set_bits() {
            0 => {}
            all if all == rows => to.push(Message::Data(b.clone())),
            _ => {
                let predicate = FilterBuilder::new(&BooleanArray::new(mask, None)).optimize().build();
                to.push(Message::Data(b.filter(&predicate)?));
            }
        }
    }
    Ok(())
}

/// As [`split_by_masks`], through the rows of each target listed in one pass.
fn split_by_indices(b: &StreamBatch, dests: &[u16], out: &mut [Vec<Message>]) -> Result<()> {
    let rows = dests.len();
    // where each target's rows start in `order` (rows in order within a target)
    let mut start = vec![0usize; out.len() + 1];
    for d in dests {
        start[*d as usize + 1] += 1;
    }
    for t in 1..start.len() {
        start[t] += start[t - 1];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; rows];
    for (row, d) in dests.iter().enumerate() {
        order[next[*d as usize]] = row as u32;
        next[*d as usize] += 1;
    }
    for (target, to) in out.iter_mut().enumerate() {
        let mine = &order[start[target]..start[target + 1]];
        match mine.len() {
            0 => {}
            all if all == rows => to.push(Message::Data(b.clone())),
            _ => to.push(Message::Data(b.take(&UInt32Array::from_iter_values(mine.iter().copied()))?)),
        }
    }
    Ok(())
}

/// Sends one instance's output on to the next stage.
pub(crate) struct Router {
    /// One channel per instance of the next stage.
    targets: Vec<Link>,
    /// This sender's index among each target's inputs.
    me: usize,
    /// Where its batches go.
    route: Route,
    /// The target of each key group (hashed routes).
    owners: Vec<u16>,
    /// The rows' hashes (a buffer reused from batch to batch).
    hashes: Vec<u64>,
    /// The rows' targets (reused likewise).
    dests: Vec<u16>,
    /// Per target: when a packet last went to it, and what is held back since (see
    /// [`WATERMARK_EVERY`]), in order.
    last_sent: Vec<Option<Instant>>,
    held: Vec<Vec<Message>>,
    /// Packets of fewer rows than this wait like watermarks (see [`SMALL_PACKET`]).
    small: usize,
}

/// A packet holding nothing but a watermark, or only watermarks and fewer than
/// [`SMALL_PACKET`] of the batch size's rows, goes to an instance at most once in this long:
/// the sender's later packets wait (the newest watermark standing for the ones before it) and
/// go with its next packet that is not small to that instance, or together once this much time
/// has passed since its last one (as a network buffer waits for Flink's
/// `execution.buffer-timeout`, 100 ms by default). An instance that is fed often is woken that
/// much less often (in a hashed exchange, every batch read or pre-aggregated without rows for
/// an instance would wake it with a watermark; a window's results, a few hundred rows per
/// instance and window, would wake the next stage or the sink once per window); one fed rarely
/// gets each packet at once; the order of what a sender sends is unchanged, and a checkpoint's
/// barrier, an idleness notice or the end of the stream takes whatever waits with it.
pub(crate) const WATERMARK_EVERY: Duration = Duration::from_millis(10);

/// A packet is small, and may wait ([`WATERMARK_EVERY`]), below this share of the batch size
/// (1/4: a split's share of its read, about a batch, never waits).
pub(crate) const SMALL_PACKET: usize = 4;

/// Where a router sends its batches (watermarks, idleness and barriers go to every target).
enum Route {
    /// By the hash of these keys.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// To this target (the first, when there is one target): so each target's watermark is
    /// still the minimum over every sender.
    To(usize),
    /// To every target.
    Every,
}

impl Router {
    pub(crate) fn new(targets: Vec<Link>, me: usize, keys: Option<Vec<Arc<dyn PhysicalExpr>>>) -> Self {
        Self::routing(targets, me, keys.map_or(Route::To(0), Route::Hash))
    }

    /// A router sending every batch to every target.
    pub(crate) fn broadcast(targets: Vec<Link>, me: usize) -> Self {
        Self::routing(targets, me, Route::Every)
    }

    /// A router sending every batch to target `to` only (the rest of what it sends to all).
    pub(crate) fn forward(targets: Vec<Link>, me: usize, to: usize) -> Self {
        Self::routing(targets, me, Route::To(to))
    }

    fn routing(targets: Vec<Link>, me: usize, route: Route) -> Self {
        let n = targets.len();
        let owners = (0..KEY_GROUPS as u32).map(|g| owner(g, n) as u16).collect();
        let small = targets.first().map_or(0, |t| t.credits.rows / CREDIT_BATCHES / SMALL_PACKET);
        Self {
            targets,
            me,
            route,
            owners,
            hashes: Vec::new(),
            dests: Vec::new(),
            last_sent: vec![None; n],
            held: (0..n).map(|_| Vec::new()).collect(),
            small,
        }
    }

    /// Route `messages`; `false` once a target has gone (the query is stopping).
    pub(crate) fn send(&mut self, messages: Vec<Message>) -> Result<bool> {
        self.send_at(messages, Instant::now())
    }

    /// [`Router::send`] at time `now`.
    fn send_at(&mut self, messages: Vec<Message>, now: Instant) -> Result<bool> {
        if messages.is_empty() {
            // (an instance taking in rows without passing any on still sends what is due)
            return Ok(self.flush_due(now));
        }
        let n = self.targets.len();
        if n == 1 {
            return Ok(self.deliver(0, messages, now) && self.flush_due(now));
        }
        let mut out: Vec<Vec<Message>> = (0..n).map(|_| Vec::new()).collect();
        for m in messages {
            match m {
                Message::Data(b) => match &self.route {
                    // batches share their buffers: a copy is a few reference counts
                    Route::Every => out.iter_mut().for_each(|o| o.push(Message::Data(b.clone()))),
                    Route::To(t) => match out.get_mut(*t) {
                        Some(to) => to.push(Message::Data(b)),
                        None => {
                            return Err(RuntimeError::Internal("a router's target is not among its targets".into()))
                        }
                    },
                    // (an empty batch to the first, as before rows are hashed)
                    Route::Hash(_) if b.batch.num_rows() == 0 => out[0].push(Message::Data(b)),
                    Route::Hash(keys) => {
                        let rows = b.batch.num_rows();
                        let arrays = keys
                            .iter()
                            .map(|k| k.evaluate(&b.batch).and_then(|v| v.into_array(rows)))
                            .collect::<datafusion_common::Result<Vec<_>>>()?;
                        hash_keys(&arrays, rows, &mut self.hashes)?;
                        self.dests.clear();
                        self.dests.extend(self.hashes.iter().map(|h| self.owners[group_of(*h) as usize]));
                        if n <= MASKED_TARGETS {
                            split_by_masks(&b, &self.dests, &mut out)?;
                        } else {
                            split_by_indices(&b, &self.dests, &mut out)?;
                        }
                    }
                },
                Message::Dropped(d) => out[0].push(Message::Dropped(d)),
                other => out.iter_mut().for_each(|o| o.push(other.clone())),
            }
        }
        for (target, messages) in out.into_iter().enumerate() {
            if !messages.is_empty() && !self.deliver(target, messages, now) {
                return Ok(false);
            }
        }
        Ok(self.flush_due(now))
    }

    /// Send `messages` to `target`, after what is held back for it, or hold them back if they
    /// are small (a watermark, or batches of few rows) and a packet went less than
    /// [`WATERMARK_EVERY`] ago; `false` once the target has gone.
    fn deliver(&mut self, target: usize, mut messages: Vec<Message>, now: Instant) -> bool {
        let recent = self.last_sent[target].is_some_and(|t| now.saturating_duration_since(t) < WATERMARK_EVERY);
        if recent {
            let rows = rows_of(&messages);
            let waits = messages.iter().all(|m| matches!(m, Message::Data(_) | Message::Watermark(_)));
            if waits && (rows == 0 || rows_of(&self.held[target]) + rows < self.small) {
                self.hold(target, messages);
                return true;
            }
        }
        let held = &mut self.held[target];
        if !held.is_empty() {
            held.append(&mut messages);
            messages = std::mem::take(held);
        }
        self.send_now(target, messages, now)
    }

    /// Keep `messages` for `target`, after what it holds: a watermark after a watermark stands
    /// for it.
    fn hold(&mut self, target: usize, messages: Vec<Message>) {
        let held = &mut self.held[target];
        for m in messages {
            match (held.last_mut(), m) {
                (Some(Message::Watermark(last)), Message::Watermark(w)) => *last = (*last).max(w),
                (_, m) => held.push(m),
            }
        }
    }

    /// Send `messages` to `target` now; `false` once the target has gone.
    fn send_now(&mut self, target: usize, messages: Vec<Message>, now: Instant) -> bool {
        self.last_sent[target] = Some(now);
        self.targets[target].messages(self.me, messages)
    }

    /// When what is held back for `target` is due (`None`: nothing is held back).
    fn due_for(&self, target: usize) -> Option<Instant> {
        match self.held[target].is_empty() {
            true => None,
            false => self.last_sent[target].map(|l| l + WATERMARK_EVERY),
        }
    }

    /// When the first packet held back is due (`None`: nothing is held back).
    pub(crate) fn due(&self) -> Option<Instant> {
        (0..self.targets.len()).filter_map(|t| self.due_for(t)).min()
    }

    /// Send what is held back whose time has come by `now`; `false` once a target has gone.
    pub(crate) fn flush_due(&mut self, now: Instant) -> bool {
        (0..self.targets.len()).all(|t| self.due_for(t).is_none_or(|d| now < d) || self.flush_target(t, now))
    }

    /// Send everything held back (before the sender waits for something else than its
    /// input); `false` once a target has gone.
    pub(crate) fn flush(&mut self) -> bool {
        let now = Instant::now();
        (0..self.targets.len()).all(|t| self.flush_target(t, now))
    }

    fn flush_target(&mut self, target: usize, now: Instant) -> bool {
        match std::mem::take(&mut self.held[target]) {
            held if held.is_empty() => true,
            held => self.send_now(target, held, now),
        }
    }

    /// Tell every instance this sender is idle; `false` once a target has gone. Its next
    /// watermark goes at once: until something comes from it, the instances leave it out of
    /// their watermarks.
    pub(crate) fn idle(&mut self) -> bool {
        let sent = self.flush() && self.targets.iter().all(|t| t.idle(self.me));
        self.last_sent.fill(None);
        sent
    }

    /// Send checkpoint `id`'s barrier to every instance; `false` once a target has gone.
    pub(crate) fn barrier(&mut self, id: u64) -> bool {
        self.flush() && self.targets.iter().all(|t| t.barrier(self.me, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::{Array, Int64Array, StringArray};

    #[test]
    fn key_groups_spread_and_owners_are_contiguous() {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let groups = key_groups(&[keys], 10_000).unwrap();
        let mut seen = vec![0usize; KEY_GROUPS];
        groups.iter().for_each(|g| seen[*g as usize] += 1);
        assert!(seen.iter().all(|n| (40..120).contains(n)), "{seen:?}");
        assert_eq!((0..KEY_GROUPS as u32).map(|g| owner(g, 2)).filter(|o| *o == 0).count(), 64);
        assert_eq!(owner(0, 3), 0);
        assert_eq!(owner(KEY_GROUPS as u32 - 1, 3), 2);
        // the same key, the same group, whatever batch it comes in
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x"]));
        let g = key_groups(&[a], 3).unwrap();
        assert_eq!(g[0], g[2]);
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert_eq!(key_groups(&[b], 1).unwrap()[0], g[0]);
    }

    #[test]
    fn a_router_sends_each_row_once_to_the_owner_of_its_key_group() {
        // (by masks up to MASKED_TARGETS targets, by row lists above)
        for n in [2, 3, MASKED_TARGETS + 1, 7] {
            routes_to_owners(n);
        }
    }

    /// The watermarks a sender's packets to an instance carry, in order, packet by packet.
    fn watermarks(inbox: &Inbox) -> Vec<Vec<String>> {
        std::iter::from_fn(|| inbox.rx.try_recv().ok())
            .map(|(_, p)| match p {
                Packet::Messages(m) => m
                    .iter()
                    .map(|m| match m {
                        Message::Watermark(w) => w.to_string(),
                        Message::Data(b) => format!("{} rows", b.batch.num_rows()),
                        _ => "other".into(),
                    })
                    .collect(),
                Packet::Barrier(id) => vec![format!("barrier {id}")],
                Packet::Idle => vec!["idle".into()],
            })
            .collect()
    }

    #[test]
    fn watermarks_alone_go_to_an_instance_at_most_once_in_a_while_and_in_order() {
        use datafusion_common::arrow::record_batch::RecordBatch;
        // (batches of 4 rows: a packet of 2 rows is not small)
        let (links, inboxes): (Vec<_>, Vec<_>) = (0..2).map(|_| channel(1, 4)).unzip();
        let mut router = Router::forward(links, 0, 1);
        let rows = || {
            let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
            Message::Data(StreamBatch::new(RecordBatch::try_from_iter([("a", a)]).unwrap()))
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(router.send_at(vec![rows(), Message::Watermark(1)], t0).unwrap());
        // soon after: held back (the newest standing for the others), rows to target 1 take it along
        assert!(router.send_at(vec![Message::Watermark(2)], at(1)).unwrap());
        assert!(router.send_at(vec![Message::Watermark(3)], at(2)).unwrap());
        assert_eq!(router.due(), Some(t0 + WATERMARK_EVERY));
        assert_eq!(watermarks(&inboxes[0]), [vec!["1"]]);
        assert!(router.send_at(vec![rows(), Message::Watermark(4)], at(3)).unwrap());
        assert_eq!(watermarks(&inboxes[0]), Vec::<Vec<String>>::new(), "held back");
        assert_eq!(watermarks(&inboxes[1]), [vec!["2 rows", "1"], vec!["3", "2 rows", "4"]]);
        // one held back goes when it is due, whether or not anything else is sent
        let due = router.due().expect("watermark 4 to target 0 is held back");
        assert_eq!(due, t0 + WATERMARK_EVERY);
        assert!(router.flush_due(due - Duration::from_millis(1)));
        assert!(watermarks(&inboxes[0]).is_empty(), "not yet due");
        assert!(router.flush_due(due));
        assert_eq!(watermarks(&inboxes[0]), [vec!["4"]]);
        assert_eq!(router.due(), None);
        // (and when the sender has nothing else to send: its rows went into an aggregate)
        assert!(router.send_at(vec![Message::Watermark(5)], due + Duration::from_millis(1)).unwrap());
        assert!(router.send_at(Vec::new(), due + WATERMARK_EVERY - Duration::from_millis(1)).unwrap());
        assert!(watermarks(&inboxes[0]).is_empty(), "not yet due");
        assert!(router.send_at(Vec::new(), due + WATERMARK_EVERY).unwrap());
        assert_eq!(watermarks(&inboxes[0]), [vec!["5"]]);
        assert_eq!(watermarks(&inboxes[1]), [vec!["5"]]);
        let due = due + WATERMARK_EVERY;
        // a barrier, idleness and the end of the stream take what is held back first; after
        // idleness, the first watermark goes at once
        assert!(router.send_at(vec![Message::Watermark(6)], due).unwrap());
        assert!(router.barrier(7));
        assert!(router.send_at(vec![Message::Watermark(8)], due).unwrap());
        assert!(router.idle());
        assert!(router.send_at(vec![Message::Watermark(9)], due).unwrap());
        assert!(router.send_at(vec![Message::Watermark(10)], due).unwrap());
        assert!(router.send_at(vec![Message::EndOfStream], due).unwrap());
        let expect = [vec!["6"], vec!["barrier 7"], vec!["8"], vec!["idle"], vec!["9"], vec!["10", "other"]];
        assert_eq!(watermarks(&inboxes[0]), expect);
        assert_eq!(watermarks(&inboxes[1]), expect);
        assert_eq!(router.due(), None);
    }

    #[test]
    fn small_packets_wait_like_watermarks_and_go_together_in_order() {
        use datafusion_common::arrow::record_batch::RecordBatch;
        // batches of 40 rows: a packet of fewer than 10 is small
        let (link, inbox) = channel(1, 40);
        let mut router = Router::new(vec![link], 0, None);
        let rows = |n: i64| {
            let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
            Message::Data(StreamBatch::new(RecordBatch::try_from_iter([("a", a)]).unwrap()))
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // the first goes at once, whatever its size
        assert!(router.send_at(vec![rows(2), Message::Watermark(1)], t0).unwrap());
        assert_eq!(watermarks(&inbox), [vec!["2 rows", "1"]]);
        // small ones soon after wait, in order, the newest of consecutive watermarks standing for them
        assert!(router.send_at(vec![rows(3), Message::Watermark(2)], at(1)).unwrap());
        assert!(router.send_at(vec![Message::Watermark(3)], at(2)).unwrap());
        assert!(router.send_at(vec![rows(4)], at(3)).unwrap());
        assert!(watermarks(&inbox).is_empty(), "held back");
        assert_eq!(router.due(), Some(t0 + WATERMARK_EVERY));
        // until they would not be small together: then all go in one packet
        assert!(router.send_at(vec![rows(3), Message::Watermark(4)], at(4)).unwrap());
        assert_eq!(watermarks(&inbox), [vec!["3 rows", "3", "4 rows", "3 rows", "4"]]);
        assert_eq!(router.due(), None);
        // a packet that is not small takes what waits along at once
        assert!(router.send_at(vec![rows(1)], at(5)).unwrap());
        assert!(router.send_at(vec![rows(10)], at(6)).unwrap());
        assert_eq!(watermarks(&inbox), [vec!["1 rows", "10 rows"]]);
        // what waits goes when it is due, whether or not anything else is sent
        assert!(router.send_at(vec![rows(1), Message::Watermark(5)], at(7)).unwrap());
        let due = router.due().expect("held back");
        assert_eq!(due, at(6) + WATERMARK_EVERY);
        assert!(router.flush_due(due - Duration::from_millis(1)));
        assert!(watermarks(&inbox).is_empty(), "not yet due");
        assert!(router.flush_due(due));
        assert_eq!(watermarks(&inbox), [vec!["1 rows", "5"]]);
        // the end of the stream never waits, and takes what waits first
        assert!(router.send_at(vec![rows(1)], due).unwrap());
        assert!(router.send_at(vec![Message::EndOfStream], due).unwrap());
        assert_eq!(watermarks(&inbox), [vec!["1 rows", "other"]]);
        assert_eq!(router.due(), None);
    }

    fn routes_to_owners(n: usize) {
        use datafusion_common::arrow::record_batch::RecordBatch;
        use datafusion_physical_expr::expressions::Column;
        let (links, inboxes): (Vec<_>, Vec<_>) = (0..n).map(|_| channel(1, 8192)).unzip();
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let mut router = Router::new(links, 0, Some(vec![key]));
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values((0..10_000).map(|i| i % 5000)));
        let rows: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        // (columns with NULLs and of variable width go through each target's list of rows)
        let maybe: ArrayRef = Arc::new(Int64Array::from_iter((0..10_000).map(|i| (i % 3 != 0).then_some(i))));
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..10_000).map(|i| format!("r{i}"))));
        let batch = RecordBatch::try_from_iter([("k", keys), ("row", rows), ("maybe", maybe), ("text", text)]).unwrap();
        let mut b = StreamBatch::new(batch);
        b.row_watermarks = Some(Arc::new(Int64Array::from_iter_values((0..10_000).map(|i| 2 * i))));
        let groups = key_groups(&[Arc::clone(b.batch.column(0))], 10_000).unwrap();
        assert!(router.send(vec![Message::Data(b), Message::Watermark(7)]).unwrap());
        let mut seen = Vec::new();
        for (target, inbox) in inboxes.iter().enumerate() {
            let Ok((0, Packet::Messages(messages))) = inbox.rx.try_recv() else {
                panic!("target {target} of {n} got nothing")
            };
            let [Message::Data(b), Message::Watermark(7)] = &messages[..] else { panic!("rows, then the watermark") };
            let k = b.batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            for g in key_groups(&[Arc::clone(b.batch.column(0))], k.len()).unwrap() {
                assert_eq!(owner(g, n), target);
            }
            // each row with its own watermark, in the order they came
            let row = b.batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            let w = b.row_watermarks.as_ref().unwrap();
            assert!(
                (0..row.len()).all(|i| w.value(i) == 2 * row.value(i) && (i == 0 || row.value(i - 1) < row.value(i)))
            );
            let maybe = b.batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            let text = b.batch.column(3).as_any().downcast_ref::<StringArray>().unwrap();
            assert!((0..row.len()).all(|i| {
                let r = row.value(i);
                maybe.is_valid(i) == (r % 3 != 0)
                    && (maybe.is_null(i) || maybe.value(i) == r)
                    && text.value(i) == format!("r{r}")
            }));
            seen.extend(row.values().iter().copied());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10_000).collect::<Vec<_>>(), "every row once");
        assert!(groups.iter().any(|g| owner(*g, n) == 0) && groups.iter().any(|g| owner(*g, n) == n - 1));
        // a batch whose rows all belong to one target goes to it whole
        let one: ArrayRef = Arc::new(Int64Array::from(vec![5, 5, 5]));
        let batch = RecordBatch::try_from_iter([("k", one)]).unwrap();
        let to = owner(key_groups(&[Arc::clone(batch.column(0))], 3).unwrap()[0], n);
        let b = StreamBatch::new(batch);
        let column = Arc::clone(b.batch.column(0));
        // (a small packet soon after the first waits: see the test above)
        assert!(router.send(vec![Message::Data(b)]).unwrap() && router.flush());
        let Ok((0, Packet::Messages(messages))) = inboxes[to].rx.try_recv() else { panic!("the owner got nothing") };
        assert!(matches!(&messages[..], [Message::Data(b)] if Arc::ptr_eq(b.batch.column(0), &column)), "not copied");
        assert!(inboxes.iter().enumerate().all(|(t, i)| t == to || i.rx.try_recv().is_err()));
    }
}
