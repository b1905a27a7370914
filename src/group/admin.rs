//! Administering consumer groups: list, describe, lag, reset offsets, delete (what Kafka's
//! `kafka-consumer-groups.sh` and `Admin` client do), as methods of [`Broker`].

use super::assignor::RebalanceProtocol;
use super::offsets::OffsetAndMetadata;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::TopicPartition;

/// A consumer group's state, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (it may still have committed offsets).
    Empty,
    /// A rebalance started and some members have not yet given up what they must.
    PreparingRebalance,
    /// Every member took in the new generation; some partitions are still being handed over.
    CompletingRebalance,
    /// Every member holds its whole assignment.
    Stable,
}

/// One group in [`Broker::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// Its state now.
    pub state: GroupState,
}

/// A group's members and assignment ([`Broker::describe_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state now.
    pub state: GroupState,
    /// The current generation: it grows by one at every rebalance.
    pub generation: i32,
    /// The assignor the members use (`range`, `cooperative-sticky`, ...); `None` when empty.
    pub assignor: Option<String>,
    /// The assignor's protocol; `None` when empty.
    pub protocol: Option<RebalanceProtocol>,
    /// The member Kafka would call the group leader: the first to join, and when it leaves, the
    /// member with the smallest id; `None` when empty.
    pub leader: Option<String>,
    /// The members, by member id.
    pub members: Vec<MemberDescription>,
}

/// One member of a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The id the coordinator gave it.
    pub member_id: String,
    /// Its static instance id, if it has one.
    pub group_instance_id: Option<String>,
    /// Its consumer's client id.
    pub client_id: String,
    /// The partitions of the current generation's assignment.
    pub assignment: Vec<TopicPartition>,
}

/// A partition's consumption by a group ([`Broker::group_lag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if any.
    pub committed: Option<u64>,
    /// The partition's log end offset (high watermark).
    pub log_end_offset: u64,
    /// `log_end_offset - committed`: records not yet consumed; `None` without a commit.
    pub lag: Option<u64>,
    /// The member the partition is assigned to, if any.
    pub member_id: Option<String>,
}

/// Where [`Broker::reset_group_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's log start offset.
    Earliest,
    /// Each partition's log end offset: skip everything there is now.
    Latest,
    /// The first offset whose record timestamp is at or after this time (milliseconds since the
    /// epoch); the log end where every record is older.
    Timestamp(i64),
    /// This offset, clamped into each partition's log.
    Offset(u64),
}

