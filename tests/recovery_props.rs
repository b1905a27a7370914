//! Recovery after an unclean stop: "append, crash, lose or damage anything that was not flushed,
//! reopen: a prefix of what was appended is there, and everything flushed is there".
//!
//! The property test drives a log with random appends, flushes, rolls and maintenance, crashes it,
//! then damages the files only where a power cut could (past the first unflushed batch, and the
//! index files, which are a cache), and compares what reopening finds with a plain `Vec` model.
//! The deterministic tests cover damage below the recovery point (`RecoveryMode`), a lost or
//! garbled checkpoint, and the junk files that opening cleans up.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use tidelog::{Durability, Error, LogConfig, OffsetRecord, PartitionLog, Record, RecoveryMode};

use support::{batches_in, BatchAt};

const BASE_TS: i64 = 1_700_000_000_000;

fn config(segment_bytes: u64, index_interval: u64) -> LogConfig {
    LogConfig::default()
        .segment_bytes(segment_bytes)
        .max_message_bytes(segment_bytes as usize)
        .index_interval_bytes(index_interval)
        .durability(Durability::None)
        .retention(None)
}

/// Every record from the log start offset to the log end offset.
fn read_all(log: &PartitionLog) -> Vec<OffsetRecord> {
    let mut out: Vec<OffsetRecord> = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let got = log
            .read_records(next, 4096)
            .unwrap_or_else(|e| panic!("reading at offset {next}: {e}"));
        let Some(last) = got.last() else {
            panic!("no progress reading at offset {next}")
        };
        next = last.offset + 1;
        out.extend(got);
    }
    out
}

/// The `.log` files of `dir`, by base offset.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// The `.log` file and byte position of the batch holding `offset`.
fn locate(dir: &Path, offset: u64) -> Option<(PathBuf, BatchAt)> {
    segment_files(dir).into_iter().find_map(|path| {
        batches_in(&path)
            .into_iter()
            .find(|b| b.last_offset >= offset)
            .map(|b| (path, b))
    })
}

fn record(i: usize, value_len: usize, with_key: bool, headers: u8) -> Record {
    let value: String = (0..value_len)
        .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
        .collect();
    let mut r = if with_key {
        Record::new(format!("key-{i}"), value)
    } else {
        Record::from_value(value)
    };
    r = r.with_timestamp(BASE_TS + (i as i64) * 3);
    for h in 0..headers {
        r = r.with_header(format!("h{h}"), format!("{i}/{h}"));
    }
    r
}

#[derive(Debug, Clone)]
enum Op {
    /// One batch; per record: value length, whether it has a key, number of headers.
    Append(Vec<(usize, bool, u8)>),
    Flush,
    Roll,
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0usize..200, any::<bool>(), 0u8..3), 1..5).prop_map(Op::Append),
        2 => Just(Op::Flush),
        1 => Just(Op::Roll),
        1 => Just(Op::Maintain),
    ]
}

/// What a power cut does to the files. Segment and byte choices are fractions (`u16`), resolved
/// against the files as they are after the crash.
#[derive(Debug, Clone)]
enum Damage {
    /// Nothing beyond the crash itself.
    Nothing,
    /// Cut a segment at or after the first unflushed batch; maybe delete every later segment.
    Cut {
        segment: u16,
        position: u16,
        delete_later: bool,
    },
    /// Overwrite a few bytes at or after the first unflushed batch.
    Overwrite { segment: u16, bytes: Vec<(u16, u8)> },
    /// Delete, empty, truncate or garble index files of any segment.
    Indexes(Vec<(u16, bool, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::Nothing),
        3 => (any::<u16>(), any::<u16>(), any::<bool>())
            .prop_map(|(segment, position, delete_later)| Damage::Cut { segment, position, delete_later }),
        3 => (any::<u16>(), prop::collection::vec((any::<u16>(), any::<u8>()), 1..4))
            .prop_map(|(segment, bytes)| Damage::Overwrite { segment, bytes }),
        2 => prop::collection::vec((any::<u16>(), any::<bool>(), any::<u8>()), 1..4).prop_map(Damage::Indexes),
    ]
}

