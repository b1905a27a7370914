//! One segment: a `.log` file of record batches back to back, with its `.index` and `.timeindex`.
//!
//! ```text
//! 00000000000000000000.log         batch | batch | batch | ...   (Kafka RecordBatch v2, see batch.rs)
//! 00000000000000000000.index       sparse: last offset of a batch -> its position (see index.rs)
//! 00000000000000000000.timeindex   sparse: max timestamp so far -> offset (see index.rs)
//! ```
//!
//! Invariants:
//! 1. Bytes below `size` are whole, valid batches with strictly increasing offsets, all within
//!    `base_offset..=base_offset + u32::MAX`. `size` is published (`Release`) only after the bytes
//!    are written, so a reader that loads it (`Acquire`) never sees a partly written batch.
//! 2. Bytes at or past `size` mean nothing: a failed write may have left some there; the next
//!    append overwrites them and a clean close cuts them off.
//! 3. A sealed segment's `.log` never changes again; compaction and retention replace or delete
//!    whole files. Readers keep an `Arc<Segment>`, so a deleted file stays readable through its
//!    open descriptor until the last reader is done.
//! 4. Indexes are a cache of the `.log`: a sealed segment loads them on first use and rebuilds them
//!    from the `.log` when they are missing or fail validation.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{RwLock, RwLockReadGuard};

use super::fsutil::{self, segment_file};
use super::index::{Index, OffsetEntry, TimeEntry};
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::error::{Error, IoContext, Result};

/// How much of the `.log` the scanner reads at a time.
const SCAN_CHUNK: usize = 1 << 20;
/// How much of the `.log` a lookup (`locate`, `offset_for_timestamp`) reads at a time. Index
/// entries are `index_interval_bytes` (4 KiB by default) apart, so the batch sought is usually
/// within the first read (reading `SCAN_CHUNK` there made every lookup copy 1 MiB).
const LOOKUP_CHUNK: usize = 8 << 10;
/// Marks a timestamp not known yet.
const UNKNOWN_TS: i64 = i64::MIN;

pub(crate) struct Indexes {
    pub offsets: Index<OffsetEntry>,
    pub times: Index<TimeEntry>,
}

/// The writer's running state for the active segment (kept under the partition's writer lock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveState {
    /// Offset the next batch gets.
    pub next_offset: u64,
    /// Bytes appended since the last index entry.
    pub bytes_since_index: u64,
    /// Largest timestamp in the segment, and the last offset of the batch holding it.
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    /// Timestamp of the first batch (Kafka rolls by `segment.ms` measured from it); `None` when
    /// the segment is empty.
    pub first_timestamp: Option<i64>,
}

impl ActiveState {
    pub fn new(base_offset: u64) -> Self {
        ActiveState {
            next_offset: base_offset,
            bytes_since_index: 0,
            max_timestamp: UNKNOWN_TS,
            offset_of_max_timestamp: base_offset,
            first_timestamp: None,
        }
    }

    /// Accounts for one appended batch; returns the index entries to add, if the interval passed.
    pub fn observe(
        &mut self,
        header: &BatchHeader,
        position: u64,
        len: u64,
        interval: u64,
    ) -> Option<(OffsetEntry, TimeEntry)> {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.first_timestamp.is_none() {
            self.first_timestamp = Some(header.max_timestamp);
        }
        self.next_offset = header.last_offset() + 1;
        let entries = (self.bytes_since_index > interval).then(|| {
            self.bytes_since_index = 0;
            (
                OffsetEntry {
                    offset: header.last_offset(),
                    position: position as u32,
                },
                TimeEntry {
                    timestamp: self.max_timestamp,
                    offset: self.offset_of_max_timestamp,
                },
            )
        });
        self.bytes_since_index += len;
        entries
    }
}

/// Where a scan of the `.log` stopped.
#[derive(Debug, Clone)]
pub(crate) struct ScanEnd {
    /// End of the last valid batch.
    pub valid_end: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub damage: Option<String>,
}

/// What a full scan found: the rebuilt index entries and the writer state at the end.
pub(crate) struct Rebuilt {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    pub state: ActiveState,
    pub end: ScanEnd,
}

