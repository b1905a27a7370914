//! Partition assignors: how a consumer group shares its topics' partitions among its members
//! (Kafka's `ConsumerPartitionAssignor` and its four built-in strategies).
//!
//! The coordinator gives an [`Assignor`] the partition count of each subscribed topic and one
//! [`MemberSubscription`] per member; the assignor returns an [`Assignment`].
//!
//! - [`RangeAssignor`] (`"range"`, Kafka's default) works topic by topic: the members subscribed
//!   to a topic split its partitions into contiguous ranges, the first members taking one more
//!   when the count does not divide evenly. Partition *i* of two co-partitioned topics lands on
//!   the same member, at the price of imbalance across many topics.
//! - [`RoundRobinAssignor`] (`"roundrobin"`) deals all subscribed partitions, sorted by topic and
//!   partition, one at a time to the members in turn, skipping members not subscribed to the
//!   partition's topic.
//! - [`StickyAssignor`] (`"sticky"`) balances the counts and, within that balance, lets each
//!   member keep as many of the partitions it owned in the previous generation as possible.
//! - [`CooperativeStickyAssignor`] (`"cooperative-sticky"`) computes the same target as the
//!   sticky assignor, under the [`Cooperative`](RebalanceProtocol::Cooperative) protocol: members
//!   give up only the partitions that move.
//!
//! Range against round-robin, with members `C0` and `C1` both subscribed to topics `t0` and `t1`
//! of three partitions each:
//!
//! | member | range                    | round-robin        |
//! |--------|--------------------------|--------------------|
//! | `C0`   | t0-0, t0-1, t1-0, t1-1   | t0-0, t0-2, t1-1   |
//! | `C1`   | t0-2, t1-2               | t0-1, t1-0, t1-2   |
//!
//! Members are ordered as Kafka's `MemberInfo`: members with a `group_instance_id` (static
//! members) first, by instance id, then the others by member id. That order decides who gets the
//! larger ranges, who is dealt first, and who wins ties.
//!
//! Every built-in assignment satisfies, for any input:
//! 1. Every member appears, possibly with no partitions.
//! 2. Each partition of a topic in `partitions` that at least one member subscribes to is
//!    assigned to exactly one member, and that member subscribes to its topic. Nothing else is
//!    assigned; subscribed topics missing from `partitions` are ignored.
//! 3. Each member's partitions are sorted.
//! 4. The output depends only on the input: no hash order, no randomness.
//!
//! [`repair`] restores these for an assignment that came from a custom assignor.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::partition::TopicPartition;

/// How a group moves partitions in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up all its partitions at each rebalance, then receives its new
    /// assignment (Kafka's `EAGER`).
    Eager,
    /// Members give up only the partitions that move; the others keep being consumed (Kafka's
    /// `COOPERATIVE`).
    Cooperative,
}

/// What the coordinator tells an assignor about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member's id, given by the coordinator; distinct within the group.
    pub member_id: String,
    /// The static member's instance id (`group.instance.id`), if it has one.
    pub group_instance_id: Option<String>,
    /// Subscribed topics, sorted and distinct (may name topics that do not exist).
    pub topics: Vec<String>,
    /// The partitions the member was given by the previous generation, sorted (input for sticky
    /// assignors).
    pub owned_partitions: Vec<TopicPartition>,
}

/// Member id -> its partitions, sorted.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Shares a group's partitions among its members (Kafka's `ConsumerPartitionAssignor`).
/// Implement it for a custom strategy.
///
/// An assignment from a custom assignor is checked, and repaired if needed, before the group
/// uses it.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The strategy's name; every member of a group must use the same one (Kafka's names:
    /// `"range"`, `"roundrobin"`, `"sticky"`, `"cooperative-sticky"`).
    fn name(&self) -> &str;

    /// The rebalance protocol the strategy needs. Eager by default.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// Shares the partitions among the members.
    ///
    /// `partitions`: partition count of each existing topic that some member subscribes to.
    /// `members`: sorted by `member_id`.
    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment;
}

