//! What a connector declares about itself, as the planner sees it: its name, whether it reads
//! or writes, and its options (name, type, required, default, doc). The planner checks
//! `CREATE TABLE … WITH (…)` against these declarations through [`ConnectorCatalog`], so a typo
//! fails where it is written, with a suggestion; the runtime's connector registry implements
//! the catalog, and `SHOW CONNECTORS` and the docs are generated from the same declarations.

use std::fmt;

use serde::Serialize;

use crate::duration::parse_duration;
use crate::table::TableDef;

/// The type of an option's value. Every value is written as a string in SQL; the type says
/// which strings are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OptionType {
    /// Any text.
    Text,
    /// A file or directory path.
    Path,
    /// `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    Bool,
    /// A whole number (may be negative).
    Integer,
    /// A whole number ≥ 1.
    Positive,
    /// A duration such as `'30 s'`, `'10 min'`, `'1h 30m'`.
    Duration,
    /// A size in bytes such as `'128MB'`, `'64 kb'`, `'1000'` (Flink's memory sizes: a
    /// kilobyte is 1024 bytes).
    MemorySize,
    /// A timestamp such as `'2015-07-15 00:00:00'`.
    Timestamp,
    /// One character (`'\t'` for a tab).
    Char,
    /// One of these words (any case).
    Choice(&'static [&'static str]),
}

impl OptionType {
    /// Check `value`, or say what was expected.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let v = value.trim();
        let ok = match self {
            OptionType::Text | OptionType::Path | OptionType::Timestamp => true,
            OptionType::Bool => {
                matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "1" | "0")
            }
            OptionType::Integer => v.parse::<i64>().is_ok() || v.parse::<u64>().is_ok(),
            OptionType::Positive => v.parse::<u64>().is_ok_and(|n| n >= 1),
            OptionType::Duration => return parse_duration(v).map(|_| ()),
            OptionType::MemorySize => return parse_memory_size(v).map(|_| ()),
            OptionType::Char => value == "\\t" || value.chars().count() == 1,
            OptionType::Choice(words) => words.iter().any(|w| w.eq_ignore_ascii_case(v)),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("expected {self}, got '{value}'"))
        }
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionType::Text => write!(f, "text"),
            OptionType::Path => write!(f, "a path"),
            OptionType::Bool => write!(f, "true or false"),
            OptionType::Integer => write!(f, "an integer"),
            OptionType::Positive => write!(f, "a whole number of at least 1"),
            OptionType::Duration => write!(f, "a duration such as '30 s'"),
            OptionType::MemorySize => write!(f, "a size such as '128MB'"),
            OptionType::Timestamp => write!(f, "a timestamp"),
            OptionType::Char => write!(f, "one character"),
            OptionType::Choice(words) => write!(f, "one of {}", words.join(", ")),
        }
    }
}

/// A size in bytes: a whole number and an optional unit (`b`, `kb`/`k`, `mb`/`m`, `gb`/`g`,
/// `tb`/`t`, any case, 1024 apart), as Flink reads memory sizes.
pub fn parse_memory_size(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let bad = || format!("expected a size such as '128MB', got '{value}'");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// One option a connector understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionSpec {
    /// The key as written in `WITH (…)`. A segment in angle brackets stands for any name
    /// without dots: `fields.<column>.min` matches `fields.price.min`; a last one ending in
    /// `*` for one or more: `properties.<key*>` matches `properties.bootstrap.servers`.
    pub name: &'static str,
    /// What values it takes.
    pub kind: OptionType,
    /// Whether a table must set it.
    pub required: bool,
    /// The value when not set, as written in SQL (`None`: no default, or it depends).
    pub default: Option<&'static str>,
    /// One line saying what it does.
    pub doc: &'static str,
}

impl OptionSpec {
    /// An optional option without a default.
    pub const fn new(name: &'static str, kind: OptionType, doc: &'static str) -> Self {
        Self { name, kind, required: false, default: None, doc }
    }

    /// The same, required.
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The same, with a default.
    pub const fn default(mut self, value: &'static str) -> Self {
        self.default = Some(value);
        self
    }

    /// Whether `key` is this option (see [`OptionSpec::name`] for patterns).
    pub fn matches(&self, key: &str) -> bool {
        if !self.name.contains('<') {
            return self.name == key;
        }
        let (spec, given): (Vec<&str>, Vec<&str>) = (self.name.split('.').collect(), key.split('.').collect());
        let rest = spec.last().is_some_and(|s| s.ends_with("*>"));
        let lengths_fit = if rest { given.len() >= spec.len() } else { spec.len() == given.len() };
        lengths_fit
            && spec.iter().zip(&given).all(|(s, g)| if s.starts_with('<') { !g.is_empty() } else { s == g })
            && given[spec.len().min(given.len())..].iter().all(|g| !g.is_empty())
    }
}

