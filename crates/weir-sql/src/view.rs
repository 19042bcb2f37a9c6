//! Views: `CREATE [OR REPLACE] [TEMPORARY] VIEW [IF NOT EXISTS] name [(columns)] AS query`, a
//! named query read as a table (Flink SQL users write them often: Flink's Nexmark declares its
//! three tables as views over one source). A view is expanded where it is read, before
//! DataFusion plans the query:
//!
//! ```text
//!   FROM v [AS a]                      ─►  FROM (<v's query>) AS v (or a) [(v's columns)]
//!   TABLE(TUMBLE(TABLE v, …))          ─►  TABLE(TUMBLE((SELECT * FROM (<v's query>) AS v), …))
//! ```
//!
//! A view's query is stored with the views it reads already expanded (so replacing a view later
//! leaves the views defined over it as they were, and no expansion can loop). A view cannot take
//! the name of a table, nor a table that of a view. A `WITH` name hides a view of the same name
//! in the query that declares it (its subqueries and `WITH` definitions included).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SetExpr, Statement, TableAlias,
    TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};

use crate::error::{Result, SqlError};
use crate::parser::normalized;

/// A view's query, its views expanded, and the names it gives its columns (if any).
#[derive(Debug, Clone)]
pub struct View {
    query: Query,
    columns: Vec<Ident>,
}

impl View {
    pub fn new(query: Query, columns: Vec<Ident>) -> Self {
        Self { query, columns }
    }

    /// `SELECT * FROM (<its query>) AS name [(columns)]`: what reading it as `name` plans.
    pub fn as_select(&self, name: &str) -> Option<Query> {
        select_all_from(name, self)
    }
}

/// The longest a view's query may be once the views it reads are expanded, in characters of
/// SQL (a view read twice by each of a chain of views doubles at each step).
pub const MAX_VIEW_SQL: usize = 1 << 20;

/// The views declared so far, by name (unquoted names in lower case, as tables).
#[derive(Debug, Clone, Default)]
pub struct Views {
    views: HashMap<String, View>,
}

impl Views {
    /// Whether a view is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.views.contains_key(name)
    }

    /// Declare view `name` (`IF NOT EXISTS` is the caller's: it need not plan the query).
    pub fn define(&mut self, name: String, view: View, or_replace: bool) -> Result<()> {
        if self.views.contains_key(&name) && !or_replace {
            return Err(SqlError::plan(format!("view '{name}' already exists"))
                .with_hint("use CREATE OR REPLACE VIEW, or another name"));
        }
        self.views.insert(name, view);
        Ok(())
    }

    /// Replace every view `query` reads by its query (each view's query was stored expanded,
    /// so what is put in is not looked into again: no expansion can loop).
    pub fn expand(&self, query: &mut Query) {
        if self.views.is_empty() {
            return;
        }
        let _ = query.visit(&mut Expand { views: self, scopes: Vec::new() });
    }
}

struct Expand<'a> {
    views: &'a Views,
    /// The `WITH` names of each query being visited, outermost first: each hides a view of its
    /// name in that query (its body, its subqueries and its `WITH` definitions).
    scopes: Vec<Vec<String>>,
}

impl Expand<'_> {
    /// The view a name in one part reads, unless a `WITH` name in scope hides it.
    fn view_of(&self, ident: &Ident) -> Option<(String, &View)> {
        let name = normalized(ident);
        if self.scopes.iter().any(|names| names.contains(&name)) {
            return None;
        }
        self.views.views.get(&name).map(|v| (name, v))
    }
}

/// `alias`, or the view's name, with the view's column names unless the alias gives its own.
fn alias_of(name: &str, view: &View, alias: Option<TableAlias>) -> TableAlias {
    // the view's name as it reads: quoted when it is not in lower case
    let ident = if name == name.to_lowercase() { Ident::new(name) } else { Ident::with_quote('"', name) };
    let mut alias = alias.unwrap_or(TableAlias { explicit: true, name: ident, columns: Vec::new(), at: None });
    if alias.columns.is_empty() {
        alias.columns = view.columns.iter().map(|c| TableAliasColumnDef::from_name(c.value.clone())).collect();
    }
    alias
}

impl VisitorMut for Expand<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let names = query.with.iter().flat_map(|w| &w.cte_tables).map(|c| normalized(&c.alias.name)).collect();
        self.scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    // after the factor's own parts are visited: what replaces it is not visited
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, alias, args: None, .. } => {
                let ident = match name.0.as_slice() {
                    [part] => part.as_ident(),
                    _ => None,
                };
                if let Some((view_name, view)) = ident.and_then(|i| self.view_of(i)) {
                    let alias = alias_of(&view_name, view, alias.take());
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: Box::new(view.query.clone()),
                        alias: Some(alias),
                        sample: None,
                    };
                }
            }
            TableFactor::TableFunction { expr: SqlExpr::Function(f), .. }
                if ["tumble", "hop", "cumulate", "session"].contains(&f.name.to_string().to_lowercase().as_str()) =>
            {
                let FunctionArguments::List(list) = &mut f.args else { return ControlFlow::Continue(()) };
                let table = list.args.iter_mut().enumerate().find_map(|(i, a)| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if i == 0 => Some(e),
                    FunctionArg::Named { name, arg: FunctionArgExpr::Expr(e), .. }
                        if name.value.eq_ignore_ascii_case("data") =>
                    {
                        Some(e)
                    }
                    _ => None,
                });
                if let Some(arg) = table {
                    if let SqlExpr::Identifier(ident) = &*arg {
                        if let Some((view_name, view)) = self.view_of(ident) {
                            if let Some(q) = select_all_from(&view_name, view) {
                                *arg = SqlExpr::Subquery(Box::new(q));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT * FROM (<view's query>) AS name`: the view's rows, their columns named by the view.
fn select_all_from(name: &str, view: &View) -> Option<Query> {
    let dialect = datafusion_sql::sqlparser::dialect::GenericDialect {};
    let mut parsed = datafusion_sql::sqlparser::parser::Parser::parse_sql(&dialect, "SELECT * FROM v").ok()?;
    let Some(Statement::Query(mut query)) = parsed.pop() else { return None };
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let from = select.from.first_mut()?;
    from.relation = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(view.query.clone()),
        alias: Some(alias_of(name, view, None)),
        sample: None,
    };
    Some(*query)
}
