//! Flink's functions that DataFusion lacks, rewritten into DataFusion's before planning (only
//! where no function of that name is registered: an embedding program's own `hour` wins).
//!
//! ```text
//!   IF(c, a, b)                ─►  CASE WHEN c THEN a ELSE b END      (only the branch taken runs)
//!   LOCATE(sub, s)             ─►  strpos(s, sub)
//!   SPLIT_INDEX(s, sep, i)     ─►  string_to_array(s, sep)[i + 1]       (NULL out of range, from 0)
//!   TIMESTAMPDIFF(SECOND, a, b)─►  whole seconds (MINUTE, HOUR, DAY: whole units) from a to b, an INT
//!   HOUR(ts), MINUTE, SECOND,  ─►  CAST(EXTRACT(HOUR FROM ts) AS BIGINT), …
//!   YEAR, QUARTER, MONTH, WEEK, DAYOFYEAR, DAYOFMONTH
//!   DAYOFWEEK(ts)              ─►  CAST(EXTRACT(DOW FROM ts) AS BIGINT) + 1   (1 = Sunday, as in Flink)
//!   FLOOR(ts TO unit)          ─►  date_trunc('unit', ts)
//!   CEIL(ts TO unit)           ─►  ts itself when it is on a unit boundary, else the next one
//! ```
//! (units: `YEAR`, `QUARTER`, `MONTH`, `DAY`, `HOUR`, `MINUTE`, `SECOND`; Flink's `WEEK`
//! boundary is left alone, as its first day differs.)

use std::ops::ControlFlow;

use datafusion_sql::sqlparser::ast::{
    visit_expressions_mut, CeilFloorKind, DateTimeField, Expr as SqlExpr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Query,
};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;

