//! # tidelog
//!
//! Kafka's model as a Rust crate: durable, partitioned, offset-addressed logs in a directory of
//! your application, with no broker to run.
//!
//! The bytes are Kafka's: a batch is Kafka's `RecordBatch` v2 and a partition folder uses Kafka's
//! segment and index layout (`00000000000000000000.log`, `.index`, `.timeindex`), so Kafka's tools
//! can read what tidelog wrote.
//!
//! This release holds the storage engine: [`PartitionLog`], one partition's durable, segmented log.
//!
//! ```
//! use tidelog::{LogConfig, PartitionLog, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let log = PartitionLog::open(dir.path().join("orders-0"), LogConfig::default())?;
//! let appended = log.append(&[Record::new("k1", "v1"), Record::new("k2", "v2")])?;
//! assert_eq!((appended.base_offset, appended.last_offset), (0, 1));
//!
//! let records = log.read_records(0, 1 << 20)?;
//! assert_eq!(records[1].record.value.as_deref(), Some(&b"v2"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::pedantic)]
#![allow(
    clippy::module_name_repetitions,
    clippy::missing_errors_doc,
    clippy::must_use_candidate,
    // Offsets and positions are bounded by Kafka's format (i64 offsets, i32 lengths, u32
    // relative offsets and positions), checked where data enters; casts between them are exact.
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::single_match_else
)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod batch;
mod broker;
mod codec;
mod connect;
mod consumer;
mod error;
mod group;
mod partition;
mod producer;
mod record;
mod storage;
mod streams;
mod topic;

pub use crate::batch::{BatchHeader, Compression, RecordBatch, Records, TimestampType};
pub use crate::broker::{Broker, BrokerConfig, DEFAULT_DIR, MAX_PARTITIONS};
#[cfg(feature = "json")]
pub use crate::codec::JsonCodec;
pub use crate::codec::{
    BincodeCodec, BytesCodec, CodecError, Deserializer, LongCodec, Serializer, StringCodec,
};
pub use crate::connect::{
    BytesConverter, Conditional, Connect, ConnectConfig, ConnectData, ConnectRecord,
    ConnectorConfig, ConnectorKind, ConnectorState, ConnectorStatus, Converter, ErrorTolerance,
    FieldTarget, FileStreamSinkConnector, FileStreamSinkTask, FileStreamSourceConnector,
    FileStreamSourceTask, Filter, InsertField, JsonConverter, Predicate, RegexRouter, ReplaceField,
    SinkConnector, SinkRecord, SinkTask, SinkTaskContext, SourceConnector, SourceRecord,
    SourceTask, SourceTaskContext, StringConverter, TaskStatus, Transform, ERROR_HEADER_CLASS,
    ERROR_HEADER_CONNECTOR, ERROR_HEADER_EXCEPTION, ERROR_HEADER_MESSAGE, ERROR_HEADER_OFFSET,
    ERROR_HEADER_PARTITION, ERROR_HEADER_STACKTRACE, ERROR_HEADER_STAGE, ERROR_HEADER_TASK,
    ERROR_HEADER_TOPIC,
};
#[cfg(feature = "postgres")]
pub use crate::connect::{PostgresSinkConnector, PostgresSourceConnector};
#[cfg(feature = "sqlite")]
pub use crate::connect::{SqliteSinkConnector, SqliteSourceConnector};
pub use crate::consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerIter, ConsumerRecord, ConsumerRecords,
    DecodeError, OffsetReset, RebalanceListener, RecordField, TypedConsumer, TypedRecord,
    WakeupHandle,
};
pub use crate::error::{Error, Result};
pub use crate::group::admin::{
    GroupDescription, GroupListing, GroupState, MemberDescription, PartitionLag, ResetTo,
};
pub use crate::group::assignor::{
    Assignment, Assignor, CooperativeStickyAssignor, MemberSubscription, RangeAssignor,
    RebalanceProtocol, RoundRobinAssignor, StickyAssignor,
};
pub use crate::group::offsets::OffsetAndMetadata;
pub use crate::partition::{Partition, TopicPartition};
pub use crate::producer::{
    murmur2, partition_for_key, to_positive, Partitioner, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata, SendAllFuture, SendFuture,
};
pub use crate::record::{Header, OffsetRecord, Record};
pub use crate::storage::{
    AppendInfo, CleanupPolicy, Durability, FetchData, LogConfig, MaintenanceReport, PartitionLog,
    RecoveryMode,
};
pub use crate::streams::builder::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
pub use crate::streams::codec::Codec;
pub use crate::streams::config::{ProcessingGuarantee, StreamsConfig};
pub use crate::streams::context::{RecordMetadata as StreamRecordMetadata, TaskId, TaskMetrics};
pub use crate::streams::driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use crate::streams::grouped::KGroupedStream;
pub use crate::streams::join::StreamJoined;
pub use crate::streams::kstream::{BranchedKStream, Joined, KStream, Repartitioned};
pub use crate::streams::ktable::KTable;
pub use crate::streams::node::Data;
pub use crate::streams::processor::{
    Cancellable, Processor, ProcessorContext, PunctuationType, StreamRecord,
};
pub use crate::streams::runtime::{Streams, StreamsState};
pub use crate::streams::session::SessionWindowedKStream;
pub use crate::streams::store::session::{ReadOnlySessionStore, SessionStore};
pub use crate::streams::store::window::{ReadOnlyWindowStore, WindowStore};
pub use crate::streams::store::{KeyValueStore, ReadOnlyKeyValueStore, StoreBuilder};
pub use crate::streams::topology::Topology;
pub use crate::streams::window::{
    EmitStrategy, JoinWindows, SessionWindowedCodec, SessionWindows, SlidingWindows, TimeWindows,
    Window, Windowed, WindowedCodec,
};
pub use crate::streams::windowed::TimeWindowedKStream;
pub use crate::topic::{
    validate_topic_name, PartitionDescription, Topic, TopicDescription, MAX_TOPIC_NAME_LEN,
};

#[doc(hidden)]
pub mod __private {
    //! Hooks for fuzz targets and benches; not part of the public API.
    pub use crate::batch::{
        encode_into, encode_retained, set_base_offset, HEADER_LEN, LOG_OVERHEAD,
    };
}

/// The README's example is compiled and run as a doc test, so the front door stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
