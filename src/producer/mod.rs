//! The `Producer`: Kafka's producer, in process. Records are partitioned, gathered into batches
//! per partition (one batch = one Kafka `RecordBatch` = one append), and acknowledged once the
//! topic's durability policy is met.
//!
//! Threads: the sending threads do most of the work themselves. A send adds its record to the
//! partition's open batch under that partition's lock (no allocation but the batch's own, no
//! syscall, no thread hop); the send that fills a batch appends it (Kafka's sender, run by the
//! caller). One background thread per producer appends batches whose linger time passed, and
//! completes batches of `Always`-durable topics after one `flush_until` per partition for all
//! of them (group commit), so `send_async` never waits for an fsync. A blocking `send` closes
//! its batch at once and fsyncs it itself, sharing the fsync with concurrent senders.
//!
//! Files: `accumulator.rs` (batches per partition, ordering), `sender.rs` (shared state,
//! background thread, durability), `partitioner.rs`, `config.rs`.

mod accumulator;
mod config;
mod partitioner;
mod sender;

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

pub use self::config::ProducerConfig;
pub use self::partitioner::{murmur2, partition_for_key, to_positive, Partitioner};

use self::accumulator::{
    record_fixed_size, single_record_batch_size, BatchCompletion, Mode, Pending,
};
use self::sender::{Shared, TopicEntry};
use crate::batch::HEADER_LEN;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::record::Header;

/// A record to send: topic, and optionally partition, key, value, timestamp and headers
/// (Kafka's `ProducerRecord`).
///
/// ```
/// use tidelog::ProducerRecord;
///
/// let order = ProducerRecord::new("orders", r#"{"qty":2}"#)
///     .key("customer-42")
///     .timestamp(1_700_000_000_000)
///     .header("trace-id", "abc123");
/// let delete = ProducerRecord::tombstone("orders", "customer-42");
/// let pinned = ProducerRecord::new("orders", "to partition 2").partition(2);
/// # let _ = (order, delete, pinned);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    topic: TopicName,
    partition: Option<u32>,
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp: Option<i64>,
    headers: Vec<Header>,
}

/// A record's topic name: the caller's string, or a name shared with the caller (Streams
/// sends every record of a sink with one `Arc<str>`, without a copy per record).
#[derive(Debug, Clone, Eq)]
enum TopicName {
    Named(Cow<'static, str>),
    Shared(Arc<str>),
}

impl std::ops::Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            TopicName::Named(name) => name,
            TopicName::Shared(name) => name,
        }
    }
}

