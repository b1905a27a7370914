//! The contracts between the runtime and a connector: [`SourceConnector`] and [`SinkConnector`]
//! split their work into tasks, [`SourceTask`]s read from the outside system, [`SinkTask`]s
//! write to it (Kafka Connect's `connect/api`).
//!
//! Life of a connector: the runtime creates it, calls `start` with its config (which it checks,
//! naming the bad key in its error), asks for at most `tasks.max` task configs, and runs one
//! task per config on a thread of its own: `start`, then `poll` (source) or `put` and `flush`
//! (sink) in a loop, then `stop`. A task that returns an error or panics is marked failed (its
//! `stop` is still called, once its `start` was); it can be restarted with a new instance
//! without touching the others. A connector method that panics fails what called it: `start`
//! or `task_configs` make [`Connect::start_connector`](crate::Connect::start_connector) return
//! [`Error::ConnectorFailed`], `task` makes a failed task, a panic in `stop` is ignored; none
//! unwinds into the application.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::config::ConnectorConfig;
use super::control::{Target, TaskControl};
use super::data::{SinkRecord, SourceRecord};
use super::dead_letter::{ErrorHandler, Stage};
use super::offsets::OffsetStore;
use crate::error::{Error, Result};
use crate::partition::TopicPartition;

/// A connector that reads an outside system into topics (Kafka Connect's `SourceConnector`).
pub trait SourceConnector: Send {
    /// Checks and keeps `config`. Errors name the bad key ([`ConnectorConfig::error`]).
    fn start(&mut self, config: &ConnectorConfig) -> Result<()>;

    /// The configurations of the tasks to run, at most `max_tasks` (at least 1), each holding
    /// everything its task needs (usually the connector's config plus the task's share of the
    /// work, such as its tables).
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>>;

    /// A new task, not started.
    fn task(&self) -> Box<dyn SourceTask>;

    /// Releases what `start` took. Default: nothing.
    fn stop(&mut self) {}
}

/// Reads records from an outside system (Kafka Connect's `SourceTask`).
///
/// The runtime calls [`poll`](Self::poll) in a loop on the task's own thread. Each record names
/// its source partition and offset; once its records are stored in their topics, the runtime
/// stores the offsets and calls [`commit`](Self::commit). On a restart, [`start`](Self::start)
/// reads the stored offsets with [`SourceTaskContext::offset`] and continues after them.
pub trait SourceTask: Send {
    /// Starts with the task's config.
    fn start(&mut self, config: &ConnectorConfig, context: &SourceTaskContext) -> Result<()>;

    /// The next records, in order; empty when there are none now. Should return within about a
    /// tenth of a second when it has nothing, so that pause and stop are prompt: wait with
    /// [`SourceTaskContext::idle`], which ends early on those.
    fn poll(&mut self) -> Result<Vec<SourceRecord>>;

    /// The offsets of every record polled so far were stored. Default: nothing.
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }

    /// Releases what `start` took. Called once after `start` was called, however the task
    /// ended: stopped, failed (also when `start` itself failed) or panicked. Default: nothing.
    fn stop(&mut self) {}
}

/// A connector that writes topics to an outside system (Kafka Connect's `SinkConnector`).
///
/// Its config names the topics to read with `topics` (comma-separated) or `topics.regex`. The
/// tasks form the consumer group `connect-<name>`, which shares the topics' partitions out.
pub trait SinkConnector: Send {
    /// Checks and keeps `config`. Errors name the bad key ([`ConnectorConfig::error`]).
    fn start(&mut self, config: &ConnectorConfig) -> Result<()>;

    /// The configurations of the tasks to run, at most `max_tasks` (at least 1).
    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>>;

    /// A new task, not started.
    fn task(&self) -> Box<dyn SinkTask>;

    /// Releases what `start` took. Default: nothing.
    fn stop(&mut self) {}
}

/// Writes records to an outside system (Kafka Connect's `SinkTask`).
///
/// [`put`](Self::put) receives records in offset order per partition; it may buffer them.
/// [`flush`](Self::flush) must make everything put so far durable in the outside system: only
/// then does the runtime commit the consumer offsets past those records, so after a crash the
/// records after the last flush are delivered again (at-least-once; an idempotent write, such
/// as an upsert by key, makes the repeats harmless).
pub trait SinkTask: Send {
    /// Starts with the task's config.
    fn start(&mut self, config: &ConnectorConfig, context: &SinkTaskContext) -> Result<()>;

    /// These partitions were assigned to the task. Default: nothing.
    fn open(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let _ = partitions;
        Ok(())
    }

    /// Writes (or buffers) `records`.
    fn put(&mut self, records: Vec<SinkRecord>) -> Result<()>;

    /// Makes everything put so far durable.
    fn flush(&mut self) -> Result<()>;

    /// These partitions are taken from the task (after a flush). Default: nothing.
    fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let _ = partitions;
        Ok(())
    }

    /// Releases what `start` took. Called once after `start` was called, however the task
    /// ended: stopped, failed (also when `start` itself failed, or `put` or `flush` did) or
    /// panicked, as Kafka Connect does. Default: nothing.
    fn stop(&mut self) {}
}

/// What a source task can ask the runtime (Kafka Connect's `SourceTaskContext`).
#[derive(Clone)]
pub struct SourceTaskContext {
    connector: Arc<str>,
    task: usize,
    offsets: Arc<OffsetStore>,
    control: Arc<TaskControl>,
}

impl std::fmt::Debug for SourceTaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTaskContext")
            .field("connector", &self.connector)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

impl SourceTaskContext {
    pub(crate) fn new(
        connector: Arc<str>,
        task: usize,
        offsets: Arc<OffsetStore>,
        control: Arc<TaskControl>,
    ) -> Self {
        SourceTaskContext {
            connector,
            task,
            offsets,
            control,
        }
    }

    /// The connector's name.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The task's number (0-based).
    pub fn task_id(&self) -> usize {
        self.task
    }

    /// The stored offset of the source partition `partition`: where to continue.
    ///
    /// Errors: reading `__connect_offsets` failed.
    pub fn offset(&self, partition: &Value) -> Result<Option<Value>> {
        self.offsets.get(&self.connector, partition)
    }

    /// Waits up to `timeout`, less if the task is asked to pause or stop. Returns whether the
    /// task is still asked to run.
    pub fn idle(&self, timeout: Duration) -> bool {
        self.control.wait_while_running(timeout) == Target::Run
    }
}

/// What a sink task can ask the runtime (Kafka Connect's `SinkTaskContext`).
#[derive(Clone)]
pub struct SinkTaskContext {
    connector: Arc<str>,
    task: usize,
    errors: Arc<ErrorHandler>,
}

impl std::fmt::Debug for SinkTaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkTaskContext")
            .field("connector", &self.connector)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

impl SinkTaskContext {
    pub(crate) fn new(connector: Arc<str>, task: usize, errors: Arc<ErrorHandler>) -> Self {
        SinkTaskContext {
            connector,
            task,
            errors,
        }
    }

    /// The connector's name.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// The task's number (0-based).
    pub fn task_id(&self) -> usize {
        self.task
    }

    /// Reports a record the task cannot write (Kafka Connect's `ErrantRecordReporter`): under
    /// `errors.tolerance=all` it is skipped and sent to the dead-letter topic, if there is one,
    /// with `reason` in its headers, and this returns `Ok`; under `none` this returns the error,
    /// which the task should return to fail.
    pub fn report(&self, record: &SinkRecord, reason: Error) -> Result<()> {
        self.errors
            .tolerate(Stage::TaskPut, "SinkTask", record.raw.as_ref(), reason)
    }
}