/// Kafka's default strategy (`"range"`): per topic, each subscribed member takes a contiguous
/// range of partitions, the first `count % members` of them one more.
///
/// ```
/// use std::collections::BTreeMap;
/// use tidelog::{Assignor, MemberSubscription, RangeAssignor, TopicPartition};
///
/// let partitions = BTreeMap::from([("t0".to_string(), 3), ("t1".to_string(), 3)]);
/// let member = |id: &str| MemberSubscription {
///     member_id: id.to_string(),
///     group_instance_id: None,
///     topics: vec!["t0".to_string(), "t1".to_string()],
///     owned_partitions: Vec::new(),
/// };
/// let assignment = RangeAssignor.assign(&partitions, &[member("C0"), member("C1")]);
///
/// let c1 = [TopicPartition::new("t0", 2), TopicPartition::new("t1", 2)];
/// assert_eq!(assignment["C0"].len(), 4);
/// assert_eq!(assignment["C1"], c1);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

/// Deals partitions one at a time to the members in turn (`"roundrobin"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

/// Balances the counts and keeps as many previously owned partitions as balance allows
/// (`"sticky"`), under the eager protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

/// The sticky assignment under the cooperative protocol (`"cooperative-sticky"`): only the
/// partitions that move are revoked.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let group = Group::new(partitions, members);
        let mut held = vec![Vec::new(); group.members.len()];
        for (topic, &count) in partitions {
            let subscribers: Vec<usize> = group.eligible(topic).collect();
            if subscribers.is_empty() {
                continue;
            }
            let per_member = count / subscribers.len() as u32;
            let extra = count % subscribers.len() as u32;
            for (i, &member) in subscribers.iter().enumerate() {
                let i = i as u32;
                let start = i * per_member + i.min(extra);
                let len = per_member + u32::from(i < extra);
                held[member].extend((start..start + len).map(|p| TopicPartition::new(topic, p)));
            }
        }
        group.into_assignment(held)
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let group = Group::new(partitions, members);
        let count = group.members.len();
        let mut held = vec![Vec::new(); count];
        let mut next = 0;
        for tp in group.subscribed_partitions() {
            // Some member subscribes to every listed partition's topic, so this always finds one.
            let Some(owner) = (0..count)
                .map(|step| (next + step) % count)
                .find(|&i| group.subscribes(i, &tp.topic))
            else {
                continue;
            };
            held[owner].push(tp);
            next = (owner + 1) % count;
        }
        group.into_assignment(held)
    }
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        sticky_assign(partitions, members)
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    fn assign(
        &self,
        partitions: &BTreeMap<String, u32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        sticky_assign(partitions, members)
    }
}

/// Checks an assignment (from a custom assignor) and repairs it deterministically.
///
/// The result satisfies the module's invariants: every member present; each partition that some
/// member subscribes to held by exactly one subscriber (the first claimant in member order keeps
/// a duplicate; partitions of unsubscribed or unknown topics, or out of range, are dropped;
/// missing ones go to the least-loaded eligible member, ties by member order); each list sorted.
/// Returns the repaired assignment and whether anything had to change.
pub(crate) fn repair(
    mut assignment: Assignment,
    partitions: &BTreeMap<String, u32>,
    members: &[MemberSubscription],
) -> (Assignment, bool) {
    let group = Group::new(partitions, members);
    let mut changed = false;
    let mut claimed = BTreeSet::new();
    let mut held = Vec::with_capacity(group.members.len());
    for (i, member) in group.members.iter().enumerate() {
        let given = assignment.remove(&member.member_id);
        changed |= given.is_none();
        let given = given.unwrap_or_default();
        let kept: Vec<TopicPartition> = given
            .iter()
            .filter(|tp| group.may_hold(i, tp) && claimed.insert((*tp).clone()))
            .cloned()
            .collect();
        changed |= kept.len() != given.len() || !given.is_sorted();
        held.push(kept);
    }
    // What is left belongs to ids that are not members.
    changed |= !assignment.is_empty();
    for tp in group.subscribed_partitions() {
        if claimed.contains(&tp) {
            continue;
        }
        changed = true;
        if let Some(i) = group.least_loaded(&tp.topic, |i| held[i].len()) {
            held[i].push(tp);
        }
    }
    (group.into_assignment(held), changed)
}