pub(crate) struct Segment {
    base_offset: u64,
    log_path: PathBuf,
    file: File,
    size: AtomicU64,
    max_timestamp: AtomicI64,
    indexes: RwLock<Option<Indexes>>,
    /// Set when the segment left the log (retention, compaction, truncation): from then on it
    /// never writes index files, whose paths may belong to its successor.
    retired: AtomicBool,
    /// Where the last appended batch is: `(its base offset - base_offset) << 32 | its position`;
    /// every batch before it ends below its base offset, so it is the one `locate` finds for that
    /// offset. `NO_HINT` when unknown.
    /// Set after each append (writer lock held), cleared under the `indexes` write lock wherever
    /// the bytes below the published size can change (`activate`, `truncate_from`). A tail
    /// fetch at the log end finds its batch here without an index lookup or header walk.
    next_hint: AtomicU64,
}

/// [`Segment::next_hint`] when no hint is known.
const NO_HINT: u64 = u64::MAX;

/// What [`Segment::read_hinted`] found.
enum Hinted {
    /// No usable hint: look the offset up.
    Unknown,
    /// The batch holding the offset is at or past the read's limit.
    PastLimit,
    /// The bytes from that batch on (at least the whole batch), not yet cut to whole batches.
    Found(Bytes),
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// Creates a new, empty active segment (files truncated if they exist).
    pub fn create(dir: &Path, base_offset: u64, index_entries: usize) -> Result<Segment> {
        let log_path = segment_file(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .ctx(|| format!("creating segment {}", log_path.display()))?;
        let seg = Segment::with_file(log_path, file, base_offset, 0);
        let indexes = Index::open_active(
            &segment_file(dir, base_offset, "index"),
            base_offset,
            index_entries,
            0,
        )
        .and_then(|offsets| {
            let times = Index::open_active(
                &segment_file(dir, base_offset, "timeindex"),
                base_offset,
                index_entries,
                0,
            )?;
            Ok(Indexes { offsets, times })
        });
        match indexes {
            Ok(ix) => {
                *seg.indexes.write() = Some(ix);
                Ok(seg)
            }
            Err(e) => {
                // For example a full disk: leave no half-made segment behind.
                let _ = seg.delete_files();
                Err(e)
            }
        }
    }

    /// Opens an existing segment without reading its indexes (they load on first use).
    pub fn open(dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = segment_file(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .ctx(|| format!("opening segment {}", log_path.display()))?;
        let size = file
            .metadata()
            .ctx(|| format!("reading size of {}", log_path.display()))?
            .len();
        Ok(Segment::with_file(log_path, file, base_offset, size))
    }

    fn with_file(log_path: PathBuf, file: File, base_offset: u64, size: u64) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size: AtomicU64::new(size),
            max_timestamp: AtomicI64::new(UNKNOWN_TS),
            indexes: RwLock::new(None),
            retired: AtomicBool::new(false),
            next_hint: AtomicU64::new(NO_HINT),
        }
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Published size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn dir(&self) -> &Path {
        self.log_path.parent().unwrap_or(Path::new("."))
    }

    // ---------------------------------------------------------------- writing (writer lock held)

    /// Writes one encoded batch at the end and publishes it. On error nothing is published
    /// (invariant 2).
    pub fn append(
        &self,
        state: &mut ActiveState,
        bytes: &[u8],
        header: &BatchHeader,
        interval: u64,
    ) -> Result<()> {
        let position = self.size.load(Ordering::Relaxed);
        if state.bytes_since_index > interval {
            // This batch gets index entries: make room first, so a full disk fails the append
            // before anything is written.
            let needs_growth = self
                .indexes
                .read()
                .as_ref()
                .is_some_and(|ix| ix.offsets.needs_growth() || ix.times.needs_growth());
            if needs_growth {
                if let Some(ix) = self.indexes.write().as_mut() {
                    ix.offsets.grow()?;
                    ix.times.grow()?;
                }
            }
        }
        self.file
            .write_all_at(bytes, position)
            .ctx(|| format!("appending to {}", self.log_path.display()))?;
        if let Some((offset_entry, time_entry)) =
            state.observe(header, position, bytes.len() as u64, interval)
        {
            if let Some(ix) = self.indexes.read().as_ref() {
                ix.offsets.append(offset_entry);
                if ix
                    .times
                    .last()
                    .is_none_or(|last| time_entry.timestamp > last.timestamp)
                {
                    ix.times.append(time_entry);
                }
            }
        }
        self.max_timestamp
            .store(state.max_timestamp, Ordering::Relaxed);
        let end = position + bytes.len() as u64;
        self.size.store(end, Ordering::Release);
        // After the size: a reader that sees the hint also sees the batch it points to.
        let hint = u32::try_from(header.base_offset - self.base_offset)
            .ok()
            .zip(u32::try_from(position).ok())
            .map_or(NO_HINT, |(rel, pos)| u64::from(rel) << 32 | u64::from(pos));
        self.next_hint.store(hint, Ordering::Release);
        Ok(())
    }

    /// The position of the batch starting at `offset` when it is the last appended one (see
    /// [`next_hint`](Self::next_hint)) and published.
    fn hinted_position(&self, offset: u64) -> Option<u64> {
        let hint = self.next_hint.load(Ordering::Acquire);
        if hint == NO_HINT || offset.checked_sub(self.base_offset)? != hint >> 32 {
            return None;
        }
        let position = hint & u64::from(u32::MAX);
        (position < self.size()).then_some(position)
    }

    /// True when an index has no room for the entries one more batch may add.
    pub fn indexes_full(&self) -> bool {
        self.indexes
            .read()
            .as_ref()
            .is_some_and(|ix| ix.offsets.is_full() || ix.times.len() + 2 > ix.times.capacity())
    }

    /// Seals the active segment: records the final time-index entry, trims the indexes to their
    /// entries and flushes them. The `.log` is fsynced by the flusher, not here.
    pub fn seal(&self, state: &ActiveState) -> Result<()> {
        let mut guard = self.indexes.write();
        let Some(ix) = guard.take() else {
            return Ok(());
        };
        if state.first_timestamp.is_some()
            && ix
                .times
                .last()
                .is_none_or(|l| state.max_timestamp > l.timestamp)
        {
            ix.times.append(TimeEntry {
                timestamp: state.max_timestamp,
                offset: state.offset_of_max_timestamp,
            });
        }
        let offsets = ix.offsets.seal()?;
        let times = ix.times.seal()?;
        *guard = Some(Indexes { offsets, times });
        Ok(())
    }

    /// Fsyncs the `.log` (and, with `indexes`, the index files).
    pub fn sync(&self, indexes: bool) -> Result<()> {
        self.file
            .sync_data()
            .ctx(|| format!("syncing {}", self.log_path.display()))?;
        if indexes {
            if let Some(ix) = self.indexes.read().as_ref() {
                ix.offsets.sync()?;
                ix.times.sync()?;
            }
        }
        Ok(())
    }

    /// Cuts the `.log` at `size` (dropping bytes a failed write left past the published end).
    pub fn trim_log(&self) -> Result<()> {
        let size = self.size();
        self.file
            .set_len(size)
            .ctx(|| format!("trimming {}", self.log_path.display()))
    }

    // ---------------------------------------------------------------- reading (no lock)

    /// Reads up to `len` bytes at `position`, fewer at the published end.
    ///
    /// The buffer is not zero-filled first: `pread` writes straight into its spare capacity.
    pub fn read_at(&self, position: u64, len: usize) -> Result<Bytes> {
        self.read_at_reusing(position, len, &mut None)
    }

    /// [`read_at`](Self::read_at) into `spare`'s allocation when it is large enough (taking it),
    /// so that a reader that fetches again and again does not allocate and fault in a new
    /// buffer each time.
    pub fn read_at_reusing(
        &self,
        position: u64,
        len: usize,
        spare: &mut Option<BytesMut>,
    ) -> Result<Bytes> {
        let end = self.size();
        let len = len.min(end.saturating_sub(position) as usize);
        let mut buf = match spare.take() {
            Some(mut buf) if buf.capacity() >= len => {
                buf.clear();
                buf
            }
            _ => BytesMut::with_capacity(len),
        };
        let fd = self.file.as_raw_fd();
        while buf.len() < len {
            let done = buf.len();
            let at = libc::off_t::try_from(position + done as u64).map_err(|_| {
                Error::io(
                    format!("reading {}", self.log_path.display()),
                    std::io::Error::from(std::io::ErrorKind::InvalidInput),
                )
            })?;
            let spare = &mut buf.spare_capacity_mut()[..len - done];
            // SAFETY: `spare` is valid for writes of `spare.len()` bytes (owned, unaliased spare
            // capacity of `buf`) and `pread` writes at most that many; `fd` is this segment's open
            // file, alive as long as `self`. Nothing reads the spare bytes before `set_len`.
            let n = unsafe { libc::pread(fd, spare.as_mut_ptr().cast(), spare.len(), at) };
            match usize::try_from(n) {
                Ok(0) => break, // the file was cut under us (truncate_to); return what is there
                Ok(n) => {
                    // SAFETY: `pread` initialised the first `n <= spare.len()` spare bytes, so
                    // `done + n <= len <= capacity` bytes of `buf` are initialised.
                    unsafe { buf.set_len(done + n) };
                }
                Err(_) => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(Error::io(format!("reading {}", self.log_path.display()), e));
                    }
                }
            }
        }
        Ok(buf.freeze())
    }

    /// The indexes, loaded (and if needed rebuilt) on first use.
    fn indexes(&self) -> Result<RwLockReadGuard<'_, Option<Indexes>>> {
        {
            let guard = self.indexes.read();
            if guard.is_some() {
                return Ok(guard);
            }
        }
        let mut guard = self.indexes.write();
        // A retired segment's readers scan without an index (see `retire`).
        if guard.is_none() && !self.retired.load(Ordering::Acquire) {
            *guard = Some(self.load_sealed_indexes()?);
        }
        drop(guard);
        Ok(self.indexes.read())
    }

    /// Marks the segment as no longer part of the log, before its files are deleted or replaced.
    /// Readers still holding it keep reading its `.log` through the open file, but never load or
    /// rebuild index files again: those paths may already belong to the segment that replaced it.
    pub fn retire(&self) {
        let _no_loader_running = self.indexes.write();
        self.retired.store(true, Ordering::Release);
    }

    fn load_sealed_indexes(&self) -> Result<Indexes> {
        let dir = self.dir().to_path_buf();
        let offsets_path = segment_file(&dir, self.base_offset, "index");
        let times_path = segment_file(&dir, self.base_offset, "timeindex");
        let loaded = (|| -> Result<Indexes> {
            let offsets = Index::<OffsetEntry>::open_sealed(&offsets_path, self.base_offset)?;
            let times = Index::<TimeEntry>::open_sealed(&times_path, self.base_offset)?;
            self.validate(&offsets, &times)?;
            Ok(Indexes { offsets, times })
        })();
        if let Ok(ix) = loaded {
            return Ok(ix);
        }
        // Missing or damaged: rebuild from the .log (invariant 4).
        let rebuilt = self.rebuild(None, false)?;
        self.write_sealed_indexes(&rebuilt)
    }

    fn write_sealed_indexes(&self, rebuilt: &Rebuilt) -> Result<Indexes> {
        let dir = self.dir();
        let mut times = rebuilt.times.clone();
        let state = rebuilt.state;
        if state.first_timestamp.is_some()
            && times
                .last()
                .is_none_or(|l| state.max_timestamp > l.timestamp)
        {
            times.push(TimeEntry {
                timestamp: state.max_timestamp,
                offset: state.offset_of_max_timestamp,
            });
        }
        if state.first_timestamp.is_some() {
            self.max_timestamp
                .store(state.max_timestamp, Ordering::Relaxed);
        }
        let offsets = Index::write_sealed(
            &segment_file(dir, self.base_offset, "index"),
            self.base_offset,
            &rebuilt.offsets,
        )?;
        let times = Index::write_sealed(
            &segment_file(dir, self.base_offset, "timeindex"),
            self.base_offset,
            &times,
        )?;
        Ok(Indexes { offsets, times })
    }

    /// Writes the indexes a scan produced as this (sealed) segment's index files.
    pub fn install_sealed_indexes(&self, rebuilt: &Rebuilt) -> Result<()> {
        let ix = self.write_sealed_indexes(rebuilt)?;
        *self.indexes.write() = Some(ix);
        Ok(())
    }

    /// Checks that index entries are ordered and point inside the `.log`.
    pub fn validate(&self, offsets: &Index<OffsetEntry>, times: &Index<TimeEntry>) -> Result<()> {
        let size = self.size();
        let corrupt = |path: &Path, i: usize, what: &str| Error::Corrupt {
            path: path.to_path_buf(),
            position: i as u64,
            reason: what.to_string(),
        };
        let mut prev: Option<OffsetEntry> = None;
        for i in 0..offsets.len() {
            let e = offsets.get(i);
            if u64::from(e.position) >= size
                || prev.is_some_and(|p| p.offset >= e.offset || p.position >= e.position)
            {
                return Err(corrupt(
                    offsets.path(),
                    i,
                    "offset index entries out of order or past the log",
                ));
            }
            prev = Some(e);
        }
        let mut prev: Option<TimeEntry> = None;
        for i in 0..times.len() {
            let e = times.get(i);
            if prev.is_some_and(|p| p.timestamp >= e.timestamp || p.offset > e.offset) {
                return Err(corrupt(times.path(), i, "time index entries out of order"));
            }
            prev = Some(e);
        }
        Ok(())
    }

    /// Scans the whole `.log` (checksums included) and returns the index entries it implies.
    /// With `interval` None, Kafka's default 4096 is used. With `contiguous`, each batch must
    /// start right after the previous one (the first at the segment's base offset), as in a
    /// segment compaction never rewrote; this catches a damaged base offset, which lies outside
    /// the CRC.
    pub fn rebuild(&self, interval: Option<u64>, contiguous: bool) -> Result<Rebuilt> {
        let interval = interval.unwrap_or(4096);
        let mut state = ActiveState::new(self.base_offset);
        let mut offsets = Vec::new();
        let mut times: Vec<TimeEntry> = Vec::new();
        let mut gap = None;
        let mut end = self.scan(0, true, |position, header, _| {
            if contiguous && header.base_offset != state.next_offset {
                gap = Some((
                    position,
                    format!(
                        "batch starts at offset {} where {} was expected",
                        header.base_offset, state.next_offset
                    ),
                ));
                return false;
            }
            if let Some((o, t)) =
                state.observe(header, position, header.total_len() as u64, interval)
            {
                offsets.push(o);
                if times.last().is_none_or(|l| t.timestamp > l.timestamp) {
                    times.push(t);
                }
            }
            true
        })?;
        if let Some((position, why)) = gap {
            end = ScanEnd {
                valid_end: position,
                damage: Some(why),
            };
        }
        Ok(Rebuilt {
            offsets,
            times,
            state,
            end,
        })
    }

    /// Makes this segment the active one after a scan: cuts the `.log` at `end`, preallocates and
    /// maps its indexes with the rebuilt entries.
    pub fn activate(&self, rebuilt: &Rebuilt, index_entries: usize) -> Result<()> {
        let mut guard = self.indexes.write();
        self.next_hint.store(NO_HINT, Ordering::Release);
        // Drop any old mapping before the files are resized: a mapping of a shrunk file faults.
        *guard = None;
        *guard = Some(self.active_indexes(rebuilt, index_entries)?);
        self.size.store(rebuilt.end.valid_end, Ordering::Release);
        self.trim_log()?;
        self.max_timestamp
            .store(rebuilt.state.max_timestamp, Ordering::Relaxed);
        Ok(())
    }

    fn active_indexes(&self, rebuilt: &Rebuilt, index_entries: usize) -> Result<Indexes> {
        let dir = self.dir();
        let mut offsets = Index::open_active(
            &segment_file(dir, self.base_offset, "index"),
            self.base_offset,
            index_entries,
            0,
        )?;
        let mut times = Index::open_active(
            &segment_file(dir, self.base_offset, "timeindex"),
            self.base_offset,
            index_entries,
            0,
        )?;
        fill(&mut offsets, &rebuilt.offsets)?;
        fill(&mut times, &rebuilt.times)?;
        Ok(Indexes { offsets, times })
    }

    /// Walks the batches from `from` to the published end. `f(position, header, bytes)` is called
    /// for each valid batch and may return false to stop. Stops at the first invalid batch and
    /// says why in [`ScanEnd::damage`].
    pub fn scan(
        &self,
        from: u64,
        verify_crc: bool,
        f: impl FnMut(u64, &BatchHeader, &[u8]) -> bool,
    ) -> Result<ScanEnd> {
        self.scan_in_chunks(from, verify_crc, SCAN_CHUNK, f)
    }

    /// [`scan`](Self::scan), reading `chunk_len` bytes at a time (more for a bigger batch).
    fn scan_in_chunks(
        &self,
        from: u64,
        verify_crc: bool,
        chunk_len: usize,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> bool,
    ) -> Result<ScanEnd> {
        let size = self.size();
        let mut position = from;
        let mut last_offset: Option<u64> = None;
        let mut chunk = Bytes::new();
        let mut chunk_start = from;
        while position < size {
            let rel = (position - chunk_start) as usize;
            let header_needed = HEADER_LEN.min((size - position) as usize);
            if rel + header_needed > chunk.len() {
                chunk = self.read_at(position, chunk_len)?;
                chunk_start = position;
                if chunk.len() < header_needed {
                    // The file was cut under us (truncate_to): stop rather than re-read forever.
                    return Ok(ScanEnd {
                        valid_end: position,
                        damage: Some("file is shorter than its published size".into()),
                    });
                }
                continue;
            }
            let damage = |why: String| {
                Ok(ScanEnd {
                    valid_end: position,
                    damage: Some(why),
                })
            };
            let header = match BatchHeader::parse(&chunk[rel..]) {
                Ok(h) => h,
                Err(e) => return damage(e.to_string()),
            };
            let total = header.total_len() as u64;
            if let Some(why) = self.header_damage(&header, position, size, last_offset) {
                return damage(why);
            }
            if rel + total as usize > chunk.len() {
                chunk = self.read_at(position, (total as usize).max(chunk_len))?;
                chunk_start = position;
                if (chunk.len() as u64) < total {
                    return damage("file is shorter than its published size".into());
                }
                continue;
            }
            let bytes = &chunk[rel..rel + total as usize];
            if verify_crc {
                let computed = crate::batch::crc32c(&bytes[21..]);
                if computed != header.crc {
                    return damage(
                        Error::ChecksumMismatch {
                            stored: header.crc,
                            computed,
                        }
                        .to_string(),
                    );
                }
            }
            last_offset = Some(header.last_offset());
            if !f(position, &header, bytes) {
                return Ok(ScanEnd {
                    valid_end: position + total,
                    damage: None,
                });
            }
            position += total;
        }
        Ok(ScanEnd {
            valid_end: position,
            damage: None,
        })
    }

    /// Why the batch `header` at `position` cannot follow the batch ending at `last_offset` in
    /// this segment of `size` bytes, if it cannot: the checks every walk over the `.log` makes.
    fn header_damage(
        &self,
        header: &BatchHeader,
        position: u64,
        size: u64,
        last_offset: Option<u64>,
    ) -> Option<String> {
        let total = header.total_len() as u64;
        if position + total > size {
            return Some(format!(
                "batch of {total} bytes runs past the end of the file ({size} bytes)"
            ));
        }
        if header.base_offset < self.base_offset
            || header.last_offset() - self.base_offset > u64::from(u32::MAX)
        {
            return Some(format!(
                "batch offsets {}..={} do not belong to this segment",
                header.base_offset,
                header.last_offset()
            ));
        }
        match last_offset {
            Some(last) if header.base_offset <= last => Some(format!(
                "batch offset {} does not follow offset {last}",
                header.base_offset
            )),
            _ => None,
        }
    }

    /// Like [`scan`](Self::scan) without checksums, with the same checks of each header, but
    /// reads only the headers (`LOOKUP_CHUNK` bytes at a time), not whole batches.
    /// `f(position, header)` may return false to stop.
    pub fn walk_headers(
        &self,
        from: u64,
        mut f: impl FnMut(u64, &BatchHeader) -> bool,
    ) -> Result<ScanEnd> {
        let size = self.size();
        let mut position = from;
        let mut last_offset: Option<u64> = None;
        let mut chunk = Bytes::new();
        let mut chunk_start = from;
        while position < size {
            let damage = |why: String| {
                Ok(ScanEnd {
                    valid_end: position,
                    damage: Some(why),
                })
            };
            let header_needed = HEADER_LEN.min((size - position) as usize);
            if (position - chunk_start) as usize + header_needed > chunk.len() {
                chunk = self.read_at(position, LOOKUP_CHUNK)?;
                chunk_start = position;
                if chunk.len() < header_needed {
                    return damage("file is shorter than its published size".into());
                }
            }
            let header = match BatchHeader::parse(&chunk[(position - chunk_start) as usize..]) {
                Ok(h) => h,
                Err(e) => return damage(e.to_string()),
            };
            let total = header.total_len() as u64;
            if let Some(why) = self.header_damage(&header, position, size, last_offset) {
                return damage(why);
            }
            last_offset = Some(header.last_offset());
            if !f(position, &header) {
                return Ok(ScanEnd {
                    valid_end: position + total,
                    damage: None,
                });
            }
            position += total;
        }
        Ok(ScanEnd {
            valid_end: position,
            damage: None,
        })
    }

    /// Position and header of the first batch whose last offset is at least `offset`, if the
    /// segment has one.
    pub fn locate(&self, offset: u64) -> Result<Option<(u64, BatchHeader)>> {
        let start = {
            let guard = self.indexes()?;
            guard
                .as_ref()
                .and_then(|ix| ix.offsets.floor(offset as i64))
                .map_or(0, |e| u64::from(e.position))
        };
        let mut found = None;
        let end = self.walk_headers(start, |position, header| {
            if header.last_offset() >= offset {
                found = Some((position, *header));
                false
            } else {
                true
            }
        })?;
        if found.is_none() {
            if let Some(why) = end.damage {
                return Err(Error::Corrupt {
                    path: self.log_path.clone(),
                    position: end.valid_end,
                    reason: why,
                });
            }
        }
        Ok(found)
    }

    /// Whole batches from the first one holding an offset at least `offset`: at most `max_bytes`,
    /// but always the whole first batch, and none whose base offset is `limit` or more.
    /// `spare` is an allocation to read into (see [`read_at_reusing`](Self::read_at_reusing)).
    pub fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        limit: u64,
        spare: &mut Option<BytesMut>,
    ) -> Result<Option<Bytes>> {
        let buf = match self.read_hinted(offset, max_bytes, limit, spare)? {
            Hinted::Found(buf) => Some(buf),
            Hinted::PastLimit => None,
            Hinted::Unknown => {
                let Some((position, first)) = self.locate(offset)? else {
                    return Ok(None);
                };
                if first.base_offset >= limit {
                    return Ok(None);
                }
                let want = max_bytes.max(first.total_len());
                Some(self.read_at_reusing(position, want, spare)?)
            }
        };
        let Some(buf) = buf else {
            return Ok(None);
        };
        let mut cut = 0usize;
        while cut + HEADER_LEN <= buf.len() {
            let Ok(h) = BatchHeader::parse(&buf[cut..]) else {
                break;
            };
            if h.base_offset >= limit || cut + h.total_len() > buf.len() {
                break;
            }
            cut += h.total_len();
        }
        Ok(Some(buf.slice(..cut)))
    }

    /// [`read`](Self::read) with one `pread` when the hint knows where `offset`'s batch starts
    /// (a fetch at the end of the last append).
    fn read_hinted(
        &self,
        offset: u64,
        max_bytes: usize,
        limit: u64,
        spare: &mut Option<BytesMut>,
    ) -> Result<Hinted> {
        let Some(position) = self.hinted_position(offset) else {
            return Ok(Hinted::Unknown);
        };
        let mut buf = self.read_at_reusing(position, max_bytes.max(HEADER_LEN), spare)?;
        let Ok(first) = BatchHeader::parse(&buf) else {
            return Ok(Hinted::Unknown);
        };
        // The writer numbers batches contiguously; anything else (or a truncation racing this
        // read) goes the long way, whose checks are the reference.
        if first.base_offset != offset
            || first.base_offset < self.base_offset
            || first.last_offset() - self.base_offset > u64::from(u32::MAX)
        {
            return Ok(Hinted::Unknown);
        }
        if first.base_offset >= limit {
            return Ok(Hinted::PastLimit);
        }
        if buf.len() < first.total_len() {
            buf = self.read_at(position, first.total_len())?;
            if buf.len() < first.total_len() {
                return Ok(Hinted::Unknown);
            }
        }
        Ok(Hinted::Found(buf))
    }

    /// Largest timestamp in the segment (from the time index, or the file's modification time
    /// when it has none).
    pub fn largest_timestamp(&self) -> Result<i64> {
        let known = self.max_timestamp.load(Ordering::Relaxed);
        if known != UNKNOWN_TS {
            return Ok(known);
        }
        let from_index = self
            .indexes()?
            .as_ref()
            .and_then(|ix| ix.times.last())
            .map(|e| e.timestamp);
        let ts = match from_index {
            Some(ts) => ts,
            None => {
                let modified = self
                    .file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ctx(|| format!("reading mtime of {}", self.log_path.display()))?;
                modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            }
        };
        self.max_timestamp.store(ts, Ordering::Relaxed);
        Ok(ts)
    }

    /// First offset whose record timestamp is at least `timestamp`, if this segment has one.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let from_offset = {
            let guard = self.indexes()?;
            guard
                .as_ref()
                .and_then(|ix| ix.times.lower(timestamp))
                .map(|e| e.offset + 1)
        };
        let start = match from_offset {
            Some(o) => match self.locate(o)? {
                Some((p, _)) => p,
                None => return Ok(None),
            },
            None => 0,
        };
        let mut result = Ok(None);
        let end = self.scan_in_chunks(start, true, LOOKUP_CHUNK, |position, header, bytes| {
            if header.max_timestamp < timestamp {
                return true;
            }
            let batch = crate::batch::RecordBatch::from_bytes(Bytes::copy_from_slice(bytes));
            result = match batch {
                Ok(batch) => {
                    let mut found = Ok(None);
                    for r in batch.records() {
                        match r {
                            Ok(r) if r.record.timestamp >= timestamp => {
                                found = Ok(Some(r.offset));
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                found = Err(e);
                                break;
                            }
                        }
                    }
                    found.map(|f| f.or(Some(header.base_offset)))
                }
                Err(e) => Err(Error::Corrupt {
                    path: self.log_path.clone(),
                    position,
                    reason: e.to_string(),
                }),
            };
            false
        })?;
        if let (Ok(None), Some(why)) = (&result, end.damage) {
            return Err(Error::Corrupt {
                path: self.log_path.clone(),
                position: end.valid_end,
                reason: why,
            });
        }
        result
    }

    /// Drops every batch from the first one holding `offset` onwards; returns the new next
    /// offset. Indexes are rebuilt; the segment becomes the active one.
    pub fn truncate_from(
        &self,
        offset: u64,
        index_entries: usize,
        interval: u64,
    ) -> Result<ActiveState> {
        let cut = self.locate(offset)?.map_or(self.size(), |(p, _)| p);
        // Readers wait on the index lock until the segment is whole again; the old mapping goes
        // before the index files are resized (a mapping of a shrunk file faults on access).
        let mut guard = self.indexes.write();
        self.next_hint.store(NO_HINT, Ordering::Release);
        *guard = None;
        self.size.store(cut, Ordering::Release);
        self.trim_log()?;
        let rebuilt = self.rebuild(Some(interval), false)?;
        *guard = Some(self.active_indexes(&rebuilt, index_entries)?);
        self.size.store(rebuilt.end.valid_end, Ordering::Release);
        self.max_timestamp
            .store(rebuilt.state.max_timestamp, Ordering::Relaxed);
        Ok(rebuilt.state)
    }

    /// Deletes the segment's files (readers holding it keep reading through the open file).
    pub fn delete_files(&self) -> Result<()> {
        let dir = self.dir().to_path_buf();
        fsutil::remove_if_exists(&self.log_path)?;
        fsutil::remove_if_exists(&segment_file(&dir, self.base_offset, "index"))?;
        fsutil::remove_if_exists(&segment_file(&dir, self.base_offset, "timeindex"))
    }
}

/// Appends `entries` to an active index, growing it as needed (entries past its capacity are
/// dropped: the index stays sparse, lookups just scan further).
fn fill<E: super::index::IndexEntry>(index: &mut Index<E>, entries: &[E]) -> Result<()> {
    for e in entries {
        if index.is_full() {
            break;
        }
        if index.needs_growth() {
            index.grow()?;
        }
        index.append(*e);
    }
    Ok(())
}
