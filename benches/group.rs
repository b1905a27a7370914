//! Consumer groups: offset commits, the rebalance when an 8th member joins, and group
//! consumption of a prefilled topic. `examples/group_perf.rs` measures the same against the
//! issue's goals, with baselines.
//!
//! - `commit/async_offsets_none`, `commit/sync_offsets_none`: one member commits one offset of
//!   its one partition per call, `__consumer_offsets` at durability `None`. Goal: at least
//!   100,000 commits/s.
//! - `rebalance_join_8th/<assignor>/<offsets durability>`: a 16-partition topic a producer thread
//!   appends to every millisecond, 7 members polling on their own threads; timed from the 8th
//!   consumer's `subscribe` until every one of the 8 has returned from a poll holding its whole
//!   target of the new generation (`describe_group`). The 8th then closes, untimed, and the
//!   group settles before the next iteration. Goal: under 10 ms.
//! - `group_consume/...`: 8 partitions of 250,000 100-byte records; 4 threads read everything,
//!   timed from the first `subscribe` (or `assign`) until the last record arrives: 4 members of
//!   a new group each iteration, and, as the baseline, 4 consumers without a group assigned 2
//!   partitions each. `max_poll_records` 5000. Goal: at least 8 million records/s.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, CooperativeStickyAssignor, Durability,
    LogConfig, OffsetAndMetadata, OffsetReset, RangeAssignor, RebalanceListener, Record,
    TopicPartition, WakeupHandle,
};

const VALUE_LEN: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(20);

/// A broker in a new temporary directory: data topics at durability `None`,
/// `__consumer_offsets` at `offsets`.
fn open_broker(offsets: Durability) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config =
        BrokerConfig::default().topic_defaults(LogConfig::default().durability(Durability::None));
    if offsets != Durability::Always {
        config = config.offsets_topic_config(LogConfig::default().durability(offsets));
    }
    let broker = Broker::open_with(dir.path(), config).expect("open");
    (dir, broker)
}

// ------------------------------------------------------------------------------ commits

fn commits(c: &mut Criterion) {
    let (_dir, broker) = open_broker(Durability::None);
    broker.create_topic("commits", 1).expect("topic");
    let mut consumer = broker
        .consumer(ConsumerConfig::default().group_id("committer"))
        .expect("consumer");
    consumer.subscribe(&["commits"]).expect("subscribe");
    let tp = TopicPartition::new("commits", 0);
    let deadline = Instant::now() + TIMEOUT;
    while consumer.assignment() != [tp.clone()] {
        assert!(Instant::now() < deadline, "no partition assigned");
        consumer.poll(Duration::from_millis(10)).expect("poll");
    }
    let mut offsets = [(tp, OffsetAndMetadata::new(0))];
    let mut next = 0u64;

    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("async_offsets_none", |b| {
        b.iter(|| {
            next += 1;
            offsets[0].1 = OffsetAndMetadata::new(next);
            consumer.commit_async_offsets(&offsets).expect("commit");
        });
    });
    group.bench_function("sync_offsets_none", |b| {
        b.iter(|| {
            next += 1;
            offsets[0].1 = OffsetAndMetadata::new(next);
            consumer.commit_sync_offsets(&offsets).expect("commit");
        });
    });
    group.finish();
    consumer.close().expect("close");
}

// ------------------------------------------------------------------------------ rebalance

const TOPIC: &str = "rebalance";
const PARTITIONS: u32 = 16;
const STEADY: usize = 7;
const GROUP: &str = "g";
/// Records the producer appends to each partition every millisecond (160,000 records/s).
const PER_TICK: usize = 10;

#[derive(Clone, Copy)]
enum Strategy {
    Range,
    CooperativeSticky,
}

impl Strategy {
    fn config(self) -> ConsumerConfig {
        let config = ConsumerConfig::default()
            .group_id(GROUP)
            .auto_offset_reset(OffsetReset::Earliest);
        match self {
            Strategy::Range => config.partition_assignment_strategy(RangeAssignor),
            Strategy::CooperativeSticky => {
                config.partition_assignment_strategy(CooperativeStickyAssignor)
            }
        }
    }
}

/// A member's generation, assignment and the return of the first poll that had them.
#[derive(Clone)]
struct Published {
    member_id: String,
    generation: i32,
    assignment: Vec<TopicPartition>,
    since: Instant,
}

