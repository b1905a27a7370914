//! The low-level Processor API: a processor of your own in a topology, with state stores and
//! punctuation (Kafka's `org.apache.kafka.streams.processor.api`).
//!
//! Add one with [`KStream::process`](crate::KStream::process): give a factory that makes a
//! [`Processor`] per task and the names of the stores it uses (added with
//! [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)). The processor
//! gets each record with a [`ProcessorContext`] through which it forwards records downstream,
//! reads and writes its stores, and, in [`init`](Processor::init), schedules punctuations on
//! stream time (advanced by record timestamps) or on wall-clock time.
//!
//! ```
//! use std::time::Duration;
//! use tidelog::{
//!     KeyValueStore, LongCodec, Processor, ProcessorContext, PunctuationType, StoreBuilder,
//!     StreamRecord, StreamsBuilder, StringCodec, TopologyTestDriver, Consumed, Produced,
//! };
//!
//! /// Counts records per key and emits all counts every 10 s of stream time.
//! struct Counter { store: Option<KeyValueStore<String, i64>> }
//!
//! impl Processor<String, String, String, i64> for Counter {
//!     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> tidelog::Result<()> {
//!         self.store = Some(ctx.key_value_store("counts")?);
//!         ctx.schedule(Duration::from_secs(10), PunctuationType::StreamTime)?;
//!         Ok(())
//!     }
//!     fn process(&mut self, _ctx: &mut ProcessorContext<'_, String, i64>, record: StreamRecord<String, String>) -> tidelog::Result<()> {
//!         let store = self.store.as_ref().expect("set in init");
//!         let count = store.get(&record.key)?.unwrap_or(0) + 1;
//!         store.put(&record.key, &count)
//!     }
//!     fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, _kind: PunctuationType, timestamp: i64) -> tidelog::Result<()> {
//!         for (word, count) in self.store.as_ref().expect("set in init").all()? {
//!             ctx.forward(StreamRecord::new(word, count, timestamp))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let builder = StreamsBuilder::new();
//! builder.add_state_store(StoreBuilder::key_value("counts", StringCodec, LongCodec));
//! builder
//!     .stream("words", Consumed::with(StringCodec, StringCodec))
//!     .process(|| Counter { store: None }, &["counts"])
//!     .to("counts-out", Produced::with(StringCodec, LongCodec));
//! let driver = TopologyTestDriver::new(builder.build()?)?;
//! let input = driver.input_topic("words", StringCodec, StringCodec);
//! let out = driver.output_topic("counts-out", StringCodec, LongCodec);
//! // Stream-time punctuation fires with the first record, then every 10 s of stream time.
//! input.pipe_input_at("tea".to_string(), "x".to_string(), 1_000)?;
//! input.pipe_input_at("tea".to_string(), "x".to_string(), 5_000)?;
//! input.pipe_input_at("tea".to_string(), "x".to_string(), 12_000)?;
//! assert_eq!(out.read_key_values()?, vec![("tea".to_string(), 1), ("tea".to_string(), 3)]);
//! # Ok::<(), tidelog::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::record::Header;
use crate::streams::context::{RecordMetadata, TaskContext, TaskId};
use crate::streams::node::{Data, Downstream};
use crate::streams::store::KeyValueStore;

/// A record inside a topology: typed key and value, its timestamp (event time, milliseconds
/// since the Unix epoch) and headers. Kafka Streams' `Record`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers, carried from the input record unless an operator replaces them.
    pub headers: Vec<Header>,
}

