//! The operators, one per file: each consumes and produces [`crate::Message`]s.

pub(crate) mod deduplicate;
pub(crate) mod filter;
pub(crate) mod join;
pub(crate) mod local_window_aggregate;
pub(crate) mod over_aggregate;
pub(crate) mod proc_time;
pub(crate) mod project;
pub(crate) mod session_aggregate;
pub(crate) mod top_n;
pub(crate) mod updating_aggregate;
pub(crate) mod upsert_normalize;
pub(crate) mod window_aggregate;
pub(crate) mod window_assign;
pub(crate) mod window_changes;
pub(crate) mod window_rows;
pub(crate) mod window_top_n;
