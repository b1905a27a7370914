//! Model-based property test of one [`PartitionLog`] through its public API.
//!
//! Each case opens a log with small segments (4 KiB, an index entry every 256 bytes), one cleanup
//! policy (delete, compact, or both), maybe retention by time and/or size, and mostly
//! `Durability::None`, then runs a random sequence of [`Op`]s on it: appends of 1-5 records
//! (keys from a small set, some tombstones, some keyless, timestamps increasing or random), rolls,
//! forced compaction, maintenance (retention, then compaction), `delete_records` and
//! `truncate_to` at any offset (inside batches, below the log start, past the end), flushes,
//! reads, clean reopens, crashes, and power cuts (a crash that also loses bytes that were not
//! fsynced). Every operation is applied to the log and to [`Model`], a plain statement of what
//! the log promises:
//!
//! * appends get the offsets from the model's log end on, in order; the log end only moves back
//!   by `truncate_to` (to the start of the batch holding the offset, as documented: batches are
//!   never split, offsets compaction emptied or below the log start are not given out again) or
//!   by a power cut, and then never below what was fsynced (the flushed offset, and everything
//!   compaction rewrote, which it fsyncs);
//! * the log start only moves forward (retention, `delete_records`), except by a truncation at
//!   or below it;
//! * compaction removes exactly the records Kafka's cleaner would: in the sealed segments, every
//!   record that is not the newest of its key, and tombstones older than `delete_retention`;
//!   never a record of the active segment;
//! * retention deletes exactly the oldest sealed segments that are past `retention` or make the
//!   log larger than `retention_bytes`.
//!
//! The model does not predict where segments roll (that depends on encoded sizes); it reads the
//! segment files' names and sizes from the folder where a prediction needs them.
//!
//! After every step [`check`] asserts: log start and end equal the model's; reading the whole log
//! returns exactly the model's records from the log start to the end, in offset order; reads
//! below the start or past the end fail with [`Error::OffsetOutOfRange`]; every error any call
//! returned was one the model expected (anything else fails the case, as does a panic).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tidelog::{CleanupPolicy, Durability, Error, LogConfig, PartitionLog, Record};

use support::batches_in;

/// The model clock's start (milliseconds): far below the wall clock, so that a segment whose
/// largest timestamp is its file's modification time (an empty one) never expires here.
const T0: i64 = 1_000_000;
const RETENTION_MS: i64 = 2_000;
const DELETE_RETENTION_MS: i64 = 1_000;
const KEYS: u8 = 6;
/// Cases when `PROPTEST_CASES` is not set: 5-12 s in a debug build on 2 cores (mostly fsyncs:
/// truncations, compactions, checkpoints and reopens sync; wall time follows the disk).
const DEFAULT_CASES: u32 = 160;

type TestResult = Result<(), TestCaseError>;

// ---------------------------------------------------------------------------------- operations

#[derive(Debug, Clone, Copy)]
struct Setup {
    policy: CleanupPolicy,
    segment_bytes: u64,
    retention_time: bool,
    retention_bytes: Option<u64>,
    always_fsync: bool,
    dirty_ratio: f64,
}

impl Setup {
    fn config(&self) -> LogConfig {
        LogConfig::default()
            .segment_bytes(self.segment_bytes)
            .index_interval_bytes(256)
            .cleanup_policy(self.policy)
            .retention(
                self.retention_time
                    .then(|| Duration::from_millis(RETENTION_MS as u64)),
            )
            .retention_bytes(self.retention_bytes)
            .delete_retention(Duration::from_millis(DELETE_RETENTION_MS as u64))
            .min_cleanable_dirty_ratio(self.dirty_ratio)
            .durability(if self.always_fsync {
                Durability::Always
            } else {
                Durability::None
            })
    }

    fn compacts(&self) -> bool {
        self.policy != CleanupPolicy::Delete
    }

    fn deletes(&self) -> bool {
        self.policy != CleanupPolicy::Compact
    }
}

/// One record of an append.
#[derive(Debug, Clone, Copy)]
struct Spec {
    /// `None`: no key (refused by a compacted log).
    key: Option<u8>,
    /// Value length; `None`: a tombstone.
    value: Option<u8>,
    stamp: Stamp,
}

#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// The model clock, which then moves on by this many milliseconds.
    Next(u8),
    /// Anywhere between `T0` and a little past the clock (a fraction).
    Any(u16),
}

