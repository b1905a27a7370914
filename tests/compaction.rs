//! Compaction keeps the newest record of each key, never changes offsets, and drops old
//! tombstones.

use std::collections::BTreeMap;
use std::time::Duration;

use tidelog::{CleanupPolicy, Durability, LogConfig, OffsetRecord, PartitionLog, Record};

fn config() -> LogConfig {
    LogConfig::default()
        .segment_bytes(2048)
        .index_interval_bytes(256)
        .durability(Durability::None)
        .cleanup_policy(CleanupPolicy::Compact)
        .delete_retention(Duration::from_secs(60))
        .min_cleanable_dirty_ratio(0.0)
}

fn all(log: &PartitionLog) -> Vec<OffsetRecord> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 20).unwrap();
        out.extend(data.records().unwrap());
        next = data.next_offset();
    }
    out
}

#[test]
fn keeps_the_newest_value_of_each_key_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let now = 1_000_000_000;
    let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for i in 0..600u64 {
        let key = format!("key-{}", i % 17);
        let value = format!("value-{i}");
        let info = log
            .append(&[Record::new(key.clone(), value.clone()).with_timestamp(now)])
            .unwrap();
        newest.insert(key, (info.base_offset, value));
    }
    let active_base = {
        log.roll_now().unwrap();
        log.log_end_offset()
    };
    let before = log.size_bytes();
    let removed = log.compact_at(now).unwrap();
    assert!(removed > 500, "removed {removed}");
    assert!(log.size_bytes() < before / 4);
    let records = all(&log);
    assert_eq!(records.len(), 17);
    for r in &records {
        let key = String::from_utf8(r.record.key.clone().unwrap().to_vec()).unwrap();
        let (offset, value) = &newest[&key];
        assert_eq!(r.offset, *offset, "offsets never change");
        assert_eq!(r.record.value.as_deref(), Some(value.as_bytes()));
    }
    assert_eq!(log.log_end_offset(), active_base);
    // Still true after a restart, and appends continue at the same offset.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(all(&log).len(), 17);
    assert_eq!(
        log.append(&[Record::new("key-1", "again")])
            .unwrap()
            .base_offset,
        600
    );
}

#[test]
fn tombstones_are_kept_for_delete_retention_then_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    let t0 = 1_000_000_000;
    for i in 0..100u64 {
        log.append(&[Record::new(format!("k{}", i % 5), "v").with_timestamp(t0)])
            .unwrap();
    }
    log.append(&[Record::tombstone("k0").with_timestamp(t0)])
        .unwrap();
    log.roll_now().unwrap();
    log.compact_at(t0 + 1_000).unwrap();
    let records = all(&log);
    assert_eq!(
        records.len(),
        5,
        "k0's tombstone stays within delete_retention"
    );
    assert!(records
        .iter()
        .any(|r| r.record.key.as_deref() == Some(b"k0") && r.record.value.is_none()));
    log.compact_at(t0 + 61_000).unwrap();
    let records = all(&log);
    assert_eq!(records.len(), 4, "and is gone after it");
    assert!(records
        .iter()
        .all(|r| r.record.key.as_deref() != Some(b"k0")));
}

#[test]
fn the_active_segment_is_never_compacted_and_the_dirty_ratio_gates_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config().min_cleanable_dirty_ratio(0.5)).unwrap();
    for i in 0..10u64 {
        log.append(&[Record::new("same", format!("{i}"))]).unwrap();
    }
    // One segment only: nothing to clean.
    assert!(!log.maintain().unwrap().compacted);
    assert_eq!(all(&log).len(), 10);
    log.roll_now().unwrap();
    let report = log.maintain().unwrap();
    assert!(report.compacted);
    assert_eq!(report.records_removed, 9);
    // Clean now: the ratio is 0 until new segments are sealed.
    assert!(!log.maintain().unwrap().compacted);
}

#[test]
fn batches_keep_their_offset_range_when_records_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    log.append(&[
        Record::new("a", "1"),
        Record::new("b", "1"),
        Record::new("a", "2"),
    ])
    .unwrap();
    log.append(&[Record::new("b", "2")]).unwrap();
    log.roll_now().unwrap();
    log.compact_at(0).unwrap();
    let data = log.read(0, 1 << 20).unwrap();
    let batches: Vec<_> = data.batches().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (
            batches[0].header().base_offset,
            batches[0].header().last_offset()
        ),
        (0, 2)
    );
    let offsets: Vec<u64> = data.records().unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![2, 3]);
}

#[test]
fn readers_move_past_batches_whose_last_records_were_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    // Offsets 0..=2 in one batch; the batch's last record (offset 2) is superseded by offset 3.
    log.append(&[
        Record::new("a", "1"),
        Record::new("b", "1"),
        Record::new("c", "old"),
    ])
    .unwrap();
    log.append(&[Record::new("c", "new")]).unwrap();
    log.roll_now().unwrap();
    log.compact_at(0).unwrap();
    let data = log.read(2, 1).unwrap(); // one batch: 0..=2
    assert!(data.records().unwrap().is_empty(), "offset 2 is gone");
    assert_eq!(
        data.next_offset(),
        3,
        "but the reader is told to go on at 3"
    );
    let values: Vec<_> = all(&log).into_iter().map(|r| r.offset).collect();
    assert_eq!(values, vec![0, 1, 3]);
}
