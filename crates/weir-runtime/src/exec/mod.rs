//! Execution: sources and their watermarks, the pipeline built from a plan, its stages,
//! the run loop, watermark merging, metrics and instrumentation.

pub(crate) mod chain;
pub(crate) mod connector;
pub(crate) mod dropped;
pub(crate) mod instrument;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub(crate) mod run;
pub(crate) mod source;
pub(crate) mod stage;
pub(crate) mod watermark_merge;
