//! The planner's side of connectors: `CREATE TABLE` checked against what they declare, with
//! the error pointing at the option at fault, and `INSERT INTO` only into a table whose
//! connector writes.

use weir_plan::{ConnectorCatalog, ConnectorError, TableDef};

use crate::create_table::CreateTable;
use crate::error::{Result, SqlError};

/// A table `INSERT INTO` writes to: its connector, if the planner knows connectors, writes.
pub(crate) fn check_writable(connectors: Option<&dyn ConnectorCatalog>, def: &TableDef) -> Result<()> {
    let Some(connectors) = connectors else { return Ok(()) };
    match connectors.specs().into_iter().find(|s| Some(s.name) == def.connector()) {
        Some(spec) if !spec.sink => {
            let writers: Vec<&str> = connectors.specs().iter().filter(|s| s.sink).map(|s| s.name).collect::<Vec<_>>();
            Err(SqlError::plan(format!("table '{}' has connector '{}': it cannot be written to", def.name, spec.name))
                .with_hint(format!("write to a table whose connector writes: {}", writers.join(", "))))
        }
        _ => Ok(()),
    }
}

/// A connector's complaint about a `CREATE TABLE`, pointing at the option it is about: the one
/// it names, else the first option the message quotes, else the statement.
pub(crate) fn connector_error(err: ConnectorError, ct: &CreateTable) -> SqlError {
    let message = err.to_string();
    let option = err.option().map(str::to_string).or_else(|| {
        let mut keys: Vec<(usize, &String)> =
            ct.options.keys().filter_map(|k| message.find(&format!("'{k}'")).map(|i| (i, k))).collect();
        keys.sort();
        keys.first().map(|(_, k)| (*k).clone())
    });
    let at = option.and_then(|o| ct.option_locations.get(&o).copied()).unwrap_or(ct.location);
    let error = SqlError::plan(message).at(at);
    match err.hint() {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}
