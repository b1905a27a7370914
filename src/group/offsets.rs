//! Committed offsets as records of the internal topic `__consumer_offsets`, in Kafka's own key and
//! value layout, so that Kafka's tools read a tidelog directory's commits.
//!
//! Every commit is one record whose key names (group, topic, partition) and whose value holds
//! the offset; the topic is compacted, so the newest commit of each partition survives, and a
//! null value (a tombstone) forgets it (group deletion, offsets of a deleted topic). Big-endian,
//! strings as an `i16` length and UTF-8 bytes:
//!
//! ```text
//! key, offset commit (version 1; version 0 is the same)
//!   0       2           2+2+G           4+G+2+T
//!   +-------+-----+-----+-----+-----+-----------+
//!   | i16 1 | i16 G| group| i16 T| topic| i32 partition |
//!   +-------+-----+-----+-----+-----+-----------+
//!
//! value (version 3, what tidelog writes)
//!   +-------+------------+------------------+-------+----------+---------------------+
//!   | i16 3 | i64 offset | i32 leader epoch | i16 M | metadata | i64 commit timestamp |
//!   +-------+------------+------------------+-------+----------+---------------------+
//!   leader epoch is -1 (none); the timestamp is milliseconds since the epoch.
//! ```
//!
//! Values of versions 0 to 2, which older Kafka brokers wrote, are read too:
//! v0 `offset, metadata, timestamp`; v1 `offset, metadata, commit timestamp, expire timestamp`;
//! v2 `offset, metadata, commit timestamp`. Keys of version 2 (group metadata) are skipped:
//! membership lives only in memory, with the consumers of the process.

use crate::error::{Error, Result};
use crate::partition::TopicPartition;

/// The internal topic that holds committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Longest metadata string a commit may carry (Kafka's `offset.metadata.max.bytes`).
pub const MAX_METADATA_BYTES: usize = 4096;

/// A committed offset: the offset of the next record the group will read from the partition,
/// with an application's note (Kafka's `OffsetAndMetadata`).
///
/// ```
/// use tidelog::OffsetAndMetadata;
///
/// let committed = OffsetAndMetadata::new(42).with_metadata("batch 7");
/// assert_eq!(committed.offset, 42);
/// assert_eq!(committed.metadata, "batch 7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OffsetAndMetadata {
    /// The next offset to read: one past the last record processed.
    pub offset: u64,
    /// Free text stored with the offset (at most 4096 bytes), for example a processing note.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// `offset` without metadata.
    pub fn new(offset: u64) -> Self {
        OffsetAndMetadata {
            offset,
            metadata: String::new(),
        }
    }

    /// The same offset with `metadata`.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// What a record of `__consumer_offsets` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetsRecord {
    /// A committed offset (`None`: a tombstone, the commit is forgotten).
    Commit {
        group: String,
        partition: TopicPartition,
        value: Option<OffsetAndMetadata>,
    },
    /// Something tidelog does not keep (group metadata, or a format of a newer Kafka).
    Other,
}

/// The partition of `__consumer_offsets` that holds `group`'s commits, as Kafka picks it:
/// `Utils.abs(group.hashCode()) % partitions`, with Java's `String.hashCode` over UTF-16 code
/// units and Kafka's `Utils.abs` (`Integer.MIN_VALUE` maps to 0).
pub(crate) fn partition_for_group(group: &str, partitions: u32) -> u32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    abs % partitions.max(1)
}

pub(crate) fn check_metadata(metadata: &str) -> Result<()> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(Error::InvalidArgument(format!(
            "offset metadata of {} bytes is longer than the {MAX_METADATA_BYTES} allowed",
            metadata.len()
        )));
    }
    Ok(())
}

/// The key of `group`'s commit for `partition` (version 1).
pub(crate) fn encode_key(group: &str, partition: &TopicPartition) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + group.len() + partition.topic.len());
    key.extend_from_slice(&1i16.to_be_bytes());
    put_string(&mut key, group);
    put_string(&mut key, &partition.topic);
    key.extend_from_slice(&(partition.partition as i32).to_be_bytes());
    key
}

