//! The churn test of consumer groups: producers write while consumers join, leave, crash and
//! stall at random; with commits after processing, no record is lost, and duplicates occur only
//! around rebalances (they are counted and reported).
//!
//! Every consumer "life" reports what it does to one shared collector, in one global order:
//! the partitions its rebalance listener is given (with the position it starts at) and takes
//! away, and every record it processes (with the member id and generation it holds). From that
//! log the test checks:
//! - no loss: every produced record was processed at least once, and at the (partition, offset)
//!   its producer was told;
//! - within one ownership of a partition by one consumer, records come in offset order without
//!   gaps, starting at the position the listener saw;
//! - a hand-over never skips: a new owner starts at most one past the highest offset processed
//!   so far, and re-delivers at most one poll's worth (`MAX_POLL_RECORDS`) of records;
//! - a partition goes to a new member only after its previous owner gave it up, or after the
//!   group removed the previous owner (which then never acts in a later generation);
//! - a record processed more than once was processed each time by a different member in a
//!   different generation (a duplicate within one generation would be a bug).
//!
//! Random choices (which lives start, how they end, when they stall) come from a seeded `Rng`;
//! thread scheduling is not deterministic, so the figures vary from run to run. Nothing here
//! asserts on timing except a 60 s give-up deadline.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use support::Rng;
use tidelog::{
    Assignor, Broker, BrokerConfig, Consumer, ConsumerConfig, CooperativeStickyAssignor,
    Durability, Error, GroupState, LogConfig, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, RangeAssignor, RebalanceListener, TopicPartition,
};

const TOPIC: &str = "churn-topic";
const GROUP: &str = "churn";
const PARTITIONS: u32 = 8;
const PRODUCERS: usize = 2;
const RECORDS_PER_PRODUCER: usize = 20_000;
const MAX_POLL_RECORDS: usize = 100;
const MAX_LIVES: usize = 6;
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(300);
const SESSION_TIMEOUT: Duration = Duration::from_millis(300);
const GIVE_UP: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------ the collector

#[derive(Debug)]
enum Event {
    /// The listener was given `partition`, whose records start at `start`.
    Assigned {
        life: usize,
        member: String,
        generation: i32,
        partition: u32,
        start: u64,
    },
    /// The listener took `partition` away (revoked, or lost when the group removed the member).
    Removed {
        life: usize,
        partition: u32,
        lost: bool,
    },
    /// A record was processed.
    Processed {
        life: usize,
        member: Arc<str>,
        generation: i32,
        partition: u32,
        offset: u64,
        id: String,
    },
}

#[derive(Default)]
struct Collector {
    events: Vec<Event>,
    /// Distinct ids processed so far.
    seen: HashSet<String>,
}

type Shared = Arc<Mutex<Collector>>;

/// Who processed a record: generation, member id, life.
type Delivery = (i32, Arc<str>, usize);

fn push(collector: &Shared, event: Event) {
    let mut c = collector.lock();
    if let Event::Processed { id, .. } = &event {
        if !c.seen.contains(id) {
            c.seen.insert(id.clone());
        }
    }
    c.events.push(event);
}

/// Reports the partitions a life gains and loses.
struct Listener {
    life: usize,
    collector: Shared,
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        for tp in partitions {
            push(
                &self.collector,
                Event::Removed {
                    life: self.life,
                    partition: tp.partition,
                    lost: false,
                },
            );
        }
    }

    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let meta = consumer.group_metadata().expect("a group member");
        for tp in partitions {
            let start = consumer
                .position(tp)
                .expect("the position of a partition just assigned");
            push(
                &self.collector,
                Event::Assigned {
                    life: self.life,
                    member: meta.member_id.clone(),
                    generation: meta.generation,
                    partition: tp.partition,
                    start,
                },
            );
        }
    }

    fn on_partitions_lost(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        for tp in partitions {
            push(
                &self.collector,
                Event::Removed {
                    life: self.life,
                    partition: tp.partition,
                    lost: true,
                },
            );
        }
    }
}

// ------------------------------------------------------------------------------ consumer lives

