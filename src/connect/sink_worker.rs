//! The thread of one sink task (Kafka Connect's `WorkerSinkTask`): consume through the group
//! `connect-<name>`, convert, run the transforms, `put` into the task, and every
//! `offset_flush_interval` `flush` the task and then commit the offsets past what it flushed.
//!
//! Invariants:
//! 1. `pending` holds, for each partition, the offset after the last record handed to `put`
//!    (or skipped as bad, or dropped by a transform) and not yet committed.
//! 2. Offsets are committed only after `flush` returned `Ok`, and only those in `pending` at the
//!    time of that flush; a revoked partition is flushed and committed in the rebalance
//!    listener before it moves, so its next owner starts after what this task wrote. After a
//!    crash the group repeats at most the records since the last commit.
//! 3. A task that failed commits nothing more: its consumer is dropped without a commit.
//! 4. Once its `start` was called, the task's `stop` is called exactly once however the thread
//!    ends (a clean stop, an error, a panic), as Kafka Connect's `WorkerSinkTask.close` does,
//!    so that it releases what it holds (connections, files, locks).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::api::{SinkTask, SinkTaskContext};
use super::config::ConnectorConfig;
use super::control::{catch, ConnectorState, Target, TaskControl};
use super::converter::{self, Converter};
use super::data::{ConnectRecord, SinkRecord};
use super::dead_letter::{ErrorHandler, Stage};
use super::registry::Plugins;
use super::source_worker::finish;
use super::transform::Transform;
use crate::broker::Broker;
use crate::consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, RebalanceListener};
use crate::error::{Error, Result};
use crate::group::offsets::OffsetAndMetadata;
use crate::partition::TopicPartition;

/// How long one poll of the task's consumer waits for records.
const POLL: Duration = Duration::from_millis(100);

/// Everything a sink task's thread needs.
pub(crate) struct SinkWorker {
    pub broker: Broker,
    pub control: Arc<TaskControl>,
    pub plugins: Arc<Plugins>,
    pub connector_config: ConnectorConfig,
    pub task_config: ConnectorConfig,
    pub task_id: usize,
    pub flush_interval: Duration,
}

/// What the worker loop and the rebalance listener share (both on the task's thread).
struct Shared {
    task: Box<dyn SinkTask>,
    /// Invariant 1.
    pending: BTreeMap<TopicPartition, u64>,
    /// An error met in the listener, reported by the loop after the poll.
    error: Option<String>,
    /// Whether `start` was called, and whether `stop` was (invariant 4).
    started: bool,
    stopped: bool,
}

impl Shared {
    /// Invariant 4.
    fn stop(&mut self) {
        if self.started && !self.stopped {
            self.stopped = true;
            self.task.stop();
        }
    }
}

struct Listener {
    shared: Arc<Mutex<Shared>>,
    control: Arc<TaskControl>,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut s = self.shared.lock();
        if s.error.is_some() {
            return;
        }
        let result = flush_and_commit(consumer, &mut s, &self.control).and_then(|()| {
            s.task
                .close(partitions)
                .map_err(|e| format!("closing partitions: {e}"))
        });
        if let Err(e) = result {
            s.error = Some(e);
        }
    }

    fn on_partitions_assigned(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut s = self.shared.lock();
        if s.error.is_none() {
            if let Err(e) = s.task.open(partitions) {
                s.error = Some(format!("opening partitions: {e}"));
            }
        }
    }

    fn on_partitions_lost(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let mut s = self.shared.lock();
        // Others own them now: what was not committed is theirs to repeat.
        for tp in partitions {
            s.pending.remove(tp);
        }
        if s.error.is_none() {
            if let Err(e) = s.task.close(partitions) {
                s.error = Some(format!("closing lost partitions: {e}"));
            }
        }
    }
}

/// Invariant 2: flush the task, then commit what it flushed.
fn flush_and_commit(
    consumer: &mut Consumer,
    s: &mut Shared,
    control: &TaskControl,
) -> Result<(), String> {
    if s.pending.is_empty() {
        return Ok(());
    }
    s.task
        .flush()
        .map_err(|e| format!("flushing the task: {e}"))?;
    let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = std::mem::take(&mut s.pending)
        .into_iter()
        .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
        .collect();
    match consumer.commit_sync_offsets(&offsets) {
        Ok(()) => {
            TaskControl::count(&control.commits, 1);
            Ok(())
        }
        // The group moved the partitions on; their new owner repeats the records (as Kafka
        // Connect does after a failed commit).
        Err(Error::Fenced { .. }) => Ok(()),
        Err(e) => Err(format!("committing offsets: {e}")),
    }
}

struct Pipeline {
    key_converter: Box<dyn Converter>,
    value_converter: Box<dyn Converter>,
    transforms: Vec<Box<dyn Transform>>,
    errors: Arc<ErrorHandler>,
}

