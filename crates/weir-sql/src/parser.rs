//! Parsing weir's SQL dialect: DataFusion's sqlparser with the streaming extensions Flink users
//! know — `CREATE TABLE … (…, WATERMARK FOR ts AS ts - INTERVAL …) WITH (…)`, `CREATE SOURCE`,
//! and the window TVF syntax `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`.
//!
//! Everything that is not DDL is handed to sqlparser unchanged, so positions in errors refer
//! to the text the user typed.

use datafusion_sql::sqlparser::ast::{Expr as SqlExpr, Ident, Query, Statement};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::create_table::{is_word, parse_create_table, parse_option_key, parse_option_value};
pub use crate::create_table::{object_name, CreateTable};
use crate::error::{Result, SqlError};

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `CREATE TABLE` or `CREATE SOURCE`.
    CreateTable(Box<CreateTable>),
    /// A query whose results go to the client.
    Query(Box<Query>, Location),
    /// `INSERT INTO table SELECT …`.
    Insert {
        /// Target table.
        table: String,
        /// The query producing the rows.
        query: Box<Query>,
        /// Where the statement starts.
        location: Location,
    },
    /// `EXPLAIN <statement>`.
    Explain(Box<Stmt>),
    /// `EXPLAIN ANALYZE <statement>`: run it, then show the plan with each operator's metrics.
    ExplainAnalyze(Box<Stmt>),
    /// `SET key = value`.
    Set {
        /// Setting name, lower-cased.
        key: String,
        /// Value as text.
        value: String,
    },
    /// `SHOW CONNECTORS`: the connectors tables can use, with their options.
    ShowConnectors(Location),
    /// `CREATE [OR REPLACE] [TEMPORARY] VIEW [IF NOT EXISTS] name [(columns)] AS query`.
    CreateView {
        /// The view's name (unquoted: lower-cased).
        name: String,
        /// The names given to its columns, if any.
        columns: Vec<Ident>,
        /// Its query.
        query: Box<Query>,
        /// `OR REPLACE`.
        or_replace: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Where the statement starts.
        location: Location,
    },
}

/// Whether `text` is complete input for a shell: its last token, outside strings and
/// comments, is `;`. An unterminated string, quoted name or comment is incomplete; any other
/// text the tokenizer refuses is complete once a line ends in `;` (so the planner reports it).
pub fn ends_statement(text: &str) -> bool {
    match Tokenizer::new(&GenericDialect {}, text).tokenize() {
        Ok(tokens) => tokens.iter().rev().find(|t| !matches!(t, Token::Whitespace(_))) == Some(&Token::SemiColon),
        Err(e) => {
            let m = e.message.to_ascii_lowercase();
            let unterminated = m.contains("unterminated") || m.contains("eof") || m.contains("end of file");
            !unterminated && text.trim_end().ends_with(';')
        }
    }
}

/// How deep an expression may nest (`a + b + … ` counts one level per operator). Deeper ones
/// are refused with the position where they start: planning them recurses once per level,
/// and twenty thousand levels would overflow the stack.
pub const MAX_EXPR_DEPTH: usize = 200;

/// How deep sqlparser may recurse: past [`MAX_EXPR_DEPTH`] (a nested CASE takes several of
/// its levels per level of nesting), so that the depth check, not a misleading syntax error
/// from sqlparser backtracking, refuses a statement too deep.
const PARSER_RECURSION: usize = 8 * MAX_EXPR_DEPTH;

/// The stack a script is parsed on: a refused statement may still be an expression chain
/// thousands of levels deep, and taking it apart (dropping it) recurses once per level.
const PARSE_STACK: usize = 256 << 20;

/// Parse a script of `;`-separated statements (with `--` and `/* */` comments).
///
/// Expressions nested deeper than `MAX_EXPR_DEPTH` and a statement cut short are errors
/// with their position (the end of the text for a statement cut short).
pub fn parse_script(sql: &str) -> Result<Vec<Stmt>> {
    // parsed on a thread of its own with a large stack (reserved, touched only as needed);
    // where no thread can be started, on this one
    let text = sql.to_string();
    let parsed = std::thread::Builder::new()
        .name("weir-parse".into())
        .stack_size(PARSE_STACK)
        .spawn(move || parse_bounded(&text))
        .map(|t| t.join());
    match parsed {
        Ok(Ok(result)) => result,
        _ => parse_bounded(sql),
    }
}

