//! The group coordinator: members, generations, target assignments, the hand-over of
//! partitions between members, and committed offsets.
//!
//! Kafka's coordinator is a broker that members talk to over the network (`JoinGroup`, `SyncGroup`,
//! `Heartbeat`, `OffsetCommit`). Here it is a shared object, so a rebalance costs what a few mutex
//! acquisitions and wake-ups cost. Its model:
//!
//! - **Generation and target.** Every change of membership or of the subscribed partitions starts
//!   a new generation at once: the coordinator runs the group's assignor (members sorted by id,
//!   each member's previous target as its owned partitions) and stores each member's *target*.
//!   Then it bumps the group's `epoch` and wakes every member's poll.
//! - **Ownership.** `owners` says which member holds each partition right now. A member fetches a
//!   partition only while it owns it. A member gives partitions up (`release`) only after its
//!   rebalance listener's `on_partitions_revoked` and its auto-commit ran, and takes a partition
//!   (`sync` returning `Acquired`) only once nobody owns it, together with the committed offset
//!   read under the same lock. So no two members ever fetch the same partition at the same time,
//!   and the new owner starts exactly where the old owner's last commit left off. (One exception,
//!   as in Kafka: when a second consumer takes over a live static member's `group_instance_id`,
//!   the fenced consumer may finish the fetch it is in.)
//! - **Protocols.** Under the eager protocol a member of a new generation gives up all its
//!   partitions and takes its new target all at once. Under the cooperative protocol it gives up
//!   only what moved away and takes each new partition as soon as it is free; the rest is
//!   consumed throughout (Kafka needs two rebalances for this; the hand-over does it in one).
//!
//! Invariants (under the group's mutex):
//! 1. Every key of `owners` names a current member, and every partition it maps is one that
//!    member's consumer holds in its assignment or is about to (acquisition and release happen
//!    under the lock; the consumer applies them right after).
//! 2. `target` has an entry for every member; its partitions are disjoint.
//! 3. `epoch` changes, before the members' signals are notified, whenever a member may have
//!    something to do: a new generation, released partitions, a member removed.
//! 4. `committed` holds, for each partition, the value of the group's newest record in
//!    `__consumer_offsets`: commits are appended under the lock, in the same order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::admin::GroupState;
use super::assignor::{repair, Assignment, Assignor, MemberSubscription, RebalanceProtocol};
use super::liveness::{now_ms, Liveness, Removal};
use super::offsets::OffsetAndMetadata;
use crate::broker::is_internal_topic;
use crate::broker::TopicMap;
use crate::error::{Error, Result};
use crate::partition::TopicPartition;
use crate::storage::{AppendSignal, PartitionLog};

/// What a member subscribes to.
#[derive(Debug, Clone)]
pub(crate) enum Subscription {
    /// These topics, sorted and distinct.
    Topics(Vec<String>),
    /// Every topic whose whole name matches, except internal ones.
    Pattern(regex::Regex),
}

impl Subscription {
    fn matches(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(names) => {
                names.binary_search_by(|n| n.as_str().cmp(topic)).is_ok()
            }
            Subscription::Pattern(re) => !is_internal_topic(topic) && re.is_match(topic),
        }
    }

    fn same_as(&self, other: &Subscription) -> bool {
        match (self, other) {
            (Subscription::Topics(a), Subscription::Topics(b)) => a == b,
            (Subscription::Pattern(a), Subscription::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// A consumer's request to join a group.
pub(crate) struct JoinRequest {
    pub instance_id: Option<String>,
    pub client_id: String,
    pub subscription: Subscription,
    pub assignor: Arc<dyn Assignor>,
    pub signal: Arc<AppendSignal>,
    pub liveness: Arc<Liveness>,
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
}

pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) subscription: Subscription,
    pub(super) signal: Arc<AppendSignal>,
    pub(super) liveness: Arc<Liveness>,
    pub(super) session_timeout_ms: u64,
    pub(super) max_poll_interval_ms: u64,
    /// The generation whose target this member has taken in (given up what it had to).
    pub(super) generation: i32,
    /// When a static member's consumer was dropped; it keeps its partitions for a session.
    pub(super) departed_at: Option<u64>,
}

/// One consumer group.
pub(crate) struct Group {
    pub id: String,
    /// Invariant 3.
    pub epoch: AtomicU64,
    pub(super) state: Mutex<GroupInner>,
}

#[derive(Default)]
pub(super) struct GroupInner {
    pub(super) generation: i32,
    pub(super) assignor: Option<Arc<dyn Assignor>>,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) leader: Option<String>,
    /// Invariant 2.
    pub(super) target: Assignment,
    /// Invariant 1.
    pub(super) owners: HashMap<TopicPartition, String>,
    /// Partition count of each subscribed topic, as the current generation saw them.
    pub(super) subscribed: BTreeMap<String, u32>,
    /// Invariant 4.
    pub(super) committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
    /// Set when the group is deleted; a member that raced the deletion looks the group up again.
    pub(super) dead: bool,
}