impl SinkWorker {
    /// Runs the task until asked to stop or until it fails; records the outcome in the task's
    /// state.
    pub fn run(self, task: Box<dyn SinkTask>) {
        let control = Arc::clone(&self.control);
        let shared = Arc::new(Mutex::new(Shared {
            task,
            pending: BTreeMap::new(),
            error: None,
            started: false,
            stopped: false,
        }));
        let outcome = catch(|| self.run_task(&shared));
        self.control.set_wakeup(None);
        // Invariant 4, after a failure (the consumer is gone: invariant 3). A panic in `stop`
        // does not hide why the task failed.
        let stopped = catch(|| shared.lock().stop());
        let outcome = match (outcome, stopped) {
            (Ok(Ok(())), Err(panic)) => Err(panic),
            (outcome, _) => outcome,
        };
        finish(&control, outcome);
    }

    fn run_task(&self, shared: &Arc<Mutex<Shared>>) -> Result<(), String> {
        let c = &self.connector_config;
        let name = c.name();
        let mut p = Pipeline {
            key_converter: converter::from_config(c, "key.converter").map_err(|e| e.to_string())?,
            value_converter: converter::from_config(c, "value.converter")
                .map_err(|e| e.to_string())?,
            transforms: self.plugins.transforms(c).map_err(|e| e.to_string())?,
            errors: Arc::new(
                ErrorHandler::new(
                    &self.broker,
                    c,
                    self.task_id,
                    true,
                    Arc::clone(&self.control),
                )
                .map_err(|e| e.to_string())?,
            ),
        };
        let max_poll: usize = c
            .parse_or("consumer.max.poll.records", 500)
            .map_err(|e| e.to_string())?;
        let mut consumer = self
            .broker
            .consumer(
                ConsumerConfig::default()
                    .group_id(format!("connect-{name}"))
                    .client_id(format!("connector-consumer-{name}-{}", self.task_id))
                    .enable_auto_commit(false)
                    .auto_offset_reset(OffsetReset::Earliest)
                    .max_poll_records(max_poll.max(1)),
            )
            .map_err(|e| e.to_string())?;
        self.control.set_wakeup(Some(consumer.wakeup_handle()));
        let context = SinkTaskContext::new(name.into(), self.task_id, Arc::clone(&p.errors));
        {
            let mut s = shared.lock();
            s.started = true;
            s.task
                .start(&self.task_config, &context)
                .map_err(|e| format!("starting the task: {e}"))?;
        }
        consumer.set_rebalance_listener(Listener {
            shared: Arc::clone(shared),
            control: Arc::clone(&self.control),
        });
        subscribe(&mut consumer, c).map_err(|e| e.to_string())?;
        self.control.set_state(ConnectorState::Running, None);
        // A panic of the task is its failure too: caught here, so that dropping the consumer
        // (whose rebalance listener would flush and commit) keeps invariant 3.
        let result = catch(|| self.consume_loop(&mut consumer, shared, &mut p))
            .unwrap_or_else(|panic| Err(format!("the task panicked: {panic}")));
        if let Err(e) = &result {
            // Invariant 3: the listener commits nothing once an error is recorded, and the
            // consumer's auto-commit is off, so dropping it leaves the group without a commit.
            shared.lock().error = Some(e.clone());
            return result;
        }
        let mut s = shared.lock();
        flush_and_commit(&mut consumer, &mut s, &self.control)?;
        let assigned = consumer.assignment();
        s.task
            .close(&assigned)
            .map_err(|e| format!("closing partitions: {e}"))?;
        s.stop();
        drop(s);
        consumer.close().map_err(|e| e.to_string())
    }

    fn consume_loop(
        &self,
        consumer: &mut Consumer,
        shared: &Mutex<Shared>,
        p: &mut Pipeline,
    ) -> Result<(), String> {
        let mut last_flush = Instant::now();
        let mut paused = false;
        loop {
            match self.control.target() {
                Target::Stop => return Ok(()),
                Target::Pause => {
                    if !paused {
                        let mut s = shared.lock();
                        flush_and_commit(consumer, &mut s, &self.control)?;
                        paused = true;
                        self.control.set_state(ConnectorState::Paused, None);
                    }
                    // Partitions assigned meanwhile are paused too.
                    let assigned = consumer.assignment();
                    consumer.pause(&assigned).map_err(|e| e.to_string())?;
                }
                Target::Run => {
                    if paused {
                        let held = consumer.paused();
                        consumer.resume(&held).map_err(|e| e.to_string())?;
                        paused = false;
                        self.control.set_state(ConnectorState::Running, None);
                    }
                }
            }
            let records = consumer.poll(POLL).map_err(|e| format!("polling: {e}"))?;
            if let Some(e) = shared.lock().error.take() {
                return Err(e);
            }
            if paused && !records.is_empty() {
                // Records of partitions assigned during the poll: read them after resuming.
                for tp in records.partitions() {
                    if let Some(first) = records.records(&tp).first() {
                        consumer
                            .seek(&tp, first.offset)
                            .map_err(|e| e.to_string())?;
                    }
                }
                continue;
            }
            if !records.is_empty() {
                let ends: Vec<(TopicPartition, u64)> = records
                    .partitions()
                    .into_iter()
                    .filter_map(|tp| {
                        let last = records.records(&tp).last()?.offset;
                        Some((tp, last + 1))
                    })
                    .collect();
                let n = records.len() as u64;
                let mut batch = Vec::with_capacity(records.len());
                for raw in records.into_vec() {
                    if let Some(record) = Self::prepare(p, raw)? {
                        batch.push(record);
                    }
                }
                let mut s = shared.lock();
                if !batch.is_empty() {
                    s.task.put(batch).map_err(|e| format!("put: {e}"))?;
                }
                s.pending.extend(ends);
                TaskControl::count(&self.control.records, n);
            }
            if last_flush.elapsed() >= self.flush_interval {
                let mut s = shared.lock();
                flush_and_commit(consumer, &mut s, &self.control)?;
                last_flush = Instant::now();
            }
        }
    }

