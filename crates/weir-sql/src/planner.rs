//! Statements to streaming plans.
//!
//! DataFusion does the SQL work (name resolution, type checking and coercion, expression
//! simplification); this module checks that the resulting logical plan can run incrementally
//! and turns it into a [`StreamPlan`]: it finds the window of each aggregate, checks that the
//! window's time column carries a watermark, and refuses what cannot run yet with a clear error.

use std::cell::Cell;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion_common::config::ConfigOptions;
use datafusion_common::DFSchemaRef;
use datafusion_expr::logical_plan::{Aggregate, Distinct};
use datafusion_expr::{Expr, LogicalPlan};
use datafusion_optimizer::analyzer::Analyzer;
use datafusion_optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
use datafusion_optimizer::optimize_projections::OptimizeProjections;
use datafusion_optimizer::replace_distinct_aggregate::ReplaceDistinctWithAggregate;
use datafusion_optimizer::simplify_expressions::SimplifyExpressions;
use datafusion_optimizer::{Optimizer, OptimizerContext, OptimizerRule};
use datafusion_sql::planner::{ParserOptions, SqlToRel};
use datafusion_sql::sqlparser::ast::{DataType as SqlType, ExactNumberInfo, Query, Statement, TimezoneInfo};
use datafusion_sql::sqlparser::tokenizer::Location;

use crate::bounds::{
    carried_time, check_session_partition, groups_by_window, refuse_unwindowed_tvf_aggregates, refuse_window_markers,
    resolve_window_bound, window_rows, MILLI,
};
use crate::catalog::{Catalog, TableDef};
use crate::error::{Result, SqlError};
use crate::options::{allowed_lateness, emit_early, state_ttl};
use crate::parser::{parse_script, Stmt};
use crate::provider::{FunctionRegistry, Provider};
use crate::rank::{plan_rank, row_number_bound};
use crate::rewrite::rewrite_group_windows;
use crate::sink::sink_projection;
use weir_plan::plan::{
    PlanInput, Rank, RankKind, SinkNode, SourceNode, StateTtl, StreamOp, StreamPlan, UpdatingAggregate,
    WindowAggregate, WindowColumn, WindowEmit, WindowSpec,
};
use weir_plan::{ConnectorCatalog, ConnectorSpec, Settings};

/// The outcome of planning one statement.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A table was declared (and is now in the catalog).
    CreatedTable(String),
    /// A view was declared.
    CreatedView(String),
    /// A query whose rows go to the client.
    Query(StreamPlan),
    /// `INSERT INTO`: a pipeline writing into a declared table.
    Insert(StreamPlan),
    /// `EXPLAIN`: the plan, not to be run.
    Explain(StreamPlan),
    /// `EXPLAIN ANALYZE`: run the plan (a query's rows are not shown, an INSERT writes), then
    /// show it with each operator's metrics.
    ExplainAnalyze(StreamPlan),
    /// `SET key = value`.
    Set {
        /// Setting name.
        key: String,
        /// Value.
        value: String,
    },
    /// `SHOW CONNECTORS`: what the planner's connectors declare, by name.
    ShowConnectors(Vec<ConnectorSpec>),
}

/// Plans SQL against a catalog that DDL statements extend.
#[derive(Debug, Clone)]
pub struct Planner {
    pub(crate) catalog: Catalog,
    /// The connectors `CREATE TABLE` is checked against; `None` checks only what the planner
    /// itself reads (a planner used on its own, without a runtime).
    pub(crate) connectors: Option<Arc<dyn ConnectorCatalog>>,
    pub(crate) functions: FunctionRegistry,
    pub(crate) options: ConfigOptions,
    pub(crate) settings: Settings,
    pub(crate) views: crate::view::Views,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    /// A planner with an empty catalog.
    pub fn new() -> Self {
        let mut options = ConfigOptions::new();
        options.sql_parser.map_string_types_to_utf8view = false;
        let mut catalog = Catalog::new();
        for t in crate::nexmark::builtin_tables() {
            catalog.register_builtin(t);
        }
        Self {
            catalog,
            connectors: None,
            functions: FunctionRegistry::default(),
            options,
            settings: Settings::default(),
            views: crate::view::Views::default(),
        }
    }

