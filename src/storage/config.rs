//! `LogConfig` and the policies a user chooses by name.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When the log calls `fsync` (`fdatasync`) on its files.
///
/// The default is [`Durability::Always`]: an embedded log has no replica to fall back on, so an
/// acknowledged append must survive a power cut. Threads that append at the same time share one
/// fsync (group commit), so the safe default stays fast under concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// The library never fsyncs on its own; the operating system writes dirty pages back when it
    /// likes. A process crash loses nothing; a power cut or kernel crash can lose recent appends.
    None,
    /// Fsync at most this long after an append: by [`PartitionLog::maintain`](crate::PartitionLog::maintain)
    /// (which the broker's background thread calls), or by the next append once the interval has
    /// passed. A power cut can lose up to one interval of appends.
    Interval(Duration),
    /// Fsync before `append` returns (default).
    #[default]
    Always,
}

/// What the log does with old records (Kafka's `cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CleanupPolicy {
    /// Delete whole old segments by age and size (default, Kafka's `delete`).
    #[default]
    Delete,
    /// Keep the newest record of each key (Kafka's `compact`); every record needs a key.
    Compact,
    /// Both: compact, and delete segments past retention (Kafka's `compact,delete`).
    CompactAndDelete,
}

impl CleanupPolicy {
    pub(crate) fn compacts(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Compact | CleanupPolicy::CompactAndDelete
        )
    }

    pub(crate) fn deletes(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Delete | CleanupPolicy::CompactAndDelete
        )
    }
}

/// What opening a log does when it finds damage in data that was already flushed (below the
/// recovery point), as opposed to the torn tail of an unclean stop, which is always cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecoveryMode {
    /// Cut the log at the first damaged batch, as Kafka does; everything after it is dropped and
    /// the log opens (default).
    #[default]
    TruncateAtDamage,
    /// Refuse to open, with [`Error::Corrupt`] naming the file and byte position, so that an
    /// operator can look before anything is removed.
    Refuse,
}

/// Configuration of one partition log. Names follow Kafka's topic configs.
///
/// ```
/// use std::time::Duration;
/// use tidelog::{CleanupPolicy, Durability, LogConfig};
///
/// let config = LogConfig::default()
///     .segment_bytes(64 << 20)
///     .retention(Some(Duration::from_secs(3600)))
///     .cleanup_policy(CleanupPolicy::Delete)
///     .durability(Durability::None);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    pub(crate) segment_bytes: u64,
    pub(crate) segment_ms: Duration,
    pub(crate) index_interval_bytes: u64,
    pub(crate) max_index_bytes: u64,
    pub(crate) retention: Option<Duration>,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) cleanup_policy: CleanupPolicy,
    pub(crate) delete_retention: Duration,
    pub(crate) min_cleanable_dirty_ratio: f64,
    pub(crate) max_message_bytes: usize,
    pub(crate) durability: Durability,
    pub(crate) recovery: RecoveryMode,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Duration::from_secs(7 * 24 * 3600),
            index_interval_bytes: 4096,
            max_index_bytes: 10 << 20,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention: Duration::from_secs(24 * 3600),
            min_cleanable_dirty_ratio: 0.5,
            max_message_bytes: 1_048_588,
            durability: Durability::Always,
            recovery: RecoveryMode::TruncateAtDamage,
        }
    }
}

impl LogConfig {
    /// Maximum size of one segment file before a new one is rolled (`segment.bytes`).
    /// Default 1 GiB; at least 1 KiB and at most 2 GiB - 1 (index positions are 32-bit).
    #[must_use]
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Maximum age of the active segment before a new one is rolled (`segment.ms`). Default 7 days.
    #[must_use]
    pub fn segment_ms(mut self, age: Duration) -> Self {
        self.segment_ms = age;
        self
    }

