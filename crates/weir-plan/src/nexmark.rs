//! The Nexmark tables: `person`, `auction` and `bid`, generated in process by the `nexmark`
//! connector (the benchmark's event generator). The planner knows their columns, so
//!
//! - every session starts with the three tables declared, reading an unbounded generator
//!   with the default options;
//! - `SET nexmark.<option> = …` gives an option to every `nexmark` table of the queries
//!   planned after it that does not set the option itself (e.g. `SET nexmark.events =
//!   1000000` bounds the built-in tables);
//! - `CREATE TABLE name WITH (connector = 'nexmark', 'table' = 'bid', …)` declares another
//!   one, its columns filled in (or checked, if declared) and its watermark
//!   `date_time - INTERVAL '4' SECOND` unless a `WATERMARK FOR` clause says otherwise.
//!
//! A user table with the name of a built-in one replaces it.
//!
//! The option values are checked here, when they are given; the connector reads them with
//! [`NexmarkOptions::parse`].

use std::collections::BTreeMap;

use datafusion_common::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion_common::arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use crate::error::PlanError;
use crate::table::{schema_of, sql_type_name, TableDef, WatermarkDef};

type Result<T, E = PlanError> = std::result::Result<T, E>;

/// The generated tables.
pub const TABLES: [&str; 3] = ["person", "auction", "bid"];

/// Options of the `nexmark` connector (besides `connector`).
pub const OPTIONS: &[&str] =
    &["table", "events", "rate", "seed", "max_emit_speed", "splits", "out_of_order_group", "base_time"];

/// The watermark delay of the generated tables unless declared: 4 s, as Flink's harness.
pub const WATERMARK_DELAY_NANOS: i64 = 4_000_000_000;

/// 2015-07-15T00:00:00Z, the generator's base time when it emits as fast as it can (so the
/// event times, and the windows, are the same on every run).
pub const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000;

/// Checked options of one generator.
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkOptions {
    /// Which events the table holds.
    pub table: &'static str,
    /// Events of all three kinds generated in all; `None` = unbounded.
    pub events: Option<u64>,
    /// Events per second of event time (the density of event time, across splits).
    pub rate: u64,
    /// Seed of the field values (ids, kinds and times do not depend on it).
    pub seed: u64,
    /// Emit as fast as possible (`true`, the default) or at `rate` events per wall-clock second.
    pub max_emit_speed: bool,
    /// Generators running side by side on the same timeline with disjoint ids.
    pub splits: u32,
    /// Events are shuffled within groups of this many (1 = in order).
    pub out_of_order_group: u64,
    /// Event time of event 0, in milliseconds since the epoch; `None` = the wall clock when
    /// the table is opened (the default when pacing).
    pub base_time_ms: Option<i64>,
}

fn ts(unit: TimeUnit) -> DataType {
    DataType::Timestamp(unit, None)
}

/// The columns of a generated table.
pub fn schema(table: &str) -> Option<SchemaRef> {
    let (i, s, t) = (DataType::Int64, DataType::Utf8, ts(TimeUnit::Millisecond));
    let cols: Vec<(&str, DataType)> = match table {
        "person" => vec![
            ("id", i),
            ("name", s.clone()),
            ("email_address", s.clone()),
            ("credit_card", s.clone()),
            ("city", s.clone()),
            ("state", s.clone()),
            ("date_time", t),
            ("extra", s),
        ],
        "auction" => vec![
            ("id", i.clone()),
            ("item_name", s.clone()),
            ("description", s.clone()),
            ("initial_bid", i.clone()),
            ("reserve", i.clone()),
            ("date_time", t.clone()),
            ("expires", t),
            ("seller", i.clone()),
            ("category", i),
            ("extra", s),
        ],
        "bid" => vec![
            ("auction", i.clone()),
            ("bidder", i.clone()),
            ("price", i),
            ("channel", s.clone()),
            ("url", s.clone()),
            ("date_time", t),
            ("extra", s),
        ],
        _ => return None,
    };
    Some(schema_of(cols.into_iter().map(|(n, t)| (n.to_string(), t, false)).collect()))
}