/// `fraction` of `0..n`, as an index (`n > 0`).
fn pick(fraction: u16, n: u64) -> u64 {
    u64::from(fraction) * n / (u64::from(u16::MAX) + 1)
}

/// Applies `damage` to `dir`, touching no byte of a batch below `flushed`.
fn apply(dir: &Path, damage: &Damage, flushed: u64) {
    let logs = segment_files(dir);
    // The first segment that may be damaged, and where in it.
    let first_unflushed = locate(dir, flushed)
        .map(|(path, b)| (logs.iter().position(|p| *p == path).unwrap(), b.position));
    match damage {
        Damage::Nothing => {}
        Damage::Cut {
            segment,
            position,
            delete_later,
        } => {
            let Some((s0, p0)) = first_unflushed else {
                return;
            };
            let s = s0 + pick(*segment, (logs.len() - s0) as u64) as usize;
            let from = if s == s0 { p0 } else { 0 };
            let len = std::fs::metadata(&logs[s]).unwrap().len();
            let cut = from + pick(*position, len - from + 1);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&logs[s])
                .unwrap()
                .set_len(cut)
                .unwrap();
            if *delete_later {
                for later in &logs[s + 1..] {
                    std::fs::remove_file(later).unwrap();
                }
            }
        }
        Damage::Overwrite { segment, bytes } => {
            let Some((s0, p0)) = first_unflushed else {
                return;
            };
            let s = s0 + pick(*segment, (logs.len() - s0) as u64) as usize;
            let from = if s == s0 { p0 } else { 0 };
            let mut content = std::fs::read(&logs[s]).unwrap();
            if content.len() as u64 <= from {
                return;
            }
            for &(at, value) in bytes {
                let i = from + pick(at, content.len() as u64 - from);
                content[i as usize] = value;
            }
            std::fs::write(&logs[s], content).unwrap();
        }
        Damage::Indexes(list) => {
            for &(segment, time_index, how) in list {
                let log = &logs[pick(segment, logs.len() as u64) as usize];
                let path = log.with_extension(if time_index { "timeindex" } else { "index" });
                let Ok(mut content) = std::fs::read(&path) else {
                    continue;
                };
                match how % 4 {
                    0 => std::fs::remove_file(&path).unwrap(),
                    1 => content.clear(),
                    2 => content.truncate(content.len() / 2 + 1),
                    _ => {
                        for (i, b) in content.iter_mut().enumerate() {
                            *b ^= (i as u8).wrapping_mul(how) | 1;
                        }
                    }
                }
                if how % 4 != 0 {
                    std::fs::write(&path, content).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn crash_and_damage_past_the_flushed_point_leaves_a_prefix(
        ops in prop::collection::vec(op(), 1..60),
        segment_bytes in prop::sample::select(vec![1024u64, 2048, 4096]),
        index_interval in prop::sample::select(vec![64u64, 200, 1024]),
        damage in damage(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(segment_bytes, index_interval);
        let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
        let mut model: Vec<Record> = Vec::new();
        for op in &ops {
            match op {
                Op::Append(specs) => {
                    let records: Vec<Record> = specs
                        .iter()
                        .enumerate()
                        .map(|(j, &(len, key, headers))| record(model.len() + j, len, key, headers))
                        .collect();
                    let info = log.append(&records).unwrap();
                    prop_assert_eq!(info.base_offset, model.len() as u64);
                    model.extend(records);
                }
                Op::Flush => {
                    prop_assert_eq!(log.flush().unwrap(), model.len() as u64);
                }
                Op::Roll => log.roll_now().unwrap(),
                Op::Maintain => {
                    log.checkpoint_now().unwrap();
                }
            }
        }
        let flushed = log.flushed_offset();
        prop_assert!(flushed <= model.len() as u64);
        log.simulate_crash();

        apply(dir.path(), &damage, flushed);

        // The damage is past the flushed point, so even `Refuse` must open.
        let log = PartitionLog::open(dir.path(), config.clone().recovery(RecoveryMode::Refuse))
            .map_err(|e| TestCaseError::fail(format!("reopening: {e}")))?;
        let got = read_all(&log);
        let end = log.log_end_offset();
        prop_assert_eq!(log.log_start_offset(), 0);
        prop_assert_eq!(got.len() as u64, end, "one record per offset");
        prop_assert!(end <= model.len() as u64, "the log ends at {} but only {} records were appended", end, model.len());
        prop_assert!(end >= flushed, "flushed offset {} lost: the log ends at {}", flushed, end);
        for (i, r) in got.iter().enumerate() {
            prop_assert_eq!(r.offset, i as u64);
            prop_assert_eq!(&r.record, &model[i], "record at offset {}", i);
        }

        // Appending continues at the log end, and survives a clean reopen.
        let extra = record(end as usize, 10, true, 1);
        let info = log.append(std::slice::from_ref(&extra)).unwrap();
        prop_assert_eq!(info.base_offset, end);
        prop_assert_eq!(&log.read_records(end, 1 << 20).unwrap()[0].record, &extra);
        log.close().unwrap();
        let log = PartitionLog::open(dir.path(), config).unwrap();
        prop_assert_eq!(log.log_end_offset(), end + 1);
        let again = read_all(&log);
        prop_assert_eq!(again.len() as u64, end + 1);
        prop_assert_eq!(&again[end as usize].record, &extra);
    }
}

// ---------------------------------------------------------------------------------- deterministic

/// A log of several segments, flushed up to the middle of a sealed segment (recorded as the
/// recovery point by `maintain`), then more unflushed appends, then a crash. Returns the records,
/// the recovery point and the batch below it that the tests damage.
fn crashed_with_recovery_point_inside_a_sealed_segment(
    dir: &Path,
) -> (Vec<Record>, u64, PathBuf, BatchAt) {
    let config = config(2048, 128);
    let log = PartitionLog::open(dir, config).unwrap();
    let mut records = Vec::new();
    let mut append = |log: &PartitionLog, n: usize| {
        for _ in 0..n {
            let r = record(records.len(), 80, true, 1);
            log.append(std::slice::from_ref(&r)).unwrap();
            records.push(r);
        }
    };
    append(&log, 40); // a few segments
    log.roll_now().unwrap();
    append(&log, 6);
    let recovery_point = log.flush().unwrap();
    log.checkpoint_now().unwrap(); // writes the checkpoint: recovery point = flushed offset
    append(&log, 4); // same segment, unflushed
    log.roll_now().unwrap();
    append(&log, 10);
    assert!(log.flushed_offset() < log.log_end_offset());
    log.simulate_crash();

    // Damage the batch 3 below the recovery point, in the segment that holds the recovery point.
    let (path, batch) = locate(dir, recovery_point - 3).unwrap();
    assert_eq!(
        locate(dir, recovery_point).unwrap().0,
        path,
        "the recovery point is not inside that segment"
    );
    assert!(batch.position > 0);
    let mut content = std::fs::read(&path).unwrap();
    content[batch.position as usize + 70] ^= 0x55; // inside the first record: the CRC fails
    std::fs::write(&path, content).unwrap();
    (records, recovery_point, path, batch)
}

#[test]
fn refuse_reports_the_file_and_position_of_damage_below_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, path, batch) = crashed_with_recovery_point_inside_a_sealed_segment(dir.path());
    match PartitionLog::open(dir.path(), config(2048, 128).recovery(RecoveryMode::Refuse)) {
        Err(Error::Corrupt {
            path: p,
            position,
            reason,
        }) => {
            assert_eq!(p, path, "{reason}");
            assert_eq!(position, batch.position, "{reason}");
        }
        Err(e) => panic!("expected Error::Corrupt, got {e}"),
        Ok(_) => panic!("opened a log with damaged flushed data in Refuse mode"),
    }
    // Refusing removed nothing: the files are as they were, and truncating still works.
    let log = PartitionLog::open(dir.path(), config(2048, 128)).unwrap();
    assert_eq!(log.log_end_offset(), batch.base_offset);
}

#[test]
fn truncate_at_damage_keeps_the_prefix_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (records, recovery_point, _, batch) =
        crashed_with_recovery_point_inside_a_sealed_segment(dir.path());
    let log = PartitionLog::open(
        dir.path(),
        config(2048, 128).recovery(RecoveryMode::TruncateAtDamage),
    )
    .unwrap();
    assert!(batch.base_offset < recovery_point);
    assert_eq!(log.log_end_offset(), batch.base_offset);
    let got = read_all(&log);
    assert_eq!(got.len() as u64, batch.base_offset);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.record, records[i]);
    }
    // Later segments are gone and the log goes on from the cut.
    let info = log.append(&[record(999, 5, true, 0)]).unwrap();
    assert_eq!(info.base_offset, batch.base_offset);
}

