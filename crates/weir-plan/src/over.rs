//! OVER aggregates: `agg(…) OVER (PARTITION BY k ORDER BY ts <frame>)` over append-only rows,
//! each row emitted with its aggregates once the watermark has passed its time.

use datafusion_common::DFSchemaRef;
use datafusion_expr::Expr;

/// The rows before the current one (and the current one) an OVER aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`: the row and the `n` rows before it.
    Rows(u64),
    /// `RANGE BETWEEN INTERVAL … PRECEDING AND CURRENT ROW`: the rows whose time is at most
    /// this many nanoseconds before the row's (and the rows of the same time).
    Range(i64),
    /// `… BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` (the default with ORDER BY): every row
    /// of the partition up to this one; `range`: and the rows of the same time (`RANGE`, not
    /// `ROWS`).
    Unbounded {
        /// `RANGE` rather than `ROWS`.
        range: bool,
    },
}

/// `agg(…) OVER (PARTITION BY … ORDER BY time frame)`, one or more aggregates sharing the
/// window.
#[derive(Debug, Clone)]
pub struct OverAggregate {
    /// `PARTITION BY` (none: one partition).
    pub partition_by: Vec<Expr>,
    /// The `ORDER BY` column: the rows' event time.
    pub time: Expr,
    /// The time column, for EXPLAIN.
    pub time_column: String,
    /// Added to `time` to get the time the watermark is compared with (a windowed result's
    /// `window_time` is 1 ms before the time its row comes out at; a source's own time: 0).
    pub time_offset_nanos: i64,
    /// The frame.
    pub frame: OverFrame,
    /// The aggregates, as DataFusion planned them (`Expr::WindowFunction`, maybe aliased).
    pub window_exprs: Vec<Expr>,
    /// Schema of the input rows.
    pub input_schema: DFSchemaRef,
    /// Output: the input columns, then one column per aggregate.
    pub output_schema: DFSchemaRef,
}