/// An offset, resolved against the model when the operation runs.
#[derive(Debug, Clone, Copy)]
enum At {
    /// A fraction of `0..=end + 3`.
    Anywhere(u16),
    NearStart(i8),
    NearEnd(i8),
    /// A batch appended (a fraction of them), and an offset inside it (a fraction).
    InBatch(u16, u16),
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Spec>),
    Roll,
    /// `compact_at(clock + delta)` (compacting policies only).
    Compact(i16),
    /// `maintain_at(clock + delta)`.
    Maintain(i16),
    DeleteRecords(At),
    Truncate(At),
    Flush,
    /// `read(offset, max_bytes)`.
    Read(At, u16),
    /// `close` then `open`.
    Reopen,
    /// `simulate_crash` then `open`: a process crash loses nothing.
    Crash,
    /// `simulate_crash`, then cut a segment at or after the first byte not known to be fsynced
    /// (fractions), maybe deleting the later segments, then `open`.
    PowerCut {
        segment: u16,
        position: u16,
        delete_later: bool,
    },
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![
            Just(CleanupPolicy::Delete),
            Just(CleanupPolicy::Compact),
            Just(CleanupPolicy::CompactAndDelete),
        ],
        prop::sample::select(vec![1024u64, 2048, 4096]),
        any::<bool>(),
        prop::option::of(prop_oneof![3 => 100u64..2_000, 1 => 2_000u64..12_000]),
        prop::bool::weighted(0.05),
        prop::sample::select(vec![0.0, 0.5]),
    )
        .prop_map(
            |(
                policy,
                segment_bytes,
                retention_time,
                retention_bytes,
                always_fsync,
                dirty_ratio,
            )| Setup {
                policy,
                segment_bytes,
                retention_time,
                retention_bytes,
                always_fsync,
                dirty_ratio,
            },
        )
}