    /// Converts and transforms one consumed record; `None` when it was dropped or skipped.
    fn prepare(p: &mut Pipeline, raw: ConsumerRecord) -> Result<Option<SinkRecord>, String> {
        let topic = &raw.topic;
        let key = match &raw.key {
            None => None,
            Some(k) => match p.key_converter.decode(topic, k) {
                Ok(d) => Some(d),
                Err(e) => {
                    return skip(p, Stage::KeyConverter, "key.converter", &raw, e.into());
                }
            },
        };
        let value = match &raw.value {
            None => None,
            Some(v) => match p.value_converter.decode(topic, v) {
                Ok(d) => Some(d),
                Err(e) => {
                    return skip(p, Stage::ValueConverter, "value.converter", &raw, e.into());
                }
            },
        };
        let mut record = Some(ConnectRecord {
            topic: Arc::clone(topic),
            partition: Some(raw.partition),
            offset: Some(raw.offset),
            key,
            value,
            timestamp: Some(raw.timestamp),
            headers: raw.headers.clone(),
        });
        for t in &mut p.transforms {
            let Some(r) = record.take() else { break };
            match t.apply(r) {
                Ok(next) => record = next,
                Err(e) => {
                    let class = t.name().to_string();
                    return skip(p, Stage::Transformation, &class, &raw, e);
                }
            }
        }
        Ok(record.map(|record| SinkRecord {
            record,
            kafka_topic: Arc::clone(&raw.topic),
            kafka_partition: raw.partition,
            kafka_offset: raw.offset,
            raw: Some(raw),
        }))
    }
}

fn skip(
    p: &Pipeline,
    stage: Stage,
    class: &str,
    raw: &ConsumerRecord,
    error: Error,
) -> Result<Option<SinkRecord>, String> {
    p.errors
        .tolerate(stage, class, Some(raw), error)
        .map(|()| None)
        .map_err(|e| {
            format!(
                "{} failed on {}-{}@{} (errors.tolerance=none): {e}",
                stage.as_str(),
                raw.topic,
                raw.partition,
                raw.offset
            )
        })
}

/// Subscribes to `topics` or `topics.regex` (checked when the connector started).
fn subscribe(consumer: &mut Consumer, c: &ConnectorConfig) -> Result<()> {
    if let Some(pattern) = c.get("topics.regex") {
        return consumer.subscribe_pattern(pattern.trim());
    }
    let topics = c.list("topics");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)
}

/// Checks a sink's `topics` / `topics.regex` and its dead-letter topic, as Kafka Connect does.
pub(crate) fn check_sink_config(c: &ConnectorConfig) -> Result<()> {
    let topics = c.list("topics");
    let regex = c
        .get("topics.regex")
        .map(str::trim)
        .filter(|r| !r.is_empty());
    match (topics.is_empty(), regex) {
        (true, None) => return Err(c.error("topics", "a sink needs `topics` or `topics.regex`")),
        (false, Some(_)) => {
            return Err(c.error("topics.regex", "set `topics` or `topics.regex`, not both"))
        }
        (true, Some(r)) => {
            regex::Regex::new(r).map_err(|e| c.error("topics.regex", &e.to_string()))?;
        }
        (false, None) => {
            for t in &topics {
                crate::topic::validate_topic_name(t)
                    .map_err(|e| c.error("topics", &e.to_string()))?;
            }
        }
    }
    let dlq_key = "errors.deadletterqueue.topic.name";
    if let Some(dlq) = c.get(dlq_key).map(str::trim).filter(|t| !t.is_empty()) {
        crate::topic::validate_topic_name(dlq).map_err(|e| c.error(dlq_key, &e.to_string()))?;
        if topics.iter().any(|t| t == dlq) {
            return Err(c.error(
                dlq_key,
                "the dead-letter topic cannot be one of the topics the sink reads",
            ));
        }
    }
    Ok(())
}
