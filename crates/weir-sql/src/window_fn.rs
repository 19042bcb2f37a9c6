//! Scalar functions that assign rows to event-time windows.
//!
//! `tumble_start(ts, size)` and `tumble_end(ts, size)` return the bounds of the tumbling window
//! `[start, end)` that contains `ts`, aligned to the Unix epoch (as in Flink). They are real,
//! vectorised functions: the window TVF `TUMBLE(TABLE t, DESCRIPTOR(ts), size)` is planned as a
//! projection that adds `window_start`/`window_end`/`window_time` with them, and the group-window
//! form `GROUP BY TUMBLE(ts, size)` groups by them. The streaming planner recognises them to find
//! the window of an aggregate.
//!
//! `hop_start/hop_end(ts, slide, size)`, `cumulate_start/cumulate_end(ts, step, max_size)` and
//! `session_start/session_end(ts, gap)` are different: a row belongs to several hopping or
//! cumulating windows, and a session's bounds depend on other rows, so no per-row value exists.
//! They are markers the planner recognises in `GROUP BY`; the window aggregate computes the
//! bounds itself. Evaluating one anywhere else is refused at planning time.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, ArrayRef, PrimitiveArray};
use datafusion_common::arrow::datatypes::{
    ArrowTimestampType, DataType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion_common::{exec_err, plan_err, DataFusionError, ScalarValue};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Name of the function returning a tumbling window's start.
pub const TUMBLE_START: &str = "tumble_start";
/// Name of the function returning a tumbling window's end.
pub const TUMBLE_END: &str = "tumble_end";

/// Name of the function marking a hopping window's start.
pub const HOP_START: &str = "hop_start";
/// Name of the function marking a hopping window's end.
pub const HOP_END: &str = "hop_end";
/// Name of the function marking a cumulating window's start.
pub const CUMULATE_START: &str = "cumulate_start";
/// Name of the function marking a cumulating window's end.
pub const CUMULATE_END: &str = "cumulate_end";
/// Name of the function marking a session window's start.
pub const SESSION_START: &str = "session_start";
/// Name of the function marking a session window's end.
pub const SESSION_END: &str = "session_end";

pub use weir_plan::duration::{format_duration, nanos_per_unit};
pub use weir_plan::WindowKind;

/// The name of the function returning `bound` of a `kind` of window.
pub fn bound_function(kind: WindowKind, bound: Bound) -> &'static str {
    match (kind, bound) {
        (WindowKind::Tumble, Bound::Start) => TUMBLE_START,
        (WindowKind::Tumble, Bound::End) => TUMBLE_END,
        (WindowKind::Hop, Bound::Start) => HOP_START,
        (WindowKind::Hop, Bound::End) => HOP_END,
        (WindowKind::Cumulate, Bound::Start) => CUMULATE_START,
        (WindowKind::Cumulate, Bound::End) => CUMULATE_END,
        (WindowKind::Session, Bound::Start) => SESSION_START,
        (WindowKind::Session, Bound::End) => SESSION_END,
    }
}

/// If `name` is one of the window bound functions, which window and bound.
pub fn window_function(name: &str) -> Option<(WindowKind, Bound)> {
    [WindowKind::Tumble, WindowKind::Hop, WindowKind::Cumulate, WindowKind::Session]
        .into_iter()
        .find_map(|k| [Bound::Start, Bound::End].into_iter().find(|b| bound_function(k, *b) == name).map(|b| (k, b)))
}

/// Nanoseconds in one unit of a TIMESTAMP type (`None`: not a timestamp).
pub(crate) fn unit_nanos(t: &DataType) -> Option<i64> {
    match t {
        DataType::Timestamp(TimeUnit::Second, _) => Some(1_000_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some(1_000_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some(1_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(1),
        _ => None,
    }
}

/// Which bound of the window a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    /// Inclusive start.
    Start,
    /// Exclusive end.
    End,
}

/// `tumble_start` / `tumble_end`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TumbleBound {
    bound: Bound,
    signature: Signature,
}

impl TumbleBound {
    /// The function returning the given bound.
    pub fn new(bound: Bound) -> Self {
        Self { bound, signature: Signature::any(2, Volatility::Immutable) }
    }
}

/// All window functions weir registers with the SQL planner.
pub fn window_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(TumbleBound::new(Bound::Start))),
        Arc::new(ScalarUDF::from(TumbleBound::new(Bound::End))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Hop, Bound::Start))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Hop, Bound::End))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Cumulate, Bound::Start))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Cumulate, Bound::End))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Session, Bound::Start))),
        Arc::new(ScalarUDF::from(WindowMarker::new(WindowKind::Session, Bound::End))),
    ]
}

