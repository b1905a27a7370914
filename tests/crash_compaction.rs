//! Real crashes of a compacted log: a child process appends records with keys from a small set,
//! rolls and compacts again and again, and is killed with `SIGKILL` at random moments, some of
//! them right after it announced a compaction. The parent reopens the folder and checks that the
//! newest acknowledged record of every key is still there at its offset (or, for a tombstone,
//! that it was removed together with everything older of its key), that no offset appears twice,
//! that no record appears that was never written, and that no leftover of the compaction remains.
//!
//! The child is this test binary run again with `--exact child_compacting_writer` and
//! `TIDELOG_CRASH_DIR` set; without that variable `child_compacting_writer` does nothing.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use support::{child_dir, child_seed, junk_files, read_all, spawn_child, Rng};
use tidelog::{CleanupPolicy, Durability, LogConfig, PartitionLog, Record, RecoveryMode};

const CHILD: &str = "child_compacting_writer";
const KEYS: u64 = 20;
/// Record timestamps: `BASE_TS + offset`.
const BASE_TS: i64 = 1_600_000_000_000;
/// A compaction at this time keeps every tombstone; one at `FAR_FUTURE` removes them all.
const FAR_FUTURE: i64 = BASE_TS + 1_000_000_000_000;
/// Appends between two compactions.
const APPENDS_PER_COMPACTION: u64 = 8;

fn config() -> LogConfig {
    LogConfig::default()
        .segment_bytes(4096)
        .max_message_bytes(2048)
        .index_interval_bytes(256)
        .durability(Durability::Always)
        .cleanup_policy(CleanupPolicy::Compact)
        .min_cleanable_dirty_ratio(0.0)
        .delete_retention(Duration::from_secs(3600))
        // A killed process loses nothing it wrote, so damage below the recovery point is a bug.
        .recovery(RecoveryMode::Refuse)
}

fn key_of(offset: u64) -> String {
    format!("key-{}", offset.wrapping_mul(0x9E37_79B9) % KEYS)
}

fn is_tombstone(offset: u64) -> bool {
    (offset * 7 + 3).is_multiple_of(11)
}

/// The record the child writes at `offset`; everything about it follows from the offset.
fn expected(offset: u64) -> Record {
    let ts = BASE_TS + offset as i64;
    if is_tombstone(offset) {
        Record::tombstone(key_of(offset)).with_timestamp(ts)
    } else {
        let pad = "p".repeat(((offset * 31) % 100) as usize);
        Record::new(key_of(offset), format!("v{offset}-{pad}")).with_timestamp(ts)
    }
}

/// The child: appends, and every few appends rolls and compacts, until it is killed. Prints
/// `ACK <offset> <key> <value>` (value `-` for a tombstone) for each record of an acknowledged
/// append, and `COMPACT-START` / `COMPACT-END <removed>` around each compaction.
#[test]
fn child_compacting_writer() {
    let Some(dir) = child_dir() else { return };
    let log = PartitionLog::open(&dir, config()).expect("child: opening the log");
    let mut rng = Rng::new(child_seed());
    let mut next = log.log_end_offset();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let mut appends = 0u64;
    while started.elapsed() < Duration::from_secs(20) {
        let n = rng.range(1, 4);
        let records: Vec<Record> = (next..next + n).map(expected).collect();
        let info = log.append(&records).expect("child: append");
        assert_eq!((info.base_offset, info.last_offset), (next, next + n - 1));
        for (offset, r) in (next..).zip(&records) {
            let value = r
                .value
                .as_ref()
                .map_or("-".to_string(), |v| String::from_utf8_lossy(v).into_owned());
            writeln!(out, "ACK {offset} {} {value}", key_of(offset)).unwrap();
        }
        out.flush().unwrap();
        next += n;
        appends += 1;
        if appends.is_multiple_of(APPENDS_PER_COMPACTION) {
            writeln!(out, "COMPACT-START").unwrap();
            out.flush().unwrap();
            log.roll_now().expect("child: roll");
            let now = if (appends / APPENDS_PER_COMPACTION).is_multiple_of(3) {
                FAR_FUTURE
            } else {
                BASE_TS
            };
            let removed = log.compact_at(now).expect("child: compaction");
            writeln!(out, "COMPACT-END {removed}").unwrap();
            out.flush().unwrap();
        }
    }
    panic!("child: never killed");
}

/// What the parent knows survives: for each key, the newest offset acknowledged or seen in the
/// log after a reopen.
#[derive(Default)]
struct Knowledge {
    newest: HashMap<String, u64>,
    max_acked: Option<u64>,
    end: u64,
}

impl Knowledge {
    fn learn(&mut self, offset: u64, key: &str) {
        let e = self.newest.entry(key.to_string()).or_insert(offset);
        *e = (*e).max(offset);
    }

