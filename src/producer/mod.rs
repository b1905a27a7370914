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

    /// Whether `other` is a record of the same batch (they share one outcome).
    pub(crate) fn same_batch(&self, other: &SendFuture) -> bool {
        Arc::ptr_eq(&self.batch, &other.batch)
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

    fn send_with(&self, record: ProducerRecord, mode: Mode) -> Result<SendFuture> {
        let shared = &*self.handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        {
            let topics = shared.topics.load();
            if let Some(entry) = topics.get(&*record.topic) {
                if entry.topic.is_live() {
                    return send_to(shared, entry, record, mode);
                }
            }
        }
        shared.resolve(&record.topic)?;
        let topics = shared.topics.load();
        let entry = topics
            .get(&*record.topic)
            .ok_or_else(|| Error::UnknownTopic(record.topic.to_string()))?;
        send_to(shared, entry, record, mode)
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
    let ProducerRecord {
        topic: _,
        partition,
        key,
        value,
        timestamp,
        headers,
    } = record;
    let mut queues = entry.queues.load();
    let count = queues.len() as u32;
    let unknown = |partition| Error::UnknownPartition {
        topic: entry.topic.name.to_string(),
        partition,
    };
    let partition = match partition {
        Some(p) if p < count => p,
        Some(p) => {
            // The topic may have grown since this producer looked.
            entry.refresh();
            queues = entry.queues.load();
            if p as usize >= queues.len() {
                return Err(unknown(p));
            }
            p
        }
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
    let queue = queues
        .get(partition as usize)
        .ok_or_else(|| unknown(partition))?;
    let timestamp = timestamp.unwrap_or_else(crate::storage::coarse_now_ms);
    let fail = |error| SendFuture {
        batch: Arc::new(BatchCompletion::failed(
            Arc::clone(&entry.topic.name),
            partition,
            error,
        )),
        index: 0,
        timestamp,
    };
    let (max, compacts) = {
        let config = entry.topic.state.config.load();
        (config.max_message_bytes, config.cleanup_policy.compacts())
    };
    if compacts && key.is_none() {
        return Ok(fail(Error::MissingKey));
    }
    let fixed = record_fixed_size(key.as_deref(), value.as_deref(), &headers);
    let alone = single_record_batch_size(fixed);
    if alone > max {
        return Ok(fail(Error::RecordTooLarge { size: alone, max }));
    }
    if alone > shared.config.buffer_memory {
        return Ok(fail(Error::RecordTooLarge {
            size: alone,
            max: shared.config.buffer_memory,
        }));
    }
    let cap = shared.config.batch_size.min(max);
    let record = Pending {
        key,
        value,
        timestamp,
        headers,
        fixed,
    };
    let (batch, index, opened) = queue.push(shared, &record, alone, cap, mode);
    drop(record);
    if opened && entry.grew() {
        entry.refresh();
    }
    Ok(SendFuture {
        batch,
        index,
        timestamp,
    })
}

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Producer>();
    is::<SendFuture>();
    is::<ProducerRecord>();
    is::<ProducerConfig>();
}