/// [`parse_unbounded`], refusing expressions nested too deeply, and pointing at the end of the
/// text when a statement is cut short.
fn parse_bounded(sql: &str) -> Result<Vec<Stmt>> {
    check_nesting(sql)?;
    let stmts = parse_unbounded(sql).map_err(|e| at_end_if_cut_short(e, sql))?;
    for stmt in &stmts {
        check_depth(stmt)?;
    }
    Ok(stmts)
}

/// Refuse parentheses or CASEs nested deeper than [`MAX_EXPR_DEPTH`] before parsing: sqlparser
/// recurses several levels for each, and its own limit, hit inside a CASE it retries another
/// way, would end in a misleading syntax error far from the cause.
fn check_nesting(sql: &str) -> Result<()> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(()); // the parser reports it
    };
    let mut depth = 0usize;
    for t in &tokens {
        match &t.token {
            Token::LParen => depth += 1,
            Token::Word(w) if w.keyword == Keyword::CASE && w.quote_style.is_none() => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if w.keyword == Keyword::END && w.quote_style.is_none() => depth = depth.saturating_sub(1),
            Token::SemiColon => depth = 0,
            _ => continue,
        }
        if depth > MAX_EXPR_DEPTH {
            return Err(SqlError::plan(format!(
                "expression nested too deeply: more than {MAX_EXPR_DEPTH} levels of parentheses or CASE"
            ))
            .at(t.span.start)
            .with_hint("split it up: compute parts in a subquery or a view"));
        }
    }
    Ok(())
}

/// "found: EOF" comes without a position: point just past the last word of the text.
fn at_end_if_cut_short(mut e: SqlError, sql: &str) -> SqlError {
    if e.position.is_none() && e.message.contains("found: EOF") {
        let text = sql.trim_end();
        let line = text.lines().count().max(1) as u64;
        let column = text.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
        e.position = Some((line, column));
        e.message = e.message.replace("found: EOF", "found the end of the input");
        if e.hint.is_none() {
            e.hint = Some("the statement is incomplete: finish it (a missing ')', END or expression?)".into());
        }
    }
    e
}

