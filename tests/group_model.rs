//! Model-based property test of consumer groups through the public API, in the spirit of sled's
//! and redb's model fuzzing.
//!
//! Each case opens a broker with topic `t-a` (1–4 partitions, a few records in each) and maybe
//! `t-b` (2 partitions), picks one assignor for the whole group, and runs a random sequence of [`Op`]s on up to [`SLOTS`]
//! consumer *slots* of group `g` (auto-commit off, `auto_offset_reset` Earliest): create a
//! consumer, subscribe it (to `t-a`, to `t-a` + `t-b`, or to the pattern `t-.*`), poll it once
//! without waiting, `commit_sync`, `unsubscribe`, `close`, drop; append records; grow a topic;
//! create `t-b`; *settle* (poll every member round-robin until nothing changes). Everything runs
//! on the test's thread, so a run is deterministic, and no member is ever removed for liveness
//! (the default `max_poll_interval` and `session_timeout` are far longer than a case).
//!
//! Every operation is applied to the real system and to [`Model`], a plain statement of what a
//! user may rely on. The model does not predict *which* partitions the assignor hands out; it
//! learns that from the rebalance listener, whose events it checks too. After every step
//! [`check_step`] asserts:
//!
//! 1. **Exclusive ownership**: no partition is in the `assignment()` of two live consumers.
//! 2. **No gaps, no skips**: each record a poll returns is at the model's next offset for that
//!    partition and consumer (and carries the value appended there); a partition a consumer
//!    newly acquires (listener: `on_partitions_assigned`) starts at the group's last successful
//!    commit for it, else at 0. `position()` equals the model's next offset for every held
//!    partition.
//! 3. **Listener protocol**: revoked partitions were held; assigned ones were not; under the
//!    eager protocol a revoke gives up everything and an assignment comes with nothing held;
//!    nothing is ever lost; `assignment()` is exactly what the events say is held.
//! 4. **Generation**: `describe_group("g").generation` is exactly the model's: +1 at each join,
//!    leave, change of a member's subscription, and change of the subscribed partitions; the
//!    group does not exist before the first join.
//! 5. **Commits**: `committed()` equals the model's last successful commits; `commit_sync` never
//!    fails: nothing removes or fences a member in a single-threaded run, and a member commits
//!    only partitions it holds, even those of a topic nobody subscribes to any more.
//! 6. **Targets**: the members in `describe_group` are exactly the subscribed slots; their
//!    assignments are disjoint, each within its member's subscription, and together cover every
//!    partition of the subscribed topics.
//!
//! After a settle ([`check_settled`]): the group is `Stable` (or `Empty`), each consumer holds
//! exactly its `describe_group` assignment in the group's generation, every held partition is
//! consumed to its log end, and the assignment is balanced (range: per topic among its
//! subscribers; the others: overall, when all members subscribe to the same topics).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, CooperativeStickyAssignor, Durability, Error,
    GroupState, LogConfig, OffsetReset, RangeAssignor, RebalanceListener, Record,
    RoundRobinAssignor, StickyAssignor, TopicPartition,
};

const GROUP: &str = "g";
const SLOTS: usize = 5;
/// `t-a` exists from the start; `t-b` from the start or after [`Op::CreateTopicB`].
const TOPICS: [&str; 2] = ["t-a", "t-b"];
const PATTERN: &str = "t-.*";
const MAX_PARTITIONS: u32 = 6;
/// A settle that needs more rounds than this is a failure (eager needs 3: give up, take, idle).
const SETTLE_ROUNDS: usize = 6;

// ---------------------------------------------------------------------------------- operations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssignorKind {
    Range,
    RoundRobin,
    Sticky,
    CooperativeSticky,
}

impl AssignorKind {
    fn config(self) -> ConsumerConfig {
        let config = ConsumerConfig::default()
            .group_id(GROUP)
            .enable_auto_commit(false)
            .auto_offset_reset(OffsetReset::Earliest);
        match self {
            AssignorKind::Range => config.partition_assignment_strategy(RangeAssignor),
            AssignorKind::RoundRobin => config.partition_assignment_strategy(RoundRobinAssignor),
            AssignorKind::Sticky => config.partition_assignment_strategy(StickyAssignor),
            AssignorKind::CooperativeSticky => {
                config.partition_assignment_strategy(CooperativeStickyAssignor)
            }
        }
    }