fn spec() -> impl Strategy<Value = Spec> {
    let stamp = prop_oneof![
        4 => (0u8..60).prop_map(Stamp::Next),
        1 => any::<u16>().prop_map(Stamp::Any),
    ];
    (
        prop::option::weighted(0.97, 0..KEYS),
        prop::option::weighted(0.85, any::<u8>()),
        stamp,
    )
        .prop_map(|(key, value, stamp)| Spec { key, value, stamp })
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        any::<u16>().prop_map(At::Anywhere),
        (-3i8..=3).prop_map(At::NearStart),
        (-4i8..=2).prop_map(At::NearEnd),
        (any::<u16>(), any::<u16>()).prop_map(|(b, o)| At::InBatch(b, o)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec(spec(), 1..=5).prop_map(Op::Append),
        2 => Just(Op::Roll),
        2 => (-1_000i16..5_000).prop_map(Op::Compact),
        2 => (-1_000i16..5_000).prop_map(Op::Maintain),
        1 => at().prop_map(Op::DeleteRecords),
        2 => at().prop_map(Op::Truncate),
        1 => Just(Op::Flush),
        2 => (at(), 1u16..3_000).prop_map(|(at, max)| Op::Read(at, max)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (any::<u16>(), any::<u16>(), any::<bool>()).prop_map(|(segment, position, delete_later)| {
            Op::PowerCut { segment, position, delete_later }
        }),
    ]
}

/// `fraction` of `0..n`, as an index (`n > 0`).
fn pick(fraction: u16, n: u64) -> u64 {
    u64::from(fraction) * n / (u64::from(u16::MAX) + 1)
}

// ---------------------------------------------------------------------------------- the model

/// What the log holds, as the model sees it.
#[derive(Debug, Default)]
struct Model {
    /// Records physically in the log's segments (below the log start too, until their segment is
    /// deleted), by offset: what was appended, less what truncation, retention and compaction
    /// removed.
    records: BTreeMap<u64, Record>,
    /// Base and last offset of every batch in the log (appended, not truncated away, not emptied
    /// by compaction; a batch compaction thinned keeps its offsets).
    batches: BTreeMap<u64, u64>,
    start: u64,
    end: u64,
    /// Every offset below this was rewritten by compaction, which fsyncs what it writes (or was
    /// below the end of a reopened log, which recovery fsyncs): a power cut keeps it.
    durable: u64,
    clock: i64,
}

impl Model {
    fn new() -> Model {
        Model {
            clock: T0,
            ..Model::default()
        }
    }

    fn build(&mut self, specs: &[Spec]) -> Vec<Record> {
        let mut out = Vec::with_capacity(specs.len());
        for (j, spec) in specs.iter().enumerate() {
            let offset = self.end + j as u64;
            let timestamp = match spec.stamp {
                Stamp::Next(step) => {
                    let t = self.clock;
                    self.clock += i64::from(step);
                    t
                }
                Stamp::Any(f) => T0 + pick(f, (self.clock - T0 + 500) as u64) as i64,
            };
            let key = spec.key.map(|k| Bytes::from(format!("k{k}")));
            let value = spec.value.map(|len| {
                let mut v = format!("v{offset}-");
                v.extend(std::iter::repeat_n('x', usize::from(len)));
                Bytes::from(v)
            });
            let mut record = Record {
                key,
                value,
                timestamp,
                headers: Vec::new(),
            };
            if offset.is_multiple_of(3) {
                record = record.with_header("n", offset.to_string());
            }
            out.push(record);
        }
        out
    }

    fn append(&mut self, records: &[Record]) {
        let base = self.end;
        for (j, r) in records.iter().enumerate() {
            self.records.insert(base + j as u64, r.clone());
        }
        self.end = base + records.len() as u64;
        self.batches.insert(base, self.end - 1);
    }

    /// Whether compaction left any record of the batch `base..=last`.
    fn present(&self, base: u64, last: u64) -> bool {
        self.records.range(base..=last).next().is_some()
    }

    /// Drops what lies in segments deleted whole (every offset below `first_base`).
    fn drop_below(&mut self, first_base: u64) {
        self.records = self.records.split_off(&first_base);
        self.batches = self.batches.split_off(&first_base);
    }

    /// Drops everything from `offset` on.
    fn cut(&mut self, offset: u64) {
        self.records.split_off(&offset);
        self.batches.split_off(&offset);
    }

    /// A compaction pass with the active segment at `active_base`: returns the records removed.
    fn compact(&mut self, active_base: u64, now: i64) -> u64 {
        let mut newest: HashMap<Bytes, u64> = HashMap::new();
        for (&o, r) in self.records.range(..active_base) {
            if let Some(k) = &r.key {
                newest.insert(k.clone(), o);
            }
        }
        let horizon = now.saturating_sub(DELETE_RETENTION_MS);
        let doomed: Vec<u64> = self
            .records
            .range(..active_base)
            .filter(|(o, r)| {
                let newest_of_key = r.key.as_ref().is_some_and(|k| newest[k] == **o);
                let live = r.value.is_some() || r.timestamp >= horizon;
                !(newest_of_key && live)
            })
            .map(|(o, _)| *o)
            .collect();
        for o in &doomed {
            self.records.remove(o);
        }
        // A batch compaction emptied is gone from the log: a truncation inside it cuts at the
        // offset, and appends after that may reuse its offsets.
        let records = &self.records;
        self.batches
            .retain(|&base, &mut last| records.range(base..=last).next().is_some());
        self.durable = self.durable.max(active_base);
        doomed.len() as u64
    }

    /// Retention (`apply_retention`) with the segments `layout` (base offset, bytes) at `now`:
    /// returns how many segments it deletes.
    fn retention(&mut self, layout: &[(u64, u64)], now: i64, setup: &Setup) -> usize {
        let expired = |ts: i64| setup.retention_time && ts < now.saturating_sub(RETENTION_MS);
        let mut layout = layout.to_vec();
        let active_base = layout.last().map_or(0, |s| s.0);
        let active_max = self
            .records
            .range(active_base..)
            .map(|r| r.1.timestamp)
            .max();
        if active_max.is_some_and(expired) {
            // Every record of the active segment expired: it is rolled, then deleted.
            layout.push((self.end, 0));
        }
        let mut total: u64 = layout.iter().map(|s| s.1).sum();
        let mut doomed = 0;
        for pair in layout.windows(2) {
            let ((base, size), next) = (pair[0], pair[1].0);
            // An empty segment's largest timestamp is its file's modification time: not expired.
            let largest = self
                .records
                .range(base..next)
                .map(|r| r.1.timestamp)
                .max()
                .unwrap_or(i64::MAX);
            let by_size = setup
                .retention_bytes
                .is_some_and(|limit| total - size >= limit);
            if !(expired(largest) || by_size) {
                break;
            }
            total -= size;
            doomed += 1;
        }
        if doomed > 0 {
            let first = layout[doomed].0;
            self.start = self.start.max(first);
            self.drop_below(first);
        }
        doomed
    }

    /// `truncate_to(offset)` as documented: returns the new log end.
    fn truncate(&mut self, offset: u64) -> u64 {
        if offset >= self.end {
            return self.end;
        }
        if offset <= self.start {
            // Emptied; the log restarts at `offset`.
            self.records.clear();
            self.batches.clear();
            self.start = offset;
            self.end = offset;
            self.durable = self.durable.min(offset);
            return offset;
        }
        // Batches are never split: the batch holding `offset` goes whole, if compaction left it
        // in the log. Where compaction emptied the offsets (or nothing holds `offset`), the log
        // goes on at `offset`. Never below the log start.
        let holding = self
            .batches
            .range(..=offset)
            .next_back()
            .filter(|(&base, &last)| last >= offset && self.present(base, last))
            .map(|(&base, _)| base);
        let cut = holding.unwrap_or(offset);
        self.cut(cut);
        self.end = cut.max(self.start);
        self.durable = self.durable.min(self.end);
        self.end
    }

    fn resolve(&self, at: At) -> u64 {
        match at {
            At::Anywhere(f) => pick(f, self.end + 4),
            At::NearStart(d) => self.start.saturating_add_signed(i64::from(d)),
            At::NearEnd(d) => self.end.saturating_add_signed(i64::from(d)),
            At::InBatch(b, o) => {
                let n = self.batches.len() as u64;
                if n == 0 {
                    return self.end;
                }
                let (&base, &last) = self.batches.iter().nth(pick(b, n) as usize).unwrap();
                base + pick(o, last - base + 1)
            }
        }
    }
}

// ---------------------------------------------------------------------------------- the log

struct Real {
    dir: tempfile::TempDir,
    config: LogConfig,
    log: Option<PartitionLog>,
}

impl Real {
    fn log(&self) -> &PartitionLog {
        self.log.as_ref().unwrap()
    }
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// The `.log` files of `dir`, by base offset.
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter_map(|p| {
            let base = p.file_stem()?.to_str()?.parse().ok()?;
            Some((base, p))
        })
        .collect();
    out.sort();
    out
}

/// Base offset and size of each segment.
fn layout(dir: &Path) -> Vec<(u64, u64)> {
    segment_files(dir)
        .into_iter()
        .map(|(base, p)| (base, std::fs::metadata(p).unwrap().len()))
        .collect()
}

/// What a power cut may do to a crashed log whose offsets below `durable` are fsynced: cut one
/// segment at or after the first batch holding an offset at or past `durable`, maybe deleting
/// every later segment.
fn power_cut(dir: &Path, durable: u64, segment: u16, position: u16, delete_later: bool) {
    let logs = segment_files(dir);
    let first = logs.iter().enumerate().find_map(|(i, (_, path))| {
        batches_in(path)
            .into_iter()
            .find(|b| b.last_offset >= durable)
            .map(|b| (i, b.position))
    });
    let Some((s0, p0)) = first else {
        return;
    };
    let s = s0 + pick(segment, (logs.len() - s0) as u64) as usize;
    let from = if s == s0 { p0 } else { 0 };
    let len = std::fs::metadata(&logs[s].1).unwrap().len();
    let cut = from + pick(position, len - from + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&logs[s].1)
        .unwrap()
        .set_len(cut)
        .unwrap();
    if delete_later {
        for (_, later) in &logs[s + 1..] {
            std::fs::remove_file(later).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------- steps

fn append(real: &Real, model: &mut Model, setup: &Setup, specs: &[Spec]) -> TestResult {
    let records = model.build(specs);
    let result = real.log().append(&records);
    if setup.compacts() && records.iter().any(|r| r.key.is_none()) {
        prop_assert!(
            matches!(result, Err(Error::MissingKey)),
            "a keyless record in a compacted log: {:?}",
            result
        );
        return Ok(());
    }
    let info = result.map_err(|e| fail(format!("append: {e}")))?;
    let n = records.len() as u64;
    prop_assert_eq!(
        (info.base_offset, info.last_offset),
        (model.end, model.end + n - 1),
        "offsets of the append"
    );
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap();
    prop_assert_eq!(info.max_timestamp, max_ts);
    prop_assert_eq!(info.durable, setup.always_fsync);
    model.append(&records);
    Ok(())
}

fn compact(real: &Real, model: &mut Model, setup: &Setup, now: i64) -> TestResult {
    if !setup.compacts() {
        return Ok(()); // `compact_at` is a hook for compacted logs
    }
    let before = layout(real.dir.path());
    let removed = real
        .log()
        .compact_at(now)
        .map_err(|e| fail(format!("compact_at({now}): {e}")))?;
    // A pass needs a sealed segment.
    let expected = match before.as_slice() {
        [_, .., active] => model.compact(active.0, now),
        _ => 0,
    };
    prop_assert_eq!(removed, expected, "records compaction removed");
    Ok(())
}

fn maintain(real: &Real, model: &mut Model, setup: &Setup, now: i64) -> TestResult {
    let before = layout(real.dir.path());
    let report = real
        .log()
        .maintain_at(now)
        .map_err(|e| fail(format!("maintain_at({now}): {e}")))?;
    let deleted = if setup.deletes() {
        model.retention(&before, now, setup)
    } else {
        0
    };
    prop_assert_eq!(
        report.segments_deleted,
        deleted,
        "segments retention deleted"
    );
    prop_assert!(
        !report.compacted || setup.compacts(),
        "a log that does not compact compacted"
    );
    if report.compacted {
        // Compaction runs after retention, which may have rolled the active segment.
        let after = layout(real.dir.path());
        let active = after.last().unwrap().0;
        let removed = model.compact(active, now);
        prop_assert_eq!(
            report.records_removed,
            removed,
            "records compaction removed"
        );
    }
    Ok(())
}

fn delete_records(real: &Real, model: &mut Model, at: At) -> TestResult {
    let offset = model.resolve(at);
    let before = layout(real.dir.path());
    match real.log().delete_records(offset) {
        Err(Error::OffsetOutOfRange {
            offset: o,
            log_start_offset,
            log_end_offset,
        }) if offset > model.end => {
            prop_assert_eq!(
                (o, log_start_offset, log_end_offset),
                (offset, model.start, model.end)
            );
        }
        Ok(start) if offset <= model.end => {
            let expected = model.start.max(offset);
            prop_assert_eq!(start, expected, "delete_records({}) returned", offset);
            model.start = expected;
            // Sealed segments whose next one starts at or below the new start go.
            let doomed = before
                .windows(2)
                .take_while(|pair| pair[1].0 <= expected)
                .count();
            if doomed > 0 {
                model.drop_below(before[doomed].0);
            }
        }
        other => {
            return Err(fail(format!(
                "delete_records({offset}) with the log at {}..{}: {other:?}",
                model.start, model.end
            )))
        }
    }
    Ok(())
}

fn truncate(real: &Real, model: &mut Model, at: At) -> TestResult {
    let offset = model.resolve(at);
    let (start, end) = (model.start, model.end);
    let got = real
        .log()
        .truncate_to(offset)
        .map_err(|e| fail(format!("truncate_to({offset}): {e}")))?;
    let expected = model.truncate(offset);
    prop_assert_eq!(
        got,
        expected,
        "truncate_to({}) of the log {}..{}",
        offset,
        start,
        end
    );
    let real_start = real.log().log_start_offset();
    if real_start != model.start && real_start == model.end && model.records.is_empty() {
        // The truncation left no segment below the new end, which the log then starts at: the
        // same (empty) log.
        model.start = real_start;
    }
    Ok(())
}

fn read(real: &Real, model: &Model, at: At, max_bytes: u16) -> TestResult {
    let offset = model.resolve(at);
    let (start, end) = (model.start, model.end);
    match real.log().read(offset, usize::from(max_bytes)) {
        Err(Error::OffsetOutOfRange {
            offset: o,
            log_start_offset,
            log_end_offset,
        }) if offset < start || offset > end => {
            prop_assert_eq!((o, log_start_offset, log_end_offset), (offset, start, end));
        }
        Ok(data) if (start..=end).contains(&offset) => {
            let next = data.next_offset();
            if offset == end {
                prop_assert!(data.is_empty() && next == end, "a read at the end");
                return Ok(());
            }
            prop_assert!(
                next > offset && next <= end,
                "read({}) of {}..{}: next offset {}",
                offset,
                start,
                end,
                next
            );
            let got = data.records().map_err(fail)?;
            same_records(&got, model, offset, next)?;
        }
        other => {
            return Err(fail(format!(
                "read({offset}) of the log {start}..{end}: {other:?}"
            )))
        }
    }
    Ok(())
}

/// `got` holds exactly the model's records from `from` to `to`.
fn same_records(got: &[tidelog::OffsetRecord], model: &Model, from: u64, to: u64) -> TestResult {
    let want: Vec<(u64, &Record)> = model
        .records
        .range(from..to)
        .map(|(o, r)| (*o, r))
        .collect();
    let got_offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    let want_offsets: Vec<u64> = want.iter().map(|r| r.0).collect();
    prop_assert_eq!(
        got_offsets,
        want_offsets,
        "offsets read from {} to {}",
        from,
        to
    );
    for (g, (o, w)) in got.iter().zip(&want) {
        prop_assert_eq!(&g.record, *w, "record at offset {}", o);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    Clean,
    Crash,
    PowerCut {
        segment: u16,
        position: u16,
        delete_later: bool,
    },
}

fn reopen(real: &mut Real, model: &mut Model, stop: Stop) -> TestResult {
    let log = real.log.take().unwrap();
    let flushed = log.flushed_offset();
    let durable = flushed.max(model.durable);
    match stop {
        Stop::Clean => log.close().map_err(|e| fail(format!("close: {e}")))?,
        Stop::Crash => log.simulate_crash(),
        Stop::PowerCut {
            segment,
            position,
            delete_later,
        } => {
            log.simulate_crash();
            power_cut(real.dir.path(), durable, segment, position, delete_later);
        }
    }
    let log = PartitionLog::open(real.dir.path(), real.config.clone())
        .map_err(|e| fail(format!("reopening after {stop:?}: {e}")))?;
    let end = log.log_end_offset();
    prop_assert_eq!(log.flushed_offset(), end, "recovery fsyncs what it keeps");
    if let Stop::PowerCut { .. } = stop {
        // Only what was not fsynced may be lost, and never part of a batch. Below the log start
        // the log restarts there.
        prop_assert!(
            end <= model.end && end >= durable.max(model.start),
            "after a power cut the log ends at {}: it ended at {}, fsynced below {}, log start {}",
            end,
            model.end,
            durable,
            model.start
        );
        let torn = model
            .batches
            .range(..end)
            .next_back()
            .is_some_and(|(&base, &last)| last >= end && model.present(base, last));
        // (Unless the log restarted empty at its start, which may lie inside a batch.)
        let torn = torn && end > model.start;
        prop_assert!(!torn, "the log ends at {}, inside a batch", end);
        model.cut(end);
        model.end = end;
    }
    model.durable = model.end;
    real.log = Some(log);
    Ok(())
}

fn step(real: &mut Real, model: &mut Model, setup: &Setup, op: &Op) -> TestResult {
    match op {
        Op::Append(specs) => append(real, model, setup, specs)?,
        Op::Roll => real.log().roll_now().map_err(fail)?,
        Op::Compact(delta) => {
            let now = model.clock + i64::from(*delta);
            compact(real, model, setup, now)?;
        }
        Op::Maintain(delta) => {
            let now = model.clock + i64::from(*delta);
            maintain(real, model, setup, now)?;
        }
        Op::DeleteRecords(at) => delete_records(real, model, *at)?,
        Op::Truncate(at) => truncate(real, model, *at)?,
        Op::Flush => {
            let flushed = real.log().flush().map_err(fail)?;
            prop_assert_eq!(flushed, model.end, "flush");
        }
        Op::Read(at, max_bytes) => read(real, model, *at, *max_bytes)?,
        Op::Reopen => reopen(real, model, Stop::Clean)?,
        Op::Crash => reopen(real, model, Stop::Crash)?,
        Op::PowerCut {
            segment,
            position,
            delete_later,
        } => reopen(
            real,
            model,
            Stop::PowerCut {
                segment: *segment,
                position: *position,
                delete_later: *delete_later,
            },
        )?,
    }
    Ok(())
}

/// The invariants that hold after every step.
fn check(real: &Real, model: &mut Model) -> TestResult {
    let log = real.log();
    prop_assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (model.start, model.end),
        "log start and end"
    );
    prop_assert!(model.start <= model.end, "the log starts after its end");
    prop_assert!(log.flushed_offset() <= model.end, "flushed past the end");
    let segments = layout(real.dir.path());
    prop_assert_eq!(segments.len(), log.segment_count());
    let first_base = segments[0].0;
    prop_assert!(
        first_base <= model.start && segments.last().unwrap().0 <= model.end,
        "segments {:?} for the log {}..{}",
        segments,
        model.start,
        model.end
    );
    // Segments deleted whole hold nothing at or past the log start.
    if let Some((&o, _)) = model.records.range(..first_base).next_back() {
        prop_assert!(o < model.start, "offset {} was deleted", o);
    }
    model.drop_below(first_base);

    // The whole log, read front to back.
    let mut got = Vec::new();
    let mut next = model.start;
    while next < model.end {
        let data = log
            .read(next, 1500)
            .map_err(|e| fail(format!("read({next}): {e}")))?;
        prop_assert!(
            data.next_offset() > next && data.next_offset() <= model.end,
            "no progress reading at {}",
            next
        );
        got.extend(data.records().map_err(fail)?);
        next = data.next_offset();
    }
    same_records(&got, model, model.start, model.end)?;

    // Out of range on both sides; nothing at the end.
    if model.start > 0 {
        let below = log.read(model.start - 1, 1024);
        prop_assert!(
            matches!(below, Err(Error::OffsetOutOfRange { .. })),
            "read below the start: {:?}",
            below.map(|d| d.next_offset())
        );
    }
    let past = log.read(model.end + 1, 1024);
    prop_assert!(
        matches!(past, Err(Error::OffsetOutOfRange { .. })),
        "read past the end: {:?}",
        past.map(|d| d.next_offset())
    );
    prop_assert!(log.read(model.end, 1024).map_err(fail)?.is_empty());
    Ok(())
}

fn run(setup: &Setup, ops: &[Op]) -> TestResult {
    let dir = tempfile::tempdir().unwrap();
    let config = setup.config();
    let log = PartitionLog::open(dir.path(), config.clone()).map_err(fail)?;
    let mut real = Real {
        dir,
        config,
        log: Some(log),
    };
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        step(&mut real, &mut model, setup, op)
            .and_then(|()| check(&real, &mut model))
            .map_err(|e| fail(format!("step {i} ({op:?}): {e}")))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn partition_log_follows_the_model(
        setup in setup(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(&setup, &ops)?;
    }
}

// ---------------------------------------------------------------------------------- regressions
//
// Minimized failing cases of the property test, each failing before its fix.

fn regression_config(policy: CleanupPolicy) -> LogConfig {
    LogConfig::default()
        .segment_bytes(4096)
        .index_interval_bytes(256)
        .durability(Durability::None)
        .retention(None)
        .cleanup_policy(policy)
        .delete_retention(Duration::from_millis(DELETE_RETENTION_MS as u64))
}

fn rec(key: &str, i: u64) -> Record {
    Record::new(key.to_string(), format!("value-{i}")).with_timestamp(T0)
}

/// Offsets of the records from the log start to the end.
fn offsets(log: &PartitionLog) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let data = log.read(next, 1 << 20).unwrap();
        out.extend(data.records().unwrap().iter().map(|r| r.offset));
        next = data.next_offset();
    }
    out
}

/// Cuts the `.log` of the segment based at `base` to `len` bytes.
fn cut_segment(dir: &Path, base: u64, len: u64) {
    let (_, path) = segment_files(dir)
        .into_iter()
        .find(|s| s.0 == base)
        .unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

/// `delete_records` moved the log start inside a batch; `truncate_to` an offset past the start in
/// that batch cut the batch whole (batches are never split) and ended the log at the batch's base
/// offset, below the log start: `log_start > log_end`, and the next open lowered the start to the
/// end, so offsets below the start `delete_records` had reported were given out again.
#[test]
fn truncation_inside_the_batch_holding_the_log_start_ends_the_log_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = regression_config(CleanupPolicy::Delete);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append(&[rec("a", 0)]).unwrap();
    log.append(&[rec("a", 1), rec("a", 2), rec("a", 3)])
        .unwrap(); // offsets 1..=3
    assert_eq!(log.delete_records(2).unwrap(), 2);
    assert_eq!(
        log.truncate_to(3).unwrap(),
        2,
        "the log goes on at its start"
    );
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
    assert!(offsets(&log).is_empty());
    assert_eq!(log.append(&[rec("a", 4)]).unwrap().base_offset, 2);
    // The batch kept below the start (offset 0) and the segment at the start are no "hole"
    // for recovery: a crash loses nothing.
    log.simulate_crash();
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 3));
    assert_eq!(offsets(&log), vec![2]);
    assert_eq!(log.append(&[rec("a", 5)]).unwrap().base_offset, 3);
}

/// Compaction removed every record of a sealed segment (an old value and an expired tombstone)
/// and fsynced that; a power cut then tore the first (unflushed) batch of the next segment.
/// Recovery dropped the torn segment and went back to the end of the compacted one, offset 0:
/// offsets 0 and 1, given out and compacted away, were given out again.
#[test]
fn a_power_cut_after_compaction_never_gives_compacted_offsets_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = regression_config(CleanupPolicy::Compact);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    log.append(&[rec("a", 0)]).unwrap();
    log.append(&[Record::tombstone("a").with_timestamp(T0)])
        .unwrap();
    log.roll_now().unwrap();
    assert_eq!(log.compact_at(T0 + 2 * DELETE_RETENTION_MS).unwrap(), 2);
    assert!(offsets(&log).is_empty());
    log.append(&[rec("b", 2)]).unwrap(); // offset 2, in the segment based at 2, not flushed
    log.simulate_crash();
    cut_segment(dir.path(), 2, 10); // the power cut tears it
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(log.log_end_offset(), 2, "offsets 0 and 1 were given out");
    assert_eq!(log.append(&[rec("b", 3)]).unwrap().base_offset, 2);
}

