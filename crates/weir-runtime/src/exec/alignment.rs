//! Watermark alignment of a parallel run's source instances, for plans with a join or a union:
//! an instance whose watermark is more than the drift (a second, [`DRIFT`], unless the plan
//! allows more) ahead of the lowest waits before reading on (a batch is read whole, so an
//! instance whose batches each span a minute of event time runs up to a minute and the drift
//! ahead, then waits for the others to catch up).
//! A join's instances read their two inputs as they come (one channel shared by all senders),
//! so without it one input could run ahead of the other in event time and the join hold its
//! rows until the other catches up; one thread bounds that by reading the input whose watermark
//! is lowest first, and this does the same across threads (Flink's watermark alignment).
//! Waiting from the watermark an instance has (not the one it had before its last read, which
//! let it read one batch more) halves how far ahead an instance runs, and so what q8's join
//! holds at parallelism 2 while the other side catches up (a person split's batches span 164 s
//! of event time there: 14–17 MiB per instance before, 9.6 MiB after).
//!
//! ```text
//!   instance 0: wm 30 s ─┐   lowest = 12 s: instance 0 (more than 1 s ahead) waits,
//!   instance 1: wm 12 s ─┤   instances 1 and 2 read on
//!   instance 2: wm 12.5 s┘
//! ```
//!
//! The plan allows more ([`weir_plan::parallel::alignment_drift`]) where every input of its
//! joins and unions is windows' results emitted once per window: the smallest of those windows,
//! up to a minute. Those rows reach the join a window at a time whatever the drift, and a drift
//! shorter than what one read spans makes every instance wait for the others after each read.
//!
//! An instance without a watermark yet (or ever: a table without one) does not hold the others
//! back, nor does one that has declared itself idle (nothing to read for its table's idle
//! timeout); an ended one counts as +∞. The lowest instance always reads, so the run always
//! moves.
//!
//! The instances reading a lookup join's table are read first: the others wait until every one
//! of them has ended (so each join instance has all its share of the table before any row to
//! look up, as on one thread).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::message::{Nanos, NO_WATERMARK};

/// How far (in event time) an instance may run ahead of the lowest, unless the plan allows
/// more ([`weir_plan::parallel::alignment_drift`]).
pub(crate) const DRIFT: Nanos = weir_plan::parallel::ALIGNMENT_DRIFT_NANOS;

/// The source instances' watermarks.
pub(crate) struct Alignment {
    marks: Vec<AtomicI64>,
    /// Instances idle for now.
    idle: Vec<AtomicBool>,
    /// The instances read first (a lookup join's table).
    first: Vec<bool>,
    /// How far an instance may run ahead of the lowest.
    drift: Nanos,
    lock: Mutex<()>,
    /// Per instance: whether it waits, and what wakes it (only once it may read on: an
    /// instance woken whenever another reads would mostly wait again, a switch of threads for
    /// nothing).
    waiting: Vec<AtomicBool>,
    moved: Vec<Condvar>,
    /// Wake-ups sent (for the tests).
    #[cfg(test)]
    woken: std::sync::atomic::AtomicUsize,
}

