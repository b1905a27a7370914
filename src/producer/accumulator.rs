//! The record accumulator: one queue per partition where records wait to be appended, in
//! batches (Kafka's `RecordAccumulator` and `ProducerBatch`).
//!
//! Invariants of a [`PartitionQueue`] (all under its `acc` mutex):
//! 1. At most one batch is *open* (accepting records); it holds at least one record.
//! 2. A batch is *sealed* by moving it to the back of `sealed`; batches are appended to the log
//!    in the order they were sealed, so records of one partition keep the order in which their
//!    `send` calls took the lock (per-thread order included).
//! 3. One thread at a time is the *appender* (`appending`): it pops sealed batches and appends
//!    them, with the lock released during each append. Whoever seals a batch and finds no
//!    appender becomes the appender, so `sealed` is never non-empty without an appender.
//! 4. `appended_count` counts sealed batches whose append finished (successfully or not) and
//!    whose completion is either done or handed to the durability queue (sender.rs).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::partitioner::Sticky;
use super::sender::{Durable, Shared};
use crate::batch::{self, BatchStats, Fields, HEADER_LEN};
use crate::error::{Error, Result};
use crate::record::Header;
use crate::storage::{Durability, PartitionLog};
use crate::topic::TopicState;

/// What every partition queue of one topic shares.
pub(crate) struct TopicShared {
    pub name: Arc<str>,
    pub state: Arc<TopicState>,
    pub sticky: Sticky,
}

impl TopicShared {
    pub(crate) fn is_live(&self) -> bool {
        !self.state.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.state.partitions.read().len() as u32
    }
}

/// The shared outcome of one batch; every [`SendFuture`](crate::SendFuture) of the batch holds
/// it with its index, so a send costs one reference count, not one allocation.
pub(crate) struct BatchCompletion {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The base offset of the batch, or why it failed; set once. Read without a lock.
    result: OnceLock<Result<u64>>,
    /// Only for waiters: taken to sleep on `cond`, and by `complete` before it notifies.
    lock: Mutex<()>,
    cond: Condvar,
}