/// What a member must do next (`sync`).
#[derive(Debug)]
pub(crate) enum SyncStep {
    /// It holds its whole target of this generation.
    Steady { generation: i32 },
    /// It must give these up (listener, commit) and then call `release`.
    Revoke {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    /// These are its own now, to start at these committed offsets.
    Acquired {
        generation: i32,
        partitions: Vec<(TopicPartition, Option<OffsetAndMetadata>)>,
        complete: bool,
    },
    /// Partitions of its target are still held by other members; it holds `generation`.
    Waiting { generation: i32 },
    /// It is no longer a member.
    Removed(Removal),
}

/// A group as the admin API reports it.
pub(crate) struct GroupSnapshot {
    pub generation: i32,
    pub assignor: Option<String>,
    pub protocol: Option<RebalanceProtocol>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
    pub committed: BTreeMap<TopicPartition, OffsetAndMetadata>,
    pub stable: bool,
    pub completing: bool,
}

impl GroupSnapshot {
    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.stable {
            GroupState::Stable
        } else if self.completing {
            GroupState::CompletingRebalance
        } else {
            GroupState::PreparingRebalance
        }
    }
}

pub(crate) struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub assignment: Vec<TopicPartition>,
}

/// All groups of an opened directory.
pub(crate) struct GroupCoordinator {
    pub(super) topics: Arc<TopicMap>,
    pub(super) groups: RwLock<BTreeMap<String, Arc<Group>>>,
    /// The partitions of `__consumer_offsets`, once it exists.
    pub(super) offsets: OnceLock<Vec<Arc<PartitionLog>>>,
    next_member: AtomicU64,
}

impl GroupCoordinator {
    pub fn new(topics: Arc<TopicMap>) -> GroupCoordinator {
        GroupCoordinator {
            topics,
            groups: RwLock::new(BTreeMap::new()),
            offsets: OnceLock::new(),
            next_member: AtomicU64::new(1),
        }
    }

    /// Uses these partitions of `__consumer_offsets` from now on (created on first use).
    pub fn offsets_logs(&self) -> Option<&[Arc<PartitionLog>]> {
        self.offsets.get().map(Vec::as_slice)
    }

    pub fn set_offsets_logs(&self, logs: Vec<Arc<PartitionLog>>) -> &[Arc<PartitionLog>] {
        self.offsets.get_or_init(|| logs)
    }

    /// The group named `id`, created empty if it does not exist.
    pub fn group(&self, id: &str) -> Arc<Group> {
        if let Some(g) = self.groups.read().get(id) {
            return Arc::clone(g);
        }
        Arc::clone(
            self.groups
                .write()
                .entry(id.to_string())
                .or_insert_with(|| {
                    Arc::new(Group {
                        id: id.to_string(),
                        epoch: AtomicU64::new(0),
                        state: Mutex::new(GroupInner::default()),
                    })
                }),
        )
    }

    /// The group named `id` if it exists.
    pub fn existing(&self, id: &str) -> Option<Arc<Group>> {
        self.groups.read().get(id).cloned()
    }