/// Options the engine reads from every table, whatever its connector.
pub const TABLE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("state_ttl", OptionType::Duration, "on a source: keys of updating aggregates idle this long are forgotten"),
    OptionSpec::new(
        "allowed_lateness",
        OptionType::Duration,
        "on a source: windows over it keep their state this long after they fire, and rows arriving meanwhile correct them (a changelog)",
    )
    .default("0 s"),
    OptionSpec::new(
        "idle_timeout",
        OptionType::Duration,
        "on a source in a `UNION ALL`: after this long without rows it stops holding back the union's watermark; on a `kafka` source, the same for each partition (`SET source.idle_timeout` gives every source one)",
    ),
    OptionSpec::new(
        "late_rows",
        OptionType::Text,
        "on a source: a table every row an operator drops (late, or with a NULL event time) is written to, whole, with a `reason` column",
    ),
    OptionSpec::new(
        "changelog",
        OptionType::Choice(&["rows"]),
        "on a sink: accept an updating query, writing each change as a row with an `op` column",
    ),
];

/// Everything the planner knows about a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorSpec {
    /// The name given as `'connector' = '…'`.
    pub name: &'static str,
    /// One line saying what it reads or writes.
    pub doc: &'static str,
    /// Whether a query can read the table.
    pub source: bool,
    /// Whether a query can write to the table (`INSERT INTO`).
    pub sink: bool,
    /// Keys match whatever their case and whether `-`, `.` or `_` separate their words
    /// (`max-emit-speed` is `max_emit_speed`), for connectors that accept Flink's spellings.
    pub loose_keys: bool,
    /// Its own options (the [`TABLE_OPTIONS`] are accepted too).
    pub options: Vec<OptionSpec>,
    /// The metadata its tables can declare as columns (`col TYPE METADATA FROM 'key'`).
    pub metadata: Vec<MetadataSpec>,
}

/// A value a connector knows about each row, which a table can declare as a metadata column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetadataSpec {
    /// The key (`METADATA FROM 'key'`).
    pub key: &'static str,
    /// The SQL types a column of it may have, the first being Flink's.
    pub types: &'static [&'static str],
    /// Whether an `INSERT INTO` the table can set it (otherwise the column must be `VIRTUAL`
    /// when the table is written to).
    pub writable: bool,
    /// One line saying what it is.
    pub doc: &'static str,
}

impl ConnectorSpec {
    /// The option `key` is, among the connector's and the engine's.
    pub fn option(&self, key: &str) -> Option<&OptionSpec> {
        let fold = |k: &str| k.to_ascii_lowercase().replace(['-', '.'], "_");
        let mut all = self.options.iter().chain(TABLE_OPTIONS);
        if self.loose_keys {
            all.find(|o| o.matches(key) || fold(o.name) == fold(key))
        } else {
            all.find(|o| o.matches(key))
        }
    }

    /// Check a table's options against the declarations: every key known (with a suggestion
    /// when not), every value of its type, every required option present.
    pub fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        for (key, value) in &table.options {
            if key == "connector" {
                continue;
            }
            let Some(spec) = self.option(key) else {
                let names = self.options.iter().chain(TABLE_OPTIONS).map(|o| o.name);
                return Err(ConnectorError::UnknownOption {
                    table: table.name.clone(),
                    connector: self.name.to_string(),
                    option: key.clone(),
                    suggestion: closest(key, names.clone()),
                    known: names.map(str::to_string).collect(),
                });
            };
            spec.kind.check(value).map_err(|message| ConnectorError::BadValue {
                table: table.name.clone(),
                option: key.clone(),
                message,
            })?;
        }
        for m in &table.metadata {
            let Some(spec) = self.metadata.iter().find(|s| s.key == m.key) else {
                let keys = self.metadata.iter().map(|s| s.key);
                return Err(ConnectorError::Invalid {
                    option: None,
                    message: match closest(&m.key, keys.clone()) {
                        Some(s) => format!(
                            "table '{}': column '{}': connector '{}' has no metadata '{}' (did you mean '{s}'?)",
                            table.name, m.column, self.name, m.key
                        ),
                        None if self.metadata.is_empty() => format!(
                            "table '{}': column '{}': connector '{}' has no metadata columns",
                            table.name, m.column, self.name
                        ),
                        None => format!(
                            "table '{}': column '{}': connector '{}' has no metadata '{}' (it has: {})",
                            table.name,
                            m.column,
                            self.name,
                            m.key,
                            keys.collect::<Vec<_>>().join(", ")
                        ),
                    },
                });
            };
            let field = table.schema.as_ref().and_then(|s| s.field_with_name(&m.column).ok());
            if let Some(field) = field {
                let got = crate::table::sql_type_name(field.data_type());
                if !spec.types.contains(&got.as_str()) {
                    return Err(ConnectorError::invalid(format!(
                        "table '{}': metadata column '{}' ('{}') is {got}, but it can be {}",
                        table.name,
                        m.column,
                        m.key,
                        spec.types.join(" or ")
                    )));
                }
            }
        }
        let set = |o: &OptionSpec| table.options.keys().any(|k| self.option(k).is_some_and(|s| s.name == o.name));
        if let Some(missing) = self.options.iter().find(|o| o.required && !set(o)) {
            return Err(ConnectorError::MissingOption {
                table: table.name.clone(),
                connector: self.name.to_string(),
                option: missing.name.to_string(),
                doc: missing.doc.to_string(),
            });
        }
        Ok(())
    }
}

