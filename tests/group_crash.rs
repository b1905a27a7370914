//! Committed offsets survive a real process kill: a child process consumes a topic in group `g`
//! and commits after every poll, printing each acknowledged commit; the parent kills it with
//! `SIGKILL` after a random number of acknowledgements, reopens the folder and checks that no
//! acknowledged commit was lost, that nothing beyond the log end was committed, and that a new
//! member of the group resumes exactly at the committed offsets. Every round's child continues
//! from the commits of the previous one, so later rounds load a `__consumer_offsets` whose tail
//! may have been torn by the kill.
//!
//! The children are this test binary run again with `--exact child_*` and `TIDELOG_CRASH_DIR`
//! set; without that variable the `child_*` tests do nothing. Nothing here asserts on timing.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{child_dir, child_seed, spawn_child, Rng};
use tidelog::{
    Broker, BrokerConfig, ConsumerConfig, Durability, LogConfig, OffsetAndMetadata, OffsetReset,
    Record, TopicPartition,
};

const TOPIC: &str = "t";
const GROUP: &str = "g";
const PARTITIONS: u32 = 4;
const RECORDS: u64 = 3_000;
const ROUNDS: usize = 8;
const SYNC_CHILD: &str = "child_sync_committer";
const ASYNC_CHILD: &str = "child_async_committer";
/// How long the parent waits for a child's line before giving up (never an expectation of speed).
const GIVE_UP: Duration = Duration::from_secs(60);

/// Which commits the child makes, and how `__consumer_offsets` is configured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// `commit_sync`/`commit_sync_offsets`, offsets topic at its default `Durability::Always`.
    Sync,
    /// `commit_async`/`commit_async_offsets`, offsets topic with `Durability::None`.
    Async,
}

fn broker_config(mode: Mode) -> BrokerConfig {
    let config = BrokerConfig::default()
        .maintenance_interval(Duration::from_millis(10))
        .topic_defaults(LogConfig::default().durability(Durability::None));
    match mode {
        Mode::Sync => config,
        Mode::Async => {
            config.offsets_topic_config(LogConfig::default().durability(Durability::None))
        }
    }
}

