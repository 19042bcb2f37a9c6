//! The shell's backslash commands (psql and DataFusion CLI habits): `\?`, `\d`, `\i`,
//! `\format`, `\timing`, `\set`, `\explain`, `\stats`, `\q`.

use std::path::Path;
use std::time::Duration;

use weir_runtime::Metrics;
use weir_sql::{sql_type_name, TableDef};

use super::{Flow, Shell};
use crate::report::human_bytes;
use crate::text::text_table;
use crate::text::watermark_text;

/// The commands with their usage, as `\?` lists them (also what Tab completes).
pub const COMMANDS: &[(&str, &str)] = &[
    ("\\?", "\\?                  list these commands"),
    ("\\d", "\\d [NAME]           list tables, or describe one (columns, watermark, options)"),
    ("\\connectors", "\\connectors         list the connectors and their options (SHOW CONNECTORS)"),
    ("\\i", "\\i FILE             run the statements of a SQL file"),
    ("\\format", "\\format [table|csv|json]  show or set how results are printed"),
    ("\\timing", "\\timing [on|off]    show how long each statement took"),
    ("\\set", "\\set [KEY VALUE]    list the settings, or set one (as SET KEY = VALUE)"),
    ("\\explain", "\\explain QUERY      print the streaming plan of a query"),
    ("\\stats", "\\stats              the counters of the last query"),
    ("\\q", "\\q                  quit (also Ctrl-D, or Ctrl-C twice at an empty prompt)"),
];

fn watermark_of(t: &TableDef) -> String {
    match &t.watermark {
        Some(w) if w.delay_nanos == 0 => w.column.clone(),
        Some(w) => format!("{} - {:?}", w.column, Duration::from_nanos(w.delay_nanos.max(0) as u64)),
        None => match &t.proctime {
            Some(p) => format!("{p} (processing time)"),
            None => String::new(),
        },
    }
}

fn describe(t: &TableDef) -> String {
    let mut out = format!("Table \"{}\"\n", t.name);
    match &t.schema {
        Some(schema) => {
            let rows: Vec<Vec<String>> = schema
                .fields()
                .iter()
                .map(|f| {
                    let ty = match &t.proctime {
                        Some(p) if p == f.name() => "AS PROCTIME()".to_string(),
                        _ => sql_type_name(f.data_type()),
                    };
                    vec![f.name().clone(), ty, if f.is_nullable() { "" } else { "not null" }.to_string()]
                })
                .collect();
            out.push_str(&text_table(&["column", "type", "nullable"], &rows));
            out.push('\n');
        }
        None => out.push_str("(columns from the query that writes to it)\n"),
    }
    let watermark = watermark_of(t);
    if !watermark.is_empty() {
        out.push_str(&format!("watermark: {watermark}\n"));
    }
    let options: Vec<String> = t.options.iter().map(|(k, v)| format!("{k} = '{v}'")).collect();
    out.push_str(&format!("options: {}\n", options.join(", ")));
    out
}

fn stats(m: &Metrics) -> String {
    let counters = [
        ("rows in", Metrics::get(&m.rows_in)),
        ("rows out", Metrics::get(&m.rows_out)),
        ("late rows dropped", Metrics::get(&m.late_rows)),
        ("rows with NULL event time", Metrics::get(&m.null_time_rows)),
        ("malformed rows skipped", Metrics::get(&m.bad_rows_skipped)),
        ("malformed rows dead-lettered", Metrics::get(&m.bad_rows_dead_lettered)),
        ("windows fired", Metrics::get(&m.windows_fired)),
        ("windows open", Metrics::get(&m.open_windows)),
        ("keys expired (state TTL)", Metrics::get(&m.expired_keys)),
    ];
    let mut rows: Vec<Vec<String>> = counters.iter().map(|(k, v)| vec![k.to_string(), v.to_string()]).collect();
    let watermark = m.watermark.load(std::sync::atomic::Ordering::Relaxed);
    rows.push(vec!["watermark".into(), watermark_text(watermark)]);
    let all = m.operators();
    let parallel = all.iter().any(|o| o.instance > 0);
    let operators: Vec<Vec<String>> = all
        .iter()
        .map(|o| {
            let n = |c: &std::sync::atomic::AtomicU64| Metrics::get(c).to_string();
            vec![
                if parallel { format!("{} [{}]", o.name, o.instance) } else { o.name.to_string() },
                n(&o.rows_in),
                n(&o.rows_out),
                format!("{:.2}", Metrics::get(&o.busy_nanos) as f64 / 1e6),
                n(&o.late_rows),
                n(&o.state_rows),
                human_bytes(Metrics::get(&o.peak_state_bytes)),
            ]
        })
        .collect();
    let headers = ["operator", "rows in", "rows out (read)", "time ms", "dropped", "state rows", "peak state"];
    format!("{}\n{}", text_table(&["metric", "value"], &rows), text_table(&headers, &operators))
}

