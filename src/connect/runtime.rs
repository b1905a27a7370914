//! `Connect`: the runtime that runs connectors and their tasks on threads of the application
//! (Kafka Connect's standalone worker and herder, in process).
//!
//! Invariants:
//! 1. A connector is in `connectors` from a successful start until it is stopped; its tasks'
//!    threads are joined before `stop_connector`, `restart_task`, `restart_connector` or
//!    `shutdown` return, and never while the `connectors` lock is held (a task's thread never
//!    takes that lock, but status calls should not wait for a task to finish its flush).
//! 2. Every task has its own `TaskControl`; a restarted task gets a fresh one.
//! 3. Code of a connector (its factory, `start`, `task_configs`, `task`, `stop`, and transform
//!    factories) runs under [`guarded`] or [`catch`]: a panic becomes an error or a failed
//!    task, never an unwind into the application calling the runtime, which would also leave
//!    started task threads running unowned (Kafka Connect's FAILED state).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use super::api::{SinkConnector, SourceConnector};
use super::config::{ConnectorConfig, ErrorTolerance};
use super::control::{catch, ConnectorState, Target, TaskControl};
use super::converter;
use super::offsets::OffsetStore;
use super::registry::{Made, Plugins};
use super::sink_worker::{check_sink_config, SinkWorker};
use super::source_worker::SourceWorker;
use super::transform::Transform;
use crate::broker::Broker;
use crate::error::{Error, IoContext, Result};
use crate::producer::{Producer, ProducerConfig};

/// Settings of a [`Connect`] runtime.
///
/// ```
/// use std::time::Duration;
/// use tidelog::ConnectConfig;
///
/// let config = ConnectConfig::default().offset_flush_interval(Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    offset_flush_interval: Duration,
    producer: ProducerConfig,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            offset_flush_interval: Duration::from_secs(1),
            producer: ProducerConfig::default(),
        }
    }
}

impl ConnectConfig {
    /// How often tasks commit (Kafka's `offset.flush.interval.ms`): a source task flushes its
    /// records and stores its source offsets, a sink task flushes its writes and commits its
    /// consumer offsets. After a crash, at most this much work is repeated. Default 1 s
    /// (Kafka's is 60 s; commits are cheap in process). A source task also commits after
    /// 100,000 records.
    #[must_use]
    pub fn offset_flush_interval(mut self, every: Duration) -> Self {
        self.offset_flush_interval = every;
        self
    }

    /// The configuration of the producer that source tasks share. Default:
    /// `ProducerConfig::default()`.
    #[must_use]
    pub fn producer(mut self, config: ProducerConfig) -> Self {
        self.producer = config;
        self
    }
}

/// Whether a connector reads into topics or writes them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    /// A [`SourceConnector`].
    Source,
    /// A [`SinkConnector`].
    Sink,
}

/// A connector's state and its tasks' (Kafka Connect's status endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorStatus {
    /// The connector's name.
    pub name: String,
    /// Source or sink.
    pub kind: ConnectorKind,
    /// `Running` or `Paused` (a connector whose tasks failed is still `Running`, as in Kafka).
    pub state: ConnectorState,
    /// Its tasks, by id.
    pub tasks: Vec<TaskStatus>,
}

/// A task's state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// The task's number (0-based).
    pub id: usize,
    /// Its state.
    pub state: ConnectorState,
    /// Why it failed, when `state` is `Failed`.
    pub trace: Option<String>,
    /// Records it polled (source) or consumed (sink) since it started.
    pub records: u64,
    /// Records skipped as bad under `errors.tolerance=all`.
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Commits of offsets done.
    pub commits: u64,
}

