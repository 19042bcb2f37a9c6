//! Which windows a row belongs to, for the epoch-aligned window kinds, through slices.
//!
//! Time is cut into equal *slices*; every window is a run of whole slices, and a row updates
//! only the one slice it falls in. A window's result merges its slices' partial aggregates, so
//! the per-row cost does not depend on how many windows overlap (Flink's slicing, Arroyo's
//! sliding-window bins).
//!
//! ```text
//!  HOP(slide 2s, size 5s): slice = gcd(2s, 5s) = 1s
//!  slices    |0|1|2|3|4|5|6|7|
//!  windows   [0 ........ 5)
//!                [2 ........ 7)
//!                    [4 ........ 9)
//!  CUMULATE(step 2s, max 6s): slice = 2s; windows [0,2) [0,4) [0,6), then [6,8) [6,10) …
//!  TUMBLE(size 5s): slice = window
//! ```

use weir_plan::WindowSpec;

use crate::error::{Result, RuntimeError};
use crate::message::Nanos;

/// Window arithmetic for TUMBLE, HOP and CUMULATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// One slice per window.
    Tumble {
        /// Window length.
        size: Nanos,
    },
    /// Slices of `gcd(slide, size)`.
    Hop {
        /// Distance between window starts.
        slide: Nanos,
        /// Window length.
        size: Nanos,
        /// Slice length.
        slice: Nanos,
    },
    /// Slices of one step.
    Cumulate {
        /// Growth step (= slice length).
        step: Nanos,
        /// Largest window.
        max: Nanos,
    },
}

