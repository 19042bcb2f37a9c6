//! `SHOW CONNECTORS`, `\connectors` and `weir connectors`: the connectors and their options,
//! as rows, as a text table, and as the Markdown reference in `docs/connectors.md`, all made
//! from what each connector declares.

use std::sync::Arc;

use datafusion_common::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion_common::arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::arrow::record_batch::RecordBatch;
use weir_sql::{ConnectorSpec, OptionSpec, TABLE_OPTIONS};

/// The name under which the options every table takes are listed.
pub const EVERY_TABLE: &str = "(every table)";

/// One row per option: connector, whether it reads and writes, option, type, default, doc.
/// A connector without options gets one row with an empty option; the engine's table
/// options come last, under [`EVERY_TABLE`].
fn rows(specs: &[ConnectorSpec]) -> Vec<[String; 7]> {
    let mut out = Vec::new();
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let option = |spec_name: &str, reads: bool, writes: bool, o: &OptionSpec| {
        let required = if o.required { " (required)" } else { "" };
        [
            spec_name.to_string(),
            yes(reads),
            yes(writes),
            o.name.to_string(),
            format!("{}{required}", o.kind),
            o.default.unwrap_or("").to_string(),
            o.doc.to_string(),
        ]
    };
    for spec in specs {
        if spec.options.is_empty() {
            out.push([
                spec.name.to_string(),
                yes(spec.source),
                yes(spec.sink),
                String::new(),
                String::new(),
                String::new(),
                spec.doc.to_string(),
            ]);
        }
        for o in &spec.options {
            out.push(option(spec.name, spec.source, spec.sink, o));
        }
    }
    for o in TABLE_OPTIONS {
        out.push(option(EVERY_TABLE, true, true, o));
    }
    out
}

const HEADERS: [&str; 7] = ["connector", "reads", "writes", "option", "type", "default", "description"];

/// `SHOW CONNECTORS` as a batch of rows (`reads`/`writes` as booleans).
pub fn batch(specs: &[ConnectorSpec]) -> Result<RecordBatch, datafusion_common::arrow::error::ArrowError> {
    let rows = rows(specs);
    let text = |i: usize| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef;
    let flag = |i: usize| Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r[i] == "yes")))) as ArrayRef;
    let fields: Vec<Field> = HEADERS
        .iter()
        .enumerate()
        .map(|(i, h)| Field::new(*h, if i == 1 || i == 2 { DataType::Boolean } else { DataType::Utf8 }, false))
        .collect();
    let columns = vec![text(0), flag(1), flag(2), text(3), text(4), text(5), text(6)];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// The connectors and their options, as text for a terminal: a line per connector, then a
/// line per option (name, type, default) with its description indented below.
pub fn text(specs: &[ConnectorSpec]) -> String {
    let mut out = String::new();
    let width = specs.iter().flat_map(|s| &s.options).chain(TABLE_OPTIONS).map(|o| o.name.len()).max().unwrap_or(0);
    let options = |out: &mut String, options: &[OptionSpec]| {
        for o in options {
            let required = if o.required { ", required" } else { "" };
            let default = o.default.map(|d| format!(", default '{d}'")).unwrap_or_default();
            out.push_str(&format!("  {:width$}  {}{required}{default}\n", o.name, o.kind));
            out.push_str(&format!("  {:width$}  {}\n", "", o.doc.replace('`', "")));
        }
    };
    for spec in specs {
        let role = match (spec.source, spec.sink) {
            (true, true) => "reads and writes",
            (true, false) => "reads",
            (false, true) => "writes",
            (false, false) => "-",
        };
        out.push_str(&format!("{} ({role}): {}\n", spec.name, spec.doc));
        if spec.options.is_empty() {
            out.push_str("  no options of its own\n");
        }
        options(&mut out, &spec.options);
        for m in &spec.metadata {
            let types = m.types.join(" or ");
            let writable = if m.writable { ", written too" } else { "" };
            out.push_str(&format!("  {:width$}  {types}{writable}\n", format!("METADATA '{}'", m.key)));
            out.push_str(&format!("  {:width$}  {}\n", "", m.doc.replace('`', "")));
        }
        out.push('\n');
    }
    out.push_str("every table, whatever its connector:\n");
    options(&mut out, TABLE_OPTIONS);
    out
}

/// The reference of `docs/connectors.md`: a section per connector with a table of its options.
pub fn markdown(specs: &[ConnectorSpec]) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    let table = |out: &mut String, options: &[OptionSpec]| {
        out.push_str("| option | type | default | description |\n|---|---|---|---|\n");
        for o in options {
            let required = if o.required { " (required)" } else { "" };
            out.push_str(&format!(
                "| `{}` | {}{required} | {} | {} |\n",
                o.name,
                cell(&o.kind.to_string()),
                o.default.map(|d| format!("`{}`", cell(d))).unwrap_or_default(),
                cell(o.doc)
            ));
        }
    };
    for spec in specs {
        let role = match (spec.source, spec.sink) {
            (true, true) => "read and written",
            (true, false) => "read",
            (false, true) => "written",
            (false, false) => "neither read nor written",
        };
        out.push_str(&format!("### `{}`\n\n{} (tables are {role}).\n\n", spec.name, capitalise(spec.doc)));
        if spec.options.is_empty() {
            out.push_str("No options of its own.\n\n");
        } else {
            table(&mut out, &spec.options);
            out.push('\n');
        }
        if !spec.metadata.is_empty() {
            out.push_str("Metadata columns (`name TYPE METADATA FROM 'key' [VIRTUAL]`):\n\n");
            out.push_str("| key | type | written | description |\n|---|---|---|---|\n");
            for m in &spec.metadata {
                let written = if m.writable { "yes" } else { "no (declare it `VIRTUAL`)" };
                out.push_str(&format!("| `{}` | {} | {written} | {} |\n", m.key, m.types.join(" or "), cell(m.doc)));
            }
            out.push('\n');
        }
    }
    out.push_str("### Every table\n\nOptions the engine reads from a table whatever its connector.\n\n");
    table(&mut out, TABLE_OPTIONS);
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