impl BatchCompletion {
    pub(crate) fn new(topic: Arc<str>, partition: u32) -> BatchCompletion {
        BatchCompletion {
            topic,
            partition,
            result: OnceLock::new(),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    pub(crate) fn failed(topic: Arc<str>, partition: u32, error: Error) -> BatchCompletion {
        let batch = BatchCompletion::new(topic, partition);
        batch.complete(Err(error));
        batch
    }

    /// Records the outcome (the first one wins) and wakes the waiters.
    pub(crate) fn complete(&self, result: Result<u64>) {
        let _ = self.result.set(result);
        // A waiter checks `result` and sleeps under `lock`: taking it here means every waiter
        // either saw the result or is asleep and gets the notification.
        drop(self.lock.lock());
        self.cond.notify_all();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.result.get().is_some()
    }

    pub(crate) fn result(&self) -> Option<Result<u64>> {
        self.result.get().map(copy_result)
    }

    /// Waits for the outcome until `deadline` (forever if `None`).
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> Option<Result<u64>> {
        if let Some(result) = self.result() {
            return Some(result);
        }
        let mut guard = self.lock.lock();
        loop {
            if let Some(result) = self.result() {
                return Some(result);
            }
            match deadline {
                None => self.cond.wait(&mut guard),
                Some(deadline) => {
                    if self.cond.wait_until(&mut guard, deadline).timed_out() {
                        return self.result();
                    }
                }
            }
        }
    }
}

fn copy_result(result: &Result<u64>) -> Result<u64> {
    match result {
        Ok(base) => Ok(*base),
        Err(e) => Err(clone_error(e)),
    }
}

/// A copy of `e` for each future of a failed batch (`Error` holds an `io::Error`, which is not
/// `Clone`; the copy keeps its kind and message).
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::RecordTooLarge { size, max } => Error::RecordTooLarge {
            size: *size,
            max: *max,
        },
        Error::UnknownTopic(t) => Error::UnknownTopic(t.clone()),
        Error::UnknownPartition { topic, partition } => Error::UnknownPartition {
            topic: topic.clone(),
            partition: *partition,
        },
        Error::MissingKey => Error::MissingKey,
        Error::InvalidArgument(why) => Error::InvalidArgument(why.clone()),
        Error::Closed => Error::Closed,
        Error::Failed(why) => Error::Failed(why.clone()),
        other => Error::Failed(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------- sizes

/// Bytes of a zigzag varint whose zigzag value is `zigzag`.
fn varint_size(zigzag: u64) -> usize {
    ((64 - (zigzag | 1).leading_zeros()) as usize).div_ceil(7)
}

fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes of a varint length prefix (lengths past `i32::MAX` are refused by the encoder anyway).
fn len_size(len: usize) -> usize {
    varint_size(zigzag32(len.min(i32::MAX as usize) as i32))
}

fn nullable_size(bytes: Option<&[u8]>) -> usize {
    bytes.map_or(1, |b| len_size(b.len()) + b.len())
}

/// A record being sent, with the part of its encoded size that does not depend on its place in
/// a batch ([`record_fixed_size`], computed once per send).
pub(crate) struct Pending {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
    pub headers: Vec<Header>,
    pub fixed: usize,
}

impl Pending {
    /// Appends the record, encoded, to a batch's buffer.
    fn encode(&self, buf: &mut Vec<u8>, timestamp_delta: i64, offset_delta: u32) {
        // Offset deltas are below the record count of a batch, an i32 (batch sizes are i32).
        batch::put_record(
            buf,
            timestamp_delta,
            offset_delta as i32,
            self.key.as_deref(),
            self.value.as_deref(),
            &self.headers,
        );
    }
}

/// The part of a record's encoded body that does not depend on its place in a batch
/// (everything but the timestamp and offset deltas and the length prefix); computed once per
/// send.
pub(crate) fn record_fixed_size(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let mut body = 1 // attributes
        + nullable_size(key)
        + nullable_size(value)
        + len_size(headers.len());
    for h in headers {
        body += len_size(h.key.len()) + h.key.len() + nullable_size(h.value.as_deref());
    }
    body
}

/// The exact encoded size, length prefix included, of a record whose
/// [`record_fixed_size`] is `fixed`, at `timestamp_delta` from the batch's first timestamp and
/// `offset_delta` from its base offset (Kafka's `RecordBatch` v2).
pub(crate) fn placed_size(fixed: usize, timestamp_delta: i64, offset_delta: u32) -> usize {
    let body =
        fixed + varint_size(zigzag64(timestamp_delta)) + varint_size(zigzag32(offset_delta as i32));
    len_size(body) + body
}

/// The size of a batch holding only a record whose fixed size is `fixed`.
pub(crate) fn single_record_batch_size(fixed: usize) -> usize {
    HEADER_LEN + placed_size(fixed, 0, 0)
}

#[cfg(test)]
fn fixed_of(record: &crate::record::Record) -> usize {
    record_fixed_size(
        record.key.as_deref(),
        record.value.as_deref(),
        &record.headers,
    )
}

#[cfg(test)]
fn record_size(record: &crate::record::Record, timestamp_delta: i64, offset_delta: u32) -> usize {
    placed_size(fixed_of(record), timestamp_delta, offset_delta)
}

// ---------------------------------------------------------------------------------- queue

/// A batch being filled: its records are encoded as they are sent (Kafka's
/// `MemoryRecordsBuilder`), after room for the header, which is written when it is appended.
struct OpenBatch {
    /// Room for the header, then the encoded records: `buf.len()` is the batch's size.
    buf: Vec<u8>,
    count: u32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Whether a record has no key (refused by a compacted log when appended).
    keyless: bool,
    /// Bytes taken from the producer's buffer memory.
    reserved: usize,
    completion: Arc<BatchCompletion>,
}

struct SealedBatch {
    buf: Vec<u8>,
    stats: BatchStats,
    keyless: bool,
    reserved: usize,
    completion: Arc<BatchCompletion>,
}

/// Where [`PartitionQueue::place`] put a record.
struct Placed {
    /// Its index in the open batch.
    index: u32,
    /// Whether it opened that batch.
    opened: bool,
    /// Whether the batch should be closed now.
    close: bool,
}

#[derive(Default)]
struct AccState {
    open: Option<OpenBatch>,
    sealed: VecDeque<SealedBatch>,
    appending: bool,
    /// The buffer of the last appended batch, for the next one.
    spare: Option<Vec<u8>>,
    sealed_count: u64,
    appended_count: u64,
    /// Threads waiting on `cond` (for the appender to finish, or for a flush).
    waiting: usize,
}

impl AccState {
    /// The completion of the open batch (there is one right after [`PartitionQueue::place`]).
    fn open_completion(&self) -> Arc<BatchCompletion> {
        match &self.open {
            Some(open) => Arc::clone(&open.completion),
            None => unreachable!("place leaves an open batch"),
        }
    }
}

/// How the sending thread waits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `send_async`: never wait for durability; wait only to hand over a full batch.
    Async,
    /// `send`: close the batch now rather than after the linger time, append it if no other
    /// thread is appending to the partition (records sent meanwhile join it), and fsync it here
    /// when the topic asks for that.
    Blocking,
}

/// The records waiting for one partition.
pub(crate) struct PartitionQueue {
    pub topic: Arc<TopicShared>,
    pub partition: u32,
    pub log: Arc<PartitionLog>,
    acc: Mutex<AccState>,
    cond: Condvar,
}

impl PartitionQueue {
    pub(crate) fn new(topic: Arc<TopicShared>, partition: u32, log: Arc<PartitionLog>) -> Self {
        PartitionQueue {
            topic,
            partition,
            log,
            acc: Mutex::new(AccState::default()),
            cond: Condvar::new(),
        }
    }

    /// Adds `record` to the open batch (opening one if needed) and returns its batch, its index
    /// in it, and whether a batch was opened. `alone` is the size of a batch of only this
    /// record; `cap` the size at which a batch is closed.
    pub(crate) fn push(
        self: &Arc<Self>,
        shared: &Shared,
        record: &Pending,
        alone: usize,
        cap: usize,
        mode: Mode,
    ) -> (Arc<BatchCompletion>, u32, bool) {
        let (mut acc, placed) = self.place(shared, self.acc.lock(), record, alone, cap, mode);
        let completion = acc.open_completion();
        let close = placed.close || mode == Mode::Blocking;
        let (index, opened) = (placed.index, placed.opened);
        if !close {
            return (completion, index, opened);
        }
        // Close this batch. A blocking send waits for a busy appender first, so that records
        // of other threads join the batch meanwhile (batching across threads, as group commit).
        loop {
            let still_open = acc
                .open
                .as_ref()
                .is_some_and(|b| Arc::ptr_eq(&b.completion, &completion));
            if !still_open {
                break;
            }
            if mode == Mode::Blocking && acc.appending {
                acc.waiting += 1;
                self.cond.wait(&mut acc);
                acc.waiting -= 1;
                continue;
            }
            self.seal(&mut acc);
            break;
        }
        if mode == Mode::Async {
            drop(self.dispatch(shared, acc, mode));
            return (completion, index, opened);
        }
        let (acc, durable) = self.drain(shared, acc, Some(&completion));
        drop(acc);
        if let Some(durable) = durable {
            // This thread waits anyway: fsync here. Threads fsyncing the same log at the same
            // time share one fsync (PartitionLog group commit).
            let flushed = self.log.flush_until(durable.end);
            durable.finish(flushed);
        }
        (completion, index, opened)
    }

    /// [`push`](Self::push) of every record of `run` (drained, in order), as async sends, under
    /// one lock: [`Producer::send_all`](super::Producer::send_all) sends a run of records for one
    /// partition this way. `placed` learns each record's batch and index (it must not call into
    /// the producer). Returns whether a batch was opened.
    pub(crate) fn push_all(
        self: &Arc<Self>,
        shared: &Shared,
        run: &mut Vec<(Pending, usize)>,
        cap: usize,
        placed: &mut dyn FnMut(&Arc<BatchCompletion>, u32, i64),
    ) -> bool {
        let mut acc = self.acc.lock();
        let mut opened = false;
        for (record, alone) in run.drain(..) {
            let (guard, place) = self.place(shared, acc, &record, alone, cap, Mode::Async);
            acc = guard;
            opened |= place.opened;
            if let Some(open) = &acc.open {
                placed(&open.completion, place.index, record.timestamp);
            }
            if place.close {
                self.seal(&mut acc);
                acc = self.dispatch(shared, acc, Mode::Async);
            }
        }
        opened
    }

    /// Adds `record` to the open batch, first closing (and dispatching) it if the record does
    /// not fit and opening a new one if there is none: on return the open batch holds the
    /// record. `close` says the batch should be closed now (full, or the producer is closing).
    fn place<'a>(
        self: &'a Arc<Self>,
        shared: &Shared,
        mut acc: MutexGuard<'a, AccState>,
        record: &Pending,
        alone: usize,
        cap: usize,
        mode: Mode,
    ) -> (MutexGuard<'a, AccState>, Placed) {
        loop {
            if let Some(open) = acc.open.as_mut() {
                let placed = record
                    .timestamp
                    .checked_sub(open.base_timestamp)
                    .map(|delta| (delta, placed_size(record.fixed, delta, open.count)));
                match placed {
                    Some((delta, size)) if open.buf.len() + size <= cap => {
                        let before = open.buf.len();
                        record.encode(&mut open.buf, delta, open.count);
                        debug_assert_eq!(open.buf.len(), before + size);
                        open.count += 1;
                        open.max_timestamp = open.max_timestamp.max(record.timestamp);
                        open.keyless |= record.key.is_none();
                        // Close now if a record like this one would not fit any more: a full
                        // batch should not wait for the linger time or the next send.
                        let full = open.buf.len() + size > cap;
                        let index = open.count - 1;
                        return (
                            acc,
                            Placed {
                                index,
                                opened: false,
                                close: full,
                            },
                        );
                    }
                    _ => {
                        self.seal(&mut acc);
                        acc = self.dispatch(shared, acc, mode);
                        continue;
                    }
                }
            }
            // No open batch: take its room from the buffer memory first (invariant: buffer
            // memory is never waited for while holding a queue's lock).
            let reserve = cap.max(alone);
            if !shared.try_reserve(reserve) {
                drop(acc);
                shared.reserve_blocking(reserve);
                acc = self.acc.lock();
                if acc.open.is_some() {
                    shared.release(reserve);
                    continue;
                }
            }
            let completion = Arc::new(BatchCompletion::new(
                Arc::clone(&self.topic.name),
                self.partition,
            ));
            let per_record = alone - HEADER_LEN;
            let mut buf = acc
                .spare
                .take()
                .unwrap_or_else(|| Vec::with_capacity(reserve));
            buf.clear();
            buf.reserve(reserve);
            buf.resize(HEADER_LEN, 0);
            record.encode(&mut buf, 0, 0);
            debug_assert_eq!(buf.len(), alone);
            let full = alone + per_record > cap;
            // When the producer is closing, nobody will wait out the linger time: append now.
            let lingering = full || shared.register_linger(self, &completion);
            acc.open = Some(OpenBatch {
                buf,
                count: 1,
                base_timestamp: record.timestamp,
                max_timestamp: record.timestamp,
                keyless: record.key.is_none(),
                reserved: reserve,
                completion,
            });
            return (
                acc,
                Placed {
                    index: 0,
                    opened: true,
                    close: full || !lingering,
                },
            );
        }
    }

    /// The linger time of the batch `completion` passed: close and append it if still open.
    pub(crate) fn linger_expired(&self, shared: &Shared, completion: &Arc<BatchCompletion>) {
        let mut acc = self.acc.lock();
        if acc
            .open
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(&b.completion, completion))
        {
            self.seal(&mut acc);
            drop(self.drain(shared, acc, None).0);
        }
    }