/// Refuse an expression nested deeper than [`MAX_EXPR_DEPTH`], at the position where it starts.
fn check_depth(stmt: &Stmt) -> Result<()> {
    use std::ops::ControlFlow;

    use datafusion_sql::sqlparser::ast::{Visit, Visitor};

    struct Depth {
        depth: usize,
        statement: Location,
    }
    impl Visitor for Depth {
        type Break = Location;
        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<Location> {
            self.depth += 1;
            // stops before going further down, so this walk never recurses past the limit
            if self.depth > MAX_EXPR_DEPTH {
                return ControlFlow::Break(first_location(expr).unwrap_or(self.statement));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _expr: &SqlExpr) -> ControlFlow<Location> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    let (query, location) = match stmt {
        Stmt::Query(q, location) => (q, *location),
        Stmt::Insert { query, location, .. } | Stmt::CreateView { query, location, .. } => (query, *location),
        Stmt::Explain(inner) | Stmt::ExplainAnalyze(inner) => return check_depth(inner),
        Stmt::CreateTable(_) | Stmt::Set { .. } | Stmt::ShowConnectors(_) => return Ok(()),
    };
    match query.visit(&mut Depth { depth: 0, statement: location }) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(at) => Err(SqlError::plan(format!(
            "expression nested too deeply: more than {MAX_EXPR_DEPTH} levels of operators, functions or CASE"
        ))
        .at(at)
        .with_hint("split it up: compute parts in a subquery or a view, or use IN (…) for long OR chains")),
    }
}

/// Where an expression starts, found without recursion (a chain built by repeated infix or
/// postfix operators starts at its leftmost operand); `None` when it is not found that way.
fn first_location(mut expr: &SqlExpr) -> Option<Location> {
    loop {
        expr = match expr {
            SqlExpr::BinaryOp { left, .. } | SqlExpr::IsDistinctFrom(left, _) | SqlExpr::IsNotDistinctFrom(left, _) => {
                left
            }
            SqlExpr::IsNull(e)
            | SqlExpr::IsNotNull(e)
            | SqlExpr::IsTrue(e)
            | SqlExpr::IsNotTrue(e)
            | SqlExpr::IsFalse(e)
            | SqlExpr::IsNotFalse(e)
            | SqlExpr::IsUnknown(e)
            | SqlExpr::IsNotUnknown(e)
            | SqlExpr::Cast { expr: e, .. }
            | SqlExpr::Like { expr: e, .. }
            | SqlExpr::ILike { expr: e, .. }
            | SqlExpr::InList { expr: e, .. }
            | SqlExpr::Between { expr: e, .. }
            | SqlExpr::Collate { expr: e, .. }
            | SqlExpr::AtTimeZone { timestamp: e, .. }
            | SqlExpr::CompoundFieldAccess { root: e, .. } => e,
            SqlExpr::Identifier(i) => return Some(i.span.start),
            SqlExpr::CompoundIdentifier(parts) => return parts.first().map(|i| i.span.start),
            SqlExpr::Value(v) => return Some(v.span.start),
            _ => return None,
        }
        .as_ref();
    }
}

/// Parse a script of `;`-separated statements, however deep its expressions.
fn parse_unbounded(sql: &str) -> Result<Vec<Stmt>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location()?;
    let tokens = session_partition_args(unwrap_tvf_table_args(drop_system_time(tokens)));
    let mut parser = Parser::new(&dialect).with_recursion_limit(PARSER_RECURSION).with_tokens_with_locations(tokens);
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        out.push(parse_one(&mut parser)?);
        let next = parser.peek_token();
        if next.token != Token::SemiColon && next.token != Token::EOF {
            let err = SqlError::syntax(format!("syntax error: expected ';' or end of input, found '{}'", next.token))
                .at(next.span.start);
            // a keyword where a name was meant (`FROM (…) top`: TOP is T-SQL's)
            return Err(match &next.token {
                Token::Word(w) if w.keyword != Keyword::NoKeyword && w.quote_style.is_none() => err.with_hint(format!(
                    "'{0}' is a keyword: to use it as a name, write AS {0} or quote it (\"{0}\")",
                    w.value
                )),
                _ => err,
            });
        }
    }
    Ok(out)
}