    /// The same planner, checking each `CREATE TABLE` against `connectors`: an unknown
    /// connector or option, a value of the wrong type or a missing required option is an error
    /// there, pointing at the option, rather than when a query first reads the table.
    pub fn with_connectors(mut self, connectors: Arc<dyn ConnectorCatalog>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// The same planner, with `settings` as if each had been given with `SET`.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Check tables against `connectors` from now on (see [`Planner::with_connectors`]).
    pub fn set_connectors(&mut self, connectors: Arc<dyn ConnectorCatalog>) {
        self.connectors = Some(connectors);
    }

    /// Make a scalar function callable from SQL (DataFusion's `ScalarUDF`): in projections,
    /// filters, keys and inside window aggregates, like a built-in one.
    pub fn register_udf(&mut self, f: datafusion_expr::ScalarUDF) {
        self.functions.register_udf(Arc::new(f));
    }

    /// Make an aggregate function callable from SQL (DataFusion's `AggregateUDF`), in window
    /// and updating aggregates.
    pub fn register_udaf(&mut self, f: datafusion_expr::AggregateUDF) {
        self.functions.register_udaf(Arc::new(f));
    }

    /// The connectors tables are checked against, if any.
    pub fn connectors(&self) -> Option<&Arc<dyn ConnectorCatalog>> {
        self.connectors.as_ref()
    }

    /// The tables declared so far.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Settings made with `SET`.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Apply a setting as `SET key = value` would (e.g. from the command line).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.apply_setting(key, value).map(|_| ())
    }

    /// Check and store a setting.
    fn apply_setting(&mut self, key: &str, value: &str) -> Result<(String, String)> {
        Ok(self.settings.set(key, value)?)
    }

    /// Parse and plan every statement of a script, in order. DDL takes effect immediately, so
    /// later statements see the tables declared by earlier ones. Nothing is run.
    pub fn plan_script(&mut self, sql: &str) -> Result<Vec<Planned>> {
        let statements = parse_script(sql)?;
        statements.into_iter().map(|s| self.plan_statement(s)).collect()
    }

    /// Plan one parsed statement.
    pub fn plan_statement(&mut self, stmt: Stmt) -> Result<Planned> {
        match stmt {
            Stmt::CreateTable(ct) => self.create_table(*ct),
            Stmt::Query(q, loc) => Ok(Planned::Query(self.plan_query(q, SinkNode::Client, loc)?)),
            Stmt::Insert { table, query, location } => {
                let Some(def) = self.catalog.get(&table).cloned() else {
                    return Err(SqlError::plan(format!("table '{table}' not found")).at(location).with_hint(
                        "declare the sink with CREATE TABLE … WITH (connector = 'file', path = …, format = …)",
                    ));
                };
                crate::connectors::check_writable(self.connectors.as_deref(), &def).map_err(|e| e.at(location))?;
                Ok(Planned::Insert(self.plan_query(query, SinkNode::Table(def), location)?))
            }
            Stmt::Explain(inner) => match self.plan_statement(*inner)? {
                Planned::Query(p) | Planned::Insert(p) => Ok(Planned::Explain(p)),
                _ => Err(SqlError::not_supported("EXPLAIN of a statement other than a query or INSERT")),
            },
            Stmt::ExplainAnalyze(inner) => match self.plan_statement(*inner)? {
                Planned::Query(p) | Planned::Insert(p) => Ok(Planned::ExplainAnalyze(p)),
                _ => Err(SqlError::not_supported("EXPLAIN ANALYZE of a statement other than a query or INSERT")),
            },
            Stmt::Set { key, value } => {
                let (key, value) = self.apply_setting(&key, &value)?;
                Ok(Planned::Set { key, value })
            }
            Stmt::CreateView { name, columns, query, or_replace, if_not_exists, location } => {
                self.create_view(name, columns, query, or_replace, if_not_exists, location)
            }
            Stmt::ShowConnectors(location) => {
                match &self.connectors {
                    Some(c) => Ok(Planned::ShowConnectors(c.specs())),
                    None => Err(SqlError::plan("this planner was made without connectors (Planner::with_connectors)")
                        .at(location)),
                }
            }
        }
    }

