//! The `Partition` handle: one partition of a topic, over its [`PartitionLog`].

use std::sync::Arc;

use crate::error::Result;
use crate::storage::PartitionLog;
use crate::topic::TopicState;

/// A handle to one partition of a topic. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Partition {
    pub(crate) topic: Arc<TopicState>,
    pub(crate) index: u32,
    pub(crate) log: Arc<PartitionLog>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}-{})", self.topic.name, self.index)
    }
}

impl Partition {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic.name
    }

    /// The partition's number.
    pub fn partition(&self) -> u32 {
        self.index
    }

    /// First offset still kept.
    pub fn log_start_offset(&self) -> u64 {
        self.log.log_start_offset()
    }

    /// Next offset to be written: the high watermark (tidelog does not replicate here, so every
    /// appended record is readable).
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Same as [`log_end_offset`](Self::log_end_offset), by Kafka's consumer-side name.
    pub fn high_watermark(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Offsets below this are on disk (fsynced).
    pub fn flushed_offset(&self) -> u64 {
        self.log.flushed_offset()
    }

    /// Bytes of the partition's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The first offset whose timestamp is at least `timestamp`, if any.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        self.topic.check_live()?;
        self.log.offset_for_timestamp(timestamp)
    }

    /// Kafka's `deleteRecords` (`kafka-delete-records.sh`): records below `offset` are no longer
    /// read (the log start offset moves there) and the segments that hold only such records are
    /// deleted. Returns the new log start offset. See [`PartitionLog::delete_records`].
    ///
    /// Errors: [`Error::UnknownTopic`](crate::Error::UnknownTopic) after the topic was deleted,
    /// `offset` past the log end ([`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange)).
    pub fn delete_records(&self, offset: u64) -> Result<u64> {
        self.topic.check_live()?;
        self.log.delete_records(offset)
    }

    /// The underlying log, for what the handle does not cover (raw batch reads and appends).
    pub fn log(&self) -> Result<&PartitionLog> {
        self.topic.check_live()?;
        Ok(&self.log)
    }
}

/// A topic name and a partition number: what a consumer is assigned, seeks and commits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's number.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