impl Broker {
    /// Every consumer group known here (with members, or with committed offsets), by id.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let groups = &self.inner.groups;
        groups
            .group_ids()
            .into_iter()
            .filter_map(|id| {
                let state = groups.snapshot(&id)?.state();
                Some(GroupListing {
                    group_id: id,
                    state,
                })
            })
            .collect()
    }

    /// A group's state, generation, assignor and members with their assignments.
    ///
    /// ```
    /// # use tidelog::{Broker, ConsumerConfig, GroupState};
    /// # let dir = tempfile::tempdir()?;
    /// # let broker = Broker::open(dir.path())?;
    /// broker.create_topic("orders", 4)?;
    /// let mut a = broker.consumer(ConsumerConfig::default().group_id("billing"))?;
    /// let mut b = broker.consumer(ConsumerConfig::default().group_id("billing"))?;
    /// a.subscribe(&["orders"])?;
    /// b.subscribe(&["orders"])?;
    /// let group = broker.describe_group("billing")?;
    /// assert_eq!(group.members.len(), 2);
    /// assert_eq!(group.assignor.as_deref(), Some("range"));
    /// assert!(group.members.iter().all(|m| m.assignment.len() == 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Errors: [`Error::UnknownGroup`].
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let snapshot = self
            .inner
            .groups
            .snapshot(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        Ok(GroupDescription {
            group_id: group_id.to_string(),
            state: snapshot.state(),
            generation: snapshot.generation,
            assignor: snapshot.assignor,
            protocol: snapshot.protocol,
            leader: snapshot.leader,
            members: snapshot
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id,
                    group_instance_id: m.instance_id,
                    client_id: m.client_id,
                    assignment: m.assignment,
                })
                .collect(),
        })
    }

    /// The group's committed offset, log end offset and lag for every partition it has
    /// committed or that is assigned to a member, sorted (Kafka's `kafka-consumer-groups.sh
    /// --describe`). Partitions of deleted topics are left out.
    ///
    /// Errors: [`Error::UnknownGroup`].
    pub fn group_lag(&self, group_id: &str) -> Result<Vec<PartitionLag>> {
        let snapshot = self
            .inner
            .groups
            .snapshot(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        let mut rows = std::collections::BTreeMap::new();
        let partitions = snapshot
            .committed
            .keys()
            .chain(snapshot.members.iter().flat_map(|m| &m.assignment));
        for tp in partitions {
            if rows.contains_key(tp) {
                continue;
            }
            // A deleted topic has no lag to show.
            let Ok(partition) = self.partition(&tp.topic, tp.partition) else {
                continue;
            };
            let log_end_offset = partition.log_end_offset();
            let committed = snapshot.committed.get(tp).map(|c| c.offset);
            let member_id = snapshot
                .members
                .iter()
                .find(|m| m.assignment.contains(tp))
                .map(|m| m.member_id.clone());
            rows.insert(
                tp.clone(),
                PartitionLag {
                    partition: tp.clone(),
                    committed,
                    log_end_offset,
                    lag: committed.map(|c| log_end_offset.saturating_sub(c)),
                    member_id,
                },
            );
        }
        Ok(rows.into_values().collect())
    }

    /// Moves a group's committed offsets for every partition of `topics` (Kafka's
    /// `kafka-consumer-groups.sh --reset-offsets`); returns the new offsets. The group may be
    /// new; it must have no members, so that no consumer overwrites the reset.
    ///
    /// Errors: [`Error::GroupNotEmpty`], [`Error::UnknownTopic`], I/O errors.
    pub fn reset_group_offsets(
        &self,
        group_id: &str,
        topics: &[&str],
        to: ResetTo,
    ) -> Result<Vec<(TopicPartition, u64)>> {
        let mut offsets = Vec::new();
        for name in topics {
            for p in self.topic(name)?.partitions()? {
                let log = p.log()?;
                let (start, end) = (log.log_start_offset(), log.log_end_offset());
                let offset = match to {
                    ResetTo::Earliest => start,
                    ResetTo::Latest => end,
                    ResetTo::Timestamp(ts) => log.offset_for_timestamp(ts)?.unwrap_or(end),
                    ResetTo::Offset(o) => o.clamp(start, end),
                };
                offsets.push((TopicPartition::new(*name, p.partition()), offset));
            }
        }
        self.check_empty(group_id)?;
        let commits: Vec<_> = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), Some(OffsetAndMetadata::new(*o))))
            .collect();
        let logs = self.offsets_logs()?;
        self.inner
            .groups
            .commit(logs, group_id, None, &commits, true)
            .map_err(|e| match e {
                // A member joined between the check and the commit.
                Error::Fenced { .. } => self.check_empty(group_id).err().unwrap_or(e),
                e => e,
            })?;
        Ok(offsets)
    }

    /// Deletes a group without members, with its committed offsets (Kafka's
    /// `deleteConsumerGroups`). A consumer of that group id later starts afresh, at
    /// `auto_offset_reset`.
    ///
    /// Errors: [`Error::UnknownGroup`], [`Error::GroupNotEmpty`], I/O errors.
    pub fn delete_group(&self, group_id: &str) -> Result<()> {
        let groups = &self.inner.groups;
        groups.delete_group(groups.offsets_logs(), group_id)
    }

    fn check_empty(&self, group_id: &str) -> Result<()> {
        match self.inner.groups.snapshot(group_id) {
            Some(s) if !s.members.is_empty() => Err(Error::GroupNotEmpty {
                group: group_id.to_string(),
                members: s.members.len(),
            }),
            _ => Ok(()),
        }
    }
}