/// Kafka's `MemberInfo` order: static members first, by instance id, then the others by member
/// id. Member id breaks ties between equal instance ids, so the order is total.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.member_id.cmp(&b.member_id))
}

/// The members in [`member_order`], each with the subscribed topics that exist. Assignors work
/// on member indexes into this order.
struct Group<'a> {
    partitions: &'a BTreeMap<String, u32>,
    /// Distinct by member id (the first in member order wins, should the caller repeat one).
    members: Vec<&'a MemberSubscription>,
    /// `topics[i]`: the topics of `partitions` that `members[i]` subscribes to.
    topics: Vec<BTreeSet<&'a str>>,
}

impl<'a> Group<'a> {
    fn new(partitions: &'a BTreeMap<String, u32>, members: &'a [MemberSubscription]) -> Self {
        let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
        ordered.sort_by(|a, b| member_order(a, b));
        let mut seen = BTreeSet::new();
        ordered.retain(|m| seen.insert(m.member_id.as_str()));
        let topics = ordered
            .iter()
            .map(|m| {
                m.topics
                    .iter()
                    .map(String::as_str)
                    .filter(|t| partitions.contains_key(*t))
                    .collect()
            })
            .collect();
        Group {
            partitions,
            members: ordered,
            topics,
        }
    }

    fn subscribes(&self, member: usize, topic: &str) -> bool {
        self.topics[member].contains(topic)
    }

    /// Whether `member` may be assigned `tp`: it exists and the member subscribes to its topic.
    fn may_hold(&self, member: usize, tp: &TopicPartition) -> bool {
        self.subscribes(member, &tp.topic)
            && self
                .partitions
                .get(&tp.topic)
                .is_some_and(|&count| tp.partition < count)
    }

    /// The members subscribed to `topic`, in member order.
    fn eligible<'s>(&'s self, topic: &'s str) -> impl Iterator<Item = usize> + 's {
        (0..self.members.len()).filter(move |&i| self.subscribes(i, topic))
    }

    /// The eligible member with the fewest partitions, ties by member order.
    fn least_loaded(&self, topic: &str, load: impl Fn(usize) -> usize) -> Option<usize> {
        self.eligible(topic).min_by_key(|&i| (load(i), i))
    }

    /// Every partition of a topic with at least one subscriber, sorted by topic and partition.
    fn subscribed_partitions(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(topic, _)| self.eligible(topic).next().is_some())
            .flat_map(|(topic, &count)| (0..count).map(move |p| TopicPartition::new(topic, p)))
            .collect()
    }

    /// Each member's still-valid owned partitions, sorted: those that exist, whose topic the
    /// member still subscribes to, and that no earlier member claimed.
    fn valid_owned(&self) -> Vec<Vec<TopicPartition>> {
        let mut claimed = BTreeSet::new();
        (0..self.members.len())
            .map(|i| {
                let mut owned: Vec<TopicPartition> = self.members[i]
                    .owned_partitions
                    .iter()
                    .filter(|tp| self.may_hold(i, tp) && claimed.insert(*tp))
                    .cloned()
                    .collect();
                owned.sort();
                owned
            })
            .collect()
    }

    fn into_assignment(self, held: Vec<Vec<TopicPartition>>) -> Assignment {
        self.members
            .iter()
            .zip(held)
            .map(|(member, mut partitions)| {
                partitions.sort();
                (member.member_id.clone(), partitions)
            })
            .collect()
    }
}

/// The sticky assignment: Kafka's constrained algorithm when every member subscribes to the
/// same topics, the general one otherwise.
fn sticky_assign(partitions: &BTreeMap<String, u32>, members: &[MemberSubscription]) -> Assignment {
    let group = Group::new(partitions, members);
    let owned = group.valid_owned();
    let all = group.subscribed_partitions();
    let held = if group.topics.windows(2).all(|w| w[0] == w[1]) {
        constrained_assign(&all, owned)
    } else {
        general_assign(&group, &all, &owned)
    };
    group.into_assignment(held)
}