/// Fills a log, then stops it cleanly or not; returns the records.
fn filled(dir: &Path, clean: bool) -> Vec<Record> {
    let log = PartitionLog::open(dir, config(1024, 64)).unwrap();
    let records: Vec<Record> = (0..60)
        .map(|i| record(i, 40, i % 3 != 0, (i % 2) as u8))
        .collect();
    for chunk in records.chunks(3) {
        log.append(chunk).unwrap();
    }
    log.flush().unwrap();
    log.checkpoint_now().unwrap();
    if clean {
        log.close().unwrap();
    } else {
        log.simulate_crash();
    }
    records
}

#[test]
fn a_lost_or_garbled_checkpoint_means_a_full_scan_with_all_data() {
    for clean in [false, true] {
        for garble in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let records = filled(dir.path(), clean);
            let checkpoint = dir.path().join("tidelog.checkpoint");
            if garble {
                let mut bytes = std::fs::read(&checkpoint).unwrap();
                for b in &mut bytes[8..24] {
                    *b ^= 0xA7;
                }
                std::fs::write(&checkpoint, bytes).unwrap();
            } else {
                std::fs::remove_file(&checkpoint).unwrap();
            }
            let log =
                PartitionLog::open(dir.path(), config(1024, 64).recovery(RecoveryMode::Refuse))
                    .unwrap();
            assert!(log.segment_count() > 3);
            assert_eq!(log.log_end_offset(), records.len() as u64);
            let got: Vec<Record> = read_all(&log).into_iter().map(|r| r.record).collect();
            assert_eq!(got, records, "clean = {clean}, garbled = {garble}");
            log.append(&[record(60, 1, true, 0)]).unwrap();
            log.close().unwrap();
            assert!(checkpoint.exists(), "the checkpoint is written again");
        }
    }
}

