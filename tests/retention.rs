//! Retention by age and by size.

use std::time::Duration;

use tidelog::{Durability, Error, LogConfig, PartitionLog, Record};

const DAY_MS: i64 = 24 * 3600 * 1000;

fn config() -> LogConfig {
    LogConfig::default()
        .segment_bytes(2048)
        .index_interval_bytes(256)
        .durability(Durability::None)
        .retention(None)
}

#[test]
fn retention_by_age_deletes_old_sealed_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        config().retention(Some(Duration::from_secs(3600))),
    )
    .unwrap();
    let now = 100 * DAY_MS;
    // 200 old records, then 200 new ones.
    for i in 0..200 {
        log.append(&[Record::new("k", format!("old-{i:04}")).with_timestamp(now - 2 * 3_600_000)])
            .unwrap();
    }
    log.roll_now().unwrap();
    for i in 0..200 {
        log.append(&[Record::new("k", format!("new-{i:04}")).with_timestamp(now)])
            .unwrap();
    }
    let report = log.maintain_at(now).unwrap();
    assert!(report.segments_deleted > 0);
    assert_eq!(
        log.log_start_offset(),
        200,
        "every old segment goes, no new one"
    );
    match log.read(10, 100) {
        Err(Error::OffsetOutOfRange {
            offset: 10,
            log_start_offset: 200,
            log_end_offset: 400,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(log.read_records(200, 100).unwrap()[0].offset, 200);
    // The new log start survives a restart.
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_start_offset(), 200);
}

#[test]
fn an_expired_active_segment_is_rolled_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        config().retention(Some(Duration::from_secs(60))),
    )
    .unwrap();
    for i in 0..10 {
        log.append(&[Record::new("k", format!("{i}")).with_timestamp(0)])
            .unwrap();
    }
    log.maintain_at(DAY_MS).unwrap();
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(
        log.append(&[Record::new("k", "x")]).unwrap().base_offset,
        10
    );
}

#[test]
fn retention_by_size_keeps_the_newest_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config().retention_bytes(Some(6000))).unwrap();
    for i in 0..500 {
        log.append(&[Record::new("k", format!("value-{i:06}"))])
            .unwrap();
    }
    let before = log.size_bytes();
    log.maintain().unwrap();
    let after = log.size_bytes();
    assert!(after <= 6000 + 2048, "size {after} (was {before})");
    assert!(
        after >= 6000 - 2048,
        "size {after} (was {before}): deleted too much"
    );
    assert!(log.log_start_offset() > 0);
    let tail = log.read_records(log.log_start_offset(), 1 << 20).unwrap();
    assert_eq!(tail[0].offset, log.log_start_offset());
    assert_eq!(log.log_end_offset(), 500);
}

#[test]
fn no_retention_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    for i in 0..300 {
        log.append(&[Record::new("k", format!("{i}")).with_timestamp(0)])
            .unwrap();
    }
    assert_eq!(log.maintain_at(1000 * DAY_MS).unwrap().segments_deleted, 0);
    assert_eq!(log.log_start_offset(), 0);
}

/// Kafka's `deleteRecords`: the log start moves to the offset asked for, whole segments below it
/// go, reads below it are out of range, and the new start survives a restart (clean or not).
#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    for i in 0..300 {
        log.append(&[Record::new("k", format!("value-{i:04}"))])
            .unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 5);
    let size = log.size_bytes();
    assert_eq!(log.delete_records(150).unwrap(), 150);
    assert_eq!(log.log_start_offset(), 150);
    assert!(log.segment_count() < segments);
    assert!(log.size_bytes() < size);
    match log.read(149, 1 << 20) {
        Err(Error::OffsetOutOfRange {
            offset: 149,
            log_start_offset: 150,
            log_end_offset: 300,
        }) => {}
        other => panic!("{other:?}"),
    }
    let first = log.read_records(150, 1 << 20).unwrap();
    assert!(first.iter().any(|r| r.offset == 150));
    // Never backwards; the end is the limit.
    assert_eq!(log.delete_records(10).unwrap(), 150);
    assert!(matches!(
        log.delete_records(301),
        Err(Error::OffsetOutOfRange { offset: 301, .. })
    ));
    assert_eq!(log.delete_records(200).unwrap(), 200);
    // An unclean stop keeps it too: it was recorded when it moved.
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_start_offset(), 200);
    assert_eq!(log.log_end_offset(), 300);
    // Up to the end: the log is empty and appends go on at the end.
    assert_eq!(log.delete_records(300).unwrap(), 300);
    assert_eq!(
        log.append(&[Record::new("k", "next")]).unwrap().base_offset,
        300
    );
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    assert_eq!(log.log_start_offset(), 300);
    assert_eq!(log.read_records(300, 1 << 20).unwrap().len(), 1);
}