/// Runs connectors and their tasks on threads of the application (Kafka Connect's worker, in
/// process): start, stop, pause, resume, restart, status.
///
/// Source offsets live in the internal compacted topic `__connect_offsets` of the broker, so a
/// source connector started again under the same name continues where it stopped; sink tasks
/// consume through the consumer group `connect-<name>` and commit only what they flushed. Tasks
/// that fail (an error or a panic) are reported in [`status`](Self::status) and can be
/// restarted; the others go on.
///
/// Cheap to clone (clones share the runtime); `Send + Sync`. Dropping the last clone stops
/// every connector cleanly (a final flush and commit). Use one runtime per broker.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tidelog::{Broker, Connect, ConnectorConfig, ConnectorState};
///
/// let dir = tempfile::tempdir()?;
/// let input = dir.path().join("in.txt");
/// std::fs::write(&input, "one\ntwo\n")?;
/// let broker = Broker::open(dir.path().join("data"))?;
/// let connect = Connect::new(&broker)?;
/// connect.start_connector(
///     ConnectorConfig::new("lines", "FileStreamSource")
///         .set("file", input.to_string_lossy())
///         .set("topic", "lines"),
/// )?;
/// let deadline = Instant::now() + Duration::from_secs(10);
/// while broker.topic("lines").map_or(true, |t| t.partition(0).unwrap().log_end_offset() < 2) {
///     assert!(Instant::now() < deadline);
///     std::thread::sleep(Duration::from_millis(10));
/// }
/// assert_eq!(connect.status("lines")?.tasks[0].state, ConnectorState::Running);
/// connect.stop_connector("lines")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Connect {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("connectors", &self.connectors())
            .finish_non_exhaustive()
    }
}

struct Inner {
    broker: Broker,
    config: ConnectConfig,
    offsets: Arc<OffsetStore>,
    producer: Producer,
    plugins: RwLock<Arc<Plugins>>,
    connectors: Mutex<BTreeMap<String, Running>>,
    /// Held across each start, stop and restart (reentrant: a restart starts again), so that
    /// two of them never interleave: a restart that joins a task's thread without the
    /// `connectors` lock must not find another restart's new thread in the slot.
    lifecycle: parking_lot::ReentrantMutex<()>,
}

struct Running {
    config: ConnectorConfig,
    connector: Made,
    task_configs: Vec<ConnectorConfig>,
    tasks: Vec<Slot>,
    paused: bool,
}

struct Slot {
    control: Arc<TaskControl>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let all = std::mem::take(&mut *self.connectors.lock());
        for (_, running) in all {
            stop_running(running);
        }
    }
}

/// Stops every task of `running`, joins their threads, and stops the connector.
fn stop_running(mut running: Running) {
    for slot in &running.tasks {
        slot.control.set_target(Target::Stop);
    }
    for slot in &mut running.tasks {
        if let Some(t) = slot.thread.take() {
            let _ = t.join();
        }
    }
    stop_made(&mut running.connector);
}

impl Connect {
    /// A runtime for `broker`'s topics with the default configuration; opens (or creates)
    /// `__connect_offsets`.
    pub fn new(broker: &Broker) -> Result<Connect> {
        Connect::with_config(broker, ConnectConfig::default())
    }