fn clamp(v: i128) -> Nanos {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Assigner {
    /// The assigner of a slicing window kind.
    pub fn new(spec: &WindowSpec) -> Result<Self> {
        match *spec {
            WindowSpec::Tumble { size_nanos } => Ok(Assigner::Tumble { size: size_nanos }),
            WindowSpec::Hop { slide_nanos, size_nanos } => Ok(Assigner::Hop {
                slide: slide_nanos,
                size: size_nanos,
                slice: spec.slice_nanos().unwrap_or(slide_nanos),
            }),
            WindowSpec::Cumulate { step_nanos, max_size_nanos } => {
                Ok(Assigner::Cumulate { step: step_nanos, max: max_size_nanos })
            }
            WindowSpec::Session { .. } => Err(RuntimeError::Internal("a session window has no slices".into())),
        }
    }

    /// Slice length.
    pub fn slice(&self) -> Nanos {
        match *self {
            Assigner::Tumble { size } => size,
            Assigner::Hop { slice, .. } => slice,
            Assigner::Cumulate { step, .. } => step,
        }
    }

    /// Start of the slice containing `t` (`None` if it lies before the nanosecond range).
    pub fn slice_start(&self, t: Nanos) -> Option<Nanos> {
        t.checked_sub(t.rem_euclid(self.slice()))
    }

    /// End of the slice starting at `s`.
    pub fn slice_end(&self, s: Nanos) -> Nanos {
        s.saturating_add(self.slice())
    }

    /// Range of window indices `k` containing the slice at `s` (HOP: windows start at
    /// `k·slide`); empty when the slice lies in a gap between windows (size < slide).
    fn hop_range(s: Nanos, slide: Nanos, size: Nanos, slice: Nanos) -> (i128, i128) {
        let (s, slide, size, slice) = (s as i128, slide as i128, size as i128, slice as i128);
        let lo = s + slice - size;
        let kmin = lo.div_euclid(slide) + if lo.rem_euclid(slide) == 0 { 0 } else { 1 };
        let kmax = s.div_euclid(slide);
        (kmin, kmax)
    }

    /// Every window `(start, end)` containing the slice at `s`, by increasing end.
    pub fn windows(&self, s: Nanos) -> Vec<(Nanos, Nanos)> {
        match *self {
            Assigner::Tumble { size } => vec![(s, s.saturating_add(size))],
            Assigner::Hop { slide, size, slice } => {
                let (kmin, kmax) = Self::hop_range(s, slide, size, slice);
                (kmin..=kmax)
                    .map(|k| {
                        let start = k * slide as i128;
                        (clamp(start), clamp(start + size as i128))
                    })
                    .collect()
            }
            Assigner::Cumulate { step, max } => {
                let base = s.saturating_sub(s.rem_euclid(max));
                let mut out = Vec::new();
                let mut end = s as i128 + step as i128;
                while end <= base as i128 + max as i128 {
                    out.push((base, clamp(end)));
                    end += step as i128;
                }
                out
            }
        }
    }

    /// The earliest and latest end among the windows containing the slice at `s`, or `None`
    /// when no window contains it.
    pub fn end_range(&self, s: Nanos) -> Option<(Nanos, Nanos)> {
        match *self {
            Assigner::Tumble { size } => {
                let end = s.saturating_add(size);
                Some((end, end))
            }
            Assigner::Hop { slide, size, slice } => {
                let (kmin, kmax) = Self::hop_range(s, slide, size, slice);
                (kmin <= kmax)
                    .then(|| (clamp(kmin * slide as i128 + size as i128), clamp(kmax * slide as i128 + size as i128)))
            }
            Assigner::Cumulate { step, max } => {
                let base = s.saturating_sub(s.rem_euclid(max));
                Some((s.saturating_add(step), base.saturating_add(max)))
            }
        }
    }

    /// Whether a window is exactly one slice that no other window shares (TUMBLE), so its
    /// partial aggregate can be evaluated directly instead of merged.
    pub fn single_slice_windows(&self) -> bool {
        match *self {
            Assigner::Tumble { .. } => true,
            Assigner::Hop { slide, size, .. } => size == slide,
            Assigner::Cumulate { step, max } => step == max,
        }
    }
}

/// The slice of the last time looked up and its windows' ends: a batch's rows mostly fall in
/// one slice, so each run of them computes its slice (and the divisions of a hopping window's
/// ends) once.
#[derive(Debug, Default)]
pub(crate) struct SliceCache(Option<CachedSlice>);

/// A slice's start and end, and the first and last end of its windows (`None`: in none).
type CachedSlice = (Nanos, Nanos, Option<(Nanos, Nanos)>);

impl SliceCache {
    /// The start of the slice containing `t` and the earliest and latest end of its windows
    /// (`None` in a gap between windows); `None` when `t` lies before the nanosecond range.
    pub(crate) fn locate(&mut self, assigner: &Assigner, t: Nanos) -> Option<(Nanos, Option<(Nanos, Nanos)>)> {
        match self.0 {
            Some((s, end, ends)) if s <= t && t < end => Some((s, ends)),
            _ => {
                let s = assigner.slice_start(t)?;
                let ends = assigner.end_range(s);
                self.0 = Some((s, assigner.slice_end(s), ends));
                Some((s, ends))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: windows containing time t.
    fn windows_of(spec: &WindowSpec, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        match *spec {
            WindowSpec::Hop { slide_nanos: sl, size_nanos: sz } => {
                for k in -100..100 {
                    let s = k * sl;
                    if s <= t && t < s + sz {
                        out.push((s, s + sz));
                    }
                }
            }
            WindowSpec::Cumulate { step_nanos: st, max_size_nanos: mx } => {
                let base = t - t.rem_euclid(mx);
                let mut e = base + st;
                while e <= base + mx {
                    if t < e {
                        out.push((base, e));
                    }
                    e += st;
                }
            }
            WindowSpec::Tumble { size_nanos: sz } => out.push((t - t.rem_euclid(sz), t - t.rem_euclid(sz) + sz)),
            WindowSpec::Session { .. } => {}
        }
        out.sort_by_key(|w| (w.1, w.0));
        out
    }

    #[test]
    fn slices_give_exactly_the_windows_containing_each_time() {
        let specs = [
            WindowSpec::Tumble { size_nanos: 5 },
            WindowSpec::Hop { slide_nanos: 2, size_nanos: 5 },
            WindowSpec::Hop { slide_nanos: 3, size_nanos: 9 },
            WindowSpec::Hop { slide_nanos: 5, size_nanos: 2 },
            WindowSpec::Hop { slide_nanos: 4, size_nanos: 6 },
            WindowSpec::Cumulate { step_nanos: 2, max_size_nanos: 6 },
            WindowSpec::Cumulate { step_nanos: 3, max_size_nanos: 3 },
        ];
        for spec in &specs {
            let a = Assigner::new(spec).unwrap();
            for t in -40..40 {
                let s = a.slice_start(t).unwrap();
                assert!(s <= t && t < a.slice_end(s), "{spec:?} t={t}");
                let expected = windows_of(spec, t);
                assert_eq!(a.windows(s), expected, "{spec:?} t={t}");
                let range = expected.first().map(|f| (f.1, expected.last().map(|l| l.1).unwrap_or(f.1)));
                assert_eq!(a.end_range(s), range, "{spec:?} t={t}");
            }
        }
    }
}
