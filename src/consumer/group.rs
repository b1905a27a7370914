//! A consumer as a member of a consumer group: joining, following the coordinator's hand-over
//! of partitions (see `group/coordinator.rs`), the rebalance listener, and commits.
//!
//! Invariants (besides those of `mod.rs`):
//! 5. The consumer's assignment is exactly the set of partitions the coordinator records it as
//!    owning, except between a `sync` answer and the consumer applying it, within one call.
//! 6. Partitions are released only after `on_partitions_revoked` ran and, with auto-commit, their
//!    positions were committed; so the next owner starts where this one stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::Consumer;
use crate::error::{Error, Result};
use crate::group::assignor::RebalanceProtocol;
use crate::group::coordinator::{Group, JoinRequest, Subscription, SyncStep};
use crate::group::liveness::{Liveness, Removal};
use crate::group::offsets::OffsetAndMetadata;
use crate::partition::TopicPartition;

/// Told about partitions a consumer of a group gains and loses in rebalances (Kafka's
/// `ConsumerRebalanceListener`). Set it with [`Consumer::set_rebalance_listener`].
///
/// The callbacks run inside [`Consumer::poll`] (and `unsubscribe`, `close`, drop) on the
/// consumer's thread, with the consumer itself as argument, so they can commit, seek or look up
/// positions; calling `poll` from them is refused.
///
/// ```
/// use tidelog::{Consumer, RebalanceListener, TopicPartition};
///
/// struct CommitOnRevoke;
///
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
///         // Work on these partitions' records is done: commit before they move on.
///         if let Err(e) = consumer.commit_sync() {
///             eprintln!("commit failed: {e}");
///         }
///         println!("revoked {partitions:?}");
///     }
///
///     fn on_partitions_assigned(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
///         println!("assigned {partitions:?}");
///     }
/// }
/// ```
pub trait RebalanceListener: Send {
    /// The consumer is about to give these partitions up: their records will go to another
    /// member. Runs before the positions are auto-committed and the partitions released; commit
    /// processed work here. Under the eager protocol this is every partition at each rebalance;
    /// under the cooperative one only those that move.
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// The consumer now owns these partitions; runs before any of their records is returned,
    /// after their positions were set from the group's committed offsets (a `seek` here wins).
    /// Under the eager protocol it runs once per rebalance with the whole new assignment
    /// (possibly empty); under the cooperative one with the partitions added.
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// The consumer lost these partitions without giving them up: the group removed it (it did
    /// not poll within `max_poll_interval`, its session timed out, or its instance id was taken
    /// over). Others may already consume them, so commits for them fail. By default calls
    /// [`on_partitions_revoked`](Self::on_partitions_revoked), as Kafka does.
    fn on_partitions_lost(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(consumer, partitions);
    }
}

/// A consumer's place in its group, as a commit of offsets in a transaction would name it
/// (Kafka's `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group.
    pub group_id: String,
    /// The generation whose assignment the consumer holds; `-1` outside the membership.
    pub generation: i32,
    /// The member id the coordinator gave; empty outside the membership.
    pub member_id: String,
    /// The static instance id, if configured.
    pub group_instance_id: Option<String>,
}

/// The consumer's side of its membership.
pub(super) struct Membership {
    group: Arc<Group>,
    member_id: String,
    /// The generation whose assignment the consumer holds (invariant 5).
    generation: i32,
    /// The group's epoch at the last `sync`; a different epoch means "look again".
    seen_epoch: u64,
    /// The last generation `on_partitions_assigned` ran for (eager: once per generation).
    assigned_generation: i32,
    pub liveness: Arc<Liveness>,
}

impl Membership {
    /// Whether the coordinator may have something new for this member.
    pub fn changed(&self) -> bool {
        self.group.epoch.load(Ordering::Acquire) != self.seen_epoch
    }
}

enum Callback {
    Revoked,
    Assigned,
    Lost,
}

static CLIENT_SEQ: AtomicU64 = AtomicU64::new(1);

