//! Durations as weir reads and prints them: `'30 s'`, `'10 min'`, `'1h 30m'` in, `1m30s` out,
//! nanoseconds in between.

use datafusion_common::arrow::datatypes::TimeUnit;

/// A duration such as `30 s`, `10 min`, `1 h`, `500 ms` or `1h 30m`, in nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("'{t}' is not a duration ({e}); write e.g. '30 s', '10 min' or '1 h'"))?;
    i64::try_from(d.as_nanos()).map_err(|_| format!("the duration '{t}' is too long"))
}

/// Human spelling of a duration in nanoseconds ("10s", "1m30s", "250ms").
pub fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = nanos.unsigned_abs();
    if nanos < 0 {
        out.push('-');
    }
    for (unit, n) in [
        ("d", 86_400_000_000_000u64),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if rest >= n {
            out.push_str(&format!("{}{unit}", rest / n));
            rest %= n;
        }
    }
    out
}

/// Nanoseconds in one unit of `unit`.
pub fn nanos_per_unit(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("1h 30m"), Ok(5_400_000_000_000));
        assert_eq!(format_duration(5_400_000_000_000), "1h30m");
        assert_eq!(format_duration(-250_000_000), "-250ms");
        assert!(parse_duration("soon").is_err());
    }
}