/// The name a table reference stands for: an unquoted name in lower case.
pub(crate) fn normalized(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn parse_one(parser: &mut Parser) -> Result<Stmt> {
    let start = parser.peek_token();
    let location = start.span.start;
    if parser.parse_keyword(Keyword::EXPLAIN) {
        // EXPLAIN [ANALYZE] is planned by us, not sqlparser, so it can wrap any statement.
        if parser.parse_keyword(Keyword::ANALYZE) {
            return Ok(Stmt::ExplainAnalyze(Box::new(parse_one(parser)?)));
        }
        return Ok(Stmt::Explain(Box::new(parse_one(parser)?)));
    }
    // CREATE [OR REPLACE] TABLE|SOURCE is ours; any other CREATE goes to sqlparser
    let kw = |n: usize, k: Keyword| matches!(&parser.peek_nth_token_ref(n).token, Token::Word(w) if w.keyword == k);
    if kw(0, Keyword::CREATE) {
        let or_replace = kw(1, Keyword::OR) && kw(2, Keyword::REPLACE);
        let at = if or_replace { 3 } else { 1 };
        if kw(at, Keyword::TABLE) || is_word(&parser.peek_nth_token_ref(at).token, "SOURCE") {
            for _ in 0..at {
                parser.next_token();
            }
            return parse_create_table(parser, or_replace, location).map(|c| Stmt::CreateTable(Box::new(c)));
        }
    }
    if kw(0, Keyword::SHOW) && is_word(&parser.peek_nth_token_ref(1).token, "CONNECTORS") {
        parser.next_token();
        parser.next_token();
        return Ok(Stmt::ShowConnectors(location));
    }
    if parser.parse_keyword(Keyword::SET) {
        let key = parse_setting_name(parser)?;
        if !parser.consume_token(&Token::Eq) && !parser.parse_keyword(Keyword::TO) {
            let t = parser.peek_token();
            return Err(SqlError::syntax(format!("syntax error: expected '=' after SET {key}, found '{}'", t.token))
                .at(t.span.start));
        }
        let value = parse_option_value(parser)?;
        return Ok(Stmt::Set { key, value });
    }
    let statement = parser.parse_statement()?;
    match statement {
        Statement::Query(q) => Ok(Stmt::Query(q, location)),
        Statement::Insert(insert) => {
            let table = match &insert.table {
                datafusion_sql::sqlparser::ast::TableObject::TableName(name) => object_name(name),
                other => return Err(SqlError::not_supported(format!("INSERT INTO {other}")).at(location)),
            };
            if !insert.columns.is_empty() {
                return Err(SqlError::not_supported("a column list in INSERT INTO")
                    .at(location)
                    .with_hint("select the columns in the sink's declared order instead"));
            }
            let Some(query) = insert.source else {
                return Err(SqlError::not_supported("INSERT without a query").at(location));
            };
            Ok(Stmt::Insert { table, query, location })
        }
        Statement::CreateView(view) => {
            if view.materialized {
                return Err(SqlError::not_supported("CREATE MATERIALIZED VIEW")
                    .at(location)
                    .with_hint("CREATE VIEW names a query; INSERT INTO a table keeps its results"));
            }
            let name = match view.name.0.as_slice() {
                [part] => part.as_ident().map(normalized),
                _ => None,
            };
            let Some(name) = name else {
                return Err(
                    SqlError::not_supported(format!("the view name '{}' (a name in one part)", view.name)).at(location)
                );
            };
            let columns = view.columns.iter().map(|c| c.name.clone()).collect();
            Ok(Stmt::CreateView {
                name,
                columns,
                query: view.query,
                or_replace: view.or_replace,
                if_not_exists: view.if_not_exists,
                location,
            })
        }
        other => {
            let text = other.to_string();
            let head: String = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            Err(SqlError::not_supported(format!("the statement '{head} …'")).at(location).with_hint(
                "weir runs CREATE TABLE/SOURCE, CREATE VIEW, SELECT, INSERT INTO … SELECT, EXPLAIN, SET and SHOW CONNECTORS",
            ))
        }
    }
}

fn parse_setting_name(parser: &mut Parser) -> Result<String> {
    parse_option_key(parser)
}

/// `t FOR SYSTEM_TIME AS OF expr` (Flink's lookup join): weir takes a file table without a
/// watermark as a lookup table whatever the time, so the clause (up to its expression, a
/// possibly qualified name or `PROCTIME()`) is dropped at the token level.
fn drop_system_time(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> =
        tokens.iter().enumerate().filter(|(_, t)| !matches!(t.token, Token::Whitespace(_))).map(|(i, _)| i).collect();
    let mut drop = vec![false; tokens.len()];
    let mut k = 0;
    while k + 4 < significant.len() {
        let word = |j: usize, w: &str| is_word(&tokens[significant[j]].token, w);
        if !(word(k, "FOR") && word(k + 1, "SYSTEM_TIME") && word(k + 2, "AS") && word(k + 3, "OF")) {
            k += 1;
            continue;
        }
        let mut end = k + 4;
        if matches!(tokens[significant[end]].token, Token::Word(_)) {
            end += 1;
            while end + 1 < significant.len()
                && tokens[significant[end]].token == Token::Period
                && matches!(tokens[significant[end + 1]].token, Token::Word(_))
            {
                end += 2;
            }
            if end + 1 < significant.len()
                && tokens[significant[end]].token == Token::LParen
                && tokens[significant[end + 1]].token == Token::RParen
            {
                end += 2;
            }
        }
        drop[significant[k]..=significant[end - 1]].iter_mut().for_each(|d| *d = true);
        k = end;
    }
    tokens.into_iter().zip(drop).filter(|(_, d)| !d).map(|(t, _)| t).collect()
}

/// The window TVFs take `TABLE t` as their first argument, which sqlparser does not accept as
/// a function argument. `TABLE ( TUMBLE ( TABLE t` is rewritten to `TABLE ( TUMBLE ( t` (and
/// `DATA => TABLE t` to `DATA => t`) at the token level, keeping every other token's position.
fn unwrap_tvf_table_args(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    const TVFS: [&str; 4] = ["TUMBLE", "HOP", "SESSION", "CUMULATE"];
    let significant: Vec<usize> =
        tokens.iter().enumerate().filter(|(_, t)| !matches!(t.token, Token::Whitespace(_))).map(|(i, _)| i).collect();
    let mut drop = Vec::new();
    for w in significant.windows(5) {
        let [a, b, c, d, e] = [w[0], w[1], w[2], w[3], w[4]];
        let kw = |i: usize, k: Keyword| matches!(&tokens[i].token, Token::Word(x) if x.keyword == k);
        if kw(a, Keyword::TABLE)
            && tokens[b].token == Token::LParen
            && TVFS.iter().any(|f| is_word(&tokens[c].token, f))
            && tokens[d].token == Token::LParen
            && kw(e, Keyword::TABLE)
        {
            drop.push(e);
        }
    }
    for w in significant.windows(3) {
        let kw = |i: usize, k: Keyword| matches!(&tokens[i].token, Token::Word(x) if x.keyword == k);
        if is_word(&tokens[w[0]].token, "DATA") && tokens[w[1]].token == Token::RArrow && kw(w[2], Keyword::TABLE) {
            drop.push(w[2]);
        }
    }
    tokens.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, t)| t).collect()
}

