//! Session settings (`SET key = value`, `--set key=value`), typed: each key is checked and
//! its value parsed when it is given, so a typo fails there, and everything downstream reads
//! fields rather than strings. Flink's configuration keys for the same things are accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::error::PlanError;
use crate::plan::EarlyEmit;

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
    "parallelism",
    "aggregate.phases",
];

/// The most parallel instances a stage may have (`parallelism`).
pub const MAX_PARALLELISM: usize = 256;

/// The largest `batch.size`: a batch's buffers are allocated up front, so a larger value would
/// only risk running out of memory.
pub const MAX_BATCH_SIZE: usize = 1 << 20;

/// Rows per batch unless `batch.size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// What survives a crash (`checkpoint.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// After a restart every row counts once (the default).
    ExactlyOnce,
    /// Flink's weaker mode, accepted for its configuration: it costs nothing to give
    /// exactly-once here (checkpoints need no alignment), so it behaves the same.
    AtLeastOnce,
}

impl std::str::FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "exactly_once" => Ok(Self::ExactlyOnce),
            "at_least_once" => Ok(Self::AtLeastOnce),
            other => Err(format!("unknown delivery guarantee '{other}' (use exactly_once or at_least_once)")),
        }
    }
}

impl std::fmt::Display for Guarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ExactlyOnce => "exactly_once",
            Self::AtLeastOnce => "at_least_once",
        })
    }
}

/// The settings of a session. Made with [`Settings::set`]; unset fields take the defaults
/// their accessors give.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `batch.size`: rows per batch read from sources.
    pub batch_size: Option<usize>,
    /// `state.ttl`: keys of updating state idle this long are forgotten (nanoseconds).
    pub state_ttl: Option<i64>,
    /// `window.allowed_lateness`: windows accept rows this late (nanoseconds).
    pub allowed_lateness: Option<i64>,
    /// `window.emit_early`: when windows emit before they close.
    pub emit_early: Option<EarlyEmit>,
    /// `source.idle_timeout`: a silent source stops holding back a union's watermark after
    /// this long (nanoseconds; zero: never).
    pub idle_timeout: Option<i64>,
    /// `checkpoint.interval`: time between checkpoints.
    pub checkpoint_interval: Option<Duration>,
    /// `checkpoint.guarantee`.
    pub checkpoint_guarantee: Option<Guarantee>,
    /// `checkpoint.retain`: complete checkpoints kept.
    pub checkpoint_retain: Option<usize>,
    /// `parallelism`: instances of each stage that can run in parallel (unset: the number of
    /// cores, used only for queries that read a table in splits).
    pub parallelism: Option<usize>,
    /// `aggregate.phases`: `false` (`'one'`) keeps window aggregates in one phase in parallel
    /// runs; unset or `true` (`'auto'`): two phases wherever they give the same result.
    pub two_phase: Option<bool>,
    /// `nexmark.<option>`: options given to every `nexmark` table that does not set them.
    pub nexmark: BTreeMap<String, String>,
    /// Every setting as given (stored name → value), for listing.
    given: BTreeMap<String, String>,
}

impl Settings {
    /// Check and apply `key = value`; returns the key as stored (`state_ttl` → `state.ttl`)
    /// and the value. An unknown key is an error naming the known ones.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(String, String), PlanError> {
        let (key, value) = check_setting(key, value)?;
        let duration = |v: &str| parse_duration(v).map_err(PlanError::new);
        match key.as_str() {
            "batch.size" => self.batch_size = value.parse().ok(),
            "state.ttl" => self.state_ttl = Some(duration(&value)?),
            "window.allowed_lateness" => self.allowed_lateness = Some(duration(&value)?),
            "window.emit_early" => self.emit_early = Some(early_emit(&value)?),
            "source.idle_timeout" => self.idle_timeout = Some(duration(&value)?),
            "checkpoint.interval" => {
                self.checkpoint_interval = Some(Duration::from_nanos(duration(&value)?.max(0) as u64))
            }
            "checkpoint.guarantee" => self.checkpoint_guarantee = Some(value.parse().map_err(PlanError::new)?),
            "checkpoint.retain" => self.checkpoint_retain = value.parse().ok(),
            "parallelism" => self.parallelism = value.parse().ok(),
            "aggregate.phases" => self.two_phase = Some(phases(&value)?),
            nexmark => {
                if let Some(option) = nexmark.strip_prefix("nexmark.") {
                    self.nexmark.insert(option.to_string(), value.clone());
                }
            }
        }
        self.given.insert(key.clone(), value.clone());
        Ok((key, value))
    }

    /// Rows per batch (`batch.size`, default 8192).
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// Instances per stage (`parallelism`, default the number of cores).
    pub fn parallelism(&self) -> usize {
        self.parallelism.unwrap_or_else(default_parallelism)
    }

    /// Whether window aggregates may run in two phases in parallel (`aggregate.phases`,
    /// default `auto`: yes).
    pub fn two_phase(&self) -> bool {
        self.two_phase.unwrap_or(true)
    }

    /// The value given for a setting (by its stored name), as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.given.get(key).map(String::as_str)
    }

    /// Every setting given, by stored name, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.given.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

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
        "parallelism.default" => ("parallelism", value.to_string()),
        "table.optimizer.agg-phase-strategy" => ("aggregate.phases", value.to_string()),
        _ => return None,
    })
}

