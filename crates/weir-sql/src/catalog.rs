//! The catalog: tables declared with `CREATE TABLE` / `CREATE SOURCE`, their schemas, watermark
//! clauses and connector options.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Result, SqlError};
pub use weir_plan::{schema_of, sql_type_name, TableDef, WatermarkDef};

/// Tables declared so far in a session.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: BTreeMap<String, TableDef>,
    /// Tables weir declares itself (the Nexmark generator's), until a user table replaces them.
    builtin: BTreeSet<String>,
    /// Tables whose input ends (a file that is not followed): without a watermark, one can be
    /// read whole first, as the lookup table of a join.
    bounded: BTreeSet<String>,
    /// Tables read as a changelog (+I/-U/+U/-D rows), as their connector says.
    changelog: BTreeSet<String>,
    /// Tables read as upserts by their primary key.
    upsert: BTreeSet<String>,
}

/// What a table's connector says about it when it is declared.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traits {
    /// Its input ends.
    pub bounded: bool,
    /// Reading it gives a changelog.
    pub changelog: bool,
    /// What it reads are upserts by its primary key.
    pub upsert: bool,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a table with what its connector says of it. Fails if one with the same name exists,
    /// unless `replace`. A built-in table counts as not there: declaring one of its name
    /// replaces it.
    pub fn register(&mut self, table: TableDef, traits: Traits, replace: bool, if_not_exists: bool) -> Result<()> {
        let builtin = self.builtin.remove(&table.name);
        if !builtin && self.tables.contains_key(&table.name) {
            if if_not_exists {
                return Ok(());
            }
            if !replace {
                return Err(SqlError::plan(format!("table '{}' already exists", table.name))
                    .with_hint("use CREATE OR REPLACE TABLE, or another name"));
            }
        }
        let sets = [
            (&mut self.bounded, traits.bounded),
            (&mut self.changelog, traits.changelog),
            (&mut self.upsert, traits.upsert),
        ];
        for (set, on) in sets {
            if on {
                set.insert(table.name.clone());
            } else {
                set.remove(&table.name);
            }
        }
        self.tables.insert(table.name.clone(), table);
        Ok(())
    }

    /// Whether the input of table `name` ends (so that, without a watermark, it can be read
    /// whole first as a lookup table).
    pub fn is_bounded(&self, name: &str) -> bool {
        self.bounded.contains(name)
    }

    /// Whether reading table `name` gives a changelog.
    pub fn is_changelog(&self, name: &str) -> bool {
        self.changelog.contains(name)
    }

    /// Whether reading table `name` gives upserts by its primary key.
    pub fn is_upsert(&self, name: &str) -> bool {
        self.upsert.contains(name)
    }

    /// Add a table weir declares itself.
    pub fn register_builtin(&mut self, table: TableDef) {
        self.builtin.insert(table.name.clone());
        self.tables.insert(table.name.clone(), table);
    }

    /// Whether `name` is a built-in table no user table has replaced.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name)
    }

    /// Look a table up by name: exactly as given (quoted names keep their case), else in
    /// lower case.
    pub fn get(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name).or_else(|| self.tables.get(&name.to_lowercase()))
    }

    /// All tables, sorted by name.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    /// Names of all tables, for error hints.
    pub fn names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }
}
