//! Committed offsets: the coordinator's side of commits, their records in `__consumer_offsets`
//! (see `offsets.rs` for the layout) and their cache in each group (invariant 4 of
//! `coordinator.rs`: the cache holds the value of the group's newest record, because both are
//! written under the group's lock, in the same order).

use std::sync::Arc;

use super::coordinator::{GroupCoordinator, GroupInner};
use super::liveness::Removal;
use super::offsets::{
    check_metadata, decode, encode_key, encode_value, partition_for_group, OffsetAndMetadata,
    OffsetsRecord,
};
use crate::error::{Error, Result};
use crate::partition::TopicPartition;
use crate::record::Record;
use crate::storage::{Durability, PartitionLog};

impl GroupCoordinator {
    /// Kafka refuses commits for partitions that do not exist (`UNKNOWN_TOPIC_OR_PARTITION`):
    /// a deleted topic's commits stay forgotten.
    fn check_partitions_exist<'a>(
        &self,
        partitions: impl Iterator<Item = &'a TopicPartition>,
    ) -> Result<()> {
        let topics = self.topics.read();
        for tp in partitions {
            let topic = topics
                .get(&tp.topic)
                .filter(|t| t.check_live().is_ok())
                .ok_or_else(|| Error::UnknownTopic(tp.topic.clone()))?;
            let count = topic.partitions.read().len() as u32;
            if tp.partition >= count {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        Ok(())
    }

    /// Reads every commit of `__consumer_offsets` (newest per partition wins) and remembers its
    /// partitions for later commits.
    pub fn load(&self, logs: Vec<Arc<PartitionLog>>) -> Result<()> {
        for log in &logs {
            let mut offset = log.log_start_offset();
            let end = log.log_end_offset();
            while offset < end {
                let data = log.read(offset, 1 << 20)?;
                // Compaction may have emptied a batch's tail or whole batches: move by the
                // batches read, not by the last record.
                let next = data.next_offset();
                for r in data.records()? {
                    let Some(key) = &r.record.key else { continue };
                    // A record tidelog cannot read (written by something else) is skipped.
                    if let Ok(OffsetsRecord::Commit {
                        group,
                        partition,
                        value,
                    }) = decode(key, r.record.value.as_deref())
                    {
                        let g = self.group(&group);
                        let mut state = g.state.lock();
                        match value {
                            Some(v) => state.committed.insert(partition, v),
                            None => state.committed.remove(&partition),
                        };
                    }
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
        // A group whose every commit was deleted (tombstones) is gone.
        self.groups
            .write()
            .retain(|_, g| !g.state.lock().committed.is_empty());
        let _ = self.offsets.set(logs);
        Ok(())
    }

    // ------------------------------------------------------------------------------ offsets

    /// The committed offsets of these partitions.
    pub fn committed(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Vec<Option<OffsetAndMetadata>> {
        let Some(group) = self.existing(group_id) else {
            return vec![None; partitions.len()];
        };
        let state = group.state.lock();
        partitions
            .iter()
            .map(|tp| state.committed.get(tp).cloned())
            .collect()
    }

    /// Commits `offsets` for `group_id`: from member `member` (id and the generation it holds)
    /// or, with `None`, from a consumer outside the membership (manual assignment, admin), which
    /// only an empty group accepts. `None` values forget commits. Waits for durability when
    /// `wait` and the offsets topic's policy is `Always`.
    pub fn commit(
        &self,
        logs: &[Arc<PartitionLog>],
        group_id: &str,
        member: Option<(&str, i32)>,
        offsets: &[(TopicPartition, Option<OffsetAndMetadata>)],
        wait: bool,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        for (_, v) in offsets {
            if let Some(v) = v {
                check_metadata(&v.metadata)?;
                if v.offset > i64::MAX as u64 {
                    return Err(Error::InvalidArgument(format!(
                        "offset {} is beyond Kafka's i64 range",
                        v.offset
                    )));
                }
            }
        }
        loop {
            let group = self.group(group_id);
            let mut state = group.state.lock();
            if state.dead {
                continue; // deleted meanwhile: commit to its successor
            }
            // Under the group's lock, so that a topic deleted meanwhile has had its commits
            // forgotten already (`forget_topic` takes this lock too) or will forget this one.
            self.check_partitions_exist(offsets.iter().map(|(tp, _)| tp))?;
            check_committer(&state, group_id, member, offsets)?;
            let log = offsets_log(logs, group_id);
            let last = append_commits(log, group_id, &mut state, offsets)?;
            drop(state);
            if wait && log.config().durability == Durability::Always {
                log.flush_until(last + 1)?;
            }
            return Ok(());
        }
    }

    /// Deletes an empty group and its commits.
    pub fn delete_group(&self, logs: Option<&[Arc<PartitionLog>]>, group_id: &str) -> Result<()> {
        let group = self
            .existing(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        let mut state = group.state.lock();
        if !state.members.is_empty() {
            return Err(Error::GroupNotEmpty {
                group: group_id.to_string(),
                members: state.members.len(),
            });
        }
        let forget: Vec<(TopicPartition, Option<OffsetAndMetadata>)> = state
            .committed
            .keys()
            .map(|tp| (tp.clone(), None))
            .collect();
        let mut written = None;
        if let (Some(logs), false) = (logs, forget.is_empty()) {
            let log = offsets_log(logs, group_id);
            written = Some((log, append_commits(log, group_id, &mut state, &forget)?));
        }
        // Joiners that raced the deletion see `dead` and join a fresh group instead.
        state.dead = true;
        drop(state);
        let mut groups = self.groups.write();
        if groups.get(group_id).is_some_and(|g| Arc::ptr_eq(g, &group)) {
            groups.remove(group_id);
        }
        drop(groups);
        if let Some((log, last)) = written {
            log.flush_until(last + 1)?;
        }
        Ok(())
    }

    /// Forgets every group's commits for a deleted topic.
    pub fn forget_topic(&self, logs: &[Arc<PartitionLog>], topic: &str) -> Result<()> {
        for id in self.group_ids() {
            let Some(group) = self.existing(&id) else {
                continue;
            };
            let mut state = group.state.lock();
            let forget: Vec<_> = state
                .committed
                .keys()
                .filter(|tp| tp.topic == topic)
                .map(|tp| (tp.clone(), None))
                .collect();
            if !forget.is_empty() {
                let log = offsets_log(logs, &id);
                let last = append_commits(log, &id, &mut state, &forget)?;
                drop(state);
                log.flush_until(last + 1)?;
            }
        }
        Ok(())
    }
}

/// Fencing: whether `member` (or a committer outside the membership) may commit `offsets`.
fn check_committer(
    state: &GroupInner,
    group_id: &str,
    member: Option<(&str, i32)>,
    offsets: &[(TopicPartition, Option<OffsetAndMetadata>)],
) -> Result<()> {
    let fenced = |reason: String| Error::Fenced {
        group: group_id.to_string(),
        reason,
    };
    match member {
        Some((member_id, generation)) => {
            let Some(m) = state.members.get(member_id) else {
                return Err(fenced(format!(
                    "member `{member_id}` is not in the group any more; the commit is refused"
                )));
            };
            if let Some(Removal::Expired(why) | Removal::Fenced(why)) = m.liveness.removal() {
                return Err(fenced(why));
            }
            if m.generation != generation {
                return Err(fenced(format!(
                    "commit from generation {generation}, but member `{member_id}` is in generation {}",
                    m.generation
                )));
            }
            if let Some((tp, _)) = offsets
                .iter()
                .find(|(tp, _)| state.owners.get(tp).is_none_or(|o| o != member_id))
            {
                return Err(fenced(format!(
                    "partition {tp} is not assigned to member `{member_id}` (generation {})",
                    state.generation
                )));
            }
        }
        None if !state.members.is_empty() => {
            return Err(fenced(format!(
                "the group has {} active member(s); only they commit its offsets",
                state.members.len()
            )));
        }
        None => {}
    }
    Ok(())
}

/// The partition of `__consumer_offsets` for `group_id` (`logs` is never empty).
fn offsets_log<'a>(logs: &'a [Arc<PartitionLog>], group_id: &str) -> &'a Arc<PartitionLog> {
    &logs[partition_for_group(group_id, logs.len() as u32) as usize]
}

/// Appends commit records (invariant 4: under the group's lock, then the cache); returns the
/// last offset written. Does not wait for an fsync.
fn append_commits(
    log: &PartitionLog,
    group_id: &str,
    state: &mut GroupInner,
    offsets: &[(TopicPartition, Option<OffsetAndMetadata>)],
) -> Result<u64> {
    let timestamp = crate::storage::coarse_now_ms();
    let records: Vec<Record> = offsets
        .iter()
        .map(|(tp, v)| Record {
            key: Some(encode_key(group_id, tp).into()),
            value: v.as_ref().map(|v| encode_value(v, timestamp).into()),
            timestamp,
            headers: Vec::new(),
        })
        .collect();
    let appended = log.append_deferred(&records)?;
    for (tp, v) in offsets {
        match v {
            Some(v) => state.committed.insert(tp.clone(), v.clone()),
            None => state.committed.remove(tp),
        };
    }
    Ok(appended.last_offset)
}
