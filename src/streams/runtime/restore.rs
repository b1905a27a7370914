//! Restoring a task's stores when it starts: snapshot, then the changelog's tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::consumer::{Consumer, ConsumerConfig, OffsetReset};
use crate::error::Result;
use crate::partition::TopicPartition;
use crate::streams::context::TaskId;
use crate::streams::store::{snapshot, StateStore};

/// Where the snapshot of `store` of `task` lives.
pub(crate) fn snapshot_path(
    state_dir: &Path,
    application_id: &str,
    task: TaskId,
    store: &str,
) -> PathBuf {
    state_dir
        .join(application_id)
        .join(task.to_string())
        .join(format!("{store}.snapshot"))
}

/// How old a snapshot of a store with changelog `topic` may be and still be used.
pub(crate) fn snapshot_max_age(broker: &Broker, topic: &str) -> Result<Duration> {
    Ok(broker.topic(topic)?.config().delete_retention / 2)
}

/// What restoring a store found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restored {
    /// Changelog end offset after restoring: the store equals the changelog up to here.
    pub(crate) changelog_end: u64,
    /// Records replayed from the changelog.
    pub(crate) replayed: u64,
}

/// Fills the (empty) `store` from its snapshot and then the changelog partition from the
/// snapshot's offset to the end; returns `Ok(None)` if the snapshot does not fit the
/// changelog (its offset is past the end: the changelog was recreated), in which case the
/// caller must start over with an empty store and no snapshot.
///
/// A snapshot older than half the changelog's `delete_retention` is not used: compaction may
/// have removed tombstones written after it (changelog records carry wall-clock timestamps,
/// and a tombstone lives `delete_retention` past its timestamp), and replaying a tail without
/// them would bring deleted keys back. Running tasks snapshot more often than that (see the
/// stream thread's commit).
pub(crate) fn restore(
    broker: &Broker,
    store: &Arc<dyn StateStore>,
    changelog: &TopicPartition,
    snapshot: Option<&Path>,
) -> Result<Option<Restored>> {
    let max_age = snapshot_max_age(broker, &changelog.topic)?;
    let fresh = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age < max_age)
    };
    let from = match snapshot {
        Some(path) if fresh(path) => snapshot::load(path, &**store)?.unwrap_or(0),
        _ => 0,
    };
    let end = broker
        .partition(&changelog.topic, changelog.partition)?
        .log_end_offset();
    if from > end {
        return Ok(None);
    }
    let mut replayed = 0;
    if from < end {
        let mut consumer = Consumer::new(
            broker,
            ConsumerConfig::default()
                .auto_offset_reset(OffsetReset::Earliest)
                .max_poll_records(100_000)
                .fetch_max_bytes(64 << 20)
                .max_partition_fetch_bytes(64 << 20),
        )?;
        consumer.assign(std::slice::from_ref(changelog))?;
        consumer.seek(changelog, from)?;
        while consumer.position(changelog)? < end {
            let records = consumer.poll(Duration::from_millis(100))?;
            for record in records {
                if record.offset >= end {
                    break;
                }
                if let Some(key) = record.key {
                    store.restore(key, record.value)?;
                    replayed += 1;
                }
            }
        }
    }
    Ok(Some(Restored {
        changelog_end: end,
        replayed,
    }))
}