impl Consumer {
    /// Subscribes, through the group, to `subscription`: joins it, or changes the member's
    /// subscription.
    pub(super) fn group_subscribe(&mut self, subscription: Subscription) -> Result<()> {
        if let Some(m) = &self.group {
            self.broker
                .inner
                .groups
                .resubscribe(&m.group, &m.member_id, subscription.clone());
            self.subscription = Some(subscription);
            return Ok(());
        }
        if let Some(why) = &self.fenced {
            return Err(Error::Fenced {
                group: self.config.group_id.clone().unwrap_or_default(),
                reason: why.clone(),
            });
        }
        // Manually assigned partitions are dropped first (Kafka refuses mixing; we switch).
        self.set_assignment(Vec::new());
        self.subscription = Some(subscription);
        self.join_group()
    }

    fn join_group(&mut self) -> Result<()> {
        let (Some(group_id), Some(subscription)) = (&self.config.group_id, &self.subscription)
        else {
            return Ok(());
        };
        // Commits need the offsets topic; create it before anyone depends on it.
        self.broker.offsets_logs()?;
        let client_id = self.config.client_id.clone().unwrap_or_else(|| {
            format!(
                "consumer-{group_id}-{}",
                CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)
            )
        });
        let liveness = Liveness::new();
        let (group, member_id) = self.broker.inner.groups.join(
            group_id,
            JoinRequest {
                instance_id: self.config.group_instance_id.clone(),
                client_id,
                subscription: subscription.clone(),
                assignor: Arc::clone(&self.config.assignor.0),
                signal: Arc::clone(&self.signal),
                liveness: Arc::clone(&liveness),
                session_timeout: self.config.session_timeout,
                max_poll_interval: self.config.max_poll_interval,
            },
        )?;
        self.group = Some(Membership {
            group,
            member_id,
            generation: 0,
            seen_epoch: u64::MAX,
            assigned_generation: 0,
            liveness,
        });
        Ok(())
    }

    /// Leaves the group, if a member: revokes everything first (listener, auto-commit) unless
    /// `abrupt`. A static member keeps its place for `session_timeout` instead of leaving.
    pub(super) fn leave_group(&mut self, abrupt: bool) -> Result<()> {
        let mut result = Ok(());
        if self.group.is_none() {
            return result;
        }
        let owned = self.assignment();
        let removed = self
            .group
            .as_ref()
            .is_some_and(|m| m.liveness.removal().is_some());
        if !abrupt && !owned.is_empty() {
            if removed {
                // The group moved on already: nothing to commit, the partitions are lost.
                self.call_listener(&Callback::Lost, &owned);
            } else {
                result = self.revoke(&owned);
            }
        }
        if let Some(m) = self.group.take() {
            let groups = &self.broker.inner.groups;
            if self.config.group_instance_id.is_some() {
                groups.depart(&m.group, &m.member_id);
            } else {
                groups.leave(&m.group, &m.member_id);
            }
        }
        self.set_assignment(Vec::new());
        result
    }

    /// Brings the assignment in line with the coordinator (invariant 5); called by `poll`
    /// before each look for records. Cheap when nothing changed: one atomic load.
    pub(super) fn group_sync(&mut self) -> Result<()> {
        if let Some(why) = &self.fenced {
            return Err(Error::Fenced {
                group: self.config.group_id.clone().unwrap_or_default(),
                reason: why.clone(),
            });
        }
        if self.group.is_none() && self.subscription.is_some() && self.config.group_id.is_some() {
            // An earlier (re)join failed: try again.
            self.rejoin_in_poll()?;
        }
        let mut force = false;
        loop {
            let Some(m) = &self.group else {
                return Ok(());
            };
            if !force && !m.changed() {
                return Ok(());
            }
            force = false;
            let groups = Arc::clone(&self.broker.inner.groups);
            let group = Arc::clone(&m.group);
            let member_id = m.member_id.clone();
            self.drop_deleted_partitions();
            let owned = self.assignment();
            let (step, epoch) = groups.sync(&group, &member_id, &owned);
            if let Some(m) = &mut self.group {
                m.seen_epoch = epoch;
            }
            match step {
                SyncStep::Steady { generation } => {
                    let eager = self.config.assignor.0.protocol() == RebalanceProtocol::Eager;
                    let Some(m) = &mut self.group else {
                        return Ok(());
                    };
                    m.generation = generation;
                    if eager && m.assigned_generation != generation {
                        m.assigned_generation = generation;
                        self.call_listener(&Callback::Assigned, &[]);
                    }
                    return Ok(());
                }
                SyncStep::Waiting { generation } => {
                    if let Some(m) = &mut self.group {
                        m.generation = generation;
                    }
                    return Ok(());
                }
                SyncStep::Revoke {
                    generation,
                    partitions,
                } => {
                    // Errors of the auto-commit are not fatal here: the partitions move on, and
                    // their uncommitted records are delivered again to the next owner.
                    let _ = self.revoke(&partitions);
                    groups.release(&group, &member_id, generation, &partitions);
                    if let Some(m) = &mut self.group {
                        m.generation = generation;
                    }
                    force = true;
                }
                SyncStep::Acquired {
                    generation,
                    partitions,
                    complete,
                } => {
                    self.acquire(&group, &member_id, generation, partitions, complete);
                    force = true;
                }
                SyncStep::Removed(removal) => {
                    // The coordinator forgets a fenced member; the mark on its liveness stays.
                    let removal = self
                        .group
                        .as_ref()
                        .and_then(|m| m.liveness.removal())
                        .unwrap_or(removal);
                    let lost = self.assignment();
                    if !lost.is_empty() {
                        self.call_listener(&Callback::Lost, &lost);
                    }
                    self.set_assignment(Vec::new());
                    self.group = None;
                    match removal {
                        Removal::Expired(_) => self.rejoin_in_poll()?,
                        Removal::Fenced(why) => {
                            self.fenced = Some(why.clone());
                            return Err(Error::Fenced {
                                group: self.config.group_id.clone().unwrap_or_default(),
                                reason: why,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Joins again from inside `poll`, which the new membership's liveness must know.
    fn rejoin_in_poll(&mut self) -> Result<()> {
        self.join_group()?;
        if let Some(m) = &self.group {
            m.liveness.enter_poll();
        }
        Ok(())
    }

    /// Drops assigned partitions whose topic was deleted (they cannot be committed any more):
    /// the coordinator's next generation no longer counts them, and a topic created again under
    /// the name is acquired afresh.
    fn drop_deleted_partitions(&mut self) {
        let gone: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|a| a.partition.log().is_err())
            .map(|a| a.tp.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        self.call_listener(&Callback::Lost, &gone);
        let keep: Vec<_> = self
            .assigned
            .iter()
            .filter(|a| !gone.contains(&a.tp))
            .map(|a| (a.tp.clone(), a.partition.clone()))
            .collect();
        self.set_assignment(keep);
    }

    /// Takes newly acquired partitions in, at the group's committed offsets.
    fn acquire(
        &mut self,
        group: &Group,
        member_id: &str,
        generation: i32,
        partitions: Vec<(TopicPartition, Option<OffsetAndMetadata>)>,
        complete: bool,
    ) {
        let mut wanted: Vec<_> = self
            .assigned
            .iter()
            .map(|a| (a.tp.clone(), a.partition.clone()))
            .collect();
        let mut unusable = Vec::new();
        let mut added = Vec::with_capacity(partitions.len());
        for (tp, committed) in partitions {
            match self.broker.partition(&tp.topic, tp.partition) {
                Ok(p) => {
                    wanted.push((tp.clone(), p));
                    added.push((tp, committed));
                }
                // Deleted meanwhile: the coordinator's next generation drops it.
                Err(_) => unusable.push(tp),
            }
        }
        if !unusable.is_empty() {
            self.broker
                .inner
                .groups
                .release(group, member_id, generation, &unusable);
        }
        self.set_assignment(wanted);
        let mut tps = Vec::with_capacity(added.len());
        for (tp, committed) in added {
            if let (Some(c), Ok(i)) = (committed, self.index_of(&tp)) {
                self.assigned[i].seek(c.offset);
            }
            tps.push(tp);
        }
        let eager = self.config.assignor.0.protocol() == RebalanceProtocol::Eager;
        if let Some(m) = &mut self.group {
            m.generation = generation;
            if eager && complete {
                m.assigned_generation = generation;
            }
        }
        if !tps.is_empty() || (eager && complete) {
            self.call_listener(&Callback::Assigned, &tps);
        }
    }

    /// Gives `partitions` up: the listener, then (auto-commit) their positions, then out of the
    /// assignment. Returns the commit's error, if any.
    fn revoke(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.call_listener(&Callback::Revoked, partitions);
        let result = if self.config.enable_auto_commit {
            let offsets = self.positions_of(partitions);
            self.commit_offsets(&offsets, true)
        } else {
            Ok(())
        };
        let keep: Vec<_> = self
            .assigned
            .iter()
            .filter(|a| !partitions.contains(&a.tp))
            .map(|a| (a.tp.clone(), a.partition.clone()))
            .collect();
        self.set_assignment(keep);
        result
    }

    fn call_listener(&mut self, callback: &Callback, partitions: &[TopicPartition]) {
        let Some(mut listener) = self.listener.get_mut().take() else {
            return;
        };
        self.in_listener = true;
        // As in Kafka, time in a callback is processing time, not time in poll: a listener that
        // runs longer than `max_poll_interval` gets the member removed.
        let timed = self.polling;
        if timed {
            if let Some(m) = &self.group {
                m.liveness.exit_poll();
            }
        }
        // A panicking listener must not leave the consumer thinking it is still inside one.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match callback {
            Callback::Revoked => listener.on_partitions_revoked(self, partitions),
            Callback::Assigned => listener.on_partitions_assigned(self, partitions),
            Callback::Lost => listener.on_partitions_lost(self, partitions),
        }));
        self.in_listener = false;
        if timed {
            if let Some(m) = &self.group {
                m.liveness.enter_poll();
            }
        }
        *self.listener.get_mut() = Some(listener);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// The positions of these partitions (those that have one), as commits.
    fn positions_of(
        &self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        self.assigned
            .iter()
            .filter(|a| partitions.is_empty() || partitions.contains(&a.tp))
            // A deleted topic's commits were forgotten with it; do not bring them back.
            .filter(|a| a.partition.log().is_ok())
            .filter_map(|a| Some((a.tp.clone(), OffsetAndMetadata::new(a.position?))))
            .collect()
    }

    /// Auto-commit at the start of a poll, when due.
    pub(super) fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() {
            return;
        }
        let now = Instant::now();
        if now < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = crate::storage::deadline_after(self.config.auto_commit_interval);
        let offsets = self.positions_of(&[]);
        // A failure (a removed member) shows at the poll's sync with the group.
        let _ = self.commit_offsets(&offsets, false);
    }

    /// Commits as the member (or, outside the membership, as a standalone consumer).
    fn commit_offsets(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        wait: bool,
    ) -> Result<()> {
        let Some(group_id) = &self.config.group_id else {
            return Err(Error::InvalidConfig {
                key: "group_id",
                reason: "committing offsets needs a consumer group; set ConsumerConfig::group_id"
                    .into(),
            });
        };
        if let Some(why) = &self.fenced {
            return Err(Error::Fenced {
                group: group_id.clone(),
                reason: why.clone(),
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let logs = self.broker.offsets_logs()?;
        let member = self
            .group
            .as_ref()
            .map(|m| (m.member_id.as_str(), m.generation));
        let offsets: Vec<_> = offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), Some(o.clone())))
            .collect();
        self.broker
            .inner
            .groups
            .commit(logs, group_id, member, &offsets, wait)
    }

    // ------------------------------------------------------------------------------ public

    /// Calls `listener` when this consumer's partitions change in group rebalances, replacing
    /// any earlier one.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        *self.listener.get_mut() = Some(Box::new(listener));
    }

    /// Commits the positions of every assigned partition (the offsets of the next records a
    /// poll would return) and waits until the commit is durable (per the offsets topic's
    /// durability). Kafka's `commitSync()`.
    ///
    /// Errors: [`Error::InvalidConfig`] without a group id; [`Error::Fenced`] if the group
    /// moved on without this consumer (see the variant); I/O errors.
    pub fn commit_sync(&mut self) -> Result<()> {
        let offsets = self.positions_of(&[]);
        self.commit_offsets(&offsets, true)
    }

    /// Commits these offsets, with their metadata, and waits until the commit is durable.
    /// Kafka's `commitSync(offsets)`. A member may commit only partitions assigned to it; a
    /// consumer with manually assigned partitions only while the group has no members.
    ///
    /// Errors: as [`commit_sync`](Self::commit_sync); [`Error::InvalidArgument`] for metadata
    /// over 4096 bytes.
    pub fn commit_sync_offsets(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.commit_offsets(offsets, true)
    }

    /// Commits the positions of every assigned partition without waiting for the disk: the
    /// commit is checked (fencing) and recorded at once, visible to
    /// [`committed`](Self::committed) and to the next owner of a partition, and becomes durable
    /// with the next synchronous commit, the consumer's close, or the background flush of the
    /// offsets topic. Kafka's `commitAsync()`.
    ///
    /// Errors: as [`commit_sync`](Self::commit_sync).
    pub fn commit_async(&mut self) -> Result<()> {
        let offsets = self.positions_of(&[]);
        self.commit_offsets(&offsets, false)
    }

    /// [`commit_async`](Self::commit_async) of these offsets.
    pub fn commit_async_offsets(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.commit_offsets(offsets, false)
    }

    /// The group's committed offsets of these partitions (`None` where nothing is committed),
    /// in the order given; the partitions need not be assigned. Kafka's `committed`.
    ///
    /// Errors: [`Error::InvalidConfig`] without a group id.
    pub fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<OffsetAndMetadata>>> {
        let Some(group_id) = &self.config.group_id else {
            return Err(Error::InvalidConfig {
                key: "group_id",
                reason:
                    "committed offsets belong to a consumer group; set ConsumerConfig::group_id"
                        .into(),
            });
        };
        Ok(self.broker.inner.groups.committed(group_id, partitions))
    }

    /// The consumer's group, generation and member id, if it has a group id.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group_id = self.config.group_id.clone()?;
        Some(ConsumerGroupMetadata {
            group_id,
            generation: self.group.as_ref().map_or(-1, |m| m.generation),
            member_id: self
                .group
                .as_ref()
                .map(|m| m.member_id.clone())
                .unwrap_or_default(),
            group_instance_id: self.config.group_instance_id.clone(),
        })
    }

    /// Closes the consumer: a group member's partitions are revoked (the listener runs, and
    /// with auto-commit their positions are committed), then it leaves the group, whose other
    /// members take the partitions over at once. A static member keeps its partitions for
    /// `session_timeout` instead. Dropping the consumer does the same but cannot report errors.
    ///
    /// Errors: the final commit's.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    pub(super) fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        // A thread unwinding from a panic did not finish the records it polled: commit nothing.
        let abrupt = std::thread::panicking() || self.fenced.is_some();
        let mut result = Ok(());
        if self.group.is_none() && self.config.enable_auto_commit && !abrupt {
            // Manually assigned partitions of a group: their positions are committed too.
            if self.config.group_id.is_some() && !self.assigned.is_empty() {
                result = self.commit_sync();
            }
        }
        let left = self.leave_group(abrupt);
        self.set_assignment(Vec::new());
        result.and(left)
    }
}
