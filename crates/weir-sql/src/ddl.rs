//! `CREATE TABLE` / `CREATE SOURCE`: columns, the processing-time column, the watermark
//! clause and the options, checked (by the connectors when the planner has them) and
//! registered in the catalog. `CREATE VIEW`: its query planned, then kept (see view.rs).

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::DFSchema;
use datafusion_expr::Expr;
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, Ident, Query};
use datafusion_sql::sqlparser::tokenizer::Location;

use crate::catalog::{schema_of, TableDef, Traits, WatermarkDef};
use crate::create_table::CreateTable;
use crate::error::{Result, SqlError};
use crate::options::check_table_options;
use crate::planner::{arrow_type, parser_options, Planned, Planner};
use crate::provider::Provider;
use crate::window_fn::fixed_interval_nanos;

impl Planner {
    /// Declare a view: its query (views it reads expanded) must plan as a query of its own.
    pub(crate) fn create_view(
        &mut self,
        name: String,
        columns: Vec<Ident>,
        mut query: Box<Query>,
        or_replace: bool,
        if_not_exists: bool,
        location: Location,
    ) -> Result<Planned> {
        if self.catalog.get(&name).is_some() {
            return Err(SqlError::plan(format!("a table is called '{name}'"))
                .at(location)
                .with_hint("give the view another name"));
        }
        if if_not_exists && self.views.contains(&name) {
            return Ok(Planned::CreatedView(name));
        }
        self.views.expand(&mut query);
        let view = crate::view::View::new((*query).clone(), columns);
        if query.to_string().len() > crate::view::MAX_VIEW_SQL {
            return Err(SqlError::plan(format!(
                "view '{name}': its query, with the views it reads written out, is over {} characters of SQL",
                crate::view::MAX_VIEW_SQL
            ))
            .at(location)
            .with_hint("read the views it repeats once, in a WITH clause, or write the query out"));
        }
        // planned as it will be read: its rows under its name and column names
        let read = view.as_select(&name).map(Box::new).unwrap_or(query);
        self.plan_query(read, weir_plan::SinkNode::Client, location)?;
        self.views.define(name.clone(), view, or_replace).map_err(|e| e.at(location))?;
        Ok(Planned::CreatedView(name))
    }

