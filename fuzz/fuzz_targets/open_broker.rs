//! Any broker directory, however damaged, either opens or is refused with an error; it never
//! panics, hangs or allocates without bound. A directory that opens lists its topics, reads every
//! partition from its log start to its log end (before and after a maintenance run at a fixed
//! clock), answers committed-offset and group questions, gives a Connect runtime its source
//! offsets, closes, and opens again.
//!
//! The directory starts from a template that a real broker wrote once per process (deterministic:
//! fixed timestamps, commits written as Kafka's records): `meta/topics` with topic `t` (2
//! partitions of 2 segments each), `__consumer_offsets` with commits of groups `g` and `old`,
//! `__connect_offsets` with a source offset, each partition's `tidelog.checkpoint`, a Streams
//! state snapshot. Entries of the input then damage it, mostly its metadata files.
//!
//! Input: a flags byte, then up to six file entries. Flags: bit 0 reseals `meta/topics` (its
//! payload length and CRC-32) after the entries are applied, so that mutations reach the topic
//! metadata decoder; bit 1 reseals the CRC-32 of every 44-byte `tidelog.checkpoint`; bit 2 reseals
//! the CRC-32C of every batch of the `.log` files; bit 3 starts from an empty directory instead of
//! the template. Entry: name index, operation (write, truncate, xor-patch, remove, overwrite at),
//! u16 big-endian length, bytes.
#![no_main]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{crc32_ieee, patch, seal_crcs, set_len, Patch, TempDir};
use libfuzzer_sys::fuzz_target;
use tidelog::{
    Broker, BrokerConfig, Connect, ConsumerConfig, Durability, LogConfig, Record, TopicPartition,
};

/// Files the entries can touch, relative to the broker directory (`meta/topics` three times, so
/// that a third of the entries go to it).
const NAMES: &[&str] = &[
    "meta/topics",
    "meta/topics",
    "meta/topics",
    "t-0/tidelog.checkpoint",
    "t-1/tidelog.checkpoint",
    "__consumer_offsets-0/00000000000000000000.log",
    "__consumer_offsets-0/tidelog.checkpoint",
    "__consumer_offsets-0/00000000000000000000.index",
    "__connect_offsets-0/00000000000000000000.log",
    "__connect_offsets-0/tidelog.checkpoint",
    "t-0/00000000000000000000.log",
    "t-0/00000000000000000000.index",
    "t-0/00000000000000000013.index",
    "t-1/00000000000000000013.log",
    "t-1/00000000000000000000.timeindex",
    "streams-state/app/0_0/counts.snapshot",
    "LOCK",
    "t-2/00000000000000000000.log",
    "old-0.1-delete/00000000000000000000.log",
    "meta/topics.tmp",
];
const METADATA: &str = "meta/topics";
const CHECKPOINT: &str = "tidelog.checkpoint";
/// Record timestamps and the clock of maintenance runs: fixed, so that runs repeat.
const TS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut entries = Vec::new();
    while entries.len() < 6 && rest.len() >= 4 {
        let name = NAMES[usize::from(rest[0]) % NAMES.len()];
        let op = rest[1] % 5;
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        entries.push((name, op, &rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
    let root = TempDir::new("open-broker");
    let dir = root.0.join("a").join("data");
    std::fs::create_dir_all(&dir).expect("creating the broker folder");
    if flags & 8 == 0 {
        for (path, bytes) in template() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("creating a template folder");
            }
            std::fs::write(&path, bytes).expect("writing a template file");
        }
    }
    for &(name, op, bytes) in &entries {
        apply(&dir, name, op, bytes);
    }
    if flags & 1 != 0 {
        seal_metadata(&dir.join(METADATA));
    }
    for path in files(&dir) {
        let name = path.to_string_lossy();
        if flags & 2 != 0 && name.ends_with(CHECKPOINT) {
            seal_checkpoint(&path);
        }
        if flags & 4 != 0 && name.ends_with(".log") {
            seal_crcs(&path);
        }
    }
    if exercise(&dir) {
        assert!(
            exercise(&dir),
            "the directory opened once and was closed, but does not open again"
        );
    }
    // Nothing may be created beside the directory (a topic name from `meta/topics` is a path).
    let beside: Vec<_> = std::fs::read_dir(root.0.join("a"))
        .expect("listing the folder above the broker's")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(beside, ["data"], "the broker wrote outside its directory");
});

