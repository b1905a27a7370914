//! The Streams API: stream processing on tidelog topics (Kafka Streams' model).
//!
//! An application reads input topics, transforms them through a **topology** of operators,
//! keeps state in **stores**, and writes output topics:
//!
//! * [`StreamsBuilder`] builds the topology with the DSL: [`KStream`] (events), [`KTable`]
//!   (latest value per key), [`KGroupedStream`] (aggregations), windows, joins; the
//!   [Processor API](crate::Processor) adds processors of your own.
//! * [`Streams`] runs it: stream threads in a consumer group named by the application id,
//!   one **task** per partition of the input topics, moved between threads and instances by
//!   the group.
//! * [`TopologyTestDriver`] runs it on one thread, deterministically, for tests.
//!
//! # How a task runs
//!
//! A topology splits into **sub-topologies**: parts connected by operators or shared stores.
//! A task is one sub-topology working on partition `p` of its source topics (all of them, so
//! joined topics must be co-partitioned: same partition count, same key partitioning). Records
//! cross between sub-topologies only through topics: **repartition topics**
//! (`<application id>-<name>-repartition`), inserted where a grouping or join follows an
//! operator that may have changed keys. Each store is backed by a compacted **changelog**
//! topic (`<application id>-<store>-changelog`, one partition per task) and snapshotted to the
//! state directory, so a task restores quickly wherever it moves (see the store module).
//!
//! # At-least-once commits
//!
//! A commit runs, in this order: aggregations forward what their record caches hold; the
//! stores' changes go into their changelogs; the producer is flushed (outputs, repartition
//! records and changelog records are appended and, per their topics' durability, fsynced) and
//! every send's outcome checked; the input offsets of the records processed are committed;
//! then store snapshots are written where due (only after a successful, unfenced commit). So
//! every committed input's effects are durable; a crash repeats at most the records since the
//! last commit. Exactly-once would turn the flush and the offset commit into one transaction;
//! the order is already the one it needs.

pub(crate) mod builder;
pub(crate) mod codec;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod driver;
pub(crate) mod grouped;
pub(crate) mod join;
pub(crate) mod kstream;
pub(crate) mod ktable;
pub(crate) mod node;
pub(crate) mod processor;
pub(crate) mod runtime;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod task;
pub(crate) mod topology;
pub(crate) mod window;
pub(crate) mod windowed;
