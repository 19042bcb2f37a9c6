//! # weir-runtime — streaming execution
//!
//! Runs a [`weir_plan::StreamPlan`] incrementally over Arrow record batches. It owns the
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

mod exec;
mod operators;
mod state;

mod error;
mod message;
mod operator;

pub use state::checkpoint;

pub use error::{Result, RuntimeError};
pub use exec::connector::{Connector, ConnectorContext, ConnectorRegistry, StartTime};
pub use exec::metrics::{Metrics, OperatorMetrics, StateSize};
pub use exec::parallel::{parallel_layout, resumed_layout};
pub use exec::pipeline::{
    build_operators, build_ops, input_columns, is_row_kind_column, late_rows_schema, relaxed, sink_schema,
    source_columns, two_phase_window_operators, Pipeline, SourceColumns, ROW_KIND_METADATA,
};
pub use exec::source::{Sink, Source, SourceDriver, WatermarkGenerator};
pub use exec::watermark_merge::WatermarkMerge;
pub use message::{DroppedRows, Message, Nanos, Origin, RowKind, StreamBatch, NO_WATERMARK};
pub use operator::Operator;
pub use operators::deduplicate::DeduplicateOp;
pub use operators::filter::FilterOp;
pub use operators::join::{JoinMode, JoinOp, JoinOutput, JoinSpec};
pub use operators::proc_time::{ProcTimeOp, ProcessingClock};
pub use operators::project::ProjectOp;
pub use operators::session_aggregate::SessionAggregateOp;
pub use operators::top_n::TopNOp;
pub use operators::updating_aggregate::UpdatingAggregateOp;
pub use operators::window_aggregate::{to_nanos, WindowAggregateOp, WindowLayout};
pub use operators::window_assign::Assigner;
pub use operators::window_top_n::WindowTopNOp;
pub use state::aggregate_state::{AggregateInput, AggregateSpec, Aggregates, Frozen, Partial};
pub use state::join_rows::{Held, JoinRows, Kept};
pub use state::keyed_state::KeyedState;
pub use state::rank_rows::RankRows;
pub use state::retract_min_max::RetractMinMax;
