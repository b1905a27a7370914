//! `ConsumerRecord` and `ConsumerRecords`: what a poll returns.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::TimestampType;
use crate::partition::TopicPartition;
use crate::record::Header;

/// One record as a consumer receives it: where it is (topic, partition, offset) and what it
/// holds. Kafka's `ConsumerRecord`.
///
/// Key, value and header values are [`Bytes`] that share the buffer the record was fetched in:
/// nothing is copied on the way out of the log, and keeping one record keeps its buffer (up to
/// `max_partition_fetch_bytes`) alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch; see `timestamp_type` for what it means.
    pub timestamp: i64,
    /// Whether `timestamp` is the producer's (`CreateTime`) or the log's (`LogAppendTime`).
    pub timestamp_type: TimestampType,
    /// The key, `None` for a record without one.
    pub key: Option<Bytes>,
    /// The value, `None` for a tombstone.
    pub value: Option<Bytes>,
    /// The headers, in order; names may repeat.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }

    /// Whether the record is a tombstone (no value).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The records of one poll: up to `max_poll_records`, from one or more partitions, in offset
/// order within each partition. Kafka's `ConsumerRecords`.
///
/// Iterate it (by reference or by value), or take one partition's records with
/// [`records`](Self::records).
///
/// ```
/// # use tidelog::{Broker, Consumer, ConsumerConfig, OffsetReset, Record, TopicPartition};
/// # use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let broker = Broker::open(dir.path())?;
/// # broker.create_topic("t", 2)?;
/// # broker.partition("t", 1)?.log()?.append(&[Record::new("k", "v")])?;
/// # let mut consumer = Consumer::new(&broker, ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
/// # consumer.subscribe(&["t"])?;
/// let records = consumer.poll(Duration::from_secs(1))?;
/// for tp in records.partitions() {
///     for record in records.records(&tp) {
///         println!("{tp} @ {}: {:?}", record.offset, record.value);
///     }
/// }
/// assert_eq!(records.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ConsumerRecords {
    records: Vec<ConsumerRecord>,
    /// Each partition's records are one contiguous run of `records`.
    runs: Vec<(Arc<str>, u32, Range<usize>)>,
}

impl ConsumerRecords {
    pub(crate) fn new(
        records: Vec<ConsumerRecord>,
        runs: Vec<(Arc<str>, u32, Range<usize>)>,
    ) -> Self {
        ConsumerRecords { records, runs }
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none (the poll timed out).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// All records: partition after partition, each in offset order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConsumerRecord> {
        self.records.iter()
    }

    /// The partitions that have records here, in the order they come.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.runs
            .iter()
            .map(|(topic, p, _)| TopicPartition::new(&**topic, *p))
            .collect()
    }

    /// The records of one partition, in offset order (empty if it has none here).
    pub fn records(&self, tp: &TopicPartition) -> &[ConsumerRecord] {
        self.runs
            .iter()
            .find(|(topic, p, _)| *p == tp.partition && **topic == *tp.topic)
            .map_or(&[], |(_, _, run)| &self.records[run.clone()])
    }

    /// The records as a slice.
    pub fn as_slice(&self) -> &[ConsumerRecord] {
        &self.records
    }

    /// The records as a vector.
    pub fn into_vec(self) -> Vec<ConsumerRecord> {
        self.records
    }
}

impl IntoIterator for ConsumerRecords {
    type Item = ConsumerRecord;
    type IntoIter = std::vec::IntoIter<ConsumerRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConsumerRecords {
    type Item = &'a ConsumerRecord;
    type IntoIter = std::slice::Iter<'a, ConsumerRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}