fn member() -> ConsumerConfig {
    ConsumerConfig::default()
        .group_id(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

fn tp(partition: u32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

fn all_tps() -> Vec<TopicPartition> {
    (0..PARTITIONS).map(tp).collect()
}

fn value(partition: u32, offset: u64) -> String {
    format!("{TOPIC}-{partition}-{offset}")
}

/// `ack 0=12 1=0 2=345 3=7`: the committed offset of every partition.
fn format_ack(committed: &BTreeMap<u32, u64>) -> String {
    let mut line = String::from("ack");
    for (p, o) in committed {
        line.push_str(&format!(" {p}={o}"));
    }
    line
}

fn parse_ack(line: &str) -> Option<BTreeMap<u32, u64>> {
    let rest = line.strip_prefix("ack")?;
    Some(
        rest.split_whitespace()
            .map(|kv| {
                let (p, o) = kv.split_once('=').expect("ack entry p=o");
                (p.parse().unwrap(), o.parse().unwrap())
            })
            .collect(),
    )
}

/// The child: consumes group `g` and commits after every poll (alternating commits of every
/// position and explicit commits of a random subset with metadata), printing `ack ...` after
/// each commit returns, until it is killed.
fn run_child(mode: Mode) {
    let Some(dir) = child_dir() else { return };
    let seed = child_seed();
    let mut rng = Rng::new(seed);
    let broker = Broker::open_with(&dir, broker_config(mode)).expect("child: opening the broker");
    let max_poll = rng.range(1, 40) as usize;
    let mut consumer = broker
        .consumer(member().max_poll_records(max_poll))
        .expect("child: consumer");
    consumer.subscribe(&[TOPIC]).expect("child: subscribe");
    // What the previous rounds committed: the first record of each partition must be there.
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, c) in consumer
        .committed(&all_tps())
        .expect("child: committed")
        .into_iter()
        .enumerate()
    {
        committed.insert(p as u32, c.map_or(0, |c| c.offset));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "open {}", format_ack(&committed)).unwrap();
    out.flush().unwrap();
    // The offset the next record of each partition must have (none read yet: the committed one).
    let mut next = committed.clone();
    let mut commits = 0u64;
    let started = Instant::now();
    // Bounded, so that a child whose parent died does not run forever.
    while started.elapsed() < Duration::from_secs(30) {
        let records = consumer
            .poll(Duration::from_millis(10))
            .expect("child: poll");
        for r in records.iter() {
            let expected = next[&r.partition];
            assert_eq!(
                r.offset, expected,
                "child: partition {} resumed or continued at the wrong offset",
                r.partition
            );
            assert_eq!(
                r.value.as_deref(),
                Some(value(r.partition, r.offset).as_bytes()),
                "child: wrong record at {}-{}",
                r.partition,
                r.offset
            );
            next.insert(r.partition, r.offset + 1);
        }
        if consumer.assignment() != all_tps() {
            continue; // the group is still forming
        }
        let positions: Vec<(u32, u64)> = (0..PARTITIONS)
            .map(|p| (p, consumer.position(&tp(p)).expect("child: position")))
            .collect();
        for &(p, pos) in &positions {
            assert_eq!(pos, next[&p], "child: position of partition {p}");
        }
        let explicit = rng.below(2) == 0;
        let chosen: Vec<(u32, u64)> = if explicit {
            let mut subset: Vec<(u32, u64)> = positions
                .iter()
                .copied()
                .filter(|_| rng.below(2) == 0)
                .collect();
            if subset.is_empty() {
                subset.push(positions[rng.below(u64::from(PARTITIONS)) as usize]);
            }
            subset
        } else {
            positions.clone()
        };
        let metadata = if explicit {
            format!("seed {seed} commit {commits}")
        } else {
            String::new()
        };
        if explicit {
            let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = chosen
                .iter()
                .map(|&(p, o)| (tp(p), OffsetAndMetadata::new(o).with_metadata(&metadata)))
                .collect();
            match mode {
                Mode::Sync => consumer.commit_sync_offsets(&offsets),
                Mode::Async => consumer.commit_async_offsets(&offsets),
            }
            .expect("child: explicit commit");
        } else {
            match mode {
                Mode::Sync => consumer.commit_sync(),
                Mode::Async => consumer.commit_async(),
            }
            .expect("child: commit");
        }
        commits += 1;
        // Read-your-writes: the commit is visible at once, with its metadata.
        let seen = consumer
            .committed(&chosen.iter().map(|&(p, _)| tp(p)).collect::<Vec<_>>())
            .expect("child: committed");
        for (&(p, o), c) in chosen.iter().zip(seen) {
            assert_eq!(
                c,
                Some(OffsetAndMetadata::new(o).with_metadata(&metadata)),
                "child: the commit of partition {p} is not visible"
            );
            committed.insert(p, o);
        }
        writeln!(out, "{}", format_ack(&committed)).unwrap();
        out.flush().unwrap();
    }
    panic!("child: never killed");
}

#[test]
fn child_sync_committer() {
    run_child(Mode::Sync);
}

#[test]
fn child_async_committer() {
    run_child(Mode::Async);
}

/// Creates the topic with `RECORDS` records in each partition, then closes the folder.
fn prepare(dir: &Path, mode: Mode) {
    let broker = Broker::open_with(dir, broker_config(mode)).unwrap();
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    for p in 0..PARTITIONS {
        let partition = broker.partition(TOPIC, p).unwrap();
        let log = partition.log().unwrap();
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(100) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|&o| Record::new(format!("k{o}"), value(p, o)))
                .collect();
            log.append(&records).unwrap();
        }
        assert_eq!(log.log_end_offset(), RECORDS);
    }
}

