//! Retention: deleting whole old segments by age (`retention`) and total size
//! (`retention_bytes`), oldest first, as Kafka's `cleanup.policy=delete` does.
//!
//! Only sealed segments are deleted. When every record of the active segment has expired, it is
//! rolled first (Kafka does the same), so a log that stopped receiving records still empties.
//! The log start offset moves forward before any file is removed, so a reader is sent
//! [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange) rather than into a deleted file
//! (and a reader already inside one keeps reading it through its open descriptor).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::fsutil;
use super::log::PartitionLog;
use crate::error::Result;

impl PartitionLog {
    /// Deletes the segments that retention no longer keeps; returns how many. The caller holds
    /// the maintenance lock.
    pub(crate) fn apply_retention(&self, now: i64) -> Result<usize> {
        let retention_ms = self
            .config
            .load()
            .retention
            .map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
        let expired = |ts: i64| retention_ms.is_some_and(|r| ts < now.saturating_sub(r));
        {
            let mut w = self.writer.lock();
            if w.active.size() > 0
                && w.state.first_timestamp.is_some()
                && expired(w.state.max_timestamp)
            {
                self.roll(&mut w)?;
            }
        }
        let segments = self.segments.load_full();
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        let mut doomed = 0;
        for segment in &segments[..segments.len() - 1] {
            let by_time = retention_ms.is_some() && expired(segment.largest_timestamp()?);
            let by_size = self
                .config
                .load()
                .retention_bytes
                .is_some_and(|limit| total - segment.size() >= limit);
            if !(by_time || by_size) {
                break;
            }
            total -= segment.size();
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(0);
        }
        let doomed: Vec<_> = segments[..doomed].to_vec();
        let new_start = segments[doomed.len()].base_offset();
        self.log_start.fetch_max(new_start, Ordering::AcqRel);
        self.segments.rcu(|list| {
            list.iter()
                .filter(|s| !doomed.iter().any(|d| Arc::ptr_eq(d, s)))
                .cloned()
                .collect::<Vec<_>>()
        });
        for segment in &doomed {
            segment.retire();
            segment.delete_files()?;
        }
        fsutil::sync_dir_of(&self.dir)?;
        Ok(doomed.len())
    }
}