/// The bound of a hopping, cumulating or session window: a marker the planner recognises in
/// `GROUP BY`, with no per-row value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowMarker {
    kind: WindowKind,
    bound: Bound,
    signature: Signature,
}

impl WindowMarker {
    /// The marker for `bound` of `kind` windows.
    pub fn new(kind: WindowKind, bound: Bound) -> Self {
        let signature = match kind {
            // SESSION's PARTITION BY keys follow the gap
            WindowKind::Session => Signature::variadic_any(Volatility::Immutable),
            _ => Signature::any(1 + kind.interval_args(), Volatility::Immutable),
        };
        Self { kind, bound, signature }
    }
}

impl ScalarUDFImpl for WindowMarker {
    fn name(&self) -> &str {
        bound_function(self.kind, self.bound)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion_common::Result<DataType> {
        let name = self.name().to_uppercase();
        let sizes = self.kind.interval_args();
        match arg_types.split_first() {
            Some((_, rest)) if rest.len() < sizes => {
                plan_err!("{name} takes a time column and {sizes} intervals")
            }
            Some((t @ DataType::Timestamp(_, _), rest))
                if rest[..sizes].iter().all(|t| matches!(t, DataType::Interval(_))) =>
            {
                Ok(t.clone())
            }
            Some((DataType::Timestamp(_, _), _)) => {
                plan_err!("{name}: the window sizes must be INTERVALs such as INTERVAL '10' SECOND")
            }
            Some((t, _)) => plan_err!("{name}: the time column must be a TIMESTAMP, got {t}"),
            None => plan_err!("{name} takes a time column and {} intervals", self.kind.interval_args()),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> datafusion_common::Result<ColumnarValue> {
        exec_err!(
            "{} has no value per row: {} windows are computed by the window aggregate (use it in GROUP BY)",
            self.name().to_uppercase(),
            self.kind.sql_name()
        )
    }
}

/// The length of a window: a fixed, positive interval, in nanoseconds.
pub fn interval_nanos(value: &ScalarValue) -> Result<i64, DataFusionError> {
    match fixed_interval_nanos(value)? {
        n if n > 0 => Ok(n),
        _ => plan_err!("a window size must be a positive interval, got {value}"),
    }
}

/// The length of a fixed interval in nanoseconds (any sign). Month-based intervals have no
/// fixed length and are refused.
pub fn fixed_interval_nanos(value: &ScalarValue) -> Result<i64, DataFusionError> {
    let nanos = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return plan_err!("intervals here must be fixed lengths; months and years are not (got {value})");
            }
            (v.days as i64).checked_mul(86_400_000_000_000).and_then(|d| d.checked_add(v.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(v)) => (v.days as i64)
            .checked_mul(86_400_000_000_000)
            .and_then(|d| d.checked_add(v.milliseconds as i64 * 1_000_000)),
        ScalarValue::IntervalYearMonth(_) => {
            return plan_err!("intervals here must be fixed lengths; months and years are not (got {value})")
        }
        other => return plan_err!("expected an INTERVAL such as INTERVAL '10' SECOND, got {other}"),
    };
    match nanos {
        Some(n) => Ok(n),
        None => plan_err!("interval {value} is too large"),
    }
}

fn bounds<T: ArrowTimestampType>(ts: &ArrayRef, size: i64, bound: Bound) -> Result<ArrayRef, DataFusionError> {
    let Some(ts) = ts.as_any().downcast_ref::<PrimitiveArray<T>>() else {
        return exec_err!("window functions need a TIMESTAMP argument");
    };
    let offset = if bound == Bound::End { size } else { 0 };
    let out_of_range = |t: i64| DataFusionError::Execution(format!("the window of time {t} is out of range"));
    // times come about in order: a time in the window of the row before takes its bound
    // without dividing again; `[lo, hi)` is that window (empty at first)
    let (mut lo, mut hi, mut last) = (i64::MAX, i64::MIN, 0);
    let mut out = Vec::with_capacity(ts.len());
    for (i, &t) in ts.values().iter().enumerate() {
        if lo <= t && t < hi {
            out.push(last);
            continue;
        }
        if ts.is_null(i) {
            out.push(0);
            continue;
        }
        let start = t.checked_sub(t.rem_euclid(size)).ok_or_else(|| out_of_range(t))?;
        last = start.checked_add(offset).ok_or_else(|| out_of_range(t))?;
        (lo, hi) = (start, start.saturating_add(size));
        out.push(last);
    }
    let out = PrimitiveArray::<T>::new(out.into(), ts.nulls().cloned());
    Ok(Arc::new(out.with_timezone_opt(ts.timezone())))
}

/// Compute `[start|end]` of the tumbling window of each timestamp in `ts` (any unit).
pub fn tumble_bounds(ts: &ArrayRef, size_nanos: i64, bound: Bound) -> Result<ArrayRef, DataFusionError> {
    let DataType::Timestamp(unit, _) = ts.data_type() else {
        return exec_err!("window functions need a TIMESTAMP argument, got {}", ts.data_type());
    };
    let per = nanos_per_unit(*unit);
    if size_nanos % per != 0 {
        return exec_err!(
            "window size {} is finer than the time column's precision ({})",
            format_duration(size_nanos),
            format_duration(per)
        );
    }
    let size = size_nanos / per;
    match unit {
        TimeUnit::Second => bounds::<TimestampSecondType>(ts, size, bound),
        TimeUnit::Millisecond => bounds::<TimestampMillisecondType>(ts, size, bound),
        TimeUnit::Microsecond => bounds::<TimestampMicrosecondType>(ts, size, bound),
        TimeUnit::Nanosecond => bounds::<TimestampNanosecondType>(ts, size, bound),
    }
}

impl ScalarUDFImpl for TumbleBound {
    fn name(&self) -> &str {
        match self.bound {
            Bound::Start => TUMBLE_START,
            Bound::End => TUMBLE_END,
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion_common::Result<DataType> {
        match arg_types {
            [t @ DataType::Timestamp(_, _), DataType::Interval(_)] => Ok(t.clone()),
            [t, DataType::Interval(_)] => {
                plan_err!("{}: the time column must be a TIMESTAMP, got {t}", self.name().to_uppercase())
            }
            [_, t] => plan_err!(
                "{}: the window size must be an INTERVAL such as INTERVAL '10' SECOND, got {t}",
                self.name().to_uppercase()
            ),
            _ => plan_err!("{} takes (time column, size)", self.name().to_uppercase()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion_common::Result<ColumnarValue> {
        let [ts, size] = args.args.as_slice() else {
            return exec_err!("{} takes two arguments", self.name());
        };
        let ColumnarValue::Scalar(size) = size else {
            return exec_err!("{}: the window size must be a constant", self.name());
        };
        let size = interval_nanos(size)?;
        match ts {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(tumble_bounds(a, size, self.bound)?)),
            ColumnarValue::Scalar(s) => {
                let a = s.to_array()?;
                let out = tumble_bounds(&a, size, self.bound)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_common::arrow::array::TimestampMillisecondArray;

    #[test]
    fn bounds_align_to_epoch_including_negative_times() {
        let ts: ArrayRef =
            Arc::new(TimestampMillisecondArray::from(vec![Some(0), Some(9_999), Some(10_000), Some(-1), None]));
        let start = tumble_bounds(&ts, 10_000_000_000, Bound::Start).unwrap();
        let end = tumble_bounds(&ts, 10_000_000_000, Bound::End).unwrap();
        let start = start.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        let end = end.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
        assert_eq!(start.iter().collect::<Vec<_>>(), vec![Some(0), Some(0), Some(10_000), Some(-10_000), None]);
        assert_eq!(end.iter().collect::<Vec<_>>(), vec![Some(10_000), Some(10_000), Some(20_000), Some(0), None]);
    }

    #[test]
    fn bounds_of_times_in_any_order_are_each_times_window() {
        // runs of times in one window, out of order, around zero, NULLs between
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let times: Vec<Option<i64>> = (0..5000)
            .map(|i| match next() % 10 {
                0 => None,
                1 => Some((next() % 2_000_000) as i64 - 1_000_000),
                _ => Some(i * 37 - 90_000),
            })
            .collect();
        let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(times.clone()));
        for (bound, offset) in [(Bound::Start, 0), (Bound::End, 10_000)] {
            let got = tumble_bounds(&ts, 10_000_000_000, bound).unwrap();
            let got = got.as_any().downcast_ref::<TimestampMillisecondArray>().unwrap();
            let expected: Vec<Option<i64>> =
                times.iter().map(|t| t.map(|t| t - t.rem_euclid(10_000) + offset)).collect();
            assert_eq!(got.iter().collect::<Vec<_>>(), expected);
        }
        // a window past the end of time is an error, not a wrong bound
        let edge: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(i64::MAX - 5), Some(i64::MAX)]));
        assert!(tumble_bounds(&edge, 10_000_000_000, Bound::End).is_err());
        let low: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(i64::MIN + 5)]));
        assert!(tumble_bounds(&low, 10_000_000_000, Bound::Start).is_err());
    }

    #[test]
    fn sizes_are_validated() {
        use datafusion_common::arrow::datatypes::IntervalMonthDayNano;
        let month = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(1, 0, 0)));
        assert!(interval_nanos(&month).is_err());
        let zero = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 0)));
        assert!(interval_nanos(&zero).is_err());
        assert_eq!(format_duration(90_000_000_000), "1m30s");
    }
}