#[test]
fn a_torn_tail_without_checkpoint_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let records = filled(dir.path(), false);
    std::fs::remove_file(dir.path().join("tidelog.checkpoint")).unwrap();
    let last = segment_files(dir.path()).pop().unwrap();
    let batches = batches_in(&last);
    let torn = batches.last().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = PartitionLog::open(dir.path(), config(1024, 64)).unwrap();
    assert_eq!(log.log_end_offset(), torn.base_offset);
    let got: Vec<Record> = read_all(&log).into_iter().map(|r| r.record).collect();
    assert_eq!(got[..], records[..torn.base_offset as usize]);
}

#[test]
fn opening_removes_junk_of_interrupted_operations_and_keeps_unknown_files() {
    let dir = tempfile::tempdir().unwrap();
    let records = filled(dir.path(), false);
    let d = dir.path();
    let junk = [
        "00000000000000000000.log.cleaned",
        "foo.tmp",
        "tidelog.checkpoint.tmp",
        "00000000000000099999.index",
        "00000000000000099999.timeindex",
        "00000000000000000007.log.deleted",
    ];
    for name in junk {
        std::fs::write(d.join(name), b"leftover bytes").unwrap();
    }
    let kept = ["notes.txt", "00000000000000000000.log.bak", "README"];
    for name in kept {
        std::fs::write(d.join(name), b"the user's").unwrap();
    }
    let log = PartitionLog::open(d, config(1024, 64)).unwrap();
    for name in junk {
        assert!(!d.join(name).exists(), "{name} was not removed");
    }
    for name in kept {
        assert_eq!(
            std::fs::read(d.join(name)).unwrap(),
            b"the user's",
            "{name} was touched"
        );
    }
    let got: Vec<Record> = read_all(&log).into_iter().map(|r| r.record).collect();
    assert_eq!(got, records);
}