/// Rewrite Flink's functions in `query`; `registered` says whether a function of a name exists.
pub fn rewrite_flink_functions(query: &mut Query, registered: &dyn Fn(&str) -> bool) {
    let _ = visit_expressions_mut(query, |e| {
        if let Some(text) = rewritten(e, registered) {
            // in parentheses: an expression around it keeps its grouping when it is rewritten
            if let Some(new) = parse_expr(&format!("({text})")) {
                *e = new;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

fn parse_expr(text: &str) -> Option<SqlExpr> {
    Parser::new(&GenericDialect {}).try_with_sql(text).ok()?.parse_expr().ok()
}

/// The SQL text `e` becomes, if it is one of Flink's functions.
fn rewritten(e: &SqlExpr, registered: &dyn Fn(&str) -> bool) -> Option<String> {
    match e {
        SqlExpr::Floor { expr, field: CeilFloorKind::DateTimeField(field) } => {
            let unit = unit_of(field)?;
            Some(format!("date_trunc('{unit}', ({expr}))"))
        }
        SqlExpr::Ceil { expr, field: CeilFloorKind::DateTimeField(field) } => {
            let unit = unit_of(field)?;
            let floor = format!("date_trunc('{unit}', ({expr}))");
            Some(format!(
                "CASE WHEN {floor} = ({expr}) THEN {floor} ELSE {floor} + INTERVAL '1' {} END",
                unit.to_uppercase()
            ))
        }
        SqlExpr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if registered(&name) {
                return None;
            }
            let FunctionArguments::List(list) = &f.args else { return None };
            let args: Vec<&SqlExpr> = list
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            match (name.as_str(), args.as_slice()) {
                ("if", [c, a, b]) => Some(format!("CASE WHEN {c} THEN {a} ELSE {b} END")),
                ("locate", [sub, s]) => Some(format!("strpos({s}, {sub})")),
                ("split_index", [s, sep, i]) => Some(format!(
                    "CASE WHEN ({i}) >= 0 AND ({sep}) IS NOT NULL THEN string_to_array({s}, {sep})[({i}) + 1] END"
                )),
                ("timestampdiff", [SqlExpr::Identifier(unit), a, b]) => {
                    let seconds = match unit.value.to_uppercase().as_str() {
                        "SECOND" => 1,
                        "MINUTE" => 60,
                        "HOUR" => 3600,
                        "DAY" => 86400,
                        _ => return None,
                    };
                    // whole milliseconds, subtracted as integers, then whole units (toward zero)
                    let ms = |t: &SqlExpr| format!("CAST(arrow_cast(({t}), 'Timestamp(Millisecond, None)') AS BIGINT)");
                    Some(format!("CAST(({} - {}) / {} AS INT)", ms(b), ms(a), seconds * 1000))
                }
                ("dayofweek", [ts]) => Some(format!("CAST(EXTRACT(DOW FROM ({ts})) AS BIGINT) + 1")),
                (part, [ts]) => {
                    let field = match part {
                        "hour" | "minute" | "second" | "year" | "quarter" | "month" | "week" => part,
                        "dayofyear" => "doy",
                        "dayofmonth" => "day",
                        _ => return None,
                    };
                    Some(format!("CAST(EXTRACT({} FROM ({ts})) AS BIGINT)", field.to_uppercase()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The `date_trunc` unit of a `FLOOR`/`CEIL … TO` field weir rewrites.
fn unit_of(field: &DateTimeField) -> Option<&'static str> {
    Some(match field {
        DateTimeField::Year => "year",
        DateTimeField::Quarter => "quarter",
        DateTimeField::Month => "month",
        DateTimeField::Day => "day",
        DateTimeField::Hour => "hour",
        DateTimeField::Minute => "minute",
        DateTimeField::Second => "second",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        rewrite_with(sql, &|_| false)
    }

    fn rewrite_with(sql: &str, registered: &dyn Fn(&str) -> bool) -> String {
        let mut q = match Parser::parse_sql(&GenericDialect {}, sql).unwrap().pop().unwrap() {
            datafusion_sql::sqlparser::ast::Statement::Query(q) => q,
            other => panic!("{other}"),
        };
        rewrite_flink_functions(&mut q, registered);
        q.to_string()
    }

    #[test]
    fn flink_functions_become_datafusion_expressions() {
        assert_eq!(
            rewrite("SELECT IF(a > 1, 'x', 'y') FROM t"),
            "SELECT (CASE WHEN a > 1 THEN 'x' ELSE 'y' END) FROM t"
        );
        assert_eq!(rewrite("SELECT LOCATE('x', s) FROM t"), "SELECT (strpos(s, 'x')) FROM t");
        assert!(rewrite("SELECT SPLIT_INDEX(s, '/', 1) FROM t").contains("string_to_array(s, '/')[(1) + 1]"));
        assert!(rewrite("SELECT TIMESTAMPDIFF(MINUTE, a, b) FROM t").contains("/ 60000 AS INT)"));
        assert_eq!(rewrite("SELECT TIMESTAMPDIFF(MONTH, a, b) FROM t"), "SELECT TIMESTAMPDIFF(MONTH, a, b) FROM t");
        assert_eq!(rewrite("SELECT HOUR(ts) FROM t"), "SELECT (CAST(EXTRACT(HOUR FROM (ts)) AS BIGINT)) FROM t");
        assert_eq!(rewrite("SELECT dayofmonth(ts) FROM t"), "SELECT (CAST(EXTRACT(DAY FROM (ts)) AS BIGINT)) FROM t");
        assert_eq!(rewrite("SELECT FLOOR(ts TO HOUR) FROM t"), "SELECT (date_trunc('hour', (ts))) FROM t");
        // a rewritten call keeps its grouping inside another: (DOW + 1) * 10, not DOW + 10
        assert!(rewrite("SELECT DAYOFWEEK(ts) * 10 FROM t").contains("AS BIGINT) + 1) * 10"));
        assert!(rewrite("SELECT SPLIT_INDEX(s, NULL, 0) FROM t").contains("(NULL) IS NOT NULL"));
        assert!(rewrite("SELECT CEIL(ts TO MINUTE) FROM t").contains("+ INTERVAL '1' MINUTE"));
        // nested: the inner call first
        assert_eq!(
            rewrite("SELECT IF(HOUR(ts) > 12, 1, 0) FROM t"),
            "SELECT (CASE WHEN (CAST(EXTRACT(HOUR FROM (ts)) AS BIGINT)) > 12 THEN 1 ELSE 0 END) FROM t"
        );
        // left alone: other arities, WEEK boundaries, numbers, a function registered by that name
        assert_eq!(rewrite("SELECT IF(a, b) FROM t"), "SELECT IF(a, b) FROM t");
        assert_eq!(rewrite("SELECT FLOOR(ts TO WEEK) FROM t"), "SELECT FLOOR(ts TO WEEK) FROM t");
        assert_eq!(rewrite("SELECT FLOOR(2.5) FROM t"), "SELECT FLOOR(2.5) FROM t");
        assert_eq!(rewrite_with("SELECT hour(ts) FROM t", &|n| n == "hour"), "SELECT hour(ts) FROM t");
    }
}
