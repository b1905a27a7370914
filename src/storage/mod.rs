//! The storage engine: one partition's durable, segmented log in Kafka's on-disk layout.
//!
//! ```text
//! <partition folder>/
//!   tidelog.lock                    flock held while a PartitionLog has the folder open
//!   tidelog.checkpoint              recovery point, log start offset, cleaner offset, clean mark
//!   00000000000000000000.log        segment: Kafka RecordBatch v2 batches back to back
//!   00000000000000000000.index      sparse offset index (Kafka layout)
//!   00000000000000000000.timeindex  sparse time index (Kafka layout)
//!   00000000000000004096.log        next segment, named by its base offset ...
//! ```
//!
//! Files: `log.rs` (the `PartitionLog` and its invariants), `segment.rs`, `index.rs`,
//! `recovery.rs`, `retention.rs`, `compaction.rs`, `checkpoint.rs`, `config.rs`.

mod checkpoint;
mod clock;
mod compaction;
mod config;
pub(crate) mod fsutil;
mod index;
mod log;
mod recovery;
mod retention;
mod segment;

pub(crate) use self::clock::coarse_now_ms;
pub use self::config::{CleanupPolicy, Durability, LogConfig, RecoveryMode};
pub(crate) use self::log::{deadline_after, AppendSignal};
pub use self::log::{AppendInfo, FetchData, MaintenanceReport, PartitionLog};
