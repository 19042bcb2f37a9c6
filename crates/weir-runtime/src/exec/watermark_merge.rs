//! The watermark of several inputs (a `UNION ALL`): the minimum of the inputs' watermarks,
//! leaving out inputs idle for longer than their idle timeout (Flink's `withIdleness`).
//!
//! ```text
//!   input 0 ── wm 100 ──┐
//!   input 1 ── wm  40 ──┼─► merged = min(100, 40) = 40      (input 2 idle: left out)
//!   input 2 ── idle ────┘
//!
//!   a row from input i keeps its own per-row watermark, capped by the other inputs' minimum
//!   (it cannot be judged against more event time than the merged stream has seen)
//! ```
//!
//! Invariants: the merged watermark never decreases. An input that becomes active again after
//! being idle does not pull it back: its rows are judged against the merged watermark, so rows
//! older than it are late (as in Flink). While every input is idle, the watermark is the
//! highest any input reached (as Flink's operators take their inputs'): every row read so far is
//! then on time for it, and the result does not depend on which input fell quiet last.
//! An ended input without a watermark no longer holds it back.

use std::time::{Duration, Instant};

use crate::message::{Nanos, NO_WATERMARK};

struct InputState {
    watermark: Nanos,
    idle_timeout: Option<Duration>,
    last_active: Instant,
    /// Found to have sent nothing for its idle timeout (see [`WatermarkMerge::mark_idle`]).
    idle: bool,
    ended: bool,
}

/// Merges the watermarks of several inputs.
pub struct WatermarkMerge {
    inputs: Vec<InputState>,
    merged: Nanos,
}

impl WatermarkMerge {
    /// One input per entry, each with its idle timeout (`None`: it always holds the watermark).
    pub fn new(idle_timeouts: &[Option<Duration>], now: Instant) -> Self {
        let inputs = idle_timeouts
            .iter()
            .map(|t| InputState {
                watermark: NO_WATERMARK,
                idle_timeout: *t,
                last_active: now,
                idle: false,
                ended: false,
            })
            .collect();
        Self { inputs, merged: NO_WATERMARK }
    }

    /// The merged watermark.
    pub fn current(&self) -> Nanos {
        self.merged
    }

    fn idle(&self, i: usize) -> bool {
        let s = &self.inputs[i];
        !s.ended && s.idle
    }

    /// Input `i` produced rows (it is not idle).
    pub fn active(&mut self, i: usize, now: Instant) {
        if let Some(s) = self.inputs.get_mut(i) {
            s.last_active = now;
            s.idle = false;
        }
    }

    /// Input `i` was waited for and sent nothing: if that makes its silence at least its idle
    /// timeout, it is idle until it sends again. (Idleness is decided by the one waiting for
    /// the input, not by the clock alone, so a slow consumer never makes an input idle.)
    pub fn mark_idle(&mut self, i: usize, now: Instant) {
        if let Some(s) = self.inputs.get_mut(i) {
            if s.idle_timeout.is_some_and(|t| now.saturating_duration_since(s.last_active) >= t) {
                s.idle = true;
            }
        }
    }

    /// Input `i` declared itself idle (a parallel source instance with nothing to read): it is
    /// left out until it sends again, whatever its timeout.
    pub fn set_idle(&mut self, i: usize) {
        if let Some(s) = self.inputs.get_mut(i) {
            s.idle = true;
        }
    }

    /// Input `i`'s watermark advanced; returns the merged watermark if it advanced.
    pub fn watermark(&mut self, i: usize, w: Nanos, now: Instant) -> Option<Nanos> {
        if let Some(s) = self.inputs.get_mut(i) {
            s.watermark = s.watermark.max(w);
            s.last_active = now;
            s.idle = false;
        }
        self.advance()
    }

    /// Input `i` has ended.
    pub fn end(&mut self, i: usize) -> Option<Nanos> {
        if let Some(s) = self.inputs.get_mut(i) {
            s.ended = true;
            // an input without a watermark holds none back once it has ended (one with a
            // watermark sent i64::MAX before a normal end; after a cancelled one, nothing fires)
            if s.watermark == NO_WATERMARK {
                s.watermark = Nanos::MAX;
            }
        }
        if self.all_ended() {
            return None;
        }
        self.advance()
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.inputs.iter().all(|s| s.ended)
    }

    /// Re-evaluate with the inputs now idle left out (all of them idle: the highest of their
    /// watermarks); returns the merged watermark if it advanced.
    pub fn advance(&mut self) -> Option<Nanos> {
        let holding = (0..self.inputs.len()).filter(|i| !self.idle(*i)).map(|i| self.inputs[i].watermark).min();
        let holding = match holding {
            Some(w) => w,
            None => self.inputs.iter().map(|s| s.watermark).max()?,
        };
        if holding > self.merged {
            self.merged = holding;
            Some(holding)
        } else {
            None
        }
    }

    /// The highest watermark a row of input `i` may be judged against: the minimum of the
    /// other inputs that hold the watermark back (`i64::MAX` if none does), but never below
    /// the merged watermark.
    pub fn cap_for(&self, i: usize) -> Nanos {
        let others = (0..self.inputs.len())
            .filter(|j| *j != i && !self.idle(*j))
            .map(|j| self.inputs[j].watermark)
            .min()
            .unwrap_or(Nanos::MAX);
        others.max(self.merged)
    }

