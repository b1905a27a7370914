//! A stream thread: one consumer-group member that polls its tasks' partitions, runs the
//! records through the tasks, sends what they produce, punctuates, and commits.
//!
//! Tasks are created when the group gives the thread a partition of them (restoring their
//! stores first) and closed when it takes the partitions away: the rebalance listener commits
//! the task's work (the at-least-once commit of the module docs) before the partitions go,
//! so the next owner starts exactly after the last processed record and finds a snapshot and
//! changelog that hold everything up to there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, ConsumerRecords, OffsetReset, RebalanceListener,
};
use crate::error::{Error, Result};
use crate::group::offsets::OffsetAndMetadata;
use crate::partition::TopicPartition;
use crate::producer::{ProducerRecord, SendAllFuture};
use crate::streams::context::{TaskId, TaskMetrics};
use crate::streams::runtime::assignor::StreamsAssignor;
use crate::streams::runtime::restore::{restore, snapshot_max_age, snapshot_path};
use crate::streams::runtime::Shared;
use crate::streams::store::snapshot;
use crate::streams::task::Task;
use crate::streams::topology::RawRecord;

/// A store is snapshotted when its changelog grew by more than this many records, or by more
/// than the store's size, since the last snapshot: restoring then replays at most that much,
/// and snapshot writing costs at most about one entry per changelog record.
const SNAPSHOT_MIN_RECORDS: u64 = 10_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The records of one input partition of a task from one poll.
struct PartitionQueue {
    topic: Arc<str>,
    partition: u32,
    records: VecDeque<ConsumerRecord>,
    /// Offset of the last record processed.
    last: Option<u64>,
}

/// A task as a stream thread runs it.
struct Running {
    task: Task,
    /// Next offset to commit per input partition (one past the last processed record).
    processed: HashMap<TopicPartition, u64>,
    /// Whether `processed` moved since the last commit.
    uncommitted: bool,
    /// Changelog end offset at the last snapshot of each logged store (by store index).
    snapshotted: Vec<u64>,
    /// When the task last wrote its snapshots (or started).
    snapshot_at: Instant,
}

/// The tasks of one stream thread; shared by its loop and its rebalance listener (both run
/// on the thread, so the lock is never contended).
pub(crate) struct TaskManager {
    shared: Arc<Shared>,
    thread: usize,
    tasks: HashMap<TaskId, Running>,
    /// Outcomes of sends not known yet, one per task and poll (`send_outboxes`).
    in_flight: VecDeque<SendAllFuture>,
    /// Counters of tasks closed since the start, kept for `Streams::metrics`.
    closed_metrics: TaskMetrics,
    /// When repartition topics were last purged, and the offsets committed since for their
    /// partitions (see `purge_repartition_topics`).
    last_purge: Instant,
    to_purge: HashMap<TopicPartition, u64>,
}

impl TaskManager {
    pub(crate) fn new(shared: Arc<Shared>, thread: usize) -> Self {
        TaskManager {
            shared,
            thread,
            tasks: HashMap::new(),
            in_flight: VecDeque::new(),
            closed_metrics: TaskMetrics::default(),
            last_purge: Instant::now(),
            to_purge: HashMap::new(),
        }
    }

    fn create(&mut self, id: TaskId) -> Result<()> {
        let mut replayed = 0;
        let shared = Arc::clone(&self.shared);
        let application_id: Arc<str> = Arc::from(shared.config.application_id.as_str());
        let mut use_snapshots = true;
        loop {
            let mut task = Task::new(
                &shared.topology.inner,
                id,
                &application_id,
                now_ms(),
                &shared.config,
            )?;
            let mut snapshotted = Vec::new();
            let mut fits = true;
            for (store, topic) in task.changelogs() {
                let path = snapshot_path(&shared.state_dir, &application_id, id, store.name());
                let changelog = TopicPartition::new(&**topic, id.partition);
                match restore(
                    &shared.broker,
                    store,
                    &changelog,
                    use_snapshots.then_some(path.as_path()),
                )? {
                    Some(restored) => {
                        replayed += restored.replayed;
                        snapshotted.push(
                            // Without a snapshot, the first commit should write one if the
                            // changelog was long.
                            if restored.replayed > SNAPSHOT_MIN_RECORDS {
                                0
                            } else {
                                restored.changelog_end
                            },
                        );
                    }
                    None => {
                        fits = false;
                        break;
                    }
                }
            }
            if !fits {
                // A snapshot from a changelog that no longer exists: rebuild from the log.
                use_snapshots = false;
                continue;
            }
            task.ctx.metrics.restored = replayed;
            shared.register_task(id, &task.stores);
            self.tasks.insert(
                id,
                Running {
                    task,
                    processed: HashMap::new(),
                    uncommitted: false,
                    snapshotted,
                    snapshot_at: Instant::now(),
                },
            );
            return Ok(());
        }
    }

