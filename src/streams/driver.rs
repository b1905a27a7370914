//! `TopologyTestDriver`: runs a topology on one thread, without a broker, deterministically.
//!
//! Each sub-topology gets one task (partition 0). Piping a record into an input topic
//! processes it at once, with everything it causes: records written to a topic that the
//! topology reads (a repartition topic, or a user topic read back) are processed too, in the
//! order they were written, before the pipe call returns. Every record written to any topic
//! (output, repartition, changelog) is kept for reading with a [`TestOutputTopic`]. Time is the
//! driver's: record timestamps drive stream time, and
//! [`advance_wall_clock_time`](TopologyTestDriver::advance_wall_clock_time) drives wall-clock
//! punctuations.

// The pipe methods take keys and values by value, as Kafka's `pipeInput` does: tests pass
// literals and owned values, and a borrow would only add `&` at every call.
#![allow(clippy::needless_pass_by_value)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::record::Header;
use crate::streams::codec::{codec_ref, Codec, CodecRef};
use crate::streams::config::StreamsConfig;
use crate::streams::context::{OutRecord, TaskId, TaskMetrics};
use crate::streams::node::Data;
use crate::streams::store::kv::KvStore;
use crate::streams::store::KeyValueStore;
use crate::streams::task::Task;
use crate::streams::topology::{RawRecord, Topology};

struct DriverState {
    tasks: Vec<Task>,
    outputs: HashMap<String, VecDeque<OutRecord>>,
    /// Next offset per topic, for record metadata.
    offsets: HashMap<String, u64>,
    wall_clock: i64,
}

/// Tests a topology without threads or a broker (Kafka's `TopologyTestDriver`); see the
/// module docs of [`StreamsBuilder`](crate::StreamsBuilder) for an example.
pub struct TopologyTestDriver {
    state: Rc<RefCell<DriverState>>,
}

impl TopologyTestDriver {
    /// A driver with application id `topology-test-driver`, wall clock at 0.
    pub fn new(topology: Topology) -> Result<Self> {
        Self::with_config(topology, &StreamsConfig::new("topology-test-driver"), 0)
    }

    /// A driver with `config`'s application id and decoding policy, wall clock starting at
    /// `wall_clock_ms` (milliseconds since the Unix epoch).
    pub fn with_config(
        topology: Topology,
        config: &StreamsConfig,
        wall_clock_ms: i64,
    ) -> Result<Self> {
        config.validate()?;
        let application_id: Arc<str> = Arc::from(config.application_id.as_str());
        let tasks = (0..topology.inner.subtopologies.len() as u32)
            .map(|subtopology| {
                Task::new(
                    &topology.inner,
                    TaskId {
                        subtopology,
                        partition: 0,
                    },
                    &application_id,
                    wall_clock_ms,
                    config,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TopologyTestDriver {
            state: Rc::new(RefCell::new(DriverState {
                tasks,
                outputs: HashMap::new(),
                offsets: HashMap::new(),
                wall_clock: wall_clock_ms,
            })),
        })
    }

    /// A handle to pipe records into `topic`, encoding them with these codecs.
    pub fn input_topic<K, V>(
        &self,
        topic: &str,
        keys: impl Codec<K> + 'static,
        values: impl Codec<V> + 'static,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            state: Rc::clone(&self.state),
            topic: topic.to_owned(),
            keys: codec_ref(keys),
            values: codec_ref(values),
            clock: Cell::new(None),
        }
    }

    /// A handle to read what the topology wrote to `topic`, decoding with these codecs.
    pub fn output_topic<K, V>(
        &self,
        topic: &str,
        keys: impl Codec<K> + 'static,
        values: impl Codec<V> + 'static,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            state: Rc::clone(&self.state),
            topic: topic.to_owned(),
            keys: codec_ref(keys),
            values: codec_ref(values),
        }
    }

