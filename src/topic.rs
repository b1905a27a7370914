//! Topics: names, metadata on disk, and the `Topic` handle.
//!
//! `meta/topics` holds every topic's name, partition count and configuration, replaced
//! atomically (write temp, fsync, rename, fsync dir) on every change:
//!
//! ```text
//! +--------+---------+----------------+-----------+------------------------------------------+
//! | "TLMT" | version | payload length | CRC-32    | payload: bincode (serde) of Vec<TopicMeta> |
//! | 4      | u8 = 1  | u32 BE         | u32 BE    |                                            |
//! +--------+---------+----------------+-----------+------------------------------------------+
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::partition::Partition;
use crate::storage::{fsutil, LogConfig, PartitionLog};

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name as Kafka does: 1 to 249 characters from `[a-zA-Z0-9._-]`, and not `.`
/// or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("a topic name cannot be empty");
    }
    if name == "." || name == ".." {
        return bad("a topic name cannot be `.` or `..`");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("a topic name can have at most 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("a topic name may only contain ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// One topic's entry in `meta/topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub name: String,
    pub partitions: u32,
    pub config: LogConfig,
}

const MAGIC: &[u8; 4] = b"TLMT";
const VERSION: u8 = 1;
/// Most bytes decoding `meta/topics` may claim (bincode counts the in-memory size of what it
/// decodes: about 150 bytes per topic, plus its name). Without a limit, a damaged length prefix
/// makes bincode allocate up to 2^64 bytes for one string before it finds the payload too short.
const DECODE_LIMIT: usize = 64 << 20;
/// Most partitions, over all topics, a `meta/topics` may list: each is a folder with open files,
/// so the process's open-file limit stops a broker long before. A damaged listing of more is
/// refused before anything is allocated or created for it.
const MAX_TOTAL_PARTITIONS: u64 = 1_000_000;

pub(crate) fn read_metadata(path: &Path) -> Result<Vec<TopicMeta>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason: reason.to_string(),
    };
    if bytes.len() < 13 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(corrupt(
            "not a tidelog topic metadata file (bad magic or version)",
        ));
    }
    let len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let crc = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    let payload = &bytes[13..];
    if payload.len() != len || crc32fast::hash(payload) != crc {
        return Err(corrupt("topic metadata fails its length or checksum"));
    }
    let (topics, _): (Vec<TopicMeta>, _) = bincode::serde::decode_from_slice(
        payload,
        bincode::config::standard().with_limit::<DECODE_LIMIT>(),
    )
    .map_err(|e| corrupt(&format!("topic metadata does not decode: {e}")))?;
    // What `create_topic` refuses was not written by tidelog (a hand edit): a name that is not
    // a topic name would put the partition folders elsewhere, zero partitions break sends, and
    // billions of them would be a long attempt to create as many folders.
    let total: u64 = topics.iter().map(|m| u64::from(m.partitions)).sum();
    if total > MAX_TOTAL_PARTITIONS {
        return Err(corrupt(&format!(
            "topic metadata lists {total} partitions, more than the {MAX_TOTAL_PARTITIONS} a \
             broker opens"
        )));
    }
    for meta in &topics {
        let listed = |what: &str| corrupt(&format!("topic `{}` is listed with {what}", meta.name));
        validate_topic_name(&meta.name).map_err(|e| listed(&e.to_string()))?;
        if !(1..=crate::broker::MAX_PARTITIONS).contains(&meta.partitions) {
            return Err(listed(&format!("{} partitions", meta.partitions)));
        }
        meta.config.validate().map_err(|e| listed(&e.to_string()))?;
    }
    Ok(topics)
}

pub(crate) fn write_metadata(path: &Path, topics: &[TopicMeta]) -> Result<()> {
    let payload = bincode::serde::encode_to_vec(topics, bincode::config::standard())
        .map_err(|e| Error::Failed(format!("encoding topic metadata: {e}")))?;
    let mut bytes = Vec::with_capacity(payload.len() + 13);
    bytes.extend_from_slice(MAGIC);
    bytes.push(VERSION);
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    bytes.extend_from_slice(&payload);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    fsutil::write_atomically(path, &bytes, true)
}