    /// Input `i`'s idle timeout, and how long it has sent nothing.
    pub fn idleness(&self, i: usize, now: Instant) -> (Option<Duration>, Duration) {
        match self.inputs.get(i) {
            Some(s) => (s.idle_timeout, now.saturating_duration_since(s.last_active)),
            None => (None, Duration::ZERO),
        }
    }

    /// The state for a checkpoint: each input's watermark, idleness and end, and the merge.
    pub fn snapshot(&self) -> serde_json::Value {
        let inputs: Vec<_> = self.inputs.iter().map(|s| (s.watermark, s.idle, s.ended)).collect();
        serde_json::json!({ "inputs": inputs, "merged": self.merged })
    }

    /// Take up a state [`WatermarkMerge::snapshot`] returned (idle clocks restart at `now`).
    pub fn restore(&mut self, state: &serde_json::Value, now: Instant) -> crate::error::Result<()> {
        #[derive(serde::Deserialize)]
        struct Saved {
            inputs: Vec<(Nanos, bool, bool)>,
            merged: Nanos,
        }
        let saved: Saved = crate::state::checkpoint::from_json(state, "a union's watermarks")?;
        if saved.inputs.len() != self.inputs.len() {
            return Err(crate::error::RuntimeError::Checkpoint(format!(
                "a union of {} inputs was saved, this query has {}",
                saved.inputs.len(),
                self.inputs.len()
            )));
        }
        for (s, (watermark, idle, ended)) in self.inputs.iter_mut().zip(saved.inputs) {
            (s.watermark, s.idle, s.ended, s.last_active) = (watermark, idle, ended, now);
        }
        self.merged = saved.merged;
        Ok(())
    }

    /// The shortest idle timeout, if any input has one (how often idleness must be checked).
    pub fn shortest_idle_timeout(&self) -> Option<Duration> {
        self.inputs.iter().filter_map(|s| s.idle_timeout).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merged_watermark_is_the_minimum_and_never_goes_back() {
        let t0 = Instant::now();
        let mut m = WatermarkMerge::new(&[None, None], t0);
        assert_eq!(m.watermark(0, 100, t0), None, "input 1 has no watermark yet");
        assert_eq!(m.cap_for(1), 100);
        assert_eq!(m.cap_for(0), NO_WATERMARK);
        assert_eq!(m.watermark(1, 40, t0), Some(40));
        assert_eq!(m.watermark(1, 70, t0), Some(70));
        assert_eq!(m.watermark(1, 60, t0), None, "an input's watermark does not go back");
        assert_eq!(m.watermark(1, 200, t0), Some(100));
        assert!(!m.all_ended());
        assert_eq!(m.watermark(0, Nanos::MAX, t0), Some(200));
        assert_eq!(m.end(0), None);
        assert_eq!(m.watermark(1, Nanos::MAX, t0), Some(Nanos::MAX));
        assert_eq!(m.end(1), None);
        assert!(m.all_ended());
    }

    #[test]
    fn an_idle_input_stops_holding_the_watermark_back_until_it_is_active_again() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut m = WatermarkMerge::new(&[None, Some(5 * second)], t0);
        assert_eq!(m.watermark(0, 100, t0 + second), None, "input 1 has seen nothing, but is not idle yet");
        m.mark_idle(1, t0 + 4 * second);
        assert_eq!(m.advance(), None, "silent for 4 s only");
        assert_eq!(m.advance(), None, "not waited for: not idle, however long");
        m.mark_idle(1, t0 + 5 * second);
        assert_eq!(m.advance(), Some(100), "idle after 5 s: left out");
        assert_eq!(m.cap_for(0), Nanos::MAX, "nothing else holds input 0's rows back");
        // it comes back with older rows: the merged watermark stays, its rows are judged by it
        m.active(1, t0 + 6 * second);
        assert_eq!(m.watermark(1, 30, t0 + 6 * second), None);
        assert_eq!(m.current(), 100);
        assert_eq!(m.cap_for(0), 100);
        assert_eq!(m.watermark(0, 150, t0 + 6 * second), None, "input 1 holds it at 30 again");
        assert_eq!(m.watermark(1, 120, t0 + 7 * second), Some(120));
        // an idle input without a watermark moves nothing
        let mut all = WatermarkMerge::new(&[Some(second)], t0);
        all.mark_idle(0, t0 + 2 * second);
        assert_eq!(all.advance(), None);
    }

    #[test]
    fn every_input_idle_gives_the_highest_watermark_whichever_fell_quiet_last() {
        let t0 = Instant::now();
        for last in [0, 1] {
            let mut m = WatermarkMerge::new(&[None, None], t0);
            m.watermark(0, 190, t0);
            assert_eq!(m.watermark(1, 330, t0), Some(190));
            // the first to fall quiet: input 0 (behind) lets input 1's through, input 1
            // (ahead) leaves input 0 holding it
            let first = 1 - last;
            m.set_idle(first);
            assert_eq!(m.advance(), (first == 0).then_some(330));
            m.set_idle(last);
            assert_eq!(m.advance(), (last == 0).then_some(330), "input {last} fell quiet last");
            assert_eq!(m.current(), 330);
            // back with older rows: the watermark does not go back
            assert_eq!(m.watermark(last, 200, t0), None);
            assert_eq!(m.current(), 330);
        }
    }
}