    fn eager(self) -> bool {
        self != AssignorKind::CooperativeSticky
    }
}

/// A subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// `subscribe(&["t-a"])`
    A,
    /// `subscribe(&["t-a", "t-b"])`
    AB,
    /// `subscribe_pattern("t-.*")`
    Pattern,
}

impl Sub {
    fn matches(self, topic: &str) -> bool {
        match self {
            Sub::A => topic == TOPICS[0],
            Sub::AB => TOPICS.contains(&topic),
            Sub::Pattern => topic.starts_with("t-"),
        }
    }

    fn apply(self, consumer: &mut Consumer) -> tidelog::Result<()> {
        match self {
            Sub::A => consumer.subscribe(&[TOPICS[0]]),
            Sub::AB => consumer.subscribe(&TOPICS),
            Sub::Pattern => consumer.subscribe_pattern(PATTERN),
        }
    }
}

/// An operation. A `usize` names a live consumer: the `(n % live)`-th live slot (no-op if there
/// is none), so that nearly every operation does something and shrinking keeps them meaningful.
#[derive(Debug, Clone)]
enum Op {
    /// A consumer in the first empty slot (no-op if there is none).
    Create,
    /// `subscribe` (joins, or changes the member's subscription).
    Subscribe(usize, Sub),
    /// One `poll(Duration::ZERO)`.
    Poll(usize),
    CommitSync(usize),
    Unsubscribe(usize),
    Close(usize),
    Drop(usize),
    /// Appends `count` records to partition `partition % count_of(topic)` of an existing topic.
    Append {
        topic: usize,
        partition: u32,
        count: u32,
    },
    /// Grows an existing topic by one partition (up to `MAX_PARTITIONS`).
    AddPartition(usize),
    /// Creates `t-b` with two partitions, if it does not exist.
    CreateTopicB,
    /// Polls every member round-robin until nothing changes, then checks the settled state.
    Settle,
}

fn sub() -> impl Strategy<Value = Sub> {
    prop_oneof![Just(Sub::A), Just(Sub::AB), Just(Sub::Pattern)]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        3 => Just(Op::Create),
        5 => (slot.clone(), sub()).prop_map(|(s, sub)| Op::Subscribe(s, sub)),
        8 => slot.clone().prop_map(Op::Poll),
        4 => slot.clone().prop_map(Op::CommitSync),
        1 => slot.clone().prop_map(Op::Unsubscribe),
        1 => slot.clone().prop_map(Op::Close),
        1 => slot.prop_map(Op::Drop),
        3 => (0..2usize, 0..MAX_PARTITIONS, 1..4u32)
            .prop_map(|(topic, partition, count)| Op::Append { topic, partition, count }),
        1 => (0..2usize).prop_map(Op::AddPartition),
        1 => Just(Op::CreateTopicB),
        2 => Just(Op::Settle),
    ]
}

/// What a case starts from.
#[derive(Debug, Clone)]
struct Setup {
    assignor: AssignorKind,
    /// Records in each partition of `t-a` (its length is the partition count).
    initial_records: Vec<u32>,
    /// Whether `t-b` exists from the start (with two empty partitions).
    topic_b: bool,
    /// `Some`: every subscribe of the case uses this subscription (so the subscriptions are
    /// identical and balance is checked); `None`: each uses its own.
    uniform: Option<Sub>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![
            Just(AssignorKind::Range),
            Just(AssignorKind::RoundRobin),
            Just(AssignorKind::Sticky),
            Just(AssignorKind::CooperativeSticky),
        ],
        prop::collection::vec(0..4u32, 1..=4),
        any::<bool>(),
        prop::option::weighted(0.5, sub()),
    )
        .prop_map(|(assignor, initial_records, topic_b, uniform)| Setup {
            assignor,
            initial_records,
            topic_b,
            uniform,
        })
}

// ---------------------------------------------------------------------------------- the model

