//! # weir-plan — the streaming plan, the vocabulary every layer shares
//!
//! The planner (`weir-sql`) writes a [`StreamPlan`]; the runtime (`weir-runtime`) executes it;
//! `EXPLAIN` prints it. This crate holds only that shared vocabulary, so that the planner never
//! depends on the runtime and the runtime never depends on the planner:
//!
//! ```text
//!   weir-sql ──► weir-plan ◄── weir-runtime ◄── weir-connectors
//! ```
//!
//! - the plan's nodes ([`plan`]): sources, stateless and stateful operators, joins, unions, the
//!   sink, with how `EXPLAIN` shows them ([`explain`]);
//! - tables as declared in SQL ([`TableDef`]): columns, watermark clause, `WITH (…)` options;
//! - durations as weir reads and prints them ([`duration`]), and the session's typed
//!   [`Settings`];
//! - what connectors declare (their options, with types and docs) and the
//!   [`ConnectorCatalog`] the planner checks `CREATE TABLE` against ([`connector`]);
//! - [`PlanError`], the error of reading them.
//!
//! Expressions stay DataFusion logical expressions (`datafusion_expr::Expr`) with the schema
//! they are evaluated against, so the runtime builds physical expressions with DataFusion's own
//! `create_physical_expr`.

#![warn(missing_docs)]

mod co_partition;
pub mod connector;
pub mod duration;
mod error;
pub mod explain;
pub mod nexmark;
pub mod over;
pub mod parallel;
pub mod plan;
pub mod settings;
mod source_alignment;
mod table;
mod two_phase;

pub use connector::{
    ConnectorCatalog, ConnectorError, ConnectorSpec, MetadataSpec, OptionSpec, OptionType, TABLE_OPTIONS,
};
pub use error::PlanError;
pub use explain::{show, PlanNodeDescription};
pub use over::{OverAggregate, OverFrame};
pub use plan::{
    Branch, EarlyEmit, JoinNode, JoinState, JoinType, OpCounter, OpRef, PlanInput, Rank, RankKind, RowTime, SinkNode,
    SourceNode, StateTtl, StreamJoin, StreamOp, StreamPlan, UpdatingAggregate, UpsertNormalize, WindowAggregate,
    WindowColumn, WindowEmit, WindowKind, WindowRows, WindowSpec, MAX_SLICES_PER_WINDOW,
};
pub use settings::{Guarantee, Settings};
pub use table::{schema_of, sql_type_name, MetadataColumn, TableDef, WatermarkDef};
