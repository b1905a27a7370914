//! What a task knows while it processes one record: which record it is, stream time, wall-clock
//! time, its stores, and the records its sinks and stores have produced and not yet handed to
//! the producer (the outbox).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::Header;
use crate::streams::store::StateStore;

/// A task: one sub-topology working on one partition number of its source topics, Kafka's
/// `TaskId` (`"<sub-topology>_<partition>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology, numbered from 0 in the order of the topology's source nodes.
    pub subtopology: u32,
    /// The partition of the sub-topology's source topics that the task reads.
    pub partition: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// Where the record being processed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
}

/// A record a sink or a store's changelog wants written.
#[derive(Debug, Clone)]
pub(crate) struct OutRecord {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: Option<u32>,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<Header>,
}

/// Counters of one task; summed over tasks by `Streams::metrics` and the test driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records taken from source topics and processed.
    pub processed: u64,
    /// Records dropped because they arrived after their window closed (window end plus grace),
    /// Kafka's `dropped-records` for late records.
    pub dropped_late: u64,
    /// Records skipped because their key or value could not be decoded (only when the
    /// application is set to skip them).
    pub skipped_undecodable: u64,
    /// Records dropped by an operator because they had no key where one was needed (an
    /// aggregation or a join), as Kafka drops them.
    pub dropped_null_key: u64,
    /// Changelog records replayed to restore stores when tasks started (what their snapshots
    /// did not cover).
    pub restored: u64,
}

impl std::ops::AddAssign for TaskMetrics {
    fn add_assign(&mut self, other: TaskMetrics) {
        self.processed += other.processed;
        self.dropped_late += other.dropped_late;
        self.skipped_undecodable += other.skipped_undecodable;
        self.dropped_null_key += other.dropped_null_key;
        self.restored += other.restored;
    }
}

/// The state of a task that every node can see.
pub(crate) struct TaskContext {
    pub(crate) task_id: TaskId,
    pub(crate) application_id: Arc<str>,
    /// The record being processed, `None` inside a punctuation.
    pub(crate) record: Option<RecordMetadata>,
    /// Largest timestamp processed so far (event time), `i64::MIN` before the first record.
    pub(crate) stream_time: i64,
    /// Milliseconds since the Unix epoch, as of the task's last look at the clock (the test
    /// driver sets it by hand).
    pub(crate) wall_clock: i64,
    pub(crate) outbox: Vec<OutRecord>,
    pub(crate) metrics: TaskMetrics,
    pub(crate) commit_requested: bool,
    /// Skip (and count) records that cannot be decoded instead of failing.
    pub(crate) skip_undecodable: bool,
    /// Bytes each caching operator may hold before it forwards its updates (0: no caching).
    pub(crate) cache_max_bytes: usize,
    pub(crate) stores: HashMap<Arc<str>, Arc<dyn StateStore>>,
}

impl TaskContext {
    pub(crate) fn new(task_id: TaskId, application_id: Arc<str>, wall_clock: i64) -> Self {
        TaskContext {
            task_id,
            application_id,
            record: None,
            stream_time: i64::MIN,
            wall_clock,
            outbox: Vec::new(),
            metrics: TaskMetrics::default(),
            commit_requested: false,
            skip_undecodable: false,
            cache_max_bytes: 0,
            stores: HashMap::new(),
        }
    }

    /// The task's store called `name`, as its concrete type.
    pub(crate) fn store<S: StateStore>(&self, name: &str) -> Result<Arc<S>> {
        let store = self.stores.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "task {} has no state store `{name}`; connect it to the processor that uses it",
                self.task_id
            ))
        })?;
        Arc::clone(store).as_any().downcast::<S>().map_err(|_| {
            Error::InvalidArgument(format!(
                "state store `{name}` is not a store of the requested kind and types"
            ))
        })
    }
}
