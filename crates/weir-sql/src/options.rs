//! Options the planner owns: session settings (`SET key = value`, `--set key=value`) and the
//! table options in `WITH (…)` that change how a query runs rather than how a connector reads
//! (e.g. `'state_ttl'`). Values are checked when they are given, so a typo fails early.

use crate::catalog::TableDef;
use crate::error::{Result, SqlError};

/// Session settings weir understands.
pub const SETTINGS: &[&str] = &[
    "batch.size",
    "state.ttl",
    "window.allowed_lateness",
    "window.emit_early",
    "source.idle_timeout",
    "checkpoint.interval",
    "checkpoint.guarantee",
    "checkpoint.retain",
];

/// The largest `batch.size`: a batch's buffers are allocated up front, so a larger value would
/// only risk running out of memory.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// Table options read by the planner, accepted next to every connector's own options.
pub const ENGINE_OPTIONS: &[&str] = &["state_ttl", "changelog", "late_rows", "allowed_lateness", "idle_timeout"];

pub use weir_plan::duration::parse_duration;
pub use weir_plan::EarlyEmit;

/// The stored name of a setting: case, `_` for `.` and the `window.` prefix do not matter
/// (`STATE_TTL` → `state.ttl`, `allowed_lateness` → `window.allowed_lateness`).
fn setting_name(key: &str) -> Option<&'static str> {
    let folded = |k: &str| k.trim().to_lowercase().replace('_', ".");
    let key = folded(key);
    SETTINGS.iter().copied().find(|s| {
        let s = folded(s);
        s == key || s.strip_prefix("window.") == Some(key.as_str())
    })
}

/// Flink's configuration keys for what weir's settings do, with the value in weir's terms (a
/// bare number of a duration is milliseconds, as in Flink).
fn flink_setting(key: &str, value: &str) -> Option<(&'static str, String)> {
    let millis = |v: &str| if v.parse::<u64>().is_ok() { format!("{v} ms") } else { v.to_string() };
    Some(match key.trim().to_lowercase().as_str() {
        "table.exec.state.ttl" => ("state.ttl", millis(value)),
        "table.exec.emit.allow-lateness" => ("window.allowed_lateness", millis(value)),
        "table.exec.emit.early-fire.delay" => ("window.emit_early", millis(value)),
        "table.exec.emit.early-fire.enabled" => {
            let on = matches!(value.to_lowercase().as_str(), "true" | "on" | "1");
            ("window.emit_early", if on { "update" } else { "off" }.to_string())
        }
        "table.exec.source.idle-timeout" => ("source.idle_timeout", millis(value)),
        "execution.checkpointing.interval" => ("checkpoint.interval", millis(value)),
        "execution.checkpointing.mode" => ("checkpoint.guarantee", value.to_lowercase()),
        "state.checkpoints.num-retained" => ("checkpoint.retain", value.to_string()),
        _ => return None,
    })
}

/// Normalise and check one setting; returns the key as stored (`state_ttl` → `state.ttl`).
/// `nexmark.<option>` sets an option of the built-in Nexmark tables. Flink's keys for the
/// same things are accepted too (`'table.exec.state.ttl'`, `'execution.checkpointing.interval'`,
/// `'table.exec.emit.allow-lateness'`, `'table.exec.emit.early-fire.enabled'`/`.delay`, …).
pub fn check_setting(key: &str, value: &str) -> Result<(String, String)> {
    let value = value.trim().to_string();
    if let Some(option) = key.trim().to_lowercase().strip_prefix("nexmark.") {
        return Ok((
            format!("nexmark.{}", crate::nexmark::check_setting(option, &value).map_err(SqlError::from)?),
            value,
        ));
    }
    if let Some((setting, value)) = flink_setting(key, &value) {
        return check_setting(setting, &value).map_err(|mut e| {
            e.message = format!("'{}' is weir's {setting}: {}", key.trim(), e.message);
            e
        });
    }
    let Some(key) = setting_name(key) else {
        return Err(SqlError::plan(format!("unknown setting '{}'", key.trim()))
            .with_hint(format!("known settings: {}, nexmark.<option>", SETTINGS.join(", "))));
    };
    match key {
        "batch.size" => {
            if !value.parse::<usize>().is_ok_and(|n| (1..=MAX_BATCH_SIZE).contains(&n)) {
                return Err(SqlError::plan(format!(
                    "batch.size must be a whole number of rows from 1 to {MAX_BATCH_SIZE}, got '{value}'"
                ))
                .with_hint("the default, 8192, suits most queries"));
            }
        }
        "state.ttl" => {
            positive_duration("state.ttl", &value)?;
        }
        "window.allowed_lateness" => {
            lateness("window.allowed_lateness", &value)?;
        }
        "source.idle_timeout" => {
            // zero: no input is ever left out (Flink's default, '0')
            lateness("source.idle_timeout", &value)?;
        }
        "checkpoint.interval" => {
            positive_duration("checkpoint.interval", &value)?;
        }
        "checkpoint.guarantee" => {
            let v = value.trim().to_ascii_lowercase().replace('-', "_");
            if v != "exactly_once" && v != "at_least_once" {
                return Err(SqlError::plan(format!("checkpoint.guarantee: '{value}' is not a delivery guarantee"))
                    .with_hint("use 'exactly_once' (the default) or 'at_least_once'"));
            }
        }
        "checkpoint.retain" => {
            if value.parse::<usize>().map(|n| n == 0).unwrap_or(true) {
                return Err(SqlError::plan(format!("checkpoint.retain must be a positive integer, got '{value}'")));
            }
        }
        _ => {
            early_emit(&value)?;
        }
    }
    Ok((key.to_string(), value))
}