    /// A runtime with its own configuration.
    ///
    /// Errors: [`Error::InvalidConfig`] for a zero flush interval or a bad producer config;
    /// errors opening `__connect_offsets`.
    pub fn with_config(broker: &Broker, config: ConnectConfig) -> Result<Connect> {
        if config.offset_flush_interval.is_zero() {
            return Err(Error::InvalidConfig {
                key: "offset_flush_interval",
                reason: "must be greater than zero".into(),
            });
        }
        let offsets = Arc::new(OffsetStore::open(broker)?);
        let producer = Producer::new(broker, config.producer.clone())?;
        Ok(Connect {
            inner: Arc::new(Inner {
                broker: broker.clone(),
                config,
                offsets,
                producer,
                plugins: RwLock::new(Arc::new(Plugins::builtin())),
                connectors: Mutex::new(BTreeMap::new()),
                lifecycle: parking_lot::ReentrantMutex::new(()),
            }),
        })
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    // ------------------------------------------------------------------------------ plugins

    /// Makes `connector.class` = `class` (or any name ending in `.class`) start a source
    /// connector made by `factory`, for configs loaded from files.
    pub fn register_source<F>(&self, class: &str, factory: F)
    where
        F: Fn() -> Box<dyn SourceConnector> + Send + Sync + 'static,
    {
        let mut plugins = self.inner.plugins.write();
        Arc::make_mut(&mut plugins).add_source(class, Arc::new(factory));
    }

    /// Makes `connector.class` = `class` start a sink connector made by `factory`.
    pub fn register_sink<F>(&self, class: &str, factory: F)
    where
        F: Fn() -> Box<dyn SinkConnector> + Send + Sync + 'static,
    {
        let mut plugins = self.inner.plugins.write();
        Arc::make_mut(&mut plugins).add_sink(class, Arc::new(factory));
    }

    /// Makes `transforms.<name>.type` = `kind` use a transform made by `factory`, which gets
    /// the connector's config and the transform's key prefix (`transforms.<name>.`).
    pub fn register_transform<F>(&self, kind: &str, factory: F)
    where
        F: Fn(&ConnectorConfig, &str) -> Result<Box<dyn Transform>> + Send + Sync + 'static,
    {
        let mut plugins = self.inner.plugins.write();
        Arc::make_mut(&mut plugins).add_transform(kind, Arc::new(factory));
    }

    // ------------------------------------------------------------------------------ lifecycle

    /// Starts the connector `config.connector.class` names (a built-in or a registered one):
    /// checks the config, splits the work into at most `tasks.max` tasks and starts them.
    ///
    /// Errors: [`Error::ConnectorConfig`] naming the bad key; [`Error::ConnectorExists`].
    pub fn start_connector(&self, config: ConnectorConfig) -> Result<()> {
        config.check_identity()?;
        let made = guarded(config.name(), "factory", || {
            self.plugins().connector(&config)
        })?;
        self.launch(config, made)
    }

    /// Reads a Kafka Connect JSON config file and starts its connector; returns its name.
    ///
    /// Errors: as [`ConnectorConfig::from_json_file`] and
    /// [`start_connector`](Self::start_connector).
    pub fn start_connector_file(&self, path: impl AsRef<std::path::Path>) -> Result<String> {
        let config = ConnectorConfig::from_json_file(path)?;
        let name = config.name().to_string();
        self.start_connector(config)?;
        Ok(name)
    }

    /// Starts a source connector given in code, with `config` (whose `connector.class` is then
    /// only a label).
    pub fn start_source(
        &self,
        config: ConnectorConfig,
        connector: impl SourceConnector + 'static,
    ) -> Result<()> {
        self.launch(config, Made::Source(Box::new(connector)))
    }

    /// Starts a sink connector given in code, with `config`.
    pub fn start_sink(
        &self,
        config: ConnectorConfig,
        connector: impl SinkConnector + 'static,
    ) -> Result<()> {
        self.launch(config, Made::Sink(Box::new(connector)))
    }

    /// Checks `config` as [`start_connector`](Self::start_connector) would, without running
    /// anything (Kafka Connect's validate endpoint).
    ///
    /// Errors: as [`start_connector`](Self::start_connector); [`Error::ConnectorFailed`] when
    /// the connector's code panicked.
    pub fn validate(&self, config: &ConnectorConfig) -> Result<()> {
        config.check_identity()?;
        let mut made = guarded(config.name(), "factory", || {
            self.plugins().connector(config)
        })?;
        self.check_runtime_keys(config, &made)?;
        let tasks_max = config.tasks_max()?;
        let result = start_made(&mut made, config, tasks_max);
        stop_made(&mut made);
        result.map(drop)
    }

    fn plugins(&self) -> Arc<Plugins> {
        Arc::clone(&self.inner.plugins.read())
    }

    /// Checks the keys the runtime reads.
    fn check_runtime_keys(&self, config: &ConnectorConfig, made: &Made) -> Result<()> {
        config.tasks_max()?;
        converter::from_config(config, "key.converter")?;
        converter::from_config(config, "value.converter")?;
        guarded(config.name(), "transform factory", || {
            self.plugins().transforms(config)
        })?;
        ErrorTolerance::from_config(config)?;
        match made {
            Made::Sink(_) => check_sink_config(config)?,
            Made::Source(_) => {
                let key = "errors.deadletterqueue.topic.name";
                if config.get(key).is_some_and(|t| !t.trim().is_empty()) {
                    return Err(config.error(
                        key,
                        "a dead-letter topic is for sink connectors (as in Kafka Connect)",
                    ));
                }
                let partitions: u32 = config.parse_or("topic.creation.default.partitions", 1)?;
                if partitions == 0 {
                    return Err(
                        config.error("topic.creation.default.partitions", "must be at least 1")
                    );
                }
            }
        }
        Ok(())
    }

    fn launch(&self, config: ConnectorConfig, mut made: Made) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        config.check_identity()?;
        self.check_runtime_keys(&config, &made)?;
        let name = config.name().to_string();
        if self.inner.connectors.lock().contains_key(&name) {
            return Err(Error::ConnectorExists(name));
        }
        let task_configs = start_connector(&mut made, &config)?;
        let mut connectors = self.inner.connectors.lock();
        if connectors.contains_key(&name) {
            drop(connectors);
            stop_made(&mut made);
            return Err(Error::ConnectorExists(name));
        }
        let mut running = Running {
            config,
            connector: made,
            task_configs,
            tasks: Vec::new(),
            paused: false,
        };
        for id in 0..running.task_configs.len() {
            match self.spawn_task(&running, id) {
                Ok(slot) => running.tasks.push(slot),
                Err(e) => {
                    drop(connectors);
                    stop_running(running);
                    return Err(e);
                }
            }
        }
        connectors.insert(name, running);
        Ok(())
    }