impl Shell {
    /// Run one backslash command line.
    pub(super) fn meta(&mut self, line: &str) -> Flow {
        let line = line.trim().trim_end_matches(';').trim();
        let (command, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (line, ""),
        };
        match command {
            "\\q" | "\\quit" => return Flow::Quit,
            "\\connectors" => match self.session.planner().connectors() {
                Some(c) => outln!("{}", crate::connectors::text(&c.specs())),
                None => errln!("error: this session has no connectors"),
            },
            "\\?" | "\\h" | "\\help" => {
                outln!("{}", COMMANDS.iter().map(|(_, u)| *u).collect::<Vec<_>>().join("\n"));
                outln!("SQL statements end with ';' and may span lines. Ctrl-C stops a running query.");
            }
            "\\d" if arg.is_empty() => {
                let rows: Vec<Vec<String>> = self
                    .session
                    .planner()
                    .catalog()
                    .tables()
                    .map(|t| {
                        let columns = t.schema.as_ref().map_or("-".to_string(), |s| s.fields().len().to_string());
                        vec![t.name.clone(), t.connector().unwrap_or("").to_string(), columns, watermark_of(t)]
                    })
                    .collect();
                if rows.is_empty() {
                    outln!("No tables yet: CREATE TABLE name (…) WITH (connector = …);");
                } else {
                    outln!("{}", text_table(&["table", "connector", "columns", "watermark"], &rows));
                }
            }
            "\\d" => match self.session.planner().catalog().get(arg) {
                Some(t) => out!("{}", describe(t)),
                None => errln!("error: no table named '{arg}' (\\d lists them)"),
            },
            "\\i" | "\\include" if !arg.is_empty() => {
                let path = Path::new(arg);
                match std::fs::read_to_string(path) {
                    Ok(sql) => {
                        self.run_sql(&sql, arg, path.parent().map(Path::to_path_buf));
                    }
                    Err(e) => errln!("error: cannot read {arg}: {e}"),
                }
            }
            "\\format" if arg.is_empty() => outln!("format: {:?}", self.format),
            "\\format" => match arg.parse() {
                Ok(f) => self.format = f,
                Err(e) => errln!("error: {}", crate::report::clip_message(&e.to_string())),
            },
            "\\timing" => {
                self.timing = match arg.to_ascii_lowercase().as_str() {
                    "" => !self.timing,
                    "on" => true,
                    "off" => false,
                    other => {
                        errln!("error: \\timing takes on or off, not '{other}'");
                        return Flow::Continue;
                    }
                };
                outln!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            "\\set" if arg.is_empty() => {
                let rows: Vec<Vec<String>> =
                    self.session.settings().iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
                outln!("{}", text_table(&["setting", "value"], &rows));
            }
            "\\set" => {
                let (key, value) = match arg.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim()),
                    None => arg.split_once(char::is_whitespace).map_or((arg, ""), |(k, v)| (k, v.trim())),
                };
                let value = value.trim_matches('\'');
                match self.session.set(key, value) {
                    Ok(()) => outln!("SET"),
                    Err(e) => errln!("error: {}", crate::report::clip_message(&e.to_string())),
                }
            }
            "\\explain" if !arg.is_empty() => {
                self.run_sql(&format!("EXPLAIN {arg}"), "input", None);
            }
            "\\stats" => match &self.last_metrics {
                Some(m) => outln!("{}", stats(m)),
                None => outln!("No query has run yet."),
            },
            other => errln!("error: unknown or incomplete command '{other}' (\\? lists the commands)"),
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_columns_watermark_and_options() {
        let mut planner = weir_sql::Planner::new();
        planner
            .plan_script(
                "CREATE TABLE t (k VARCHAR NOT NULL, ts TIMESTAMP(3), p AS PROCTIME(),
                 WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'datagen')",
            )
            .unwrap();
        let text = describe(planner.catalog().get("t").unwrap());
        assert!(text.contains("| k      | VARCHAR"), "{text}");
        assert!(text.contains("not null"), "{text}");
        assert!(text.contains("AS PROCTIME()"), "{text}");
        assert!(text.contains("watermark: ts - 2s"), "{text}");
        assert!(text.contains("options: connector = 'datagen'"), "{text}");
    }
}