/// A plain statement of what the user may rely on.
#[derive(Debug)]
struct Model {
    assignor: AssignorKind,
    /// Existing topics and their partition counts.
    topics: BTreeMap<&'static str, u32>,
    /// Records appended to each partition: its log end offset.
    log_end: BTreeMap<TopicPartition, u64>,
    /// The last successful commit of each partition.
    committed: BTreeMap<TopicPartition, u64>,
    /// The group's generation; `None` until the first join creates the group.
    generation: Option<i32>,
    slots: Vec<Option<SlotModel>>,
}

#[derive(Debug, Default)]
struct SlotModel {
    /// `Some` while the consumer is a member of the group.
    subscription: Option<Sub>,
    /// The partitions it holds, each with the offset of the next record it must return.
    next: BTreeMap<TopicPartition, u64>,
}

impl Model {
    fn slot(&mut self, slot: usize) -> &mut SlotModel {
        self.slots[slot].as_mut().expect("slot is live")
    }

    fn members(&self) -> impl Iterator<Item = (usize, Sub)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?.subscription?)))
    }

    /// A new generation starts.
    fn rebalance(&mut self) {
        self.generation = Some(self.generation.unwrap_or(0) + 1);
    }

    /// Whether giving `slot` the subscription `sub` would leave a consumer holding a partition of
    /// a topic that no member subscribes to any more (until it polls).
    /// The topics some member subscribes to changed partitions: the group rebalances.
    fn topic_changed(&mut self, topic: &str) {
        if self.members().any(|(_, sub)| sub.matches(topic)) {
            self.rebalance();
        }
    }

    /// Every partition of the existing topics `sub` covers.
    fn partitions_of(&self, sub: Sub) -> BTreeSet<TopicPartition> {
        self.topics
            .iter()
            .filter(|(t, _)| sub.matches(t))
            .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(*t, p)))
            .collect()
    }

    /// The existing topics `sub` covers.
    fn topics_of(&self, sub: Sub) -> BTreeSet<&'static str> {
        self.topics
            .keys()
            .copied()
            .filter(|t| sub.matches(t))
            .collect()
    }

    /// Applies the listener's events of one call to the slot's holdings (invariant 3).
    fn apply_events(&mut self, slot: usize, events: Vec<Event>) {
        let eager = self.assignor.eager();
        let committed = self.committed.clone();
        let held = &mut self.slot(slot).next;
        for event in events {
            match event {
                Event::Revoked(tps) => {
                    for tp in &tps {
                        assert!(
                            held.remove(tp).is_some(),
                            "slot {slot}: revoked {tp}, which it did not hold"
                        );
                    }
                    assert!(
                        !eager || held.is_empty(),
                        "slot {slot}: an eager revoke gives up everything; still holds {:?}",
                        held.keys().collect::<Vec<_>>()
                    );
                }
                Event::Assigned(tps) => {
                    assert!(
                        !eager || held.is_empty(),
                        "slot {slot}: an eager assignment comes after giving up everything"
                    );
                    for tp in tps {
                        // A newly acquired partition starts at the group's committed offset,
                        // else at the log start (Earliest): 0, nothing is ever deleted here.
                        let start = committed.get(&tp).copied().unwrap_or(0);
                        assert!(
                            held.insert(tp.clone(), start).is_none(),
                            "slot {slot}: assigned {tp}, which it already held"
                        );
                    }
                }
                Event::Lost(tps) => {
                    panic!("slot {slot}: lost {tps:?}, but no member is ever removed here")
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------- the real system

/// What the rebalance listener saw.
#[derive(Debug)]
enum Event {
    Revoked(Vec<TopicPartition>),
    Assigned(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
}

type Events = Arc<Mutex<Vec<Event>>>;

struct Recorder(Events);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Revoked(partitions.to_vec()));
    }

    fn on_partitions_assigned(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Assigned(partitions.to_vec()));
    }

    fn on_partitions_lost(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Lost(partitions.to_vec()));
    }
}

fn take(events: &Events) -> Vec<Event> {
    std::mem::take(&mut *events.lock().unwrap())
}

struct Slot {
    consumer: Consumer,
    events: Events,
}

// Fields drop in order: consumers before the broker before its directory.
struct Real {
    slots: Vec<Option<Slot>>,
    /// A consumer of group `g` that never subscribes: reads the committed offsets.
    observer: Consumer,
    broker: Broker,
    _dir: tempfile::TempDir,
}

