//! Operator state: keyed and aggregate state (per key, and in slots per window), kept join and rank rows, running
//! aggregates, and checkpoints
//! (snapshots in Arrow IPC, the manifest, the store, recovery).

pub(crate) mod aggregate_state;
pub mod checkpoint;
pub(crate) mod join_rows;
pub(crate) mod keyed_state;
pub(crate) mod rank_rows;
pub(crate) mod retract_min_max;
pub(crate) mod running;
pub(crate) mod slots;