/// Opening raised the cleaner offset to the log start (5), above the base of the first segment
/// (0), which recovery then took for one compaction may have rewritten: a power cut that lost
/// that segment's unflushed tail (offsets 12..15) while the next (empty) segment file survived
/// left a hole, not a torn tail, and the log reopened ending at 15 without records 12..15.
#[test]
fn a_tail_lost_before_a_surviving_segment_is_found_after_the_log_start_moved() {
    let dir = tempfile::tempdir().unwrap();
    let config = regression_config(CleanupPolicy::Delete);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    for i in 0..10 {
        log.append(&[rec("a", i)]).unwrap();
    }
    assert_eq!(log.delete_records(5).unwrap(), 5);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    assert_eq!(log.flushed_offset(), 10);
    for i in 10..15 {
        log.append(&[rec("a", i)]).unwrap();
    }
    log.roll_now().unwrap(); // segment 15, empty
    log.simulate_crash();
    // The power cut loses offsets 12..15 of segment 0 (not flushed); segment 15 survives.
    let (_, path) = segment_files(dir.path()).into_iter().next().unwrap();
    let position = batches_in(&path)
        .into_iter()
        .find(|b| b.last_offset == 12)
        .unwrap()
        .position;
    cut_segment(dir.path(), 0, position);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(
        log.log_end_offset(),
        12,
        "the log ends where its records end"
    );
    assert_eq!(offsets(&log), (5..12).collect::<Vec<u64>>());
}