    /// Starts task `id` of `running` on a thread of its own; a task the connector fails to make
    /// (its `task` panicked) is a `Failed` task without a thread (invariant 3).
    fn spawn_task(&self, running: &Running, id: usize) -> Result<Slot> {
        let target = if running.paused {
            Target::Pause
        } else {
            Target::Run
        };
        let control = Arc::new(TaskControl::new(target));
        let name = running.config.name();
        let thread = std::thread::Builder::new().name(format!("connect-{name}-{id}"));
        let task_config = running.task_configs[id].clone();
        let failed = |message: String| {
            control.set_state(
                ConnectorState::Failed,
                Some(format!("making the task panicked: {message}")),
            );
            Ok(Slot {
                control: Arc::clone(&control),
                thread: None,
            })
        };
        let handle = match &running.connector {
            Made::Source(c) => {
                let task = match catch(|| c.task()) {
                    Ok(task) => task,
                    Err(message) => return failed(message),
                };
                let worker = SourceWorker {
                    broker: self.inner.broker.clone(),
                    producer: self.inner.producer.clone(),
                    offsets: Arc::clone(&self.inner.offsets),
                    control: Arc::clone(&control),
                    plugins: self.plugins(),
                    connector_config: running.config.clone(),
                    task_config,
                    task_id: id,
                    flush_interval: self.inner.config.offset_flush_interval,
                };
                thread.spawn(move || worker.run(task))
            }
            Made::Sink(c) => {
                let task = match catch(|| c.task()) {
                    Ok(task) => task,
                    Err(message) => return failed(message),
                };
                let worker = SinkWorker {
                    broker: self.inner.broker.clone(),
                    control: Arc::clone(&control),
                    plugins: self.plugins(),
                    connector_config: running.config.clone(),
                    task_config,
                    task_id: id,
                    flush_interval: self.inner.config.offset_flush_interval,
                };
                thread.spawn(move || worker.run(task))
            }
        }
        .ctx(|| format!("starting a thread for task {id} of connector `{name}`"))?;
        Ok(Slot {
            control,
            thread: Some(handle),
        })
    }