impl Alignment {
    /// Alignment of `instances` source instances within `drift` of the lowest (never less than
    /// [`DRIFT`]).
    pub(crate) fn new(instances: usize, drift: Nanos) -> Self {
        Self {
            marks: (0..instances).map(|_| AtomicI64::new(NO_WATERMARK)).collect(),
            idle: (0..instances).map(|_| AtomicBool::new(false)).collect(),
            first: vec![false; instances],
            drift: drift.max(DRIFT),
            lock: Mutex::new(()),
            waiting: (0..instances).map(|_| AtomicBool::new(false)).collect(),
            moved: (0..instances).map(|_| Condvar::new()).collect(),
            #[cfg(test)]
            woken: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Instances `first` (by index) are read to their end before the others read anything.
    pub(crate) fn read_first(mut self, first: Vec<bool>) -> Self {
        self.first = first;
        self
    }

    /// Instance `me` reached watermark `w` (`Nanos::MAX`: it ended, or stopped).
    pub(crate) fn publish(&self, me: usize, w: Nanos) {
        if let Some(m) = self.marks.get(me) {
            m.fetch_max(w, Ordering::SeqCst);
        }
        self.wake();
    }

    /// Instance `me` has nothing to read for now (`true`), or reads again (`false`).
    pub(crate) fn set_idle(&self, me: usize, idle: bool) {
        if let Some(i) = self.idle.get(me) {
            i.store(idle, Ordering::SeqCst);
        }
        self.wake();
    }

    /// Wake the waiting instances that may read on now. (Each mark is set before the waiting
    /// flags are read, and a flag before its instance reads the marks, all sequentially
    /// consistent: an instance that starts waiting after the flags were read sees the new mark.
    /// It waits a short while at most in any case.)
    fn wake(&self) {
        let mut ready =
            (0..self.waiting.len()).filter(|i| self.waiting[*i].load(Ordering::SeqCst) && self.may_read(*i));
        let Some(first) = ready.next() else { return };
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for i in std::iter::once(first).chain(ready) {
            self.moved[i].notify_one();
            #[cfg(test)]
            self.woken.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether instance `me` may read on: it has no watermark yet, or one at most the drift
    /// ahead of the lowest instance's.
    pub(crate) fn may_read(&self, me: usize) -> bool {
        let unread_first = |(f, m): (&bool, &AtomicI64)| *f && m.load(Ordering::SeqCst) != Nanos::MAX;
        if !self.first.get(me).copied().unwrap_or(false) && self.first.iter().zip(&self.marks).any(unread_first) {
            return false;
        }
        let own = self.marks.get(me).map_or(NO_WATERMARK, |m| m.load(Ordering::SeqCst));
        if own == NO_WATERMARK {
            return true;
        }
        let lowest = self
            .marks
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !idle.load(Ordering::SeqCst))
            .map(|(m, _)| m.load(Ordering::SeqCst))
            .filter(|w| *w != NO_WATERMARK)
            .min()
            .unwrap_or(own);
        own <= lowest.saturating_add(self.drift)
    }

    /// Wait until instance `me` may read on, or `stop` says to give up.
    pub(crate) fn wait(&self, me: usize, stop: impl Fn() -> bool) {
        let (Some(waiting), Some(moved)) = (self.waiting.get(me), self.moved.get(me)) else { return };
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        waiting.store(true, Ordering::SeqCst);
        // (what `stop` watches wakes nobody: it is looked at every 20 ms)
        while !self.may_read(me) && !stop() {
            guard = match moved.wait_timeout(guard, Duration::from_millis(20)) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        waiting.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_read_first_are_read_to_their_end_before_the_others() {
        let a = Alignment::new(3, DRIFT).read_first(vec![false, true, false]);
        assert!(a.may_read(1) && !a.may_read(0) && !a.may_read(2));
        a.publish(1, 5);
        assert!(!a.may_read(0), "a watermark is not the end");
        a.publish(1, Nanos::MAX);
        assert!(a.may_read(0) && a.may_read(2));
    }

    #[test]
    fn an_instance_ahead_waits_for_the_lowest() {
        let a = Alignment::new(3, DRIFT);
        assert!(a.may_read(0), "no watermark yet");
        a.publish(0, 2 * DRIFT);
        a.publish(1, 12 * DRIFT);
        assert!(a.may_read(0), "behind instance 1");
        a.publish(0, 13 * DRIFT);
        assert!(a.may_read(0), "within the drift of instance 1");
        a.publish(0, 13 * DRIFT + 1);
        assert!(!a.may_read(0), "past the drift: it waits, though it was within it before its last read");
        a.publish(0, 45 * DRIFT);
        assert!(!a.may_read(0), "far ahead of instance 1");
        assert!(a.may_read(1) && a.may_read(2));
        a.set_idle(1, true);
        assert!(a.may_read(0), "an idle instance holds nobody back");
        a.set_idle(1, false);
        assert!(!a.may_read(0), "reading again, it does");
        a.publish(1, 44 * DRIFT);
        assert!(a.may_read(0), "within the drift");
        a.publish(2, 100 * DRIFT);
        assert!(!a.may_read(2), "far ahead of both");
        a.publish(1, Nanos::MAX);
        a.publish(0, Nanos::MAX);
        assert!(a.may_read(2), "ended instances hold nobody back");
    }

    #[test]
    fn a_plan_may_let_instances_run_further_apart_but_never_closer() {
        let a = Alignment::new(2, 10 * DRIFT);
        a.publish(0, 0);
        a.publish(1, 10 * DRIFT);
        assert!(a.may_read(1), "within the plan's drift");
        a.publish(1, 10 * DRIFT + 1);
        assert!(!a.may_read(1), "past it");
        let b = Alignment::new(2, DRIFT / 2);
        b.publish(0, 0);
        b.publish(1, DRIFT);
        assert!(b.may_read(1), "never less than the default drift");
    }

    #[test]
    fn a_waiting_instance_is_woken_once_it_may_read_and_not_before() {
        let a = std::sync::Arc::new(Alignment::new(3, DRIFT));
        a.publish(0, 10 * DRIFT);
        a.publish(1, 0);
        a.publish(2, DRIFT);
        let waiter = {
            let a = std::sync::Arc::clone(&a);
            // (a guard against a test that would never end, not a timing: woken or not is
            // what it checks)
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            std::thread::spawn(move || a.wait(0, || std::time::Instant::now() > deadline))
        };
        while !a.waiting[0].load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        a.publish(2, 5 * DRIFT);
        a.publish(1, 8 * DRIFT);
        a.publish(2, 9 * DRIFT);
        assert_eq!(a.woken.load(Ordering::SeqCst), 0, "still more than the drift ahead of the lowest");
        a.publish(1, 9 * DRIFT);
        waiter.join().unwrap();
        assert_eq!(a.woken.load(Ordering::SeqCst), 1, "woken once, when the lowest came within the drift");
        assert!(!a.waiting[0].load(Ordering::SeqCst));
    }
}