    /// Moves the wall clock forward and fires the wall-clock punctuations that come due.
    pub fn advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        state.wall_clock = state.wall_clock.saturating_add(by);
        let now = state.wall_clock;
        for i in 0..state.tasks.len() {
            state.tasks[i].punctuate_wall_clock(now)?;
        }
        state.drain()
    }

    /// The driver's wall-clock time.
    pub fn wall_clock_time(&self) -> i64 {
        self.state.borrow().wall_clock
    }

    /// The key-value store `name` (of whichever sub-topology has it).
    pub fn key_value_store<K: Data, V: Data>(&self, name: &str) -> Result<KeyValueStore<K, V>> {
        self.with_task_store(name, |ctx| {
            ctx.store::<KvStore<K, V>>(name)
                .map(KeyValueStore::from_inner)
        })
    }

    /// Counters summed over the driver's tasks (late records dropped, ...).
    pub fn metrics(&self) -> TaskMetrics {
        let mut total = TaskMetrics::default();
        for task in &self.state.borrow().tasks {
            total += task.metrics();
        }
        total
    }

    /// The state of one store as a task holds it, for other store kinds' test access.
    pub(crate) fn with_task_store<T>(
        &self,
        name: &str,
        f: impl FnOnce(&crate::streams::context::TaskContext) -> Result<T>,
    ) -> Result<T> {
        let state = self.state.borrow();
        for task in &state.tasks {
            if task.ctx.stores.contains_key(name) {
                return f(&task.ctx);
            }
        }
        Err(Error::InvalidArgument(format!(
            "the topology has no state store `{name}`"
        )))
    }
}

impl DriverState {
    /// Processes `first` and everything it causes.
    fn pipe(&mut self, topic: &str, first: RawRecord) -> Result<()> {
        if !self.tasks.iter().any(|t| t.reads(topic)) {
            return Err(Error::InvalidArgument(format!(
                "topic `{topic}` is not read by the topology"
            )));
        }
        let mut queue = VecDeque::from([(Arc::<str>::from(topic), first)]);
        while let Some((topic, record)) = queue.pop_front() {
            let offset = self.offsets.entry(topic.to_string()).or_insert(0);
            let this = *offset;
            *offset += 1;
            if let Some(task) = self.tasks.iter_mut().find(|t| t.reads(&topic)) {
                task.process(&topic, 0, this, record)?;
            }
            self.collect(&mut queue)?;
        }
        Ok(())
    }