    /// Bytes between two entries of the sparse offset and time indexes (`index.interval.bytes`).
    /// Default 4096.
    #[must_use]
    pub fn index_interval_bytes(mut self, bytes: u64) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// Maximum size of one index file (`segment.index.bytes`); a full index rolls the segment.
    /// Default 10 MiB; the active segment's index is preallocated to the smaller of this and what
    /// `segment_bytes / index_interval_bytes` entries need.
    #[must_use]
    pub fn max_index_bytes(mut self, bytes: u64) -> Self {
        self.max_index_bytes = bytes;
        self
    }

    /// How long records are kept (`retention.ms`); `None` keeps them forever. Default 7 days.
    #[must_use]
    pub fn retention(mut self, age: Option<Duration>) -> Self {
        self.retention = age;
        self
    }

    /// Maximum total size of the log (`retention.bytes`); `None` (default) sets no limit.
    #[must_use]
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// Delete, compact, or both (`cleanup.policy`). Default [`CleanupPolicy::Delete`].
    #[must_use]
    pub fn cleanup_policy(mut self, policy: CleanupPolicy) -> Self {
        self.cleanup_policy = policy;
        self
    }

    /// How long compaction keeps tombstones (`delete.retention.ms`), counted from the tombstone's
    /// timestamp (Kafka counts from the first cleaning that saw it). Default 1 day.
    #[must_use]
    pub fn delete_retention(mut self, age: Duration) -> Self {
        self.delete_retention = age;
        self
    }

    /// Share of not-yet-compacted bytes above which compaction runs (`min.cleanable.dirty.ratio`).
    /// Default 0.5; between 0 and 1.
    #[must_use]
    pub fn min_cleanable_dirty_ratio(mut self, ratio: f64) -> Self {
        self.min_cleanable_dirty_ratio = ratio;
        self
    }

    /// Largest batch the log accepts, in encoded bytes (`max.message.bytes`). Default 1,048,588.
    /// A batch larger than `segment_bytes` gets a segment of its own.
    #[must_use]
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// When to fsync. Default [`Durability::Always`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// What to do with damage below the recovery point. Default [`RecoveryMode::TruncateAtDamage`].
    #[must_use]
    pub fn recovery(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// The configured durability.
    pub fn durability_policy(&self) -> Durability {
        self.durability
    }

    /// Checks every value; [`PartitionLog::open`](crate::PartitionLog::open) calls this.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidConfig { key, reason })
        }
        if !(1024..=i32::MAX as u64).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                format!("{} is not in 1024..=2147483647", self.segment_bytes),
            );
        }
        if self.segment_ms.is_zero() {
            return bad("segment_ms", "must be greater than zero".into());
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be greater than zero".into());
        }
        if self.max_index_bytes < 4096 || self.max_index_bytes > i32::MAX as u64 {
            return bad(
                "max_index_bytes",
                format!("{} is not in 4096..=2147483647", self.max_index_bytes),
            );
        }
        if self.retention_bytes == Some(0) {
            return bad(
                "retention_bytes",
                "must be greater than zero, or None for no limit".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad(
                "min_cleanable_dirty_ratio",
                format!("{} is not between 0 and 1", self.min_cleanable_dirty_ratio),
            );
        }
        if self.max_message_bytes < crate::batch::HEADER_LEN
            || self.max_message_bytes > i32::MAX as usize
        {
            return bad(
                "max_message_bytes",
                format!(
                    "{} is not in {}..=2147483647",
                    self.max_message_bytes,
                    crate::batch::HEADER_LEN
                ),
            );
        }
        if let Durability::Interval(d) = self.durability {
            if d.is_zero() {
                return bad("durability", "an interval must be greater than zero".into());
            }
        }
        Ok(())
    }

    /// Bytes to preallocate for the active segment's offset index (8-byte entries); the time index
    /// gets the same number of 12-byte entries.
    pub(crate) fn index_entries(&self) -> u64 {
        let needed = self.segment_bytes / self.index_interval_bytes + 2;
        needed.min(self.max_index_bytes / 12).max(2)
    }
}