    pub(crate) fn plan_query(&self, mut query: Box<Query>, sink: SinkNode, location: Location) -> Result<StreamPlan> {
        self.views.expand(&mut query);
        rewrite_group_windows(&mut query)?;
        crate::rewrite::rewrite_mod(&mut query);
        crate::flink_fn::rewrite_flink_functions(&mut query, &|name| self.functions.has_scalar(name));
        let provider = Provider { catalog: &self.catalog, functions: &self.functions, options: &self.options };
        let rel = SqlToRel::new_with_options(&provider, parser_options());
        let plan = rel.sql_statement_to_plan(Statement::Query(query)).map_err(SqlError::from)?;
        let plan = Analyzer::new().execute_and_check(plan, &self.options, |_, _| {}).map_err(SqlError::from)?;
        refuse_unwindowed_tvf_aggregates(&plan).map_err(|e| e.at(location))?;
        crate::rewrite::refuse_exists_over_global_aggregates(&plan).map_err(|e| e.at(location))?;
        let top_rows = crate::bounds::result_table_function_rows(&plan);
        let windowed_join_inputs =
            crate::bounds::windowed_join_inputs(&plan) + crate::bounds::unaggregated_table_function_rows(&plan);
        let plan = crate::rewrite::fold_filters_into_joins(plan).map_err(SqlError::from)?;
        let distinct_on = |n: &LogicalPlan| Ok(matches!(n, LogicalPlan::Distinct(Distinct::On(_))));
        if datafusion_common::tree_node::TreeNode::exists(&plan, distinct_on).unwrap_or(false) {
            return Err(SqlError::not_supported("SELECT DISTINCT ON").at(location).with_hint(
                "keep one row per key with ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) AS rn … WHERE rn = 1",
            ));
        }
        // SELECT DISTINCT becomes a GROUP BY of its columns (an updating aggregate, as in Flink),
        // IN and EXISTS in WHERE semi and anti joins
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
            Arc::new(DecorrelatePredicateSubquery::new()),
            Arc::new(ReplaceDistinctWithAggregate::new()),
            Arc::new(SimplifyExpressions::new()),
            Arc::new(OptimizeProjections::new()),
        ];
        let plan =
            Optimizer::with_rules(rules).optimize(plan, &OptimizerContext::new(), |_, _| {}).map_err(SqlError::from)?;
        crate::rewrite::refuse_subquery_expressions(&plan).map_err(|e| e.at(location))?;
        let mut builder = PipelineBuilder::new(&self.catalog, &self.settings);
        builder.expand_window_rows = top_rows > 0;
        builder.convert(&plan).map_err(|e| e.at(location))?;
        crate::bounds::check_expanded(windowed_join_inputs, builder.input.as_ref(), &builder.ops)
            .map_err(|e| e.at(location))?;
        let Some(mut input) = builder.input else {
            return Err(SqlError::not_supported("a query without a table in FROM")
                .at(location)
                .with_hint("streaming queries read from a table declared with CREATE TABLE"));
        };
        let processing_time = builder.processing_time.get();
        if processing_time && builder.event_time.get() {
            return Err(SqlError::not_supported("windows over processing time and over event time in one query")
                .at(location)
                .with_hint(
                    "a pipeline has one watermark: the wall clock for PROCTIME() windows, or the table's WATERMARK; \
                     window over one of them",
                ));
        }
        if processing_time && matches!(input, PlanInput::Join(_)) {
            return Err(SqlError::not_supported("a processing-time window in a query with a join")
                .at(location)
                .with_hint("window over the tables' event-time columns"));
        }
        for s in input.sources_mut() {
            s.processing_time = processing_time;
        }
        let session = crate::bounds::session_rows(&plan).then_some("SESSION");
        if let Some(name) = session.or(window_rows(&plan).filter(|_| top_rows == 0)) {
            return Err(SqlError::not_supported(format!("{} rows without an aggregate", name)).at(location).with_hint(
                "a row belongs to several HOP/CUMULATE windows, and a session is known only once it closes; \
                 aggregate them: … GROUP BY window_start, window_end, …",
            ));
        }
        let mut ops = builder.ops;
        let updating = input.is_updating() || ops.iter().any(StreamOp::emits_changelog);
        if let SinkNode::Table(def) = &sink {
            let takes_changes = self.connectors.as_ref().is_some_and(|c| c.changelog_sink(def));
            if updating && !takes_changes && !def.option("changelog").is_some_and(|v| v.eq_ignore_ascii_case("rows")) {
                return Err(SqlError::plan(format!(
                    "INSERT INTO {}: the query's result is updating (a changelog of +I/-U/+U/-D rows), but table '{}' is append-only",
                    def.name, def.name
                ))
                .at(location)
                .with_hint(format!(
                    "declare the sink with 'changelog' = 'rows' to write each change as a row with an op column \
                     ({} … WITH (…, 'changelog' = 'rows')), or aggregate over a window so each result row is final",
                    def.name
                )));
            }
            let schema = ops.last().map(StreamOp::output_schema).unwrap_or(input.output_schema()).clone();
            if let Some(project) = sink_projection(def, &schema).map_err(|e| e.at(location))? {
                ops.push(project);
            }
        }
        let sources = input.sources();
        let first = sources[0];
        let late_rows = match first.table.option("late_rows") {
            None => None,
            Some(name) => Some(self.late_rows_table(&first.table, name).map_err(|e| e.at(location))?),
        };
        if let (Some(l), SinkNode::Table(t)) = (&late_rows, &sink) {
            if l.name == t.name {
                return Err(SqlError::plan(format!(
                    "INSERT INTO {}: the table also takes the late rows of '{}'",
                    t.name, first.table.name
                ))
                .at(location)
                .with_hint("send the late rows ('late_rows') to a table of their own"));
            }
        }
        let what = if matches!(input, PlanInput::Join(_)) { "a join" } else { "a UNION ALL" };
        for later in &sources[1..] {
            for option in ["late_rows", "allowed_lateness", "state_ttl"] {
                if later.table.option(option).is_some() && !matches!(input, PlanInput::Join(_)) {
                    return Err(SqlError::not_supported(format!(
                        "'{option}' on table '{}', a later input of {what}",
                        later.table.name
                    ))
                    .at(location)
                    .with_hint(format!(
                        "the first input's table options apply to the union; set it there, or with SET{}",
                        if option == "late_rows" { " (late rows of a union are not supported yet)" } else { "" }
                    )));
                }
            }
        }
        if late_rows.is_some() && sources.len() > 1 {
            return Err(SqlError::not_supported(format!("'late_rows' on table '{}' in {what}", first.table.name))
                .at(location)
                .with_hint("run the query over that table alone to collect its late rows"));
        }
        Ok(StreamPlan { input, ops, sink, late_rows })
    }
}