/// The three tables every session starts with.
pub fn builtin_tables() -> Vec<TableDef> {
    TABLES
        .iter()
        .map(|t| TableDef {
            name: t.to_string(),
            schema: schema(t),
            watermark: Some(WatermarkDef { column: "date_time".into(), delay_nanos: WATERMARK_DELAY_NANOS }),
            proctime: None,
            options: BTreeMap::from([("connector".to_string(), "nexmark".to_string())]),
            metadata: Vec::new(),
            primary_key: Vec::new(),
            partition_by: Vec::new(),
        })
        .collect()
}

/// An option key as stored: lower case, `-` and `.` read as `_` (`max-emit-speed`,
/// `out-of-order.group`), so Flink's spellings work too.
pub fn option_name(key: &str) -> String {
    key.trim().to_lowercase().replace(['-', '.'], "_")
}

/// Which events a `nexmark` table holds: its `table` option, else its name.
pub fn table_kind(def: &TableDef) -> std::result::Result<&'static str, String> {
    let given = def.option("table").map(|t| t.trim().to_lowercase()).unwrap_or_else(|| def.name.to_lowercase());
    TABLES.iter().copied().find(|t| *t == given).ok_or_else(|| match def.option("table") {
        Some(t) => format!("table '{}': option 'table' must be person, auction or bid, got '{t}'", def.name),
        None => format!(
            "table '{}' has connector 'nexmark' but is not named person, auction or bid: say which with 'table' = 'bid'",
            def.name
        ),
    })
}

