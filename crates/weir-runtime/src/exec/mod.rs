//! Execution: sources and their watermarks, the pipeline built from a plan, its stages,
//! the run loop, watermark merging, metrics and instrumentation.

pub(crate) mod alignment;
pub(crate) mod barrier;
pub(crate) mod chain;
pub(crate) mod connector;
pub(crate) mod dropped;
pub(crate) mod exchange;
pub(crate) mod instrument;
pub(crate) mod metrics;
pub(crate) mod parallel;
pub(crate) mod parallel_build;
pub(crate) mod parallel_checkpoint;
pub(crate) mod pipeline;
pub(crate) mod rescale;
pub(crate) mod run;
pub(crate) mod sink_checkpoints;
pub(crate) mod sink_merge;
pub(crate) mod source;
pub(crate) mod stage;
pub(crate) mod watermark_merge;