    /// Runs a poll's records through their tasks and sends what they produce. A task that
    /// reads several partitions takes their records in timestamp order (always the partition
    /// whose next record is oldest), keeping each partition's own order, as Kafka's
    /// `PartitionGroup` does; so joins see both sides in event-time order.
    pub(crate) fn process(&mut self, records: ConsumerRecords) -> Result<()> {
        // Per task, one queue per partition (records arrive grouped by partition).
        let mut by_task: HashMap<TaskId, Vec<PartitionQueue>> = HashMap::new();
        for record in records {
            let Some(&subtopology) = self.shared.layout.subtopology_of.get(&*record.topic) else {
                continue;
            };
            let id = TaskId {
                subtopology,
                partition: record.partition,
            };
            let queues = by_task.entry(id).or_default();
            match queues
                .iter_mut()
                .find(|q| q.topic == record.topic && q.partition == record.partition)
            {
                Some(queue) => queue.records.push_back(record),
                None => queues.push(PartitionQueue {
                    topic: Arc::clone(&record.topic),
                    partition: record.partition,
                    records: VecDeque::from([record]),
                    last: None,
                }),
            }
        }
        for (id, mut queues) in by_task {
            let Some(running) = self.tasks.get_mut(&id) else {
                continue;
            };
            loop {
                let next = queues
                    .iter_mut()
                    .filter_map(|q| q.records.front().map(|r| r.timestamp).zip(Some(q)))
                    .min_by_key(|(timestamp, _)| *timestamp)
                    .map(|(_, q)| q);
                let Some(queue) = next else { break };
                let Some(record) = queue.records.pop_front() else {
                    break;
                };
                queue.last = Some(record.offset);
                running.task.process(
                    &record.topic,
                    record.partition,
                    record.offset,
                    RawRecord {
                        key: record.key,
                        value: record.value,
                        timestamp: record.timestamp,
                        headers: record.headers,
                    },
                )?;
            }
            for queue in queues {
                if let Some(last) = queue.last {
                    running.processed.insert(
                        TopicPartition::new(&*queue.topic, queue.partition),
                        last + 1,
                    );
                    running.uncommitted = true;
                }
            }
        }
        self.send_outboxes()
    }

    /// Fires wall-clock punctuations.
    pub(crate) fn punctuate(&mut self) -> Result<()> {
        let now = now_ms();
        for running in self.tasks.values_mut() {
            running.task.punctuate_wall_clock(now)?;
        }
        self.send_outboxes()
    }

    pub(crate) fn commit_requested(&mut self) -> bool {
        self.tasks
            .values_mut()
            .any(|r| std::mem::take(&mut r.task.ctx.commit_requested))
    }

    fn send_outboxes(&mut self) -> Result<()> {
        for running in self.tasks.values_mut() {
            let outbox = running.task.take_outbox();
            if outbox.is_empty() {
                continue;
            }
            // One call per task and poll: the producer looks each partition up once per run.
            let sent = self
                .shared
                .producer
                .send_all(outbox.into_iter().map(|out| {
                    let mut record = ProducerRecord::to_shared_topic(out.topic, out.value)
                        .timestamp(out.timestamp)
                        .headers(out.headers);
                    if let Some(key) = out.key {
                        record = record.key(key);
                    }
                    if let Some(partition) = out.partition {
                        record = record.partition(partition);
                    }
                    record
                }))?;
            self.in_flight.push_back(sent);
        }
        // Outcomes already known: fail on the first error, forget the successes.
        while let Some(front) = self.in_flight.front() {
            match front.try_result() {
                None => break,
                Some(Ok(())) => {
                    self.in_flight.pop_front();
                }
                Some(Err(e)) => return Err(send_failed(&e)),
            }
        }
        Ok(())
    }

