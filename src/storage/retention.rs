//! Retention: deleting whole old segments by age (`retention`) and total size
//! (`retention_bytes`), oldest first, as Kafka's `cleanup.policy=delete` does; and Kafka's
//! `deleteRecords`, which moves the log start offset to a given offset.
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
use super::segment::Segment;
use crate::error::{Error, Result};

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
        self.log_start
            .fetch_max(segments[doomed].base_offset(), Ordering::AcqRel);
        self.delete_first_segments(&segments[..doomed])?;
        Ok(doomed)
    }

    /// Kafka's `deleteRecords`, first step: moves the log start offset up to `offset` (records
    /// below it are not read any more, [`Error::OffsetOutOfRange`]). Returns the log start
    /// offset, which never moves back. The caller holds the maintenance lock, records the new
    /// start in the checkpoint, then calls [`delete_segments_below`](Self::delete_segments_below).
    ///
    /// Errors: `offset` past the log end ([`Error::OffsetOutOfRange`]).
    pub(crate) fn move_log_start(&self, offset: u64) -> Result<u64> {
        let end = self.log_end_offset();
        if offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: end,
            });
        }
        Ok(self
            .log_start
            .fetch_max(offset, Ordering::AcqRel)
            .max(offset))
    }

    /// Deletes the sealed segments that hold only records below `start`. The caller holds the
    /// maintenance lock.
    pub(crate) fn delete_segments_below(&self, start: u64) -> Result<()> {
        let segments = self.segments.load_full();
        // A sealed segment goes when the next one starts at or below the log start.
        let doomed = segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset() <= start)
            .count();
        if doomed == 0 {
            return Ok(());
        }
        self.delete_first_segments(&segments[..doomed])
    }

    /// Removes `doomed`, the first segments of the list, after the log start moved past them.
    fn delete_first_segments(&self, doomed: &[Arc<Segment>]) -> Result<()> {
        self.segments.rcu(|list| {
            list.iter()
                .filter(|s| !doomed.iter().any(|d| Arc::ptr_eq(d, s)))
                .cloned()
                .collect::<Vec<_>>()
        });
        for segment in doomed {
            segment.retire();
            segment.delete_files()?;
        }
        fsutil::sync_dir_of(&self.dir)
    }
}