/// Normalise and check one setting; returns the key as stored (`state_ttl` → `state.ttl`).
/// `nexmark.<option>` sets an option of the built-in Nexmark tables. Flink's keys for the
/// same things are accepted too (`'table.exec.state.ttl'`, `'execution.checkpointing.interval'`,
/// `'table.exec.emit.allow-lateness'`, `'table.exec.emit.early-fire.enabled'`/`.delay`, …).
pub fn check_setting(key: &str, value: &str) -> Result<(String, String), PlanError> {
    let value = value.trim().to_string();
    if let Some(option) = key.trim().to_lowercase().strip_prefix("nexmark.") {
        return Ok((format!("nexmark.{}", crate::nexmark::check_setting(option, &value)?), value));
    }
    if let Some((setting, value)) = flink_setting(key, &value) {
        return check_setting(setting, &value).map_err(|mut e| {
            e.message = format!("'{}' is weir's {setting}: {}", key.trim(), e.message);
            e
        });
    }
    let Some(key) = setting_name(key) else {
        return Err(PlanError::new(format!("unknown setting '{}'", key.trim()))
            .with_hint(format!("known settings: {}, nexmark.<option>", SETTINGS.join(", "))));
    };
    match key {
        "batch.size" => {
            if !value.parse::<usize>().is_ok_and(|n| (1..=MAX_BATCH_SIZE).contains(&n)) {
                return Err(PlanError::new(format!(
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
                return Err(PlanError::new(format!("checkpoint.guarantee: '{value}' is not a delivery guarantee"))
                    .with_hint("use 'exactly_once' (the default) or 'at_least_once'"));
            }
        }
        "parallelism" => {
            if !value.parse::<usize>().is_ok_and(|n| (1..=MAX_PARALLELISM).contains(&n)) {
                return Err(PlanError::new(format!(
                    "parallelism must be a whole number from 1 to {MAX_PARALLELISM}, got '{value}'"
                ))
                .with_hint("the default is the number of cores; 1 runs the query on one thread"));
            }
        }
        "aggregate.phases" => {
            phases(&value)?;
        }
        "checkpoint.retain" => {
            if value.parse::<usize>().map(|n| n == 0).unwrap_or(true) {
                return Err(PlanError::new(format!("checkpoint.retain must be a positive integer, got '{value}'")));
            }
        }
        _ => {
            early_emit(&value)?;
        }
    }
    Ok((key.to_string(), value))
}

/// `aggregate.phases`: whether window aggregates may run in two phases. Flink's values
/// (`AUTO`, `ONE_PHASE`, `TWO_PHASE`) are accepted; weir uses two phases only where they give
/// the same result, so `two_phase` is `auto`.
fn phases(value: &str) -> Result<bool, PlanError> {
    match value.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "auto" | "two" | "two_phase" => Ok(true),
        "one" | "one_phase" => Ok(false),
        _ => Err(PlanError::new(format!("aggregate.phases: '{value}' is not a strategy"))
            .with_hint("use 'auto' (the default: two phases where they give the same result) or 'one'")),
    }
}

/// The number of cores: the default `parallelism`.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_PARALLELISM)
}

/// An allowed lateness: a duration, zero allowed.
pub fn lateness(what: &str, value: &str) -> Result<i64, PlanError> {
    parse_duration(value).map_err(|e| PlanError::new(format!("{what}: {e}")))
}

/// Parse a `window.emit_early` value: `off`, `update`, or an interval such as `5 s`.
pub fn early_emit(value: &str) -> Result<EarlyEmit, PlanError> {
    let v = value.trim().to_lowercase();
    match v.as_str() {
        "off" | "none" | "false" => Ok(EarlyEmit::Off),
        "update" | "on update" | "every update" => Ok(EarlyEmit::OnUpdate),
        _ => match parse_duration(&v) {
            Ok(0) => Ok(EarlyEmit::OnUpdate),
            Ok(n) => Ok(EarlyEmit::Every(n)),
            Err(_) => Err(PlanError::new(format!(
                "window.emit_early: '{}' is not 'off', 'update' or an interval",
                value.trim()
            ))
            .with_hint(
                "e.g. SET window.emit_early = 'update' (after every change) or '5 s' (at most every 5 seconds)",
            )),
        },
    }
}

/// A duration longer than zero; errors name `what`.
pub fn positive_duration(what: &str, value: &str) -> Result<i64, PlanError> {
    match parse_duration(value) {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(PlanError::new(format!("{what} must be longer than zero"))),
        Err(e) => Err(PlanError::new(format!("{what}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(flink("parallelism.default", "4"), ("parallelism".into(), "4".into()));
        let mut s = Settings::default();
        assert!(s.two_phase());
        s.set("table.optimizer.agg-phase-strategy", "ONE_PHASE").unwrap();
        assert!(!s.two_phase());
        s.set("aggregate.phases", "auto").unwrap();
        assert!(s.two_phase());
        assert!(check_setting("aggregate.phases", "three").unwrap_err().hint.is_some());
        assert!(check_setting("parallelism", "0").unwrap_err().message.contains("from 1 to 256"));
        assert!(check_setting("parallelism", "many").is_err());
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

    #[test]
    fn settings_are_typed() {
        let mut s = Settings::default();
        assert_eq!(s.batch_size(), 8192);
        s.set("batch.size", "100").unwrap();
        s.set("table.exec.state.ttl", "60000").unwrap();
        s.set("execution.checkpointing.mode", "AT_LEAST_ONCE").unwrap();
        s.set("nexmark.events", "1000").unwrap();
        assert_eq!(s.batch_size(), 100);
        assert_eq!(s.state_ttl, Some(60_000_000_000));
        assert_eq!(s.checkpoint_guarantee, Some(Guarantee::AtLeastOnce));
        assert_eq!(s.nexmark.get("events").map(String::as_str), Some("1000"));
        assert_eq!(s.get("state.ttl"), Some("60000 ms"));
        assert!(s.set("bogus", "1").is_err());
        assert_eq!(s.entries().count(), 4);
    }
}