/// Every member subscribes to all of `all`. With `N` partitions and `M` members each ends with
/// `floor(N/M)` partitions, and exactly `N % M` of them with one more. Each member first keeps up
/// to its quota of owned partitions (the first `N % M` members owning more than the floor keep
/// the ceiling), which keeps the most owned partitions any balanced assignment can; the rest fill
/// members below the floor, then one each to members at the floor until the ceiling slots are
/// used up.
fn constrained_assign(
    all: &[TopicPartition],
    owned: Vec<Vec<TopicPartition>>,
) -> Vec<Vec<TopicPartition>> {
    let members = owned.len();
    if members == 0 {
        return Vec::new();
    }
    let min_quota = all.len() / members;
    let mut ceil_slots = all.len() % members;
    let mut assigned = BTreeSet::new();
    let mut held: Vec<Vec<TopicPartition>> = owned
        .into_iter()
        .map(|mut partitions| {
            let quota = if partitions.len() > min_quota && ceil_slots > 0 {
                ceil_slots -= 1;
                min_quota + 1
            } else {
                min_quota
            };
            partitions.truncate(quota);
            assigned.extend(partitions.iter().cloned());
            partitions
        })
        .collect();
    let mut pool = all.iter().filter(|tp| !assigned.contains(tp)).cloned();
    for partitions in &mut held {
        while partitions.len() < min_quota {
            let Some(tp) = pool.next() else { break };
            partitions.push(tp);
        }
    }
    // Exactly `ceil_slots` partitions remain, and at least that many members sit at the floor.
    for partitions in &mut held {
        if partitions.len() == min_quota {
            let Some(tp) = pool.next() else { break };
            partitions.push(tp);
        }
    }
    held
}

/// Subscriptions differ. Valid owned partitions stay; the others go each to the least-loaded
/// eligible member; then partitions shift along augmenting paths (see [`Balancer`]) until no
/// member can pass a partition, directly or through a chain of members, to one with at least
/// two fewer. Each shift lowers the sum of squared loads, so this ends; and when it ends no
/// sequence of moves can improve the sorted load vector.
fn general_assign(
    group: &Group<'_>,
    all: &[TopicPartition],
    owned: &[Vec<TopicPartition>],
) -> Vec<Vec<TopicPartition>> {
    let mut held: Vec<BTreeSet<TopicPartition>> = owned
        .iter()
        .map(|partitions| partitions.iter().cloned().collect())
        .collect();
    let taken: BTreeSet<&TopicPartition> = owned.iter().flatten().collect();
    for tp in all.iter().filter(|tp| !taken.contains(tp)) {
        if let Some(i) = group.least_loaded(&tp.topic, |i| held[i].len()) {
            held[i].insert(tp.clone());
        }
    }
    let mut balancer = Balancer::new(group, held, owned);
    while let Some(path) = balancer.improving_path() {
        if !balancer.shift(&path) {
            break; // unreachable (see `shift`); never loop on a path that moves nothing
        }
    }
    balancer
        .held
        .into_iter()
        .map(|set| set.into_iter().collect())
        .collect()
}

/// One step of an augmenting path: `from` passes a partition of topic index `topic` to `to`.
#[derive(Debug, Clone, Copy)]
struct Step {
    from: usize,
    to: usize,
    topic: usize,
}

/// Balances loads along augmenting paths. Member `a` can pass a partition to member `b` when
/// `a` holds a partition of a topic `b` subscribes to. A path from a member of load `h` to one
/// of load at most `h - 2` moves one partition along each of its edges: only its ends change
/// load. When no such path exists the load vector is optimal (a semi-matching with no
/// cost-reducing path, Harvey et al.): no reassignment makes its sorted loads smaller.
struct Balancer<'g> {
    owned: &'g [Vec<TopicPartition>],
    /// Topic names, sorted; topics are referred to by index into this.
    topics: Vec<&'g str>,
    /// `subscribers[t]`: the members subscribed to topic `t`, in member order.
    subscribers: Vec<Vec<usize>>,
    held: Vec<BTreeSet<TopicPartition>>,
    /// `per_topic[i][t]`: how many partitions of topic `t` member `i` holds.
    per_topic: Vec<Vec<usize>>,
}