fn value(tp: &TopicPartition, offset: u64) -> String {
    format!("{}/{}/{offset}", tp.topic, tp.partition)
}

fn append(real: &Real, model: &mut Model, tp: &TopicPartition, count: u32) {
    let end = model.log_end.entry(tp.clone()).or_insert(0);
    let records: Vec<Record> = (0..u64::from(count))
        .map(|i| Record::new(format!("k{}", *end + i), value(tp, *end + i)))
        .collect();
    real.broker
        .partition(&tp.topic, tp.partition)
        .unwrap()
        .log()
        .unwrap()
        .append(&records)
        .unwrap();
    *end += u64::from(count);
}

fn open(setup: &Setup) -> (Real, Model) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::default()
        .maintenance_interval(Duration::from_millis(10))
        .topic_defaults(LogConfig::default().durability(Durability::None))
        .offsets_topic_config(LogConfig::default().durability(Durability::None));
    let broker = Broker::open_with(dir.path(), config).unwrap();
    let partitions = setup.initial_records.len() as u32;
    broker.create_topic(TOPICS[0], partitions).unwrap();
    let observer = broker.consumer(setup.assignor.config()).unwrap();
    let real = Real {
        slots: (0..SLOTS).map(|_| None).collect(),
        observer,
        broker,
        _dir: dir,
    };
    let mut model = Model {
        assignor: setup.assignor,
        topics: BTreeMap::from([(TOPICS[0], partitions)]),
        log_end: (0..partitions)
            .map(|p| (TopicPartition::new(TOPICS[0], p), 0))
            .collect(),
        committed: BTreeMap::new(),
        generation: None,
        slots: (0..SLOTS).map(|_| None).collect(),
    };
    for (p, n) in setup.initial_records.iter().enumerate() {
        if *n > 0 {
            append(
                &real,
                &mut model,
                &TopicPartition::new(TOPICS[0], p as u32),
                *n,
            );
        }
    }
    if setup.topic_b {
        create_topic_b(&real, &mut model);
    }
    (real, model)
}

fn create_topic_b(real: &Real, model: &mut Model) {
    real.broker.create_topic(TOPICS[1], 2).unwrap();
    model.topics.insert(TOPICS[1], 2);
    for p in 0..2 {
        model.log_end.insert(TopicPartition::new(TOPICS[1], p), 0);
    }
}

// ---------------------------------------------------------------------------------- steps

/// Polls `slot` once; returns whether anything changed (listener events or records).
fn poll(real: &mut Real, model: &mut Model, slot: usize) -> bool {
    let s = real.slots[slot].as_mut().expect("slot is live");
    let records = s
        .consumer
        .poll(Duration::ZERO)
        .unwrap_or_else(|e| panic!("slot {slot}: poll failed: {e}"));
    let events = take(&s.events);
    let changed = !events.is_empty() || !records.is_empty();
    model.apply_events(slot, events);
    let m = model.slot(slot);
    // Invariant 2: each record at the next offset of its partition, with the value appended.
    for r in records.iter() {
        let tp = r.topic_partition();
        let next = m.next.get_mut(&tp).unwrap_or_else(|| {
            panic!(
                "slot {slot}: record {tp}@{} from a partition it does not hold",
                r.offset
            )
        });
        assert_eq!(
            r.offset, *next,
            "slot {slot}: {tp}: got offset {}, expected {next}",
            r.offset
        );
        assert_eq!(
            r.value.as_deref(),
            Some(value(&tp, r.offset).as_bytes()),
            "slot {slot}: {tp}@{}: wrong value",
            r.offset
        );
        *next += 1;
    }
    changed
}

/// The live slot that `n` names: the `(n % live)`-th one.
fn live_slot(model: &Model, n: usize) -> Option<usize> {
    let live: Vec<usize> = (0..SLOTS).filter(|s| model.slots[*s].is_some()).collect();
    (!live.is_empty()).then(|| live[n % live.len()])
}

