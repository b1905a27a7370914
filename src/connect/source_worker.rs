//! The thread of one source task (Kafka Connect's `WorkerSourceTask`): poll the task, run the
//! transforms, convert, send with the producer, and every `offset_flush_interval` (or
//! [`MAX_UNCOMMITTED`] records) flush the producer and store the newest source offset of each
//! source partition in `__connect_offsets`.
//!
//! Invariants:
//! 1. `pending` holds, for each source partition, the offset of the last record polled; every
//!    record polled before it was sent (or dropped by a transform, or skipped as bad).
//! 2. Offsets are stored only after `Producer::flush` and after every send future of the
//!    records before them completed without error (invariant 1 of `offsets.rs`). After a crash
//!    the task repeats at most the records polled since the last stored offsets.
//! 3. Once its `start` was called, the task's `stop` is called exactly once however the thread
//!    ends (a clean stop, an error, a panic), as for sink tasks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::api::{SourceTask, SourceTaskContext};
use super::config::ConnectorConfig;
use super::control::{catch, ConnectorState, Target, TaskControl};
use super::converter::{self, Converter};
use super::data::{ConnectRecord, SourceRecord};
use super::dead_letter::{ErrorHandler, Stage};
use super::offsets::OffsetStore;
use super::registry::Plugins;
use super::transform::Transform;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerRecord, SendFuture};

/// Records sent before offsets are stored even if `offset_flush_interval` has not passed, so
/// that the send futures held meanwhile stay bounded.
pub(crate) const MAX_UNCOMMITTED: usize = 100_000;

/// Everything a source task's thread needs.
pub(crate) struct SourceWorker {
    pub broker: Broker,
    pub producer: Producer,
    pub offsets: Arc<OffsetStore>,
    pub control: Arc<TaskControl>,
    pub plugins: Arc<Plugins>,
    /// The connector's config: converters, transforms, error handling.
    pub connector_config: ConnectorConfig,
    /// The task's config, for the task.
    pub task_config: ConnectorConfig,
    pub task_id: usize,
    pub flush_interval: Duration,
}

struct Pipeline {
    key_converter: Box<dyn Converter>,
    value_converter: Box<dyn Converter>,
    transforms: Vec<Box<dyn Transform>>,
    errors: ErrorHandler,
    topic_partitions: u32,
    known_topics: HashSet<Arc<str>>,
    /// Invariant 1.
    pending: Vec<(Arc<Value>, Value)>,
    futures: Vec<SendFuture>,
    last_commit: Instant,
}

impl SourceWorker {
    /// Runs the task until asked to stop or until it fails; records the outcome in the task's
    /// state.
    pub fn run(self, mut task: Box<dyn SourceTask>) {
        let control = Arc::clone(&self.control);
        let mut started = false;
        let outcome = catch(|| self.run_task(task.as_mut(), &mut started));
        // Invariant 3, after the last commit.
        let stopped = if started {
            catch(|| task.stop())
        } else {
            Ok(())
        };
        let outcome = match (outcome, stopped) {
            (Ok(Ok(())), Err(panic)) => Err(panic),
            (outcome, _) => outcome,
        };
        finish(&control, outcome);
    }

    fn run_task(&self, task: &mut dyn SourceTask, started: &mut bool) -> Result<(), String> {
        let mut p = self.pipeline().map_err(|e| e.to_string())?;
        let name: Arc<str> = self.connector_config.name().into();
        let context = SourceTaskContext::new(
            Arc::clone(&name),
            self.task_id,
            Arc::clone(&self.offsets),
            Arc::clone(&self.control),
        );
        *started = true;
        task.start(&self.task_config, &context)
            .map_err(|e| format!("starting the task: {e}"))?;
        self.control.set_state(ConnectorState::Running, None);
        let result = self.poll_loop(task, &mut p);
        // What was sent and acknowledged is safe to commit even after an error.
        let committed = self.commit(task, &mut p);
        result.and(committed)
    }

    fn pipeline(&self) -> Result<Pipeline> {
        let c = &self.connector_config;
        let topic_partitions: u32 = c.parse_or("topic.creation.default.partitions", 1)?;
        if topic_partitions == 0 {
            return Err(c.error("topic.creation.default.partitions", "must be at least 1"));
        }
        Ok(Pipeline {
            key_converter: converter::from_config(c, "key.converter")?,
            value_converter: converter::from_config(c, "value.converter")?,
            transforms: self.plugins.transforms(c)?,
            errors: ErrorHandler::new(
                &self.broker,
                c,
                self.task_id,
                false,
                Arc::clone(&self.control),
            )?,
            topic_partitions,
            known_topics: HashSet::new(),
            pending: Vec::new(),
            futures: Vec::new(),
            last_commit: Instant::now(),
        })
    }

    fn poll_loop(&self, task: &mut dyn SourceTask, p: &mut Pipeline) -> Result<(), String> {
        loop {
            match self.control.target() {
                Target::Stop => return Ok(()),
                Target::Pause => {
                    self.commit(task, p)?;
                    self.control.set_state(ConnectorState::Paused, None);
                    while self.control.wait_while_paused(Duration::from_secs(1)) == Target::Pause {}
                    self.control.set_state(ConnectorState::Running, None);
                    continue;
                }
                Target::Run => {}
            }
            let records = task.poll().map_err(|e| format!("polling the task: {e}"))?;
            let n = records.len() as u64;
            for record in records {
                self.send(p, record)?;
            }
            TaskControl::count(&self.control.records, n);
            if p.last_commit.elapsed() >= self.flush_interval || p.futures.len() >= MAX_UNCOMMITTED
            {
                self.commit(task, p)?;
            }
        }
    }

