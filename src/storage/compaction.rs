//! Compaction (Kafka's log cleaner): keep the newest record of each key in the sealed segments,
//! never changing an offset.
//!
//! A pass, run when the dirty ratio (bytes past the cleaner offset / bytes of sealed segments)
//! reaches `min_cleanable_dirty_ratio`:
//! 1. Build the offset map: for each key in the sealed segments (keys are hashed to 128 bits),
//!    the offset of its newest record. The active segment is never cleaned, as in Kafka.
//! 2. Cut the sealed segments into groups of consecutive segments that together fit in one
//!    segment (`segment_bytes`, and offsets within `u32` of the group's base offset).
//! 3. For each group with base offset `B`, followed by the segment with base offset `N`, write
//!    the records to keep into `<B>.log.cleaned`: a record is kept when it is the newest of its
//!    key, unless it is a tombstone older than `delete_retention`. (Kafka counts
//!    `delete.retention.ms` from the first cleaning that saw the tombstone; tidelog counts it from
//!    the tombstone's own timestamp, so a tombstone stamped long ago goes at the next pass.) A batch that keeps every record
//!    is copied as it is; one that keeps some is rewritten with the same base offset and last
//!    offset delta; one that keeps none is dropped. A compressed batch is copied as it is.
//! 4. Commit, crash-safe at every step:
//!    ```text
//!    fsync <B>.log.cleaned ─► rename to <B>.log.<N>.swap ─► fsync dir      (commit point)
//!      ─► delete the group's .log/.index/.timeindex ─► rename swap to <B>.log ─► fsync dir
//!      ─► write <B>.index and <B>.timeindex
//!    ```
//!    A crash before the commit point leaves the old segments and a `.cleaned` file that opening
//!    deletes; after it, opening finishes the swap (`recovery.rs`, step 2). Either way every record
//!    that compaction keeps is there, once.
//! 5. Readers holding an old segment keep reading its (unlinked) file; new readers see the new
//!    segment list.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use super::fsutil::{self, segment_file};
use super::index::{OffsetEntry, TimeEntry};
use super::log::{MaintenanceState, PartitionLog};
use super::segment::{ActiveState, Rebuilt, ScanEnd, Segment};
use crate::batch::{self, BatchHeader, RecordBatch};
use crate::error::{Error, IoContext, Result};
use crate::record::OffsetRecord;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CompactionStats {
    pub records_removed: u64,
}

fn key_hash(key: &[u8]) -> u128 {
    let mut a = DefaultHasher::new();
    key.hash(&mut a);
    let mut b = DefaultHasher::new();
    0xA5u8.hash(&mut b);
    key.hash(&mut b);
    u128::from(a.finish()) << 64 | u128::from(b.finish())
}

fn corrupt(segment: &Segment, position: u64, reason: &dyn std::fmt::Display) -> Error {
    Error::Corrupt {
        path: segment.log_path().to_path_buf(),
        position,
        reason: reason.to_string(),
    }
}

/// Decodes a batch's records; `Ok(None)` for a compressed batch (kept as it is).
fn records_of(segment: &Segment, position: u64, bytes: &[u8]) -> Result<Option<Vec<OffsetRecord>>> {
    let batch = RecordBatch::from_bytes(Bytes::copy_from_slice(bytes))
        .map_err(|e| corrupt(segment, position, &e))?;
    let mut out = Vec::with_capacity(batch.header().record_count as usize);
    for r in batch.records() {
        match r {
            Ok(r) => out.push(r),
            Err(Error::UnsupportedCompression(_)) => return Ok(None),
            Err(e) => return Err(corrupt(segment, position, &e)),
        }
    }
    Ok(Some(out))
}

