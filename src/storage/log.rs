//! `PartitionLog`: one partition's durable, segmented log.
//!
//! Invariants (the numbered ones of `segment.rs` and `index.rs` hold too):
//! 1. One writer at a time (`writer` mutex); readers take no lock the writer holds. They load the
//!    published `log_end` (`Acquire`) and the segment list (`ArcSwap`), and read files by position.
//! 2. `log_start <= flushed <= log_end` is not guaranteed for `flushed` after a truncation below
//!    it, where `flushed` is lowered with the end; `log_start <= log_end` always holds (a
//!    truncation whose first batch cut begins below the log start empties the log and restarts
//!    it at the log start).
//! 3. Every offset below `flushed` has been fsynced: its segment's `.log` (with `fdatasync`) and
//!    the directory entry of every segment file created before it.
//! 4. The segment list is sorted by base offset, has at least one segment, and its last segment is
//!    the active one (the only one the writer appends to).
//! 5. Structural changes other than a roll (retention, compaction, truncation) hold the
//!    `maintenance` mutex, so they never interleave with each other.
//! 6. `tail` holds a copy of the last appended batch when it is small (at most
//!    [`TAIL_CACHE_BYTES`]). It is stored after the batch is written to the file and before
//!    `log_end` moves past it, and cleared under the writer lock on a roll and before a
//!    truncation, so it is always a batch of the active segment, which compaction and retention
//!    never change. A reader that loaded `log_end` first and finds there the batch it wants
//!    (`base == offset`, `next <= log_end`) gets the bytes the file holds without a read system
//!    call: a consumer that follows the end of the log waits microseconds, not a `pread`
//!    (`examples/perf.rs --rate`). Large batches (throughput work) are read from the file.
//!
//! Group commit: an appending thread that must wait for durability calls `flush_to(end)`. Only
//! one thread fsyncs at a time (the one holding the turn in `flush_q`); it first lets durable
//! appenders that have not appended yet do so (`gather_appenders`), then reads the current
//! `log_end`, so one fsync covers every append published before it started. The others park;
//! when the fsync ends the leader unparks all it covered and one of the rest, which takes the
//! next turn.

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use super::checkpoint::Checkpoint;
use super::clock::coarse_now_ms;
use super::config::{Durability, LogConfig};
use super::fetch::FetchData;
use super::segment::{ActiveState, Segment};
use super::signal::{deadline_after, AppendSignal};
use super::{fsutil, recovery};
use crate::batch::{self, BatchHeader, RecordBatch};
use crate::error::{Error, IoContext, Result};
use crate::record::{now_ms, OffsetRecord, Record};

/// Offsets and timestamp of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Offset of the last record appended.
    pub last_offset: u64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Whether the batch is known to be on disk (fsynced) when the call returns.
    pub durable: bool,
}

/// Largest batch kept in memory as the log's tail (invariant 6): a batch of a few records, as a
/// producer sending one at a time or lingering briefly makes. Larger batches are throughput
/// work, where the read system call is shared by many records and copying would cost more.
pub(crate) const TAIL_CACHE_BYTES: usize = 4096;

/// A copy of the last appended batch (invariant 6).
struct TailBatch {
    base_offset: u64,
    /// Offset after the batch's last record.
    next_offset: u64,
    bytes: Bytes,
}

pub(crate) struct Writer {
    pub active: Arc<Segment>,
    pub state: ActiveState,
    /// Whether `PartitionLog::tail` holds a copy (so clearing an empty one costs nothing).
    pub tail_cached: bool,
}

/// One partition's log: an append-only sequence of records addressed by offset, stored as Kafka
/// segments in one folder.
///
/// `PartitionLog` is `Send + Sync`: share it with an `Arc`. Appends from many threads are
/// serialized; reads never wait for the writer. Dropping it closes it cleanly (see
/// [`close`](Self::close) to see the error, if any).
///
/// ```
/// use tidelog::{LogConfig, PartitionLog, Record};
///
/// let dir = tempfile::tempdir()?;
/// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
/// log.append(&[Record::new("k", "v").with_timestamp(1_000)])?;
/// assert_eq!(log.log_end_offset(), 1);
/// assert_eq!(log.offset_for_timestamp(500)?, Some(0));
/// log.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: ArcSwap<LogConfig>,
    _lock: File,
    pub(crate) segments: ArcSwap<Vec<Arc<Segment>>>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) maintenance: Mutex<MaintenanceState>,
    /// On cache lines of their own, with the tail copy: a reader that follows the end reads
    /// them in a loop, and the writer's appends would otherwise also wait for the lines of the
    /// fields it shares them with (measured: a single-record append about 10% faster with a
    /// spinning consumer).
    log_end: CachePadded<AtomicU64>,
    /// The last appended batch when it is small (invariant 6).
    tail: CachePadded<ArcSwapOption<TailBatch>>,
    pub(crate) log_start: AtomicU64,
    flushed: AtomicU64,
    /// True while a thread is fsyncing (see the module docs on group commit).
    flush_q: Mutex<FlushQueue>,
    /// Threads inside an append that will wait for its fsync (see `gather_appenders`).
    durable_appenders: AtomicUsize,
    /// Threads inside `flush_to`, the leader included.
    flush_waiters: AtomicUsize,
    /// How long the last group-commit fsync took, in microseconds.
    last_fsync_us: AtomicU64,
    dir_dirty: AtomicBool,
    failed: OnceLock<String>,
    closed: AtomicBool,
    opened_at: Instant,
    last_flush_ms: AtomicU64,
    waiters: AtomicUsize,
    listeners: Mutex<Vec<std::sync::Weak<AppendSignal>>>,
    listener_count: AtomicUsize,
    wait_lock: Mutex<()>,
    wait_cond: Condvar,
}