struct Board {
    slots: Mutex<Vec<Option<Published>>>,
    changed: Condvar,
}

impl Board {
    fn publish(&self, slot: usize, state: Option<Published>) {
        self.slots.lock().unwrap()[slot] = state;
        self.changed.notify_all();
    }

    /// Waits until each member in `slots` returned from a poll at or after `after` holding its
    /// target of `generation`; returns the latest such return.
    fn wait_for(
        &self,
        slots: Range<usize>,
        generation: i32,
        targets: &HashMap<String, Vec<TopicPartition>>,
        after: Instant,
    ) -> Instant {
        let deadline = Instant::now() + TIMEOUT;
        let mut guard = self.slots.lock().unwrap();
        loop {
            let mut latest = after;
            let complete = guard[slots.clone()].iter().all(|s| {
                s.as_ref().is_some_and(|p| {
                    let ok = p.generation == generation
                        && p.since >= after
                        && targets.get(&p.member_id) == Some(&p.assignment);
                    if ok {
                        latest = latest.max(p.since);
                    }
                    ok
                })
            });
            if complete {
                return latest;
            }
            let now = Instant::now();
            assert!(now < deadline, "generation {generation} never completed");
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

struct Flag(Arc<AtomicBool>);

impl RebalanceListener for Flag {
    fn on_partitions_revoked(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        self.0.store(true, Ordering::Release);
    }

    fn on_partitions_assigned(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
        self.0.store(true, Ordering::Release);
    }
}

/// A consumer of the group with a listener flagging changes.
fn member(broker: &Broker, strategy: Strategy) -> (Consumer, Arc<AtomicBool>) {
    let mut consumer = broker.consumer(strategy.config()).expect("consumer");
    let changed = Arc::new(AtomicBool::new(false));
    consumer.set_rebalance_listener(Flag(Arc::clone(&changed)));
    (consumer, changed)
}

/// Polls until `stop`, publishing each new (generation, assignment) in `slot`.
fn poll_loop(
    consumer: &mut Consumer,
    changed: &AtomicBool,
    slot: usize,
    board: &Board,
    stop: &AtomicBool,
) {
    let mut last: Option<(i32, Vec<TopicPartition>)> = None;
    while !stop.load(Ordering::Acquire) {
        let records = consumer.poll(Duration::from_millis(100)).expect("poll");
        let now = Instant::now();
        std::hint::black_box(&records);
        let meta = consumer.group_metadata().expect("group");
        let flagged = changed.swap(false, Ordering::AcqRel);
        if !flagged && last.as_ref().is_some_and(|(g, _)| *g == meta.generation) {
            continue;
        }
        let assignment = consumer.assignment();
        if last
            .as_ref()
            .is_some_and(|(g, a)| *g == meta.generation && *a == assignment)
        {
            continue;
        }
        last = Some((meta.generation, assignment.clone()));
        board.publish(
            slot,
            Some(Published {
                member_id: meta.member_id,
                generation: meta.generation,
                assignment,
                since: now,
            }),
        );
    }
}

/// The generation and every member's target, once the group has `members` members.
fn group_targets(broker: &Broker, members: usize) -> (i32, HashMap<String, Vec<TopicPartition>>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let d = broker.describe_group(GROUP).expect("describe");
        if d.members.len() == members {
            let targets = d
                .members
                .into_iter()
                .map(|m| (m.member_id, m.assignment))
                .collect();
            return (d.generation, targets);
        }
        assert!(Instant::now() < deadline, "group never reached {members}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A group of 7 members consuming a topic a producer appends to, and the 8th's round trip.
struct RebalanceRig {
    broker: Broker,
    strategy: Strategy,
    board: Arc<Board>,
    stop: Arc<AtomicBool>,
    wakeups: Vec<WakeupHandle>,
    threads: Vec<thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl RebalanceRig {
    fn new(strategy: Strategy, offsets: Durability) -> RebalanceRig {
        let (dir, broker) = open_broker(offsets);
        broker.create_topic(TOPIC, PARTITIONS).expect("topic");
        let board = Arc::new(Board {
            slots: Mutex::new(vec![None; STEADY + 1]),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let setup = Instant::now();
        let mut threads = Vec::new();
        {
            let (broker, stop) = (broker.clone(), Arc::clone(&stop));
            threads.push(thread::spawn(move || {
                let partitions: Vec<_> = (0..PARTITIONS)
                    .map(|p| broker.partition(TOPIC, p).expect("partition"))
                    .collect();
                let value = bytes::Bytes::from(vec![b'v'; VALUE_LEN]);
                let mut next = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    let batch: Vec<Record> = (0..PER_TICK)
                        .map(|_| Record::from_value(value.clone()))
                        .collect();
                    for p in &partitions {
                        p.log().expect("log").append(&batch).expect("append");
                    }
                    next += Duration::from_millis(1);
                    let now = Instant::now();
                    if next > now {
                        thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            }));
        }
        let mut wakeups = Vec::new();
        for slot in 0..STEADY {
            let (mut consumer, changed) = member(&broker, strategy);
            wakeups.push(consumer.wakeup_handle());
            consumer.subscribe(&[TOPIC]).expect("subscribe");
            let (board, stop) = (Arc::clone(&board), Arc::clone(&stop));
            threads.push(thread::spawn(move || {
                poll_loop(&mut consumer, &changed, slot, &board, &stop);
            }));
        }
        let (generation, targets) = group_targets(&broker, STEADY);
        board.wait_for(0..STEADY, generation, &targets, setup);
        RebalanceRig {
            broker,
            strategy,
            board,
            stop,
            wakeups,
            threads,
            _dir: dir,
        }
    }

    /// The 8th joins; returns the time from its `subscribe` until all 8 polled with their new
    /// assignment. Then it leaves and the 7 settle (untimed).
    fn join_8th(&self) -> Duration {
        let (mut consumer, changed) = member(&self.broker, self.strategy);
        let wakeup = consumer.wakeup_handle();
        let stop = Arc::new(AtomicBool::new(false));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (t0_tx, t0_rx) = mpsc::channel::<Instant>();
        let (board, thread_stop) = (Arc::clone(&self.board), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            go_rx.recv().unwrap();
            let t0 = Instant::now();
            consumer.subscribe(&[TOPIC]).expect("subscribe");
            t0_tx.send(t0).unwrap();
            poll_loop(&mut consumer, &changed, STEADY, &board, &thread_stop);
            board.publish(STEADY, None);
            let left = Instant::now();
            consumer.close().expect("close");
            left
        });
        go_tx.send(()).unwrap();
        let t0 = t0_rx.recv().unwrap();
        let (generation, targets) = group_targets(&self.broker, STEADY + 1);
        let done = self.board.wait_for(0..STEADY + 1, generation, &targets, t0);

        stop.store(true, Ordering::Release);
        wakeup.wakeup();
        let left = handle.join().unwrap();
        let (generation, targets) = group_targets(&self.broker, STEADY);
        self.board.wait_for(0..STEADY, generation, &targets, left);
        done - t0
    }
}

impl Drop for RebalanceRig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for w in &self.wakeups {
            w.wakeup();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn rebalance(c: &mut Criterion) {
    let mut group = c.benchmark_group("rebalance_join_8th");
    group.sample_size(20);
    for (strategy, name) in [
        (Strategy::Range, "range"),
        (Strategy::CooperativeSticky, "cooperative_sticky"),
    ] {
        for (offsets, durability) in [
            (Durability::Always, "offsets_always"),
            (Durability::None, "offsets_none"),
        ] {
            let rig = RebalanceRig::new(strategy, offsets);
            group.bench_function(BenchmarkId::new(name, durability), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| rig.join_8th()).sum());
            });
        }
    }
    group.finish();
}

// ------------------------------------------------------------------------------ consumption

const READ_TOPIC: &str = "read";
const READ_PARTITIONS: u32 = 8;
const READ_RECORDS: u64 = 250_000;
const READERS: usize = 4;
const MAX_POLL_RECORDS: usize = 5_000;

/// `READERS` threads read the whole topic, as members of `group` or (with `None`) assigned
/// their share; returns the time from the first subscribe/assign to the last record.
fn read_all(broker: &Broker, ends: &[u64], group: Option<&str>) -> Duration {
    let next: Arc<Vec<AtomicU64>> = Arc::new(ends.iter().map(|_| AtomicU64::new(0)).collect());
    let left = Arc::new(AtomicUsize::new(ends.len()));
    let done = Arc::new(AtomicBool::new(false));
    let end = Arc::new(Mutex::new(None::<Instant>));
    let barrier = Arc::new(Barrier::new(READERS));
    let mut consumers = Vec::new();
    for _ in 0..READERS {
        let mut config = ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(MAX_POLL_RECORDS);
        if let Some(g) = group {
            config = config.group_id(g);
        }
        consumers.push(broker.consumer(config).expect("consumer"));
    }
    let wakeups: Arc<Vec<WakeupHandle>> =
        Arc::new(consumers.iter().map(Consumer::wakeup_handle).collect());
    let subscribe = group.is_some();
    let handles: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(i, mut consumer)| {
            let (next, left, done, end, barrier, wakeups) = (
                Arc::clone(&next),
                Arc::clone(&left),
                Arc::clone(&done),
                Arc::clone(&end),
                Arc::clone(&barrier),
                Arc::clone(&wakeups),
            );
            let ends = ends.to_vec();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                if subscribe {
                    consumer.subscribe(&[READ_TOPIC]).expect("subscribe");
                } else {
                    let share: Vec<_> = (0..READ_PARTITIONS)
                        .filter(|p| *p as usize % READERS == i)
                        .map(|p| TopicPartition::new(READ_TOPIC, p))
                        .collect();
                    consumer.assign(&share).expect("assign");
                }
                let mut high = vec![0u64; ends.len()];
                while !done.load(Ordering::Acquire) {
                    let records = consumer.poll(Duration::from_millis(100)).expect("poll");
                    for r in &records {
                        let p = r.partition as usize;
                        high[p] = high[p].max(r.offset + 1);
                    }
                    std::hint::black_box(&records);
                    for (p, h) in high.iter_mut().enumerate() {
                        if *h == 0 {
                            continue;
                        }
                        let prev = next[p].fetch_max(*h, Ordering::AcqRel);
                        if prev < ends[p]
                            && *h >= ends[p]
                            && left.fetch_sub(1, Ordering::AcqRel) == 1
                        {
                            *end.lock().unwrap() = Some(Instant::now());
                            done.store(true, Ordering::Release);
                            for w in wakeups.iter() {
                                w.wakeup();
                            }
                        }
                        *h = 0;
                    }
                }
                start
            })
        })
        .collect();
    let start = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .min()
        .unwrap();
    let end = end.lock().unwrap().expect("every record read");
    end - start
}

fn group_consume(c: &mut Criterion) {
    let (_dir, broker) = open_broker(Durability::Always);
    broker
        .create_topic(READ_TOPIC, READ_PARTITIONS)
        .expect("topic");
    let batch: Vec<Record> = (0..1000)
        .map(|_| Record::from_value(vec![b'v'; VALUE_LEN]))
        .collect();
    let mut ends = Vec::new();
    for p in 0..READ_PARTITIONS {
        let partition = broker.partition(READ_TOPIC, p).expect("partition");
        let log = partition.log().expect("log");
        for _ in 0..READ_RECORDS / 1000 {
            log.append(&batch).expect("append");
        }
        ends.push(log.log_end_offset());
        // Written back now, not while the samples run.
        log.flush().expect("flush");
    }
    let mut group = c.benchmark_group("group_consume");
    group.sample_size(10);
    group.throughput(Throughput::Elements(
        READ_RECORDS * u64::from(READ_PARTITIONS),
    ));
    let mut seq = 0u64;
    group.bench_function(
        BenchmarkId::new("group_of_4", format!("max_poll_records_{MAX_POLL_RECORDS}")),
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        seq += 1;
                        read_all(&broker, &ends, Some(&format!("read-{seq}")))
                    })
                    .sum()
            });
        },
    );
    group.bench_function(
        BenchmarkId::new(
            "assigned_4_no_group",
            format!("max_poll_records_{MAX_POLL_RECORDS}"),
        ),
        |b| b.iter_custom(|iters| (0..iters).map(|_| read_all(&broker, &ends, None)).sum()),
    );
    group.finish();
}

criterion_group!(benches, commits, rebalance, group_consume);
criterion_main!(benches);
