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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::partitioner::Sticky;
use super::sender::{Durable, Shared};
use crate::batch::HEADER_LEN;
use crate::error::{Error, Result};
use crate::record::Record;
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
    done: AtomicBool,
    /// The base offset of the batch, or why it failed.
    result: Mutex<Option<Result<u64>>>,
    cond: Condvar,
}

impl BatchCompletion {
    pub(crate) fn new(topic: Arc<str>, partition: u32) -> BatchCompletion {
        BatchCompletion {
            topic,
            partition,
            done: AtomicBool::new(false),
            result: Mutex::new(None),
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
        let mut slot = self.result.lock();
        if slot.is_none() {
            *slot = Some(result);
        }
        self.done.store(true, Ordering::Release);
        drop(slot);
        self.cond.notify_all();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub(crate) fn result(&self) -> Option<Result<u64>> {
        if !self.is_done() {
            return None;
        }
        self.result.lock().as_ref().map(copy_result)
    }

    /// Waits for the outcome until `deadline` (forever if `None`).
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> Option<Result<u64>> {
        let mut slot = self.result.lock();
        loop {
            if let Some(result) = slot.as_ref() {
                return Some(copy_result(result));
            }
            match deadline {
                None => self.cond.wait(&mut slot),
                Some(deadline) => {
                    if self.cond.wait_until(&mut slot, deadline).timed_out() {
                        return slot.as_ref().map(copy_result);
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

/// The part of `record`'s encoded body that does not depend on its place in a batch
/// (everything but the timestamp and offset deltas and the length prefix); computed once per
/// send.
pub(crate) fn record_fixed_size(record: &Record) -> usize {
    let mut body = 1 // attributes
        + nullable_size(record.key.as_deref())
        + nullable_size(record.value.as_deref())
        + len_size(record.headers.len());
    for h in &record.headers {
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
fn record_size(record: &Record, timestamp_delta: i64, offset_delta: u32) -> usize {
    placed_size(record_fixed_size(record), timestamp_delta, offset_delta)
}

// ---------------------------------------------------------------------------------- queue

struct OpenBatch {
    records: Vec<Record>,
    /// Encoded size of the batch so far, header included.
    size: usize,
    base_timestamp: i64,
    /// Bytes taken from the producer's buffer memory.
    reserved: usize,
    completion: Arc<BatchCompletion>,
}

struct SealedBatch {
    records: Vec<Record>,
    reserved: usize,
    completion: Arc<BatchCompletion>,
}

#[derive(Default)]
struct AccState {
    open: Option<OpenBatch>,
    sealed: VecDeque<SealedBatch>,
    appending: bool,
    sealed_count: u64,
    appended_count: u64,
    /// Threads waiting on `cond` (for the appender to finish, or for a flush).
    waiting: usize,
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
        record: Record,
        fixed: usize,
        alone: usize,
        cap: usize,
        mode: Mode,
    ) -> (Arc<BatchCompletion>, u32, bool) {
        let mut acc = self.acc.lock();
        let mut opened = false;
        let (completion, index, mut close) = loop {
            if let Some(open) = acc.open.as_mut() {
                let size = record
                    .timestamp
                    .checked_sub(open.base_timestamp)
                    .map(|delta| placed_size(fixed, delta, open.records.len() as u32));
                match size {
                    Some(size) if open.size + size <= cap => {
                        open.records.push(record);
                        open.size += size;
                        // Close now if a record like this one would not fit any more: a full
                        // batch should not wait for the linger time or the next send.
                        let full = open.size + size > cap;
                        break (
                            Arc::clone(&open.completion),
                            open.records.len() as u32 - 1,
                            full,
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
            let mut records = Vec::with_capacity((cap / per_record).clamp(1, 4096));
            let base_timestamp = record.timestamp;
            records.push(record);
            acc.open = Some(OpenBatch {
                records,
                size: alone,
                base_timestamp,
                reserved: reserve,
                completion: Arc::clone(&completion),
            });
            opened = true;
            let full = alone + per_record > cap;
            // When the producer is closing, nobody will wait out the linger time: append now.
            let lingering = full || shared.register_linger(self, &completion);
            break (completion, 0, full || !lingering);
        };
        if mode == Mode::Blocking {
            close = true;
        }
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
                records: open.records,
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
            MutexGuard::unlocked(&mut acc, || {
                if let Some(durable) = self.append(shared, batch) {
                    if own.is_some_and(|o| Arc::ptr_eq(o, &durable.completion)) {
                        own_durable = Some(durable);
                    } else {
                        shared.push_durable(durable);
                    }
                }
            });
            acc.appended_count += 1;
        }
        acc.appending = false;
        if acc.waiting > 0 {
            self.cond.notify_all();
        }
        (acc, own_durable)
    }

    /// Appends one batch (without waiting for an fsync) and completes it, or returns what must
    /// become durable before it completes.
    fn append(&self, shared: &Shared, batch: SealedBatch) -> Option<Durable> {
        let SealedBatch {
            records,
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
            self.log.append_deferred(&records)
        } else {
            Err(Error::UnknownTopic(self.topic.name.to_string()))
        };
        drop(records);
        shared.release(reserved);
        match result {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordBatch;
    use crate::record::Header;

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
                single_record_batch_size(record_fixed_size(r)),
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
