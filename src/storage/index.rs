//! The sparse offset index (`.index`) and time index (`.timeindex`), in Kafka's layout.
//!
//! ```text
//! .index      entry = 8 bytes, big-endian        .timeindex  entry = 12 bytes, big-endian
//! +-----------------+-----------------+          +-----------------------+-----------------+
//! | relative offset | file position   |          | timestamp (i64, ms)   | relative offset |
//! | u32             | u32             |          |                       | u32             |
//! +-----------------+-----------------+          +-----------------------+-----------------+
//! ```
//!
//! *Relative offset* is the offset minus the segment's base offset. An offset-index entry names the
//! last offset of a batch and the file position where that batch starts (as Kafka writes it); a
//! time-index entry names the largest timestamp seen so far in the segment and the last offset of
//! the batch that holds it.
//!
//! Invariants:
//! 1. Entries are strictly increasing in offset (and in position, resp. timestamp).
//! 2. Only entries below `len` are meaningful; bytes past it are zeros or stale.
//! 3. The file is a cache: it can always be rebuilt from the `.log` (see `segment.rs`).
//! 4. The active segment's index file is preallocated in growing steps (zero-filled, so that a
//!    full disk is an append error rather than a `SIGBUS` on a sparse page) and memory-mapped
//!    read-write; a sealed one is trimmed to `len` entries and mapped read-only.
//!
//! Concurrency: the writer appends under the partition's writer lock and publishes `len` with
//! `Release`; readers load `len` with `Acquire` and read entries below it without any lock. All
//! access to mapped memory goes through `AtomicU32`, so a reader racing with a rewrite of the same
//! bytes (possible only around `truncate_to`) reads stale values, never undefined behaviour.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, IoContext, Result};

/// One kind of index entry, as 32-bit words.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Words (u32) per entry: 2 for the offset index, 3 for the time index.
    const WORDS: usize;
    /// Encodes relative to `base_offset`.
    fn to_words(self, base_offset: u64) -> [u32; 3];
    /// Decodes relative to `base_offset`.
    fn from_words(words: [u32; 3], base_offset: u64) -> Self;
    /// The key the index is sorted (and searched) by.
    fn key(self) -> i64;
}

/// `(offset, position)`: the batch ending at `offset` starts at byte `position` of the `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub offset: u64,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const WORDS: usize = 2;
    fn to_words(self, base_offset: u64) -> [u32; 3] {
        [(self.offset - base_offset) as u32, self.position, 0]
    }
    fn from_words(w: [u32; 3], base_offset: u64) -> Self {
        OffsetEntry {
            offset: base_offset + u64::from(w[0]),
            position: w[1],
        }
    }
    fn key(self) -> i64 {
        self.offset as i64
    }
}

/// `(timestamp, offset)`: no record at or below `offset` has a timestamp above `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub offset: u64,
}

impl IndexEntry for TimeEntry {
    const WORDS: usize = 3;
    fn to_words(self, base_offset: u64) -> [u32; 3] {
        let ts = self.timestamp as u64;
        [
            (ts >> 32) as u32,
            ts as u32,
            (self.offset - base_offset) as u32,
        ]
    }
    fn from_words(w: [u32; 3], base_offset: u64) -> Self {
        let ts = (u64::from(w[0]) << 32 | u64::from(w[1])) as i64;
        TimeEntry {
            timestamp: ts,
            offset: base_offset + u64::from(w[2]),
        }
    }
    fn key(self) -> i64 {
        self.timestamp
    }
}

/// A memory-mapped index file.
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    file: File,
    map: Option<MmapRaw>,
    base_offset: u64,
    capacity: usize,
    len: AtomicUsize,
    writable: bool,
    _entry: std::marker::PhantomData<E>,
}

impl<E: IndexEntry> std::fmt::Debug for Index<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

const ENTRY_BYTES_PER_WORD: usize = 4;
/// Entries allocated when an active index is opened, and the smallest growth step.
pub(crate) const GROWTH_ENTRIES: usize = 1024;

impl<E: IndexEntry> Index<E> {
    fn entry_bytes() -> usize {
        E::WORDS * ENTRY_BYTES_PER_WORD
    }

    /// Opens (creating if needed) a writable index with room for up to `capacity` entries,
    /// keeping the first `keep` entries already in the file (clamped to what the file holds).
    /// Only the first [`GROWTH_ENTRIES`] (or `keep`) entries are allocated and mapped now; the
    /// rest is added by [`grow`](Self::grow) as the segment fills, so an idle partition costs a
    /// few KiB of disk rather than the whole preallocation.
    pub fn open_active(
        path: &Path,
        base_offset: u64,
        capacity: usize,
        keep: usize,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx(|| format!("opening index {}", path.display()))?;
        let have = file
            .metadata()
            .ctx(|| format!("reading size of {}", path.display()))?
            .len();
        let keep = keep
            .min((have / Self::entry_bytes() as u64) as usize)
            .min(capacity);
        let mut index = Index {
            path: path.to_path_buf(),
            file,
            map: None,
            base_offset,
            capacity,
            len: AtomicUsize::new(keep),
            writable: true,
            _entry: std::marker::PhantomData,
        };
        index.resize_map(keep.max(GROWTH_ENTRIES).min(capacity))?;
        Ok(index)
    }