    /// The at-least-once commit of `ids` (all tasks if `None`): flush caches and store changes,
    /// flush the producer and check the sends, commit the input offsets, then write the
    /// snapshots that are due (on `closing`, every store that changed).
    pub(crate) fn commit(
        &mut self,
        consumer: &mut Consumer,
        ids: Option<&HashSet<TaskId>>,
        closing: bool,
    ) -> Result<()> {
        let selected = |id: &TaskId| ids.is_none_or(|ids| ids.contains(id));
        for (id, running) in &mut self.tasks {
            if selected(id) {
                running.task.flush_stores()?;
            }
        }
        self.send_outboxes()?;
        self.shared.producer.flush()?;
        for future in self.in_flight.drain(..) {
            if let Some(Err(e)) = future.try_result() {
                return Err(send_failed(&e));
            }
        }
        let mut offsets = Vec::new();
        for (id, running) in &mut self.tasks {
            if selected(id) && running.uncommitted {
                offsets.extend(
                    running
                        .processed
                        .iter()
                        .map(|(tp, &next)| (tp.clone(), OffsetAndMetadata::new(next))),
                );
                running.uncommitted = false;
            }
        }
        // The commit is fenced if the group moved on without this thread: then no snapshot
        // either (another owner may be writing the changelog now).
        if !offsets.is_empty() {
            consumer.commit_sync_offsets(&offsets)?;
            self.purge_repartition_topics(&offsets);
        }
        for (id, running) in &mut self.tasks {
            if selected(id) {
                Self::snapshot(&self.shared, *id, running, closing)?;
            }
        }
        Ok(())
    }

    /// Kafka Streams' purge of repartition topics: remembers the offsets just committed for
    /// repartition partitions and, once per `repartition_purge_interval`, deletes their records
    /// below those offsets. Only this application reads its repartition topics, and a partition
    /// is read by one task, so nobody needs those records any more. Best effort, as in Kafka: a
    /// purge that fails (for example on a full disk) leaves the records for the next one.
    fn purge_repartition_topics(&mut self, committed: &[(TopicPartition, OffsetAndMetadata)]) {
        let shared = &self.shared;
        if shared.repartition_topics.is_empty() {
            return;
        }
        for (tp, offset) in committed {
            if shared.repartition_topics.contains(&tp.topic) {
                self.to_purge.insert(tp.clone(), offset.offset);
            }
        }
        if self.last_purge.elapsed() < shared.config.repartition_purge_interval {
            return;
        }
        self.last_purge = Instant::now();
        for (tp, offset) in self.to_purge.drain() {
            if let Ok(partition) = shared.broker.partition(&tp.topic, tp.partition) {
                let _ = partition.delete_records(offset);
            }
        }
    }

    /// Writes the snapshots of `running`'s stores that are due: when the changelog grew by more
    /// than max(`SNAPSHOT_MIN_RECORDS`, store size) since the last one, when the last one is a
    /// quarter of the changelog's `delete_retention` old (restores ignore snapshots half that
    /// old), or on close; never when the changelog did not grow. Runs after the producer's
    /// flush, so the changelog holds everything the snapshot does.
    fn snapshot(shared: &Shared, id: TaskId, running: &mut Running, closing: bool) -> Result<()> {
        let mut wrote = false;
        for (i, (store, topic)) in running.task.changelogs().iter().enumerate() {
            let end = shared
                .broker
                .partition(topic, id.partition)?
                .log_end_offset();
            let grown = end.saturating_sub(running.snapshotted[i]);
            if grown == 0 {
                continue;
            }
            let aging =
                running.snapshot_at.elapsed() >= snapshot_max_age(&shared.broker, topic)? / 2;
            if closing || aging || grown > SNAPSHOT_MIN_RECORDS.max(store.len() as u64) {
                let path = snapshot_path(
                    &shared.state_dir,
                    &shared.config.application_id,
                    id,
                    store.name(),
                );
                snapshot::write(&path, &**store, end)?;
                running.snapshotted[i] = end;
                wrote = true;
            }
        }
        if wrote {
            running.snapshot_at = Instant::now();
        }
        Ok(())
    }