    /// Every group's id.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.read().keys().cloned().collect()
    }

    // ------------------------------------------------------------------------------ membership

    /// Adds a member; returns its group and member id.
    pub fn join(&self, group_id: &str, req: JoinRequest) -> Result<(Arc<Group>, String)> {
        loop {
            let group = self.group(group_id);
            let mut state = group.state.lock();
            if state.dead {
                continue; // deleted meanwhile: join its successor
            }
            let member_id = self.join_locked(&group, &mut state, req)?;
            drop(state);
            return Ok((group, member_id));
        }
    }

    fn join_locked(
        &self,
        group: &Group,
        state: &mut GroupInner,
        req: JoinRequest,
    ) -> Result<String> {
        if let Some(current) = &state.assignor {
            if !state.members.is_empty() && current.name() != req.assignor.name() {
                return Err(Error::InvalidConfig {
                    key: "partition_assignment_strategy",
                    reason: format!(
                        "group `{}` uses the `{}` assignor; this consumer asks for `{}`",
                        group.id,
                        current.name(),
                        req.assignor.name()
                    ),
                });
            }
        }
        let seq = self.next_member.fetch_add(1, Ordering::Relaxed);
        let member_id = format!("{}-{seq}", req.client_id);
        let previous = req.instance_id.as_ref().and_then(|instance| {
            state
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(id, _)| id.clone())
        });
        if state.members.is_empty() {
            state.assignor = Some(req.assignor);
        }
        let mut member = Member {
            instance_id: req.instance_id,
            client_id: req.client_id,
            subscription: req.subscription,
            signal: req.signal,
            liveness: req.liveness,
            session_timeout_ms: u64::try_from(req.session_timeout.as_millis()).unwrap_or(u64::MAX),
            max_poll_interval_ms: u64::try_from(req.max_poll_interval.as_millis())
                .unwrap_or(u64::MAX),
            generation: 0,
            departed_at: None,
        };
        let Some(old) = previous.and_then(|id| state.members.remove(&id).map(|m| (id, m))) else {
            state.members.insert(member_id.clone(), member);
            state.target.insert(member_id.clone(), Vec::new());
            if state.leader.is_none() {
                state.leader = Some(member_id.clone());
            }
            self.rebalance(group, state);
            return Ok(member_id);
        };
        // Static membership: the successor takes over the old member's place and partitions,
        // in the same generation, without a rebalance.
        let (old_id, old) = old;
        if old.departed_at.is_none() {
            old.liveness.set_removed(Removal::Fenced(format!(
                "another consumer joined with group_instance_id `{}`",
                member.instance_id.as_deref().unwrap_or_default()
            )));
        }
        member.generation = state.generation;
        let same_subscription = old.subscription.same_as(&member.subscription);
        let target = state.target.remove(&old_id).unwrap_or_default();
        // Invariant 1: what the old member held of its target passes to the successor; what it
        // still held beyond its target (it had not given it up yet) is free.
        state.owners.retain(|tp, owner| {
            if *owner != old_id {
                true
            } else if target.binary_search(tp).is_ok() {
                owner.clone_from(&member_id);
                true
            } else {
                false
            }
        });
        state.target.insert(member_id.clone(), target);
        if state.leader.as_ref() == Some(&old_id) {
            state.leader = Some(member_id.clone());
        }
        state.members.insert(member_id.clone(), member);
        if same_subscription {
            self.wake(group, state);
        } else {
            self.rebalance(group, state);
        }
        // Invariant 3: the fenced consumer looks after the epoch moved.
        old.signal.notify();
        Ok(member_id)
    }

    /// A member changes its subscription.
    pub fn resubscribe(&self, group: &Group, member_id: &str, subscription: Subscription) {
        let mut state = group.state.lock();
        if let Some(m) = state.members.get_mut(member_id) {
            if !m.subscription.same_as(&subscription) {
                m.subscription = subscription;
                self.rebalance(group, &mut state);
            }
        }
    }

    /// A member leaves (its consumer closed or unsubscribed): its partitions are free at once.
    pub fn leave(&self, group: &Group, member_id: &str) {
        let mut state = group.state.lock();
        if let Some(signal) = remove_member(&mut state, member_id, None) {
            self.rebalance(group, &mut state);
            signal.notify();
        }
    }

    /// A static member's consumer is gone: it keeps its place for `session_timeout`, and its
    /// partitions that the target gives to others are free for them now.
    pub fn depart(&self, group: &Group, member_id: &str) {
        let mut state = group.state.lock();
        if let Some(m) = state.members.get_mut(member_id) {
            m.departed_at = Some(now_ms());
            self.wake(group, &state);
        }
    }

    /// Removes the members whose time ran out (see `liveness.rs`); run by the background thread.
    pub fn expire_members(&self) {
        let now = now_ms();
        let groups: Vec<Arc<Group>> = self.groups.read().values().cloned().collect();
        for group in groups {
            let mut state = group.state.lock();
            let expired: Vec<(String, String)> = state
                .members
                .iter()
                .filter_map(|(id, m)| {
                    let why = match m.departed_at {
                        Some(at) if now.saturating_sub(at) >= m.session_timeout_ms => {
                            Some(format!(
                            "static member `{}` did not come back within session_timeout ({} ms)",
                            m.instance_id.as_deref().unwrap_or_default(),
                            m.session_timeout_ms
                        ))
                        }
                        Some(_) => None,
                        None => {
                            m.liveness
                                .expired(now, m.max_poll_interval_ms, m.session_timeout_ms)
                        }
                    };
                    why.map(|why| (id.clone(), why))
                })
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut removed = Vec::with_capacity(expired.len());
            for (id, why) in expired {
                let reason = format!("member `{id}` was removed: {why}");
                removed.extend(remove_member(
                    &mut state,
                    &id,
                    Some(Removal::Expired(reason)),
                ));
            }
            self.rebalance(&group, &mut state);
            // Invariant 3: after the epoch moved.
            for signal in removed {
                signal.notify();
            }
        }
    }

    /// Topics were created, deleted or grew: groups whose subscribed partitions changed
    /// rebalance.
    pub fn topics_changed(&self) {
        let groups: Vec<Arc<Group>> = self.groups.read().values().cloned().collect();
        for group in groups {
            let mut state = group.state.lock();
            if !state.members.is_empty() && self.subscribed(&state) != state.subscribed {
                self.rebalance(&group, &mut state);
            }
        }
    }

    /// Partition counts of the live topics some member subscribes to.
    fn subscribed(&self, state: &GroupInner) -> BTreeMap<String, u32> {
        let topics = self.topics.read();
        let mut out = BTreeMap::new();
        for (name, topic) in topics.iter() {
            if topic.check_live().is_ok()
                && state.members.values().any(|m| m.subscription.matches(name))
            {
                out.insert(name.clone(), topic.partitions.read().len() as u32);
            }
        }
        out
    }

    /// Starts a new generation: a new target for every member, then wakes them (invariant 3).
    fn rebalance(&self, group: &Group, state: &mut GroupInner) {
        state.generation += 1;
        let subscribed = self.subscribed(state);
        let members: Vec<MemberSubscription> = state
            .members
            .iter()
            .map(|(id, m)| MemberSubscription {
                member_id: id.clone(),
                group_instance_id: m.instance_id.clone(),
                topics: subscribed
                    .keys()
                    .filter(|t| m.subscription.matches(t))
                    .cloned()
                    .collect(),
                owned_partitions: state.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        state.target = match (&state.assignor, members.is_empty()) {
            (Some(assignor), false) => {
                repair(
                    assignor.assign(&subscribed, &members),
                    &subscribed,
                    &members,
                )
                .0
            }
            _ => Assignment::new(),
        };
        // A partition whose topic is gone has nothing to hand over: its holder drops it at its
        // next sync. (One that still exists stays owned until its holder gives it up, even when
        // nobody subscribes to it any more.)
        {
            let topics = self.topics.read();
            state.owners.retain(|tp, _| {
                topics.get(&tp.topic).is_some_and(|t| {
                    t.check_live().is_ok() && (tp.partition as usize) < t.partitions.read().len()
                })
            });
        }
        state.subscribed = subscribed;
        if state.members.is_empty() {
            state.assignor = None;
            state.leader = None;
        } else if !state
            .leader
            .as_ref()
            .is_some_and(|l| state.members.contains_key(l))
        {
            state.leader = state.members.keys().next().cloned();
        }
        self.wake(group, state);
    }

    /// Invariant 3: bump the epoch, then notify.
    #[allow(clippy::unused_self)]
    fn wake(&self, group: &Group, state: &GroupInner) {
        group.epoch.fetch_add(1, Ordering::AcqRel);
        for m in state.members.values() {
            m.signal.notify();
        }
    }

    // ------------------------------------------------------------------------------ hand-over

    /// What member `member_id`, whose consumer holds `owned`, must do next; with the group's
    /// epoch at the time of the answer.
    pub fn sync(
        &self,
        group: &Group,
        member_id: &str,
        owned: &[TopicPartition],
    ) -> (SyncStep, u64) {
        let mut state = group.state.lock();
        let mut epoch = group.epoch.load(Ordering::Acquire);
        let generation = state.generation;
        let eager = state
            .assignor
            .as_ref()
            .is_none_or(|a| a.protocol() == RebalanceProtocol::Eager);
        let Some(member) = state.members.get(member_id) else {
            return (
                SyncStep::Removed(Removal::Expired(format!(
                    "member `{member_id}` is no longer in group `{}`",
                    group.id
                ))),
                epoch,
            );
        };
        if let Some(removal) = member.liveness.removal() {
            return (SyncStep::Removed(removal), epoch);
        }
        let member_generation = member.generation;
        let target = state.target.get(member_id).cloned().unwrap_or_default();
        // Invariant 1: what the coordinator counts as this member's but its consumer does not
        // hold and its target does not want (a static successor's leftovers) is free.
        let before = state.owners.len();
        state.owners.retain(|tp, o| {
            o != member_id || owned.contains(tp) || target.binary_search(tp).is_ok()
        });
        if state.owners.len() != before {
            self.wake(group, &state);
            epoch = group.epoch.load(Ordering::Acquire);
        }
        if member_generation != generation {
            let revoke: Vec<TopicPartition> = if eager {
                owned.to_vec()
            } else {
                owned
                    .iter()
                    .filter(|tp| target.binary_search(tp).is_err())
                    .cloned()
                    .collect()
            };
            if !revoke.is_empty() {
                return (
                    SyncStep::Revoke {
                        generation,
                        partitions: revoke,
                    },
                    epoch,
                );
            }
            if let Some(m) = state.members.get_mut(member_id) {
                m.generation = generation;
            }
        }
        let wanted: Vec<&TopicPartition> = target.iter().filter(|tp| !owned.contains(tp)).collect();
        if wanted.is_empty() {
            return (SyncStep::Steady { generation }, epoch);
        }
        // A static member whose consumer is gone consumes nothing: what it holds is free for
        // the member the target gives it to.
        let free: Vec<TopicPartition> = wanted
            .iter()
            .filter(|tp| {
                state.owners.get(**tp).is_none_or(|o| {
                    o == member_id || state.members.get(o).is_none_or(|m| m.departed_at.is_some())
                })
            })
            .map(|tp| (*tp).clone())
            .collect();
        if free.is_empty() || (eager && free.len() < wanted.len()) {
            return (SyncStep::Waiting { generation }, epoch);
        }
        let complete = free.len() == wanted.len();
        let partitions = free
            .into_iter()
            .map(|tp| {
                state.owners.insert(tp.clone(), member_id.to_string());
                let committed = state.committed.get(&tp).cloned();
                (tp, committed)
            })
            .collect();
        (
            SyncStep::Acquired {
                generation,
                partitions,
                complete,
            },
            epoch,
        )
    }

    /// Member `member_id` gave up `partitions` for `generation`; others may take them now.
    pub fn release(
        &self,
        group: &Group,
        member_id: &str,
        generation: i32,
        partitions: &[TopicPartition],
    ) {
        let mut state = group.state.lock();
        for tp in partitions {
            if state.owners.get(tp).is_some_and(|o| o == member_id) {
                state.owners.remove(tp);
            }
        }
        if let Some(m) = state.members.get_mut(member_id) {
            m.generation = generation;
        }
        self.wake(group, &state);
    }

    /// The group as the admin API shows it.
    pub fn snapshot(&self, group_id: &str) -> Option<GroupSnapshot> {
        let group = self.existing(group_id)?;
        let state = group.state.lock();
        let members = state
            .members
            .iter()
            .map(|(id, m)| MemberSnapshot {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                assignment: state.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        // A departed static member waits for its successor; it does not hold the group up.
        let present = |id: &String| {
            state
                .members
                .get(id)
                .is_some_and(|m| m.departed_at.is_none())
        };
        let all_synced = state
            .members
            .iter()
            .all(|(id, m)| !present(id) || m.generation == state.generation);
        let all_owned = state.target.iter().all(|(id, tps)| {
            !present(id)
                || tps
                    .iter()
                    .all(|tp| state.owners.get(tp).is_some_and(|o| o == id))
        });
        Some(GroupSnapshot {
            generation: state.generation,
            assignor: state.assignor.as_ref().map(|a| a.name().to_string()),
            protocol: state.assignor.as_ref().map(|a| a.protocol()),
            leader: state.leader.clone(),
            members,
            committed: state.committed.clone(),
            stable: all_synced && all_owned,
            completing: all_synced && !all_owned,
        })
    }
}

/// Takes a member out: its partitions are free, its consumer learns why at its next poll.
/// Returns the member's signal, to notify once the epoch has moved (invariant 3); `None` if it
/// was no member.
fn remove_member(
    state: &mut GroupInner,
    member_id: &str,
    removal: Option<Removal>,
) -> Option<Arc<AppendSignal>> {
    let m = state.members.remove(member_id)?;
    if let Some(removal) = removal {
        m.liveness.set_removed(removal);
    }
    state.target.remove(member_id);
    state.owners.retain(|_, owner| owner != member_id);
    if state.leader.as_deref() == Some(member_id) {
        state.leader = None;
    }
    Some(m.signal)
}