/// Fill in (or check) the columns of a `CREATE TABLE … WITH (connector = 'nexmark')`, and give
/// it the default watermark if it declares none.
pub fn complete_table(def: &mut TableDef) -> Result<()> {
    let kind = table_kind(def).map_err(PlanError::new)?;
    NexmarkOptions::parse(def).map_err(PlanError::new)?;
    let Some(full) = schema(kind) else { return Ok(()) };
    let proctime = def.proctime.clone();
    let is_proctime = |name: &str| proctime.as_deref() == Some(name);
    let only_proctime = def.schema.as_ref().is_none_or(|s| s.fields().iter().all(|f| is_proctime(f.name())));
    if only_proctime {
        // the generator's columns, then the processing-time column if one is declared
        let mut fields: Vec<_> = full.fields().iter().map(|f| f.as_ref().clone()).collect();
        if let Some(s) = &def.schema {
            fields.extend(s.fields().iter().map(|f| f.as_ref().clone()));
        }
        def.schema = Some(std::sync::Arc::new(datafusion_common::arrow::datatypes::Schema::new(fields)));
    }
    match &def.schema {
        _ if only_proctime => {}
        None => {}
        Some(declared) => {
            for f in declared.fields().iter().filter(|f| !is_proctime(f.name())) {
                match full.field_with_name(f.name()) {
                    Err(_) => {
                        let names: Vec<_> = full.fields().iter().map(|f| f.name().as_str()).collect();
                        return Err(PlanError::new(format!(
                            "table '{}': the nexmark table '{kind}' has no column '{}'",
                            def.name,
                            f.name()
                        ))
                        .with_hint(format!("its columns: {}", names.join(", "))));
                    }
                    Ok(g) if g.data_type() != f.data_type() => {
                        return Err(PlanError::new(format!(
                            "table '{}': column '{}' of the nexmark table '{kind}' is {}, not {}",
                            def.name,
                            f.name(),
                            sql_type_name(g.data_type()),
                            sql_type_name(f.data_type())
                        ))
                        .with_hint("leave the columns out to have them filled in"));
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    let has_date_time = def.schema.as_ref().is_some_and(|s| s.field_with_name("date_time").is_ok());
    if def.watermark.is_none() && has_date_time {
        def.watermark = Some(WatermarkDef { column: "date_time".into(), delay_nanos: WATERMARK_DELAY_NANOS });
    }
    Ok(())
}

/// `def` with the session's `nexmark.<option>` settings (`options`, by option name) added,
/// where it does not set the option itself (only for a `nexmark` table).
pub fn with_session_defaults(def: &TableDef, options: &BTreeMap<String, String>) -> TableDef {
    let mut def = def.clone();
    if def.connector() == Some("nexmark") {
        for (option, value) in options {
            if !def.options.keys().any(|k| option_name(k) == *option) {
                def.options.insert(option.clone(), value.clone());
            }
        }
    }
    def
}

/// Check a session setting `nexmark.<option>`; returns the option's stored name.
pub fn check_setting(option: &str, value: &str) -> Result<String> {
    let key = option_name(option);
    if key == "table" || !OPTIONS.contains(&key.as_str()) {
        let known: Vec<_> = OPTIONS.iter().filter(|o| **o != "table").map(|o| format!("nexmark.{o}")).collect();
        return Err(PlanError::new(format!("unknown setting 'nexmark.{option}'"))
            .with_hint(format!("the generator's settings: {}", known.join(", "))));
    }
    let probe = TableDef {
        name: "bid".into(),
        schema: None,
        watermark: None,
        proctime: None,
        options: BTreeMap::from([(key.clone(), value.trim().to_string())]),
        metadata: Vec::new(),
        primary_key: Vec::new(),
        partition_by: Vec::new(),
    };
    NexmarkOptions::parse(&probe)
        .map_err(|e| PlanError::new(format!("SET nexmark.{key}: {}", e.trim_start_matches("table 'bid': "))))?;
    Ok(key)
}

fn integer(name: &str, key: &str, v: &str, min: u64) -> std::result::Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ if min == 0 => Err(format!("table '{name}': option '{key}' must be a whole number, got '{v}'")),
        _ => Err(format!("table '{name}': option '{key}' must be a whole number of at least {min}, got '{v}'")),
    }
}

impl NexmarkOptions {
    /// Read and check the options of a `nexmark` table.
    pub fn parse(def: &TableDef) -> std::result::Result<Self, String> {
        let name = &def.name;
        let mut opts: BTreeMap<String, &str> = BTreeMap::new();
        for (key, value) in &def.options {
            if key == "connector" || crate::TABLE_OPTIONS.iter().any(|o| o.name == key) {
                continue;
            }
            let k = option_name(key);
            if !OPTIONS.contains(&k.as_str()) {
                return Err(format!(
                    "table '{name}': unknown option '{key}' for connector 'nexmark' (supported: {})",
                    OPTIONS.join(", ")
                ));
            }
            opts.insert(k, value.as_str());
        }
        let table = table_kind(def)?;
        let events = match opts.get("events") {
            Some(v) => Some(integer(name, "events", v, 0)?).filter(|n| *n > 0),
            None => None,
        };
        let rate = opts.get("rate").map(|v| integer(name, "rate", v, 1)).transpose()?.unwrap_or(10_000);
        let seed = match opts.get("seed").map(|v| v.trim()) {
            Some(v) => match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => v
                    .parse::<i64>()
                    .map_err(|_| format!("table '{name}': option 'seed' must be an integer, got '{v}'"))?
                    as u64,
            },
            None => 0,
        };
        let max_emit_speed = match opts.get("max_emit_speed").map(|v| v.trim().to_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => return Err(format!("table '{name}': option 'max_emit_speed' must be true or false, got '{v}'")),
        };
        let splits = opts.get("splits").map(|v| integer(name, "splits", v, 1)).transpose()?.unwrap_or(1);
        if splits > 64 {
            return Err(format!("table '{name}': option 'splits' must be at most 64, got {splits}"));
        }
        let out_of_order_group =
            opts.get("out_of_order_group").map(|v| integer(name, "out_of_order_group", v, 1)).transpose()?.unwrap_or(1);
        // the shuffle multiplies by 953 (a prime): a multiple of it would not be a permutation
        if out_of_order_group % 953 == 0 {
            return Err(format!(
                "table '{name}': option 'out_of_order_group' must not be a multiple of 953, got {out_of_order_group}"
            ));
        }
        let base_time_ms = match opts.get("base_time").map(|v| v.trim()) {
            Some(v) if v.eq_ignore_ascii_case("now") => None,
            Some(v) => Some(string_to_timestamp_nanos(v).map(|n| n.div_euclid(1_000_000)).map_err(|_| {
                format!("table '{name}': option 'base_time' must be a timestamp such as '2015-07-15 00:00:00' or 'now', got '{v}'")
            })?),
            None if max_emit_speed => Some(DEFAULT_BASE_TIME_MS),
            None => None,
        };
        Ok(Self { table, events, rate, seed, max_emit_speed, splits: splits as u32, out_of_order_group, base_time_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, options: &[(&str, &str)]) -> TableDef {
        let mut t = builtin_tables().into_iter().find(|t| t.name == "bid").unwrap();
        t.name = name.into();
        t.options.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        t
    }

    #[test]
    fn defaults_and_spellings() {
        let o = NexmarkOptions::parse(&def("bid", &[])).unwrap();
        assert_eq!((o.table, o.events, o.rate, o.seed, o.splits), ("bid", None, 10_000, 0, 1));
        assert_eq!(o.base_time_ms, Some(DEFAULT_BASE_TIME_MS));
        let o = NexmarkOptions::parse(&def(
            "x",
            &[("table", "Auction"), ("events", "1000"), ("max-emit-speed", "false"), ("out-of-order.group", "50")],
        ))
        .unwrap();
        assert_eq!((o.table, o.events, o.max_emit_speed, o.out_of_order_group), ("auction", Some(1000), false, 50));
        assert_eq!(o.base_time_ms, None, "pacing starts at the wall clock");
        assert_eq!(NexmarkOptions::parse(&def("bid", &[("events", "0")])).unwrap().events, None);
    }

    #[test]
    fn bad_options_say_why() {
        let err = |opts: &[(&str, &str)]| NexmarkOptions::parse(&def("x", opts)).unwrap_err();
        assert!(err(&[]).contains("'table' = 'bid'"));
        assert!(err(&[("table", "bids")]).contains("person, auction or bid"));
        assert!(err(&[("table", "bid"), ("rate", "0")]).contains("'rate' must be a whole number of at least 1"));
        assert!(err(&[("table", "bid"), ("events", "-3")]).contains("'events'"));
        assert!(err(&[("table", "bid"), ("speed", "1")]).contains("unknown option 'speed'"));
        assert!(err(&[("table", "bid"), ("base_time", "yesterday")]).contains("'base_time' must be a timestamp"));
        assert!(err(&[("table", "bid"), ("out_of_order_group", "1906")]).contains("multiple of 953"));
        assert!(check_setting("rate", "x").unwrap_err().message.contains("nexmark.rate"));
        assert!(check_setting("table", "bid").is_err());
        assert_eq!(check_setting("max-emit-speed", "false").unwrap(), "max_emit_speed");
    }

    #[test]
    fn declared_columns_are_checked() {
        let mut t = def("b", &[("table", "bid")]);
        t.schema = Some(schema_of(vec![("price".into(), DataType::Int64, false)]));
        t.watermark = None;
        complete_table(&mut t).unwrap();
        assert!(t.watermark.is_none(), "no date_time column, no default watermark");
        t.schema = Some(schema_of(vec![("price".into(), DataType::Float64, false)]));
        assert!(complete_table(&mut t).unwrap_err().message.contains("is BIGINT, not DOUBLE"));
        t.schema = Some(schema_of(vec![("cost".into(), DataType::Int64, false)]));
        assert!(complete_table(&mut t).unwrap_err().message.contains("no column 'cost'"));
        t.schema = None;
        complete_table(&mut t).unwrap();
        assert_eq!(t.schema.unwrap().fields().len(), 7);
        assert_eq!(t.watermark.unwrap().delay_nanos, WATERMARK_DELAY_NANOS);
        // a processing-time column alone: the generator's columns come first
        let mut t = def("b", &[("table", "bid")]);
        t.schema = Some(schema_of(vec![("p".into(), DataType::Timestamp(TimeUnit::Millisecond, None), false)]));
        t.proctime = Some("p".into());
        complete_table(&mut t).unwrap();
        let names: Vec<_> = t.schema.unwrap().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names.first().map(String::as_str), Some("auction"));
        assert_eq!(names.last().map(String::as_str), Some("p"));
    }
}