#[test]
fn a_crash_between_roll_and_first_append_leaves_an_empty_active_segment_that_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(1024, 64).durability(Durability::Interval(Duration::from_secs(3600)));
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let records: Vec<Record> = (0..20).map(|i| record(i, 30, true, 0)).collect();
    log.append(&records).unwrap();
    log.roll_now().unwrap();
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(
        log.append(&[record(20, 1, true, 0)]).unwrap().base_offset,
        20
    );
    assert_eq!(read_all(&log).len(), 21);
}

#[test]
fn a_lost_segment_tail_before_a_surviving_later_segment_is_a_hole_that_recovery_cuts() {
    // Nothing flushed: a power cut may lose the end of one segment and keep a later one.
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1024, 64)).unwrap();
    let records: Vec<Record> = (0..40).map(|i| record(i, 60, true, 0)).collect();
    for r in &records {
        log.append(std::slice::from_ref(r)).unwrap();
    }
    log.simulate_crash();
    let logs = segment_files(dir.path());
    assert!(logs.len() > 2);
    let cut = batches_in(&logs[0])[2];
    std::fs::OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap()
        .set_len(cut.position)
        .unwrap();
    let log = PartitionLog::open(dir.path(), config(1024, 64)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        cut.base_offset,
        "the records after the hole must go"
    );
    let got: Vec<Record> = read_all(&log).into_iter().map(|r| r.record).collect();
    assert_eq!(got[..], records[..cut.base_offset as usize]);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn a_damaged_base_offset_outside_the_crc_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1024, 64)).unwrap();
    let records: Vec<Record> = (0..5).map(|i| record(i, 60, true, 0)).collect();
    for r in &records {
        log.append(std::slice::from_ref(r)).unwrap();
    }
    log.simulate_crash();
    let first = &segment_files(dir.path())[0];
    let b = batches_in(first)[4];
    let mut content = std::fs::read(first).unwrap();
    content[b.position as usize + 7] = 0x40; // base offset 4 -> 64: still "increasing"
    std::fs::write(first, content).unwrap();
    let log = PartitionLog::open(dir.path(), config(1024, 64)).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(read_all(&log).len(), 4);
}

/// A checkpoint with a valid CRC (see `src/storage/checkpoint.rs` for the layout) and the given
/// fields.
fn write_checkpoint(
    dir: &Path,
    clean: bool,
    recovery_point: u64,
    log_start: u64,
    cleaner: u64,
    log_end: u64,
) {
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(b"TLCK");
    b.extend_from_slice(&[1, u8::from(clean), 0, 0]);
    for v in [recovery_point, log_start, cleaner, log_end] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    let mut crc = !0u32;
    for &byte in &b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    b.extend_from_slice(&(!crc).to_be_bytes());
    std::fs::write(dir.join("tidelog.checkpoint"), b).unwrap();
}

/// Found by `fuzz/fuzz_targets/open_dir.rs`: a folder with no segment and a checkpoint whose log
/// end offset lies past `i64::MAX` opened, accepted an append at a negative (as Kafka reads it)
/// base offset, and could not read it back (`Error::Corrupt`: "baseOffset ... is negative").
#[test]
fn a_checkpoint_with_offsets_past_i64_max_does_not_lead_to_unreadable_appends() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), false, 0, 0, 0, 18_377_298_919_299_219_456);
    let Ok(log) = PartitionLog::open(dir.path(), config(1024, 64)) else {
        return;
    };
    let Ok(info) = log.append(&[record(0, 5, true, 0)]) else {
        return;
    };
    let back = log.read_records(info.base_offset, 1 << 16).unwrap();
    assert_eq!(back[0].offset, info.base_offset);
}