    /// Flushes stores, moves outboxes to the outputs, queues records for topics read back.
    fn collect(&mut self, queue: &mut VecDeque<(Arc<str>, RawRecord)>) -> Result<()> {
        for i in 0..self.tasks.len() {
            self.tasks[i].flush_stores()?;
            for out in self.tasks[i].take_outbox() {
                if self.tasks.iter().any(|t| t.reads(&out.topic)) {
                    queue.push_back((
                        Arc::clone(&out.topic),
                        RawRecord {
                            key: out.key.clone(),
                            value: out.value.clone(),
                            timestamp: out.timestamp,
                            headers: out.headers.clone(),
                        },
                    ));
                }
                self.outputs
                    .entry(out.topic.to_string())
                    .or_default()
                    .push_back(out);
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        let mut queue = VecDeque::new();
        self.collect(&mut queue)?;
        while let Some((topic, record)) = queue.pop_front() {
            self.pipe(&topic, record)?;
        }
        Ok(())
    }
}

/// Pipes records into one input topic of a [`TopologyTestDriver`] (Kafka's `TestInputTopic`).
/// Records without a timestamp get the driver's wall-clock time.
pub struct TestInputTopic<K, V> {
    state: Rc<RefCell<DriverState>>,
    topic: String,
    keys: CodecRef<K>,
    values: CodecRef<V>,
    /// The topic's own time and its step, once set with `with_auto_advance`.
    clock: Cell<Option<(i64, i64)>>,
}

impl<K, V> TestInputTopic<K, V> {
    /// Gives the topic its own time (Kafka's `createInputTopic(.., startTimestamp,
    /// autoAdvance)`): records piped without a timestamp get `start_ms`, then
    /// `start_ms + advance`, and so on.
    #[must_use]
    pub fn with_auto_advance(self, start_ms: i64, advance: Duration) -> Self {
        let step = i64::try_from(advance.as_millis()).unwrap_or(i64::MAX);
        self.clock.set(Some((start_ms, step)));
        self
    }

    /// The timestamp of the next record piped without one.
    fn next_timestamp(&self) -> i64 {
        match self.clock.get() {
            Some((now, step)) => {
                self.clock.set(Some((now.saturating_add(step), step)));
                now
            }
            None => self.state.borrow().wall_clock,
        }
    }

    /// Pipes `key` → `value`, stamped with the topic's time (see
    /// [`with_auto_advance`](Self::with_auto_advance)) or else the driver's wall-clock time.
    pub fn pipe_input(&self, key: K, value: V) -> Result<()> {
        let now = self.next_timestamp();
        self.pipe_input_at(key, value, now)
    }

    /// Pipes `key` → `value` with `timestamp` (milliseconds).
    pub fn pipe_input_at(&self, key: K, value: V, timestamp: i64) -> Result<()> {
        let key = self.keys.encode(&key)?;
        let value = self.values.encode(&value)?;
        self.pipe_raw(Some(key), Some(value), timestamp, Vec::new())
    }

    /// Pipes a record without a key.
    pub fn pipe_value_at(&self, value: V, timestamp: i64) -> Result<()> {
        let value = self.values.encode(&value)?;
        self.pipe_raw(None, Some(value), timestamp, Vec::new())
    }

    /// Pipes a tombstone (no value) for `key`.
    pub fn pipe_tombstone_at(&self, key: K, timestamp: i64) -> Result<()> {
        let key = self.keys.encode(&key)?;
        self.pipe_raw(Some(key), None, timestamp, Vec::new())
    }

    /// Pipes each pair, stamped with the driver's wall-clock time.
    pub fn pipe_key_values(&self, records: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        for (key, value) in records {
            self.pipe_input(key, value)?;
        }
        Ok(())
    }

    /// Pipes a record as raw bytes, headers included (for records a codec cannot make, such
    /// as undecodable ones).
    pub fn pipe_raw(
        &self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
        headers: Vec<Header>,
    ) -> Result<()> {
        self.state.borrow_mut().pipe(
            &self.topic,
            RawRecord {
                key,
                value,
                timestamp,
                headers,
            },
        )
    }
}

/// A record read from a [`TestOutputTopic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord<K, V> {
    /// The key (decoded from no bytes if the record had none).
    pub key: K,
    /// The value, `None` for a tombstone.
    pub value: Option<V>,
    /// The timestamp.
    pub timestamp: i64,
    /// The headers.
    pub headers: Vec<Header>,
}

/// Reads what a topology wrote to one topic (Kafka's `TestOutputTopic`); records are read once,
/// in the order they were written.
pub struct TestOutputTopic<K, V> {
    state: Rc<RefCell<DriverState>>,
    topic: String,
    keys: CodecRef<K>,
    values: CodecRef<V>,
}

impl<K, V> TestOutputTopic<K, V> {
    /// The next record, `None` when all were read.
    pub fn read_record(&self) -> Result<Option<TestRecord<K, V>>> {
        let next = self
            .state
            .borrow_mut()
            .outputs
            .get_mut(&self.topic)
            .and_then(VecDeque::pop_front);
        let Some(out) = next else { return Ok(None) };
        Ok(Some(TestRecord {
            key: self.keys.decode(&out.key.unwrap_or_default())?,
            value: out.value.map(|v| self.values.decode(&v)).transpose()?,
            timestamp: out.timestamp,
            headers: out.headers,
        }))
    }

    /// The next key and value; `None` when all were read. A tombstone is an error here: read
    /// it with [`read_record`](Self::read_record).
    pub fn read_key_value(&self) -> Result<Option<(K, V)>> {
        match self.read_record()? {
            None => Ok(None),
            Some(TestRecord {
                key,
                value: Some(value),
                ..
            }) => Ok(Some((key, value))),
            Some(_) => Err(Error::InvalidArgument(format!(
                "the next record of `{}` is a tombstone; read it with read_record",
                self.topic
            ))),
        }
    }

    /// Every record not read yet.
    pub fn read_records(&self) -> Result<Vec<TestRecord<K, V>>> {
        std::iter::from_fn(|| self.read_record().transpose()).collect()
    }

    /// Every key and value not read yet (tombstones are an error).
    pub fn read_key_values(&self) -> Result<Vec<(K, V)>> {
        std::iter::from_fn(|| self.read_key_value().transpose()).collect()
    }

    /// The latest value per key among the records not read yet; tombstones remove keys
    /// (Kafka's `readKeyValuesToMap`).
    pub fn read_key_values_to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        let mut map = HashMap::new();
        for record in self.read_records()? {
            match record.value {
                Some(value) => map.insert(record.key, value),
                None => map.remove(&record.key),
            };
        }
        Ok(map)
    }

    /// Records not read yet.
    pub fn queue_size(&self) -> usize {
        self.state
            .borrow()
            .outputs
            .get(&self.topic)
            .map_or(0, VecDeque::len)
    }

    /// Whether every record was read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }
}
