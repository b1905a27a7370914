//! `Streams`: runs a topology on stream threads against a broker (Kafka's `KafkaStreams`).

pub(crate) mod assignor;
pub(crate) mod restore;
pub(crate) mod thread;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::broker::Broker;
use crate::consumer::WakeupHandle;
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerConfig};
use crate::storage::{CleanupPolicy, LogConfig};
use crate::streams::config::StreamsConfig;
use crate::streams::context::{TaskId, TaskMetrics};
use crate::streams::node::Data;
use crate::streams::runtime::assignor::TaskLayout;
use crate::streams::store::session::ReadOnlySessionStore;
use crate::streams::store::window::ReadOnlyWindowStore;
use crate::streams::store::{ReadOnlyKeyValueStore, StateStore, StoreKind};
use crate::streams::task::changelog_topic;
use crate::streams::topology::{TopicRef, Topology};

/// Where a [`Streams`] application is in its life (Kafka's `KafkaStreams.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsState {
    /// Made, not started.
    Created,
    /// Started; the group is sharing tasks out (or a thread has no task yet).
    Rebalancing,
    /// Every stream thread has its tasks and processes.
    Running,
    /// Closing: threads commit and stop.
    PendingShutdown,
    /// Closed cleanly.
    NotRunning,
    /// A stream thread failed; see [`Streams::error`]. Close the application.
    Error,
}

/// A query's view of a store: its instances in the tasks of this moment.
type StoreInstances = Arc<dyn Fn() -> Vec<Arc<dyn StateStore>> + Send + Sync>;

/// Store name → the instance of each local task.
type StoreRegistry = HashMap<String, BTreeMap<TaskId, Arc<dyn StateStore>>>;

/// Everything the threads of one application share.
pub(crate) struct Shared {
    pub(crate) broker: Broker,
    pub(crate) topology: Topology,
    pub(crate) config: StreamsConfig,
    pub(crate) layout: TaskLayout,
    pub(crate) producer: Producer,
    pub(crate) state_dir: PathBuf,
    /// The repartition topics (full names), purged after commits.
    pub(crate) repartition_topics: HashSet<String>,
    stop: AtomicBool,
    state: Mutex<StreamsState>,
    state_changed: Condvar,
    error: Mutex<Option<String>>,
    wakeups: Mutex<Vec<WakeupHandle>>,
    /// Store name → the instance of each local task, for interactive queries.
    stores: Mutex<StoreRegistry>,
    metrics: Mutex<HashMap<usize, TaskMetrics>>,
    /// Tasks this instance runs now.
    tasks: Mutex<BTreeSet<TaskId>>,
    /// Threads that have come out of a poll since the start.
    polled: Mutex<BTreeSet<usize>>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn source_topics(&self) -> Vec<String> {
        self.layout.subtopology_of.keys().cloned().collect()
    }

    pub(crate) fn register_wakeup(&self, handle: WakeupHandle) {
        self.wakeups.lock().push(handle);
    }

    pub(crate) fn register_task(&self, task: TaskId, stores: &[Arc<dyn StateStore>]) {
        self.tasks.lock().insert(task);
        let mut registry = self.stores.lock();
        for store in stores {
            registry
                .entry(store.name().to_owned())
                .or_default()
                .insert(task, Arc::clone(store));
        }
    }

    pub(crate) fn unregister_task(&self, task: TaskId) {
        self.tasks.lock().remove(&task);
        for instances in self.stores.lock().values_mut() {
            instances.remove(&task);
        }
    }

    pub(crate) fn publish_metrics(&self, thread: usize, metrics: TaskMetrics) {
        self.metrics.lock().insert(thread, metrics);
    }

    fn set_state(&self, state: StreamsState) {
        let mut current = self.state.lock();
        // Terminal states stay.
        if matches!(*current, StreamsState::Error | StreamsState::NotRunning) {
            return;
        }
        if *current == StreamsState::PendingShutdown && state != StreamsState::NotRunning {
            return;
        }
        *current = state;
        self.state_changed.notify_all();
    }

    /// Called after each poll of thread `thread`: the application runs once every thread has
    /// come out of a poll (tasks are created and restored inside it).
    pub(crate) fn polled(&self, thread: usize) {
        let mut polled = self.polled.lock();
        polled.insert(thread);
        if polled.len() == self.config.num_stream_threads {
            self.set_state(StreamsState::Running);
        }
    }

