//! The operator task's tree, mirroring the plan's input tree: messages from source `i` enter
//! at its leaf and climb through each branch's operators, union merges and joins to the
//! operators above.
//!
//! ```text
//!   Source i ─► [stamp] ─► branch ops ─► Union (watermark = min of branches) ─► …
//!                                     └► Join side s (watermark = min of both sides) ─► …
//! ```

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::exec::instrument::{through, Instrumented};
use crate::exec::watermark_merge::WatermarkMerge;
use crate::message::{Message, Nanos, NO_WATERMARK};

/// A node of the tree.
pub(crate) enum Stage {
    /// A source's messages (after the processing-time stamp, if any).
    Source { stamp: Vec<Instrumented> },
    /// Branches merged; the watermark is the minimum of theirs.
    Union { branches: Vec<BranchStage>, watermarks: WatermarkMerge },
    /// Two branches joined.
    Join(Box<JoinStage>),
}

/// A sub-tree and the operators after it.
pub(crate) struct BranchStage {
    pub(crate) stage: Stage,
    pub(crate) ops: Vec<Instrumented>,
    /// The sources below, to route messages.
    pub(crate) sources: Vec<usize>,
}

/// A join: its two branches and the operator, with each side's watermark.
pub(crate) struct JoinStage {
    pub(crate) sides: [BranchStage; 2],
    pub(crate) op: Instrumented,
    pub(crate) watermarks: [Nanos; 2],
    pub(crate) ended: [bool; 2],
    pub(crate) emitted: Nanos,
}

impl JoinStage {
    pub(crate) fn new(left: BranchStage, right: BranchStage, op: Instrumented) -> Self {
        Self { sides: [left, right], op, watermarks: [NO_WATERMARK; 2], ended: [false; 2], emitted: NO_WATERMARK }
    }

