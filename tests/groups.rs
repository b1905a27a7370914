//! Consumer groups through the public API, as a Kafka user sees them: sharing partitions within
//! a group and fan-out across groups, generations, assignors, the eager and cooperative
//! protocols, the rebalance listener, commits (and their survival across a restart), fencing,
//! liveness (max poll interval, session timeout), static membership, pattern subscriptions,
//! topic changes, the admin API and the `__consumer_offsets` record layout.
//!
//! Nothing here asserts on timing: every wait is a loop that polls until a condition holds and
//! only gives up after `GIVE_UP`. Members of one group are polled round-robin from the test's
//! thread (eager rebalances need every member to poll), except where a test needs threads.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, ConsumerRecord, CooperativeStickyAssignor,
    Durability, Error, GroupDescription, GroupState, LogConfig, OffsetAndMetadata, OffsetReset,
    Producer, ProducerConfig, ProducerRecord, RebalanceListener, RebalanceProtocol, Record,
    ResetTo, RoundRobinAssignor, TopicPartition,
};

/// How long a wait may last before the test gives up (never an expectation of speed).
const GIVE_UP: Duration = Duration::from_secs(30);
/// Each poll of a round-robin waits at most this long.
const POLL: Duration = Duration::from_millis(20);
/// A short liveness limit, for the tests where a member must be removed.
const SHORT: Duration = Duration::from_millis(400);

fn broker_config() -> BrokerConfig {
    BrokerConfig::default()
        .maintenance_interval(Duration::from_millis(10))
        .topic_defaults(LogConfig::default().durability(Durability::None))
}

fn open() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), broker_config()).unwrap();
    (dir, broker)
}

