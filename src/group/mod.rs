//! Consumer groups: consumers that share a subscription, each partition going to one member.
//!
//! Files: `coordinator.rs` (membership, generations, the hand-over of partitions, commits),
//! `assignor.rs` (range, round-robin, sticky, cooperative-sticky, and the `Assignor` trait),
//! `liveness.rs` (session timeout and max poll interval without heartbeats), `offsets.rs`
//! (committed offsets as Kafka's `__consumer_offsets` records), `admin.rs` (list, describe, lag,
//! reset, delete). The consumer's side lives in `consumer/group.rs`.
//!
//! As in Kafka, a group is a name that consumers give in their configuration; the group's
//! coordinator gives each partition of the subscribed topics to one member, starts a new
//! generation at every change, and stores the members' committed offsets in the compacted
//! internal topic `__consumer_offsets`, from which they are read back when the directory is
//! opened. Unlike Kafka, the coordinator lives in the same process as its members, so joining,
//! leaving and rebalancing take microseconds, not seconds: no join or sync round trips, no
//! heartbeats, no waiting for a rebalance timeout. Membership is not persisted: the members of
//! a process go with it; committed offsets stay.

pub(crate) mod admin;
pub(crate) mod assignor;
mod commits;
pub(crate) mod coordinator;
pub(crate) mod liveness;
pub(crate) mod offsets;