    /// Entries that fit in the current mapping.
    fn mapped(&self) -> usize {
        self.map
            .as_ref()
            .map_or(0, |m| m.len() / Self::entry_bytes())
    }

    /// True when the next append needs [`grow`](Self::grow) first.
    pub fn needs_growth(&self) -> bool {
        self.len() >= self.mapped() && self.mapped() < self.capacity
    }

    /// Doubles the allocated and mapped part of the file (up to `capacity` entries). The caller
    /// holds the segment's index lock exclusively, so no reader uses the old mapping.
    pub fn grow(&mut self) -> Result<()> {
        let target = (self.mapped() * 2).max(GROWTH_ENTRIES).min(self.capacity);
        self.resize_map(target)
    }

    fn resize_map(&mut self, entries: usize) -> Result<()> {
        let want = (entries * Self::entry_bytes()) as u64;
        let path = &self.path;
        let have = self
            .file
            .metadata()
            .ctx(|| format!("reading size of {}", path.display()))?
            .len();
        self.map = None;
        if have < want {
            // Zero-filled, not sparse: a full disk is an error here, not a SIGBUS on a mapped page.
            zero_fill(&self.file, have, want)
                .ctx(|| format!("preallocating index {}", path.display()))?;
        } else if have > want {
            self.file
                .set_len(want)
                .ctx(|| format!("resizing index {}", path.display()))?;
        }
        self.map = Self::map(&self.file, want, true, path)?;
        Ok(())
    }