fn apply(real: &mut Real, model: &mut Model, setup: &Setup, op: &Op) {
    let slot = match *op {
        Op::Create => (0..SLOTS).find(|s| model.slots[*s].is_none()),
        Op::Subscribe(n, _)
        | Op::Poll(n)
        | Op::CommitSync(n)
        | Op::Unsubscribe(n)
        | Op::Close(n)
        | Op::Drop(n) => live_slot(model, n),
        _ => None,
    };
    match *op {
        Op::Create => {
            let Some(slot) = slot else { return };
            let mut consumer = real.broker.consumer(setup.assignor.config()).unwrap();
            let events = Events::default();
            consumer.set_rebalance_listener(Recorder(Arc::clone(&events)));
            real.slots[slot] = Some(Slot { consumer, events });
            model.slots[slot] = Some(SlotModel::default());
        }
        Op::Subscribe(_, sub) => {
            let Some(slot) = slot else { return };
            let sub = setup.uniform.unwrap_or(sub);
            let s = real.slots[slot].as_mut().unwrap();
            sub.apply(&mut s.consumer)
                .unwrap_or_else(|e| panic!("slot {slot}: subscribe failed: {e}"));
            assert!(take(&s.events).is_empty(), "subscribe calls no listener");
            let m = model.slot(slot);
            let before = m.subscription.replace(sub);
            if before != Some(sub) {
                // A join, or a member's new subscription: a new generation.
                model.rebalance();
            }
        }
        Op::Poll(_) => {
            if let Some(slot) = slot {
                poll(real, model, slot);
            }
        }
        Op::CommitSync(_) => {
            let Some(slot) = slot else { return };
            let s = real.slots[slot].as_mut().unwrap();
            match s.consumer.commit_sync() {
                Ok(()) => {
                    let held = model.slot(slot).next.clone();
                    model.committed.extend(held);
                }
                Err(e) => panic!("slot {slot}: commit_sync failed: {e}"),
            }
        }
        Op::Unsubscribe(_) | Op::Close(_) | Op::Drop(_) => {
            let Some(slot) = slot else { return };
            let Slot {
                mut consumer,
                events,
            } = real.slots[slot].take().unwrap();
            match op {
                Op::Unsubscribe(_) => {
                    consumer
                        .unsubscribe()
                        .unwrap_or_else(|e| panic!("slot {slot}: unsubscribe failed: {e}"));
                    assert!(consumer.assignment().is_empty());
                    real.slots[slot] = Some(Slot {
                        consumer,
                        events: Arc::clone(&events),
                    });
                }
                Op::Close(_) => consumer
                    .close()
                    .unwrap_or_else(|e| panic!("slot {slot}: close failed: {e}")),
                _ => drop(consumer),
            }
            // Leaving revokes everything the consumer holds.
            model.apply_events(slot, take(&events));
            let m = model.slot(slot);
            assert!(m.next.is_empty(), "slot {slot}: left holding {:?}", m.next);
            let was_member = m.subscription.take().is_some();
            if !matches!(op, Op::Unsubscribe(_)) {
                model.slots[slot] = None;
            }
            if was_member {
                model.rebalance();
            }
        }
        Op::Append {
            topic,
            partition,
            count,
        } => {
            let name = TOPICS[topic];
            let Some(&n) = model.topics.get(name) else {
                return;
            };
            append(
                real,
                model,
                &TopicPartition::new(name, partition % n),
                count,
            );
        }
        Op::AddPartition(topic) => {
            let name = TOPICS[topic];
            let Some(&n) = model.topics.get(name) else {
                return;
            };
            if n >= MAX_PARTITIONS {
                return;
            }
            real.broker.add_partitions(name, n + 1).unwrap();
            model.topics.insert(name, n + 1);
            model.log_end.insert(TopicPartition::new(name, n), 0);
            model.topic_changed(name);
        }
        Op::CreateTopicB => {
            let name = TOPICS[1];
            if model.topics.contains_key(name) {
                return;
            }
            create_topic_b(real, model);
            model.topic_changed(name);
        }
        Op::Settle => settle(real, model, setup),
    }
}