    /// Closes the open batch and waits until every batch closed so far has been appended
    /// (appending them here if no other thread is).
    pub(crate) fn flush(&self, shared: &Shared) {
        let mut acc = self.acc.lock();
        if acc.open.is_some() {
            self.seal(&mut acc);
        }
        let target = acc.sealed_count;
        while acc.appended_count < target {
            if acc.appending {
                acc.waiting += 1;
                self.cond.wait(&mut acc);
                acc.waiting -= 1;
            } else {
                acc = self.drain(shared, acc, None).0;
            }
        }
    }

    /// Gets the sealed batches appended: by the producer's background thread for an async send
    /// when the config says so (`append_in_background`), by this thread otherwise or when the
    /// producer is closing. Nothing to do if a thread is appending already.
    fn dispatch<'a>(
        self: &Arc<Self>,
        shared: &Shared,
        mut acc: MutexGuard<'a, AccState>,
        mode: Mode,
    ) -> MutexGuard<'a, AccState> {
        if acc.appending || acc.sealed.is_empty() {
            return acc;
        }
        if mode == Mode::Async && shared.config.append_in_background {
            // The background thread takes over the appender role (invariant 3).
            acc.appending = true;
            if shared.hand_off(self) {
                return acc;
            }
            acc.appending = false;
        }
        self.drain(shared, acc, None).0
    }

    /// Called by the background thread for a queue handed to it by [`dispatch`](Self::dispatch).
    pub(crate) fn drain_handed(&self, shared: &Shared) {
        let mut acc = self.acc.lock();
        acc.appending = false;
        drop(self.drain(shared, acc, None).0);
    }

    /// Moves the open batch to the sealed queue (invariant 2).
    fn seal(&self, acc: &mut AccState) {
        if let Some(open) = acc.open.take() {
            acc.sealed.push_back(SealedBatch {
                buf: open.buf,
                stats: BatchStats {
                    base_timestamp: open.base_timestamp,
                    max_timestamp: open.max_timestamp,
                    // At most the records of one batch, whose size fits an i32.
                    count: open.count as i32,
                },
                keyless: open.keyless,
                reserved: open.reserved,
                completion: open.completion,
            });
            acc.sealed_count += 1;
            self.topic
                .sticky
                .on_new_batch(self.partition, self.topic.partition_count());
        }
    }

    /// If no thread is appending to this partition, becomes the appender and appends every
    /// sealed batch in order (invariant 3). The durability wait of `own` (if it needs one) is
    /// returned to the caller instead of going to the producer's background thread.
    fn drain<'a>(
        &self,
        shared: &Shared,
        mut acc: MutexGuard<'a, AccState>,
        own: Option<&Arc<BatchCompletion>>,
    ) -> (MutexGuard<'a, AccState>, Option<Durable>) {
        if acc.appending {
            return (acc, None);
        }
        acc.appending = true;
        let mut own_durable = None;
        while let Some(batch) = acc.sealed.pop_front() {
            let buf = MutexGuard::unlocked(&mut acc, || {
                let (durable, buf) = self.append(shared, batch);
                if let Some(durable) = durable {
                    if own.is_some_and(|o| Arc::ptr_eq(o, &durable.completion)) {
                        own_durable = Some(durable);
                    } else {
                        shared.push_durable(durable);
                    }
                }
                buf
            });
            // Keep one buffer for the next batch, unless it grew for a huge record.
            if buf.capacity() <= (shared.config.batch_size.max(HEADER_LEN) * 2) {
                acc.spare = Some(buf);
            }
            acc.appended_count += 1;
        }
        acc.appending = false;
        if acc.waiting > 0 {
            self.cond.notify_all();
        }
        (acc, own_durable)
    }

    /// Appends one batch (without waiting for an fsync) and completes it, or returns what must
    /// become durable before it completes; also returns the batch's buffer, for reuse.
    fn append(&self, shared: &Shared, batch: SealedBatch) -> (Option<Durable>, Vec<u8>) {
        let SealedBatch {
            mut buf,
            stats,
            keyless,
            reserved,
            completion,
        } = batch;
        if let Some(partitioner) = &shared.config.partitioner {
            // User code runs while this thread is the partition's appender: a panic in it must
            // not leave the partition without one (invariant 3). The panic hook reports it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                partitioner.on_new_batch(
                    &self.topic.name,
                    self.topic.partition_count(),
                    self.partition,
                );
            }));
        }
        let result = if self.topic.is_live() {
            // Offset deltas are 0..count: the last one is count - 1.
            batch::finish_batch(&mut buf, 0, &Fields::plain(stats.count - 1), stats)
                .and_then(|()| self.log.append_encoded_deferred(&mut buf, keyless))
        } else {
            Err(Error::UnknownTopic(self.topic.name.to_string()))
        };
        shared.release(reserved);
        let durable = match result {
            Ok(info)
                if !info.durable
                    && self.topic.state.config.load().durability == Durability::Always =>
            {
                Some(Durable {
                    log: Arc::clone(&self.log),
                    end: info.last_offset + 1,
                    base: info.base_offset,
                    completion,
                })
            }
            Ok(info) => {
                completion.complete(Ok(info.base_offset));
                None
            }
            Err(e) => {
                completion.complete(Err(e));
                None
            }
        };
        (durable, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordBatch;
    use crate::record::{Header, Record};

    #[test]
    fn record_size_matches_the_encoder() {
        let big = vec![7u8; 300];
        let records = vec![
            Record::new("k", "v").with_timestamp(1_000),
            Record::from_value(big.clone()).with_timestamp(1_000 - 70_000),
            Record::tombstone("gone").with_timestamp(i64::from(i32::MAX) * 4),
            Record {
                key: None,
                value: None,
                timestamp: 5,
                headers: vec![Header {
                    key: "h".into(),
                    value: None,
                }],
            },
            Record::new(big.clone(), big)
                .with_header("trace", "abc")
                .with_header("", vec![0u8; 200]),
        ];
        for n in 1..=records.len() {
            let batch = &records[..n];
            let base = batch[0].timestamp;
            let expected: usize = HEADER_LEN
                + batch
                    .iter()
                    .enumerate()
                    .map(|(i, r)| record_size(r, r.timestamp - base, i as u32))
                    .sum::<usize>();
            let encoded = RecordBatch::encode(0, batch).unwrap();
            assert_eq!(encoded.as_bytes().len(), expected, "{n} records");
        }
        for r in &records {
            assert_eq!(
                single_record_batch_size(fixed_of(r)),
                RecordBatch::encode(0, std::slice::from_ref(r))
                    .unwrap()
                    .as_bytes()
                    .len()
            );
        }
        // Offset deltas past one varint byte.
        let many: Vec<Record> = (0..300)
            .map(|i| Record::new(format!("{i}"), "x").with_timestamp(i))
            .collect();
        let expected: usize = HEADER_LEN
            + many
                .iter()
                .enumerate()
                .map(|(i, r)| record_size(r, r.timestamp, i as u32))
                .sum::<usize>();
        assert_eq!(
            RecordBatch::encode(9, &many).unwrap().as_bytes().len(),
            expected
        );
    }

    #[test]
    fn varint_sizes() {
        assert_eq!(varint_size(zigzag32(0)), 1);
        assert_eq!(varint_size(zigzag32(-1)), 1);
        assert_eq!(varint_size(zigzag32(63)), 1);
        assert_eq!(varint_size(zigzag32(64)), 2);
        assert_eq!(varint_size(zigzag32(i32::MAX)), 5);
        assert_eq!(varint_size(zigzag64(i64::MIN)), 10);
    }
}