    fn absorb_acks(&mut self, lines: &[String]) {
        for line in lines {
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let mut parts = rest.splitn(3, ' ');
            let offset: u64 = parts.next().unwrap().parse().unwrap();
            let key = parts.next().unwrap();
            let value = parts.next().unwrap();
            let want = expected(offset);
            assert_eq!(
                key,
                key_of(offset),
                "the child acknowledged a key it should not have written"
            );
            assert_eq!(value == "-", want.value.is_none());
            self.learn(offset, key);
            self.max_acked = self.max_acked.max(Some(offset));
        }
    }
}

/// Reopens the folder and checks it against what is known; returns the number of records read.
fn verify(dir: &std::path::Path, known: &mut Knowledge, clean_close: bool) -> usize {
    let log = PartitionLog::open(dir, config())
        .unwrap_or_else(|e| panic!("reopening after the kill: {e}"));
    let junk = junk_files(dir);
    assert!(
        junk.is_empty(),
        "leftovers of an interrupted compaction after reopening: {junk:?}"
    );
    let end = log.log_end_offset();
    assert_eq!(
        log.log_start_offset(),
        0,
        "compaction must not move the log start offset"
    );
    if let Some(a) = known.max_acked {
        assert!(
            end > a,
            "acknowledged offset {a} is lost: the log ends at {end}"
        );
    }
    assert!(
        end >= known.end,
        "the log end went back from {} to {end}",
        known.end
    );
    let records = read_all(&log);
    let mut newest_present: HashMap<String, u64> = HashMap::new();
    let mut previous: Option<u64> = None;
    for r in &records {
        assert!(
            previous.is_none_or(|p| r.offset > p),
            "offset {} follows {previous:?}",
            r.offset
        );
        assert!(r.offset < end);
        previous = Some(r.offset);
        assert_eq!(
            r.record,
            expected(r.offset),
            "record at offset {} is not what was written there",
            r.offset
        );
        newest_present.insert(key_of(r.offset), r.offset);
    }
    for (key, &newest) in &known.newest {
        match newest_present.get(key) {
            Some(&present) if present >= newest => {}
            Some(&present) => panic!(
                "key {key}: its newest known record (offset {newest}) is gone but the older offset {present} is still there"
            ),
            None => {
                // Only a tombstone at or after the newest known record may remove a key entirely.
                let removed_by = (newest..end).find(|&o| key_of(o) == *key && is_tombstone(o));
                assert!(removed_by.is_some(), "key {key}: its newest known record (offset {newest}) is gone, with no tombstone to remove it");
            }
        }
    }
    for r in &records {
        known.learn(r.offset, &key_of(r.offset));
    }
    known.end = end;
    if clean_close {
        log.close().unwrap();
    } else {
        log.simulate_crash();
    }
    records.len()
}

#[test]
fn sigkill_during_compaction_keeps_the_newest_record_of_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0xC0_4AC7);
    let mut known = Knowledge::default();
    let (mut during_compaction, mut junk_seen, mut compactions) = (0, 0, 0);
    let iterations = 30;
    let mut records = 0;
    for i in 0..iterations {
        let mut child = spawn_child(CHILD, dir.path(), rng.next_u64());
        if i % 2 == 0 {
            // Compaction fsyncs several files, so it takes a good part of the child's time.
            let deadline = Instant::now() + Duration::from_millis(rng.range(5, 400));
            while child.next_line(deadline).is_some() {}
        } else {
            // Kill shortly after the k-th compaction has started.
            let mut k = rng.range(1, 4);
            let found = child.wait_for(Duration::from_secs(30), |l| {
                if l == "COMPACT-START" {
                    k -= 1;
                }
                k == 0
            });
            assert!(found, "the child never compacted");
            let spin = Duration::from_micros(rng.below(3000));
            let until = Instant::now() + spin;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        child.assert_running();
        let lines = child.kill();
        compactions += lines
            .iter()
            .filter(|l| l.starts_with("COMPACT-END"))
            .count();
        if lines
            .iter()
            .rev()
            .find(|l| l.starts_with("COMPACT"))
            .is_some_and(|l| l == "COMPACT-START")
        {
            during_compaction += 1;
        }
        if !junk_files(dir.path()).is_empty() {
            junk_seen += 1;
        }
        known.absorb_acks(&lines);
        if i + 1 == iterations || rng.below(3) != 0 {
            records = verify(dir.path(), &mut known, rng.below(2) == 0);
        }
    }
    eprintln!(
        "{iterations} kills, {during_compaction} during a compaction, {junk_seen} leaving compaction files behind; \
         {compactions} compactions; {records} records left of {}",
        known.end
    );
    assert!(compactions >= 10, "too few compactions ran: {compactions}");
    assert!(
        during_compaction >= 3,
        "too few kills landed during a compaction: {during_compaction}"
    );
    assert!((records as u64) < known.end, "compaction removed nothing");
}
