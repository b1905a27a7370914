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
//! Files: `log.rs` (the `PartitionLog`, its invariants and group commit), `fetch.rs` (what a read
//! returns), `signal.rs` (waking readers), `segment.rs`, `index.rs`, `recovery.rs`,
//! `retention.rs`, `compaction.rs`, `checkpoint.rs`, `clock.rs`, `fsutil.rs`, `config.rs`.

mod checkpoint;
mod clock;
mod compaction;
mod config;
mod fetch;
pub(crate) mod fsutil;
mod index;
mod log;
mod recovery;
mod retention;
mod segment;
mod signal;

pub(crate) use self::clock::coarse_now_ms;
pub use self::config::{CleanupPolicy, Durability, LogConfig, RecoveryMode};
pub use self::fetch::FetchData;
pub use self::log::{AppendInfo, MaintenanceReport, PartitionLog};
pub(crate) use self::signal::{deadline_after, AppendSignal};
