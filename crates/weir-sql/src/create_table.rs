//! `CREATE TABLE` / `CREATE SOURCE` in SQL terms: columns (with `PROCTIME()` and metadata
//! columns), the `WATERMARK FOR` clause, `PRIMARY KEY … NOT ENFORCED` and the `WITH (…)`
//! options, parsed at the token level (sqlparser has no Flink DDL).

use std::collections::BTreeMap;

use datafusion_sql::sqlparser::ast::{
    DataType as SqlType, Expr as SqlExpr, FunctionArguments, Ident, ObjectName, TimezoneInfo,
};
use datafusion_sql::sqlparser::keywords::Keyword;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::{Location, Token};

use crate::error::{Result, SqlError};

/// A column of `CREATE TABLE`, still in SQL terms.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// Column name as written (unquoted names are lower-cased).
    pub name: String,
    /// Declared type.
    pub data_type: SqlType,
    /// False for `NOT NULL`.
    pub nullable: bool,
    /// `name AS PROCTIME()`: a processing-time column, filled with the wall clock as rows
    /// arrive (its type is `TIMESTAMP(3)`, not read from the input).
    pub proctime: bool,
    /// `METADATA [FROM 'key'] [VIRTUAL]`: the key (the column's name when omitted) and
    /// whether it is virtual.
    pub metadata: Option<(String, bool)>,
    /// Where the column is declared.
    pub location: Location,
}

/// `CREATE TABLE` / `CREATE SOURCE`, still in SQL terms.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Table name (lower-cased unless quoted).
    pub name: String,
    /// Declared columns; empty for a sink whose columns come from the query.
    pub columns: Vec<ColumnSpec>,
    /// `WATERMARK FOR column AS expr`.
    pub watermark: Option<(Ident, SqlExpr)>,
    /// `PRIMARY KEY (a, b) NOT ENFORCED`.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (a, b)`, and where it is written.
    pub partitioned_by: (Vec<String>, Option<Location>),
    /// `WITH (key = value, …)`, keys lower-cased.
    pub options: BTreeMap<String, String>,
    /// Where each option's key is written.
    pub option_locations: BTreeMap<String, Location>,
    /// `CREATE OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Where the statement starts.
    pub location: Location,
}

/// `PROCTIME()`, the processing-time function of Flink's DDL.
pub(crate) fn is_proctime_call(expr: &SqlExpr) -> bool {
    let SqlExpr::Function(f) = expr else { return false };
    let no_args = match &f.args {
        FunctionArguments::None => true,
        FunctionArguments::List(list) => list.args.is_empty(),
        FunctionArguments::Subquery(_) => false,
    };
    no_args && object_name(&f.name) == "proctime"
}

/// A column's type: sqlparser's, and Flink's `MAP<K, V>` (sqlparser reads ClickHouse's
/// `MAP(K, V)` only).
fn column_type(parser: &mut Parser) -> Result<SqlType> {
    if is_word(&parser.peek_token().token, "MAP") && parser.peek_nth_token(1).token == Token::Lt {
        parser.next_token();
        parser.next_token();
        let key = column_type(parser)?;
        parser.expect_token(&Token::Comma)?;
        let value = column_type(parser)?;
        parser.expect_token(&Token::Gt)?;
        return Ok(SqlType::Map(Box::new(key), Box::new(value)));
    }
    Ok(parser.parse_data_type()?)
}

pub(crate) fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

pub(crate) fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// Normalised name of a (possibly qualified) object.
pub fn object_name(name: &ObjectName) -> String {
    name.0.iter().filter_map(|p| p.as_ident()).map(ident_name).collect::<Vec<_>>().join(".")
}