    pub(crate) fn create_table(&mut self, ct: CreateTable) -> Result<Planned> {
        if self.views.contains(&ct.name) {
            return Err(SqlError::plan(format!("a view is called '{}'", ct.name))
                .at(ct.location)
                .with_hint("give the table another name"));
        }
        let mut columns = Vec::with_capacity(ct.columns.len());
        let mut proctime: Option<String> = None;
        for c in &ct.columns {
            if columns.iter().any(|(n, _, _): &(String, DataType, bool)| n == &c.name) {
                return Err(SqlError::plan(format!("column '{}' is declared twice", c.name)).at(c.location));
            }
            if c.proctime {
                if let Some(first) = &proctime {
                    return Err(SqlError::plan(format!(
                        "table '{}' has two PROCTIME() columns, '{first}' and '{}'",
                        ct.name, c.name
                    ))
                    .at(c.location)
                    .with_hint("declare one processing-time column"));
                }
                proctime = Some(c.name.clone());
            }
            columns.push((c.name.clone(), arrow_type(&c.data_type).map_err(|e| e.at(c.location))?, c.nullable));
        }
        let watermark = match &ct.watermark {
            None => None,
            Some((ident, expr)) => {
                let column = if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() };
                let at = ident.span.start;
                if proctime.as_ref() == Some(&column) {
                    return Err(SqlError::plan(format!(
                        "WATERMARK FOR {column}: '{column}' is a processing-time column, it needs no watermark"
                    ))
                    .at(at)
                    .with_hint(format!(
                        "windows over {column} close on the wall clock; a WATERMARK FOR clause names an event-time column read from the input"
                    )));
                }
                match columns.iter().find(|(n, _, _)| n == &column) {
                    None => {
                        return Err(SqlError::plan(format!("WATERMARK FOR {column}: no column named '{column}'")).at(at))
                    }
                    Some((_, DataType::Timestamp(_, _), _)) => {}
                    Some((_, t, _)) => {
                        return Err(SqlError::plan(format!(
                            "WATERMARK FOR {column}: the column must be a TIMESTAMP, it is {}",
                            crate::catalog::sql_type_name(t)
                        ))
                        .at(at))
                    }
                }
                let delay_nanos = self.watermark_delay(&column, expr).map_err(|e| e.at(at))?;
                Some(WatermarkDef { column, delay_nanos })
            }
        };
        if !ct.options.contains_key("connector") {
            return Err(SqlError::plan(format!("table '{}' has no connector", ct.name))
                .at(ct.location)
                .with_hint("add WITH (connector = 'file', path = '…', format = 'csv')"));
        }
        let schema = if columns.is_empty() { None } else { Some(schema_of(columns)) };
        let metadata = ct
            .columns
            .iter()
            .filter_map(|c| {
                let (key, is_virtual) = c.metadata.clone()?;
                Some(weir_plan::MetadataColumn { column: c.name.clone(), key, is_virtual })
            })
            .collect();
        for key in &ct.primary_key {
            if !ct.columns.iter().any(|c| &c.name == key) {
                return Err(SqlError::plan(format!("PRIMARY KEY: no column named '{key}'")).at(ct.location));
            }
        }
        let (partition_by, partition_at) = &ct.partitioned_by;
        let at = partition_at.unwrap_or(ct.location);
        if ct.columns.is_empty() && !partition_by.is_empty() {
            return Err(SqlError::not_supported("PARTITIONED BY on a table declared without columns")
                .at(at)
                .with_hint("declare the columns: CREATE TABLE name (col TYPE, …) PARTITIONED BY (col) WITH (…)"));
        }
        for key in partition_by {
            if !ct.columns.iter().any(|c| &c.name == key) {
                return Err(SqlError::plan(format!("PARTITIONED BY: no column named '{key}'")).at(at));
            }
            if partition_by.iter().filter(|k| *k == key).count() > 1 {
                return Err(SqlError::plan(format!("PARTITIONED BY: column '{key}' is named twice")).at(at));
            }
        }
        if !partition_by.is_empty() && partition_by.len() == ct.columns.len() {
            return Err(SqlError::plan("PARTITIONED BY every column: the files would have none").at(at));
        }
        let mut def = TableDef {
            name: ct.name.clone(),
            schema,
            watermark,
            proctime,
            options: ct.options.clone(),
            metadata,
            primary_key: ct.primary_key.clone(),
            partition_by: partition_by.clone(),
        };
        // Flink's name for the file connector
        if def.connector().is_some_and(|c| c.eq_ignore_ascii_case("filesystem")) {
            def.options.insert("connector".into(), "file".into());
        }
        if !def.partition_by.is_empty() && def.connector() != Some("file") {
            return Err(SqlError::not_supported(format!(
                "PARTITIONED BY on a '{}' table",
                def.connector().unwrap_or_default()
            ))
            .at(at)
            .with_hint("file tables are written in col=value/ directories: 'connector' = 'file'"));
        }
        check_table_options(&def).map_err(|e| e.at(ct.location))?;
        if let Some(connectors) = &self.connectors {
            connectors.check_table(&def).map_err(|e| crate::connectors::connector_error(e, &ct))?;
        }
        if def.connector() == Some("nexmark") {
            crate::nexmark::complete_table(&mut def).map_err(|e| SqlError::from(e).at(ct.location))?;
        }
        let traits = match &self.connectors {
            Some(connectors) => {
                let upsert = connectors.upsert_source(&def);
                if upsert && def.primary_key.is_empty() {
                    return Err(SqlError::plan(format!(
                        "table '{}': connector '{}' needs a primary key",
                        def.name,
                        def.connector().unwrap_or_default()
                    ))
                    .at(ct.location)
                    .with_hint("add PRIMARY KEY (col, …) NOT ENFORCED to the columns"));
                }
                Traits { bounded: connectors.bounded(&def), changelog: connectors.changelog_source(&def), upsert }
            }
            // without connectors, the planner's own knowledge: a file that is not followed
            None => Traits {
                bounded: def.connector() == Some("file") && def.option("source.monitor-interval").is_none(),
                changelog: false,
                upsert: false,
            },
        };
        self.catalog.register(def, traits, ct.or_replace, ct.if_not_exists).map_err(|e| e.at(ct.location))?;
        Ok(Planned::CreatedTable(ct.name))
    }

    /// `ts - INTERVAL '2' SECOND` → 2 s; `ts` → 0.
    fn watermark_delay(&self, column: &str, expr: &SqlExpr) -> Result<i64> {
        let is_col = |e: &SqlExpr| matches!(e, SqlExpr::Identifier(i) if i.value.eq_ignore_ascii_case(column));
        let bad = || {
            SqlError::plan(format!("unsupported watermark expression '{expr}'")).with_hint(format!(
                "use WATERMARK FOR {column} AS {column} - INTERVAL '5' SECOND (bounded disorder) or WATERMARK FOR {column} AS {column} (ordered)"
            ))
        };
        match expr {
            SqlExpr::Nested(inner) => self.watermark_delay(column, inner),
            e if is_col(e) => Ok(0),
            SqlExpr::BinaryOp { left, op: BinaryOperator::Minus, right } if is_col(left) => {
                let provider = Provider { catalog: &self.catalog, functions: &self.functions, options: &self.options };
                let rel = SqlToRel::new_with_options(&provider, parser_options());
                let e = rel
                    .sql_to_expr((**right).clone(), &DFSchema::empty(), &mut PlannerContext::new())
                    .map_err(|_| bad())?;
                match e {
                    Expr::Literal(v, _) => match fixed_interval_nanos(&v) {
                        Ok(n) if n >= 0 => Ok(n),
                        Ok(_) => Err(SqlError::plan(format!("the watermark delay in '{expr}' must not be negative"))),
                        Err(e) => Err(bad().with_hint(SqlError::from(e).message)),
                    },
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}