/// An allowed lateness: a duration, zero allowed.
fn lateness(what: &str, value: &str) -> Result<i64> {
    parse_duration(value).map_err(|e| SqlError::plan(format!("{what}: {e}")))
}

/// Parse a `window.emit_early` value: `off`, `update`, or an interval such as `5 s`.
pub fn early_emit(value: &str) -> Result<EarlyEmit> {
    let v = value.trim().to_lowercase();
    match v.as_str() {
        "off" | "none" | "false" => Ok(EarlyEmit::Off),
        "update" | "on update" | "every update" => Ok(EarlyEmit::OnUpdate),
        _ => match parse_duration(&v) {
            Ok(0) => Ok(EarlyEmit::OnUpdate),
            Ok(n) => Ok(EarlyEmit::Every(n)),
            Err(_) => Err(SqlError::plan(format!(
                "window.emit_early: '{}' is not 'off', 'update' or an interval",
                value.trim()
            ))
            .with_hint(
                "e.g. SET window.emit_early = 'update' (after every change) or '5 s' (at most every 5 seconds)",
            )),
        },
    }
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
pub fn state_ttl(def: &TableDef, settings: &std::collections::BTreeMap<String, String>) -> Option<i64> {
    def.option("state_ttl").or(settings.get("state.ttl").map(String::as_str)).and_then(|v| parse_duration(v).ok())
}

/// A source table as a query reads it: the session's settings fill in the options it does
/// not set itself, the runtime reading only the table (`nexmark.*` for a `nexmark` table, and
/// `source.idle_timeout` as its `'idle_timeout'`, a zero timeout setting nothing).
pub fn with_session_defaults(def: &TableDef, settings: &std::collections::BTreeMap<String, String>) -> TableDef {
    let mut def = crate::nexmark::with_session_defaults(def, settings);
    if let Some(v) = settings.get("source.idle_timeout") {
        if def.option("idle_timeout").is_none() && parse_duration(v).is_ok_and(|n| n > 0) {
            def.options.insert("idle_timeout".to_string(), v.clone());
        }
    }
    def
}

/// The allowed lateness of windows over a table: its own `'allowed_lateness'` option, else the
/// session's `window.allowed_lateness`; zero when neither is set.
pub fn allowed_lateness(def: &TableDef, settings: &std::collections::BTreeMap<String, String>) -> i64 {
    def.option("allowed_lateness")
        .or(settings.get("window.allowed_lateness").map(String::as_str))
        .and_then(|v| parse_duration(v).ok())
        .unwrap_or(0)
}

/// How long a source may send nothing before it stops holding back the watermark of a
/// `UNION ALL` (its `'idle_timeout'` option), in nanoseconds.
pub fn idle_timeout(def: &TableDef) -> Option<i64> {
    def.idle_timeout()
}

/// The session's `window.emit_early`.
pub fn emit_early(settings: &std::collections::BTreeMap<String, String>) -> EarlyEmit {
    settings.get("window.emit_early").and_then(|v| early_emit(v).ok()).unwrap_or(EarlyEmit::Off)
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
        let huge = check_setting("batch.size", "18446744073709551615").unwrap_err().to_string();
        assert!(huge.contains("from 1 to 1048576"), "{huge}");
        assert!(check_setting("batch.size", "1048576").is_ok());
        assert!(check_setting("nope", "1").unwrap_err().message.contains("unknown setting 'nope'"));
        assert_eq!(check_setting("allowed_lateness", "30 s").unwrap().0, "window.allowed_lateness");
        // Flink's keys
        let flink = |k: &str, v: &str| check_setting(k, v).unwrap();
        assert_eq!(flink("table.exec.state.ttl", "3600000"), ("state.ttl".into(), "3600000 ms".into()));
        assert_eq!(flink("table.exec.state.ttl", "1 h"), ("state.ttl".into(), "1 h".into()));
        assert_eq!(flink("table.exec.emit.allow-lateness", "1 min").0, "window.allowed_lateness");
        assert_eq!(flink("table.exec.emit.early-fire.enabled", "true"), ("window.emit_early".into(), "update".into()));
        assert_eq!(flink("table.exec.emit.early-fire.delay", "5 s"), ("window.emit_early".into(), "5 s".into()));
        assert_eq!(flink("execution.checkpointing.interval", "10s"), ("checkpoint.interval".into(), "10s".into()));
        assert_eq!(flink("execution.checkpointing.mode", "AT_LEAST_ONCE").1, "at_least_once");
        assert_eq!(flink("state.checkpoints.num-retained", "5").0, "checkpoint.retain");
        assert_eq!(flink("table.exec.source.idle-timeout", "0"), ("source.idle_timeout".into(), "0 ms".into()));
        let e = check_setting("execution.checkpointing.mode", "sometimes").unwrap_err();
        assert!(e.message.starts_with("'execution.checkpointing.mode' is weir's checkpoint.guarantee: "), "{e}");
        assert_eq!(
            check_setting("window.allowed-lateness", "0 s").unwrap_err().message,
            "unknown setting 'window.allowed-lateness'"
        );
        assert_eq!(check_setting("EMIT_EARLY", "update").unwrap().0, "window.emit_early");
        assert_eq!(early_emit("5 s").unwrap(), EarlyEmit::Every(5_000_000_000));
        assert_eq!(early_emit("Update").unwrap(), EarlyEmit::OnUpdate);
        assert!(check_setting("window.emit_early", "often").unwrap_err().message.contains("'often' is not"));
    }
}