/// Opens the directory and uses it; whether it opened.
fn exercise(dir: &Path) -> bool {
    let Ok(broker) = Broker::open(dir) else {
        return false;
    };
    let mut names = broker.topics();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "topics not sorted");
    names.extend(["__consumer_offsets", "__connect_offsets"].map(String::from));
    let mut all = Vec::new();
    for name in &names {
        let Ok(topic) = broker.topic(name) else {
            continue;
        };
        let description = broker
            .describe_topic(name)
            .expect("describing a listed topic");
        assert_eq!(
            description.partitions.len(),
            topic.partition_count() as usize
        );
        let Ok(partitions) = topic.partitions() else {
            continue;
        };
        for p in partitions {
            all.push(TopicPartition::new(name, p.partition()));
            let Ok(log) = p.log() else {
                continue;
            };
            read_all(log);
            let _ = p.offset_for_timestamp(TS);
            if log.maintain_at(TS + 1000).is_ok() {
                read_all(log);
            }
        }
    }
    let mut groups: Vec<String> = broker
        .list_groups()
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    groups.push("g".into());
    for group in &groups {
        let _ = broker.describe_group(group);
        if let Ok(lag) = broker.group_lag(group) {
            for row in lag {
                if let (Some(committed), Some(lag)) = (row.committed, row.lag) {
                    assert_eq!(lag, row.log_end_offset.saturating_sub(committed));
                }
            }
        }
        // A damaged offsets topic can name a group the consumer API refuses (empty, or longer
        // than 1024 bytes: Kafka's records allow both): a typed error, not a consumer.
        let consumer = match broker.consumer(ConsumerConfig::default().group_id(group.as_str())) {
            Ok(consumer) => consumer,
            Err(tidelog::Error::InvalidConfig {
                key: "group_id", ..
            }) => continue,
            Err(e) => panic!("a consumer of group {group:?}: {e}"),
        };
        let committed = consumer.committed(&all).expect("committed offsets");
        assert_eq!(committed.len(), all.len());
    }
    if let Ok(connect) = Connect::new(&broker) {
        let _ = connect.source_offsets("src");
    }
    drop(broker);
    true
}

/// Reads a log from its start to its end.
fn read_all(log: &tidelog::PartitionLog) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} past log end {end}");
    let mut next = start;
    for _ in 0..1000 {
        if next >= end {
            break;
        }
        let Ok(records) = log.read_records(next, 4096) else {
            break;
        };
        let Some(last) = records.last() else {
            break;
        };
        assert!(
            last.offset >= next && last.offset < end,
            "read at {next} returned offset {} (log end {end})",
            last.offset
        );
        next = last.offset + 1;
    }
}

/// The template's files (path relative to the directory, content), written once per process.
fn template() -> &'static [(PathBuf, Vec<u8>)] {
    static TEMPLATE: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let root = TempDir::new("open-broker");
        write_template(&root.0);
        check_template(&root.0);
        files(&root.0)
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).expect("reading a template file");
                let rel = path.strip_prefix(&root.0).expect("inside").to_path_buf();
                (rel, bytes)
            })
            .collect()
    })
}

fn write_template(dir: &Path) {
    let small = LogConfig::default()
        .durability(Durability::None)
        .segment_bytes(1024)
        .max_index_bytes(4096)
        .index_interval_bytes(64)
        .retention(None);
    let config = BrokerConfig::default()
        .topic_defaults(small.clone())
        .offsets_topic_config(small);
    let broker = Broker::open_with(dir, config).expect("opening the template");
    broker.create_topic("t", 2).expect("creating topic t");
    for i in 0..40u32 {
        let record = Record::new(format!("k{}", i % 7), format!("value {i}"))
            .with_timestamp(TS + i64::from(i));
        let record = if i % 5 == 0 {
            record.with_header("h", "v")
        } else {
            record
        };
        let p = broker.partition("t", i % 2).expect("partition");
        p.log().expect("log").append(&[record]).expect("append");
    }
    // A group join creates `__consumer_offsets`; the commits are written as Kafka's records with
    // a fixed timestamp (a consumer's commit would carry the time of day).
    let mut consumer = broker
        .consumer(
            ConsumerConfig::default()
                .group_id("g")
                .enable_auto_commit(false),
        )
        .expect("consumer");
    consumer.subscribe(&["t"]).expect("subscribe");
    consumer.close().expect("close");
    let commits = [
        Record::new(commit_key("g", "t", 0), commit_value(5, "m")),
        Record::new(commit_key("g", "t", 1), commit_value(3, "")),
        Record::new(commit_key("old", "t", 0), commit_value(1, "")),
        Record::tombstone(commit_key("old", "t", 0)),
        Record::new(commit_key("g", "t", 1), commit_value(7, "later")),
    ];
    let offsets = broker.partition("__consumer_offsets", 0).expect("offsets");
    for r in commits {
        offsets
            .log()
            .expect("log")
            .append(&[r.with_timestamp(TS)])
            .expect("commit");
    }
    drop(Connect::new(&broker).expect("connect"));
    let connect = broker.partition("__connect_offsets", 0).expect("connect");
    connect
        .log()
        .expect("log")
        .append(&[Record::new(
            &br#"["src",{"filename":"/a"}]"#[..],
            &br#"{"position":8}"#[..],
        )
        .with_timestamp(TS)])
        .expect("source offset");
    drop(broker);
    let mut snapshot = b"TLSS\x01".to_vec();
    snapshot.extend_from_slice(&7u64.to_be_bytes());
    snapshot.extend_from_slice(&1u64.to_be_bytes());
    for part in [&b"k1"[..], &b"\0\0\0\0\0\0\0\x02"[..]] {
        snapshot.extend_from_slice(&(part.len() as u32).to_be_bytes());
        snapshot.extend_from_slice(part);
    }
    let crc = crc32_ieee(&snapshot);
    snapshot.extend_from_slice(&crc.to_be_bytes());
    let path = dir.join("streams-state/app/0_0/counts.snapshot");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("state folder");
    std::fs::write(path, snapshot).expect("snapshot");
}

