//! The bridge between weir's catalog and DataFusion's SQL planner (`ContextProvider`): tables,
//! functions (DataFusion's built-ins plus weir's window functions) and relation planners.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::config::ConfigOptions;
use datafusion_common::{plan_err, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};

use crate::catalog::Catalog;

/// Every function the SQL planner can resolve.
#[derive(Debug, Clone)]
pub struct FunctionRegistry {
    scalars: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    windows: HashMap<String, Arc<WindowUDF>>,
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    relation_planners: Vec<Arc<dyn RelationPlanner>>,
}

impl Default for FunctionRegistry {
    fn default() -> Self {
        let mut scalars = HashMap::new();
        let all = datafusion_functions::all_default_functions()
            .into_iter()
            .chain(datafusion_functions_nested::all_default_nested_functions())
            .chain(crate::window_fn::window_functions());
        for f in all.map(crate::bounded_fn::bounded) {
            for alias in f.aliases() {
                scalars.insert(alias.clone(), Arc::clone(&f));
            }
            scalars.insert(f.name().to_string(), f);
        }
        // Flink's DATE_FORMAT (Java patterns), in place of DataFusion's alias of to_char
        let f = crate::date_format::date_format();
        scalars.insert(f.name().to_string(), f);
        let mut aggregates = HashMap::new();
        for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
            for alias in f.aliases() {
                aggregates.insert(alias.clone(), Arc::clone(&f));
            }
            aggregates.insert(f.name().to_string(), f);
        }
        let mut windows = HashMap::new();
        for f in datafusion_functions_window::all_default_window_functions() {
            for alias in f.aliases() {
                windows.insert(alias.clone(), Arc::clone(&f));
            }
            windows.insert(f.name().to_string(), f);
        }
        let expr_planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
            Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
            // arrays and maps: `[1, 2]`, `m['key']`, `a[1]`
            Arc::new(datafusion_functions_nested::planner::NestedFunctionPlanner),
            Arc::new(datafusion_functions_nested::planner::FieldAccessPlanner),
        ];
        Self { scalars, aggregates, windows, expr_planners, relation_planners: crate::tvf::relation_planners() }
    }
}

impl FunctionRegistry {
    /// Whether a scalar function is called `name` (lower case).
    pub fn has_scalar(&self, name: &str) -> bool {
        self.scalars.contains_key(name)
    }

    /// Add (or replace) a scalar function, under its name and aliases.
    pub fn register_udf(&mut self, f: Arc<ScalarUDF>) {
        for alias in f.aliases() {
            self.scalars.insert(alias.clone(), Arc::clone(&f));
        }
        self.scalars.insert(f.name().to_string(), f);
    }

    /// Add (or replace) an aggregate function, under its name and aliases.
    pub fn register_udaf(&mut self, f: Arc<AggregateUDF>) {
        for alias in f.aliases() {
            self.aggregates.insert(alias.clone(), Arc::clone(&f));
        }
        self.aggregates.insert(f.name().to_string(), f);
    }
}

/// `ContextProvider` over a catalog snapshot.
pub struct Provider<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) functions: &'a FunctionRegistry,
    pub(crate) options: &'a ConfigOptions,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        let Some(table) = self.catalog.get(name.table()) else {
            let (builtin, known): (Vec<String>, Vec<String>) =
                self.catalog.names().into_iter().partition(|n| self.catalog.is_builtin(n));
            let mut hint = if known.is_empty() {
                "no tables are declared yet: declare one with CREATE TABLE".to_string()
            } else {
                format!("declared tables: {}", known.join(", "))
            };
            if !builtin.is_empty() {
                hint.push_str(&format!("; built in: {}", builtin.join(", ")));
            }
            return plan_err!("table '{}' not found ({hint})", name.table());
        };
        let Some(schema) = &table.schema else {
            return plan_err!("table '{}' was declared without columns and cannot be read", table.name);
        };
        Ok(Arc::new(LogicalTableSource::new(Arc::clone(schema))))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.functions.expr_planners
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        &self.functions.relation_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.functions.scalars.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.functions.aggregates.get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.functions.windows.get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.functions.scalars.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.functions.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}
