//! The Connector API: reusable sources and sinks that link topics to files and databases, as
//! Kafka Connect does, run in process by a [`Connect`] runtime.
//!
//! Files: `api.rs` (the connector and task traits, task contexts), `data.rs` (`ConnectData` and the
//! records), `config.rs` (`ConnectorConfig`, JSON config files), `converter.rs`,
//! `transform.rs` (transforms and predicates), `registry.rs` (class names to connectors and
//! transforms), `runtime.rs` (`Connect`), `control.rs` (what a task's thread shares with the
//! runtime), `source_worker.rs` and `sink_worker.rs` (a task's thread), `offsets.rs`
//! (`__connect_offsets`), `dead_letter.rs` (error tolerance, dead-letter topic), and the
//! built-in connectors: `file_source.rs`, `file_sink.rs`, `sql/` (`SQLite` with feature
//! `sqlite`, `PostgreSQL` with feature `postgres`).
//!
//! Delivery guarantees (at least once, as Kafka Connect without exactly-once support):
//! 1. A source's offsets are stored only after its records before them are durable in their
//!    topics; a source restarted after a crash repeats only what it polled since its last
//!    offset commit.
//! 2. A sink's consumer offsets are committed only after the task flushed the records before
//!    them; a sink restarted after a crash receives again only what it got since its last
//!    commit. Sinks that write by key (the SQL sinks in upsert mode) make those repeats
//!    harmless.
//! 3. A bad record (conversion, transform, or reported by a sink task) fails its task under
//!    `errors.tolerance=none`; under `all` it is skipped (and sent to a sink's dead-letter
//!    topic) and counts as processed for the offsets.

mod api;
mod config;
mod control;
mod converter;
mod data;
mod dead_letter;
mod file_sink;
mod file_source;
mod offsets;
mod registry;
mod runtime;
mod sink_worker;
mod source_worker;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod transform;

pub use self::api::{
    SinkConnector, SinkTask, SinkTaskContext, SourceConnector, SourceTask, SourceTaskContext,
};
pub use self::config::{ConnectorConfig, ErrorTolerance};
pub use self::control::ConnectorState;
pub use self::converter::{BytesConverter, Converter, JsonConverter, StringConverter};
pub use self::data::{ConnectData, ConnectRecord, SinkRecord, SourceRecord};
pub use self::dead_letter::{
    ERROR_HEADER_CLASS, ERROR_HEADER_CONNECTOR, ERROR_HEADER_EXCEPTION, ERROR_HEADER_MESSAGE,
    ERROR_HEADER_OFFSET, ERROR_HEADER_PARTITION, ERROR_HEADER_STACKTRACE, ERROR_HEADER_STAGE,
    ERROR_HEADER_TASK, ERROR_HEADER_TOPIC,
};
pub use self::file_sink::{FileStreamSinkConnector, FileStreamSinkTask};
pub use self::file_source::{FileStreamSourceConnector, FileStreamSourceTask};
pub use self::runtime::{Connect, ConnectConfig, ConnectorKind, ConnectorStatus, TaskStatus};
#[cfg(feature = "postgres")]
pub use self::sql::postgres::{PostgresSinkConnector, PostgresSourceConnector};
#[cfg(feature = "sqlite")]
pub use self::sql::sqlite::{SqliteSinkConnector, SqliteSourceConnector};
pub use self::transform::{
    Conditional, FieldTarget, Filter, InsertField, Predicate, RegexRouter, ReplaceField, Transform,
};