impl PartialEq for TopicName {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl ProducerRecord {
    /// A record for a topic named by a shared string.
    pub(crate) fn to_shared_topic(topic: Arc<str>, value: Option<Bytes>) -> Self {
        ProducerRecord {
            topic: TopicName::Shared(topic),
            partition: None,
            key: None,
            value,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// A record for `topic` with a value, no key, stamped with the time of the send. A topic
    /// given as a `&'static str` or a `String` costs no copy.
    pub fn new(topic: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: TopicName::Named(topic.into()),
            partition: None,
            key: None,
            value: Some(value.into()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// A tombstone for `key`: no value. In a compacted topic it deletes the key.
    pub fn tombstone(topic: impl Into<Cow<'static, str>>, key: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: TopicName::Named(topic.into()),
            partition: None,
            key: Some(key.into()),
            value: None,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Sets the key. Records with the same key go to the same partition (unless a partition
    /// is given), the one Kafka's Java client would choose.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets or clears the value; `None` makes a tombstone.
    #[must_use]
    pub fn value(mut self, value: Option<Bytes>) -> Self {
        self.value = value;
        self
    }

    /// Sends to this partition, bypassing the partitioner. A partition the topic does not have
    /// fails the send with [`Error::UnknownPartition`].
    #[must_use]
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch (Kafka's `CreateTime`).
    /// Default: the time of the send.
    #[must_use]
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header (names may repeat; order is kept).
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Replaces the headers.
    #[must_use]
    pub fn headers(mut self, headers: Vec<Header>) -> Self {
        self.headers = headers;
        self
    }
}

/// Where a record was stored (Kafka's `RecordMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: u64,
    /// The record's timestamp (milliseconds since the Unix epoch).
    pub timestamp: i64,
}

/// The pending outcome of a [`Producer::send_async`]: wait for it, or poll it.
///
/// The record's batch is appended when it is full, when its linger time passes, or on
/// [`Producer::flush`]; the future is done after that append and, for a topic whose durability
/// is [`Always`](crate::Durability::Always), after the fsync. Errors of the record (for example
/// [`Error::RecordTooLarge`], [`Error::MissingKey`], [`Error::Io`]) come through it.
#[derive(Clone)]
pub struct SendFuture {
    batch: Arc<BatchCompletion>,
    index: u32,
    timestamp: i64,
}

impl std::fmt::Debug for SendFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("topic", &self.batch.topic)
            .field("partition", &self.batch.partition)
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl SendFuture {
    /// The partition the record goes to (known from the start).
    pub fn partition(&self) -> u32 {
        self.batch.partition
    }

    /// Whether the outcome is known.
    pub fn is_done(&self) -> bool {
        self.batch.is_done()
    }

    /// The outcome if known, without waiting.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.batch.result().map(|r| self.metadata(r))
    }

    /// Waits for the outcome.
    pub fn wait(&self) -> Result<RecordMetadata> {
        match self.batch.wait_until(None) {
            Some(r) => self.metadata(r),
            None => Err(Error::Failed("send completed without an outcome".into())),
        }
    }

    /// Waits at most `timeout` for the outcome; `None` if it is not known by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<RecordMetadata>> {
        let deadline = Instant::now().checked_add(timeout);
        self.batch.wait_until(deadline).map(|r| self.metadata(r))
    }

    fn metadata(&self, base: Result<u64>) -> Result<RecordMetadata> {
        base.map(|base| RecordMetadata {
            topic: Arc::clone(&self.batch.topic),
            partition: self.batch.partition,
            offset: base + u64::from(self.index),
            timestamp: self.timestamp,
        })
    }
}

/// What [`Producer::send_all`] sends next.
enum Next {
    Record(ProducerRecord),
    /// Prepared for the topic of the current entry.
    Prepared(Ready),
    /// A record that failed its checks.
    Failed(SendFuture),
    /// A record whose topic or partition is unknown.
    Error(Arc<str>, u32, Error),
}

/// The pending outcomes of a [`Producer::send_all`], one per record, in the order sent.
///
/// Records are grouped by the batch they went into: the future holds one shared outcome per
/// batch (not per record) and computes each record's offset from its batch's.
#[derive(Clone, Default)]
pub struct SendAllFuture {
    /// Runs of records that went into one batch at consecutive indexes: (first record, batch,
    /// index of that record in the batch).
    runs: Vec<(usize, Arc<BatchCompletion>, u32)>,
    /// Every record's timestamp.
    timestamps: Vec<i64>,
}

impl std::fmt::Debug for SendAllFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendAllFuture")
            .field("records", &self.len())
            .field("batches", &self.runs.len())
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl SendAllFuture {
    fn with_capacity(records: usize) -> SendAllFuture {
        SendAllFuture {
            runs: Vec::new(),
            timestamps: Vec::with_capacity(records),
        }
    }

    /// Records the next record's place: `index` in `batch`.
    fn push(&mut self, batch: &Arc<BatchCompletion>, index: u32, timestamp: i64) {
        let record = self.timestamps.len();
        let continues = self.runs.last().is_some_and(|(first, last, at)| {
            Arc::ptr_eq(last, batch) && u64::from(*at) + (record - first) as u64 == u64::from(index)
        });
        if !continues {
            self.runs.push((record, Arc::clone(batch), index));
        }
        self.timestamps.push(timestamp);
    }

    /// Records the next record as failed before it reached a batch.
    fn push_failed(&mut self, topic: Arc<str>, partition: u32, error: Error) {
        let failed = Arc::new(BatchCompletion::failed(topic, partition, error));
        self.push(&failed, 0, 0);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether no record was sent.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Whether every record's outcome is known.
    pub fn is_done(&self) -> bool {
        self.runs.iter().all(|(_, batch, _)| batch.is_done())
    }

    /// `Some(Ok(()))` if every record is stored, `Some(Err(first error))` once one is known to
    /// have failed, `None` while outcomes are pending and none failed yet.
    pub fn try_result(&self) -> Option<Result<()>> {
        let mut pending = false;
        for (_, batch, _) in &self.runs {
            match batch.result() {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(_)) => {}
                None => pending = true,
            }
        }
        (!pending).then_some(Ok(()))
    }

    /// Waits for every outcome; `Ok` if every record is stored, else the first error (in the
    /// order the records were sent).
    pub fn wait(&self) -> Result<()> {
        for (_, batch, _) in &self.runs {
            match batch.wait_until(None) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Failed("send completed without an outcome".into())),
            }
        }
        Ok(())
    }

    /// Waits at most `timeout` for every outcome ([`wait`](Self::wait)); `None` if some are
    /// not known by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<()>> {
        let deadline = Instant::now().checked_add(timeout);
        for (_, batch, _) in &self.runs {
            match batch.wait_until(deadline)? {
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(()))
    }

    /// Waits for every outcome and returns each record's, in the order sent.
    pub fn metadata(&self) -> Vec<Result<RecordMetadata>> {
        let mut out = Vec::with_capacity(self.len());
        for (run, (first, batch, at)) in self.runs.iter().enumerate() {
            let end = self.runs.get(run + 1).map_or(self.len(), |next| next.0);
            batch.wait_until(None);
            for record in *first..end {
                let index = *at + (record - first) as u32;
                let outcome = batch.result().unwrap_or_else(|| {
                    Err(Error::Failed("send completed without an outcome".into()))
                });
                out.push(outcome.map(|base| RecordMetadata {
                    topic: Arc::clone(&batch.topic),
                    partition: batch.partition,
                    offset: base + u64::from(index),
                    timestamp: self.timestamps[record],
                }));
            }
        }
        out
    }

    /// The future of record `i` alone, as [`Producer::send_async`] would have returned it.
    pub fn get(&self, i: usize) -> Option<SendFuture> {
        let timestamp = *self.timestamps.get(i)?;
        let run = self.runs.partition_point(|(first, _, _)| *first <= i) - 1;
        let (first, batch, at) = &self.runs[run];
        Some(SendFuture {
            batch: Arc::clone(batch),
            index: *at + (i - first) as u32,
            timestamp,
        })
    }
}

/// Publishes records to the topics of a [`Broker`] (Kafka's `KafkaProducer`).
///
/// `Send + Sync`, cheap to clone: clones share batches and the background thread, so one
/// producer serves every thread of an application (as Kafka recommends). The last clone to be
/// dropped flushes what is pending and stops the background thread. A producer keeps its
/// broker's directory open.
///
/// ```
/// use tidelog::{Broker, Durability, LogConfig, Producer, ProducerConfig, ProducerRecord};
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path())?;
/// broker.create_topic("orders", 3)?;
/// let producer = Producer::new(&broker, ProducerConfig::default())?;
///
/// // Blocking: returns once the record is appended and (the default durability) fsynced.
/// let meta = producer.send(ProducerRecord::new("orders", "book").key("customer-42"))?;
/// assert_eq!(meta.offset, 0);
///
/// // Non-blocking: many sends share one batch, one append and one fsync.
/// let futures: Vec<_> = (0..100)
///     .map(|i| producer.send_async(ProducerRecord::new("orders", format!("item {i}")).key("customer-42")))
///     .collect::<Result<_, _>>()?;
/// producer.flush()?;
/// assert_eq!(futures[99].try_result().unwrap()?.offset, 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close(&self.threads);
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.handle.shared.config)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer for `broker`'s topics.
    ///
    /// Errors: [`Error::InvalidConfig`]; [`Error::Io`] if its thread cannot be started.
    pub fn new(broker: &Broker, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let shared = Arc::new(Shared::new(broker.clone(), config));
        let threads = sender::spawn(&shared)?;
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// A producer with [`ProducerConfig::default`].
    pub fn with_defaults(broker: &Broker) -> Result<Producer> {
        Producer::new(broker, ProducerConfig::default())
    }

    /// Sends a record and waits until it is appended and, if the topic's durability is
    /// [`Always`](crate::Durability::Always), fsynced. The record's batch is closed at once
    /// (no linger); records other threads send meanwhile share its append and fsync.
    ///
    /// Errors: [`Error::UnknownTopic`] (also after the topic was deleted),
    /// [`Error::UnknownPartition`], [`Error::RecordTooLarge`], [`Error::MissingKey`] (keyless
    /// record to a compacted topic), [`Error::Closed`] after [`close`](Self::close), and what
    /// appending can return ([`Error::Io`], [`Error::Failed`]).
    pub fn send(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send_with(record, Mode::Blocking)?.wait()
    }

    /// Adds a record to its partition's batch and returns at once (unless the producer's
    /// buffer memory is full: then it blocks until appends free some).
    ///
    /// Errors returned here are about the call: [`Error::UnknownTopic`],
    /// [`Error::UnknownPartition`], [`Error::Closed`]. Errors of the record and of its append
    /// come through the [`SendFuture`].
    pub fn send_async(&self, record: ProducerRecord) -> Result<SendFuture> {
        self.send_with(record, Mode::Async)
    }

    /// Appends every batch now, and waits until every record sent before the call is appended
    /// and, where the topic asks for it, fsynced (Kafka's `flush`): every [`SendFuture`]
    /// obtained before is then done. Errors of records come through their futures.
    pub fn flush(&self) -> Result<()> {
        self.handle.shared.flush();
        Ok(())
    }

    /// Flushes and stops the background thread. Sends on any clone fail with
    /// [`Error::Closed`] from then on. Dropping the last clone does the same.
    pub fn close(&self) -> Result<()> {
        self.handle.shared.close(&self.handle.threads);
        Ok(())
    }

    /// Its configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Sends `records` as [`send_async`](Self::send_async) would, one after the other, but in
    /// one call: the topic, its settings and a partition's lock are looked up once per run of
    /// records that go to the same partition, and the outcomes are kept per batch rather than
    /// per record. For an application that has many records at hand (a batch from a file or a
    /// database, the output of a stream task's poll) this costs about two thirds of a
    /// `send_async` per record (`examples/perf.rs --send-all`). Records are taken from the
    /// iterator about one batch at a time and never while the producer holds a lock, so the
    /// iterator may block or send itself. Keyless records go where the sticky partitioner says
    /// when their run starts, and stay there for about a batch, as with `send_async`.
    ///
    /// Every record gets an outcome in the returned [`SendAllFuture`], in order: errors of a
    /// record ([`Error::UnknownTopic`], [`Error::UnknownPartition`], [`Error::RecordTooLarge`],
    /// [`Error::MissingKey`], an append's [`Error::Io`]) are its own and do not stop the
    /// others. The call itself fails only with [`Error::Closed`], before sending anything.
    ///
    /// ```
    /// use tidelog::{Broker, ProducerRecord};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::open(dir.path())?;
    /// broker.create_topic("lines", 2)?;
    /// let producer = broker.producer()?;
    /// let sent = producer.send_all((0..1000).map(|i| {
    ///     ProducerRecord::new("lines", format!("line {i}")).key(format!("file-{}", i % 10))
    /// }))?;
    /// producer.flush()?;
    /// sent.wait()?; // every record stored, or the first error
    /// let stored = sent.metadata();
    /// assert_eq!(stored.len(), 1000);
    /// assert!(stored.iter().all(|r| r.is_ok()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_all<I>(&self, records: I) -> Result<SendAllFuture>
    where
        I: IntoIterator<Item = ProducerRecord>,
    {
        let shared = &*self.handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut records = records.into_iter();
        let mut out = SendAllFuture::with_capacity(records.size_hint().0);
        // What to send next: a record, or one met (and prepared) while looking for the end of
        // a run, which belongs to the topic of `entry`.
        let mut next = records.next().map(Next::Record);
        let mut entry: Option<Arc<TopicEntry>> = None;
        let mut run = Vec::new();
        while let Some(item) = next.take() {
            let ready = match item {
                Next::Prepared(ready) => ready,
                Next::Failed(failed) => {
                    out.push(&failed.batch, failed.index, failed.timestamp);
                    next = records.next().map(Next::Record);
                    continue;
                }
                Next::Error(topic, partition, e) => {
                    out.push_failed(topic, partition, e);
                    next = records.next().map(Next::Record);
                    continue;
                }
                Next::Record(record) => {
                    let fits = |e: &TopicEntry| {
                        record
                            .partition
                            .is_none_or(|p| (p as usize) < e.queues.len())
                    };
                    let current = match &entry {
                        Some(e) if *e.topic.name == *record.topic && e.is_current() && fits(e) => e,
                        _ => match self.entry(&record.topic, record.partition) {
                            Ok(found) => entry.insert(found),
                            Err(e) => {
                                let topic = Arc::from(&*record.topic);
                                out.push_failed(topic, record.partition.unwrap_or(0), e);
                                next = records.next().map(Next::Record);
                                continue;
                            }
                        },
                    };
                    let partition = record.partition.unwrap_or(0);
                    next = Some(
                        match prepare(shared, &TopicView::new(shared, current), record) {
                            Ok(Ok(ready)) => Next::Prepared(ready),
                            Ok(Err(failed)) => Next::Failed(failed),
                            Err(e) => Next::Error(Arc::clone(&current.topic.name), partition, e),
                        },
                    );
                    continue;
                }
            };
            let Some(current) = entry.as_deref() else {
                continue; // a prepared record always comes with its topic's entry
            };
            // A run: this record and the following ones for the same partition, about one
            // batch of them, gathered first (the caller's iterator is user code: it never runs
            // under a partition's lock), then pushed under one lock.
            let view = TopicView::new(shared, current);
            let queue = Arc::clone(&current.queues[ready.partition as usize]);
            let (partition, cap) = (ready.partition, view.cap);
            // A custom partitioner is user code too: with one, every record is a run of its own.
            let custom_partitioner = shared.config.partitioner.is_some();
            let mut bytes = ready.alone;
            let mut exhausted = false;
            run.push((ready.pending, ready.alone));
            while !custom_partitioner && bytes < cap {
                let Some(record) = records.next() else {
                    exhausted = true;
                    break;
                };
                // Another topic, a partition this entry has no queue for (the topic may have
                // grown), or a topic changed meanwhile (the iterator is the caller's code, and
                // may even delete the topic): the record starts a run of its own, after a lookup.
                let beyond = record
                    .partition
                    .is_some_and(|p| p as usize >= current.queues.len());
                if *record.topic != *current.topic.name || beyond || !current.is_current() {
                    next = Some(Next::Record(record));
                    break;
                }
                let asked = record.partition.unwrap_or(0);
                match prepare(shared, &view, record) {
                    Ok(Ok(ready)) if ready.partition == partition => {
                        bytes += ready.alone - HEADER_LEN;
                        run.push((ready.pending, ready.alone));
                        continue;
                    }
                    Ok(Ok(ready)) => next = Some(Next::Prepared(ready)),
                    Ok(Err(failed)) => next = Some(Next::Failed(failed)),
                    Err(e) => next = Some(Next::Error(Arc::clone(&current.topic.name), asked, e)),
                }
                break;
            }
            let opened = queue.push_all(shared, &mut run, cap, &mut |batch, index, timestamp| {
                out.push(batch, index, timestamp);
            });
            if next.is_none() && !exhausted {
                next = records.next().map(Next::Record);
            }
            if (opened && current.grew()) || !current.is_current() {
                if let Some(newer) = self.newer_entry(current) {
                    entry = Some(newer);
                }
            }
        }
        Ok(out)
    }

    fn send_with(&self, record: ProducerRecord, mode: Mode) -> Result<SendFuture> {
        let shared = &*self.handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut resolved = false;
        loop {
            {
                let topics = shared.topics.load();
                if let Some(entry) = topics.get(&*record.topic) {
                    // After a lookup, an entry is used as it is: a partition it does not have
                    // is then unknown (prepare says so).
                    let fits = record
                        .partition
                        .is_none_or(|p| (p as usize) < entry.queues.len());
                    if resolved || (entry.is_current() && fits) {
                        return send_to(shared, entry, record, mode);
                    }
                }
                if resolved {
                    return Err(Error::UnknownTopic(record.topic.to_string()));
                }
            }
            shared.resolve(&record.topic)?;
            resolved = true;
        }
    }

    /// A newer entry of `current`'s topic (Kafka's metadata refresh), but only of the same
    /// topic: [`send_all`](Self::send_all) may hold a record prepared for `current`'s
    /// partitions. If the topic is gone (or was created again), the next record's lookup says so.
    fn newer_entry(&self, current: &TopicEntry) -> Option<Arc<TopicEntry>> {
        self.entry(&current.topic.name, None)
            .ok()
            .filter(|found| Arc::ptr_eq(&found.topic.state, &current.topic.state))
    }

    /// The producer's entry of topic `name`, looked up again (and the topic resolved) if it is
    /// missing, not current, or has no queue for `partition`.
    fn entry(&self, name: &str, partition: Option<u32>) -> Result<Arc<TopicEntry>> {
        let shared = &*self.handle.shared;
        if let Some(entry) = shared.topics.load().get(name) {
            let fits = partition.is_none_or(|p| (p as usize) < entry.queues.len());
            if entry.is_current() && fits {
                return Ok(Arc::clone(entry));
            }
        }
        shared.resolve(name)?;
        shared
            .topics
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }
}

impl Broker {
    /// A [`Producer`] for this broker's topics, with the default configuration.
    pub fn producer(&self) -> Result<Producer> {
        Producer::with_defaults(self)
    }
}

fn send_to(
    shared: &Shared,
    entry: &TopicEntry,
    record: ProducerRecord,
    mode: Mode,
) -> Result<SendFuture> {
    let view = TopicView::new(shared, entry);
    let ready = match prepare(shared, &view, record)? {
        Ok(ready) => ready,
        Err(failed) => return Ok(failed),
    };
    let queue = &entry.queues[ready.partition as usize];
    let (batch, index, opened) = queue.push(shared, &ready.pending, ready.alone, view.cap, mode);
    let timestamp = ready.pending.timestamp;
    drop(ready);
    if opened && entry.grew() {
        // Best effort: the next send uses the new entry; a failure (the topic was deleted
        // meanwhile) is that send's to report.
        let _ = shared.resolve(&entry.topic.name);
    }
    Ok(SendFuture {
        batch,
        index,
        timestamp,
    })
}

/// What a send needs to know of a topic (all read from its immutable entry).
struct TopicView<'a> {
    entry: &'a TopicEntry,
    /// The size at which a batch is closed.
    cap: usize,
}

