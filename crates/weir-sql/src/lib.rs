//! # weir-sql — the planner
//!
//! Turns weir's streaming SQL into a [`StreamPlan`]: a source with its watermark, a chain of
//! stateless, windowed and updating operators, and a sink. It decides which results are
//! append-only and which are changelogs (an updating aggregate), and refuses shapes the
//! runtime cannot run correctly (a window over a changelog, a changelog into an append-only
//! file). It owns the SQL dialect (DDL with
//! `WATERMARK FOR` and `WITH (…)` options, views, window TVFs and group windows, Flink's
//! functions DataFusion lacks or names otherwise), the catalog, the window functions and
//! `EXPLAIN` output.
//!
//! DataFusion does the SQL work: its sqlparser parses, its `SqlToRel` resolves names and
//! types, its analyzer and optimizer simplify. This crate never depends on weir's runtime, so
//! tools can embed it to parse, validate and inspect streaming SQL.
//!
//! ```
//! use weir_sql::{Planned, Planner};
//!
//! let mut planner = Planner::new();
//! let planned = planner
//!     .plan_script(
//!         "CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
//!              WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
//!          WITH (connector = 'file', path = 'bids.csv', format = 'csv');
//!          SELECT auction, COUNT(*) AS n FROM bids
//!          GROUP BY TUMBLE(ts, INTERVAL '10' SECOND), auction;",
//!     )
//!     .unwrap();
//! let Planned::Query(plan) = &planned[1] else { panic!() };
//! assert!(plan.to_string().contains("WindowAggregate: window: TUMBLE(size 10s) on bids.ts"));
//!
//! // the plan as data (serde), for tools that check or display plans
//! let json = serde_json::to_value(plan).unwrap();
//! assert_eq!(json["nodes"][0]["operator"], "Sink");
//! assert_eq!(json["sources"][0]["watermark"]["column"], "ts");
//! assert_eq!(json["updating"], false);
//!
//! // errors carry the position (line, column) and often a hint
//! let err = planner.plan_script("SELECT nope FROM bids").unwrap_err();
//! assert!(err.message.contains("nope"));
//! assert_eq!(err.position, Some((1, 8)));
//! ```

#![warn(missing_docs)]

mod bounded_fn;
mod bounds;
mod catalog;
mod connectors;
mod create_table;
mod date_format;
mod ddl;
mod error;
mod flink_fn;
mod join;
pub use weir_plan::nexmark;
pub mod options;
mod over;
mod parser;
mod planner;
mod provider;
mod rank;
mod rewrite;
mod sink;
mod time_column;
mod tvf;
mod union;
mod view;
pub mod window_fn;
mod window_rows;

pub use catalog::{sql_type_name, Catalog, TableDef, WatermarkDef};
pub use date_format::date_format;
pub use error::{ErrorKind, Result, SqlError};
pub use parser::{ends_statement, parse_script, Stmt};
pub use planner::{arrow_type, Planned, Planner};
pub use weir_plan::{
    show, Branch, EarlyEmit, JoinNode, JoinState, JoinType, OpCounter, OpRef, PlanError, PlanInput,
    PlanNodeDescription, Rank, RankKind, RowTime, SinkNode, SourceNode, StateTtl, StreamJoin, StreamOp, StreamPlan,
    UpdatingAggregate, WindowAggregate, WindowColumn, WindowEmit, WindowSpec,
};
/// The plan this crate produces lives in `weir-plan`, shared with the runtime; re-exported here
/// so a user of the planner needs one dependency.
pub use weir_plan::{ConnectorCatalog, ConnectorError, ConnectorSpec, OptionSpec, OptionType, Settings, TABLE_OPTIONS};

/// DataFusion pieces the plan is made of, re-exported so users of the plan agree on versions.
pub mod df {
    pub use datafusion_common;
    pub use datafusion_expr;
    pub use datafusion_sql::sqlparser;
}
