//! # weir-runtime — streaming execution
//!
//! Runs a [`weir_sql::StreamPlan`] incrementally over Arrow record batches. It owns the
//! message vocabulary ([`Message`]: data, watermarks, end of stream), the [`Operator`] trait
//! and the operators (one per file: [`FilterOp`], [`ProjectOp`], [`WindowAggregateOp`]),
//! watermark generation at sources ([`WatermarkGenerator`]), the [`Source`]/[`Sink`] traits
//! connectors implement, pipeline metrics, and the [`Pipeline`] that wires them together.
//!
//! Expressions and aggregates are DataFusion's: physical expressions come from
//! `create_physical_expr`, aggregation state from `GroupValues` and `GroupsAccumulator`.

mod error;
mod filter;
mod message;
mod metrics;
mod operator;
mod pipeline;
mod project;
mod source;
mod window_aggregate;

pub use error::{Result, RuntimeError};
pub use filter::FilterOp;
pub use message::{Message, Nanos, StreamBatch, NO_WATERMARK};
pub use metrics::Metrics;
pub use operator::Operator;
pub use pipeline::{build_operators, relaxed, source_columns, Pipeline, SourceColumns};
pub use project::ProjectOp;
pub use source::{Sink, Source, SourceDriver, WatermarkGenerator};
pub use window_aggregate::{to_nanos, AggregateSpec, WindowAggregateOp, WindowLayout};