/// How a life ends once its lifetime is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// `close()` after committing its last batch.
    Close,
    /// Dropped in the middle of processing a batch: the records processed are not committed.
    DropMidBatch,
    /// Its thread ends with the consumer handed to a struct nobody polls (a crashed process):
    /// the group removes it after `session_timeout`; its last batch is not committed.
    Crash,
    /// Runs until the churn phase ends, then closes.
    RunOn,
}

struct Plan {
    life: usize,
    seed: u64,
    lifetime: Duration,
    end: End,
    /// Times into the life after which the next non-empty batch stalls (longer than
    /// `max_poll_interval`, outside poll) in the middle of its processing.
    stalls: Vec<Duration>,
}

#[derive(Default)]
struct Counters {
    fenced_commits: AtomicUsize,
    stalls: AtomicUsize,
    polls: AtomicUsize,
}

struct LifeCtx {
    broker: Broker,
    config: ConsumerConfig,
    collector: Shared,
    counters: Arc<Counters>,
    /// Set when the life must close now (end of its phase).
    stop: Arc<AtomicBool>,
}

/// One consumer's life; returns the consumer if it "crashed" (to be dropped much later).
fn life(ctx: &LifeCtx, plan: &Plan) -> Option<Consumer> {
    let mut rng = Rng::new(plan.seed);
    let mut consumer = ctx.broker.consumer(ctx.config.clone()).expect("consumer");
    consumer.set_rebalance_listener(Listener {
        life: plan.life,
        collector: Arc::clone(&ctx.collector),
    });
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let born = Instant::now();
    let mut stalls = plan.stalls.iter().copied().peekable();
    loop {
        let over = born.elapsed() >= plan.lifetime && plan.end != End::RunOn;
        if ctx.stop.load(Ordering::Acquire) || (over && plan.end == End::Close) {
            consumer.close().expect("close");
            return None;
        }
        let records = consumer
            .poll(Duration::from_millis(50))
            .expect("poll of a group member");
        ctx.counters.polls.fetch_add(1, Ordering::Relaxed);
        if records.is_empty() {
            continue;
        }
        let meta = consumer.group_metadata().expect("group metadata");
        let member: Arc<str> = meta.member_id.into();
        let n = records.len() as u64;
        let stall_at = match stalls.peek() {
            Some(at) if born.elapsed() >= *at => {
                stalls.next();
                Some(rng.below(n))
            }
            _ => None,
        };
        let end_at =
            (over && matches!(plan.end, End::DropMidBatch | End::Crash)).then(|| rng.below(n));
        for (i, r) in records.iter().enumerate() {
            let i = i as u64;
            if Some(i) == stall_at {
                ctx.counters.stalls.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(MAX_POLL_INTERVAL + Duration::from_millis(rng.range(50, 300)));
            }
            if Some(i) == end_at {
                return match plan.end {
                    End::Crash => Some(consumer),
                    _ => {
                        drop(consumer);
                        None
                    }
                };
            }
            let id = String::from_utf8(r.value.as_deref().expect("a value").to_vec()).unwrap();
            push(
                &ctx.collector,
                Event::Processed {
                    life: plan.life,
                    member: Arc::clone(&member),
                    generation: meta.generation,
                    partition: r.partition,
                    offset: r.offset,
                    id,
                },
            );
        }
        match consumer.commit_sync() {
            Ok(()) => {}
            Err(Error::Fenced { .. }) => {
                ctx.counters.fenced_commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("life {}: commit_sync failed: {e}", plan.life),
        }
    }
}

// ------------------------------------------------------------------------------ the test

fn churn(label: &str, assignor: impl Assignor + 'static, seed: u64) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerConfig::default()
            .maintenance_interval(Duration::from_millis(10))
            .topic_defaults(LogConfig::default().durability(Durability::None))
            // Commits after every batch: no fsync each time, so that a slow disk does not add
            // removals for exceeding `max_poll_interval` (they would still be handled).
            .offsets_topic_config(LogConfig::default().durability(Durability::None)),
    )
    .unwrap();
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    let config = ConsumerConfig::default()
        .group_id(GROUP)
        .enable_auto_commit(false)
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_interval(MAX_POLL_INTERVAL)
        .session_timeout(SESSION_TIMEOUT)
        .max_poll_records(MAX_POLL_RECORDS)
        .partition_assignment_strategy(assignor);
    let collector: Shared = Arc::default();
    let counters = Arc::new(Counters::default());
    let mut rng = Rng::new(seed);

    // Producers: keyed records whose value is a unique id.
    let producers: Vec<JoinHandle<Vec<(String, u32, u64)>>> = (0..PRODUCERS)
        .map(|p| {
            let broker = broker.clone();
            let seed = rng.next_u64();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed);
                let producer = Producer::new(&broker, ProducerConfig::default()).unwrap();
                let mut sent = Vec::with_capacity(RECORDS_PER_PRODUCER);
                for seq in 0..RECORDS_PER_PRODUCER {
                    let id = format!("p{p}-{seq}");
                    let key = format!("k{}", rng.below(64));
                    let meta = producer
                        .send(ProducerRecord::new(TOPIC, id.clone()).key(key))
                        .unwrap();
                    sent.push((id, meta.partition, meta.offset));
                    if rng.below(100) == 0 {
                        std::thread::sleep(Duration::from_millis(rng.range(10, 50)));
                    }
                }
                producer.close().unwrap();
                sent
            })
        })
        .collect();

    // The supervisor: starts lives at random while the producers run.
    let churn_stop = Arc::new(AtomicBool::new(false));
    let ctx = |stop: &Arc<AtomicBool>| LifeCtx {
        broker: broker.clone(),
        config: config.clone(),
        collector: Arc::clone(&collector),
        counters: Arc::clone(&counters),
        stop: Arc::clone(stop),
    };
    let mut lives: Vec<(End, JoinHandle<Option<Consumer>>)> = Vec::new();
    let mut finished: Vec<JoinHandle<Option<Consumer>>> = Vec::new();
    let mut started_by_end: BTreeMap<End, usize> = BTreeMap::new();
    let mut next_life = 0;
    while !producers.iter().all(JoinHandle::is_finished) {
        let (done, running): (Vec<_>, Vec<_>) = lives.drain(..).partition(|(_, h)| h.is_finished());
        finished.extend(done.into_iter().map(|(_, h)| h));
        lives = running;
        let run_on = lives.iter().filter(|(e, _)| *e == End::RunOn).count();
        if lives.is_empty() || (lives.len() < MAX_LIVES && rng.below(3) != 0) {
            let end = match rng.below(100) {
                0..=34 => End::Close,
                35..=64 => End::DropMidBatch,
                65..=79 => End::Crash,
                _ if run_on < 2 => End::RunOn,
                _ => End::Close,
            };
            let lifetime = Duration::from_millis(rng.range(100, 1500));
            let mut stalls = Vec::new();
            while rng.below(100) < 40 {
                stalls.push(Duration::from_millis(
                    rng.below(lifetime.as_millis() as u64),
                ));
            }
            stalls.sort();
            let plan = Plan {
                life: next_life,
                seed: rng.next_u64(),
                lifetime,
                end,
                stalls,
            };
            next_life += 1;
            *started_by_end.entry(end).or_default() += 1;
            let ctx = ctx(&churn_stop);
            lives.push((end, std::thread::spawn(move || life(&ctx, &plan))));
        }
        std::thread::sleep(Duration::from_millis(rng.range(20, 120)));
    }
    let sent: Vec<(String, u32, u64)> = producers
        .into_iter()
        .flat_map(|h| h.join().expect("producer thread"))
        .collect();
    let produced_at = started.elapsed();
    let churn_generation = broker.describe_group(GROUP).unwrap().generation;

    // End of the churn: every life closes; then two stable consumers catch up.
    churn_stop.store(true, Ordering::Release);
    finished.extend(lives.into_iter().map(|(_, h)| h));
    let mut graveyard: Vec<Consumer> = finished
        .into_iter()
        .filter_map(|h| h.join().expect("a consumer life panicked"))
        .collect();
    let final_stop = Arc::new(AtomicBool::new(false));
    let stable: Vec<_> = (0..2)
        .map(|_| {
            let plan = Plan {
                life: next_life,
                seed: rng.next_u64(),
                lifetime: Duration::MAX,
                end: End::RunOn,
                stalls: Vec::new(),
            };
            next_life += 1;
            let ctx = ctx(&final_stop);
            std::thread::spawn(move || life(&ctx, &plan))
        })
        .collect();
    let total = sent.len();
    let deadline = Instant::now() + GIVE_UP;
    // Records are processed before their commit: once every partition's commit reached its log
    // end, whatever was never processed is lost, and waiting longer would not help.
    let caught_up = || {
        let lag = broker.group_lag(GROUP).unwrap();
        lag.len() == PARTITIONS as usize && lag.iter().all(|l| l.lag == Some(0))
    };
    while collector.lock().seen.len() < total && !caught_up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    final_stop.store(true, Ordering::Release);
    graveyard.extend(
        stable
            .into_iter()
            .filter_map(|h| h.join().expect("a stable consumer panicked")),
    );
    // The crashed members were removed after their session timeout; the others left.
    let description = loop {
        let d = broker.describe_group(GROUP).unwrap();
        if d.state == GroupState::Empty || Instant::now() >= deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let events = std::mem::take(&mut collector.lock().events);
    drop(graveyard);

    // ---- checks
    let produced: HashMap<&str, (u32, u64)> = sent
        .iter()
        .map(|(id, p, o)| (id.as_str(), (*p, *o)))
        .collect();
    assert_eq!(produced.len(), PRODUCERS * RECORDS_PER_PRODUCER);

    // Per life and partition: the next offset expected while it owns the partition.
    // Per life and partition: the next offset expected while it owns the partition, the member
    // id it owns it as, and whether another member was given the partition since.
    let mut owned: HashMap<(usize, u32), (u64, String, bool)> = HashMap::new();
    // Partitions given to a member while another still held them by its listener's account:
    // (event, partition, previous owner, generation of the new owner). Legitimate only when
    // the previous owner had been removed from the group (a stalled or crashed member, not yet
    // told), which shows as it never acting in that generation or later.
    let mut overlaps: Vec<(usize, u32, String, i32)> = Vec::new();
    // Per member id: the highest generation it processed or was assigned in.
    let mut member_generation: HashMap<&str, i32> = HashMap::new();
    // Per partition: one past the highest offset processed so far.
    let mut high: HashMap<u32, u64> = HashMap::new();
    // Per (partition, offset): every (generation, member, life) that processed it.
    let mut deliveries: HashMap<(u32, u64), Vec<Delivery>> = HashMap::new();
    let mut processed = 0usize;
    let mut handovers = 0usize;
    let mut redelivering_handovers = 0usize;
    let mut max_redelivered = 0u64;
    let mut lost_partitions = 0usize;
    for (n, event) in events.iter().enumerate() {
        match event {
            Event::Assigned {
                life,
                member,
                generation,
                partition,
                start,
            } => {
                for ((l, p), (_, m, superseded)) in &mut owned {
                    if p == partition && l != life && !*superseded {
                        *superseded = true;
                        overlaps.push((n, *partition, m.clone(), *generation));
                    }
                }
                let g = member_generation.entry(member).or_default();
                *g = (*g).max(*generation);
                let prev = owned.insert((*life, *partition), (*start, member.clone(), false));
                assert!(
                    prev.is_none(),
                    "event {n}: life {life} ({member}, generation {generation}) was given \
                     partition {partition}, which it already owned"
                );
                let high = high.get(partition).copied().unwrap_or(0);
                assert!(
                    *start <= high,
                    "event {n}: life {life} ({member}, generation {generation}) starts partition \
                     {partition} at {start}, but only offsets below {high} were processed: \
                     records {high}..{start} are skipped"
                );
                handovers += 1;
                let redelivered = high - start;
                if redelivered > 0 {
                    redelivering_handovers += 1;
                }
                max_redelivered = max_redelivered.max(redelivered);
                assert!(
                    redelivered <= MAX_POLL_RECORDS as u64,
                    "event {n}: life {life} ({member}, generation {generation}) starts partition \
                     {partition} at {start}, {redelivered} records below the highest processed \
                     ({high}); more than one poll's worth was left uncommitted"
                );
            }
            Event::Removed {
                life,
                partition,
                lost,
            } => {
                if *lost {
                    lost_partitions += 1;
                }
                assert!(
                    owned.remove(&(*life, *partition)).is_some(),
                    "event {n}: life {life} gave up partition {partition} (lost: {lost}), \
                     which it did not own"
                );
            }
            Event::Processed {
                life,
                member,
                generation,
                partition,
                offset,
                id,
            } => {
                processed += 1;
                assert_eq!(
                    produced.get(id.as_str()),
                    Some(&(*partition, *offset)),
                    "event {n}: record `{id}` processed at {partition}/{offset}"
                );
                let g = member_generation.entry(member).or_default();
                *g = (*g).max(*generation);
                let (next, _, _) = owned.get_mut(&(*life, *partition)).unwrap_or_else(|| {
                    panic!(
                        "event {n}: life {life} ({member}, generation {generation}) processed \
                         {partition}/{offset} without owning the partition"
                    )
                });
                assert_eq!(
                    *offset,
                    *next,
                    "event {n}: life {life} ({member}, generation {generation}) processed \
                     {partition}/{offset} after {partition}/{}: a gap or a step back within one \
                     ownership",
                    *next as i64 - 1
                );
                *next += 1;
                let h = high.entry(*partition).or_default();
                *h = (*h).max(offset + 1);
                deliveries.entry((*partition, *offset)).or_default().push((
                    *generation,
                    Arc::clone(member),
                    *life,
                ));
            }
        }
    }

    // A partition is taken only from a member that gave it up or was removed from the group.
    for (n, partition, previous, generation) in &overlaps {
        let later = member_generation[previous.as_str()];
        assert!(
            later < *generation,
            "event {n}: partition {partition} was given to a member in generation {generation} \
             while member {previous} still held it, and {previous} was still in the group (it \
             acted in generation {later}): two members consumed the partition at once"
        );
    }

    // No loss: every produced record was processed.
    let missing: Vec<&str> = produced
        .keys()
        .filter(|id| !collector.lock().seen.contains(**id))
        .copied()
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {total} records were never processed (gave up after {GIVE_UP:?}), e.g. {missing:?}",
        total - collector.lock().seen.len()
    );
    assert_eq!(deliveries.len(), total);

    // Duplicates: each delivery of a record by a different member, in a different generation.
    let mut duplicated_records = 0usize;
    for ((partition, offset), d) in &deliveries {
        if d.len() < 2 {
            continue;
        }
        duplicated_records += 1;
        let generations: HashSet<i32> = d.iter().map(|(g, _, _)| *g).collect();
        let members: HashSet<&str> = d.iter().map(|(_, m, _)| &**m).collect();
        assert!(
            generations.len() == d.len() && members.len() == d.len(),
            "{partition}/{offset} was processed {} times, not each by another member in another \
             generation: {d:?}",
            d.len()
        );
    }
    let duplicates = processed - total;

    println!(
        "churn [{}]: {total} records produced in {produced_at:.1?}, {processed} processed, \
         {duplicates} duplicate deliveries ({duplicated_records} distinct records, \
         {redelivering_handovers} of {handovers} partition hand-overs re-delivered, at most \
         {max_redelivered} records at once); generations: {churn_generation} while producing, \
         {} in all; {} lives {started_by_end:?}; {} stalls; {} fenced commits; {lost_partitions} \
         partitions lost, {} taken over from removed members before they knew; {} polls; final state {:?}; {:.1?} in all",
        label,
        description.generation,
        next_life,
        counters.stalls.load(Ordering::Relaxed),
        counters.fenced_commits.load(Ordering::Relaxed),
        overlaps.len(),
        counters.polls.load(Ordering::Relaxed),
        description.state,
        started.elapsed(),
    );
    assert_eq!(description.state, GroupState::Empty, "{description:?}");
    assert!(
        churn_generation >= 10,
        "only {churn_generation} generations during the churn: the test did not churn"
    );
}

#[test]
fn churn_range_assignor() {
    churn("range", RangeAssignor, 0xC4A5_0001);
}

#[test]
fn churn_cooperative_sticky_assignor() {
    churn("cooperative-sticky", CooperativeStickyAssignor, 0xC4A5_0002);
}