/// State of the background work (retention, compaction, checkpoints).
pub(crate) struct MaintenanceState {
    /// First offset compaction has not yet looked at (Kafka's cleaner checkpoint).
    pub cleaner_offset: u64,
    /// The checkpoint as last written.
    pub last_checkpoint: Checkpoint,
    /// When it was written.
    pub last_checkpoint_at: Instant,
}

/// What one call of [`PartitionLog::maintain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Whether an interval flush ran.
    pub flushed: bool,
    /// Segments deleted by retention.
    pub segments_deleted: usize,
    /// Whether compaction ran, and how many records it removed.
    pub compacted: bool,
    /// Records removed by compaction.
    pub records_removed: u64,
}

/// How often the recovery point is written to the checkpoint while the log is open.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

thread_local! {
    /// Where an append encodes or copies its batch: kept between appends, so that appending
    /// neither allocates nor zero-fills.
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's append buffer ([`ENCODE_BUF`]), then drops the buffer if it grew
/// past 4 MiB (a thread that once appended a huge batch does not keep that memory).
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> Result<T>) -> Result<T> {
    ENCODE_BUF.with(|buf| {
        let mut buf = buf
            .try_borrow_mut()
            .map_err(|_| Error::Failed("re-entrant append".into()))?;
        let out = f(&mut buf);
        if buf.capacity() > 4 << 20 {
            *buf = Vec::new();
        }
        out
    })
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it if it was not closed cleanly.
    ///
    /// Errors: [`Error::InvalidConfig`], [`Error::DirectoryLocked`] if another handle has it open,
    /// [`Error::Corrupt`] when damage below the recovery point is found and the config says
    /// [`RecoveryMode::Refuse`](crate::RecoveryMode::Refuse), [`Error::Io`].
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let lock = fsutil::lock_dir(&dir, LOCK_FILE)?;
        let r = recovery::recover(&dir, &config)?;
        let active = Arc::clone(
            r.segments
                .last()
                .ok_or_else(|| Error::Failed("recovery left no segment".into()))?,
        );
        let mut state = r.state;
        if state.first_timestamp.is_some() {
            // Roll by age counts from this open: records with old timestamps must not make every
            // restart roll a new segment.
            state.first_timestamp = Some(coarse_now_ms());
        }
        let log = PartitionLog {
            dir,
            _lock: lock,
            segments: ArcSwap::from_pointee(r.segments),
            writer: Mutex::new(Writer {
                active,
                state,
                tail_cached: false,
            }),
            maintenance: Mutex::new(MaintenanceState {
                cleaner_offset: r.cleaner_offset,
                last_checkpoint: r.checkpoint,
                last_checkpoint_at: Instant::now(),
            }),
            log_end: CachePadded::new(AtomicU64::new(r.state.next_offset)),
            tail: CachePadded::new(ArcSwapOption::empty()),
            log_start: AtomicU64::new(r.log_start),
            flushed: AtomicU64::new(r.checkpoint.recovery_point),
            flush_q: Mutex::new(FlushQueue::default()),
            durable_appenders: AtomicUsize::new(0),
            flush_waiters: AtomicUsize::new(0),
            last_fsync_us: AtomicU64::new(0),
            dir_dirty: AtomicBool::new(false),
            failed: OnceLock::new(),
            closed: AtomicBool::new(false),
            opened_at: Instant::now(),
            last_flush_ms: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            listeners: Mutex::new(Vec::new()),
            listener_count: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            wait_cond: Condvar::new(),
            config: ArcSwap::from_pointee(config),
        };
        Ok(log)
    }

    /// The log's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> LogConfig {
        LogConfig::clone(&self.config.load())
    }

    /// Changes the configuration of the open log (Kafka's `alterConfigs` for a topic). New
    /// segment, index and retention settings apply from the next append or maintenance pass.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// First offset still in the log (Kafka's log start offset).
    pub fn log_start_offset(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Offset the next record will get (Kafka's log end offset; the high watermark of a log that
    /// is not replicated).
    pub fn log_end_offset(&self) -> u64 {
        self.log_end.load(Ordering::Acquire)
    }

    /// Every offset below this is on disk (fsynced); appends at or above it may be lost by a power
    /// cut (never by a process crash).
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Bytes of all segment files (`.log` only).
    pub fn size_bytes(&self) -> u64 {
        self.segments.load().iter().map(|s| s.size()).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.load().len()
    }

    fn check_usable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(why) = self.failed.get() {
            return Err(Error::Failed(why.clone()));
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------ appending

    /// Appends `records` as one batch and returns their offsets. With [`Durability::Always`]
    /// (the default) the batch is on disk when this returns.
    ///
    /// Errors: empty `records` ([`Error::InvalidArgument`]); a batch over `max_message_bytes`
    /// ([`Error::RecordTooLarge`]); a record without a key in a compacted log
    /// ([`Error::MissingKey`]); [`Error::Io`] (for example a full disk: nothing is appended and
    /// later appends work again once there is room).
    pub fn append(&self, records: &[Record]) -> Result<AppendInfo> {
        self.encode_and_append(records, true)
    }

    /// Appends a batch that is already encoded (for example one a Kafka client sent), assigning it
    /// the next offsets. The batch's other fields, its records and its CRC are kept as they are.
    pub fn append_batch(&self, batch: &RecordBatch) -> Result<AppendInfo> {
        let header = *batch.header();
        // As Kafka's log validator: a client's batch holds one record per offset, so the log end
        // moves by exactly its record count.
        if header.record_count == 0
            || u64::from(header.last_offset_delta) + 1 != u64::from(header.record_count)
        {
            return Err(Error::InvalidBatch(format!(
                "a produced batch must hold one record per offset: {} records, last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        let config = self.config.load();
        if config.cleanup_policy.compacts() {
            for r in batch.records() {
                if r?.record.key.is_none() {
                    return Err(Error::MissingKey);
                }
            }
        }
        // Copied into the thread's scratch buffer, where the base offset is set.
        with_scratch(|buf| {
            let src = batch.as_bytes();
            if buf.len() < src.len() {
                buf.resize(src.len(), 0);
            }
            let bytes = &mut buf[..src.len()];
            bytes.copy_from_slice(src);
            self.append_encoded_with(&config, bytes, &header, true)
        })
    }

    /// Appends like [`append`](Self::append) but never waits for an fsync, whatever the
    /// durability policy: the caller waits with [`flush_until`](Self::flush_until) when it needs
    /// to, so that a producer can keep sends in flight while earlier ones are being synced.
    pub fn append_deferred(&self, records: &[Record]) -> Result<AppendInfo> {
        self.encode_and_append(records, false)
    }

    fn encode_and_append(&self, records: &[Record], wait: bool) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "cannot append an empty batch".into(),
            ));
        }
        let config = self.config.load();
        if config.cleanup_policy.compacts() && records.iter().any(|r| r.key.is_none()) {
            return Err(Error::MissingKey);
        }
        with_scratch(|buf| {
            let len = batch::encode_scratch(buf, records)?;
            let bytes = &mut buf[..len];
            let header = BatchHeader::parse(bytes)?;
            self.append_encoded_with(&config, bytes, &header, wait)
        })
    }

    /// Appends a batch a producer encoded (see [`batch::finish_batch`]) like
    /// [`append_deferred`](Self::append_deferred): `keyless` says whether a record has no key
    /// (refused by a compacted log).
    pub(crate) fn append_encoded_deferred(
        &self,
        bytes: &mut [u8],
        keyless: bool,
    ) -> Result<AppendInfo> {
        let config = self.config.load();
        if keyless && config.cleanup_policy.compacts() {
            return Err(Error::MissingKey);
        }
        let header = BatchHeader::parse(bytes)?;
        self.append_encoded_with(&config, bytes, &header, false)
    }

    /// Appends the encoded batch `bytes` (with `header`, parsed from it): sets its base offset,
    /// writes it and, with `wait`, waits for the durability policy's fsync.
    fn append_encoded_with(
        &self,
        config: &LogConfig,
        bytes: &mut [u8],
        header: &BatchHeader,
        wait: bool,
    ) -> Result<AppendInfo> {
        if bytes.len() > config.max_message_bytes {
            return Err(Error::RecordTooLarge {
                size: bytes.len(),
                max: config.max_message_bytes,
            });
        }
        // Counted until the fsync it waits for is done, so a group-commit leader can gather it.
        let _durable = (wait && config.durability == Durability::Always)
            .then(|| Counted::enter(&self.durable_appenders));
        let (base_offset, last_offset) = {
            let mut w = self.writer.lock();
            self.check_usable()?;
            let base_offset = w.state.next_offset;
            batch::set_base_offset(bytes, base_offset);
            let mut header = *header;
            header.base_offset = base_offset;
            if i64::try_from(header.last_offset()).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "the log is full: offset {} would pass the largest Kafka offset",
                    header.last_offset()
                )));
            }
            self.maybe_roll(config, &mut w, bytes.len() as u64, &header)?;
            let was_empty = w.state.first_timestamp.is_none();
            let Writer { active, state, .. } = &mut *w;
            active.append(state, bytes, &header, config.index_interval_bytes)?;
            if was_empty {
                // Roll by age is measured from when the segment got its first batch.
                state.first_timestamp = Some(coarse_now_ms());
            }
            // Invariant 6: the copy is published before the end moves past it.
            self.set_tail(
                &mut w,
                (bytes.len() <= TAIL_CACHE_BYTES).then(|| TailBatch {
                    base_offset,
                    next_offset: header.last_offset() + 1,
                    bytes: Bytes::copy_from_slice(bytes),
                }),
            );
            // SeqCst pairs with the SeqCst `waiters` handshake in `wait_for_offset`/`notify_waiters`.
            self.log_end
                .store(header.last_offset() + 1, Ordering::SeqCst);
            (base_offset, header.last_offset())
        };
        self.notify_waiters();
        let durable = match config.durability {
            _ if !wait => self.flushed_offset() > last_offset,
            Durability::Always => {
                self.flush_to(last_offset + 1)?;
                true
            }
            Durability::Interval(every) => {
                if self.interval_flush_due(every) {
                    self.flush()?;
                }
                self.flushed_offset() > last_offset
            }
            Durability::None => false,
        };
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            durable,
        })
    }

    fn maybe_roll(
        &self,
        config: &LogConfig,
        w: &mut Writer,
        len: u64,
        header: &BatchHeader,
    ) -> Result<()> {
        let size = w.active.size();
        if size == 0 {
            return Ok(());
        }
        let too_big = size + len > config.segment_bytes;
        let too_old = w.state.first_timestamp.is_some_and(|t| {
            i128::from(coarse_now_ms().saturating_sub(t)) > config.segment_ms.as_millis() as i128
        });
        let offsets_overflow = header.last_offset() - w.active.base_offset() > u64::from(u32::MAX);
        if too_big || too_old || offsets_overflow || w.active.indexes_full() {
            self.roll(w)?;
        }
        Ok(())
    }

    /// Replaces the tail copy (invariant 6); the writer lock is held.
    fn set_tail(&self, w: &mut Writer, tail: Option<TailBatch>) {
        if tail.is_some() || w.tail_cached {
            w.tail_cached = tail.is_some();
            self.tail.store(tail.map(Arc::new));
        }
    }

    /// Seals the active segment and starts a new one at the next offset.
    pub(crate) fn roll(&self, w: &mut Writer) -> Result<()> {
        let base = w.state.next_offset;
        let new = Arc::new(Segment::create(
            &self.dir,
            base,
            self.config.load().index_entries() as usize,
        )?);
        // Bytes a failed write left past the end must not become part of a sealed segment.
        w.active.trim_log()?;
        // A failed seal only loses the index files' trim; they are rebuilt from the .log on use.
        let _ = w.active.seal(&w.state);
        self.segments.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(Arc::clone(&new));
            list
        });
        w.active = new;
        w.state = ActiveState::new(base);
        // Invariant 6: the tail copy is of a batch of the active segment, the one part of the
        // log that compaction and retention never change.
        self.set_tail(w, None);
        self.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    // ------------------------------------------------------------------------------ flushing

    /// Fsyncs everything appended so far; returns the new flushed offset.
    pub fn flush(&self) -> Result<u64> {
        self.flush_to(self.log_end_offset())?;
        Ok(self.flushed_offset())
    }

    /// Makes every offset below `offset` durable (fsynced), sharing one fsync with the other
    /// threads waiting at the same time (group commit). Returns at once if it already is.
    pub fn flush_until(&self, offset: u64) -> Result<()> {
        self.flush_to(offset.min(self.log_end_offset()))
    }

    /// Makes every offset below `target` durable, sharing the fsync with other waiting threads.
    fn flush_to(&self, target: u64) -> Result<()> {
        if self.flushed.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _waiting = Counted::enter(&self.flush_waiters);
        // Either another thread's fsync covers `target` while we are parked, or we fsync.
        let Some(_done) = self.flush_turn(target)? else {
            return Ok(());
        };
        self.gather_appenders();
        let flushed = self.flushed.load(Ordering::Acquire);
        let end = self.log_end.load(Ordering::Acquire);
        let fsync_started = Instant::now();
        let segments = self.segments.load();
        let result = (|| -> Result<()> {
            if self.dir_dirty.swap(false, Ordering::AcqRel) {
                fsutil::sync_dir_of(&self.dir)?;
            }
            // Segments that may hold offsets in flushed..end: the one holding `flushed` and later.
            let first = segments
                .partition_point(|s| s.base_offset() <= flushed)
                .saturating_sub(1);
            for segment in &segments[first..] {
                segment.sync(false)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // After a failed fsync the kernel may have dropped the dirty pages: refuse to go on
            // (appends would be acknowledged on top of a hole). Reopening rescans the log.
            // The first failure is the one reported.
            let _ = self.failed.set(e.to_string());
            return Err(e);
        }
        self.last_fsync_us.store(
            u64::try_from(fsync_started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.flushed.fetch_max(end, Ordering::AcqRel);
        self.last_flush_ms
            .store(self.millis_since_open(), Ordering::Relaxed);
        Ok(())
    }

    /// Group commit's gathering step: before a leader fsyncs, threads that will wait for
    /// durability but have not appended yet (typically those the previous fsync just woke) get a
    /// moment to append, so that one fsync covers them instead of the next one. It waits at most
    /// as long as the last fsync took (and never more than a millisecond), and not at all when
    /// every such thread is already waiting: a lone appender never waits.
    fn gather_appenders(&self) {
        let limit = Duration::from_micros(self.last_fsync_us.load(Ordering::Relaxed).min(1_000));
        let started = Instant::now();
        while self.durable_appenders.load(Ordering::Acquire)
            > self.flush_waiters.load(Ordering::Acquire)
            && started.elapsed() < limit
        {
            std::thread::yield_now();
        }
    }

    fn millis_since_open(&self) -> u64 {
        u64::try_from(self.opened_at.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn interval_flush_due(&self, every: Duration) -> bool {
        let since = self
            .millis_since_open()
            .saturating_sub(self.last_flush_ms.load(Ordering::Relaxed));
        u128::from(since) >= every.as_millis()
    }

    // ------------------------------------------------------------------------------ reading

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` (but at
    /// least one whole batch, so a reader always makes progress). Reading at the log end returns
    /// empty data.
    ///
    /// Errors: [`Error::OffsetOutOfRange`] below the log start offset or past the log end offset;
    /// [`Error::Corrupt`] if the index points into damaged bytes.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<FetchData> {
        self.read_reusing(offset, max_bytes, &mut None)
    }

    /// [`read`](Self::read) into `spare`'s allocation if it is large enough (a reader passes back
    /// the buffer of its previous read once nothing refers to it any more).
    pub(crate) fn read_reusing(
        &self,
        offset: u64,
        max_bytes: usize,
        spare: &mut Option<bytes::BytesMut>,
    ) -> Result<FetchData> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let end = self.log_end_offset();
        let start = self.log_start_offset();
        let mut data = FetchData {
            bytes: Bytes::new(),
            fetch_offset: offset,
            high_watermark: end,
            log_start_offset: start,
            next_offset: offset,
        };
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        if offset == end {
            return Ok(data);
        }
        if let Some(tail) = &*self.tail.load() {
            if tail.base_offset == offset && tail.next_offset <= end {
                data.bytes = tail.bytes.clone();
                data.next_offset = tail.next_offset;
                return Ok(data);
            }
        }
        let segments = self.segments.load();
        let first = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        for segment in &segments[first..] {
            if let Some(bytes) = segment.read(offset, max_bytes, end, spare)? {
                data.bytes = bytes;
                data.next_offset = data.offset_after_batches();
                return Ok(data);
            }
        }
        // No batch below the end holds `offset` or anything after it: compaction removed every
        // record from here to the end.
        data.next_offset = end;
        Ok(data)
    }

    /// Reads and decodes the records at or after `offset` (see [`read`](Self::read)).
    pub fn read_records(&self, offset: u64, max_bytes: usize) -> Result<Vec<OffsetRecord>> {
        self.read(offset, max_bytes)?.records()
    }

    /// The first offset whose record timestamp is at least `timestamp` (Kafka's
    /// `offsetsForTimes`), or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let start = self.log_start_offset();
        for segment in self.segments.load().iter() {
            if segment.size() == 0 || segment.largest_timestamp()? < timestamp {
                continue;
            }
            if let Some(offset) = segment.offset_for_timestamp(timestamp)? {
                return Ok(Some(offset.max(start)));
            }
        }
        Ok(None)
    }

    /// Blocks until the log end offset is past `offset` or `timeout` passes; returns whether it
    /// is. Appends wake waiters without polling.
    pub fn wait_for_offset(&self, offset: u64, timeout: Duration) -> bool {
        if self.log_end_offset() > offset {
            return true;
        }
        let deadline = deadline_after(timeout);
        let mut guard = self.wait_lock.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.log_end_offset() > offset || self.closed.load(Ordering::Acquire) {
                break self.log_end_offset() > offset;
            }
            if self.wait_cond.wait_until(&mut guard, deadline).timed_out() {
                break self.log_end_offset() > offset;
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn notify_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.wait_lock.lock();
            self.wait_cond.notify_all();
        }
        if self.listener_count.load(Ordering::SeqCst) > 0 {
            let mut listeners = self.listeners.lock();
            listeners.retain(|l| match l.upgrade() {
                Some(signal) => {
                    signal.notify();
                    true
                }
                None => false,
            });
            self.listener_count.store(listeners.len(), Ordering::SeqCst);
        }
    }

    /// Registers `signal` to be notified after every append (and on close), until it is dropped.
    /// A consumer that reads several logs waits on one signal registered with all of them.
    pub(crate) fn add_listener(&self, signal: &Arc<AppendSignal>) {
        let mut listeners = self.listeners.lock();
        listeners.retain(|l| l.strong_count() > 0);
        if !listeners
            .iter()
            .any(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(signal)))
        {
            listeners.push(Arc::downgrade(signal));
        }
        self.listener_count.store(listeners.len(), Ordering::SeqCst);
    }

    /// Undoes [`add_listener`](Self::add_listener).
    pub(crate) fn remove_listener(&self, signal: &Arc<AppendSignal>) {
        let mut listeners = self.listeners.lock();
        listeners
            .retain(|l| l.strong_count() > 0 && !std::ptr::eq(l.as_ptr(), Arc::as_ptr(signal)));
        self.listener_count.store(listeners.len(), Ordering::SeqCst);
    }

    // ------------------------------------------------------------------------------ truncation

    /// Removes every batch from the one holding `offset` onwards (replication needs this to drop
    /// records a former leader never committed). Batches are never split, so the new log end
    /// offset, which is returned, can be below `offset` if it fell inside a batch. It is never
    /// below an offset that compaction emptied: there the log goes on at `offset` (or at the first
    /// batch cut), so that no offset is given out twice; nor below the log start offset (where
    /// that lies inside the batch cut, the log goes on, empty, at the log start). At or below the
    /// log start offset the log is emptied and restarts at `offset`.
    pub fn truncate_to(&self, offset: u64) -> Result<u64> {
        if i64::try_from(offset).is_err() {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is past the largest Kafka offset"
            )));
        }
        let mut m = self.maintenance.lock();
        let mut w = self.writer.lock();
        self.check_usable()?;
        if offset >= w.state.next_offset {
            return Ok(w.state.next_offset);
        }
        // No fsync may run while offsets are taken back: it could count offsets appended after
        // the truncation as flushed when it only synced the bytes from before.
        let _no_flush = self.hold_flush();
        self.set_tail(&mut w, None);
        let segments = self.segments.load_full();
        let entries = self.config.load().index_entries() as usize;
        let start = self.log_start_offset();
        let i = segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1);
        let target = Arc::clone(&segments[i]);
        // Batches are never split: offsets go from the base offset of the first batch cut,
        // or of the next segment when the target keeps all its batches.
        let removed_from = if offset <= start {
            offset
        } else {
            match target.locate(offset)? {
                Some((_, header)) => header.base_offset,
                None => segments.get(i + 1).map_or(offset, |s| s.base_offset()),
            }
        };
        // Later segments go first, so a crash part-way leaves a prefix of the log.
        let (list, active, new_state) = if removed_from < start || offset <= start {
            // Nothing at or past the log start is kept: the log is emptied and restarts at
            // `offset`, or at the log start when `offset` is past it but the first batch cut
            // begins below it (`delete_records` moved the start inside that batch): never below
            // the start (invariant 2; an end below it also made the next open lower the start
            // and give offsets below it out again), and without a gap between the batches kept
            // below the start and a segment at the start, which recovery would take for a tail
            // lost in a crash.
            let at = offset.min(start);
            for s in segments.iter().rev() {
                s.retire();
                s.delete_files()?;
            }
            let fresh = Arc::new(Segment::create(&self.dir, at, entries)?);
            (vec![Arc::clone(&fresh)], fresh, ActiveState::new(at))
        } else {
            for s in segments[i + 1..].iter().rev() {
                s.retire();
                s.delete_files()?;
            }
            let mut state =
                target.truncate_from(offset, entries, self.config.load().index_interval_bytes)?;
            if state.first_timestamp.is_some() {
                // Roll by age counts from now, as after an open (the rebuilt state holds a
                // record's timestamp, which may be old and would roll at the next append).
                state.first_timestamp = Some(coarse_now_ms());
            }
            let end = offset.min(removed_from).max(state.next_offset);
            if end == state.next_offset {
                (segments[..=i].to_vec(), target, state)
            } else {
                // Compaction removed the records just below the cut, but their offsets were
                // given out: the log goes on at `end`, in a new segment named by it, so that no
                // offset is given twice, after a restart either.
                let mut list = segments[..i].to_vec();
                if target.size() == 0 {
                    target.retire();
                    target.delete_files()?;
                } else {
                    target.trim_log()?;
                    // A failed seal only loses the index files' trim (rebuilt on use).
                    let _ = target.seal(&state);
                    list.push(target);
                }
                let fresh = Arc::new(Segment::create(&self.dir, end, entries)?);
                list.push(Arc::clone(&fresh));
                (list, fresh, ActiveState::new(end))
            }
        };
        // Below the log start the log restarts at `offset`; if the truncation left no segment
        // below the new end, the log starts there.
        let first_base = list.first().map_or(offset, |s| s.base_offset());
        self.segments.store(Arc::new(list));
        if offset <= start {
            self.log_start.store(offset, Ordering::Release);
        } else if first_base > start {
            self.log_start.store(first_base, Ordering::Release);
        }
        w.active = active;
        w.state = new_state;
        self.log_end.store(new_state.next_offset, Ordering::SeqCst);
        self.flushed
            .fetch_min(new_state.next_offset, Ordering::AcqRel);
        m.cleaner_offset = m.cleaner_offset.min(new_state.next_offset);
        fsutil::sync_dir_of(&self.dir)?;
        // The log start and cleaner offset may have moved back: record them before any append.
        self.write_checkpoint(&mut m, true)?;
        Ok(new_state.next_offset)
    }

    /// Waits until no group-commit fsync runs and keeps new ones from starting until the
    /// returned guard is dropped.
    fn hold_flush(&self) -> FlushDone<'_> {
        loop {
            // `u64::MAX` is never flushed, so this only returns with the turn (or an error,
            // which `flush_turn` only returns for finite targets).
            if let Ok(Some(turn)) = self.flush_turn(u64::MAX) {
                return turn;
            }
        }
    }

    /// Parks the calling thread until offsets below `target` are flushed (`Ok(None)`) or it is
    /// its turn to fsync (`Ok(Some(turn))`; the turn ends when the guard drops). Parked threads
    /// are woken by the thread whose turn ends: every one its fsync covered at once, each
    /// without taking a lock after waking, and one of the others to take the next turn. (A
    /// condition variable made the covered waiters leave one at a time, each re-taking its
    /// mutex: with 32 appending threads on 2 cores that hand-off, not the fsync, set the pace.)
    fn flush_turn(&self, target: u64) -> Result<Option<FlushDone<'_>>> {
        let me = std::thread::current();
        loop {
            {
                let mut q = self.flush_q.lock();
                // A spurious wake-up may leave our old entry behind.
                q.parked.retain(|(_, t)| t.id() != me.id());
                if self.flushed.load(Ordering::Acquire) >= target {
                    return Ok(None);
                }
                if target != u64::MAX {
                    if let Some(why) = self.failed.get() {
                        return Err(Error::Failed(why.clone()));
                    }
                }
                if !q.busy {
                    q.busy = true;
                    return Ok(Some(FlushDone(self)));
                }
                q.parked.push((target, me.clone()));
            }
            std::thread::park();
        }
    }

    /// Takes the log out of service without touching its folder again (no flush, no checkpoint,
    /// no maintenance): for a deleted topic, whose folder is renamed away and removed, and whose
    /// name a new topic may take at once. Later calls return [`Error::Closed`].
    pub(crate) fn retire(&self) {
        let _m = self.maintenance.lock();
        let _w = self.writer.lock();
        self.closed.store(true, Ordering::Release);
        for s in self.segments.load().iter() {
            s.retire();
        }
        self.notify_waiters();
    }

    // ------------------------------------------------------------------------------ closing

    /// Closes the log cleanly: flushes everything, trims the active segment's indexes and writes
    /// the clean-shutdown mark, so the next open does not scan.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.notify_waiters();
        if self.failed.get().is_some() {
            return Ok(()); // leave the unclean mark: the next open must scan
        }
        let mut m = self.maintenance.lock();
        let w = self.writer.lock();
        w.active.trim_log()?;
        w.active.sync(false)?;
        for s in self.segments.load().iter() {
            s.sync(false)?;
        }
        w.active.seal(&w.state)?;
        fsutil::sync_dir_of(&self.dir)?;
        let end = w.state.next_offset;
        let checkpoint = Checkpoint {
            clean: true,
            recovery_point: end,
            log_start_offset: self.log_start_offset(),
            cleaner_offset: m.cleaner_offset,
            log_end_offset: end,
        };
        checkpoint.write(&self.dir)?;
        m.last_checkpoint = checkpoint;
        Ok(())
    }

    /// Drops the handle as a crashed process would: no flush, no clean-shutdown mark.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Writes the checkpoint (recovery point = flushed offset): at once when the log start or
    /// cleaner offset moved, and at most every [`CHECKPOINT_INTERVAL`] when only the recovery
    /// point did (a stale recovery point only makes the next unclean open scan a little more).
    pub(crate) fn write_checkpoint(&self, m: &mut MaintenanceState, force: bool) -> Result<()> {
        let checkpoint = Checkpoint {
            clean: false,
            recovery_point: self.flushed_offset().min(self.log_end_offset()),
            log_start_offset: self.log_start_offset(),
            cleaner_offset: m.cleaner_offset,
            log_end_offset: self.log_end_offset(),
        };
        let last = m.last_checkpoint;
        let structural = checkpoint.log_start_offset != last.log_start_offset
            || checkpoint.cleaner_offset != last.cleaner_offset;
        let due =
            checkpoint != last && (force || m.last_checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL);
        if structural || due {
            checkpoint.write(&self.dir)?;
            m.last_checkpoint = checkpoint;
            m.last_checkpoint_at = Instant::now();
        }
        Ok(())
    }

    /// Runs the time-based work that is due: the interval flush, retention, compaction, and the
    /// checkpoint of the recovery point. The broker's background thread calls this; a program that
    /// uses a `PartitionLog` directly calls it from time to time (every second is plenty).
    pub fn maintain(&self) -> Result<MaintenanceReport> {
        self.maintain_at(now_ms())
    }

    /// [`maintain`](Self::maintain) with an explicit wall-clock time (milliseconds since the
    /// epoch), for tests of retention.
    #[doc(hidden)]
    pub fn maintain_at(&self, now: i64) -> Result<MaintenanceReport> {
        self.check_usable()?;
        let mut report = MaintenanceReport::default();
        if self.flushed_offset() < self.log_end_offset() {
            let due = match self.config.load().durability {
                Durability::Interval(every) => self.interval_flush_due(every),
                // Sealed segments are flushed in the background, so the recovery point moves on
                // even when the library never fsyncs on the append path (Kafka flushes on roll).
                Durability::None => self.flushed_offset() < self.writer.lock().active.base_offset(),
                // Appends that did not wait (`append_deferred`, asynchronous offset commits)
                // become durable within one maintenance interval even if nobody waits for them.
                Durability::Always => true,
            };
            if due {
                self.flush()?;
                report.flushed = true;
            }
        }
        let mut m = self.maintenance.lock();
        if self.config.load().cleanup_policy.deletes() {
            report.segments_deleted = self.apply_retention(now)?;
        }
        if self.config.load().cleanup_policy.compacts() {
            if let Some(stats) = super::compaction::compact_if_dirty(self, &mut m, now, false)? {
                report.compacted = true;
                report.records_removed = stats.records_removed;
            }
        }
        self.write_checkpoint(&mut m, false)?;
        Ok(report)
    }

    /// Kafka's `deleteRecords` (`kafka-delete-records.sh`): moves the log start offset up to
    /// `offset`, so that records below it are not read any more, and deletes the sealed segments
    /// that hold only such records. The new log start offset is recorded at once and survives a
    /// restart. Returns the log start offset (it never moves back: an `offset` below it changes
    /// nothing).
    ///
    /// Errors: `offset` past the log end ([`Error::OffsetOutOfRange`]), [`Error::Io`].
    ///
    /// ```
    /// use tidelog::{LogConfig, PartitionLog, Record};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = PartitionLog::open(dir.path(), LogConfig::default())?;
    /// for i in 0..10 {
    ///     log.append(&[Record::new("k", format!("v{i}"))])?;
    /// }
    /// assert_eq!(log.delete_records(4)?, 4);
    /// assert_eq!(log.log_start_offset(), 4);
    /// assert!(log.read(3, 1024).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_records(&self, offset: u64) -> Result<u64> {
        self.check_usable()?;
        let mut m = self.maintenance.lock();
        let start = self.move_log_start(offset)?;
        // Recorded before any file goes: a crash in between must not bring records back.
        self.write_checkpoint(&mut m, false)?;
        self.delete_segments_below(start)?;
        Ok(start)
    }

    /// Writes the checkpoint now, recovery point included (tests of recovery use it).
    #[doc(hidden)]
    pub fn checkpoint_now(&self) -> Result<()> {
        let mut m = self.maintenance.lock();
        self.write_checkpoint(&mut m, true)
    }

    /// Forces a compaction of the sealed segments now, whatever the dirty ratio.
    #[doc(hidden)]
    pub fn compact_at(&self, now: i64) -> Result<u64> {
        self.check_usable()?;
        let mut m = self.maintenance.lock();
        let removed = super::compaction::compact_if_dirty(self, &mut m, now, true)?
            .map_or(0, |s| s.records_removed);
        self.write_checkpoint(&mut m, false)?;
        Ok(removed)
    }

    /// Seals the active segment now if it holds anything (tests and retention use it).
    #[doc(hidden)]
    pub fn roll_now(&self) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_usable()?;
        if w.active.size() > 0 {
            self.roll(&mut w)?;
        }
        Ok(())
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; `close` reports them. A failed close leaves the
        // unclean mark, so the next open recovers.
        let _ = self.close_inner();
    }
}

/// Group commit's turn-taking: whether a thread holds the turn (fsyncing, or truncating), and
/// the threads parked until an offset is flushed or the turn is free (`u64::MAX`).
#[derive(Default)]
struct FlushQueue {
    busy: bool,
    parked: Vec<(u64, std::thread::Thread)>,
}

/// Counts a thread in while it lives (a gauge for `gather_appenders`).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::AcqRel);
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Ends a group-commit fsync (see `flush_to`): clears the flag and wakes the waiters, whatever
/// happened to the fsync.
struct FlushDone<'a>(&'a PartitionLog);

impl Drop for FlushDone<'_> {
    fn drop(&mut self) {
        let log = self.0;
        let mut q = log.flush_q.lock();
        q.busy = false;
        let flushed = log.flushed.load(Ordering::Acquire);
        let failed = log.failed.get().is_some();
        let mut next_turn_woken = false;
        q.parked.retain(|(target, thread)| {
            let covered = failed || *target <= flushed;
            if covered || !next_turn_woken {
                next_turn_woken |= !covered;
                thread.unpark();
                false
            } else {
                true
            }
        });
    }
}

/// The lock file's name inside a partition folder.
pub(crate) const LOCK_FILE: &str = "tidelog.lock";

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<PartitionLog>();
}
