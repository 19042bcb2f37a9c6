//! The shell's line editor helper: when input is complete (a statement ends at a `;` outside
//! strings and comments; a backslash command at the end of its line) and what Tab completes
//! (SQL keywords, table and column names, backslash commands, file names after `\i`).

use std::borrow::Cow;
use std::collections::BTreeSet;

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};
use weir_sql::df::sqlparser::keywords::ALL_KEYWORDS;
use weir_sql::Catalog;

use super::meta::COMMANDS;

/// Whether the text typed so far is ready to run.
pub fn input_complete(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || t.starts_with('\\') || is_quit(t) || weir_sql::ends_statement(t)
}

/// `quit` and `exit` end the shell, as in psql.
pub fn is_quit(text: &str) -> bool {
    matches!(text.trim().trim_end_matches(';').trim().to_ascii_lowercase().as_str(), "quit" | "exit")
}

/// Completion candidates and multi-line input for rustyline.
pub struct ShellHelper {
    /// Table and column names of the session's catalog.
    names: BTreeSet<String>,
    files: FilenameCompleter,
}

impl ShellHelper {
    /// A helper knowing no tables yet.
    pub fn new() -> Self {
        Self { names: BTreeSet::new(), files: FilenameCompleter::new() }
    }

    /// Learn the tables and columns of `catalog` (after DDL).
    pub fn learn(&mut self, catalog: &Catalog) {
        self.names.clear();
        for t in catalog.tables() {
            self.names.insert(t.name.clone());
            if let Some(schema) = &t.schema {
                self.names.extend(schema.fields().iter().map(|f| f.name().clone()));
            }
        }
    }

    /// Candidates for the word `prefix`: backslash commands at the start of the input, else
    /// names of the catalog and SQL keywords (upper-case when the prefix is).
    pub fn candidates(&self, prefix: &str, at_start: bool) -> Vec<String> {
        if prefix.starts_with('\\') {
            return match at_start {
                true => COMMANDS.iter().map(|(c, _)| c.to_string()).filter(|c| c.starts_with(prefix)).collect(),
                false => Vec::new(),
            };
        }
        if prefix.is_empty() {
            return self.names.iter().cloned().collect();
        }
        let lower = prefix.to_ascii_lowercase();
        let upper = prefix.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        let mut out: Vec<String> =
            self.names.iter().filter(|n| n.to_ascii_lowercase().starts_with(&lower)).cloned().collect();
        out.extend(ALL_KEYWORDS.iter().filter(|k| k.to_ascii_lowercase().starts_with(&lower)).map(|k| {
            if upper {
                k.to_string()
            } else {
                k.to_ascii_lowercase()
            }
        }));
        out
    }
}

impl Default for ShellHelper {
    fn default() -> Self {
        Self::new()
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        if before.trim_start().starts_with("\\i ") {
            return self.files.complete(line, pos, ctx);
        }
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\\'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let at_start = before[..start].trim().is_empty();
        let words = self.candidates(&before[start..], at_start);
        Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if input_complete(ctx.input()) { ValidationResult::Valid(None) } else { ValidationResult::Incomplete })
    }
}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backslash_commands_and_quit_are_complete_lines() {
        assert!(input_complete("\\d"));
        assert!(input_complete("  \\format csv"));
        assert!(input_complete("quit"));
        assert!(input_complete("SELECT 1;"));
        assert!(!input_complete("SELECT 1"));
        assert!(!input_complete("SELECT ';"));
    }

    #[test]
    fn completes_keywords_tables_and_columns() {
        let mut h = ShellHelper::new();
        let mut planner = weir_sql::Planner::new();
        planner
            .plan_script("CREATE TABLE events (sensor VARCHAR, seen TIMESTAMP(3)) WITH (connector = 'datagen')")
            .unwrap();
        h.learn(planner.catalog());
        let c = h.candidates("SEL", false);
        assert!(c.contains(&"SELECT".to_string()), "{c:?}");
        assert!(h.candidates("sel", false).contains(&"select".to_string()));
        assert!(h.candidates("ev", false).contains(&"events".to_string()));
        assert!(h.candidates("se", false).contains(&"sensor".to_string()));
        assert_eq!(h.candidates("\\fo", true), vec!["\\format".to_string()]);
        assert!(h.candidates("\\fo", false).is_empty());
    }
}