impl Planner {
    /// The sink named by a source's `'late_rows'` option: declared, and (if it declares columns)
    /// with the source's columns plus `reason`.
    fn late_rows_table(&self, source: &TableDef, name: &str) -> Result<TableDef> {
        let hint = format!(
            "declare it before the query, without columns: CREATE TABLE {name} WITH (connector = 'file', path = '…', format = 'csv')"
        );
        let Some(def) = self.catalog.get(name) else {
            return Err(SqlError::plan(format!(
                "table '{}': its 'late_rows' table '{name}' is not declared",
                source.name
            ))
            .with_hint(hint));
        };
        if def.name == source.name {
            return Err(
                SqlError::plan(format!("table '{}' cannot take its own late rows", source.name)).with_hint(hint)
            );
        }
        if let (Some(target), Ok(input)) = (&def.schema, source.physical_schema()) {
            let expected: Vec<&str> =
                input.fields().iter().map(|f| f.name().as_str()).chain(std::iter::once("reason")).collect();
            let got: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
            if got != expected {
                return Err(SqlError::plan(format!(
                    "late rows table '{name}' has columns ({}), but the late rows of '{}' are ({})",
                    got.join(", "),
                    source.name,
                    expected.join(", ")
                ))
                .with_hint(hint));
            }
        }
        Ok(def.clone())
    }
}

