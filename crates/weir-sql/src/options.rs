//! Options the planner owns: session settings (`SET key = value`, `--set key=value`) and the
//! table options in `WITH (…)` that change how a query runs rather than how a connector reads
//! (e.g. `'state_ttl'`). Values are checked when they are given, so a typo fails early.

use crate::catalog::TableDef;
use crate::error::{Result, SqlError};

pub use weir_plan::duration::parse_duration;
pub use weir_plan::settings::{check_setting, early_emit, MAX_BATCH_SIZE, SETTINGS};
pub use weir_plan::{EarlyEmit, Settings, TABLE_OPTIONS};

fn lateness(what: &str, value: &str) -> Result<i64> {
    Ok(weir_plan::settings::lateness(what, value)?)
}

fn positive_duration(what: &str, value: &str) -> Result<i64> {
    Ok(weir_plan::settings::positive_duration(what, value)?)
}

/// Check the values of the engine options a table declares.
pub fn check_table_options(def: &TableDef) -> Result<()> {
    if let Some(v) = def.option("state_ttl") {
        positive_duration(&format!("table '{}': option 'state_ttl'", def.name), v)?;
    }
    if let Some(v) = def.option("idle_timeout") {
        positive_duration(&format!("table '{}': option 'idle_timeout'", def.name), v)?;
    }
    if let Some(v) = def.option("allowed_lateness") {
        lateness(&format!("table '{}': option 'allowed_lateness'", def.name), v)?;
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
pub fn state_ttl(def: &TableDef, settings: &Settings) -> Option<i64> {
    def.option("state_ttl").and_then(|v| parse_duration(v).ok()).or(settings.state_ttl)
}

/// A source table as a query reads it: the session's settings fill in the options it does
/// not set itself, the runtime reading only the table (`nexmark.*` for a `nexmark` table, and
/// `source.idle_timeout` as its `'idle_timeout'`, a zero timeout setting nothing).
pub fn with_session_defaults(def: &TableDef, settings: &Settings) -> TableDef {
    let mut def = crate::nexmark::with_session_defaults(def, &settings.nexmark);
    if let Some(v) = settings.get("source.idle_timeout") {
        if def.option("idle_timeout").is_none() && settings.idle_timeout.is_some_and(|n| n > 0) {
            def.options.insert("idle_timeout".to_string(), v.to_string());
        }
    }
    def
}

/// The allowed lateness of windows over a table: its own `'allowed_lateness'` option, else the
/// session's `window.allowed_lateness`; zero when neither is set.
pub fn allowed_lateness(def: &TableDef, settings: &Settings) -> i64 {
    def.option("allowed_lateness").and_then(|v| parse_duration(v).ok()).or(settings.allowed_lateness).unwrap_or(0)
}

/// How long a source may send nothing before it stops holding back the watermark of a
/// `UNION ALL` (its `'idle_timeout'` option), in nanoseconds.
pub fn idle_timeout(def: &TableDef) -> Option<i64> {
    def.idle_timeout()
}

/// The session's `window.emit_early`.
pub fn emit_early(settings: &Settings) -> EarlyEmit {
    settings.emit_early.unwrap_or(EarlyEmit::Off)
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
}