/// A topic's live state, shared by every handle to it.
pub(crate) struct TopicState {
    pub name: String,
    pub config: ArcSwap<LogConfig>,
    /// Moves (after `config` is replaced) on every config change, so that a producer can
    /// keep what it read of the config and check it is current with one load.
    pub config_epoch: AtomicU64,
    pub partitions: RwLock<Vec<Arc<PartitionLog>>>,
    pub deleted: AtomicBool,
}

impl TopicState {
    pub fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::UnknownTopic(self.name.clone()));
        }
        Ok(())
    }

    pub fn meta(&self) -> TopicMeta {
        TopicMeta {
            name: self.name.clone(),
            partitions: self.partitions.read().len() as u32,
            config: LogConfig::clone(&self.config.load()),
        }
    }
}

/// A handle to a topic. Cheap to clone; `Send + Sync`. After the topic is deleted, calls return
/// [`Error::UnknownTopic`].
#[derive(Clone)]
pub struct Topic {
    pub(crate) state: Arc<TopicState>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.state.name)
            .field("partitions", &self.partition_count())
            .finish()
    }
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// How many partitions it has.
    pub fn partition_count(&self) -> u32 {
        self.state.partitions.read().len() as u32
    }

    /// Its configuration.
    pub fn config(&self) -> LogConfig {
        LogConfig::clone(&self.state.config.load())
    }

    /// Partition `partition`.
    pub fn partition(&self, partition: u32) -> Result<Partition> {
        self.state.check_live()?;
        let log = self
            .state
            .partitions
            .read()
            .get(partition as usize)
            .cloned();
        match log {
            Some(log) => Ok(Partition {
                topic: Arc::clone(&self.state),
                index: partition,
                log,
            }),
            None => Err(Error::UnknownPartition {
                topic: self.state.name.clone(),
                partition,
            }),
        }
    }

    /// All partitions, in order.
    pub fn partitions(&self) -> Result<Vec<Partition>> {
        self.state.check_live()?;
        let logs = self.state.partitions.read().clone();
        Ok(logs
            .into_iter()
            .enumerate()
            .map(|(i, log)| Partition {
                topic: Arc::clone(&self.state),
                index: i as u32,
                log,
            })
            .collect())
    }

    /// Bytes on disk over all partitions.
    pub fn size_bytes(&self) -> u64 {
        self.state
            .partitions
            .read()
            .iter()
            .map(|p| p.size_bytes())
            .sum()
    }

    /// For each partition, the first offset whose timestamp is at least `timestamp` (Kafka's
    /// `offsetsForTimes`), `None` where every record is older.
    pub fn offsets_for_timestamp(&self, timestamp: i64) -> Result<Vec<Option<u64>>> {
        self.partitions()?
            .iter()
            .map(|p| p.offset_for_timestamp(timestamp))
            .collect()
    }
}

/// What [`Broker::describe_topic`](crate::Broker::describe_topic) returns.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicDescription {
    /// The topic's name.
    pub name: String,
    /// Its configuration.
    pub config: LogConfig,
    /// Each partition's offsets and size.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition in a [`TopicDescription`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition's number.
    pub partition: u32,
    /// First offset still kept.
    pub log_start_offset: u64,
    /// Next offset to be written (the high watermark).
    pub log_end_offset: u64,
    /// Bytes of its segment files.
    pub size_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        for ok in ["a", "orders", "orders.v2", "my_topic-1", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/no",
            "ümlaut",
            &"x".repeat(250),
        ] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(Error::InvalidTopicName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta").join("topics");
        assert!(read_metadata(&path).unwrap().is_empty());
        let topics = vec![TopicMeta {
            name: "t".into(),
            partitions: 3,
            config: LogConfig::default(),
        }];
        write_metadata(&path, &topics).unwrap();
        assert_eq!(read_metadata(&path).unwrap(), topics);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read_metadata(&path), Err(Error::Corrupt { .. })));
    }
}
