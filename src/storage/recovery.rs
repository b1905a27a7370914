//! Opening a partition folder: cleaning up after interrupted operations, and recovering the log
//! after an unclean stop.
//!
//! Steps, in order:
//! 1. Junk of interrupted operations is removed: `*.tmp` (atomic file writes), `*.cleaned`
//!    (compaction output not yet committed), `*.deleted`.
//! 2. Committed compactions are finished: a `<B>.log.<N>.swap` file replaces every segment whose
//!    base offset is in `B..N`; they are deleted, with `B`'s index files, and the swap file is
//!    renamed to `<B>.log` (see `compaction.rs`).
//! 3. Index files without a `.log` are removed.
//! 4. If the checkpoint says the log was closed cleanly, nothing is scanned: the active segment's
//!    indexes are validated and the few batches after its last index entry are read to find the
//!    log end. Sealed segments are not touched until they are read.
//! 5. Otherwise every segment from the one holding the recovery point on is scanned batch by batch
//!    (checksums included, and offsets contiguous in segments compaction never rewrote) and its
//!    indexes are rebuilt. At the first invalid batch the log is cut
//!    and later segments are deleted, unless the damage lies below the recovery point (data known
//!    to have been fsynced) and the config says [`RecoveryMode::Refuse`]. A segment cut to nothing
//!    stays as the (empty) active segment, so the log end never goes below its base offset,
//!    unless that base does not follow the previous segment (an overlap, or a hole: a gap before
//!    it that reaches past the cleaner offset, which compaction cannot have made). After the scan
//!    the log is fsynced, so the recovery point becomes the log end.
//! 6. If the recovered log end is below the checkpoint's log start (records were deleted up to
//!    there and the crash lost the unflushed tail above), the log restarts empty at the log
//!    start: offsets below it are never given out twice.
//! 7. The checkpoint is rewritten without the clean mark before anything is appended.

use std::path::Path;
use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::config::{LogConfig, RecoveryMode};
use super::fsutil::{self, parse_segment_name, segment_file};
use super::index::{Index, OffsetEntry, TimeEntry};
use super::segment::{ActiveState, Rebuilt, Segment};
use crate::error::{Error, IoContext, Result};

pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub state: ActiveState,
    pub log_start: u64,
    pub cleaner_offset: u64,
    pub checkpoint: Checkpoint,
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Parses `<B>.log.<N>.swap` into `(B, N)`.
pub(crate) fn parse_swap_name(name: &str) -> Option<(u64, u64)> {
    let (base, rest) = parse_segment_name(name)?;
    let end = rest.strip_prefix(".log.")?.strip_suffix(".swap")?;
    (end.len() == 20 && end.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    Some((base, end.parse::<i64>().ok()? as u64))
}

/// Finishes a committed compaction (step 2).
pub(crate) fn complete_swap(dir: &Path, base: u64, end: u64, swap_name: &str) -> Result<()> {
    for name in list(dir)? {
        if let Some((b, ".log")) = parse_segment_name(&name) {
            if (base..end).contains(&b) {
                for ext in ["log", "index", "timeindex"] {
                    fsutil::remove_if_exists(&segment_file(dir, b, ext))?;
                }
            }
        }
    }
    for ext in ["index", "timeindex"] {
        fsutil::remove_if_exists(&segment_file(dir, base, ext))?;
    }
    let from = dir.join(swap_name);
    let to = segment_file(dir, base, "log");
    std::fs::rename(&from, &to)
        .ctx(|| format!("renaming {} to {}", from.display(), to.display()))?;
    fsutil::sync_dir_of(dir)
}

pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered> {
    let checkpoint = Checkpoint::read(dir)?;
    let entries = config.index_entries() as usize;

    // Steps 1 and 2.
    let mut changed = false;
    for name in list(dir)? {
        if name.ends_with(fsutil::TMP_SUFFIX)
            || name.ends_with(".cleaned")
            || name.ends_with(".deleted")
        {
            fsutil::remove_if_exists(&dir.join(&name))?;
            changed = true;
        } else if let Some((base, end)) = parse_swap_name(&name) {
            complete_swap(dir, base, end, &name)?;
            changed = true;
        }
    }
    // Step 3.
    let names = list(dir)?;
    let mut bases = Vec::new();
    for name in &names {
        if let Some((base, ".log")) = parse_segment_name(name) {
            bases.push(base);
        }
    }
    for name in &names {
        if let Some((base, ".index" | ".timeindex")) = parse_segment_name(name) {
            if bases.binary_search(&base).is_err() {
                fsutil::remove_if_exists(&dir.join(name))?;
                changed = true;
            }
        }
    }
    if changed {
        fsutil::sync_dir_of(dir)?;
    }

    let mut segments = Vec::with_capacity(bases.len().max(1));
    for &base in &bases {
        segments.push(Arc::new(Segment::open(dir, base)?));
    }
    if segments.is_empty() {
        let start = checkpoint.map_or(0, |c| c.log_end_offset.max(c.log_start_offset));
        segments.push(Arc::new(Segment::create(dir, start, entries)?));
        fsutil::sync_dir_of(dir)?;
    }

    let clean = checkpoint.is_some_and(|c| c.clean);
    let resumed = if clean {
        resume_active(segments.last().map(Arc::as_ref), config)?
    } else {
        None
    };
    let state = match resumed {
        Some(state) => state,
        None => {
            let rp = checkpoint.map_or(0, |c| c.recovery_point);
            // Without a checkpoint nothing says which segments compaction rewrote: allow gaps.
            let cleaner_offset = checkpoint.map_or(u64::MAX, |c| c.cleaner_offset);
            scan_from_recovery_point(&mut segments, rp, cleaner_offset, config)?
        }
    };
    if !clean {
        // What was scanned may only be in the page cache of a crashed process: make it durable so
        // that the recovery point can move to the end.
        let rp = checkpoint.map_or(0, |c| c.recovery_point);
        let first = segments
            .partition_point(|s| s.base_offset() <= rp)
            .saturating_sub(1);
        for s in &segments[first..] {
            s.sync(false)?;
        }
        fsutil::sync_dir_of(dir)?;
    }

    let state = match checkpoint.map(|c| c.log_start_offset) {
        Some(start) if start > state.next_offset => restart_at(dir, &mut segments, start, entries)?,
        _ => state,
    };
    let log_end = state.next_offset;
    let first_base = segments.first().map_or(0, |s| s.base_offset());
    let log_start = checkpoint
        .map_or(first_base, |c| c.log_start_offset.max(first_base))
        .min(log_end);
    let cleaner_offset = checkpoint
        .map_or(log_start, |c| c.cleaner_offset)
        .clamp(log_start, log_end);
    let checkpoint = Checkpoint {
        clean: false,
        recovery_point: log_end,
        log_start_offset: log_start,
        cleaner_offset,
        log_end_offset: log_end,
    };
    checkpoint.write(dir)?;
    Ok(Recovered {
        segments,
        state,
        log_start,
        cleaner_offset,
        checkpoint,
    })
}

/// Step 6: records below the recorded log start were deleted (`delete_records`) and the crash
/// lost the unflushed tail above them. The log restarts empty at its log start, as Kafka's does,
/// so that offsets below it (which readers may have committed past) are never given out again.
fn restart_at(
    dir: &Path,
    segments: &mut Vec<Arc<Segment>>,
    start: u64,
    entries: usize,
) -> Result<ActiveState> {
    for s in segments.drain(..) {
        s.retire();
        s.delete_files()?;
    }
    segments.push(Arc::new(Segment::create(dir, start, entries)?));
    fsutil::sync_dir_of(dir)?;
    Ok(ActiveState::new(start))
}

/// Step 4: the active segment of a cleanly closed log. `None` if anything looks wrong, in which
/// case the caller scans instead.
fn resume_active(segment: Option<&Segment>, config: &LogConfig) -> Result<Option<ActiveState>> {
    let Some(segment) = segment else {
        return Ok(None);
    };
    let dir = segment.log_path().parent().unwrap_or(Path::new("."));
    let base = segment.base_offset();
    let Ok(offsets) = Index::<OffsetEntry>::open_sealed(&segment_file(dir, base, "index"), base)
    else {
        return Ok(None);
    };
    let Ok(times) = Index::<TimeEntry>::open_sealed(&segment_file(dir, base, "timeindex"), base)
    else {
        return Ok(None);
    };
    if segment.validate(&offsets, &times).is_err() {
        return Ok(None);
    }
    let mut state = ActiveState::new(base);
    segment.scan(0, false, |_, header, _| {
        state.first_timestamp = Some(header.max_timestamp);
        false
    })?;
    if let Some(t) = times.last() {
        state.max_timestamp = t.timestamp;
        state.offset_of_max_timestamp = t.offset;
    }
    let from = offsets.last().map_or(0, |e| u64::from(e.position));
    if let Some(e) = offsets.last() {
        state.next_offset = e.offset + 1;
    }
    let first_timestamp = state.first_timestamp;
    let mut offset_entries = offsets.entries();
    let mut time_entries = times.entries();
    let end = segment.scan(from, true, |position, header, _| {
        if let Some((o, t)) = state.observe(
            header,
            position,
            header.total_len() as u64,
            config.index_interval_bytes,
        ) {
            offset_entries.push(o);
            if time_entries
                .last()
                .is_none_or(|l| t.timestamp > l.timestamp)
            {
                time_entries.push(t);
            }
        }
        true
    })?;
    if end.damage.is_some() || end.valid_end != segment.size() {
        return Ok(None);
    }
    state.first_timestamp = first_timestamp;
    drop((offsets, times));
    let rebuilt = Rebuilt {
        offsets: offset_entries,
        times: time_entries,
        state,
        end,
    };
    segment.activate(&rebuilt, config.index_entries() as usize)?;
    Ok(Some(state))
}

/// Step 5.
fn scan_from_recovery_point(
    segments: &mut Vec<Arc<Segment>>,
    recovery_point: u64,
    cleaner_offset: u64,
    config: &LogConfig,
) -> Result<ActiveState> {
    let entries = config.index_entries() as usize;
    let interval = config.index_interval_bytes;
    let mut j = segments
        .partition_point(|s| s.base_offset() <= recovery_point)
        .saturating_sub(1);
    let mut prev_next: Option<u64> = None;
    loop {
        let segment = Arc::clone(&segments[j]);
        // Segments compaction never rewrote have no offset gaps.
        let mut rebuilt =
            segment.rebuild(Some(interval), segment.base_offset() >= cleaner_offset)?;
        let overlap = prev_next.is_some_and(|p| segment.base_offset() < p);
        // Offsets compaction emptied leave gaps only below the cleaner offset (compaction cleans
        // below it; a truncation that goes on past such a gap lowers it to the new segment's base
        // at most). A segment that starts past both the previous one's end and the cleaner
        // offset follows a hole: that tail was lost while a later file survived (a power cut can
        // do that). Asking instead whether the previous segment starts at or past the cleaner
        // offset missed holes: opening raises the cleaner offset to the log start, and a
        // truncation makes a compacted segment active again, so segments whose tail compaction
        // never rewrote can start below it.
        let hole = segment.base_offset() > cleaner_offset
            && prev_next.is_some_and(|p| segment.base_offset() > p);
        if overlap || hole {
            let why = if overlap {
                "segment overlaps the previous one".to_string()
            } else {
                format!(
                    "segment starts at offset {} but the previous one ends before offset {}",
                    segment.base_offset(),
                    prev_next.unwrap_or_default()
                )
            };
            rebuilt = Rebuilt {
                offsets: Vec::new(),
                times: Vec::new(),
                state: ActiveState::new(segment.base_offset()),
                end: super::segment::ScanEnd {
                    valid_end: 0,
                    damage: Some(why),
                },
            };
        }
        let last = j + 1 == segments.len();
        if let Some(why) = rebuilt.end.damage.clone() {
            let below_recovery_point = rebuilt.state.next_offset < recovery_point;
            if below_recovery_point && config.recovery == RecoveryMode::Refuse {
                return Err(Error::Corrupt {
                    path: segment.log_path().to_path_buf(),
                    position: rebuilt.end.valid_end,
                    reason: format!("{why} (below the recovery point {recovery_point}: data that had been flushed)"),
                });
            }
            for later in segments.drain(j + 1..).rev() {
                later.delete_files()?;
            }
            if rebuilt.end.valid_end == 0 && j > 0 && (overlap || hole) {
                // Its base offset cannot follow the previous segment: drop it and make the
                // previous segment active again. A segment that only lost its batches stays, empty,
                // as the active one: its base offset is where the log went on (a roll, or a
                // truncation past offsets compaction emptied), and after a segment compaction
                // rewrote, the previous one can end well below it (its last records removed), so
                // going back to that end would give out again offsets that compaction removed
                // and fsynced, even offsets below the recovery point.
                segments.pop();
                segment.delete_files()?;
                j -= 1;
                prev_next = None;
                continue;
            }
            segment.activate(&rebuilt, entries)?;
            return Ok(rebuilt.state);
        }
        if last {
            segment.activate(&rebuilt, entries)?;
            return Ok(rebuilt.state);
        }
        segment.install_sealed_indexes(&rebuilt)?;
        prev_next = Some(rebuilt.state.next_offset);
        j += 1;
    }
}