    /// Sends one record; its source offset becomes committable only once the record was
    /// handed to the producer, dropped by a transform, or tolerated as errant (an error before
    /// that must leave the offset where it was, or a restart would skip the record).
    fn send(&self, p: &mut Pipeline, record: SourceRecord) -> Result<(), String> {
        let SourceRecord {
            source_partition,
            source_offset,
            record,
        } = record;
        self.send_record(p, record)?;
        remember(&mut p.pending, source_partition, source_offset);
        Ok(())
    }

    fn send_record(&self, p: &mut Pipeline, record: ConnectRecord) -> Result<(), String> {
        let mut record = Some(record);
        for t in &mut p.transforms {
            let Some(r) = record.take() else { break };
            match t.apply(r) {
                Ok(next) => record = next,
                Err(e) => {
                    let class = t.name().to_string();
                    return p
                        .errors
                        .tolerate(Stage::Transformation, &class, None, e)
                        .map_err(|e| format!("transform {class}: {e}"));
                }
            }
        }
        let Some(record) = record else {
            return Ok(());
        };
        let topic = Arc::clone(&record.topic);
        let key = match record.key {
            None => None,
            Some(k) => match p.key_converter.encode(&topic, k) {
                Ok(b) => Some(b),
                Err(e) => {
                    return tolerate(p, Stage::KeyConverter, "key.converter", e.into());
                }
            },
        };
        let value = match record.value {
            None => None,
            Some(v) => match p.value_converter.encode(&topic, v) {
                Ok(b) => Some(b),
                Err(e) => {
                    return tolerate(p, Stage::ValueConverter, "value.converter", e.into());
                }
            },
        };
        self.ensure_topic(p, &topic)
            .map_err(|e| format!("topic `{topic}` of a record: {e}"))?;
        let mut out = ProducerRecord::new(String::from(&*topic), Bytes::new())
            .value(value)
            .headers(record.headers);
        if let Some(key) = key {
            out = out.key(key);
        }
        if let Some(partition) = record.partition {
            out = out.partition(partition);
        }
        if let Some(ts) = record.timestamp {
            out = out.timestamp(ts);
        }
        let future = self
            .producer
            .send_async(out)
            .map_err(|e| format!("sending to `{topic}`: {e}"))?;
        p.futures.push(future);
        Ok(())
    }

    /// Creates `topic` if it does not exist (Kafka's `auto.create.topics.enable`).
    fn ensure_topic(&self, p: &mut Pipeline, topic: &Arc<str>) -> Result<()> {
        if p.known_topics.contains(topic) {
            return Ok(());
        }
        match self.broker.topic(topic) {
            Ok(_) => {}
            Err(Error::UnknownTopic(_)) => {
                match self.broker.create_topic(topic, p.topic_partitions) {
                    Ok(_) | Err(Error::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        p.known_topics.insert(Arc::clone(topic));
        Ok(())
    }

    /// Invariant 2: flush, check every send, then store the offsets.
    fn commit(&self, task: &mut dyn SourceTask, p: &mut Pipeline) -> Result<(), String> {
        p.last_commit = Instant::now();
        if p.pending.is_empty() && p.futures.is_empty() {
            return Ok(());
        }
        self.producer.flush().map_err(|e| e.to_string())?;
        for future in p.futures.drain(..) {
            let outcome = match future.try_result() {
                Some(outcome) => outcome,
                None => future.wait(),
            };
            if let Err(e) = outcome {
                p.pending.clear();
                return Err(format!("writing a record to its topic: {e}"));
            }
        }
        let name = self.connector_config.name();
        self.offsets
            .write(name, &p.pending)
            .map_err(|e| format!("storing source offsets: {e}"))?;
        p.pending.clear();
        TaskControl::count(&self.control.commits, 1);
        task.commit().map_err(|e| format!("the task's commit: {e}"))
    }
}

fn tolerate(p: &Pipeline, stage: Stage, class: &str, error: Error) -> Result<(), String> {
    p.errors
        .tolerate(stage, class, None, error)
        .map_err(|e| format!("{}: {e}", stage.as_str()))
}

/// Sets the pending offset of `partition` (invariant 1). Tasks usually reuse one `Arc` per
/// partition, so the common case is one pointer comparison.
fn remember(pending: &mut Vec<(Arc<Value>, Value)>, partition: Arc<Value>, offset: Value) {
    if let Some((p, o)) = pending.last_mut() {
        if Arc::ptr_eq(p, &partition) {
            *o = offset;
            return;
        }
    }
    match pending.iter_mut().find(|(p, _)| **p == *partition) {
        Some((_, o)) => *o = offset,
        None => pending.push((partition, offset)),
    }
}

/// Records how a task's thread ended: `Err` holds a panic's message.
pub(crate) fn finish(control: &TaskControl, outcome: Result<Result<(), String>, String>) {
    match outcome {
        Ok(Ok(())) => control.set_state(ConnectorState::Unassigned, None),
        Ok(Err(trace)) => control.set_state(ConnectorState::Failed, Some(trace)),
        Err(message) => control.set_state(
            ConnectorState::Failed,
            Some(format!("the task panicked: {message}")),
        ),
    }
}