/// A member of `group` that reads from the beginning and commits only when told to.
fn member(group: &str) -> ConsumerConfig {
    ConsumerConfig::default()
        .group_id(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn tps(pairs: &[(&str, u32)]) -> Vec<TopicPartition> {
    pairs.iter().map(|(t, p)| tp(t, *p)).collect()
}

/// Milliseconds since the Unix epoch, an hour ago: recent enough for the default retention of
/// 7 days (records stamped in 1970 would be deleted by the background thread at once).
fn base_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() - 3_600_000
}

/// Appends `count` records to one partition, numbered from `from`; record `n` is stamped
/// `base_ms() + n`.
fn append(broker: &Broker, topic: &str, partition: u32, from: u32, count: u32) {
    append_at(broker, topic, partition, from, count, base_ms());
}

/// `append` with record `n` stamped `base + n`.
fn append_at(broker: &Broker, topic: &str, partition: u32, from: u32, count: u32, base: i64) {
    let records: Vec<Record> = (from..from + count)
        .map(|i| {
            Record::new(format!("k{i}"), format!("{topic}-{partition}-{i}"))
                .with_timestamp(base + i64::from(i))
        })
        .collect();
    broker
        .partition(topic, partition)
        .unwrap()
        .log()
        .unwrap()
        .append(&records)
        .unwrap();
}

/// Polls every consumer in turn until `done` holds (checked after each round, with the records
/// each consumer got so far); returns those records. Panics after `GIVE_UP`.
fn poll_until(
    consumers: &mut [&mut Consumer],
    what: &str,
    mut done: impl FnMut(&[&mut Consumer], &[Vec<ConsumerRecord>]) -> bool,
) -> Vec<Vec<ConsumerRecord>> {
    let deadline = Instant::now() + GIVE_UP;
    let mut got: Vec<Vec<ConsumerRecord>> = consumers.iter().map(|_| Vec::new()).collect();
    loop {
        for (c, g) in consumers.iter_mut().zip(&mut got) {
            g.extend(c.poll(POLL).unwrap());
        }
        if done(consumers, &got) {
            return got;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
    }
}

/// The group's description if it is stable with exactly `members` members.
fn stable(broker: &Broker, group: &str, members: usize) -> Option<GroupDescription> {
    let d = broker.describe_group(group).ok()?;
    (d.state == GroupState::Stable && d.members.len() == members).then_some(d)
}

/// Polls the consumers until their group is stable with all of them as members.
fn settle(broker: &Broker, group: &str, consumers: &mut [&mut Consumer]) -> GroupDescription {
    let n = consumers.len();
    poll_until(
        consumers,
        &format!("group `{group}` stable with {n}"),
        |_, _| stable(broker, group, n).is_some(),
    );
    stable(broker, group, n).unwrap()
}

fn member_id(c: &Consumer) -> String {
    c.group_metadata().unwrap().member_id
}

fn generation(broker: &Broker, group: &str) -> i32 {
    broker.describe_group(group).unwrap().generation
}

/// The partitions `describe_group` shows for this consumer's member.
fn described_assignment(d: &GroupDescription, c: &Consumer) -> Vec<TopicPartition> {
    let id = member_id(c);
    d.members
        .iter()
        .find(|m| m.member_id == id)
        .unwrap_or_else(|| panic!("member {id} not in {d:?}"))
        .assignment
        .clone()
}

fn sorted(mut v: Vec<TopicPartition>) -> Vec<TopicPartition> {
    v.sort();
    v
}

fn offsets(records: &[ConsumerRecord]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

// ------------------------------------------------------------------------------ listeners

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Revoked(Vec<TopicPartition>),
    Assigned(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
}

/// A rebalance listener that records its calls.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

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

fn revoked_in(events: &[Event]) -> BTreeSet<TopicPartition> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Revoked(p) => Some(p.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn assigned_in(events: &[Event]) -> BTreeSet<TopicPartition> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Assigned(p) => Some(p.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

// ------------------------------------------------------------------------------ 1. the models

/// Kafka's queue model: 4 members (each on its own thread) of one group on a 12-partition topic,
/// joining while 12,000 keyed records are produced, together receive every record exactly once
/// (the auto-commit before each revocation makes the next owner start where the last stopped),
/// and end with 3 partitions each.
#[test]
fn one_group_shares_the_partitions_and_gets_each_record_once() {
    const N: usize = 12_000;
    let (_dir, broker) = open();
    broker.create_topic("t", 12).unwrap();
    let producer = Producer::new(&broker, ProducerConfig::default()).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Half of the records before the members come, half while they join.
    for i in 0..N / 2 {
        producer
            .send(ProducerRecord::new("t", format!("v{i}")).key(format!("key-{i}")))
            .unwrap();
    }
    producer.flush().unwrap();
    let threads: Vec<_> =
        (0..4)
            .map(|i| {
                let broker = broker.clone();
                let received = Arc::clone(&received);
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let config = ConsumerConfig::default()
                        .group_id("queue")
                        .client_id(format!("m{i}"))
                        .auto_offset_reset(OffsetReset::Earliest);
                    let mut c = broker.consumer(config).unwrap();
                    c.subscribe(&["t"]).unwrap();
                    let deadline = Instant::now() + GIVE_UP;
                    let mut got = Vec::new();
                    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                        let records = c.poll(POLL).unwrap();
                        received.fetch_add(records.len(), Ordering::AcqRel);
                        got.extend(records.iter().map(|r| {
                            (r.partition, r.offset, r.value.as_deref().unwrap().to_vec())
                        }));
                    }
                    let assignment = c.assignment();
                    // The consumer goes back with the results: nobody leaves before all have looked.
                    (got, assignment, c)
                })
            })
            .collect();
    for i in N / 2..N {
        producer
            .send(ProducerRecord::new("t", format!("v{i}")).key(format!("key-{i}")))
            .unwrap();
    }
    producer.flush().unwrap();
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let all_in = received.load(Ordering::Acquire) >= N;
        let balanced = stable(&broker, "queue", 4)
            .is_some_and(|d| d.members.iter().all(|m| m.assignment.len() == 3));
        if all_in && balanced {
            break;
        }
        if Instant::now() >= deadline {
            stop.store(true, Ordering::Release);
            panic!(
                "gave up: {} of {N} records received, group {:?}",
                received.load(Ordering::Acquire),
                broker.describe_group("queue")
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut seen = HashSet::new();
    let mut values = HashSet::new();
    let mut all_partitions = BTreeSet::new();
    let mut total = 0;
    for (got, assignment, _) in &results {
        assert_eq!(assignment.len(), 3, "each member ends with 3 partitions");
        all_partitions.extend(assignment.iter().cloned());
        for (p, o, v) in got {
            total += 1;
            assert!(seen.insert((*p, *o)), "t-{p}@{o} received twice");
            values.insert(v.clone());
        }
    }
    assert_eq!(total, N, "every record exactly once");
    assert_eq!(all_partitions.len(), 12);
    let expected: HashSet<Vec<u8>> = (0..N).map(|i| format!("v{i}").into_bytes()).collect();
    assert_eq!(values, expected);
    drop(results);
}

/// Kafka's publish-subscribe model: three groups (two members each) on the same topic each
/// receive every record once.
#[test]
fn every_group_gets_every_record() {
    const N: u32 = 600;
    let (_dir, broker) = open();
    broker.create_topic("t", 4).unwrap();
    for p in 0..4 {
        append(&broker, "t", p, 0, N / 4);
    }
    let groups = ["billing", "audit", "search"];
    let mut consumers: Vec<Consumer> = groups
        .iter()
        .flat_map(|g| [g, g])
        .map(|g| broker.consumer(member(g)).unwrap())
        .collect();
    for c in &mut consumers {
        c.subscribe(&["t"]).unwrap();
    }
    let mut refs: Vec<&mut Consumer> = consumers.iter_mut().collect();
    let got = poll_until(&mut refs, "every group to get every record", |_, got| {
        got.chunks(2)
            .all(|pair| pair[0].len() + pair[1].len() >= N as usize)
    });
    let expected: BTreeSet<(u32, u64)> = (0..4)
        .flat_map(|p| (0..u64::from(N / 4)).map(move |o| (p, o)))
        .collect();
    for (g, pair) in groups.iter().zip(got.chunks(2)) {
        let records: Vec<(u32, u64)> = pair
            .iter()
            .flatten()
            .map(|r| (r.partition, r.offset))
            .collect();
        assert_eq!(records.len(), N as usize, "group {g}: no duplicates");
        let distinct: BTreeSet<_> = records.into_iter().collect();
        assert_eq!(distinct, expected, "group {g}: every record");
        assert!(
            !pair[0].is_empty() && !pair[1].is_empty(),
            "group {g}: both members consumed"
        );
    }
}

// ------------------------------------------------------------------------------ 2. generations

/// Each rebalance starts a new generation: it grows when a member joins and when one leaves; once
/// stable, each consumer's `group_metadata().generation` is the group's; a leaving member's
/// partitions go to the others.
#[test]
fn each_rebalance_starts_a_new_generation() {
    let (_dir, broker) = open();
    broker.create_topic("t", 4).unwrap();
    let mut a = broker.consumer(member("gen").client_id("a")).unwrap();
    assert_eq!(
        a.group_metadata().unwrap().generation,
        -1,
        "not a member yet"
    );
    a.subscribe(&["t"]).unwrap();
    let d = settle(&broker, "gen", &mut [&mut a]);
    let g1 = d.generation;
    assert!(g1 >= 1);
    assert_eq!(a.group_metadata().unwrap().generation, g1);
    assert_eq!(a.assignment().len(), 4);

    let mut b = broker.consumer(member("gen").client_id("b")).unwrap();
    b.subscribe(&["t"]).unwrap();
    let g2 = generation(&broker, "gen");
    assert!(g2 > g1, "a join starts a generation: {g1} -> {g2}");
    let d = settle(&broker, "gen", &mut [&mut a, &mut b]);
    assert_eq!(d.generation, g2);
    for c in [&a, &b] {
        let meta = c.group_metadata().unwrap();
        assert_eq!(meta.generation, d.generation);
        assert_eq!(meta.group_id, "gen");
        assert_eq!(meta.group_instance_id, None);
        assert_eq!(c.assignment().len(), 2);
        assert_eq!(c.assignment(), described_assignment(&d, c));
    }

    let mut c = broker.consumer(member("gen").client_id("c")).unwrap();
    c.subscribe(&["t"]).unwrap();
    let g3 = generation(&broker, "gen");
    assert!(g3 > g2);
    let d = settle(&broker, "gen", &mut [&mut a, &mut b, &mut c]);
    assert_eq!(d.generation, g3);
    let c_had = c.assignment();
    assert!(!c_had.is_empty());

    c.close().unwrap();
    let g4 = generation(&broker, "gen");
    assert!(g4 > g3, "a leave starts a generation: {g3} -> {g4}");
    let d = settle(&broker, "gen", &mut [&mut a, &mut b]);
    assert_eq!(d.generation, g4);
    for x in [&a, &b] {
        assert_eq!(x.group_metadata().unwrap().generation, g4);
    }
    let mut both: Vec<_> = a.assignment();
    both.extend(b.assignment());
    assert_eq!(sorted(both), tps(&[("t", 0), ("t", 1), ("t", 2), ("t", 3)]));

    b.close().unwrap();
    let g5 = generation(&broker, "gen");
    assert!(g5 > g4);
    let d = settle(&broker, "gen", &mut [&mut a]);
    assert_eq!(d.generation, g5);
    assert_eq!(a.group_metadata().unwrap().generation, g5);
    assert_eq!(a.assignment().len(), 4, "the last member gets everything");
}

// ------------------------------------------------------------------------------ 3. assignors

/// Members `c0` and `c1` of `group` subscribed to `t0` and `t1`, polled until stable.
fn two_members_on_two_topics(
    broker: &Broker,
    group: &str,
    config: impl Fn(ConsumerConfig) -> ConsumerConfig,
) -> (Consumer, Consumer, GroupDescription) {
    let mut c0 = broker
        .consumer(config(member(group).client_id("c0")))
        .unwrap();
    let mut c1 = broker
        .consumer(config(member(group).client_id("c1")))
        .unwrap();
    c0.subscribe(&["t0", "t1"]).unwrap();
    c1.subscribe(&["t0", "t1"]).unwrap();
    let d = settle(broker, group, &mut [&mut c0, &mut c1]);
    (c0, c1, d)
}

/// Range and round-robin give Kafka's documented assignments for two members on two
/// 3-partition topics (seen in `describe_group` and in the consumers); a member asking for
/// another assignor than the group's is refused with `InvalidConfig`.
#[test]
fn range_and_roundrobin_assign_as_kafka_does() {
    let (_dir, broker) = open();
    broker.create_topic("t0", 3).unwrap();
    broker.create_topic("t1", 3).unwrap();

    let (c0, c1, d) = two_members_on_two_topics(&broker, "ranged", |c| c);
    assert_eq!(d.assignor.as_deref(), Some("range"));
    assert_eq!(d.protocol, Some(RebalanceProtocol::Eager));
    let range_c0 = tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]);
    let range_c1 = tps(&[("t0", 2), ("t1", 2)]);
    assert_eq!(d.members[0].client_id, "c0");
    assert_eq!(d.members[0].assignment, range_c0);
    assert_eq!(d.members[1].client_id, "c1");
    assert_eq!(d.members[1].assignment, range_c1);
    assert_eq!(c0.assignment(), range_c0);
    assert_eq!(c1.assignment(), range_c1);

    let (r0, r1, d) = two_members_on_two_topics(&broker, "robin", |c| {
        c.partition_assignment_strategy(RoundRobinAssignor)
    });
    assert_eq!(d.assignor.as_deref(), Some("roundrobin"));
    assert_eq!(d.protocol, Some(RebalanceProtocol::Eager));
    let rr_c0 = tps(&[("t0", 0), ("t0", 2), ("t1", 1)]);
    let rr_c1 = tps(&[("t0", 1), ("t1", 0), ("t1", 2)]);
    assert_eq!(d.members[0].assignment, rr_c0);
    assert_eq!(d.members[1].assignment, rr_c1);
    assert_eq!(r0.assignment(), rr_c0);
    assert_eq!(r1.assignment(), rr_c1);

    // A third member with another assignor: refused, and the group is left as it was.
    let before = broker.describe_group("ranged").unwrap();
    let mut odd = broker
        .consumer(member("ranged").partition_assignment_strategy(RoundRobinAssignor))
        .unwrap();
    match odd.subscribe(&["t0"]) {
        Err(Error::InvalidConfig { key, .. }) => assert_eq!(key, "partition_assignment_strategy"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let after = broker.describe_group("ranged").unwrap();
    assert_eq!(after.members.len(), 2);
    assert_eq!(after.generation, before.generation);
    let mut odd = broker
        .consumer(member("robin").partition_assignment_strategy(CooperativeStickyAssignor))
        .unwrap();
    assert!(matches!(
        odd.subscribe(&["t0"]),
        Err(Error::InvalidConfig {
            key: "partition_assignment_strategy",
            ..
        })
    ));
    drop((c0, c1, r0, r1));
}

// ------------------------------------------------------------------------------ 4. protocols

/// Runs the "third member joins two consuming members" scenario; returns what the first two
/// had before, what they have after, and their listeners' events during the rebalance.
#[allow(clippy::type_complexity)]
fn third_member_joins(
    group: &str,
    config: impl Fn(ConsumerConfig) -> ConsumerConfig,
) -> (
    Vec<Vec<TopicPartition>>,
    Vec<Vec<TopicPartition>>,
    Vec<Vec<Event>>,
) {
    let (_dir, broker) = open();
    broker.create_topic("t", 6).unwrap();
    for p in 0..6 {
        append(&broker, "t", p, 0, 5);
    }
    let recorders = [
        Recorder::default(),
        Recorder::default(),
        Recorder::default(),
    ];
    let mut consumers: Vec<Consumer> = (0..3)
        .map(|i| {
            let mut c = broker
                .consumer(config(
                    member(group)
                        .client_id(format!("c{i}"))
                        .enable_auto_commit(true),
                ))
                .unwrap();
            c.set_rebalance_listener(recorders[i].clone());
            c
        })
        .collect();
    let [c0, c1, c2] = &mut consumers[..] else {
        unreachable!()
    };
    c0.subscribe(&["t"]).unwrap();
    c1.subscribe(&["t"]).unwrap();
    let got = poll_until(
        &mut [&mut *c0, &mut *c1],
        "two members consuming",
        |c, got| {
            stable(&broker, group, 2).is_some()
                && c.iter().all(|c| c.assignment().len() == 3)
                && got.iter().all(|g| g.len() >= 15)
        },
    );
    assert_eq!(got[0].len() + got[1].len(), 30);
    let before = vec![c0.assignment(), c1.assignment()];
    for r in &recorders {
        r.take();
    }
    c2.subscribe(&["t"]).unwrap();
    // Records keep coming during the rebalance.
    for p in 0..6 {
        append(&broker, "t", p, 5, 5);
    }
    let got = poll_until(
        &mut [&mut *c0, &mut *c1, &mut *c2],
        "three members",
        |c, got| {
            stable(&broker, group, 3).is_some()
                && c.iter().all(|c| c.assignment().len() == 2)
                && got.iter().map(Vec::len).sum::<usize>() >= 30
        },
    );
    let total: Vec<(u32, u64)> = got
        .iter()
        .flatten()
        .map(|r| (r.partition, r.offset))
        .collect();
    assert_eq!(total.len(), 30, "no record twice: {total:?}");
    let after = vec![c0.assignment(), c1.assignment(), c2.assignment()];
    let events = recorders.iter().map(Recorder::events).collect();
    (before, after, events)
}

/// Cooperative-sticky: when a third member joins two consuming ones, only the partitions that
/// move are revoked (the ones that stay never appear in `on_partitions_revoked`), and the new
/// member is told about exactly what it got. Under eager range, every partition is revoked.
#[test]
fn cooperative_revokes_only_what_moves_and_eager_revokes_all() {
    let (before, after, events) = third_member_joins("coop", |c| {
        c.partition_assignment_strategy(CooperativeStickyAssignor)
    });
    for i in 0..2 {
        let had: BTreeSet<_> = before[i].iter().cloned().collect();
        let has: BTreeSet<_> = after[i].iter().cloned().collect();
        let kept: BTreeSet<_> = had.intersection(&has).cloned().collect();
        let moved: BTreeSet<_> = had.difference(&has).cloned().collect();
        assert!(has.is_subset(&had), "sticky: c{i} gains nothing");
        assert_eq!(kept.len(), 2, "sticky: c{i} keeps 2 of its 3");
        let revoked = revoked_in(&events[i]);
        assert_eq!(revoked, moved, "c{i}: only moved partitions revoked");
        assert!(revoked.is_disjoint(&kept));
        assert!(
            events[i]
                .iter()
                .all(|e| !matches!(e, Event::Lost(_) | Event::Assigned(_))
                    || *e == Event::Assigned(Vec::new())),
            "c{i} gained or lost nothing: {:?}",
            events[i]
        );
    }
    let newcomer: BTreeSet<_> = after[2].iter().cloned().collect();
    assert_eq!(assigned_in(&events[2]), newcomer);
    assert!(revoked_in(&events[2]).is_empty());

    let (before, after, events) = third_member_joins("eager", |c| c);
    // Range: c0 [0,1,2] c1 [3,4,5] -> c0 [0,1] c1 [2,3] c2 [4,5].
    assert_eq!(before[0], tps(&[("t", 0), ("t", 1), ("t", 2)]));
    assert_eq!(after[0], tps(&[("t", 0), ("t", 1)]));
    for i in 0..2 {
        let had: BTreeSet<_> = before[i].iter().cloned().collect();
        assert_eq!(
            revoked_in(&events[i]),
            had,
            "eager: c{i} gives up all it had"
        );
        // Eager: one assigned call with the whole new assignment.
        assert!(
            events[i].contains(&Event::Assigned(after[i].clone())),
            "c{i}: {:?}",
            events[i]
        );
    }
}

// ------------------------------------------------------------------------------ 5. listener

#[derive(Debug)]
struct Note {
    callback: &'static str,
    partitions: Vec<TopicPartition>,
    /// The consumer's assignment while the callback ran.
    held: Vec<TopicPartition>,
    /// Whether the commit made in the callback succeeded.
    commit_ok: Option<bool>,
    /// Whether `poll` from the callback was refused with `InvalidArgument`.
    poll_refused: bool,
}

/// On revoke, commits offset 7 of `t-0` (not the position: the next owner's start proves it is
/// this commit that counts); notes every call.
struct CommitSevenOnRevoke(Arc<Mutex<Vec<Note>>>);

impl CommitSevenOnRevoke {
    fn note(
        &self,
        consumer: &mut Consumer,
        callback: &'static str,
        partitions: &[TopicPartition],
        commit_ok: Option<bool>,
    ) {
        let poll_refused = matches!(
            consumer.poll(Duration::ZERO),
            Err(Error::InvalidArgument(_))
        );
        self.0.lock().unwrap().push(Note {
            callback,
            partitions: partitions.to_vec(),
            held: consumer.assignment(),
            commit_ok,
            poll_refused,
        });
    }
}

impl RebalanceListener for CommitSevenOnRevoke {
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let commit = consumer.commit_sync_offsets(&[(
            tp("t", 0),
            OffsetAndMetadata::new(7).with_metadata("from the listener"),
        )]);
        self.note(consumer, "revoked", partitions, Some(commit.is_ok()));
    }

    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.note(consumer, "assigned", partitions, None);
    }
}

/// The rebalance listener: `on_partitions_revoked` runs while the member still owns the
/// partition (its commit there succeeds; the next owner cannot take it before), and the next
/// owner starts at the offset committed in it; `on_partitions_assigned` gets the new
/// partitions; `poll` from a callback is refused with `InvalidArgument`.
#[test]
fn rebalance_listener_commits_before_the_partition_moves() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    append(&broker, "t", 0, 0, 10);
    let old_notes = Arc::new(Mutex::new(Vec::new()));
    let new_notes = Arc::new(Mutex::new(Vec::new()));
    // Range gives the only partition to the member whose id sorts first: the newcomer.
    let mut old = broker.consumer(member("lsn").client_id("z-old")).unwrap();
    old.set_rebalance_listener(CommitSevenOnRevoke(Arc::clone(&old_notes)));
    old.subscribe(&["t"]).unwrap();
    let got = poll_until(&mut [&mut old], "10 records", |_, got| got[0].len() >= 10);
    assert_eq!(offsets(&got[0]), (0..10).collect::<Vec<_>>());
    {
        let notes = old_notes.lock().unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].callback, "assigned");
        assert_eq!(notes[0].partitions, [tp("t", 0)]);
        assert_eq!(notes[0].held, [tp("t", 0)], "assigned before records come");
        assert!(notes[0].poll_refused, "poll from on_partitions_assigned");
    }
    old_notes.lock().unwrap().clear();

    let mut new = broker.consumer(member("lsn").client_id("a-new")).unwrap();
    new.set_rebalance_listener(CommitSevenOnRevoke(Arc::clone(&new_notes)));
    new.subscribe(&["t"]).unwrap();
    // Until the old owner has polled (and so revoked), the partition does not move.
    for _ in 0..3 {
        assert!(new.poll(POLL).unwrap().is_empty());
        assert!(new.assignment().is_empty());
    }
    assert!(old_notes.lock().unwrap().is_empty());
    append(&broker, "t", 0, 10, 5);
    let got = poll_until(
        &mut [&mut old, &mut new],
        "the newcomer's records",
        |_, got| got[1].len() >= 8,
    );
    assert!(got[0].is_empty(), "the old owner got nothing more");
    assert_eq!(offsets(&got[1]), (7..15).collect::<Vec<_>>(), "starts at 7");
    assert_eq!(new.assignment(), [tp("t", 0)]);
    assert!(old.assignment().is_empty());
    {
        let notes = old_notes.lock().unwrap();
        assert_eq!(notes[0].callback, "revoked", "{notes:?}");
        assert_eq!(notes[0].partitions, [tp("t", 0)]);
        assert_eq!(notes[0].held, [tp("t", 0)], "still held while revoking");
        assert_eq!(notes[0].commit_ok, Some(true));
        assert!(notes[0].poll_refused, "poll from on_partitions_revoked");
        // Eager: then assigned, with its (empty) new assignment.
        assert_eq!(notes[1].callback, "assigned");
        assert!(notes[1].partitions.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
    {
        let notes = new_notes.lock().unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].callback, "assigned");
        assert_eq!(notes[0].partitions, [tp("t", 0)]);
        assert!(notes[0].poll_refused);
    }
    assert_eq!(
        new.committed(&[tp("t", 0)]).unwrap(),
        [Some(
            OffsetAndMetadata::new(7).with_metadata("from the listener")
        )]
    );
}