pub(crate) fn parser_options() -> ParserOptions {
    ParserOptions {
        parse_float_as_decimal: false,
        enable_ident_normalization: true,
        support_varchar_with_length: true,
        enable_options_value_normalization: false,
        collect_spans: true,
        map_string_types_to_utf8view: false,
        default_null_ordering: datafusion_sql::planner::NullOrdering::NullsMax,
    }
}

/// SQL column types weir supports, as Arrow types.
pub fn arrow_type(t: &SqlType) -> Result<DataType> {
    Ok(match t {
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::TinyInt(_) => DataType::Int8,
        SqlType::SmallInt(_) | SqlType::Int2(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) | SqlType::Int4(_) => DataType::Int32,
        SqlType::BigInt(_) | SqlType::Int8(_) | SqlType::Int64 => DataType::Int64,
        SqlType::Real | SqlType::Float4 | SqlType::Float(_) | SqlType::Float32 => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision | SqlType::Float8 | SqlType::Float64 => DataType::Float64,
        SqlType::Varchar(_)
        | SqlType::CharVarying(_)
        | SqlType::CharacterVarying(_)
        | SqlType::Char(_)
        | SqlType::Character(_)
        | SqlType::Text
        | SqlType::String(_) => DataType::Utf8,
        SqlType::Date => DataType::Date32,
        SqlType::Bytea | SqlType::Bytes(_) | SqlType::Varbinary(_) | SqlType::Binary(_) | SqlType::Blob(_) => {
            DataType::Binary
        }
        SqlType::Timestamp(precision, tz) => {
            if !matches!(tz, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) {
                return Err(SqlError::not_supported(format!("the column type {t}"))
                    .with_hint("use TIMESTAMP(3): weir reads times without a zone as UTC"));
            }
            let unit = match precision.unwrap_or(6) {
                0 => TimeUnit::Second,
                1..=3 => TimeUnit::Millisecond,
                4..=6 => TimeUnit::Microsecond,
                7..=9 => TimeUnit::Nanosecond,
                p => return Err(SqlError::plan(format!("TIMESTAMP precision must be 0 to 9, got {p}"))),
            };
            DataType::Timestamp(unit, None)
        }
        SqlType::Map(key, value) => {
            let entries =
                vec![Field::new("key", arrow_type(key)?, false), Field::new("value", arrow_type(value)?, true)];
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries.into()), false)), false)
        }
        SqlType::Decimal(ExactNumberInfo::PrecisionAndScale(_, _)) | SqlType::Numeric(_) | SqlType::Decimal(_) => {
            return Err(SqlError::not_supported(format!("the column type {t}")).with_hint("use DOUBLE or BIGINT"))
        }
        other => return Err(SqlError::not_supported(format!("the column type {other}"))),
    })
}

/// Turns a logical plan into pipeline operators, bottom up.
pub(crate) struct PipelineBuilder<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) settings: &'a Settings,
    /// The bound a filter puts on a row number computed below it, and the schema of the window
    /// node computing it.
    rank_limit: Option<(usize, DFSchemaRef)>,
    /// The input the operators read: a table, a union or a join.
    pub(crate) input: Option<PlanInput>,
    pub(crate) ops: Vec<StreamOp>,
    /// Set when a window is over the source's processing-time column: the pipeline's
    /// watermark is then the wall clock.
    pub(crate) processing_time: Cell<bool>,
    /// Set when an operator is over an event-time column (the two cannot share a pipeline).
    pub(crate) event_time: Cell<bool>,
    /// A join's input whose HOP/CUMULATE table function rows are read as rows: they are
    /// expanded, one per window, unless an aggregate reads them.
    pub(crate) expand_window_rows: bool,
}

impl<'a> PipelineBuilder<'a> {
    /// An empty builder.
    pub(crate) fn new(catalog: &'a Catalog, settings: &'a Settings) -> Self {
        Self {
            catalog,
            settings,
            rank_limit: None,
            expand_window_rows: false,
            input: None,
            ops: Vec::new(),
            processing_time: Cell::new(false),
            event_time: Cell::new(false),
        }
    }
}