/// The candidate closest to `word`, if one is close enough to be what was meant: the same
/// but for case, `_`/`-`/`.`, or a couple of typed characters.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let fold = |s: &str| s.to_ascii_lowercase().replace(['_', '-', '.'], "");
    let w = fold(word);
    candidates
        .into_iter()
        .filter(|c| !c.contains('<'))
        .map(|c| (if fold(c) == w { 0 } else { strsim::damerau_levenshtein(&w, &fold(c)) }, c))
        .filter(|(d, c)| *d == 0 || (*d <= 2 && *d * 3 <= c.len().max(3)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// A table's connector cannot be used as declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// `'connector' = 'x'` names no registered connector.
    #[error("table '{table}': unknown connector '{connector}'")]
    UnknownConnector {
        /// The table.
        table: String,
        /// The name given.
        connector: String,
        /// The closest registered name, if one is close.
        suggestion: Option<String>,
        /// The registered names.
        known: Vec<String>,
    },
    /// An option the connector does not understand.
    #[error("table '{table}': unknown option '{option}' for connector '{connector}'")]
    UnknownOption {
        /// The table.
        table: String,
        /// Its connector.
        connector: String,
        /// The key given.
        option: String,
        /// The closest option, if one is close.
        suggestion: Option<String>,
        /// The options the connector understands.
        known: Vec<String>,
    },
    /// A value not of the option's type.
    #[error("table '{table}': option '{option}': {message}")]
    BadValue {
        /// The table.
        table: String,
        /// The option.
        option: String,
        /// What was expected.
        message: String,
    },
    /// A required option is not set.
    #[error("table '{table}': connector '{connector}' needs a '{option}' option")]
    MissingOption {
        /// The table.
        table: String,
        /// Its connector.
        connector: String,
        /// The option.
        option: String,
        /// What the option is for.
        doc: String,
    },
    /// The table is read but its connector only writes, or the other way round.
    #[error("table '{table}' has connector '{connector}': {message}")]
    WrongRole {
        /// The table.
        table: String,
        /// Its connector.
        connector: String,
        /// What it cannot do.
        message: String,
    },
    /// Options that are each fine but not together, or a check only the connector can make.
    #[error("{message}")]
    Invalid {
        /// The option at fault, when one is.
        option: Option<String>,
        /// What is wrong, naming the table.
        message: String,
    },
}

impl ConnectorError {
    /// A connector's own check failed; `message` names the table.
    pub fn invalid(message: impl Into<String>) -> Self {
        ConnectorError::Invalid { option: None, message: message.into() }
    }

    /// The option the error is about, to point at in the SQL text.
    pub fn option(&self) -> Option<&str> {
        match self {
            ConnectorError::UnknownOption { option, .. } | ConnectorError::BadValue { option, .. } => Some(option),
            ConnectorError::Invalid { option, .. } => option.as_deref(),
            ConnectorError::UnknownConnector { .. } => Some("connector"),
            _ => None,
        }
    }

    /// How to fix it, when there is an obvious way.
    pub fn hint(&self) -> Option<String> {
        let list = |known: &[String]| known.join(", ");
        match self {
            ConnectorError::UnknownConnector { suggestion: Some(s), .. }
            | ConnectorError::UnknownOption { suggestion: Some(s), .. } => Some(format!("did you mean '{s}'?")),
            ConnectorError::UnknownConnector { known, .. } => {
                Some(format!("known connectors: {} (SHOW CONNECTORS lists their options)", list(known)))
            }
            ConnectorError::UnknownOption { known, connector, .. } => {
                Some(format!("'{connector}' takes: {} (SHOW CONNECTORS describes them)", list(known)))
            }
            ConnectorError::MissingOption { option, doc, .. } => Some(format!("add '{option}' = '…' ({doc})")),
            _ => None,
        }
    }
}

/// The connectors a planner checks tables against: implemented by the runtime's registry, so
/// the planner never depends on the runtime.
pub trait ConnectorCatalog: Send + Sync + fmt::Debug {
    /// The declarations of every connector, by name.
    fn specs(&self) -> Vec<ConnectorSpec>;

    /// Check a table as declared by `CREATE TABLE`: its connector exists, its options are
    /// known and well-typed, and the connector's own checks pass. Files need not exist yet (a
    /// script may write one before reading it).
    fn check_table(&self, table: &TableDef) -> Result<(), ConnectorError>;

    /// Whether the input of `table` ends (a file that is not followed, …): without a
    /// watermark such a table can be read whole first, as the lookup table of a join.
    fn bounded(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether reading `table` gives a changelog (+I/-U/+U/-D rows) rather than only
    /// inserts: a query over it is updating.
    fn changelog_source(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether reading `table` gives upserts keyed by its primary key (a key's new row, or a
    /// removal that carries only the key): the planner turns them into a changelog.
    fn upsert_source(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }

    /// Whether `table` can be written an updating query's changes (its connector writes each
    /// change as the format says), without `'changelog' = 'rows'`.
    fn changelog_sink(&self, table: &TableDef) -> bool {
        let _ = table;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(options: &[(&str, &str)]) -> TableDef {
        TableDef {
            name: "t".into(),
            schema: None,
            watermark: None,
            proctime: None,
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            metadata: Vec::new(),
            primary_key: Vec::new(),
            partition_by: Vec::new(),
        }
    }

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            name: "file",
            doc: "files",
            source: true,
            sink: true,
            loose_keys: false,
            metadata: vec![],
            options: vec![
                OptionSpec::new("path", OptionType::Path, "the file").required(),
                OptionSpec::new("format", OptionType::Choice(&["csv", "json"]), "the format"),
                OptionSpec::new("fields.<column>.min", OptionType::Integer, "smallest value"),
            ],
        }
    }

    #[test]
    fn memory_sizes_read_as_flink_reads_them() {
        assert_eq!(parse_memory_size("128MB"), Ok(128 << 20));
        assert_eq!(parse_memory_size(" 64 kb "), Ok(64 << 10));
        assert_eq!(parse_memory_size("1000"), Ok(1000));
        assert_eq!(parse_memory_size("2g"), Ok(2 << 30));
        assert!(parse_memory_size("1.5mb").is_err());
        assert!(parse_memory_size("mb").is_err());
        assert!(parse_memory_size("99999999999tb").is_err());
    }

    #[test]
    fn a_typo_gets_the_closest_option() {
        let err = spec().check(&table(&[("connector", "file"), ("path", "x"), ("fromat", "csv")])).unwrap_err();
        assert_eq!(err.option(), Some("fromat"));
        assert_eq!(err.hint().as_deref(), Some("did you mean 'format'?"));
        let err = spec().check(&table(&[("path", "x"), ("bogus", "1")])).unwrap_err();
        assert!(err.hint().unwrap().contains("'file' takes: path, format"), "{err:?}");
        assert_eq!(closest("state-ttl", ["state_ttl", "path"]), Some("state_ttl".into()));
        assert_eq!(closest("zzz", ["state_ttl", "path"]), None);
    }

    #[test]
    fn values_are_typed_and_required_options_present() {
        let err = spec().check(&table(&[("path", "x"), ("format", "xml")])).unwrap_err();
        assert!(err.to_string().contains("expected one of csv, json, got 'xml'"), "{err}");
        let err = spec().check(&table(&[("format", "csv")])).unwrap_err();
        assert_eq!(err.to_string(), "table 't': connector 'file' needs a 'path' option");
        assert!(spec().check(&table(&[("path", "x"), ("fields.a.min", "-3"), ("state_ttl", "1 h")])).is_ok());
        let props = OptionSpec::new("properties.<key*>", OptionType::Text, "passed on");
        assert!(props.matches("properties.bootstrap.servers") && props.matches("properties.acks"));
        assert!(!props.matches("properties") && !props.matches("properties.") && !props.matches("propertie.acks"));
        assert!(!props.matches("properties.a..b"));
        let err = spec().check(&table(&[("path", "x"), ("fields.a.min", "low")])).unwrap_err();
        assert_eq!(err.option(), Some("fields.a.min"));
        assert!(spec().check(&table(&[("path", "x"), ("fields..min", "1")])).is_err());
    }
}