// ------------------------------------------------------------------------------ 6. commits

/// `commit_sync`, `commit_sync_offsets` (with metadata) and `commit_async` are visible through
/// `committed()` at once; metadata over 4096 bytes is refused with `InvalidArgument`; committing
/// (or asking for commits) without a group id is `InvalidConfig`.
#[test]
fn commits_are_visible_through_committed() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, 0, 10);
    append(&broker, "t", 1, 0, 4);
    let (t0, t1) = (tp("t", 0), tp("t", 1));
    let mut c = broker.consumer(member("commits")).unwrap();
    assert_eq!(
        c.committed(&[t0.clone(), t1.clone()]).unwrap(),
        [None, None]
    );
    c.subscribe(&["t"]).unwrap();
    poll_until(&mut [&mut c], "14 records", |_, got| got[0].len() >= 14);

    c.commit_sync().unwrap();
    assert_eq!(
        c.committed(&[t1.clone(), t0.clone()]).unwrap(),
        [
            Some(OffsetAndMetadata::new(4)),
            Some(OffsetAndMetadata::new(10))
        ],
        "in the order asked"
    );

    let noted = OffsetAndMetadata::new(5).with_metadata("batch 5");
    c.commit_sync_offsets(&[(t0.clone(), noted.clone())])
        .unwrap();
    assert_eq!(
        c.committed(std::slice::from_ref(&t0)).unwrap(),
        [Some(noted.clone())]
    );
    assert_eq!(
        c.committed(std::slice::from_ref(&t1)).unwrap(),
        [Some(OffsetAndMetadata::new(4))],
        "other partitions untouched"
    );

    c.seek(&t1, 2).unwrap();
    c.commit_async().unwrap();
    assert_eq!(
        c.committed(&[t0.clone(), t1.clone()]).unwrap(),
        [
            Some(OffsetAndMetadata::new(10)),
            Some(OffsetAndMetadata::new(2))
        ]
    );
    c.commit_async_offsets(&[(t1.clone(), OffsetAndMetadata::new(3).with_metadata("async"))])
        .unwrap();
    assert_eq!(
        c.committed(std::slice::from_ref(&t1)).unwrap(),
        [Some(OffsetAndMetadata::new(3).with_metadata("async"))]
    );

    // Kafka's offset.metadata.max.bytes: 4096 is fine, one more is not.
    let full = OffsetAndMetadata::new(6).with_metadata("m".repeat(4096));
    c.commit_sync_offsets(&[(t0.clone(), full.clone())])
        .unwrap();
    assert_eq!(
        c.committed(std::slice::from_ref(&t0)).unwrap(),
        [Some(full.clone())]
    );
    let over = OffsetAndMetadata::new(8).with_metadata("m".repeat(4097));
    assert!(matches!(
        c.commit_sync_offsets(&[(t0.clone(), over.clone())]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.commit_async_offsets(&[(t0.clone(), over)]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        c.committed(std::slice::from_ref(&t0)).unwrap(),
        [Some(full)],
        "unchanged"
    );

    // No group id: nothing to commit to.
    let mut loner = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    loner.assign(std::slice::from_ref(&t0)).unwrap();
    poll_until(&mut [&mut loner], "records", |_, got| got[0].len() >= 10);
    for result in [
        loner.commit_sync(),
        loner.commit_async(),
        loner.commit_sync_offsets(&[(t0.clone(), OffsetAndMetadata::new(1))]),
    ] {
        assert!(
            matches!(
                result,
                Err(Error::InvalidConfig {
                    key: "group_id",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert!(matches!(
        loner.committed(&[t0]),
        Err(Error::InvalidConfig {
            key: "group_id",
            ..
        })
    ));
    assert!(loner.group_metadata().is_none());
}

/// Committed offsets survive a restart: after commit, dropping everything and reopening the
/// directory, `committed()` returns the offset with its metadata and a new member of the group
/// starts there. Groups without commits start at `auto_offset_reset`: Earliest at 0, Latest at
/// the log end.
#[test]
fn commits_survive_a_restart_and_new_groups_start_at_auto_offset_reset() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = tp("t", 0);
    {
        let broker = Broker::open_with(dir.path(), broker_config()).unwrap();
        broker.create_topic("t", 1).unwrap();
        append(&broker, "t", 0, 0, 10);
        let mut c = broker.consumer(member("durable")).unwrap();
        c.subscribe(&["t"]).unwrap();
        poll_until(&mut [&mut c], "10 records", |_, got| got[0].len() >= 10);
        c.commit_sync_offsets(&[(
            t0.clone(),
            OffsetAndMetadata::new(7).with_metadata("restart"),
        )])
        .unwrap();
        // Another group's commit, later overwritten: the newest wins after the reload.
        let mut other = broker.consumer(member("other")).unwrap();
        other.subscribe(&["t"]).unwrap();
        poll_until(&mut [&mut other], "10 records", |_, got| got[0].len() >= 10);
        other
            .commit_sync_offsets(&[(t0.clone(), OffsetAndMetadata::new(2))])
            .unwrap();
        other
            .commit_sync_offsets(&[(t0.clone(), OffsetAndMetadata::new(3))])
            .unwrap();
        // Everything is dropped here, without auto-commit.
    }
    let broker = Broker::open_with(dir.path(), broker_config()).unwrap();
    assert_eq!(broker.topics(), ["t"], "the internal topic is hidden");
    let mut c = broker.consumer(member("durable")).unwrap();
    assert_eq!(
        c.committed(std::slice::from_ref(&t0)).unwrap(),
        [Some(OffsetAndMetadata::new(7).with_metadata("restart"))]
    );
    c.subscribe(&["t"]).unwrap();
    let got = poll_until(&mut [&mut c], "records from 7", |_, got| got[0].len() >= 3);
    assert_eq!(offsets(&got[0]), [7, 8, 9]);
    let other = broker.consumer(member("other")).unwrap();
    assert_eq!(
        other.committed(std::slice::from_ref(&t0)).unwrap(),
        [Some(OffsetAndMetadata::new(3))]
    );
    let lag = broker.group_lag("durable").unwrap();
    assert_eq!(lag[0].committed, Some(7));

    // New groups: Earliest from 0, Latest from the end.
    let mut earliest = broker.consumer(member("fresh-earliest")).unwrap();
    earliest.subscribe(&["t"]).unwrap();
    let got = poll_until(&mut [&mut earliest], "all 10", |_, got| got[0].len() >= 10);
    assert_eq!(offsets(&got[0]), (0..10).collect::<Vec<_>>());
    let mut latest = broker
        .consumer(member("fresh-latest").auto_offset_reset(OffsetReset::Latest))
        .unwrap();
    latest.subscribe(&["t"]).unwrap();
    settle(&broker, "fresh-latest", &mut [&mut latest]);
    assert_eq!(latest.position(&t0).unwrap(), 10);
    append(&broker, "t", 0, 10, 1);
    let got = poll_until(&mut [&mut latest], "the new record", |_, got| {
        !got[0].is_empty()
    });
    assert_eq!(offsets(&got[0]), [10]);
}

// ------------------------------------------------------------------------------ 7. fencing

/// A member that stays out of `poll` longer than `max_poll_interval` is removed: its partitions
/// go to the other member, its commit fails with `Fenced`, and its next poll calls
/// `on_partitions_lost` and rejoins (the group has two members again). Committing a partition
/// the member does not own is `Fenced` too.
#[test]
fn a_member_that_stops_polling_is_fenced_and_rejoins() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, 0, 5);
    append(&broker, "t", 1, 0, 5);
    let lost = Recorder::default();
    let mut slow = broker
        .consumer(member("fence").client_id("a-slow").max_poll_interval(SHORT))
        .unwrap();
    slow.set_rebalance_listener(lost.clone());
    let mut busy = broker
        .consumer(member("fence").client_id("b-busy"))
        .unwrap();
    slow.subscribe(&["t"]).unwrap();
    busy.subscribe(&["t"]).unwrap();
    poll_until(&mut [&mut slow, &mut busy], "both consuming", |c, got| {
        stable(&broker, "fence", 2).is_some()
            && c.iter().all(|c| c.assignment().len() == 1)
            && got.iter().all(|g| g.len() >= 5)
    });
    let slow_had = slow.assignment();
    let slow_id = member_id(&slow);
    let g = generation(&broker, "fence");
    lost.take();

    // `slow` does not poll; `busy` does, and takes over.
    poll_until(&mut [&mut busy], "the slow member's removal", |c, _| {
        stable(&broker, "fence", 1).is_some() && c[0].assignment().len() == 2
    });
    let d = broker.describe_group("fence").unwrap();
    assert!(d.generation > g);
    assert_eq!(d.members[0].member_id, member_id(&busy));
    assert!(matches!(slow.commit_sync(), Err(Error::Fenced { .. })));
    assert!(lost.events().is_empty(), "nothing called outside poll");

    // Its next poll: lost, then rejoin as a new member.
    slow.poll(POLL).unwrap();
    assert_eq!(lost.events()[0], Event::Lost(slow_had.clone()));
    assert!(!revoked_in(&lost.events()).contains(&slow_had[0]));
    poll_until(&mut [&mut slow, &mut busy], "the rejoin", |c, _| {
        stable(&broker, "fence", 2).is_some() && c.iter().all(|c| c.assignment().len() == 1)
    });
    assert_ne!(member_id(&slow), slow_id, "a new member id");
    slow.commit_sync().unwrap();

    // A partition it does not own.
    let theirs = busy.assignment()[0].clone();
    match slow.commit_sync_offsets(&[(theirs.clone(), OffsetAndMetadata::new(1))]) {
        Err(Error::Fenced { group, .. }) => assert_eq!(group, "fence"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_ne!(
        slow.committed(&[theirs]).unwrap(),
        [Some(OffsetAndMetadata::new(1))]
    );
}

// ------------------------------------------------------------------------------ 8. session

/// A consumer leaked (`mem::forget`) in a thread that then ends is removed once its
/// `session_timeout` passed; its partitions go to the remaining member, which receives their
/// records.
#[test]
fn a_leaked_consumer_is_removed_after_its_session_timeout() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    let mut stays = broker.consumer(member("session").client_id("a")).unwrap();
    stays.subscribe(&["t"]).unwrap();
    settle(&broker, "session", &mut [&mut stays]);

    let leaker = {
        let broker = broker.clone();
        thread::spawn(move || {
            let mut c = broker
                .consumer(
                    member("session")
                        .client_id("b")
                        .session_timeout(SHORT)
                        .max_poll_interval(Duration::from_secs(600)),
                )
                .unwrap();
            c.subscribe(&["t"]).unwrap();
            let deadline = Instant::now() + GIVE_UP;
            while c.assignment().is_empty() {
                assert!(Instant::now() < deadline, "the leaker got nothing");
                c.poll(POLL).unwrap();
            }
            let had = c.assignment();
            let generation = c.group_metadata().unwrap().generation;
            std::mem::forget(c);
            (had, generation)
        })
    };
    let deadline = Instant::now() + GIVE_UP;
    while !leaker.is_finished() {
        assert!(Instant::now() < deadline);
        stays.poll(POLL).unwrap();
    }
    let (leaked, g) = leaker.join().unwrap();
    assert_eq!(leaked.len(), 1);

    poll_until(&mut [&mut stays], "the leaked member's removal", |c, _| {
        stable(&broker, "session", 1).is_some() && c[0].assignment().len() == 2
    });
    assert!(generation(&broker, "session") > g);
    append(&broker, "t", leaked[0].partition, 0, 3);
    let got = poll_until(&mut [&mut stays], "its records", |_, got| got[0].len() >= 3);
    assert!(got[0].iter().all(|r| r.topic_partition() == leaked[0]));
}

// ------------------------------------------------------------------------------ 9. static

/// Static membership: a member with `group_instance_id` whose consumer is dropped keeps its
/// place; a new consumer with the same instance id within `session_timeout` gets the same
/// partitions and the generation does not change. Without a successor, after `session_timeout`
/// the group rebalances (new generation, the remaining member gets everything).
#[test]
fn static_members_come_back_without_a_rebalance() {
    let (_dir, broker) = open();
    broker.create_topic("t", 4).unwrap();
    for p in 0..4 {
        append(&broker, "t", p, 0, 3);
    }
    let static_member = |session: Duration| {
        member("static")
            .client_id("a")
            .group_instance_id("i-a")
            .session_timeout(session)
            .enable_auto_commit(true)
    };
    let mut a = broker
        .consumer(static_member(Duration::from_secs(60)))
        .unwrap();
    let mut b = broker.consumer(member("static").client_id("b")).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    poll_until(&mut [&mut a, &mut b], "both consuming", |c, got| {
        stable(&broker, "static", 2).is_some()
            && c.iter().all(|c| c.assignment().len() == 2)
            && got.iter().map(Vec::len).sum::<usize>() >= 12
    });
    let a_had = a.assignment();
    let g = generation(&broker, "static");
    assert_eq!(
        a.group_metadata().unwrap().group_instance_id.as_deref(),
        Some("i-a")
    );

    drop(a); // auto-commits its positions, keeps its place
    let d = broker.describe_group("static").unwrap();
    assert_eq!(d.members.len(), 2, "the static member keeps its place");
    assert_eq!(d.generation, g);

    let mut a2 = broker.consumer(static_member(SHORT)).unwrap();
    a2.subscribe(&["t"]).unwrap();
    assert_eq!(generation(&broker, "static"), g, "no rebalance");
    for p in &a_had {
        append(&broker, "t", p.partition, 3, 1);
    }
    let got = poll_until(&mut [&mut a2, &mut b], "the successor", |c, got| {
        c[0].assignment() == a_had && got[0].len() >= 2
    });
    assert!(
        got[0].iter().all(|r| r.offset == 3),
        "continues from the committed positions: {:?}",
        got[0]
    );
    let d = stable(&broker, "static", 2).expect("stable");
    assert_eq!(d.generation, g, "the same generation");
    assert_eq!(a2.group_metadata().unwrap().generation, g);
    let described: Vec<_> = d
        .members
        .iter()
        .filter(|m| m.group_instance_id.as_deref() == Some("i-a"))
        .collect();
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].assignment, a_had);

    // No successor this time: the session runs out, then a rebalance.
    drop(a2);
    poll_until(&mut [&mut b], "the static member's expiry", |c, _| {
        stable(&broker, "static", 1).is_some() && c[0].assignment().len() == 4
    });
    assert!(generation(&broker, "static") > g);
}

/// A second live consumer with a static member's instance id takes its place and partitions
/// (no rebalance); the first is fenced for good: its polls and commits fail with `Fenced`, and it
/// does not take the place back.
#[test]
fn a_second_consumer_with_the_same_instance_id_fences_the_first() {
    let (_dir, broker) = open();
    broker.create_topic("t", 4).unwrap();
    let mut b = broker.consumer(member("static").client_id("b")).unwrap();
    b.subscribe(&["t"]).unwrap();
    let mut c1 = broker
        .consumer(member("static").client_id("c").group_instance_id("i-c"))
        .unwrap();
    c1.subscribe(&["t"]).unwrap();
    settle(&broker, "static", &mut [&mut b, &mut c1]);
    let g = generation(&broker, "static");
    let c1_had = c1.assignment();
    assert_eq!(c1_had.len(), 2);
    let mut c2 = broker
        .consumer(member("static").client_id("c").group_instance_id("i-c"))
        .unwrap();
    c2.subscribe(&["t"]).unwrap();
    for _ in 0..2 {
        let polled = c1.poll(POLL);
        assert!(
            matches!(polled, Err(Error::Fenced { .. })),
            "the older consumer's poll: {:?}, now {:?}",
            polled.map(|r| r.len()),
            c1.group_metadata()
        );
    }
    assert!(matches!(c1.commit_sync(), Err(Error::Fenced { .. })));
    poll_until(&mut [&mut b, &mut c2], "the successor", |c, _| {
        stable(&broker, "static", 2).is_some() && c[1].assignment() == c1_had
    });
    let d = broker.describe_group("static").unwrap();
    assert_eq!(d.generation, g, "no rebalance");
    let with_c: Vec<_> = d
        .members
        .iter()
        .filter(|m| m.group_instance_id.as_deref() == Some("i-c"))
        .collect();
    assert_eq!(with_c.len(), 1);
    assert_eq!(with_c[0].member_id, member_id(&c2));
    assert!(matches!(c1.poll(POLL), Err(Error::Fenced { .. })));
    assert_eq!(member_id(&c2), with_c[0].member_id, "c2 keeps its place");
    drop(c1);
    c2.commit_sync().unwrap();
}

// ------------------------------------------------------------------------------ 10. patterns

/// A group subscribed with `subscribe_pattern("orders-.*")` picks up a topic created later and
/// receives its records; topics whose whole name does not match are not assigned; the internal
/// `__consumer_offsets` is never assigned, even to `.*`.
#[test]
fn pattern_subscriptions_follow_new_topics() {
    let (_dir, broker) = open();
    broker.create_topic("orders-eu", 1).unwrap();
    broker.create_topic("payments", 1).unwrap();
    broker.create_topic("xorders-1", 1).unwrap();
    broker.create_topic("orders-", 1).unwrap();
    let mut c = broker.consumer(member("pat")).unwrap();
    c.subscribe_pattern("orders-.*").unwrap();
    settle(&broker, "pat", &mut [&mut c]);
    assert_eq!(c.assignment(), tps(&[("orders-", 0), ("orders-eu", 0)]));
    let g = generation(&broker, "pat");

    broker.create_topic("orders-us", 2).unwrap();
    broker.create_topic("audit", 1).unwrap();
    append(&broker, "orders-us", 1, 0, 3);
    append(&broker, "audit", 0, 0, 3);
    let got = poll_until(&mut [&mut c], "the new topic's records", |c, got| {
        got[0].len() >= 3 && c[0].assignment().len() == 4
    });
    assert!(got[0].iter().all(|r| &*r.topic == "orders-us"));
    assert!(generation(&broker, "pat") > g);
    assert_eq!(
        c.assignment(),
        tps(&[
            ("orders-", 0),
            ("orders-eu", 0),
            ("orders-us", 0),
            ("orders-us", 1)
        ])
    );
    let d = stable(&broker, "pat", 1).unwrap();
    assert_eq!(d.members[0].assignment, c.assignment());

    // The offsets topic exists (a group joined), yet `.*` does not get it.
    assert!(broker.partition("__consumer_offsets", 0).is_ok());
    let mut all = broker.consumer(member("everything")).unwrap();
    all.subscribe_pattern(".*").unwrap();
    let d = settle(&broker, "everything", &mut [&mut all]);
    let topics: BTreeSet<String> = all.assignment().into_iter().map(|t| t.topic).collect();
    let expected: BTreeSet<String> = broker.topics().into_iter().collect();
    assert_eq!(topics, expected);
    assert!(!topics.contains("__consumer_offsets"));
    assert!(d.members[0]
        .assignment
        .iter()
        .all(|t| t.topic != "__consumer_offsets"));
    assert!(matches!(
        c.subscribe_pattern("orders-("),
        Err(Error::InvalidArgument(_))
    ));
}

// ------------------------------------------------------------------------------ 11. topics

/// Partitions added to a subscribed topic and a subscribed topic deleted each start a rebalance:
/// the new partitions are assigned and their records consumed; the deleted topic's partitions
/// leave the assignment without poll errors.
#[test]
fn added_partitions_and_deleted_topics_rebalance() {
    let (_dir, broker) = open();
    broker.create_topic("a", 2).unwrap();
    broker.create_topic("b", 2).unwrap();
    // Auto-commit before revocations: a partition that moves is not read twice.
    let grow = |id| member("grow").client_id(id).enable_auto_commit(true);
    let mut c0 = broker.consumer(grow("c0")).unwrap();
    let mut c1 = broker.consumer(grow("c1")).unwrap();
    c0.subscribe(&["a", "b"]).unwrap();
    c1.subscribe(&["a", "b"]).unwrap();
    settle(&broker, "grow", &mut [&mut c0, &mut c1]);
    let g1 = generation(&broker, "grow");

    broker.add_partitions("a", 4).unwrap();
    let g2 = generation(&broker, "grow");
    assert!(g2 > g1, "new partitions: a new generation");
    append(&broker, "a", 2, 0, 4);
    append(&broker, "a", 3, 0, 4);
    let got = poll_until(
        &mut [&mut c0, &mut c1],
        "the new partitions' records",
        |_, got| got.iter().map(Vec::len).sum::<usize>() >= 8,
    );
    let from: BTreeSet<u32> = got.iter().flatten().map(|r| r.partition).collect();
    assert_eq!(from, BTreeSet::from([2, 3]));
    let d = settle(&broker, "grow", &mut [&mut c0, &mut c1]);
    let all: BTreeSet<_> = d
        .members
        .iter()
        .flat_map(|m| m.assignment.clone())
        .collect();
    let expected: BTreeSet<_> = tps(&[("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1)])
        .into_iter()
        .collect();
    assert_eq!(all, expected);

    broker.delete_topic("b").unwrap();
    let g3 = generation(&broker, "grow");
    assert!(g3 > d.generation, "a deleted topic: a new generation");
    append(&broker, "a", 0, 0, 2);
    let got = poll_until(&mut [&mut c0, &mut c1], "rebalance without b", |c, got| {
        stable(&broker, "grow", 2).is_some()
            && c.iter()
                .all(|c| c.assignment().iter().all(|t| t.topic == "a"))
            && got.iter().map(Vec::len).sum::<usize>() >= 2
    });
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 2);
    let mut both = c0.assignment();
    both.extend(c1.assignment());
    assert_eq!(sorted(both), tps(&[("a", 0), ("a", 1), ("a", 2), ("a", 3)]));
}

/// Deleting a topic forgets the group's commits for it, and they stay forgotten through the
/// rebalance that follows (the members' revocations do not commit them again): when a topic of
/// that name is created again, the group reads it from `auto_offset_reset`, as in Kafka.
#[test]
fn a_deleted_topics_commits_are_forgotten() {
    let (_dir, broker) = open();
    broker.create_topic("gone", 2).unwrap();
    append(&broker, "gone", 0, 0, 5);
    append(&broker, "gone", 1, 0, 5);
    let gone = tps(&[("gone", 0), ("gone", 1)]);
    let mut c = broker
        .consumer(member("forget").enable_auto_commit(true))
        .unwrap();
    c.subscribe(&["gone"]).unwrap();
    poll_until(&mut [&mut c], "10 records", |_, got| got[0].len() >= 10);
    c.commit_sync().unwrap();
    let five = Some(OffsetAndMetadata::new(5));
    assert_eq!(c.committed(&gone).unwrap(), [five.clone(), five]);

    broker.delete_topic("gone").unwrap();
    assert_eq!(
        c.committed(&gone).unwrap(),
        [None, None],
        "forgotten at once"
    );
    poll_until(&mut [&mut c], "the rebalance", |c, _| {
        stable(&broker, "forget", 1).is_some() && c[0].assignment().is_empty()
    });
    assert_eq!(
        c.committed(&gone).unwrap(),
        [None, None],
        "the revocation after the deletion committed the old positions again"
    );
    assert!(broker.group_lag("forget").unwrap().is_empty());

    broker.create_topic("gone", 2).unwrap();
    append(&broker, "gone", 0, 0, 8);
    append(&broker, "gone", 1, 0, 8);
    let got = poll_until(&mut [&mut c], "the new topic's records", |_, got| {
        got[0].len() >= 16
    });
    let mut got: Vec<(u32, u64)> = got[0].iter().map(|r| (r.partition, r.offset)).collect();
    got.sort_unstable();
    let all: Vec<(u32, u64)> = (0..2).flat_map(|p| (0..8).map(move |o| (p, o))).collect();
    assert_eq!(got, all, "the recreated topic is read from the beginning");
}

// ------------------------------------------------------------------------------ 12. admin

/// The admin API: `list_groups` with states (Empty, PreparingRebalance, CompletingRebalance,
/// Stable), and `describe_group` with members, assignments, leader and assignor.
#[test]
fn list_and_describe_groups() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    assert!(broker.list_groups().is_empty());
    assert!(matches!(
        broker.describe_group("nobody"),
        Err(Error::UnknownGroup(g)) if g == "nobody"
    ));

    // A group with a commit and no members: Empty.
    let mut idle = broker.consumer(member("idle")).unwrap();
    idle.assign(&[tp("t", 0)]).unwrap();
    idle.commit_sync_offsets(&[(tp("t", 0), OffsetAndMetadata::new(0))])
        .unwrap();
    drop(idle);

    let mut a = broker.consumer(member("busy").client_id("a")).unwrap();
    a.subscribe(&["t"]).unwrap();
    settle(&broker, "busy", &mut [&mut a]);
    let states: BTreeMap<String, GroupState> = broker
        .list_groups()
        .into_iter()
        .map(|l| (l.group_id, l.state))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("busy".to_string(), GroupState::Stable),
            ("idle".to_string(), GroupState::Empty),
        ])
    );
    let d = broker.describe_group("idle").unwrap();
    assert_eq!(
        (d.state, d.members.len(), d.assignor, d.leader),
        (GroupState::Empty, 0, None, None)
    );

    // A second member: PreparingRebalance until `a` gave its partitions up, then
    // CompletingRebalance until `b` took its own, then Stable.
    let mut b = broker
        .consumer(member("busy").client_id("b").group_instance_id("inst-b"))
        .unwrap();
    b.subscribe(&["t"]).unwrap();
    let state = |broker: &Broker| broker.describe_group("busy").unwrap().state;
    assert_eq!(state(&broker), GroupState::PreparingRebalance);
    b.poll(Duration::ZERO).unwrap();
    assert_eq!(
        state(&broker),
        GroupState::PreparingRebalance,
        "a still owns"
    );
    a.poll(Duration::ZERO).unwrap();
    assert_eq!(state(&broker), GroupState::CompletingRebalance);
    b.poll(Duration::ZERO).unwrap();
    assert_eq!(state(&broker), GroupState::Stable);

    let d = broker.describe_group("busy").unwrap();
    assert_eq!(d.group_id, "busy");
    assert_eq!(d.assignor.as_deref(), Some("range"));
    assert_eq!(d.protocol, Some(RebalanceProtocol::Eager));
    assert_eq!(d.leader, Some(member_id(&a)), "the oldest member leads");
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.members[0].member_id, member_id(&a));
    assert_eq!(d.members[0].client_id, "a");
    assert_eq!(d.members[0].group_instance_id, None);
    // Kafka's range assignor puts static members first: `b` gets partition 0.
    assert_eq!(d.members[0].assignment, [tp("t", 1)]);
    assert_eq!(d.members[1].member_id, member_id(&b));
    assert_eq!(d.members[1].client_id, "b");
    assert_eq!(d.members[1].group_instance_id.as_deref(), Some("inst-b"));
    assert_eq!(d.members[1].assignment, [tp("t", 0)]);
    assert_eq!(d.generation, b.group_metadata().unwrap().generation);

    // The leader leaves: the other member leads.
    a.unsubscribe().unwrap();
    let d = settle(&broker, "busy", &mut [&mut b]);
    assert_eq!(d.leader, Some(member_id(&b)));
}