impl<'a> TopicView<'a> {
    fn new(shared: &Shared, entry: &'a TopicEntry) -> TopicView<'a> {
        TopicView {
            entry,
            cap: shared.config.batch_size.min(entry.max_message_bytes),
        }
    }
}

/// A record checked and given its partition, ready for its partition's queue.
struct Ready {
    partition: u32,
    pending: Pending,
    /// The size of a batch of only this record.
    alone: usize,
}

/// Picks the record's partition and checks it. `Err` is an error of the call (unknown
/// partition); `Ok(Err)` a record that fails (too large, no key for a compacted topic), as a
/// failed future.
fn prepare(
    shared: &Shared,
    view: &TopicView<'_>,
    record: ProducerRecord,
) -> Result<std::result::Result<Ready, SendFuture>> {
    let ProducerRecord {
        topic: _,
        partition,
        key,
        value,
        timestamp,
        headers,
    } = record;
    let entry = view.entry;
    let count = entry.queues.len() as u32;
    let unknown = |partition| Error::UnknownPartition {
        topic: entry.topic.name.to_string(),
        partition,
    };
    let partition = match partition {
        Some(p) if p < count => p,
        Some(p) => return Err(unknown(p)),
        None => match &shared.config.partitioner {
            Some(custom) => {
                let p =
                    custom.partition(&entry.topic.name, key.as_deref(), value.as_deref(), count);
                if p >= count {
                    return Err(unknown(p));
                }
                p
            }
            None => match &key {
                Some(key) => partition_for_key(key, count),
                None => entry.topic.sticky.partition(count),
            },
        },
    };
    let timestamp = timestamp.unwrap_or_else(crate::storage::coarse_now_ms);
    let fail = |error| {
        Ok(Err(SendFuture {
            batch: Arc::new(BatchCompletion::failed(
                Arc::clone(&entry.topic.name),
                partition,
                error,
            )),
            index: 0,
            timestamp,
        }))
    };
    if entry.compacts && key.is_none() {
        return fail(Error::MissingKey);
    }
    let fixed = record_fixed_size(key.as_deref(), value.as_deref(), &headers);
    let alone = single_record_batch_size(fixed);
    let max = entry.max_message_bytes;
    if alone > max {
        return fail(Error::RecordTooLarge { size: alone, max });
    }
    if alone > shared.config.buffer_memory {
        return fail(Error::RecordTooLarge {
            size: alone,
            max: shared.config.buffer_memory,
        });
    }
    Ok(Ok(Ready {
        partition,
        pending: Pending {
            key,
            value,
            timestamp,
            headers,
            fixed,
        },
        alone,
    }))
}

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Producer>();
    is::<SendFuture>();
    is::<ProducerRecord>();
    is::<ProducerConfig>();
}