    /// Messages from side `s` (through its operators), as the operators above see them.
    fn side(&mut self, s: usize, messages: Vec<Message>, out: &mut Vec<Message>) -> Result<()> {
        for m in messages {
            match m {
                Message::Data(b) => self.op.handle_side(Some(s), Message::Data(b), out)?,
                Message::Watermark(w) => {
                    self.watermarks[s] = self.watermarks[s].max(w);
                    self.op.side_watermark(s, self.watermarks[s]);
                    self.advance(out)?;
                }
                Message::Dropped(d) => out.push(Message::Dropped(d)),
                Message::EndOfStream => {
                    self.ended[s] = true;
                    self.watermarks[s] = Nanos::MAX;
                    self.op.side_watermark(s, Nanos::MAX);
                    self.advance(out)?;
                    if self.ended.iter().all(|e| *e) {
                        self.op.handle(Message::EndOfStream, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The join's watermark (the lower side's) moved: tell the operator.
    fn advance(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let w = self.watermarks[0].min(self.watermarks[1]);
        if w > self.emitted {
            self.emitted = w;
            self.op.handle(Message::Watermark(w), out)?;
        }
        Ok(())
    }
}

impl BranchStage {
    /// [`Stage::tick`] of its stage, through its operators.
    fn tick(&mut self, now: Instant) -> Result<Vec<Message>> {
        let messages = self.stage.tick(now)?;
        if self.ops.is_empty() || messages.is_empty() {
            Ok(messages)
        } else {
            through(&mut self.ops, messages)
        }
    }

    fn input(&mut self, source: usize, messages: Vec<Message>, now: Instant) -> Result<Vec<Message>> {
        let messages = self.stage.input(source, messages, now)?;
        if self.ops.is_empty() {
            Ok(messages)
        } else {
            through(&mut self.ops, messages)
        }
    }
}

impl Stage {
    /// Messages from source `source`, as the operators above this stage see them.
    pub(crate) fn input(&mut self, source: usize, messages: Vec<Message>, now: Instant) -> Result<Vec<Message>> {
        match self {
            Stage::Source { stamp, .. } => {
                if stamp.is_empty() {
                    Ok(messages)
                } else {
                    through(stamp, messages)
                }
            }
            Stage::Union { branches, watermarks } => {
                let Some(i) = branches.iter().position(|b| b.sources.contains(&source)) else { return Ok(Vec::new()) };
                let messages = branches[i].input(source, messages, now)?;
                merge(watermarks, i, messages, now)
            }
            Stage::Join(j) => {
                let Some(s) = j.sides.iter().position(|b| b.sources.contains(&source)) else { return Ok(Vec::new()) };
                let messages = j.sides[s].input(source, messages, now)?;
                let mut out = Vec::with_capacity(messages.len());
                j.side(s, messages, &mut out)?;
                Ok(out)
            }
        }
    }

    /// Every operator below this stage, in tree order (the order checkpoints list them).
    pub(crate) fn operators<'a>(&'a mut self, out: &mut Vec<&'a mut Instrumented>) {
        match self {
            Stage::Source { stamp } => out.extend(stamp.iter_mut()),
            Stage::Union { branches, .. } => {
                for b in branches {
                    b.stage.operators(out);
                    out.extend(b.ops.iter_mut());
                }
            }
            Stage::Join(j) => {
                let JoinStage { sides, op, .. } = j.as_mut();
                for b in sides.iter_mut() {
                    b.stage.operators(out);
                    out.extend(b.ops.iter_mut());
                }
                out.push(op);
            }
        }
    }

    /// The watermarks of every union and join, in tree order.
    pub(crate) fn snapshot(&self, out: &mut Vec<serde_json::Value>) {
        match self {
            Stage::Source { .. } => {}
            Stage::Union { branches, watermarks } => {
                branches.iter().for_each(|b| b.stage.snapshot(out));
                out.push(watermarks.snapshot());
            }
            Stage::Join(j) => {
                j.sides.iter().for_each(|b| b.stage.snapshot(out));
                out.push(serde_json::json!({ "watermarks": j.watermarks, "ended": j.ended, "emitted": j.emitted }));
            }
        }
    }

    /// Take up what [`Stage::snapshot`] saved.
    pub(crate) fn restore(&mut self, saved: &mut std::slice::Iter<'_, serde_json::Value>, now: Instant) -> Result<()> {
        let missing = || crate::error::RuntimeError::Checkpoint("fewer stage states than this query has stages".into());
        match self {
            Stage::Source { .. } => {}
            Stage::Union { branches, watermarks } => {
                for b in branches.iter_mut() {
                    b.stage.restore(saved, now)?;
                }
                watermarks.restore(saved.next().ok_or_else(missing)?, now)?;
            }
            Stage::Join(j) => {
                for b in j.sides.iter_mut() {
                    b.stage.restore(saved, now)?;
                }
                #[derive(serde::Deserialize)]
                struct Saved {
                    watermarks: [Nanos; 2],
                    ended: [bool; 2],
                    emitted: Nanos,
                }
                let s: Saved =
                    crate::state::checkpoint::from_json(saved.next().ok_or_else(missing)?, "a join's watermarks")?;
                (j.watermarks, j.ended, j.emitted) = (s.watermarks, s.ended, s.emitted);
                for (side, w) in j.watermarks.iter().enumerate() {
                    j.op.side_watermark(side, *w);
                }
            }
        }
        Ok(())
    }

    /// Inputs found idle: what leaving them out of their unions' watermarks lets through, as
    /// the operators above see it (watermarks, and what a join or a window fires on them).
    pub(crate) fn tick(&mut self, now: Instant) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        match self {
            Stage::Source { .. } => {}
            Stage::Union { branches, watermarks } => {
                for (i, b) in branches.iter_mut().enumerate() {
                    let inner = b.tick(now)?;
                    if !inner.is_empty() {
                        out.extend(merge(watermarks, i, inner, now)?);
                    }
                }
                out.extend(watermarks.advance().map(Message::Watermark));
            }
            Stage::Join(j) => {
                for s in 0..2 {
                    let inner = j.sides[s].tick(now)?;
                    j.side(s, inner, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// The union that has source `source` as an input of its own (under joins and unions or
    /// not), and that input's index.
    fn union_input(&mut self, source: usize) -> Option<(&mut WatermarkMerge, usize)> {
        let sides: &mut [BranchStage] = match self {
            Stage::Source { .. } => return None,
            Stage::Union { branches, watermarks } => match branches.iter().position(|b| b.sources == [source]) {
                Some(i) => return Some((watermarks, i)),
                None => branches,
            },
            Stage::Join(j) => &mut j.sides,
        };
        sides.iter_mut().find(|b| b.sources.contains(&source))?.stage.union_input(source)
    }

    /// How long source `source` may stay quiet before it counts as idle, and how long it has
    /// been quiet: when it is an input of its own to a union (under joins and unions or not),
    /// the table's idle timeout; else none.
    pub(crate) fn idleness(&mut self, source: usize, now: Instant) -> (Option<Duration>, Duration) {
        self.union_input(source).map_or((None, Duration::ZERO), |(w, i)| w.idleness(i, now))
    }

    /// Source `source` sent nothing in time.
    pub(crate) fn mark_idle(&mut self, source: usize, now: Instant) {
        if let Some((w, i)) = self.union_input(source) {
            w.mark_idle(i, now);
        }
    }

    /// Source `source` declared itself idle (it has nothing to read): its union leaves it out
    /// of the watermark until it sends again.
    pub(crate) fn set_idle(&mut self, source: usize) {
        if let Some((w, i)) = self.union_input(source) {
            w.set_idle(i);
        }
    }
}

/// Messages from branch `i` of a union, merged: rows pass (their per-row watermarks capped by
/// what the other inputs allow), watermarks become the minimum over the branches.
fn merge(watermarks: &mut WatermarkMerge, i: usize, messages: Vec<Message>, now: Instant) -> Result<Vec<Message>> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        match m {
            Message::Data(mut b) => {
                watermarks.active(i, now);
                let cap = watermarks.cap_for(i);
                b.cap_watermarks(cap);
                out.push(Message::Data(b));
            }
            Message::Watermark(w) => out.extend(watermarks.watermark(i, w, now).map(Message::Watermark)),
            Message::Dropped(d) => out.push(Message::Dropped(d)),
            Message::EndOfStream => {
                out.extend(watermarks.end(i).map(Message::Watermark));
                if watermarks.all_ended() {
                    out.push(Message::EndOfStream);
                }
            }
        }
    }
    Ok(out)
}

/// What [`Turns::snapshot`] saves.
#[derive(serde::Deserialize)]
struct SavedTurns {
    ended: Vec<bool>,
    watermarks: Vec<Nanos>,
    last: Option<usize>,
}

/// Which input the operator task reads next: in turn, one batch each; with `aligned` (a
/// query with a join) the input whose watermark is lowest (in turn among equals), so one
/// input cannot run far ahead in event time while the join keeps its rows waiting for the
/// other. Tables of lookup joins (`first`) are read to their end before anything else. The
/// choice depends only on the data, never on thread timing.
pub(crate) struct Turns {
    ended: Vec<bool>,
    /// Inputs not to be read for now (they delivered a checkpoint's barrier).
    watermarks: Vec<Nanos>,
    first: Vec<usize>,
    aligned: bool,
    last: Option<usize>,
}

impl Turns {
    pub(crate) fn new(inputs: usize, first: Vec<usize>, aligned: bool) -> Self {
        Self { ended: vec![false; inputs], watermarks: vec![NO_WATERMARK; inputs], first, aligned, last: None }
    }

    /// The next input to read; `None` once every input has ended.
    pub(crate) fn next(&mut self) -> Option<usize> {
        let n = self.ended.len();
        let first_pending = self.first.iter().any(|f| !self.ended[*f]);
        let start = self.last.map_or(0, |l| l + 1);
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if self.ended[i] || (first_pending && !self.first.contains(&i)) {
                continue;
            }
            if !self.aligned {
                best = Some(i);
                break;
            }
            if best.is_none_or(|b| self.watermarks[i] < self.watermarks[b]) {
                best = Some(i);
            }
        }
        self.last = best.or(self.last);
        best
    }

    /// Whether lookup tables are still being read (before every other input).
    pub(crate) fn loading(&self) -> bool {
        self.first.iter().any(|f| !self.ended[*f])
    }

    /// The state for a checkpoint.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({ "ended": self.ended, "watermarks": self.watermarks, "last": self.last })
    }

    /// Take up what [`Turns::snapshot`] saved.
    pub(crate) fn restore(&mut self, saved: &serde_json::Value) -> Result<()> {
        let s: SavedTurns = crate::state::checkpoint::from_json(saved, "the reading order")?;
        if s.ended.len() != self.ended.len() || s.watermarks.len() != self.watermarks.len() {
            return Err(crate::error::RuntimeError::Checkpoint("the saved query read another number of inputs".into()));
        }
        (self.ended, self.watermarks, self.last) = (s.ended, s.watermarks, s.last);
        Ok(())
    }

    /// Which inputs had ended, in what [`Turns::snapshot`] saved.
    pub(crate) fn saved_ended(saved: &serde_json::Value) -> Result<Vec<bool>> {
        Ok(crate::state::checkpoint::from_json::<SavedTurns>(saved, "the reading order")?.ended)
    }

    /// Messages read from input `i`.
    pub(crate) fn saw(&mut self, i: usize, messages: &[Message]) {
        for m in messages {
            match m {
                Message::Watermark(w) => self.watermarks[i] = self.watermarks[i].max(*w),
                Message::EndOfStream => self.ended[i] = true,
                _ => {}
            }
        }
    }
}