    /// Called when the group moves tasks.
    pub(crate) fn rebalancing(&self) {
        self.set_state(StreamsState::Rebalancing);
    }

    /// Records the first failure and stops the other threads (they commit their work and
    /// leave), as Kafka Streams' default `SHUTDOWN_CLIENT` reaction does: the failed record
    /// would only fail again in another thread.
    fn fail(&self, thread: usize, error: &Error) {
        self.error
            .lock()
            .get_or_insert_with(|| format!("stream thread {}: {error}", thread + 1));
        self.set_state(StreamsState::Error);
        self.stop.store(true, Ordering::Release);
        for wakeup in self.wakeups.lock().iter() {
            wakeup.wakeup();
        }
    }
}

/// A running Streams application (Kafka's `KafkaStreams`): its topology on
/// `num_stream_threads` threads, each a member of the consumer group named by the application
/// id. Start several instances (in this process, over the same broker) to share the tasks;
/// they hand tasks over as the group rebalances.
///
/// ```
/// use std::time::Duration;
/// use tidelog::{
///     Broker, Consumed, Materialized, Producer, ProducerRecord, Produced, Streams,
///     StreamsBuilder, StreamsConfig, StringCodec, LongCodec, Grouped,
/// };
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path())?;
/// broker.create_topic("lines", 1)?;
/// broker.create_topic("word-counts", 1)?;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("lines", Consumed::with(StringCodec, StringCodec))
///     .flat_map_values(|line: String| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
///     .group_by(|_, word| word.clone(), Grouped::with(StringCodec, StringCodec))
///     .count_with(Materialized::named("counts"))
///     .to_stream()
///     .to("word-counts", Produced::with_tombstones(StringCodec, LongCodec));
///
/// let streams = Streams::new(&broker, builder.build()?, StreamsConfig::new("wordcount"))?;
/// streams.start()?;
/// let producer = Producer::with_defaults(&broker)?;
/// producer.send(ProducerRecord::new("lines", "to be or not to be"))?;
///
/// let counts = streams.store::<String, i64>("counts")?;
/// let deadline = std::time::Instant::now() + Duration::from_secs(10);
/// while counts.get(&"be".to_string())? != Some(2) {
///     assert!(std::time::Instant::now() < deadline, "not counted in time");
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// streams.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Streams {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Streams {
    /// Checks `topology` against the broker and prepares the application: every source and
    /// output topic must exist, co-partitioned topics must have the same partition count;
    /// repartition and changelog topics are created (or checked, if they exist).
    pub fn new(broker: &Broker, topology: Topology, config: StreamsConfig) -> Result<Streams> {
        config.validate()?;
        let app = config.application_id.clone();
        let counts = partition_counts(broker, &topology, &app)?;
        let inner = &topology.inner;
        for group in &inner.copartition {
            let sizes: BTreeMap<&str, u32> = group
                .iter()
                .map(|t| (t.name.as_str(), counts[&t.resolve(&app)]))
                .collect();
            if sizes.values().collect::<BTreeSet<_>>().len() > 1 {
                return Err(Error::InvalidTopology(format!(
                    "joined topics must have the same number of partitions (co-partitioning), \
                     but they have {}",
                    sizes
                        .iter()
                        .map(|(t, n)| format!("`{t}`: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut layout = TaskLayout::default();
        for s in &inner.subtopologies {
            let sources: BTreeMap<String, u32> = s
                .sources
                .iter()
                .map(|t| {
                    let name = t.resolve(&app);
                    let n = counts[&name];
                    (name, n)
                })
                .collect();
            for name in sources.keys() {
                layout.subtopology_of.insert(name.clone(), s.id);
            }
            // Changelogs: one partition per task of the store's sub-topology.
            let tasks = sources.values().copied().max().unwrap_or(1);
            for store in &s.stores {
                if inner.stores[store].logged {
                    let topic = changelog_topic(&app, store);
                    ensure_topic(
                        broker,
                        &topic,
                        tasks,
                        broker
                            .topic_defaults()
                            .cleanup_policy(CleanupPolicy::Compact),
                    )?;
                }
            }
            layout.sources.push(sources);
        }
        let state_dir = config
            .state_dir
            .clone()
            .unwrap_or_else(|| broker.dir().join("streams-state"));
        let producer = Producer::new(
            broker,
            ProducerConfig::default().linger(Duration::from_millis(1)),
        )?;
        let repartition_topics = inner
            .repartition_topics
            .keys()
            .map(|name| TopicRef::internal(name.clone()).resolve(&app))
            .collect();
        Ok(Streams {
            shared: Arc::new(Shared {
                repartition_topics,
                broker: broker.clone(),
                topology,
                config,
                layout,
                producer,
                state_dir,
                stop: AtomicBool::new(false),
                state: Mutex::new(StreamsState::Created),
                state_changed: Condvar::new(),
                error: Mutex::new(None),
                wakeups: Mutex::new(Vec::new()),
                stores: Mutex::new(HashMap::new()),
                metrics: Mutex::new(HashMap::new()),
                tasks: Mutex::new(BTreeSet::new()),
                polled: Mutex::new(BTreeSet::new()),
            }),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Starts the stream threads. Errors if already started or closed.
    pub fn start(&self) -> Result<()> {
        {
            let mut state = self.shared.state.lock();
            if *state != StreamsState::Created {
                return Err(Error::InvalidArgument(format!(
                    "a Streams application starts once; it is {:?}",
                    *state
                )));
            }
            *state = StreamsState::Rebalancing;
            self.shared.state_changed.notify_all();
        }
        let mut threads = self.threads.lock();
        for index in 0..self.shared.config.num_stream_threads {
            let shared = Arc::clone(&self.shared);
            let handle = std::thread::Builder::new()
                .name(format!(
                    "{}-StreamThread-{}",
                    self.shared.config.application_id,
                    index + 1
                ))
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        thread::run(&shared, index)
                    }));
                    match outcome {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => shared.fail(index, &e),
                        Err(panic) => {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            shared.fail(
                                index,
                                &Error::StreamsFailed(format!("processing panicked: {what}")),
                            );
                        }
                    }
                })
                .map_err(|source| Error::Io {
                    context: "starting a stream thread".into(),
                    source,
                })?;
            threads.push(handle);
        }
        Ok(())
    }

    /// Stops the threads after committing their work, and waits for them. Idempotent.
    /// Returns the error that stopped the application, if one did.
    pub fn close(&self) -> Result<()> {
        self.shared.set_state(StreamsState::PendingShutdown);
        self.shared.stop.store(true, Ordering::Release);
        for wakeup in self.shared.wakeups.lock().iter() {
            wakeup.wakeup();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for handle in threads {
            let _ = handle.join();
        }
        self.shared.set_state(StreamsState::NotRunning);
        match self.error() {
            Some(message) => Err(Error::StreamsFailed(message)),
            None => Ok(()),
        }
    }

    /// The application's state.
    pub fn state(&self) -> StreamsState {
        *self.shared.state.lock()
    }

    /// Waits until the state is `state` (or terminal); returns whether it is `state`.
    pub fn wait_for_state(&self, state: StreamsState, timeout: Duration) -> bool {
        let deadline = crate::storage::deadline_after(timeout);
        let mut current = self.shared.state.lock();
        while *current != state
            && !matches!(*current, StreamsState::Error | StreamsState::NotRunning)
        {
            if self
                .shared
                .state_changed
                .wait_until(&mut current, deadline)
                .timed_out()
            {
                break;
            }
        }
        *current == state
    }

    /// Why the application stopped, if a stream thread failed.
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().clone()
    }

    /// Read access to key-value store `name` over this instance's tasks (interactive queries).
    /// Errors if the topology has no key-value store of that name; reading it errors if its
    /// key and value types are not `K` and `V`.
    pub fn store<K: Data, V: Data>(&self, name: &str) -> Result<ReadOnlyKeyValueStore<K, V>> {
        Ok(ReadOnlyKeyValueStore {
            name: name.to_owned(),
            stores: self.instances_of(name, StoreKind::KeyValue)?,
            _types: std::marker::PhantomData,
        })
    }

    /// Read access to window store `name` (a windowed aggregation's, or a processor's) over
    /// this instance's tasks.
    pub fn window_store<K: Data, V: Data>(&self, name: &str) -> Result<ReadOnlyWindowStore<K, V>> {
        Ok(ReadOnlyWindowStore {
            name: name.to_owned(),
            stores: self.instances_of(name, StoreKind::Window)?,
            _types: std::marker::PhantomData,
        })
    }

    /// Read access to session store `name` over this instance's tasks.
    pub fn session_store<K: Data, V: Data>(
        &self,
        name: &str,
    ) -> Result<ReadOnlySessionStore<K, V>> {
        Ok(ReadOnlySessionStore {
            name: name.to_owned(),
            stores: self.instances_of(name, StoreKind::Session)?,
            _types: std::marker::PhantomData,
        })
    }

    /// The local instances of store `name`, looked up at each call (tasks move).
    fn instances_of(&self, name: &str, kind: StoreKind) -> Result<StoreInstances> {
        match self.shared.topology.inner.stores.get(name) {
            Some(store) if store.kind == kind => {}
            Some(store) => {
                return Err(Error::InvalidArgument(format!(
                    "state store `{name}` is a {:?} store, not a {kind:?} store",
                    store.kind
                )))
            }
            None => {
                return Err(Error::InvalidArgument(format!(
                    "the topology has no state store `{name}`"
                )))
            }
        }
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        Ok(Arc::new(move || {
            shared
                .stores
                .lock()
                .get(&name)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        }))
    }

    /// Counters over all tasks this instance runs and ran.
    pub fn metrics(&self) -> TaskMetrics {
        let mut total = TaskMetrics::default();
        for m in self.shared.metrics.lock().values() {
            total += *m;
        }
        total
    }

    /// The tasks this instance owns now.
    pub fn local_tasks(&self) -> Vec<TaskId> {
        self.shared.tasks.lock().iter().copied().collect()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Partition count of every topic the topology touches (resolved names): user topics must
/// exist; repartition topics are created with their fixed count or the most partitions among
/// the source topics upstream of them.
fn partition_counts(
    broker: &Broker,
    topology: &Topology,
    app: &str,
) -> Result<HashMap<String, u32>> {
    let inner = &topology.inner;
    let mut counts = HashMap::new();
    for s in &inner.subtopologies {
        for topic in s
            .sources
            .iter()
            .chain(s.sinks.iter())
            .filter(|t| !t.internal)
        {
            let n = broker
                .topic(&topic.name)
                .map_err(|_| {
                    Error::InvalidTopology(format!(
                        "topic `{}` does not exist; create it before starting the application",
                        topic.name
                    ))
                })?
                .partition_count();
            counts.insert(topic.name.clone(), n);
        }
    }
    // Repartition topics, upstream first (the topology has no cycle through topics).
    let mut pending: Vec<(&String, &Option<u32>)> = inner.repartition_topics.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(name, fixed)| {
            let topic = TopicRef::internal((*name).clone());
            let resolved = topic.resolve(app);
            let writer = inner
                .subtopologies
                .iter()
                .find(|s| s.sinks.contains(&topic));
            let upstream: Option<Vec<u32>> = writer.map(|s| {
                s.sources
                    .iter()
                    .filter_map(|t| counts.get(&t.resolve(app)).copied())
                    .collect()
            });
            let ready = writer.is_some_and(|s| {
                s.sources
                    .iter()
                    .all(|t| counts.contains_key(&t.resolve(app)))
            });
            if !ready {
                return true;
            }
            // Joined with user topics: as many partitions as they have (Kafka's
            // `CopartitionedTopicsEnforcer`); else as many as the most upstream.
            let joined = inner
                .copartition
                .iter()
                .filter(|group| group.contains(&topic))
                .flat_map(|group| group.iter().filter(|t| !t.internal))
                .filter_map(|t| counts.get(&t.name).copied())
                .max();
            let n = fixed
                .or(joined)
                .unwrap_or_else(|| upstream.and_then(|u| u.into_iter().max()).unwrap_or(1));
            counts.insert(resolved, n);
            false
        });
        if pending.len() == before {
            return Err(Error::InvalidTopology(
                "repartition topics depend on each other in a cycle".into(),
            ));
        }
    }
    for name in inner.repartition_topics.keys() {
        let resolved = TopicRef::internal(name.clone()).resolve(app);
        ensure_topic(
            broker,
            &resolved,
            counts[&resolved],
            broker.topic_defaults(),
        )?;
    }
    Ok(counts)
}

/// Creates `topic` with `partitions`, or checks that the existing one has that many.
fn ensure_topic(broker: &Broker, topic: &str, partitions: u32, config: LogConfig) -> Result<()> {
    match broker.topic(topic) {
        Ok(existing) if existing.partition_count() == partitions => Ok(()),
        Ok(existing) => Err(Error::InvalidTopology(format!(
            "internal topic `{topic}` has {} partitions, but the topology needs {partitions}; \
             delete it (and the application's state directory) to start over",
            existing.partition_count()
        ))),
        Err(_) => match broker.create_topic_with(topic, partitions, config) {
            Ok(_) | Err(Error::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        },
    }
}