    /// Opens a sealed index read-only. Errors if the file size is not a whole number of entries.
    pub fn open_sealed(path: &Path, base_offset: u64) -> Result<Self> {
        let file = File::open(path).ctx(|| format!("opening index {}", path.display()))?;
        let size = file
            .metadata()
            .ctx(|| format!("reading size of {}", path.display()))?
            .len();
        if size % Self::entry_bytes() as u64 != 0 {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                position: size,
                reason: format!(
                    "index size is not a multiple of {} bytes",
                    Self::entry_bytes()
                ),
            });
        }
        let entries = (size / Self::entry_bytes() as u64) as usize;
        let map = Self::map(&file, size, false, path)?;
        Ok(Index {
            path: path.to_path_buf(),
            file,
            map,
            base_offset,
            capacity: entries,
            len: AtomicUsize::new(entries),
            writable: false,
            _entry: std::marker::PhantomData,
        })
    }

    /// Writes `entries` to a new sealed index file at `path` (through a temporary file and a
    /// rename, so a crash leaves either the old file or the new one) and opens it.
    pub fn write_sealed(path: &Path, base_offset: u64, entries: &[E]) -> Result<Self> {
        let mut bytes = Vec::with_capacity(entries.len() * Self::entry_bytes());
        for e in entries {
            for w in &e.to_words(base_offset)[..E::WORDS] {
                bytes.extend_from_slice(&w.to_be_bytes());
            }
        }
        super::fsutil::write_atomically(path, &bytes, false)?;
        Self::open_sealed(path, base_offset)
    }

    fn map(file: &File, len: u64, writable: bool, path: &Path) -> Result<Option<MmapRaw>> {
        if len == 0 {
            return Ok(None);
        }
        let mut opts = MmapOptions::new();
        opts.len(len as usize);
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        };
        map.map(Some)
            .ctx(|| format!("memory-mapping {}", path.display()))
    }

    fn words(&self) -> &[AtomicU32] {
        match &self.map {
            // SAFETY: the mapping is page-aligned (so 4-aligned), its length is a multiple of 4
            // (a whole number of entries of 2 or 3 words), and it lives as long as `self`.
            // `AtomicU32` has the size and alignment of `u32`, and every access to the mapped
            // memory in this process goes through these atomics, so there are no data races. The
            // directory lock keeps other processes from writing the file.
            #[allow(clippy::cast_ptr_alignment)] // page-aligned, see SAFETY
            Some(map) => unsafe {
                std::slice::from_raw_parts(
                    map.as_ptr().cast::<AtomicU32>(),
                    map.len() / ENTRY_BYTES_PER_WORD,
                )
            },
            None => &[],
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// How many entries fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when no further entry fits.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Entry `i` (must be below `len`).
    pub fn get(&self, i: usize) -> E {
        let words = self.words();
        let mut w = [0u32; 3];
        for (k, slot) in w.iter_mut().enumerate().take(E::WORDS) {
            *slot = u32::from_be(words[i * E::WORDS + k].load(Ordering::Relaxed));
        }
        E::from_words(w, self.base_offset)
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<E> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// All entries (a copy).
    pub fn entries(&self) -> Vec<E> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// The number of leading entries for which `pred` holds (entries are sorted, see invariant 1).
    fn partition_point(&self, pred: impl Fn(E) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The last entry whose key is at most `key`, if any.
    pub fn floor(&self, key: i64) -> Option<E> {
        self.partition_point(|e| e.key() <= key)
            .checked_sub(1)
            .map(|i| self.get(i))
    }

    /// The last entry whose key is below `key`, if any.
    pub fn lower(&self, key: i64) -> Option<E> {
        self.partition_point(|e| e.key() < key)
            .checked_sub(1)
            .map(|i| self.get(i))
    }

    /// Appends an entry. The caller checks `is_full` and ordering first.
    pub fn append(&self, entry: E) {
        debug_assert!(self.writable);
        let i = self.len.load(Ordering::Relaxed);
        debug_assert!(i < self.mapped(), "index append past the mapping");
        if i >= self.mapped() {
            return;
        }
        let words = self.words();
        for (k, w) in entry
            .to_words(self.base_offset)
            .iter()
            .take(E::WORDS)
            .enumerate()
        {
            words[i * E::WORDS + k].store(w.to_be(), Ordering::Relaxed);
        }
        self.len.store(i + 1, Ordering::Release);
    }

    /// Makes the file hold exactly `len` entries and flushes it; used when a segment is sealed or
    /// the log is closed. Returns the sealed, read-only index.
    pub fn seal(self) -> Result<Self> {
        let bytes = (self.len() * Self::entry_bytes()) as u64;
        if let Some(map) = &self.map {
            map.flush()
                .ctx(|| format!("flushing {}", self.path.display()))?;
        }
        let Index {
            path,
            file,
            map,
            base_offset,
            ..
        } = self;
        drop(map);
        file.set_len(bytes)
            .ctx(|| format!("trimming {}", path.display()))?;
        file.sync_all()
            .ctx(|| format!("syncing {}", path.display()))?;
        drop(file);
        Self::open_sealed(&path, base_offset)
    }

    /// Flushes the mapped entries to disk.
    pub fn sync(&self) -> Result<()> {
        if let Some(map) = &self.map {
            map.flush()
                .ctx(|| format!("flushing {}", self.path.display()))?;
        }
        Ok(())
    }

    /// The index file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes zeros to `file` from `from` to `to`, so the blocks are allocated now rather than when a
/// mapped page is first touched.
fn zero_fill(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let zeros = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = CHUNK.min((to - pos) as usize);
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_index_round_trip_and_floor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let idx = Index::<OffsetEntry>::open_active(&path, 100, 16, 0).unwrap();
        assert_eq!(idx.floor(150), None);
        idx.append(OffsetEntry {
            offset: 110,
            position: 0,
        });
        idx.append(OffsetEntry {
            offset: 120,
            position: 4096,
        });
        assert_eq!(
            idx.floor(119),
            Some(OffsetEntry {
                offset: 110,
                position: 0
            })
        );
        assert_eq!(
            idx.floor(120),
            Some(OffsetEntry {
                offset: 120,
                position: 4096
            })
        );
        let sealed = idx.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        assert_eq!(sealed.entries().len(), 2);
        // Kafka's layout: relative offset 20 and position 4096, big-endian.
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[8..16], &[0, 0, 0, 20, 0, 0, 16, 0]);
    }

    #[test]
    fn time_index_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.timeindex");
        let idx = Index::<TimeEntry>::open_active(&path, 5, 4, 0).unwrap();
        idx.append(TimeEntry {
            timestamp: 0x0102_0304_0506_0708,
            offset: 9,
        });
        idx.seal().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 4]
        );
    }

    proptest! {
        #[test]
        fn floor_matches_a_plain_model(mut keys in proptest::collection::btree_set(0u64..10_000, 0..200), probes in proptest::collection::vec(0i64..10_100, 1..50)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.index");
            let keys: Vec<u64> = std::mem::take(&mut keys).into_iter().collect();
            let idx = Index::<OffsetEntry>::open_active(&path, 0, keys.len().max(1), 0).unwrap();
            for (i, &k) in keys.iter().enumerate() {
                idx.append(OffsetEntry { offset: k, position: i as u32 });
            }
            for &p in &probes {
                let model = keys.iter().enumerate().rev().find(|(_, &k)| k as i64 <= p)
                    .map(|(i, &k)| OffsetEntry { offset: k, position: i as u32 });
                prop_assert_eq!(idx.floor(p), model);
            }
            for &p in &probes {
                let model = keys.iter().enumerate().rev().find(|(_, &k)| (k as i64) < p)
                    .map(|(i, &k)| OffsetEntry { offset: k, position: i as u32 });
                prop_assert_eq!(idx.lower(p), model);
            }
            let reopened = idx.seal().unwrap();
            prop_assert_eq!(reopened.entries().iter().map(|e| e.offset).collect::<Vec<_>>(), keys);
        }
    }
}
