//! `StreamsConfig`: how a Streams application runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::topic::validate_topic_name;

/// Processing guarantees. Only at-least-once exists today; the commit is built as the steps
/// "flush outputs and changelogs, checkpoint stores, commit input offsets", the place where a
/// transaction would go for exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// Every input record's effects (output records, store changes) are durable before its
    /// offset is committed. After a crash, records since the last commit are processed again:
    /// outputs may repeat, nothing is lost.
    #[default]
    AtLeastOnce,
}

/// Configuration of a Streams application (Kafka's `StreamsConfig`).
///
/// ```
/// use std::time::Duration;
/// use tidelog::StreamsConfig;
/// let config = StreamsConfig::new("wordcount")
///     .num_stream_threads(2)
///     .commit_interval(Duration::from_millis(500));
/// assert_eq!(config.application_id(), "wordcount");
/// ```
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub(crate) application_id: String,
    pub(crate) num_stream_threads: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) poll_timeout: Duration,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) skip_undecodable_records: bool,
    pub(crate) processing_guarantee: ProcessingGuarantee,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) max_poll_records: usize,
    pub(crate) cache_max_bytes: usize,
    pub(crate) repartition_purge_interval: Duration,
}

impl StreamsConfig {
    /// An application called `application_id`: its consumer group id and the prefix of its
    /// internal topics (`<id>-<store>-changelog`, `<id>-<name>-repartition`). Defaults: one
    /// stream thread, commit every second, state in `<broker dir>/streams-state`.
    pub fn new(application_id: impl Into<String>) -> Self {
        StreamsConfig {
            application_id: application_id.into(),
            num_stream_threads: 1,
            commit_interval: Duration::from_secs(1),
            poll_timeout: Duration::from_millis(100),
            state_dir: None,
            skip_undecodable_records: false,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            max_poll_records: 1000,
            cache_max_bytes: 10 << 20,
            repartition_purge_interval: Duration::from_secs(30),
        }
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Threads that run tasks (default 1). Tasks are shared among the threads of all instances
    /// of the application by the consumer group.
    #[must_use]
    pub fn num_stream_threads(mut self, threads: usize) -> Self {
        self.num_stream_threads = threads;
        self
    }

    /// How often processed work is committed (default 1 s; Kafka's default is 30 s, but a
    /// commit here costs microseconds plus the topics' fsync, and a shorter interval means
    /// fewer records processed twice after a crash).
    #[must_use]
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.commit_interval = every;
        self
    }

    /// How often records of repartition topics that every reader has committed are deleted
    /// (Kafka's `repartition.purge.interval.ms`, default 30 s): after a commit that is at least
    /// this long after the last purge, a stream thread moves the log start offset of the
    /// repartition partitions it committed to the committed offset
    /// ([`Partition::delete_records`](crate::Partition::delete_records)), so those topics do
    /// not grow with everything that went through them.
    #[must_use]
    pub fn repartition_purge_interval(mut self, every: Duration) -> Self {
        self.repartition_purge_interval = every;
        self
    }

    /// How long a stream thread waits for records before it looks at punctuations and
    /// commits (default 100 ms).
    #[must_use]
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Where store snapshots are kept (default `<broker dir>/streams-state`); under it,
    /// `<application id>/<task id>/<store>.snapshot`.
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Skip records whose key or value cannot be decoded, counting them, instead of stopping
    /// the application with an error (default: stop, Kafka's `LogAndFailExceptionHandler`).
    #[must_use]
    pub fn skip_undecodable_records(mut self, skip: bool) -> Self {
        self.skip_undecodable_records = skip;
        self
    }

    /// The processing guarantee (default and only one: at-least-once).
    #[must_use]
    pub fn processing_guarantee(mut self, guarantee: ProcessingGuarantee) -> Self {
        self.processing_guarantee = guarantee;
        self
    }

    /// Session timeout of the application's group members (default 45 s): how long the tasks
    /// of a stream thread that died without closing stay with it.
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long a stream thread may spend on one poll's records (plus punctuation and commit)
    /// before the group gives its tasks to others (default 5 min, Kafka's
    /// `max.poll.interval.ms`). The thread then drops its uncommitted work and rejoins; the
    /// records are processed again by the new owners.
    #[must_use]
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Memory each aggregation of each task may use to hold back updates (Kafka's record cache,
    /// `statestore.cache.max.bytes`; default 10 MiB). An aggregation forwards only the latest
    /// update of each key since its last flush: at every commit, or when this much is held.
    /// 0 forwards every update as it happens. The test driver flushes after every record.
    #[must_use]
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Records a stream thread takes per poll (default 1000).
    #[must_use]
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.max_poll_records = records;
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &'static str, reason: &str| Error::InvalidConfig {
            key,
            reason: reason.into(),
        };
        if self.application_id.is_empty() {
            return Err(bad("application_id", "must not be empty"));
        }
        // Internal topic names start with it.
        validate_topic_name(&self.application_id).map_err(|_| {
            bad(
                "application_id",
                "may hold only letters, digits, '.', '_' and '-' (it prefixes topic names)",
            )
        })?;
        if self.num_stream_threads == 0 {
            return Err(bad("num_stream_threads", "must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(bad("commit_interval", "must be at least 1 ms"));
        }
        if self.max_poll_records == 0 {
            return Err(bad("max_poll_records", "must be at least 1"));
        }
        Ok(())
    }
}