/// Scans a whole sealed segment, failing on damage.
fn scan_all(
    segment: &Segment,
    mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut failure = None;
    let end = segment.scan(0, true, |position, header, bytes| {
        match f(position, header, bytes) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(why) = end.damage {
        return Err(corrupt(segment, end.valid_end, &why));
    }
    Ok(())
}

/// Runs a compaction pass if the dirty ratio calls for one (or always, with `force`). The caller
/// holds the maintenance lock.
pub(crate) fn compact_if_dirty(
    log: &PartitionLog,
    m: &mut MaintenanceState,
    now: i64,
    force: bool,
) -> Result<Option<CompactionStats>> {
    let segments = log.segments.load_full();
    if segments.len() < 2 {
        return Ok(None);
    }
    let sealed = &segments[..segments.len() - 1];
    let first_uncleanable = segments[segments.len() - 1].base_offset();
    let (mut clean, mut dirty) = (0u64, 0u64);
    for (i, s) in sealed.iter().enumerate() {
        let next_base = segments[i + 1].base_offset();
        if next_base > m.cleaner_offset {
            dirty += s.size();
        } else {
            clean += s.size();
        }
    }
    if dirty == 0 && !force {
        return Ok(None);
    }
    let ratio = dirty as f64 / (clean + dirty).max(1) as f64;
    if !force && ratio < log.config.load().min_cleanable_dirty_ratio {
        return Ok(None);
    }

    // 1. The offset map.
    let mut newest: HashMap<u128, u64> = HashMap::new();
    for s in sealed {
        scan_all(s, |position, _, bytes| {
            for r in records_of(s, position, bytes)?.unwrap_or_default() {
                if let Some(key) = &r.record.key {
                    newest.insert(key_hash(key), r.offset);
                }
            }
            Ok(())
        })?;
    }

    // 2. Groups.
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for i in 0..sealed.len() {
        let span = segments[i + 1].base_offset() - sealed[start].base_offset();
        if i > start
            && (bytes + sealed[i].size() > log.config.load().segment_bytes
                || span > u64::from(u32::MAX))
        {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += sealed[i].size();
    }
    groups.push(start..sealed.len());

    // 3 and 4. Recovery takes segments at or past the checkpoint's cleaner offset to be free of
    // offset gaps (never compacted); that must hold before the first swap commits, or a crash
    // between the commit and the checkpoint below makes recovery cut compacted data as damage.
    m.cleaner_offset = m.cleaner_offset.max(first_uncleanable);
    log.write_checkpoint(m, false)?;
    let delete_horizon = now.saturating_sub(
        i64::try_from(log.config.load().delete_retention.as_millis()).unwrap_or(i64::MAX),
    );
    let mut stats = CompactionStats::default();
    for group in groups {
        let members: Vec<Arc<Segment>> = segments[group.clone()].to_vec();
        let end = segments[group.end].base_offset();
        let (replacement, removed) = clean_group(log, &members, end, &newest, delete_horizon)?;
        stats.records_removed += removed;
        log.segments.rcu(|list| {
            let mut out: Vec<Arc<Segment>> = Vec::with_capacity(list.len());
            for s in list.iter() {
                if Arc::ptr_eq(s, &members[0]) {
                    out.push(Arc::clone(&replacement));
                } else if !members.iter().any(|m| Arc::ptr_eq(m, s)) {
                    out.push(Arc::clone(s));
                }
            }
            out
        });
    }
    m.cleaner_offset = first_uncleanable;
    Ok(Some(stats))
}

/// Writes, commits and opens the cleaned replacement of `members` (step 3 and 4).
fn clean_group(
    log: &PartitionLog,
    members: &[Arc<Segment>],
    end: u64,
    newest: &HashMap<u128, u64>,
    delete_horizon: i64,
) -> Result<(Arc<Segment>, u64)> {
    let dir = &log.dir;
    let base = members[0].base_offset();
    let cleaned_path = fsutil::with_suffix(&segment_file(dir, base, "log"), ".cleaned");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&cleaned_path)
        .ctx(|| format!("creating {}", cleaned_path.display()))?;
    let interval = log.config.load().index_interval_bytes;
    let mut state = ActiveState::new(base);
    let mut offsets: Vec<OffsetEntry> = Vec::new();
    let mut times: Vec<TimeEntry> = Vec::new();
    let mut position = 0u64;
    let mut removed = 0u64;
    let mut buf = Vec::new();
    for s in members {
        scan_all(s, |at, header, bytes| {
            let out: &[u8] = match records_of(s, at, bytes)? {
                None => bytes,
                Some(records) => {
                    let keep: Vec<OffsetRecord> = records
                        .iter()
                        .filter(|r| {
                            let newest_of_key = r
                                .record
                                .key
                                .as_ref()
                                .is_some_and(|k| newest.get(&key_hash(k)) == Some(&r.offset));
                            let live =
                                r.record.value.is_some() || r.record.timestamp >= delete_horizon;
                            newest_of_key && live
                        })
                        .cloned()
                        .collect();
                    removed += (records.len() - keep.len()) as u64;
                    if keep.len() == records.len() {
                        bytes
                    } else if keep.is_empty() {
                        return Ok(());
                    } else {
                        buf.clear();
                        batch::encode_retained(&mut buf, header, &keep)?;
                        &buf
                    }
                }
            };
            let header = BatchHeader::parse(out)?;
            file.write_all_at(out, position)
                .ctx(|| format!("writing {}", cleaned_path.display()))?;
            if let Some((o, t)) = state.observe(&header, position, out.len() as u64, interval) {
                offsets.push(o);
                if times.last().is_none_or(|l| t.timestamp > l.timestamp) {
                    times.push(t);
                }
            }
            position += out.len() as u64;
            Ok(())
        })?;
    }
    file.sync_all()
        .ctx(|| format!("syncing {}", cleaned_path.display()))?;
    drop(file);

    // Commit point.
    let swap_name = format!("{base:020}.log.{end:020}.swap");
    let swap_path = dir.join(&swap_name);
    std::fs::rename(&cleaned_path, &swap_path).ctx(|| {
        format!(
            "renaming {} to {}",
            cleaned_path.display(),
            swap_path.display()
        )
    })?;
    fsutil::sync_dir_of(dir)?;
    for member in members {
        member.retire();
    }
    super::recovery::complete_swap(dir, base, end, &swap_name)?;

    let segment = Segment::open(dir, base)?;
    let rebuilt = Rebuilt {
        offsets,
        times,
        state,
        end: ScanEnd {
            valid_end: position,
            damage: None,
        },
    };
    segment.install_sealed_indexes(&rebuilt)?;
    Ok((Arc::new(segment), removed))
}