/// `group_lag` (committed 60 of 100 → lag 40), `reset_group_offsets` to Earliest, Latest,
/// Timestamp and Offset (clamped into the log) while the group is empty and `GroupNotEmpty`
/// while it has members, and `delete_group` (`GroupNotEmpty` with members, `UnknownGroup`
/// after; a new consumer of the group then starts at `auto_offset_reset`).
#[test]
fn lag_reset_and_delete_groups() {
    let (_dir, broker) = open();
    broker.create_topic("lag", 2).unwrap();
    let base = base_ms();
    append_at(&broker, "lag", 0, 0, 100, base); // record n stamped base + n
    let (p0, p1) = (tp("lag", 0), tp("lag", 1));
    let mut c = broker.consumer(member("lagger")).unwrap();
    c.subscribe(&["lag"]).unwrap();
    settle(&broker, "lagger", &mut [&mut c]);
    c.commit_sync_offsets(&[(p0.clone(), OffsetAndMetadata::new(60))])
        .unwrap();
    let lag = broker.group_lag("lagger").unwrap();
    assert_eq!(lag.len(), 2, "{lag:?}");
    assert_eq!(lag[0].partition, p0);
    assert_eq!(lag[0].committed, Some(60));
    assert_eq!(lag[0].log_end_offset, 100);
    assert_eq!(lag[0].lag, Some(40));
    assert_eq!(lag[0].member_id, Some(member_id(&c)));
    assert_eq!(lag[1].partition, p1);
    assert_eq!(
        (lag[1].committed, lag[1].log_end_offset, lag[1].lag),
        (None, 0, None)
    );
    assert!(matches!(
        broker.group_lag("nobody"),
        Err(Error::UnknownGroup(_))
    ));

    // Members: neither reset nor delete.
    match broker.reset_group_offsets("lagger", &["lag"], ResetTo::Earliest) {
        Err(Error::GroupNotEmpty { group, members }) => {
            assert_eq!((group.as_str(), members), ("lagger", 1));
        }
        other => panic!("expected GroupNotEmpty, got {other:?}"),
    }
    assert!(matches!(
        broker.delete_group("lagger"),
        Err(Error::GroupNotEmpty { members: 1, .. })
    ));
    assert_eq!(broker.group_lag("lagger").unwrap()[0].committed, Some(60));
    c.close().unwrap();
    let lag = broker.group_lag("lagger").unwrap();
    assert_eq!(lag.len(), 1, "only committed partitions without members");
    assert_eq!(lag[0].member_id, None);

    let reset = |to| broker.reset_group_offsets("lagger", &["lag"], to).unwrap();
    assert_eq!(reset(ResetTo::Earliest), [(p0.clone(), 0), (p1.clone(), 0)]);
    assert_eq!(broker.group_lag("lagger").unwrap()[0].lag, Some(100));
    assert_eq!(reset(ResetTo::Latest), [(p0.clone(), 100), (p1.clone(), 0)]);
    assert_eq!(
        reset(ResetTo::Timestamp(base + 50)),
        [(p0.clone(), 50), (p1.clone(), 0)]
    );
    assert_eq!(
        reset(ResetTo::Timestamp(base + 7_200_000)),
        [(p0.clone(), 100), (p1.clone(), 0)],
        "all older: the log end"
    );
    assert_eq!(
        reset(ResetTo::Offset(500)),
        [(p0.clone(), 100), (p1.clone(), 0)],
        "clamped"
    );
    assert_eq!(
        reset(ResetTo::Offset(70)),
        [(p0.clone(), 70), (p1.clone(), 0)]
    );
    assert!(matches!(
        broker.reset_group_offsets("lagger", &["nope"], ResetTo::Earliest),
        Err(Error::UnknownTopic(_))
    ));
    // A reset may create a group.
    broker
        .reset_group_offsets("brand-new", &["lag"], ResetTo::Offset(10))
        .unwrap();
    assert_eq!(
        broker.group_lag("brand-new").unwrap()[0].committed,
        Some(10)
    );

    // A member starts where the reset put the group.
    let mut c = broker.consumer(member("lagger")).unwrap();
    c.subscribe(&["lag"]).unwrap();
    let got = poll_until(&mut [&mut c], "records from 70", |_, got| {
        got[0].len() >= 30
    });
    assert_eq!(offsets(&got[0]), (70..100).collect::<Vec<_>>());
    assert!(matches!(
        broker.delete_group("lagger"),
        Err(Error::GroupNotEmpty { .. })
    ));
    c.close().unwrap();

    broker.delete_group("lagger").unwrap();
    assert!(matches!(
        broker.describe_group("lagger"),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        broker.delete_group("lagger"),
        Err(Error::UnknownGroup(_))
    ));
    assert!(broker.list_groups().iter().all(|l| l.group_id != "lagger"));
    let mut c = broker.consumer(member("lagger")).unwrap();
    assert_eq!(c.committed(std::slice::from_ref(&p0)).unwrap(), [None]);
    c.subscribe(&["lag"]).unwrap();
    let got = poll_until(&mut [&mut c], "records from 0", |_, got| {
        got[0].len() >= 100
    });
    assert_eq!(
        offsets(&got[0]),
        (0..100).collect::<Vec<_>>(),
        "auto_offset_reset"
    );
}

