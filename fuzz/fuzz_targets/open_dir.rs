//! Any partition folder, however damaged, either opens or is refused with an error; it never
//! panics. A folder that opens can be read from its log start to its log end without a panic,
//! and takes an append that reads back.
//!
//! Input: a flags byte, then up to four file entries. Flags: bit 0 starts from a real log that
//! tidelog wrote (so entries can damage it rather than build one from nothing), bit 1 seals every
//! batch's CRC-32C in `.log` files after the entries are applied (so mutations get past the
//! checksum), bit 2 builds `tidelog.checkpoint` entries from their fields with a valid CRC.
//! Entry: name index, operation (write, truncate, xor-patch), u16 big-endian length, bytes.
#![no_main]

mod common;

use std::path::Path;

use common::{crc32_ieee, patch, seal_crcs, set_len, Patch, TempDir};

use libfuzzer_sys::fuzz_target;
use tidelog::{Durability, LogConfig, PartitionLog, Record, RecoveryMode};

const NAMES: &[&str] = &[
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "00000000000000000050.log",
    "00000000000000000050.index",
    "00000000000000000050.timeindex",
    "tidelog.checkpoint",
    "00000000000000000000.log.00000000000000000050.swap",
    "00000000000000000000.log.cleaned",
    "x.tmp",
];
const CHECKPOINT: &str = "tidelog.checkpoint";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut entries = Vec::new();
    while entries.len() < 4 && rest.len() >= 4 {
        let name = NAMES[usize::from(rest[0]) % NAMES.len()];
        let op = rest[1] % 3;
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        entries.push((name, op, &rest[4..4 + len]));
        rest = &rest[4 + len..];
    }
    for mode in [RecoveryMode::Refuse, RecoveryMode::TruncateAtDamage] {
        let dir = TempDir::new("open-dir");
        if flags & 1 != 0 {
            write_real_log(&dir.0, flags & 0x10 != 0);
        }
        for &(name, op, bytes) in &entries {
            apply(&dir.0, name, op, bytes, flags & 4 != 0);
        }
        if flags & 2 != 0 {
            for name in NAMES
                .iter()
                .filter(|n| n.ends_with(".log") || n.ends_with(".swap"))
            {
                seal_crcs(&dir.0.join(name));
            }
        }
        exercise(&dir.0, mode);
    }
});

fn config() -> LogConfig {
    LogConfig::default()
        .segment_bytes(1024)
        .max_message_bytes(1024)
        .index_interval_bytes(64)
        .durability(Durability::None)
        .retention(None)
}

/// Opens the folder; if it opens, reads it all, appends and reads the append back.
fn exercise(dir: &Path, mode: RecoveryMode) {
    let Ok(log) = PartitionLog::open(dir, config().recovery(mode)) else {
        return;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} past log end {end}");
    let mut next = start;
    for _ in 0..10_000 {
        if next >= end {
            break;
        }
        let Ok(records) = log.read_records(next, 4096) else {
            break;
        };
        match records.last() {
            Some(last) => {
                assert!(
                    last.offset >= next,
                    "read at {next} returned offset {}",
                    last.offset
                );
                assert!(
                    last.offset < end,
                    "read returned offset {} past the log end {end}",
                    last.offset
                );
                next = last.offset + 1;
            }
            None => break,
        }
    }
    let record = Record::new("fuzz-key", "fuzz-value").with_timestamp(1_700_000_000_000);
    // Offsets near the top of the i64 range (only a crafted checkpoint gets there) may be refused.
    match log.append(std::slice::from_ref(&record)) {
        Ok(info) => {
            assert_eq!(
                info.base_offset, end,
                "the append did not go to the log end"
            );
            let back = log
                .read_records(info.base_offset, 1 << 16)
                .expect("reading back an append");
            let got = back
                .iter()
                .find(|r| r.offset == info.base_offset)
                .expect("the appended record");
            assert_eq!(got.record, record);
        }
        Err(e) => assert!(
            end > i64::MAX as u64 / 2,
            "append at offset {end} failed: {e}"
        ),
    }
    let _ = log.close();
}

/// A small real log: a few batches over two or three segments, crashed or closed.
fn write_real_log(dir: &Path, clean: bool) {
    let Ok(log) = PartitionLog::open(dir, config()) else {
        return;
    };
    for i in 0..30u64 {
        let r = Record::new(format!("k{}", i % 7), format!("value {i}"))
            .with_timestamp(1_600_000_000_000 + i as i64);
        let _ = log.append(&[r.clone(), r.with_header("h", "v")]);
    }
    if clean {
        let _ = log.close();
    } else {
        log.simulate_crash();
    }
}

fn apply(dir: &Path, name: &str, op: u8, bytes: &[u8], build_checkpoint: bool) {
    let path = dir.join(name);
    match op {
        0 if name == CHECKPOINT && build_checkpoint => {
            let _ = std::fs::write(&path, checkpoint(bytes));
        }
        0 => {
            let _ = std::fs::write(&path, bytes);
        }
        1 => set_len(&path, bytes),
        _ => patch(&path, Patch::Xor, bytes),
    }
}

/// A well-formed checkpoint (see `src/storage/checkpoint.rs`) from fuzzed fields: flags byte,
/// then recovery point, log start, cleaner offset and log end as big-endian u64s.
fn checkpoint(fields: &[u8]) -> Vec<u8> {
    let mut f = fields.to_vec();
    f.resize(33, 0);
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(b"TLCK");
    b.push(1);
    b.push(f[0] & 1);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&f[1..33]);
    let crc = crc32_ieee(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}
