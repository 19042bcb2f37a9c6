//! Options the planner owns: session settings (`SET key = value`, `--set key=value`) and the
//! table options in `WITH (…)` that change how a query runs rather than how a connector reads
//! (e.g. `'state_ttl'`). Values are checked when they are given, so a typo fails early.

use crate::catalog::TableDef;
use crate::error::{Result, SqlError};

/// Session settings weir understands.
pub const SETTINGS: &[&str] = &["batch.size", "state.ttl"];

/// Table options read by the planner, accepted next to every connector's own options.
pub const ENGINE_OPTIONS: &[&str] = &["state_ttl", "changelog", "late_rows"];

/// A duration such as `30 s`, `10 min`, `1 h`, `500 ms` or `1h 30m`, in nanoseconds.
pub fn parse_duration(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("'{t}' is not a duration ({e}); write e.g. '30 s', '10 min' or '1 h'"))?;
    i64::try_from(d.as_nanos()).map_err(|_| format!("the duration '{t}' is too long"))
}

/// Normalise and check one setting; returns the key as stored (`state_ttl` → `state.ttl`).
pub fn check_setting(key: &str, value: &str) -> Result<(String, String)> {
    let key = key.trim().to_lowercase().replace('_', ".");
    let value = value.trim().to_string();
    match key.as_str() {
        "batch.size" => {
            if value.parse::<usize>().map(|n| n == 0).unwrap_or(true) {
                return Err(SqlError::plan(format!("batch.size must be a positive integer, got '{value}'")));
            }
        }
        "state.ttl" => {
            positive_duration("state.ttl", &value)?;
        }
        _ => {
            return Err(SqlError::plan(format!("unknown setting '{key}'"))
                .with_hint(format!("known settings: {}", SETTINGS.join(", "))))
        }
    }
    Ok((key, value))
}

fn positive_duration(what: &str, value: &str) -> Result<i64> {
    match parse_duration(value) {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(SqlError::plan(format!("{what} must be longer than zero"))),
        Err(e) => Err(SqlError::plan(format!("{what}: {e}"))),
    }
}

/// Check the values of the engine options a table declares.
pub fn check_table_options(def: &TableDef) -> Result<()> {
    if let Some(v) = def.option("state_ttl") {
        positive_duration(&format!("table '{}': option 'state_ttl'", def.name), v)?;
    }
    if let Some(v) = def.option("changelog") {
        if !v.eq_ignore_ascii_case("rows") {
            return Err(SqlError::plan(format!(
                "table '{}': option 'changelog' can only be 'rows' (write each change as a row with an op column), got '{v}'",
                def.name
            )));
        }
    }
    Ok(())
}

/// The state TTL of a table: its own `'state_ttl'` option, else the session's `state.ttl`.
pub fn state_ttl(def: &TableDef, settings: &std::collections::BTreeMap<String, String>) -> Option<i64> {
    def.option("state_ttl").or(settings.get("state.ttl").map(String::as_str)).and_then(|v| parse_duration(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30 s"), Ok(30_000_000_000));
        assert_eq!(parse_duration(" 1h 30m "), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("500 ms"), Ok(500_000_000));
        assert!(parse_duration("soon").unwrap_err().contains("'soon' is not a duration"));
    }

    #[test]
    fn settings() {
        assert_eq!(check_setting("STATE_TTL", " 1 h ").unwrap(), ("state.ttl".into(), "1 h".into()));
        assert!(check_setting("state.ttl", "0 s").unwrap_err().message.contains("longer than zero"));
        assert!(check_setting("batch.size", "0").is_err());
        assert!(check_setting("nope", "1").unwrap_err().message.contains("unknown setting 'nope'"));
    }
}