// ------------------------------------------------------------------------------ 13. layout

fn take<const N: usize>(bytes: &mut &[u8]) -> [u8; N] {
    let (head, rest) = bytes.split_at(N);
    *bytes = rest;
    head.try_into().unwrap()
}

fn take_string(bytes: &mut &[u8]) -> String {
    let len = i16::from_be_bytes(take(bytes));
    let (s, rest) = bytes.split_at(usize::try_from(len).unwrap());
    *bytes = rest;
    String::from_utf8(s.to_vec()).unwrap()
}

/// A commit is a record of `__consumer_offsets` in Kafka's layout: key = i16 version 1, group,
/// topic (i16-length strings), i32 partition; value = i16 version 3, i64 offset, i32 leader
/// epoch (-1), metadata, i64 commit timestamp; all big-endian.
#[test]
fn commits_use_kafkas_record_layout() {
    let (_dir, broker) = open();
    broker.create_topic("orders", 4).unwrap();
    let mut c = broker.consumer(member("layout")).unwrap();
    c.subscribe(&["orders"]).unwrap();
    settle(&broker, "layout", &mut [&mut c]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    c.commit_sync_offsets(&[(
        tp("orders", 3),
        OffsetAndMetadata::new(42).with_metadata("meta"),
    )])
    .unwrap();
    let records = broker
        .partition("__consumer_offsets", 0)
        .unwrap()
        .log()
        .unwrap()
        .read_records(0, 1 << 20)
        .unwrap();
    let last = records.last().expect("a commit record");
    let mut key: &[u8] = last.record.key.as_deref().unwrap();
    assert_eq!(i16::from_be_bytes(take(&mut key)), 1, "key version");
    assert_eq!(take_string(&mut key), "layout");
    assert_eq!(take_string(&mut key), "orders");
    assert_eq!(i32::from_be_bytes(take(&mut key)), 3);
    assert!(key.is_empty(), "nothing after the partition");

    let mut value: &[u8] = last.record.value.as_deref().unwrap();
    assert_eq!(i16::from_be_bytes(take(&mut value)), 3, "value version");
    assert_eq!(i64::from_be_bytes(take(&mut value)), 42);
    assert_eq!(i32::from_be_bytes(take(&mut value)), -1, "no leader epoch");
    assert_eq!(take_string(&mut value), "meta");
    let timestamp = i64::from_be_bytes(take(&mut value));
    assert!(
        timestamp >= before - 1_000,
        "commit time {timestamp} vs {before}"
    );
    assert!(value.is_empty());
    assert_eq!(broker.topics(), ["orders"], "the internal topic is hidden");
}