/// Polls every member round-robin until a whole round changes nothing, checking every step,
/// then checks the settled state.
fn settle(real: &mut Real, model: &mut Model, setup: &Setup) {
    for _ in 0..SETTLE_ROUNDS {
        let mut changed = false;
        let members: Vec<usize> = model.members().map(|(i, _)| i).collect();
        for slot in members {
            changed |= poll(real, model, slot);
            check_step(real, model);
        }
        if !changed {
            check_settled(real, model, setup);
            return;
        }
    }
    panic!("the group did not settle within {SETTLE_ROUNDS} rounds of polls");
}

// ---------------------------------------------------------------------------------- checks

/// The invariants that hold after every step.
fn check_step(real: &mut Real, model: &Model) {
    // Invariants 1 and 2: assignments are what the model says is held, disjoint, at the
    // model's positions.
    let mut owner: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (slot, s) in real.slots.iter_mut().enumerate() {
        let Some(s) = s else { continue };
        let m = model.slots[slot]
            .as_ref()
            .expect("model and system agree on live slots");
        let assignment = s.consumer.assignment();
        assert_eq!(
            assignment,
            m.next.keys().cloned().collect::<Vec<_>>(),
            "slot {slot}: assignment() differs from what the listener said"
        );
        for tp in assignment {
            if let Some(other) = owner.insert(tp.clone(), slot) {
                panic!("{tp} is assigned to slots {other} and {slot} at once");
            }
            let position = s.consumer.position(&tp).unwrap();
            assert_eq!(position, m.next[&tp], "slot {slot}: position of {tp}");
            assert!(
                position <= model.log_end[&tp],
                "slot {slot}: {tp} past its end"
            );
        }
        let meta = s.consumer.group_metadata().unwrap();
        assert_eq!(
            meta.member_id.is_empty(),
            m.subscription.is_none(),
            "slot {slot}: member id {:?} but subscription {:?}",
            meta.member_id,
            m.subscription
        );
        if m.subscription.is_none() {
            assert_eq!(
                meta.generation, -1,
                "slot {slot}: generation outside the group"
            );
        } else {
            assert!(
                Some(meta.generation) <= model.generation,
                "slot {slot}: generation {} ahead of the group's {:?}",
                meta.generation,
                model.generation
            );
        }
    }
    for (slot, m) in model.slots.iter().enumerate() {
        assert_eq!(m.is_some(), real.slots[slot].is_some());
    }

    // Invariant 5: committed offsets are the last successful commits.
    let all: Vec<TopicPartition> = model.log_end.keys().cloned().collect();
    let committed = real.observer.committed(&all).unwrap();
    for (tp, c) in all.iter().zip(committed) {
        assert_eq!(
            c.map(|c| c.offset),
            model.committed.get(tp).copied(),
            "committed offset of {tp}"
        );
    }

    // Invariants 4 and 6: the group's generation and members, and its target assignment.
    let Some(generation) = model.generation else {
        assert!(
            matches!(
                real.broker.describe_group(GROUP),
                Err(Error::UnknownGroup(_))
            ),
            "the group exists before anyone joined"
        );
        return;
    };
    let group = real.broker.describe_group(GROUP).unwrap();
    assert_eq!(group.generation, generation, "generation");
    let mut expected_members: BTreeMap<String, Sub> = BTreeMap::new();
    for (slot, sub) in model.members() {
        let id = real.slots[slot]
            .as_ref()
            .unwrap()
            .consumer
            .group_metadata()
            .unwrap()
            .member_id;
        expected_members.insert(id, sub);
    }
    let ids: Vec<&String> = group.members.iter().map(|m| &m.member_id).collect();
    assert_eq!(
        ids,
        expected_members.keys().collect::<Vec<_>>(),
        "describe_group members"
    );
    assert_eq!(
        group.state == GroupState::Empty,
        expected_members.is_empty(),
        "state {:?} with {} members",
        group.state,
        expected_members.len()
    );
    let mut targeted = BTreeSet::new();
    let mut subscribed = BTreeSet::new();
    for member in &group.members {
        let sub = expected_members[&member.member_id];
        let covered = model.partitions_of(sub);
        for tp in &member.assignment {
            assert!(
                covered.contains(tp),
                "{tp} targeted to {}, not subscribed to it",
                member.member_id
            );
            assert!(targeted.insert(tp.clone()), "{tp} targeted twice");
        }
        subscribed.extend(covered);
    }
    assert_eq!(
        targeted, subscribed,
        "the targets cover the subscribed partitions"
    );
}