/// The template holds what it is meant to, so that the entries damage a full directory.
fn check_template(dir: &Path) {
    let segments = files(dir)
        .iter()
        .filter(|p| p.starts_with(dir.join("t-0")) && p.extension() == Some("log".as_ref()))
        .count();
    assert!(
        segments >= 2,
        "topic t has {segments} segments in partition 0"
    );
    let broker = Broker::open(dir).expect("reopening the template");
    let consumer = broker
        .consumer(ConsumerConfig::default().group_id("g"))
        .expect("consumer");
    let committed = consumer
        .committed(&[TopicPartition::new("t", 0), TopicPartition::new("t", 1)])
        .expect("committed");
    let offsets: Vec<_> = committed
        .iter()
        .map(|c| c.as_ref().map(|c| c.offset))
        .collect();
    assert_eq!(offsets, [Some(5), Some(7)], "the template's commits");
    assert_eq!(broker.list_groups().len(), 1, "the template's groups");
    let connect = Connect::new(&broker).expect("connect");
    assert_eq!(
        connect.source_offsets("src").expect("source offsets").len(),
        1
    );
}

/// A commit key of `__consumer_offsets` (version 1).
fn commit_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = 1i16.to_be_bytes().to_vec();
    for s in [group, topic] {
        k.extend_from_slice(&(s.len() as i16).to_be_bytes());
        k.extend_from_slice(s.as_bytes());
    }
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// A commit value of `__consumer_offsets` (version 3).
fn commit_value(offset: i64, metadata: &str) -> Vec<u8> {
    let mut v = 3i16.to_be_bytes().to_vec();
    v.extend_from_slice(&offset.to_be_bytes());
    v.extend_from_slice(&(-1i32).to_be_bytes());
    v.extend_from_slice(&(metadata.len() as i16).to_be_bytes());
    v.extend_from_slice(metadata.as_bytes());
    v.extend_from_slice(&TS.to_be_bytes());
    v
}

fn apply(dir: &Path, name: &str, op: u8, bytes: &[u8]) {
    let path = dir.join(name);
    match op {
        0 => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&path, bytes);
        }
        1 => set_len(&path, bytes),
        3 => {
            let _ = std::fs::remove_file(&path);
        }
        2 => patch(&path, Patch::Xor, bytes),
        4 => patch(&path, Patch::Extend, bytes),
        _ => patch(&path, Patch::Overwrite, bytes),
    }
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(list) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in list.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Sets the payload length and CRC-32 of a `meta/topics` file (see `src/topic.rs`).
fn seal_metadata(path: &Path) {
    let Ok(mut content) = std::fs::read(path) else {
        return;
    };
    if content.len() < 13 {
        return;
    }
    let len = (content.len() - 13) as u32;
    let crc = crc32_ieee(&content[13..]);
    content[5..9].copy_from_slice(&len.to_be_bytes());
    content[9..13].copy_from_slice(&crc.to_be_bytes());
    let _ = std::fs::write(path, content);
}

/// Sets the CRC-32 of a 44-byte `tidelog.checkpoint` (see `src/storage/checkpoint.rs`).
fn seal_checkpoint(path: &Path) {
    let Ok(mut content) = std::fs::read(path) else {
        return;
    };
    if content.len() != 44 {
        return;
    }
    let crc = crc32_ieee(&content[..40]);
    content[40..44].copy_from_slice(&crc.to_be_bytes());
    let _ = std::fs::write(path, content);
}