    /// Stops a connector: its tasks flush and commit, then their threads end, then the
    /// connector stops. Its source offsets and its group's commits stay, so starting it again
    /// under the same name continues where it stopped.
    ///
    /// Errors: [`Error::UnknownConnector`].
    pub fn stop_connector(&self, name: &str) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        let running = self
            .inner
            .connectors
            .lock()
            .remove(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        stop_running(running);
        Ok(())
    }

    /// Stops every connector (as dropping the last handle does).
    pub fn shutdown(&self) {
        let _lifecycle = self.inner.lifecycle.lock();
        let all = std::mem::take(&mut *self.inner.connectors.lock());
        for (_, running) in all {
            stop_running(running);
        }
    }

    /// Pauses a connector's tasks: sources stop polling (after storing their offsets), sinks
    /// stop consuming (after a flush and a commit) but stay in their group.
    ///
    /// Errors: [`Error::UnknownConnector`].
    pub fn pause(&self, name: &str) -> Result<()> {
        self.set_paused(name, true)
    }

    /// Resumes a paused connector.
    ///
    /// Errors: [`Error::UnknownConnector`].
    pub fn resume(&self, name: &str) -> Result<()> {
        self.set_paused(name, false)
    }

    fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        let mut connectors = self.inner.connectors.lock();
        let running = connectors
            .get_mut(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        running.paused = paused;
        let target = if paused { Target::Pause } else { Target::Run };
        for slot in &running.tasks {
            slot.control.set_target(target);
        }
        Ok(())
    }

    /// Restarts task `task` of a connector with a new task instance: a failed task starts
    /// again, a running one is stopped cleanly first. The other tasks go on.
    ///
    /// Errors: [`Error::UnknownConnector`]; [`Error::InvalidArgument`] for a task the
    /// connector does not have.
    pub fn restart_task(&self, name: &str, task: usize) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        let old = {
            let mut connectors = self.inner.connectors.lock();
            let running = connectors
                .get_mut(name)
                .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
            let slot = running.tasks.get_mut(task).ok_or_else(|| {
                Error::InvalidArgument(format!("connector `{name}` has no task {task}"))
            })?;
            slot.control.set_target(Target::Stop);
            slot.thread.take()
        };
        if let Some(t) = old {
            let _ = t.join();
        }
        let mut connectors = self.inner.connectors.lock();
        let running = connectors
            .get_mut(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        if task >= running.tasks.len() {
            return Err(Error::InvalidArgument(format!(
                "connector `{name}` has no task {task}"
            )));
        }
        let slot = self.spawn_task(running, task)?;
        running.tasks[task] = slot;
        Ok(())
    }