/// The invariants that hold once every member polled until nothing changed.
fn check_settled(real: &mut Real, model: &Model, setup: &Setup) {
    let Some(generation) = model.generation else {
        return;
    };
    let group = real.broker.describe_group(GROUP).unwrap();
    let expected_state = if group.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    assert_eq!(group.state, expected_state, "state after settling");
    let mut counts: Vec<(Sub, BTreeMap<String, usize>, usize)> = Vec::new();
    for (slot, sub) in model.members() {
        let consumer = &real.slots[slot].as_ref().unwrap().consumer;
        let meta = consumer.group_metadata().unwrap();
        assert_eq!(
            meta.generation, generation,
            "slot {slot}: settled generation"
        );
        let member = group
            .members
            .iter()
            .find(|m| m.member_id == meta.member_id)
            .unwrap();
        let assignment = consumer.assignment();
        assert_eq!(
            assignment, member.assignment,
            "slot {slot}: holds its target once settled"
        );
        // Everything appended was consumed.
        for (tp, next) in &model.slots[slot].as_ref().unwrap().next {
            assert_eq!(*next, model.log_end[tp], "slot {slot}: {tp} not consumed");
        }
        let mut per_topic = BTreeMap::new();
        for tp in &assignment {
            *per_topic.entry(tp.topic.to_string()).or_insert(0) += 1;
        }
        counts.push((sub, per_topic, assignment.len()));
    }
    let spread = |v: &[usize]| v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0);
    if setup.assignor == AssignorKind::Range {
        // Range splits each topic among its subscribers, whatever else they subscribe to.
        for topic in model.topics.keys() {
            let v: Vec<usize> = counts
                .iter()
                .filter(|(sub, _, _)| sub.matches(topic))
                .map(|(_, per_topic, _)| per_topic.get(*topic).copied().unwrap_or(0))
                .collect();
            assert!(spread(&v) <= 1, "range: unbalanced {topic}: {v:?}");
        }
    } else {
        let identical = counts
            .windows(2)
            .all(|w| model.topics_of(w[0].0) == model.topics_of(w[1].0));
        if identical {
            let v: Vec<usize> = counts.iter().map(|(_, _, n)| *n).collect();
            assert!(
                spread(&v) <= 1,
                "{:?}: unbalanced with identical subscriptions: {v:?}",
                setup.assignor
            );
        }
    }
}

