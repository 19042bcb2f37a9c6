//! The `stdin` connector: the process's standard input, as CSV with a header row or JSON lines,
//! read on a thread of its own so a quiet input never blocks the query.

use datafusion_common::arrow::datatypes::SchemaRef;
use weir_plan::{ConnectorError, ConnectorSpec, TableDef};
use weir_runtime::{Connector, ConnectorContext, Result, Source};

use crate::file::{check_options, format_options, open_source};

/// The `stdin` connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdinConnector;

impl Connector for StdinConnector {
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "stdin",
            doc: "reads CSV or JSON lines from standard input",
            source: true,
            sink: false,
            loose_keys: false,
            metadata: vec![],
            options: format_options(),
        }
    }

    fn check(&self, table: &TableDef) -> Result<(), ConnectorError> {
        check_options(table)
    }

    fn open_source(&self, table: &TableDef, schema: SchemaRef, ctx: &ConnectorContext) -> Result<Box<dyn Source>> {
        open_source(table, schema, ctx)
    }
}
