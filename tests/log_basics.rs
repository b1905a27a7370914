//! Append, read, roll, reopen and bad input, through the public API.

use std::time::Duration;

use tidelog::{CleanupPolicy, Durability, Error, LogConfig, PartitionLog, Record};

fn small() -> LogConfig {
    LogConfig::default()
        .segment_bytes(4096)
        .index_interval_bytes(256)
        .durability(Durability::None)
}

fn rec(i: u64) -> Record {
    Record::new(format!("key-{i}"), format!("value-{i:06}"))
        .with_timestamp(1_000 + i as i64)
        .with_header("n", i.to_string())
}

fn read_all(log: &PartitionLog, from: u64) -> Vec<tidelog::OffsetRecord> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        let batch = log.read_records(next, 1000).unwrap();
        assert!(!batch.is_empty(), "no progress at offset {next}");
        next = batch.last().unwrap().offset + 1;
        out.extend(batch);
    }
    out
}

#[test]
fn append_returns_consecutive_offsets_and_reads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    let a = log.append(&[rec(0), rec(1), rec(2)]).unwrap();
    assert_eq!(
        (a.base_offset, a.last_offset, a.max_timestamp),
        (0, 2, 1_002)
    );
    let b = log.append(&[rec(3)]).unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 3));
    assert_eq!(log.log_end_offset(), 4);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 4);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.record, rec(i as u64));
    }
    // Reading from the middle of a batch returns the records from that offset on.
    let from_one = log.read_records(1, 1 << 20).unwrap();
    assert_eq!(from_one.first().unwrap().offset, 1);
    // At the end: nothing, no error.
    assert!(log.read(4, 1 << 20).unwrap().is_empty());
}

#[test]
fn tombstones_null_keys_and_headers_survive() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    let records = vec![
        Record::tombstone("gone").with_timestamp(5),
        Record::from_value("no key").with_timestamp(6),
        Record {
            key: None,
            value: None,
            timestamp: 7,
            headers: vec![tidelog::Header {
                key: "h".into(),
                value: None,
            }],
        },
    ];
    log.append(&records).unwrap();
    let got: Vec<Record> = log
        .read_records(0, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(got, records);
}

#[test]
fn rolls_segments_and_reads_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    for i in 0..500 {
        log.append(&[rec(i)]).unwrap();
    }
    assert!(
        log.segment_count() > 5,
        "expected several segments, got {}",
        log.segment_count()
    );
    let got = read_all(&log, 0);
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..500).collect::<Vec<_>>()
    );
    // Every offset can be read directly (index lookups across segments).
    for i in (0..500).step_by(7) {
        assert_eq!(log.read_records(i, 1).unwrap()[0].offset, i);
    }
    // Kafka's file names.
    let mut logs: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(logs[0], "00000000000000000000.log");
    assert!(logs.iter().all(|n| n.len() == 24));
}

#[test]
fn a_small_max_bytes_still_returns_one_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    log.append(&[rec(0), rec(1)]).unwrap();
    log.append(&[rec(2)]).unwrap();
    let data = log.read(0, 1).unwrap();
    assert_eq!(data.batches().count(), 1);
    assert_eq!(data.records().unwrap().len(), 2);
}

#[test]
fn reopen_after_clean_close_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = PartitionLog::open(dir.path(), small()).unwrap();
        for i in 0..300 {
            log.append(&[rec(i)]).unwrap();
        }
        log.close().unwrap();
    }
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.log_end_offset(), 300);
    assert_eq!(log.flushed_offset(), 300);
    assert_eq!(log.append(&[rec(300)]).unwrap().base_offset, 300);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 301);
    assert_eq!(got[299].record, rec(299));
    drop(log);
    // Dropping also closes cleanly.
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.log_end_offset(), 301);
}

#[test]
fn reopen_after_crash_recovers_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    for i in 0..200 {
        log.append(&[rec(i)]).unwrap();
    }
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(read_all(&log, 0).len(), 200);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    for i in 0..400u64 {
        log.append(&[Record::new("k", "v").with_timestamp(10 * i as i64)])
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(-5).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1).unwrap(), Some(1));
    assert_eq!(log.offset_for_timestamp(2_500).unwrap(), Some(250));
    assert_eq!(log.offset_for_timestamp(2_501).unwrap(), Some(251));
    assert_eq!(log.offset_for_timestamp(3_990).unwrap(), Some(399));
    assert_eq!(log.offset_for_timestamp(3_991).unwrap(), None);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.offset_for_timestamp(1_234).unwrap(), Some(124));
}