pub(crate) fn parse_create_table(parser: &mut Parser, or_replace: bool, location: Location) -> Result<CreateTable> {
    // TABLE or SOURCE
    parser.next_token();
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(&parser.parse_object_name(false)?);
    let mut columns = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    if parser.consume_token(&Token::LParen) {
        loop {
            let t = parser.peek_token();
            if is_word(&t.token, "WATERMARK") {
                parser.next_token();
                parser.expect_keyword(Keyword::FOR)?;
                let column = parser.parse_identifier()?;
                parser.expect_keyword(Keyword::AS)?;
                let expr = parser.parse_expr()?;
                if watermark.is_some() {
                    return Err(SqlError::plan("a table can have only one WATERMARK clause").at(t.span.start));
                }
                watermark = Some((column, expr));
            } else if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                if !primary_key.is_empty() {
                    return Err(SqlError::plan("a table can have only one PRIMARY KEY").at(t.span.start));
                }
                parser.expect_token(&Token::LParen)?;
                loop {
                    primary_key.push(ident_name(&parser.parse_identifier()?));
                    if !parser.consume_token(&Token::Comma) {
                        break;
                    }
                }
                parser.expect_token(&Token::RParen)?;
                // weir, as Flink, does not check that keys are unique
                if parser.parse_keyword(Keyword::NOT) {
                    let at = parser.peek_token();
                    if !is_word(&at.token, "ENFORCED") {
                        return Err(SqlError::syntax(format!("syntax error: expected ENFORCED, found '{}'", at.token))
                            .at(at.span.start));
                    }
                    parser.next_token();
                }
            } else if parser.peek_keyword(Keyword::CONSTRAINT) {
                return Err(SqlError::not_supported("named table constraints (CONSTRAINT)")
                    .at(t.span.start)
                    .with_hint("declare the key as PRIMARY KEY (col, …) NOT ENFORCED"));
            } else {
                let ident = parser.parse_identifier()?;
                if parser.parse_keyword(Keyword::AS) {
                    let at = parser.peek_token().span.start;
                    let expr = parser.parse_expr()?;
                    if !is_proctime_call(&expr) {
                        return Err(SqlError::not_supported(format!(
                            "the computed column '{} AS {expr}'",
                            ident.value
                        ))
                        .at(at)
                        .with_hint(
                            "the one computed column weir has is a processing-time column: name AS PROCTIME()",
                        ));
                    }
                    columns.push(ColumnSpec {
                        name: ident_name(&ident),
                        data_type: SqlType::Timestamp(Some(3), TimezoneInfo::None),
                        nullable: false,
                        proctime: true,
                        metadata: None,
                        location: t.span.start,
                    });
                    if parser.consume_token(&Token::Comma) {
                        if parser.consume_token(&Token::RParen) {
                            break;
                        }
                        continue;
                    }
                    parser.expect_token(&Token::RParen)?;
                    break;
                }
                let data_type = column_type(parser)?;
                let mut nullable = true;
                if parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                    nullable = false;
                } else {
                    let _ = parser.parse_keyword(Keyword::NULL);
                }
                let name = ident_name(&ident);
                let metadata = if is_word(&parser.peek_token().token, "METADATA") {
                    parser.next_token();
                    let key = if parser.parse_keyword(Keyword::FROM) {
                        let at = parser.next_token();
                        match at.token {
                            Token::SingleQuotedString(key) | Token::DoubleQuotedString(key) => key,
                            other => {
                                return Err(SqlError::syntax(format!(
                                    "syntax error: expected the metadata key as a string, found '{other}'"
                                ))
                                .at(at.span.start)
                                .with_hint(format!("{name} … METADATA FROM 'partition' VIRTUAL")))
                            }
                        }
                    } else {
                        name.clone()
                    };
                    let is_virtual = is_word(&parser.peek_token().token, "VIRTUAL");
                    if is_virtual {
                        parser.next_token();
                    }
                    Some((key, is_virtual))
                } else {
                    None
                };
                columns.push(ColumnSpec {
                    name,
                    data_type,
                    nullable,
                    proctime: false,
                    metadata,
                    location: t.span.start,
                });
            }
            if parser.consume_token(&Token::Comma) {
                // a trailing comma before ')' is tolerated
                if parser.consume_token(&Token::RParen) {
                    break;
                }
                continue;
            }
            parser.expect_token(&Token::RParen)?;
            break;
        }
    }
    // Flink's `PARTITIONED BY (col, …)` (a file table's directories)
    let mut partitioned_by = (Vec::new(), None);
    if is_word(&parser.peek_token().token, "PARTITIONED") {
        partitioned_by.1 = Some(parser.next_token().span.start);
        parser.expect_keyword(Keyword::BY)?;
        parser.expect_token(&Token::LParen)?;
        loop {
            let ident = parser.parse_identifier()?;
            partitioned_by.0.push(if ident.quote_style.is_some() { ident.value } else { ident.value.to_lowercase() });
            if parser.consume_token(&Token::Comma) {
                continue;
            }
            parser.expect_token(&Token::RParen)?;
            break;
        }
    }
    let mut options = BTreeMap::new();
    let mut option_locations = BTreeMap::new();
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        if !parser.consume_token(&Token::RParen) {
            loop {
                let at = parser.peek_token().span.start;
                let key = parse_option_key(parser)?;
                parser.expect_token(&Token::Eq)?;
                let value = parse_option_value(parser)?;
                if options.insert(key.clone(), value).is_some() {
                    return Err(SqlError::plan(format!("option '{key}' is given twice")).at(at));
                }
                option_locations.insert(key, at);
                if parser.consume_token(&Token::Comma) {
                    continue;
                }
                parser.expect_token(&Token::RParen)?;
                break;
            }
        }
    }
    Ok(CreateTable {
        name,
        columns,
        watermark,
        primary_key,
        partitioned_by,
        options,
        option_locations,
        or_replace,
        if_not_exists,
        location,
    })
}

/// Option keys: `'quoted.key'`, `bare_key` or `dotted.bare.key`.
pub(crate) fn parse_option_key(parser: &mut Parser) -> Result<String> {
    let t = parser.next_token();
    let mut key = match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => return Ok(s.to_lowercase()),
        Token::Word(w) => w.value.to_lowercase(),
        other => {
            return Err(
                SqlError::syntax(format!("syntax error: expected an option name, found '{other}'")).at(t.span.start)
            )
        }
    };
    while parser.consume_token(&Token::Period) {
        let t = parser.next_token();
        match &t.token {
            Token::Word(w) => {
                key.push('.');
                key.push_str(&w.value.to_lowercase());
            }
            other => {
                return Err(SqlError::syntax(format!("syntax error: expected an option name, found '{other}'"))
                    .at(t.span.start))
            }
        }
    }
    Ok(key)
}

/// Option values: strings, numbers, `true`/`false` or bare words.
pub(crate) fn parse_option_value(parser: &mut Parser) -> Result<String> {
    let t = parser.next_token();
    match &t.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s.clone()),
        Token::Number(n, _) => Ok(n.clone()),
        Token::Word(w) => Ok(w.value.clone()),
        Token::Minus => {
            let n = parser.next_token();
            match n.token {
                Token::Number(n, _) => Ok(format!("-{n}")),
                other => {
                    Err(SqlError::syntax(format!("syntax error: expected a number, found '{other}'")).at(t.span.start))
                }
            }
        }
        other => {
            Err(SqlError::syntax(format!("syntax error: expected an option value, found '{other}'")).at(t.span.start))
        }
    }
}