/// `SESSION(TABLE t PARTITION BY k1, k2, DESCRIPTOR(ts), gap)` (Flink's syntax) is not a
/// function call sqlparser accepts; `PARTITION BY k1, k2` becomes the argument
/// `partition_by(k1, k2)`, ending before the `DESCRIPTOR` (or `TIMECOL =>`) argument.
fn session_partition_args(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant = |tokens: &[TokenWithSpan]| -> Vec<usize> {
        tokens.iter().enumerate().filter(|(_, t)| !matches!(t.token, Token::Whitespace(_))).map(|(i, _)| i).collect()
    };
    loop {
        let sig = significant(&tokens);
        let mut found = None;
        for (n, w) in sig.windows(3).enumerate() {
            let kw = |i: usize, k: Keyword| matches!(&tokens[i].token, Token::Word(x) if x.keyword == k);
            if kw(w[0], Keyword::PARTITION) && kw(w[1], Keyword::BY) && is_session_argument(&tokens, &sig, n) {
                // the comma at depth 0 before DESCRIPTOR / TIMECOL
                let mut depth = 0i32;
                let end = sig[n + 2..].windows(2).find_map(|p| {
                    match &tokens[p[0]].token {
                        Token::LParen => depth += 1,
                        Token::RParen => depth -= 1,
                        Token::Comma if depth == 0 => {
                            let next = &tokens[p[1]].token;
                            if is_word(next, "DESCRIPTOR") || is_word(next, "TIMECOL") {
                                return Some(p[0]);
                            }
                        }
                        _ => {}
                    }
                    None
                });
                if let Some(end) = end {
                    found = Some((w[0], w[1], end));
                }
                break;
            }
        }
        let Some((partition, by, comma)) = found else { return tokens };
        let span = tokens[partition].span;
        let at = |token: Token| TokenWithSpan { token, span };
        tokens.insert(comma, at(Token::RParen));
        tokens[by] = at(Token::LParen);
        tokens[partition] = at(Token::make_word("partition_by", None));
        tokens.insert(partition, at(Token::Comma));
    }
}