impl<'g> Balancer<'g> {
    fn new(
        group: &'g Group<'_>,
        held: Vec<BTreeSet<TopicPartition>>,
        owned: &'g [Vec<TopicPartition>],
    ) -> Self {
        let topics: Vec<&str> = group.partitions.keys().map(String::as_str).collect();
        let subscribers = topics
            .iter()
            .map(|topic| group.eligible(topic).collect())
            .collect();
        let per_topic = held
            .iter()
            .map(|set| {
                let mut counts = vec![0; topics.len()];
                for tp in set {
                    if let Ok(t) = topics.binary_search(&tp.topic.as_str()) {
                        counts[t] += 1;
                    }
                }
                counts
            })
            .collect();
        Balancer {
            owned,
            topics,
            subscribers,
            held,
            per_topic,
        }
    }

    fn load(&self, member: usize) -> usize {
        self.held[member].len()
    }

    /// An improving path, its steps from the last to the first: from the highest load that
    /// has one, the shortest, then to the least-loaded end, ties by member order.
    fn improving_path(&self) -> Option<Vec<Step>> {
        let loads: BTreeSet<usize> = (0..self.held.len()).map(|i| self.load(i)).collect();
        let lowest = *loads.first()?;
        loads
            .iter()
            .rev()
            .take_while(|&&h| h >= lowest + 2)
            .find_map(|&h| self.path_from_load(h))
    }

    /// Breadth-first search from every member of load `h` at once for a member of load at most
    /// `h - 2`. A topic's subscribers are all reached the first time any reached member holding
    /// one of its partitions is expanded, so each topic is expanded once.
    fn path_from_load(&self, h: usize) -> Option<Vec<Step>> {
        let n = self.held.len();
        let mut dist = vec![usize::MAX; n];
        let mut parent: Vec<Option<(usize, usize)>> = vec![None; n];
        let mut expanded = vec![false; self.topics.len()];
        let mut queue = std::collections::VecDeque::new();
        for i in (0..n).filter(|&i| self.load(i) == h) {
            dist[i] = 0;
            queue.push_back(i);
        }
        let mut best: Option<(usize, usize, usize)> = None;
        while let Some(a) = queue.pop_front() {
            if best.is_some_and(|(d, _, _)| dist[a] >= d) {
                break;
            }
            for (t, &count) in self.per_topic[a].iter().enumerate() {
                if count == 0 || std::mem::replace(&mut expanded[t], true) {
                    continue;
                }
                for &b in &self.subscribers[t] {
                    if dist[b] != usize::MAX {
                        continue;
                    }
                    dist[b] = dist[a] + 1;
                    parent[b] = Some((a, t));
                    queue.push_back(b);
                    let candidate = (dist[b], self.load(b), b);
                    if self.load(b) + 2 <= h && best.is_none_or(|best| candidate < best) {
                        best = Some(candidate);
                    }
                }
            }
        }
        let (_, _, mut to) = best?;
        let mut steps = Vec::new();
        while let Some((from, topic)) = parent[to] {
            steps.push(Step { from, to, topic });
            to = from;
        }
        Some(steps)
    }

    /// Shifts one partition along each step, last step first so that no member passes on the
    /// partition it has just been given. Each member passes, of the topic's partitions it
    /// holds, preferably one the receiver owned before, else one it did not own itself, ties
    /// by partition order.
    /// Returns whether every step moved a partition.
    fn shift(&mut self, steps: &[Step]) -> bool {
        for &Step { from, to, topic } in steps {
            let name = self.topics[topic];
            let range = TopicPartition::new(name, 0)..=TopicPartition::new(name, u32::MAX);
            let tp = self.held[from]
                .range(range)
                .min_by_key(|tp| {
                    (
                        self.owned[to].binary_search(tp).is_err(),
                        self.owned[from].binary_search(tp).is_ok(),
                        *tp,
                    )
                })
                .cloned();
            // The search only steps from a member holding some of the topic, and each member
            // gives before it receives, so there is always one.
            let Some(tp) = tp else { return false };
            self.held[from].remove(&tp);
            self.held[to].insert(tp);
            self.per_topic[from][topic] -= 1;
            self.per_topic[to][topic] += 1;
        }
        true
    }
}

#[cfg(test)]
#[path = "assignor_tests.rs"]
mod tests;