impl<K, V> StreamRecord<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        StreamRecord {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        }
    }

    /// The same record with another key and value, keeping timestamp and headers.
    pub fn with<K2, V2>(self, key: K2, value: V2) -> StreamRecord<K2, V2> {
        StreamRecord {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> StreamRecord<K, V2> {
        StreamRecord {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}

/// What drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Stream time: the largest record timestamp the task has processed. Fires first with the
    /// first record after scheduling, then whenever records move stream time to or past the
    /// next point `first + k × interval` (at most once per record, however far it jumps), as
    /// Kafka's stream-time punctuation does; never while no records arrive.
    StreamTime,
    /// Wall-clock time: fires every interval while the application runs (in the test driver,
    /// when its clock is advanced).
    WallClockTime,
}

/// Cancels a scheduled punctuation.
#[derive(Debug, Clone)]
pub struct Cancellable {
    cancelled: Arc<AtomicBool>,
}

impl Cancellable {
    /// Stops the punctuation; it does not fire again.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

/// A punctuation asked for in `init`.
pub(crate) struct Schedule {
    pub(crate) interval_ms: i64,
    pub(crate) kind: PunctuationType,
    pub(crate) cancelled: Arc<AtomicBool>,
}

impl Schedule {
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// A processor of your own (Kafka's `Processor<KIn, VIn, KOut, VOut>`). One instance per task,
/// made by the factory given to [`KStream::process`](crate::KStream::process); it is used by
/// one thread at a time.
pub trait Processor<KIn, VIn, KOut, VOut>: Send {
    /// Called once before the first record: fetch stores, schedule punctuations.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record; forward results with [`ProcessorContext::forward`]. An error stops
    /// the application (the record is not committed, so it is processed again after a restart).
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        record: StreamRecord<KIn, VIn>,
    ) -> Result<()>;

    /// A scheduled punctuation fired at `timestamp` (stream time or wall-clock time, by `kind`).
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        kind: PunctuationType,
        timestamp: i64,
    ) -> Result<()> {
        let _ = (ctx, kind, timestamp);
        Ok(())
    }
}

/// A processor's view of its task (Kafka's `ProcessorContext`).
pub struct ProcessorContext<'a, KOut, VOut> {
    pub(crate) task: &'a mut TaskContext,
    /// `None` during `init`: nothing can be forwarded before the first record.
    pub(crate) downstream: Option<&'a mut Downstream<KOut, VOut>>,
    /// `Some` during `init` only: where `schedule` records its requests.
    pub(crate) schedules: Option<&'a mut Vec<Schedule>>,
}

impl<KOut: Data, VOut: Data> ProcessorContext<'_, KOut, VOut> {
    /// Sends a record to every child of this processor.
    pub fn forward(&mut self, record: StreamRecord<KOut, VOut>) -> Result<()> {
        match self.downstream.as_deref_mut() {
            Some(downstream) => downstream.forward(self.task, record),
            None => Err(Error::InvalidArgument(
                "a processor cannot forward records from init".into(),
            )),
        }
    }

    /// Asks for a punctuation every `interval`; only from [`Processor::init`].
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<Cancellable> {
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval_ms < 1 {
            return Err(Error::InvalidArgument(
                "a punctuation interval must be at least 1 ms".into(),
            ));
        }
        let schedules = self.schedules.as_deref_mut().ok_or_else(|| {
            Error::InvalidArgument("punctuations are scheduled in Processor::init".into())
        })?;
        let cancelled = Arc::new(AtomicBool::new(false));
        schedules.push(Schedule {
            interval_ms,
            kind,
            cancelled: Arc::clone(&cancelled),
        });
        Ok(Cancellable { cancelled })
    }

    /// The key-value store `name`, connected to this processor when it was added.
    pub fn key_value_store<K: Data, V: Data>(&self, name: &str) -> Result<KeyValueStore<K, V>> {
        self.task.store(name).map(KeyValueStore::from_inner)
    }

    /// The task this processor instance belongs to.
    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// Topic, partition and offset of the record being processed; `None` in a punctuation.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.record.as_ref()
    }

    /// The task's stream time: the largest record timestamp processed so far.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// Wall-clock time in milliseconds since the Unix epoch (the test driver's own clock
    /// under test).
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock
    }

    /// Asks for a commit soon (after the current record), instead of at the next interval.
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }
}