#[test]
fn truncate_to_drops_the_tail_and_appends_continue_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    for i in 0..300 {
        log.append(&[rec(i)]).unwrap();
    }
    let segments = log.segment_count();
    assert_eq!(log.truncate_to(120).unwrap(), 120);
    assert_eq!(log.log_end_offset(), 120);
    assert!(log.segment_count() < segments);
    assert_eq!(log.append(&[rec(999)]).unwrap().base_offset, 120);
    let got = read_all(&log, 0);
    assert_eq!(got.len(), 121);
    assert_eq!(got[120].record, rec(999));
    assert_eq!(got[119].record, rec(119));
    // Inside a batch: the whole batch goes.
    log.append(&[rec(1), rec(2), rec(3)]).unwrap(); // offsets 121..=123
    assert_eq!(log.truncate_to(122).unwrap(), 121);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.log_end_offset(), 121);
}

/// A small last batch is served from memory (the log's tail copy); it must be the same bytes
/// as the file holds, follow truncation, and never serve a batch the log no longer has.
#[test]
fn the_tail_read_from_memory_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    for i in 0..50 {
        let info = log.append(&[rec(i), rec(i + 1000)]).unwrap();
        // At the tail (served from memory) ...
        let tail = log.read(info.base_offset, 1 << 20).unwrap();
        assert_eq!(tail.next_offset(), info.last_offset + 1);
        let records = tail.records().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].record, rec(i));
        assert_eq!(records[1].record, rec(i + 1000));
        // ... and the same bytes once it is not the tail any more (read from the file).
        log.append(&[rec(99_999)]).unwrap();
        let file = log.read(info.base_offset, 1).unwrap();
        assert_eq!(file.bytes, tail.bytes);
    }
    // Truncation takes the tail back: the same offset then holds the new record.
    let end = log.log_end_offset();
    let info = log.append(&[rec(7)]).unwrap();
    assert_eq!(
        log.read_records(info.base_offset, 1 << 20).unwrap()[0].record,
        rec(7)
    );
    assert_eq!(log.truncate_to(end).unwrap(), end);
    assert!(log.read(end, 1 << 20).unwrap().is_empty());
    let again = log.append(&[rec(8)]).unwrap();
    assert_eq!(again.base_offset, info.base_offset);
    assert_eq!(log.read_records(end, 1 << 20).unwrap()[0].record, rec(8));
    // Truncating below the tail batch: reading there is out of range, not the old copy.
    assert_eq!(log.truncate_to(end - 1).unwrap(), end - 1);
    assert!(log.read(end, 1 << 20).is_err());
}

#[test]
fn out_of_range_reads_name_the_valid_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    log.append(&[rec(0)]).unwrap();
    match log.read(5, 100) {
        Err(Error::OffsetOutOfRange {
            offset: 5,
            log_start_offset: 0,
            log_end_offset: 1,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small().max_message_bytes(1024)).unwrap();
    assert!(matches!(log.append(&[]), Err(Error::InvalidArgument(_))));
    let big = Record::new("k", vec![0u8; 2000]);
    assert!(matches!(
        log.append(&[big]),
        Err(Error::RecordTooLarge { max: 1024, .. })
    ));
    assert_eq!(log.log_end_offset(), 0);

    for bad in [
        LogConfig::default().segment_bytes(10),
        LogConfig::default().index_interval_bytes(0),
        LogConfig::default().min_cleanable_dirty_ratio(1.5),
        LogConfig::default().retention_bytes(Some(0)),
        LogConfig::default().durability(Durability::Interval(Duration::ZERO)),
        LogConfig::default().max_message_bytes(10),
    ] {
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            PartitionLog::open(other.path(), bad),
            Err(Error::InvalidConfig { .. })
        ));
    }

    let compacted = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        compacted.path(),
        small().cleanup_policy(CleanupPolicy::Compact),
    )
    .unwrap();
    assert!(matches!(
        log.append(&[Record::from_value("v")]),
        Err(Error::MissingKey)
    ));
}

#[test]
fn a_second_open_of_the_same_folder_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    match PartitionLog::open(dir.path(), small()) {
        Err(Error::DirectoryLocked { path }) => assert_eq!(path, dir.path()),
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
    drop(log);
    PartitionLog::open(dir.path(), small()).unwrap();
}