/// The value of a commit (version 3).
pub(crate) fn encode_value(committed: &OffsetAndMetadata, timestamp: i64) -> Vec<u8> {
    let mut value = Vec::with_capacity(24 + committed.metadata.len());
    value.extend_from_slice(&3i16.to_be_bytes());
    value.extend_from_slice(&(committed.offset as i64).to_be_bytes());
    value.extend_from_slice(&(-1i32).to_be_bytes());
    put_string(&mut value, &committed.metadata);
    value.extend_from_slice(&timestamp.to_be_bytes());
    value
}

/// Decodes one record of `__consumer_offsets`.
pub(crate) fn decode(key: &[u8], value: Option<&[u8]>) -> Result<OffsetsRecord> {
    let mut k = Reader(key);
    let version = k.i16()?;
    if !(0..=1).contains(&version) {
        return Ok(OffsetsRecord::Other);
    }
    let group = k.string()?;
    let topic = k.string()?;
    let partition = k.i32()?;
    if partition < 0 {
        return Err(bad("negative partition"));
    }
    let partition = TopicPartition::new(topic, partition as u32);
    let Some(value) = value else {
        return Ok(OffsetsRecord::Commit {
            group,
            partition,
            value: None,
        });
    };
    let mut v = Reader(value);
    let version = v.i16()?;
    let offset = v.i64()?;
    let metadata = match version {
        0..=2 => v.string()?,
        3 => {
            v.i32()?; // leader epoch
            v.string()?
        }
        _ => return Ok(OffsetsRecord::Other),
    };
    if offset < 0 {
        return Err(bad("negative offset"));
    }
    Ok(OffsetsRecord::Commit {
        group,
        partition,
        value: Some(OffsetAndMetadata {
            offset: offset as u64,
            metadata,
        }),
    })
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    // Group ids, topic names (at most 249 bytes) and metadata (at most 4096) fit an i16.
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn bad(what: &str) -> Error {
    Error::InvalidArgument(format!("malformed __consumer_offsets record: {what}"))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad("too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.i16()?;
        if len < 0 {
            return Err(bad("negative string length"));
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_kafkas() {
        let tp = TopicPartition::new("t", 3);
        assert_eq!(
            encode_key("g", &tp),
            [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3]
        );
        let v = encode_value(&OffsetAndMetadata::new(5).with_metadata("m"), 7);
        assert_eq!(
            v,
            [
                0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 255, 255, 255, 255, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 0,
                7
            ]
        );
    }

    #[test]
    fn reads_older_value_versions_and_skips_group_metadata() {
        // v1: offset, metadata, commit timestamp, expire timestamp.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&1i64.to_be_bytes());
        v1.extend_from_slice(&2i64.to_be_bytes());
        let key = encode_key("g", &TopicPartition::new("t", 0));
        assert_eq!(
            decode(&key, Some(&v1)).unwrap(),
            OffsetsRecord::Commit {
                group: "g".into(),
                partition: TopicPartition::new("t", 0),
                value: Some(OffsetAndMetadata::new(9)),
            }
        );
        assert_eq!(
            decode(&[0, 2, 0, 1, b'g'], Some(b"x")).unwrap(),
            OffsetsRecord::Other
        );
        assert!(decode(&[0, 1, 0], None).is_err());
    }

    #[test]
    fn group_partition_matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322.
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        // "billing".hashCode() == -109829509: Utils.abs gives 109829509, partition 9 (Kafka's).
        assert_eq!(partition_for_group("billing", 50), 9);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs maps it to 0.
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        assert_eq!(partition_for_group("anything", 1), 0);
    }

    proptest! {
        #[test]
        fn round_trip(group in "\\PC{1,40}", topic in "[a-z._-]{1,30}", p in 0u32..1000,
                      offset in 0u64..=i64::MAX as u64, metadata in "\\PC{0,50}", ts in any::<i64>()) {
            let tp = TopicPartition::new(topic, p);
            let committed = OffsetAndMetadata::new(offset).with_metadata(metadata);
            let decoded = decode(&encode_key(&group, &tp), Some(&encode_value(&committed, ts))).unwrap();
            prop_assert_eq!(decoded, OffsetsRecord::Commit { group, partition: tp, value: Some(committed) });
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(key in proptest::collection::vec(any::<u8>(), 0..40),
                                            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))) {
            let _ = decode(&key, value.as_deref());
        }
    }
}
