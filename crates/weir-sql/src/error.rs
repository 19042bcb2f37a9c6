//! Planning errors: one type that always says what went wrong, where, and (when we can) how to
//! fix it.

use std::fmt;

use datafusion_common::{DataFusionError, Diagnostic};
use datafusion_sql::sqlparser::parser::ParserError;
use datafusion_sql::sqlparser::tokenizer::{Location, Span, TokenizerError};

/// What kind of mistake an error reports. The CLI maps kinds to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorKind {
    /// The text is not valid SQL.
    Syntax,
    /// Valid SQL that cannot be planned: unknown table or column, type mismatch, a windowed
    /// aggregate without a watermark, …
    Plan,
    /// A construct weir does not support yet.
    NotSupported,
}

/// An error from parsing or planning SQL, with the position in the SQL text when known.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SqlError {
    /// What kind of error this is.
    pub kind: ErrorKind,
    /// The message, naming the offending identifier where there is one.
    pub message: String,
    /// 1-based line and column of the offending token, when known.
    pub position: Option<(u64, u64)>,
    /// A suggestion for fixing the error.
    pub hint: Option<String>,
}

/// Result type of the planner.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl SqlError {
    /// A planning error.
    pub fn plan(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Plan, message: message.into(), position: None, hint: None }
    }

    /// A "not supported yet" error.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::NotSupported,
            message: format!("not supported yet: {}", message.into()),
            position: None,
            hint: None,
        }
    }

    /// A syntax error.
    pub fn syntax(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Syntax, message: message.into(), position: None, hint: None }
    }

    /// Attach a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attach a position unless one is already known.
    pub fn at(mut self, loc: Location) -> Self {
        if self.position.is_none() && loc.line > 0 {
            self.position = Some((loc.line, loc.column));
        }
        self
    }

    /// Attach the start of a span unless a position is already known.
    pub fn at_span(self, span: Span) -> Self {
        self.at(span.start)
    }

    /// Convert a DataFusion error, keeping the position of its diagnostic if it has one.
    pub fn from_datafusion(err: DataFusionError) -> Self {
        let diagnostic: Option<Diagnostic> = err.diagnostic().cloned();
        let err = strip_context(err);
        let (kind, message) = match &err {
            DataFusionError::NotImplemented(m) => (ErrorKind::NotSupported, format!("not supported yet: {m}")),
            DataFusionError::SQL(p, _) => (ErrorKind::Syntax, p.to_string()),
            DataFusionError::SchemaError(e, _) => (ErrorKind::Plan, e.to_string()),
            DataFusionError::Plan(m) => (ErrorKind::Plan, m.clone()),
            other => (ErrorKind::Plan, other.to_string()),
        };
        let mut out = Self { kind, message: tidy(&message), position: None, hint: None };
        if let Some((message, hint)) = no_matching_function(&out.message) {
            (out.kind, out.message, out.hint) = (ErrorKind::Plan, message, Some(hint));
        }
        if let Some(d) = diagnostic {
            if let Some(span) = d.span {
                if span.start.line > 0 {
                    out.position = Some((span.start.line, span.start.column));
                }
            }
            if let Some(help) = d.helps.first() {
                out.hint = Some(help.message.clone());
            }
        }
        if out.position.is_none() {
            out.position = position_in_text(&out.message);
        }
        out
    }
}

fn strip_context(err: DataFusionError) -> DataFusionError {
    match err {
        DataFusionError::Context(_, inner) => strip_context(*inner),
        DataFusionError::Diagnostic(_, inner) => strip_context(*inner),
        other => other,
    }
}

/// Drop DataFusion's internal prefixes ("Error during planning: ") that only add noise.
fn tidy(message: &str) -> String {
    let mut m = message.trim();
    for prefix in ["Error during planning: ", "Schema error: ", "This feature is not implemented: "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
    }
    m.to_string()
}

/// DataFusion's "Internal error: Function 'sum' failed to match any signature, errors: …" is a
/// user's type error: say which call has no match, with what it takes instead.
fn no_matching_function(message: &str) -> Option<(String, String)> {
    const MARK: &str = "No function matches the given name and argument types '";
    let rest = &message[message.find(MARK)? + MARK.len()..];
    let call = &rest[..rest.find('\'')?];
    let name = call.split('(').next().unwrap_or(call);
    let candidates: Vec<&str> = rest
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| l.starts_with(name) && l.len() > name.len() && l[name.len()..].starts_with('('))
        .collect();
    let mut sql_call = call.to_string();
    for (arrow, sql) in [
        ("LargeUtf8", "VARCHAR"),
        ("Utf8View", "VARCHAR"),
        ("Utf8", "VARCHAR"),
        ("Int64", "BIGINT"),
        ("Int32", "INT"),
        ("Float64", "DOUBLE"),
        ("Boolean", "BOOLEAN"),
    ] {
        sql_call = sql_call.replace(arrow, sql);
    }
    let mut text = format!("no function {sql_call}: the argument types do not fit {name}");
    if !candidates.is_empty() {
        text.push_str(&format!(" (it takes {})", candidates.join(", ")));
    }
    Some((text, format!("cast the argument to a type {name} takes, e.g. {name}(CAST(x AS DOUBLE))")))
}

/// sqlparser reports positions inside its message ("… at Line: 3, Column: 7").
fn position_in_text(message: &str) -> Option<(u64, u64)> {
    let i = message.rfind("Line: ")?;
    let rest = &message[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

impl From<DataFusionError> for SqlError {
    fn from(err: DataFusionError) -> Self {
        Self::from_datafusion(err)
    }
}

impl From<ParserError> for SqlError {
    fn from(err: ParserError) -> Self {
        let message = match err {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
            ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
        };
        let position = position_in_text(&message);
        let message = match message.rfind(" at Line: ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        Self { kind: ErrorKind::Syntax, message: format!("syntax error: {message}"), position, hint: None }
    }
}

impl From<TokenizerError> for SqlError {
    fn from(err: TokenizerError) -> Self {
        let mut e = Self::syntax(format!("syntax error: {}", err.message));
        e.position = Some((err.location.line, err.location.column));
        e
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some((line, col)) = self.position {
            write!(f, " (at line {line}, column {col})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SqlError {}

impl From<weir_plan::PlanError> for SqlError {
    fn from(err: weir_plan::PlanError) -> Self {
        Self { kind: ErrorKind::Plan, message: err.message, position: None, hint: err.hint }
    }
}