#[test]
fn wait_for_offset_wakes_on_append_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(PartitionLog::open(dir.path(), small()).unwrap());
    log.append(&[rec(0)]).unwrap();
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_for_offset(0, Duration::from_secs(10)))
    };
    assert!(waiter.join().unwrap());
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || log.wait_for_offset(1, Duration::from_secs(10)))
    };
    std::thread::sleep(Duration::from_millis(20));
    log.append(&[rec(1)]).unwrap();
    assert!(waiter.join().unwrap(), "an append wakes a waiting reader");
    assert!(!log.wait_for_offset(5, Duration::from_millis(10)));
}

#[test]
fn durability_always_flushes_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let info = log.append(&[rec(0)]).unwrap();
    assert!(info.durable);
    assert_eq!(log.flushed_offset(), 1);
    let lazy = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(lazy.path(), small()).unwrap();
    assert!(!log.append(&[rec(0)]).unwrap().durable);
    assert_eq!(log.flushed_offset(), 0);
    assert_eq!(log.flush().unwrap(), 1);
}

#[test]
fn concurrent_appenders_with_group_commit_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(
        PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(64 << 10)).unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                for i in 0..50u64 {
                    let info = log
                        .append(&[Record::new(format!("t{t}"), i.to_string())])
                        .unwrap();
                    assert!(info.durable && log.flushed_offset() > info.last_offset);
                    offsets.push(info.base_offset);
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    // Per thread, values arrive in order.
    let records = read_all(&log, 0);
    for t in 0..8 {
        let values: Vec<u64> = records
            .iter()
            .filter(|r| r.record.key.as_deref() == Some(format!("t{t}").as_bytes()))
            .map(|r| {
                std::str::from_utf8(r.record.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(values, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn truncation_under_concurrent_readers_neither_crashes_nor_returns_foreign_records() {
    let dir = tempfile::tempdir().unwrap();
    // A one-byte index interval gives every batch an index entry: more than an initial mapping.
    let config = LogConfig::default()
        .segment_bytes(1 << 20)
        .index_interval_bytes(1)
        .durability(Durability::None);
    let log = std::sync::Arc::new(PartitionLog::open(dir.path(), config).unwrap());
    for i in 0..5000 {
        log.append(&[rec(i)]).unwrap();
    }
    log.roll_now().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Errors are allowed while the tail is being cut; wrong records are not.
                    if let Ok(records) = log.read_records(i % 5000, 256) {
                        for r in records {
                            assert_eq!(r.record, rec(r.offset));
                        }
                    }
                    i += 97;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(log.truncate_to(4000).unwrap(), 4000);
    assert_eq!(log.truncate_to(1000).unwrap(), 1000);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(read_all(&log, 0).len(), 1000);
}

#[test]
fn truncation_below_the_log_start_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = small().retention(Some(Duration::from_secs(1)));
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..300 {
        log.append(&[rec(i).with_timestamp(0)]).unwrap();
    }
    log.maintain().unwrap();
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(log.truncate_to(start - 10).unwrap(), start - 10);
    assert_eq!(log.log_start_offset(), start - 10);
    for i in 0..20 {
        log.append(&[rec(i)]).unwrap();
    }
    log.flush().unwrap();
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(
        log.log_start_offset(),
        start - 10,
        "the new log start was checkpointed"
    );
    assert_eq!(read_all(&log, start - 10).len(), 20);
}

#[test]
fn huge_durations_are_not_negative() {
    let dir = tempfile::tempdir().unwrap();
    let config = small()
        .segment_ms(Duration::MAX)
        .durability(Durability::Interval(Duration::MAX));
    let log = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..10 {
        log.append(&[rec(i)]).unwrap();
    }
    assert_eq!(
        log.segment_count(),
        1,
        "segment_ms = MAX never rolls by age"
    );
    assert!(!log.wait_for_offset(100, Duration::from_millis(1)));
}

#[test]
fn produced_batches_must_hold_one_record_per_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small()).unwrap();
    let good = tidelog::RecordBatch::encode(0, &[rec(0), rec(1)]).unwrap();
    assert_eq!(log.append_batch(&good).unwrap().last_offset, 1);
    let mut bytes = good.as_bytes().to_vec();
    bytes[23..27].copy_from_slice(&i32::MAX.to_be_bytes()); // last offset delta
    let crc = crc32c_of(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let bad = tidelog::RecordBatch::from_bytes(bytes.into()).unwrap();
    assert!(matches!(
        log.append_batch(&bad),
        Err(Error::InvalidBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 2);
}

fn crc32c_of(bytes: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: enough for a test.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn truncation_while_durable_appenders_wait_for_fsync_neither_hangs_nor_loses_acknowledged_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(
        PartitionLog::open(dir.path(), LogConfig::default().segment_bytes(64 << 10)).unwrap(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appenders: Vec<_> = (0..8)
        .map(|t| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // (Whether the record is still there depends on the truncations racing it.)
                    assert!(log.append(&[rec(t)]).unwrap().durable);
                    acked += 1;
                }
                acked
            })
        })
        .collect();
    for cut in [50u64, 10, 0] {
        std::thread::sleep(Duration::from_millis(30));
        let end = log.truncate_to(cut).unwrap();
        assert!(end <= cut);
    }
    std::thread::sleep(Duration::from_millis(30));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: u64 = appenders.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(acked > 0);
    // After the last truncation every append is acknowledged only once durable: a clean reopen
    // and an unclean one both keep the whole log.
    let end = log.log_end_offset();
    assert_eq!(log.flushed_offset(), end);
    let log = std::sync::Arc::try_unwrap(log).ok().unwrap();
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0).len() as u64, end);
}

/// Truncating where compaction emptied the offsets below the cut must not give those offsets out
/// again (found by review: the log end went back to the segment's base offset, 0).
#[test]
fn truncation_into_offsets_compaction_removed_never_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = small().cleanup_policy(CleanupPolicy::Compact);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    // Offsets 0..45 all update key "a"; 45 and 46 are the newest of "a" and "b".
    for i in 0..45 {
        log.append(&[Record::new("a", format!("old-{i}")).with_timestamp(1_000)])
            .unwrap();
    }
    log.append(&[Record::new("a", "newest").with_timestamp(1_000)])
        .unwrap();
    log.append(&[Record::new("b", "b").with_timestamp(1_000)])
        .unwrap();
    log.roll_now().unwrap();
    log.append(&[Record::new("c", "c").with_timestamp(1_000)])
        .unwrap(); // offset 47, active segment
    log.compact_at(10_000).unwrap();
    let kept: Vec<u64> = read_all(&log, 0).iter().map(|r| r.offset).collect();
    assert_eq!(
        kept,
        vec![45, 46, 47],
        "compaction kept the newest of each key"
    );

    assert_eq!(
        log.truncate_to(3).unwrap(),
        3,
        "offsets 0..=44 were given out"
    );
    assert_eq!(log.log_end_offset(), 3);
    assert!(read_all(&log, log.log_start_offset()).is_empty());
    assert_eq!(log.append(&[rec(3)]).unwrap().base_offset, 3);
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let got = read_all(&log, log.log_start_offset());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, &got[0].record), (3, &rec(3)));

    // With records kept below the cut: the end is the cut, not the last kept record + 1.
    for i in 4..10 {
        log.append(&[Record::new("d", format!("d-{i}")).with_timestamp(1_000)])
            .unwrap();
    }
    log.append(&[Record::new("e", "e").with_timestamp(1_000)])
        .unwrap(); // offset 10
    log.roll_now().unwrap();
    log.append(&[Record::new("f", "f").with_timestamp(1_000)])
        .unwrap(); // offset 11
    log.compact_at(10_000).unwrap();
    let kept: Vec<u64> = read_all(&log, 3).iter().map(|r| r.offset).collect();
    assert_eq!(kept, vec![3, 9, 10, 11]);
    assert_eq!(log.truncate_to(6).unwrap(), 6);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    // (`read_all` would stop at the hole 4..6, which holds no records.)
    let kept: Vec<u64> = log
        .read_records(3, 1 << 20)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(kept, vec![3]);
    assert!(log.read_records(4, 1 << 20).unwrap().is_empty());
    assert_eq!(log.append(&[rec(6)]).unwrap().base_offset, 6);
}

/// Roll by age counts from the wall clock after a truncation, as after an open: records stamped
/// long ago must not make the next append roll a new segment.
#[test]
fn truncation_does_not_make_old_timestamps_roll_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), small().segment_bytes(1 << 20)).unwrap();
    for i in 0..10 {
        log.append(&[rec(i)]).unwrap(); // timestamps around 1970
    }
    assert_eq!(log.truncate_to(5).unwrap(), 5);
    log.append(&[rec(5)]).unwrap();
    assert_eq!(log.segment_count(), 1);
}
