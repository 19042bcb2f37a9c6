//! # weir-runtime — streaming execution
//!
//! Runs a [`weir_sql::StreamPlan`] incrementally over Arrow record batches. It owns the
//! message vocabulary ([`Message`]: data, watermarks, end of stream), the [`Operator`] trait
//! and the operators (one per file: [`FilterOp`], [`ProjectOp`], [`WindowAggregateOp`] for TUMBLE/HOP/CUMULATE,
//! [`SessionAggregateOp`], [`UpdatingAggregateOp`] for changelogs, [`WindowTopNOp`],
//! [`DeduplicateOp`], [`TopNOp`], [`ProcTimeOp`] for the `PROCTIME()` column, [`JoinOp`] for interval,
//! window, regular and lookup joins over [`JoinRows`]), the changelog row kinds
//! ([`RowKind`]),
//! window assignment through slices ([`Assigner`]), partial aggregates that
//! can be frozen and merged ([`Partial`]), watermark generation at sources ([`WatermarkGenerator`]), the watermark of a `UNION ALL`'s
//! inputs ([`WatermarkMerge`]: their minimum, idle inputs left out), windows that emit changelogs
//! (early results, late corrections), the [`Source`]/[`Sink`] traits
//! connectors implement, pipeline metrics, the [`Pipeline`] that wires them together (a
//! tree of stages mirroring the plan: sources, unions, joins), and [`checkpoint`]s: barriers,
//! operator snapshots in Arrow IPC with a manifest, the checkpoint store, and recovery.
//!
//! Expressions and aggregates are DataFusion's: physical expressions come from
//! `create_physical_expr`, aggregation state from `GroupValues` and `GroupsAccumulator`.

#![warn(missing_docs)]

mod aggregate_state;
pub mod checkpoint;
mod deduplicate;
mod dropped;
mod error;
mod filter;
mod instrument;
mod join;
mod join_rows;
mod keyed_state;
mod message;
mod metrics;
mod operator;
mod pipeline;
mod proc_time;
mod project;
mod rank_rows;
mod retract_min_max;
mod run;
mod session_aggregate;
mod source;
mod stage;
mod top_n;
mod updating_aggregate;
mod watermark_merge;
mod window_aggregate;
mod window_assign;
mod window_changes;
mod window_top_n;

pub use aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Frozen, Partial};
pub use deduplicate::DeduplicateOp;
pub use error::{Result, RuntimeError};
pub use filter::FilterOp;
pub use join::{JoinMode, JoinOp, JoinSpec};
pub use join_rows::{Encoded, JoinRows, Kept};
pub use keyed_state::KeyedState;
pub use message::{DroppedRows, Message, Nanos, Origin, RowKind, StreamBatch, NO_WATERMARK};
pub use metrics::{Metrics, OperatorMetrics, StateSize};
pub use operator::Operator;
pub use pipeline::{
    build_operators, build_ops, input_columns, late_rows_schema, relaxed, sink_schema, source_columns, Pipeline,
    SourceColumns,
};
pub use proc_time::{ProcTimeOp, ProcessingClock};
pub use project::ProjectOp;
pub use rank_rows::{EncodedBatch, RankRows};
pub use retract_min_max::RetractMinMax;
pub use session_aggregate::SessionAggregateOp;
pub use source::{Sink, Source, SourceDriver, WatermarkGenerator};
pub use top_n::TopNOp;
pub use updating_aggregate::UpdatingAggregateOp;
pub use watermark_merge::WatermarkMerge;
pub use window_aggregate::{to_nanos, WindowAggregateOp, WindowLayout};
pub use window_assign::Assigner;
pub use window_top_n::WindowTopNOp;
