//! Errors raised while running a pipeline.

use datafusion_common::arrow::error::ArrowError;
use datafusion_common::DataFusionError;

/// A failure while running a pipeline: bad input data, a sink that cannot be written, or an
/// expression that fails at run time (division by zero, overflow, …).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A source could not read its input (the message names the file and line).
    #[error("{0}")]
    Source(String),
    /// A table's connector cannot be used as declared (unknown, misconfigured, or asked to
    /// read when it only writes).
    #[error("{0}")]
    Connector(#[from] weir_plan::ConnectorError),
    /// A sink could not write.
    #[error("{0}")]
    Sink(String),
    /// The reader of the output went away (e.g. `weir run … | head`): stop quietly.
    #[error("output closed")]
    OutputClosed,
    /// An error evaluating the query.
    #[error("{}", tidy(.0))]
    DataFusion(#[from] DataFusionError),
    /// An error in an Arrow kernel.
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    /// A checkpoint cannot be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Something this version cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else that should not have happened.
    #[error("internal error: {0}")]
    Internal(String),
}

fn tidy(e: &DataFusionError) -> String {
    let s = e.to_string();
    for p in ["Arrow error: ", "Execution error: ", "External error: "] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s
}

/// Result type of the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