fn run(setup: &Setup, ops: &[Op]) {
    let (mut real, mut model) = open(setup);
    check_step(&mut real, &model);
    for op in ops {
        apply(&mut real, &mut model, setup, op);
        check_step(&mut real, &model);
    }
    settle(&mut real, &mut model, setup);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn consumer_groups_follow_the_model(
        setup in setup(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(&setup, &ops);
    }
}

// ---------------------------------------------------------------------------------- known cases

/// A broker with `t-a` (one partition, one record) and `t-b` (two empty partitions).
fn small(assignor: AssignorKind) -> Real {
    let setup = Setup {
        assignor,
        initial_records: vec![1],
        topic_b: true,
        uniform: None,
    };
    open(&setup).0
}

fn tps(pairs: &[(&str, u32)]) -> Vec<TopicPartition> {
    pairs
        .iter()
        .map(|(t, p)| TopicPartition::new(*t, *p))
        .collect()
}

/// Regression: a cooperative member that keeps its partitions and waits for one another member
/// has not given up yet commits what it holds (it used to be fenced as "from generation N-1").
#[test]
fn cooperative_member_waiting_for_a_partition_commits_what_it_holds() {
    let assignor = AssignorKind::CooperativeSticky;
    let real = small(assignor);
    real.broker.add_partitions("t-a", 2).unwrap();
    let mut a = real.broker.consumer(assignor.config()).unwrap();
    let mut b = real.broker.consumer(assignor.config()).unwrap();
    a.subscribe(&["t-a"]).unwrap();
    b.subscribe(&["t-a"]).unwrap();
    for _ in 0..3 {
        a.poll(Duration::ZERO).unwrap();
        b.poll(Duration::ZERO).unwrap();
    }
    assert_eq!(a.assignment(), tps(&[("t-a", 0)]));
    assert_eq!(b.assignment(), tps(&[("t-a", 1)]));
    // The sticky target moves t-a-1 to `a` (b takes t-b): `a` keeps t-a-0 and waits for t-a-1.
    b.subscribe(&["t-a", "t-b"]).unwrap();
    a.poll(Duration::ZERO).unwrap();
    assert_eq!(a.assignment(), tps(&[("t-a", 0)]));
    a.commit_sync().unwrap();
}

/// Bug: `rebalance` (coordinator.rs) drops from `owners` every partition of a topic that no
/// member subscribes to at that moment, although its holder keeps it (and fetches it) until its
/// next poll. If the topic is subscribed again before then — here by a new member — the
/// coordinator hands its partitions out as free: two consumers hold, and read, the same
/// partition. Exclusive ownership (the coordinator's invariant 1, the consumer's invariant 5)
/// is broken, under both protocols.
#[test]
fn a_partition_nobody_subscribes_to_stays_with_its_holder_until_given_up() {
    for assignor in [AssignorKind::Range, AssignorKind::CooperativeSticky] {
        let real = small(assignor);
        let mut a = real.broker.consumer(assignor.config()).unwrap();
        a.subscribe(&["t-b"]).unwrap();
        a.poll(Duration::ZERO).unwrap();
        assert_eq!(a.assignment(), tps(&[("t-b", 0), ("t-b", 1)]));
        // `a` switches topics; it holds t-b-0 and t-b-1 until its next poll.
        a.subscribe(&["t-a"]).unwrap();
        let mut b = real.broker.consumer(assignor.config()).unwrap();
        b.subscribe(&["t-b"]).unwrap();
        b.poll(Duration::ZERO).unwrap();
        let held_by_a = a.assignment();
        let twice: Vec<_> = b
            .assignment()
            .into_iter()
            .filter(|tp| held_by_a.contains(tp))
            .collect();
        assert!(
            twice.is_empty(),
            "{assignor:?}: {twice:?} assigned to two consumers at once"
        );
    }
}

/// Bug, same cause: right after a member narrows its subscription, its `commit_sync` is refused
/// with `Error::Fenced` ("partition t-b-0 is not assigned to member ..."), although it is still
/// a member, in its generation, and `assignment()` still lists t-b-0.
#[test]
fn a_commit_right_after_narrowing_the_subscription_is_accepted() {
    let assignor = AssignorKind::Range;
    let real = small(assignor);
    let mut a = real.broker.consumer(assignor.config()).unwrap();
    a.subscribe(&["t-a", "t-b"]).unwrap();
    a.poll(Duration::ZERO).unwrap();
    assert_eq!(a.assignment(), tps(&[("t-a", 0), ("t-b", 0), ("t-b", 1)]));
    a.subscribe(&["t-a"]).unwrap();
    a.commit_sync()
        .expect("a member commits the partitions it still holds");
}

/// Bug, same cause, under the cooperative protocol: after narrowing and widening the
/// subscription again before a poll, the member keeps t-b-0 and t-b-1 (they are in its target, so
/// nothing is revoked) but the coordinator never records it as their owner again: the group stays
/// `CompletingRebalance` for ever and every `commit_sync` is fenced.
#[test]
fn a_cooperative_group_settles_after_narrowing_and_widening_the_subscription() {
    let assignor = AssignorKind::CooperativeSticky;
    let real = small(assignor);
    let mut a = real.broker.consumer(assignor.config()).unwrap();
    a.subscribe(&["t-a", "t-b"]).unwrap();
    a.poll(Duration::ZERO).unwrap();
    a.subscribe(&["t-a"]).unwrap();
    a.subscribe(&["t-a", "t-b"]).unwrap();
    for _ in 0..5 {
        a.poll(Duration::ZERO).unwrap();
    }
    assert_eq!(a.assignment(), tps(&[("t-a", 0), ("t-b", 0), ("t-b", 1)]));
    let group = real.broker.describe_group(GROUP).unwrap();
    assert_eq!(group.state, GroupState::Stable);
    a.commit_sync().unwrap();
}