/// Whether the significant token `n` is inside `SESSION(` (the call's first argument).
fn is_session_argument(tokens: &[TokenWithSpan], sig: &[usize], n: usize) -> bool {
    let mut depth = 0i32;
    for i in (0..n).rev() {
        match &tokens[sig[i]].token {
            Token::RParen => depth += 1,
            Token::LParen if depth > 0 => depth -= 1,
            Token::LParen => return i > 0 && is_word(&tokens[sig[i - 1]].token, "SESSION"),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ddl_with_watermark_and_options() {
        let stmts = parse_script(
            "-- a comment\nCREATE TABLE Events (a BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)\n\
             WITH ('connector' = 'file', path = 'x.csv', format = 'csv'); /* c */ SELECT a FROM events;",
        )
        .unwrap();
        assert_eq!(stmts.len(), 2);
        let Stmt::CreateTable(ct) = &stmts[0] else { panic!("expected CREATE TABLE") };
        assert_eq!(ct.name, "events");
        assert_eq!(ct.columns.len(), 2);
        assert_eq!(ct.options.get("connector").map(String::as_str), Some("file"));
        assert_eq!(ct.options.get("path").map(String::as_str), Some("x.csv"));
        assert!(ct.watermark.is_some());
        assert!(matches!(stmts[1], Stmt::Query(..)));
    }

    #[test]
    fn proctime_is_the_one_computed_column() {
        let stmts = parse_script("CREATE TABLE t (a INT, p AS PROCTIME(), b INT) WITH (connector = 'stdin')").unwrap();
        let Stmt::CreateTable(ct) = &stmts[0] else { panic!("expected CREATE TABLE") };
        let kinds: Vec<(&str, bool)> = ct.columns.iter().map(|c| (c.name.as_str(), c.proctime)).collect();
        assert_eq!(kinds, vec![("a", false), ("p", true), ("b", false)]);
        let err = parse_script("CREATE TABLE t (a INT, b AS a + 1) WITH (connector = 'stdin')").unwrap_err();
        assert!(err.to_string().contains("computed column 'b AS a + 1'"), "{err}");
        assert!(err.hint.as_deref().is_some_and(|h| h.contains("PROCTIME()")), "{err:?}");
    }

    #[test]
    fn create_source_is_a_synonym() {
        let stmts = parse_script("CREATE SOURCE s (a INT) WITH (connector = 'file')").unwrap();
        assert!(matches!(&stmts[0], Stmt::CreateTable(ct) if ct.name == "s"));
    }

    #[test]
    fn tvf_table_argument_is_accepted() {
        let stmts = parse_script("SELECT * FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))").unwrap();
        assert!(matches!(stmts[0], Stmt::Query(..)));
    }

    #[test]
    fn session_partition_by_becomes_an_argument() {
        let stmts = parse_script(
            "SELECT * FROM TABLE(SESSION(TABLE t PARTITION BY a, b, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
             WHERE x IN (SELECT a FROM u) ",
        )
        .unwrap();
        let Stmt::Query(q, _) = &stmts[0] else { panic!("query expected") };
        assert!(q.to_string().contains("SESSION(t, partition_by(a, b), DESCRIPTOR(ts)"), "{q}");
    }

    #[test]
    fn complete_input_ends_in_a_semicolon_outside_strings_and_comments() {
        for done in
            ["SELECT 1;", "SELECT 1; -- done\n", "SELECT ';' ;  ", "SELECT 1;\nSELECT 2 /* x */ ;", "SELECT ?? ;"]
        {
            assert!(ends_statement(done), "{done}");
        }
        for open in [
            "",
            "SELECT 1",
            "SELECT 'a;",
            "SELECT 1; SELECT",
            "SELECT 1 /* ; */",
            "SELECT 1 -- ;",
            "SELECT \"a;",
            "/* ;",
        ] {
            assert!(!ends_statement(open), "{open}");
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_script("SELECT a FROM t;\nSELEC b FROM t").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
    }
}
