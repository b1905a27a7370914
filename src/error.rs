//! The one error type of tidelog.
//!
//! Variants are grouped by what the caller can do about them:
//!
//! * **bad argument** — fix the call: [`Error::InvalidConfig`], [`Error::InvalidArgument`],
//!   [`Error::UnknownTopic`], [`Error::UnknownPartition`], [`Error::TopicExists`],
//!   [`Error::InvalidTopicName`],
//!   [`Error::OffsetOutOfRange`], [`Error::RecordTooLarge`], [`Error::MissingKey`],
//!   [`Error::NoOffsetForPartition`], [`Error::PositionOutOfRange`], [`Error::Codec`],
//!   [`Error::ConnectorConfig`], [`Error::UnknownConnector`], [`Error::ConnectorExists`];
//! * **damaged data** — the bytes on disk or on the wire are not what was written:
//!   [`Error::InvalidBatch`], [`Error::ChecksumMismatch`], [`Error::Corrupt`],
//!   [`Error::UnsupportedCompression`];
//! * **environment** — retry or repair the machine: [`Error::Io`], [`Error::DirectoryLocked`],
//!   [`Error::External`] (a database a connector talks to);
//! * **state** — the handle can no longer be used, or a consumer group moved on without it:
//!   [`Error::Closed`], [`Error::Failed`], [`Error::Fenced`], [`Error::UnknownGroup`],
//!   [`Error::GroupNotEmpty`].

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tidelog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error; `context` says what tidelog was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What tidelog was doing, for example `appending to /data/t-0/00000000000000000000.log`.
        context: String,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },

    /// A configuration value is out of its allowed range.
    #[error("invalid configuration `{key}`: {reason}")]
    InvalidConfig {
        /// The name of the setting, as in Kafka where one exists (`segment_bytes`, ...).
        key: &'static str,
        /// Why the value was refused and what is allowed.
        reason: String,
    },

    /// An argument of a call is not acceptable (empty batch, timestamp out of range, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The requested offset lies outside the log. Seek into `log_start_offset..=log_end_offset`.
    #[error(
        "offset {offset} is out of range: the log holds offsets {log_start_offset}..{log_end_offset}"
    )]
    OffsetOutOfRange {
        /// The offset that was asked for.
        offset: u64,
        /// The first offset still in the log.
        log_start_offset: u64,
        /// The next offset to be written (one past the last record).
        log_end_offset: u64,
    },

    /// A record or batch is larger than the configured limit (`max_message_bytes`, Kafka's
    /// `max.message.bytes`).
    #[error("record batch of {size} bytes is larger than the limit of {max} bytes")]
    RecordTooLarge {
        /// The encoded size of the batch.
        size: usize,
        /// The configured limit.
        max: usize,
    },

    /// No topic of that name exists (or it was deleted).
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),

    /// The topic has no partition with that number.
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },

    /// A topic of that name exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),

    /// A topic name that Kafka would refuse.
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A consumer has no position for an assigned partition and its `auto_offset_reset` is
    /// [`OffsetReset::None`](crate::OffsetReset::None) (Kafka's `NoOffsetForPartitionException`).
    /// Seek the partition before polling.
    #[error(
        "partition {topic}-{partition} has no position and auto_offset_reset is none: seek it before polling"
    )]
    NoOffsetForPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },

    /// A consumer's position lies outside its partition's log (for example retention deleted it)
    /// and its `auto_offset_reset` is [`OffsetReset::None`](crate::OffsetReset::None) (Kafka's
    /// `OffsetOutOfRangeException`). Seek the partition into `log_start_offset..=log_end_offset`.
    #[error(
        "position {offset} of partition {topic}-{partition} is out of range (the log holds offsets \
         {log_start_offset}..{log_end_offset}) and auto_offset_reset is none: seek it"
    )]
    PositionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position.
        offset: u64,
        /// The first offset still in the log.
        log_start_offset: u64,
        /// The next offset to be written.
        log_end_offset: u64,
    },

    /// A value could not be serialized, or a record's bytes could not be deserialized.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),

    /// A record without a key was appended to a compacted log; compaction needs a key.
    #[error("a compacted log only accepts records with a key")]
    MissingKey,

    /// Bytes that should hold a Kafka `RecordBatch` v2 do not.
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),

    /// The CRC-32C of a record batch does not match its contents.
    #[error("record batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum stored in the batch header.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },

    /// The batch uses a compression codec this build cannot decode. Such batches are stored and
    /// served as they are; only their records cannot be read here.
    #[error("record batch is compressed with {0}, which this build of tidelog cannot decode")]
    UnsupportedCompression(&'static str),

    /// A file of the log is damaged at a known place.
    #[error("{path}: damaged at byte {position}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The byte position of the damage in that file.
        position: u64,
        /// What is wrong there.
        reason: String,
    },

    /// Another handle, in this process or another, has the directory open.
    #[error("{path} is already open (locked by another handle or process)")]
    DirectoryLocked {
        /// The directory.
        path: PathBuf,
    },

    /// The consumer group does not exist (it has no members and no committed offsets).
    #[error("consumer group `{0}` does not exist")]
    UnknownGroup(String),

    /// The operation needs a consumer group without members (deleting it, resetting its
    /// offsets); close its consumers first.
    #[error("consumer group `{group}` still has {members} member(s); close its consumers first")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },

    /// A connector's configuration is refused (Kafka Connect's `ConfigException`): a required
    /// key is missing, a value does not parse or is out of range. `key` is the setting's name as
    /// written in the config (`tasks.max`, `file`, `transforms.route.regex`, ...).
    #[error("connector `{connector}`: invalid config `{key}`: {reason}")]
    ConnectorConfig {
        /// The connector's name.
        connector: String,
        /// The offending setting.
        key: String,
        /// Why it was refused and what is allowed.
        reason: String,
    },

    /// No connector of that name runs in this [`Connect`](crate::Connect) runtime.
    #[error("unknown connector `{0}`")]
    UnknownConnector(String),

    /// A connector of that name runs already; stop it first.
    #[error("connector `{0}` already exists")]
    ConnectorExists(String),

    /// Code of a connector (its [`SourceConnector`](crate::SourceConnector) or
    /// [`SinkConnector`](crate::SinkConnector) methods) panicked where the runtime called it
    /// on the caller's thread: starting, splitting into tasks, validating. The connector is
    /// then not running (Kafka Connect's `FAILED` connector); the message says what panicked.
    #[error("connector `{connector}` failed: {reason}")]
    ConnectorFailed {
        /// The connector's name.
        connector: String,
        /// What panicked, with the panic's message.
        reason: String,
    },

    /// An outside system a connector talks to (`SQLite`, `PostgreSQL`) refused an operation; the
    /// message is that system's.
    #[error("{system}: {reason}")]
    External {
        /// The system: `"sqlite"`, `"postgres"`.
        system: &'static str,
        /// What it said, with what the connector was doing.
        reason: String,
    },

    /// A consumer-group operation was refused because the member no longer has the right to it:
    /// it was removed from the group (it did not poll within `max_poll_interval`, or its session
    /// timed out), another consumer took over its `group_instance_id`, a commit came from an
    /// older generation, or it commits a partition that is assigned elsewhere now. Kafka's
    /// `CommitFailedException` and `FencedInstanceIdException`. The consumer rejoins the group
    /// at its next poll (unless its instance id was taken over); records of the partitions it
    /// lost may be delivered again to their new owner.
    #[error("consumer group `{group}`: {reason}")]
    Fenced {
        /// The group.
        group: String,
        /// What happened, naming the member and generation.
        reason: String,
    },

    /// A Streams topology cannot run as built: a source topic that does not exist, joined or
    /// co-partitioned topics with different partition counts, a cycle through topics, a missing
    /// codec, a store name used twice. The message names the node, topic or store.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),

    /// A Streams application stopped processing because of an error in a record's processing
    /// (a user function panicked, a store or a send failed); the message says which task and why.
    #[error("stream processing failed: {0}")]
    StreamsFailed(String),

    /// The handle was closed.
    #[error("the log is closed")]
    Closed,

    /// An earlier I/O failure left the log in a state it cannot continue from without reopening
    /// (for example a failed fsync, after which the kernel may have dropped dirty pages).
    #[error("the log failed earlier and must be reopened: {0}")]
    Failed(String),
}

impl Error {
    /// Wraps an I/O error with what tidelog was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid_batch(reason: impl Into<String>) -> Self {
        Error::InvalidBatch(reason.into())
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Turns an `io::Error` into [`Error::Io`] whose context is computed lazily.
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