impl PipelineBuilder<'_> {
    /// A table of upserts: read whole (the key is needed whatever the query selects), made a
    /// changelog by key, then the columns the query reads.
    fn upsert_scan(&mut self, scan: &datafusion_expr::TableScan, table: &TableDef) -> Result<()> {
        let schema = table.require_schema().map_err(SqlError::from)?;
        let full = Arc::new(
            datafusion_common::DFSchema::try_from_qualified_schema(scan.table_name.clone(), &schema)
                .map_err(SqlError::from)?,
        );
        let key = table
            .primary_key
            .iter()
            .map(|k| schema.index_of(k).map_err(|_| SqlError::plan(format!("PRIMARY KEY: no column named '{k}'"))))
            .collect::<Result<Vec<_>>>()?;
        self.input = Some(PlanInput::Source(SourceNode {
            table: crate::options::with_session_defaults(table, self.settings),
            projection: None,
            output_schema: Arc::clone(&full),
            processing_time: false,
            changelog: true,
        }));
        self.ops.push(StreamOp::UpsertNormalize(weir_plan::UpsertNormalize {
            key,
            state_ttl: self.state_ttl(),
            schema: Arc::clone(&full),
        }));
        if let Some(projection) = &scan.projection {
            let exprs = projection
                .iter()
                .map(|i| {
                    Expr::Column(datafusion_common::Column::new(Some(scan.table_name.clone()), schema.field(*i).name()))
                })
                .collect();
            self.ops.push(StreamOp::Project {
                exprs,
                input_schema: full,
                output_schema: Arc::clone(&scan.projected_schema),
            });
        }
        Ok(())
    }

    pub(crate) fn convert(&mut self, plan: &LogicalPlan) -> Result<()> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if self.input.is_some() {
                    return Err(SqlError::not_supported("queries over several tables this way"));
                }
                let Some(table) = self.catalog.get(scan.table_name.table()) else {
                    return Err(SqlError::plan(format!("table '{}' not found", scan.table_name)));
                };
                if scan.fetch.is_some() {
                    return Err(SqlError::not_supported("LIMIT on a streaming query"));
                }
                if !scan.filters.is_empty() {
                    return Err(SqlError::not_supported("filters pushed into a source"));
                }
                if self.catalog.is_upsert(&table.name) {
                    return self.upsert_scan(scan, table);
                }
                self.input = Some(PlanInput::Source(SourceNode {
                    table: crate::options::with_session_defaults(table, self.settings),
                    projection: scan.projection.clone(),
                    output_schema: Arc::clone(&scan.projected_schema),
                    processing_time: false,
                    changelog: self.catalog.is_changelog(&table.name),
                }));
                Ok(())
            }
            LogicalPlan::Projection(p) => {
                if self.expand_window_rows && self.expand_window_rows(p)? {
                    return Ok(());
                }
                self.convert(&p.input)?;
                let mut exprs = Vec::with_capacity(p.expr.len());
                for (e, (q, f)) in p.expr.iter().zip(p.schema.iter()) {
                    if let Some(time) = carried_time(e) {
                        exprs.push(time.alias_qualified(q.cloned(), f.name()));
                    } else {
                        if !matches!(e.clone().unalias(), Expr::Column(_)) {
                            refuse_window_markers(e, &p.input)?;
                        }
                        exprs.push(e.clone());
                    }
                }
                self.ops.push(StreamOp::Project {
                    exprs,
                    input_schema: Arc::clone(p.input.schema()),
                    output_schema: Arc::clone(&p.schema),
                });
                Ok(())
            }
            LogicalPlan::Filter(f) => {
                // WHERE over an inner join: part of the join's condition
                if let LogicalPlan::Join(j) = f.input.as_ref() {
                    if j.join_type == datafusion_expr::JoinType::Inner {
                        return self.convert_join(j, Some(&f.predicate));
                    }
                }
                if let Some(bound) = row_number_bound(&f.predicate, &f.input) {
                    self.rank_limit = Some(bound);
                }
                self.convert(&f.input)?;
                refuse_window_markers(&f.predicate, &f.input)?;
                self.ops.push(StreamOp::Filter {
                    predicate: f.predicate.clone(),
                    input_schema: Arc::clone(f.input.schema()),
                });
                Ok(())
            }
            LogicalPlan::SubqueryAlias(a) => self.convert(&a.input),
            LogicalPlan::Aggregate(agg) => {
                // (an aggregate reads a window table function's markers)
                self.expand_window_rows = false;
                self.convert(&agg.input)?;
                let retracting = self.is_updating();
                if retracting && groups_by_window(agg) {
                    return Err(SqlError::not_supported("a window over an updating result").with_hint(
                        "windows need append-only input: aggregate the windows first, or drop the inner GROUP BY",
                    ));
                }
                let op = match self.window_aggregate(agg)? {
                    Some(op) => op,
                    None if !retracting => match self.cascaded_window_aggregate(agg)? {
                        Some(op) => op,
                        None => self.updating_aggregate(agg, retracting)?,
                    },
                    None => self.updating_aggregate(agg, retracting)?,
                };
                self.ops.push(op);
                Ok(())
            }
            LogicalPlan::Sort(_) => Err(SqlError::not_supported("ORDER BY on a streaming query")
                .with_hint("results of a windowed aggregate come out in window order already")),
            LogicalPlan::Limit(_) => Err(SqlError::not_supported("LIMIT on a streaming query")),
            LogicalPlan::Join(j) => self.convert_join(j, None),
            LogicalPlan::Union(u) => self.convert_union(u),
            LogicalPlan::Distinct(_) => Err(SqlError::not_supported("SELECT DISTINCT on a stream")),
            LogicalPlan::Window(w) => {
                // the bound of a filter above applies to the window that computes its column only
                let limit = match self.rank_limit.take() {
                    Some((limit, schema)) if Arc::ptr_eq(&schema, &w.schema) => Some(limit),
                    other => {
                        self.rank_limit = other;
                        None
                    }
                };
                if self.expand_window_rows {
                    crate::bounds::refuse_window_rows_under(w)?;
                }
                self.expand_window_rows = false;
                self.convert(&w.input)?;
                if let Some(op) = self.over_aggregate(w)? {
                    self.ops.push(op);
                    return Ok(());
                }
                let updating = self.is_updating();
                let check_time = |time: &Expr, plan: &LogicalPlan| self.check_time_column(time, plan);
                let op = plan_rank(w, limit, updating, self.state_ttl(), &check_time)?;
                if let StreamOp::Rank(Rank { kind: RankKind::WindowTopN { judge_lateness: true, .. }, .. }) = &op {
                    if self.window_emit().allowed_lateness_nanos > 0 {
                        return Err(SqlError::not_supported(
                            "allowed lateness for a Top-N over window table function rows",
                        )
                        .with_hint("aggregate the windows first, or unset 'allowed_lateness' for this query"));
                    }
                }
                self.ops.push(op);
                Ok(())
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                Err(SqlError::not_supported("a query without a table in FROM")
                    .with_hint("streaming queries read from a table declared with CREATE TABLE"))
            }
            other => Err(SqlError::not_supported(format!("the plan node {}", other.display()))),
        }
    }

    /// When window aggregates over the source emit (its `'allowed_lateness'`, the session's
    /// `window.allowed_lateness` and `window.emit_early`).
    fn window_emit(&self) -> WindowEmit {
        WindowEmit {
            allowed_lateness_nanos: self.first_source().map(|s| allowed_lateness(&s.table, self.settings)).unwrap_or(0),
            early: emit_early(self.settings),
        }
    }

    /// Whether the rows at this point are a changelog (from an operator, or from the input:
    /// a join over a changelog, or a regular left join).
    pub(crate) fn is_updating(&self) -> bool {
        self.input.as_ref().is_some_and(PlanInput::is_updating) || self.ops.iter().any(StreamOp::emits_changelog)
    }

    /// The first table read below this point.
    pub(crate) fn first_source(&self) -> Option<&SourceNode> {
        self.input.as_ref().map(|i| i.sources()[0])
    }

    /// The state TTL of keyed operators over the source.
    fn state_ttl(&self) -> Option<StateTtl> {
        let sources = self.input.as_ref().map(PlanInput::sources).unwrap_or_default();
        let first = sources.first()?;
        let event_time = sources.iter().all(|s| s.table.watermark.is_some());
        state_ttl(&first.table, self.settings).map(|nanos| StateTtl { nanos, event_time })
    }

    fn updating_aggregate(&self, agg: &Aggregate, retracting: bool) -> Result<StreamOp> {
        for e in agg.group_expr.iter().chain(&agg.aggr_expr) {
            refuse_window_markers(e, &agg.input)?;
        }
        let state_ttl = self.state_ttl();
        Ok(StreamOp::UpdatingAggregate(UpdatingAggregate {
            group_exprs: agg.group_expr.clone(),
            aggr_exprs: agg.aggr_expr.clone(),
            retracting,
            state_ttl,
            input_schema: Arc::clone(agg.input.schema()),
            output_schema: Arc::clone(&agg.schema),
        }))
    }

    /// The aggregate's window, or `None` if it groups by no window bound.
    fn window_aggregate(&self, agg: &Aggregate) -> Result<Option<StreamOp>> {
        if agg.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(SqlError::not_supported("GROUPING SETS, ROLLUP and CUBE"));
        }
        let mut window: Option<(WindowSpec, String)> = None;
        let mut window_columns = Vec::new();
        let mut time: Option<(Expr, i64)> = None;
        for (i, g) in agg.group_expr.iter().enumerate() {
            let Some(bound) = resolve_window_bound(g, &agg.input)? else {
                refuse_window_markers(g, &agg.input)?;
                continue;
            };
            let time_column = self.check_time_column(&bound.time, bound.plan)?;
            let spec = bound.spec;
            match &window {
                Some((w, t)) if *w != spec || *t != time_column => {
                    return Err(SqlError::not_supported(format!(
                        "grouping by two different windows ({w} on {t} and {spec} on {time_column})"
                    )))
                }
                _ => window = Some((spec, time_column)),
            }
            window_columns.push((i, bound.column));
            if time.is_none() {
                time = Some(if bound.direct {
                    (bound.time.clone(), 0)
                } else {
                    // a column computed below: a tumbling window's bound, or (for the other
                    // kinds) the event time the pipeline carries in the window column
                    let offset = match (spec, bound.column) {
                        (WindowSpec::Tumble { .. }, WindowColumn::Start) => 0,
                        (WindowSpec::Tumble { .. }, WindowColumn::End) => -1,
                        (WindowSpec::Tumble { .. }, WindowColumn::Time) => MILLI - 1,
                        _ => 0,
                    };
                    (g.clone(), offset)
                });
            }
        }
        for e in &agg.aggr_expr {
            refuse_window_markers(e, &agg.input)?;
        }
        if let Some((WindowSpec::Session { .. }, _)) = &window {
            check_session_partition(agg, &window_columns)?;
        }
        if let Some((WindowSpec::Cumulate { .. }, _)) = &window {
            if window_columns.iter().all(|(_, c)| *c == WindowColumn::Start) {
                return Err(SqlError::plan(
                    "CUMULATE windows share their start: group by window_end (or window_time) as well as window_start",
                )
                .with_hint("GROUP BY window_start, window_end, …"));
            }
        }
        let (Some((window, time_column)), Some((time, time_offset_nanos))) = (window, time) else {
            return Ok(None);
        };
        if !window_columns.iter().any(|(_, c)| *c != WindowColumn::Time) && matches!(window, WindowSpec::Session { .. })
        {
            return Err(SqlError::plan("a session window needs SESSION_START or SESSION_END in GROUP BY"));
        }
        let emit = self.window_emit();
        Ok(Some(StreamOp::WindowAggregate(WindowAggregate {
            emit,
            window,
            time_column,
            group_exprs: agg.group_expr.clone(),
            window_columns,
            time,
            time_offset_nanos,
            aggr_exprs: agg.aggr_expr.clone(),
            input_schema: Arc::clone(agg.input.schema()),
            output_schema: Arc::clone(&agg.schema),
            two_phase: self.settings.two_phase(),
        })))
    }
}