/// Reopens the folder and checks the group's commits against the last acknowledged one and the
/// previous round's; checks that a new member resumes at them. Returns the commits.
fn verify(
    dir: &Path,
    mode: Mode,
    acked: &BTreeMap<u32, u64>,
    previous: &BTreeMap<u32, u64>,
    round: usize,
) -> BTreeMap<u32, u64> {
    let broker = Broker::open_with(dir, broker_config(mode))
        .unwrap_or_else(|e| panic!("round {round}: reopening after the kill: {e}"));
    let mut consumer = broker.consumer(member()).unwrap();
    let committed: BTreeMap<u32, u64> = consumer
        .committed(&all_tps())
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(p, c)| {
            let c = c.unwrap_or_else(|| panic!("round {round}: partition {p} has no commit"));
            (p as u32, c.offset)
        })
        .collect();
    for p in 0..PARTITIONS {
        let (c, a, prev) = (committed[&p], acked[&p], previous.get(&p).copied());
        assert!(
            c >= a,
            "round {round}: partition {p}: acknowledged commit {a} lost, committed is {c} \
             (acked {acked:?}, committed {committed:?})"
        );
        assert!(
            c <= RECORDS,
            "round {round}: partition {p}: committed {c} beyond the log end {RECORDS}"
        );
        if let Some(prev) = prev {
            assert!(
                c >= prev,
                "round {round}: partition {p}: committed went back from {prev} to {c}"
            );
        }
    }
    // The admin view agrees.
    let mut lag = broker.group_lag(GROUP).unwrap();
    lag.sort_by(|a, b| a.partition.cmp(&b.partition));
    assert_eq!(lag.len(), PARTITIONS as usize, "group_lag: {lag:?}");
    for (p, l) in lag.iter().enumerate() {
        assert_eq!(l.partition, tp(p as u32));
        assert_eq!(
            l.committed,
            Some(committed[&(p as u32)]),
            "group_lag: {l:?}"
        );
        assert_eq!(l.log_end_offset, RECORDS, "group_lag: {l:?}");
        assert_eq!(l.lag, Some(RECORDS - committed[&(p as u32)]));
    }

    // A new member of the group resumes exactly at the commits.
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut first: BTreeMap<u32, u64> = BTreeMap::new();
    let missing = |first: &BTreeMap<u32, u64>| {
        (0..PARTITIONS).any(|p| committed[&p] < RECORDS && !first.contains_key(&p))
    };
    let deadline = Instant::now() + GIVE_UP;
    while missing(&first) || consumer.assignment() != all_tps() {
        assert!(
            Instant::now() < deadline,
            "round {round}: the new member never read every partition: {first:?}, assignment {:?}",
            consumer.assignment()
        );
        for r in consumer.poll(Duration::from_millis(10)).unwrap().iter() {
            first.entry(r.partition).or_insert(r.offset);
            assert_eq!(
                r.value.as_deref(),
                Some(value(r.partition, r.offset).as_bytes())
            );
        }
    }
    for p in 0..PARTITIONS {
        if committed[&p] < RECORDS {
            assert_eq!(
                first[&p], committed[&p],
                "round {round}: partition {p}: a new member resumed away from the commit"
            );
        } else {
            assert!(!first.contains_key(&p), "round {round}: read past the end");
            assert_eq!(consumer.position(&tp(p)).unwrap(), RECORDS);
        }
    }
    consumer.close().unwrap();
    // Closing without auto-commit changes nothing.
    let after: Vec<Option<u64>> = broker
        .group_lag(GROUP)
        .unwrap()
        .into_iter()
        .map(|l| l.committed)
        .collect();
    assert_eq!(
        after,
        committed.values().map(|&c| Some(c)).collect::<Vec<_>>()
    );
    drop(broker);
    committed
}

/// Rounds of: spawn a child, let it acknowledge a random number of commits, kill it, verify.
fn kill_rounds(mode: Mode, child_name: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path(), mode);
    let mut rng = Rng::new(seed);
    let mut previous: BTreeMap<u32, u64> = BTreeMap::new();
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        let mut child = spawn_child(child_name, dir.path(), rng.next_u64());
        let target = rng.range(1, 60);
        let mut acks = 0;
        let deadline = Instant::now() + GIVE_UP;
        while acks < target {
            match child.next_line(deadline) {
                Some(line) if line.starts_with("ack") => acks += 1,
                Some(_) => {}
                None => {
                    child.assert_running();
                    panic!("round {round}: the child stopped acknowledging after {acks}");
                }
            }
        }
        // Sometimes let it go a little further, so that the kill lands inside a commit.
        if rng.below(2) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        }
        child.assert_running();
        let lines = child.kill();
        let opened = lines
            .iter()
            // libtest's `test child_... ... ` may precede it on the same line.
            .find_map(|l| l.split_once("open ").and_then(|(_, rest)| parse_ack(rest)))
            .expect("the child's open line");
        // The child starts at the commits the parent saw.
        if !previous.is_empty() {
            assert_eq!(
                opened, previous,
                "round {round}: the child loaded other commits"
            );
        }
        let acked = lines
            .iter()
            .rev()
            .find_map(|l| parse_ack(l))
            .expect("an acknowledged commit");
        total_acks += lines.iter().filter(|l| l.starts_with("ack")).count();
        previous = verify(dir.path(), mode, &acked, &previous, round);
        eprintln!(
            "{mode:?} round {round}: {acks}+ acks, last acked {acked:?}, committed {previous:?}"
        );
    }
    assert!(total_acks >= ROUNDS, "too few commits to test anything");
    assert!(
        previous.values().any(|&c| c > 0),
        "the children consumed nothing: {previous:?}"
    );
}

#[test]
fn sigkill_keeps_every_acknowledged_sync_commit() {
    kill_rounds(Mode::Sync, SYNC_CHILD, 0x6C0F_F5E7);
}

#[test]
fn sigkill_keeps_async_commits_that_reached_the_page_cache() {
    kill_rounds(Mode::Async, ASYNC_CHILD, 0xA5C_C0DE);
}