/// The other way the hole went unseen: a truncation made a compacted segment (base 0, below the
/// cleaner offset) the active one again, appends went on in it, and a power cut lost its
/// unflushed tail (offsets 6..10) while the next segment survived: the log reopened ending at 11
/// without records 6..10. (Records stamped now: a truncated segment counts its age for rolling
/// from its first record's timestamp, and an old one would roll it at the next append.)
#[test]
fn a_tail_lost_in_a_compacted_segment_a_truncation_reactivated_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let config = regression_config(CleanupPolicy::Compact);
    let log = PartitionLog::open(dir.path(), config.clone()).unwrap();
    let now = |key: &str, i: u64| Record::new(key.to_string(), format!("value-{i}"));
    for (i, key) in ["a", "b", "a", "b", "c"].into_iter().enumerate() {
        log.append(&[now(key, i as u64)]).unwrap();
    }
    log.roll_now().unwrap();
    log.append(&[now("d", 5)]).unwrap();
    assert_eq!(log.compact_at(0).unwrap(), 2); // offsets 0 and 1
    assert_eq!(log.truncate_to(4).unwrap(), 4); // segment 0 is the active one again
    for i in 4..10 {
        log.append(&[now("e", i)]).unwrap();
    }
    assert_eq!(log.segment_count(), 1);
    log.roll_now().unwrap();
    log.append(&[now("e", 10)]).unwrap(); // segment 10
    log.simulate_crash();
    let (_, path) = segment_files(dir.path()).into_iter().next().unwrap();
    let position = batches_in(&path)
        .into_iter()
        .find(|b| b.last_offset == 6)
        .unwrap()
        .position;
    cut_segment(dir.path(), 0, position);
    let log = PartitionLog::open(dir.path(), config).unwrap();
    assert_eq!(
        log.log_end_offset(),
        6,
        "the log ends where its records end"
    );
    assert_eq!(offsets(&log), vec![2, 3, 4, 5]);
}