    /// Commits and closes the tasks that own any of `partitions` (`commit` false when the
    /// partitions were lost: another member may own them already).
    fn close_tasks_of(
        &mut self,
        consumer: &mut Consumer,
        partitions: &[TopicPartition],
        commit: bool,
    ) -> Result<()> {
        let ids: HashSet<TaskId> = partitions
            .iter()
            .filter_map(|tp| self.shared.layout.task_of(tp))
            .filter(|id| self.tasks.contains_key(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let result = if commit {
            match self.commit(consumer, Some(&ids), true) {
                // The group moved on: the partitions are lost, not revoked; their records since
                // the last commit go to the new owner.
                Err(Error::Fenced { .. }) => Ok(()),
                other => other,
            }
        } else {
            Ok(())
        };
        for id in ids {
            if let Some(running) = self.tasks.remove(&id) {
                self.closed_metrics += running.task.metrics();
                self.shared.unregister_task(id);
            }
        }
        result
    }

    /// Closes every task, after committing them when `commit` (a clean shutdown; not after a
    /// failure, whose records must be processed again).
    pub(crate) fn close_all(&mut self, consumer: &mut Consumer, commit: bool) -> Result<()> {
        let result = if commit {
            self.commit(consumer, None, true)
        } else {
            Ok(())
        };
        for (id, running) in self.tasks.drain() {
            self.closed_metrics += running.task.metrics();
            self.shared.unregister_task(id);
        }
        result
    }

    /// Counters of every task this thread ran.
    pub(crate) fn metrics(&self) -> TaskMetrics {
        let mut total = self.closed_metrics;
        for running in self.tasks.values() {
            total += running.task.metrics();
        }
        total
    }

    pub(crate) fn thread(&self) -> usize {
        self.thread
    }
}

fn send_failed(e: &Error) -> Error {
    Error::StreamsFailed(format!("writing an output or changelog record failed: {e}"))
}

/// Creates and closes tasks as the group moves partitions.
struct Listener {
    manager: Arc<Mutex<TaskManager>>,
    /// First error met inside a callback (callbacks cannot return one); the loop reports it.
    error: Arc<Mutex<Option<Error>>>,
}

impl Listener {
    fn record(&self, result: Result<()>) {
        if let Err(e) = result {
            self.error.lock().get_or_insert(e);
        }
    }
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.manager.lock().shared.rebalancing();
        let result = self
            .manager
            .lock()
            .close_tasks_of(consumer, partitions, true);
        self.record(result);
    }

    fn on_partitions_assigned(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let result = {
            let mut manager = self.manager.lock();
            manager.shared.rebalancing();
            let shared = Arc::clone(&manager.shared);
            partitions
                .iter()
                .filter_map(|tp| shared.layout.task_of(tp))
                .try_for_each(|id| {
                    if manager.tasks.contains_key(&id) {
                        Ok(())
                    } else {
                        manager.create(id)
                    }
                })
        };
        self.record(result);
    }

    fn on_partitions_lost(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let result = self
            .manager
            .lock()
            .close_tasks_of(consumer, partitions, false);
        self.record(result);
    }
}

/// The body of stream thread `index`; returns when the application stops or fails.
pub(crate) fn run(shared: &Arc<Shared>, index: usize) -> Result<()> {
    let config = &shared.config;
    let mut consumer = Consumer::new(
        &shared.broker,
        ConsumerConfig::default()
            .group_id(config.application_id.clone())
            .client_id(format!(
                "{}-StreamThread-{}",
                config.application_id,
                index + 1
            ))
            .enable_auto_commit(false)
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(config.max_poll_records)
            .session_timeout(config.session_timeout)
            .max_poll_interval(config.max_poll_interval)
            .partition_assignment_strategy(StreamsAssignor {
                layout: shared.layout.clone(),
            }),
    )?;
    shared.register_wakeup(consumer.wakeup_handle());
    let manager = Arc::new(Mutex::new(TaskManager::new(Arc::clone(shared), index)));
    let error = Arc::new(Mutex::new(None));
    consumer.set_rebalance_listener(Listener {
        manager: Arc::clone(&manager),
        error: Arc::clone(&error),
    });
    let topics = shared.source_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut last_commit = Instant::now();
    let result = (|| -> Result<()> {
        while !shared.stopping() {
            let records = match consumer.poll(config.poll_timeout) {
                Ok(records) => records,
                Err(Error::Closed) if shared.stopping() => break,
                Err(e) => return Err(e),
            };
            if let Some(e) = error.lock().take() {
                return Err(e);
            }
            shared.polled(index);
            let mut m = manager.lock();
            m.process(records)?;
            m.punctuate()?;
            if last_commit.elapsed() >= config.commit_interval || m.commit_requested() {
                match m.commit(&mut consumer, None, false) {
                    Ok(()) => {}
                    // The group removed this thread (it did not poll in time) and gave its
                    // tasks away: drop them uncommitted, as Kafka does on `TaskMigrated`; the
                    // next poll rejoins the group.
                    Err(Error::Fenced { .. }) => m.close_all(&mut consumer, false)?,
                    Err(e) => return Err(e),
                }
                last_commit = Instant::now();
            }
            shared.publish_metrics(m.thread(), m.metrics());
        }
        Ok(())
    })();
    // Clean shutdown after success; after a failure, close without committing what failed.
    let closed = manager.lock().close_all(&mut consumer, result.is_ok());
    {
        let m = manager.lock();
        shared.publish_metrics(m.thread(), m.metrics());
    }
    let left = consumer.close();
    result.and(closed).and(left)
}