    /// Restarts a connector and all its tasks with its config: the connector is stopped and
    /// started again, and its work split again into tasks.
    ///
    /// Errors: [`Error::UnknownConnector`]; what starting it returns (it is then stopped).
    pub fn restart_connector(&self, name: &str) -> Result<()> {
        let _lifecycle = self.inner.lifecycle.lock();
        let running = self
            .inner
            .connectors
            .lock()
            .remove(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        let config = running.config.clone();
        let paused = running.paused;
        let Running { connector, .. } = {
            let mut running = running;
            for slot in &running.tasks {
                slot.control.set_target(Target::Stop);
            }
            for slot in &mut running.tasks {
                if let Some(t) = slot.thread.take() {
                    let _ = t.join();
                }
            }
            running
        };
        let mut made = connector;
        stop_made(&mut made);
        self.launch(config, made)?;
        if paused {
            self.pause(name)?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------ status

    /// The names of the running connectors, sorted.
    pub fn connectors(&self) -> Vec<String> {
        self.inner.connectors.lock().keys().cloned().collect()
    }

    /// A connector's state and its tasks'.
    ///
    /// Errors: [`Error::UnknownConnector`].
    pub fn status(&self, name: &str) -> Result<ConnectorStatus> {
        let connectors = self.inner.connectors.lock();
        let running = connectors
            .get(name)
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))?;
        let tasks = running
            .tasks
            .iter()
            .enumerate()
            .map(|(id, slot)| {
                let (state, trace) = slot.control.state();
                let n =
                    |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                TaskStatus {
                    id,
                    state,
                    trace,
                    records: n(&slot.control.records),
                    skipped: n(&slot.control.skipped),
                    dead_lettered: n(&slot.control.dead_lettered),
                    commits: n(&slot.control.commits),
                }
            })
            .collect();
        Ok(ConnectorStatus {
            name: name.to_string(),
            kind: match running.connector {
                Made::Source(_) => ConnectorKind::Source,
                Made::Sink(_) => ConnectorKind::Sink,
            },
            state: if running.paused {
                ConnectorState::Paused
            } else {
                ConnectorState::Running
            },
            tasks,
        })
    }

    /// The configuration a running connector was started with.
    ///
    /// Errors: [`Error::UnknownConnector`].
    pub fn connector_config(&self, name: &str) -> Result<ConnectorConfig> {
        self.inner
            .connectors
            .lock()
            .get(name)
            .map(|r| r.config.clone())
            .ok_or_else(|| Error::UnknownConnector(name.to_string()))
    }

    /// The stored source offsets of the source connector `name` (running or not), as
    /// (source partition, offset) pairs sorted by partition (Kafka Connect's offsets
    /// endpoint).
    ///
    /// Errors: reading `__connect_offsets` failed.
    pub fn source_offsets(&self, name: &str) -> Result<Vec<(Value, Value)>> {
        self.inner.offsets.all(name)
    }
}

/// Runs a method of a connector on the caller's thread (invariant 3): a panic becomes
/// [`Error::ConnectorFailed`].
fn guarded<T>(name: &str, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch(f).unwrap_or_else(|message| {
        Err(Error::ConnectorFailed {
            connector: name.to_string(),
            reason: format!("its {what} panicked: {message}"),
        })
    })
}

/// Calls the connector's `start`, then its `task_configs` (invariant 3).
fn start_made(
    made: &mut Made,
    config: &ConnectorConfig,
    tasks_max: usize,
) -> Result<Vec<ConnectorConfig>> {
    let name = config.name();
    match made {
        Made::Source(c) => {
            guarded(name, "start", || c.start(config))?;
            guarded(name, "task_configs", || c.task_configs(tasks_max))
        }
        Made::Sink(c) => {
            guarded(name, "start", || c.start(config))?;
            guarded(name, "task_configs", || c.task_configs(tasks_max))
        }
    }
}

/// Starts a connector and returns its task configs (at most `tasks.max`).
fn start_connector(made: &mut Made, config: &ConnectorConfig) -> Result<Vec<ConnectorConfig>> {
    let tasks_max = config.tasks_max()?;
    let result = start_made(made, config, tasks_max);
    match result {
        Ok(configs) if configs.len() <= tasks_max => Ok(configs),
        Ok(configs) => {
            stop_made(made);
            Err(Error::InvalidArgument(format!(
                "connector `{}` made {} task configs for tasks.max = {tasks_max}",
                config.name(),
                configs.len()
            )))
        }
        Err(e) => {
            stop_made(made);
            Err(e)
        }
    }
}

/// Calls the connector's `stop`. A panic there is dropped (invariant 3): the connector is
/// stopped either way, as Kafka Connect only logs a failing `stop`.
fn stop_made(made: &mut Made) {
    let _ = catch(|| match made {
        Made::Source(c) => c.stop(),
        Made::Sink(c) => c.stop(),
    });
}

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Connect>();
    is::<ConnectorStatus>();
}
