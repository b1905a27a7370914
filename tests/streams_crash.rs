//! A stateful Streams application killed with `SIGKILL` again and again comes out right under
//! at-least-once: a child process runs a word count (repartition topic, count store with a
//! changelog and snapshots) over a fixed input and is killed at random moments; each new child
//! restores the store and goes on from the committed offsets. At the end, one more run catches
//! up, and every word's count is at least its true count (nothing acknowledged is lost) and at
//! most a bounded amount above it: only records processed after the last commit before a kill
//! can count twice, and each stream thread commits after every poll of at most
//! `MAX_POLL_RECORDS` records.
//!
//! The children are this test binary run again with `--exact child_wordcount` and
//! `TIDELOG_CRASH_DIR` set; without that variable the child test does nothing.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{child_dir, spawn_child, Rng};
use tidelog::{
    Broker, BrokerConfig, Consumed, Durability, Grouped, LogConfig, LongCodec, Materialized,
    Produced, Producer, ProducerRecord, Streams, StreamsBuilder, StreamsConfig, StringCodec,
};

const LINES: usize = 4_000;
const MAX_POLL_RECORDS: usize = 50;
const MAX_WORDS_PER_LINE: i64 = 5;
const ROUNDS: usize = 6;
const GIVE_UP: Duration = Duration::from_secs(20);

fn broker(dir: &std::path::Path) -> Broker {
    Broker::open_with(
        dir,
        BrokerConfig::default()
            .maintenance_interval(Duration::from_millis(10))
            .topic_defaults(LogConfig::default().durability(Durability::None)),
    )
    .unwrap()
}

fn app(broker: &Broker) -> Streams {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringCodec, StringCodec),
        )
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    let config = StreamsConfig::new("crash-wc")
        .commit_interval(Duration::from_millis(1))
        .max_poll_records(MAX_POLL_RECORDS);
    Streams::new(broker, builder.build().unwrap(), config).unwrap()
}

fn line(i: usize) -> String {
    let words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"];
    (0..=(i % MAX_WORDS_PER_LINE as usize))
        .map(|j| words[(i * 5 + j * 3) % words.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn truth() -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for i in 0..LINES {
        for w in line(i).split_whitespace() {
            *counts.entry(w.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// The child: runs the application until killed.
#[test]
fn child_wordcount() {
    let Some(dir) = child_dir() else { return };
    let broker = broker(&dir);
    let streams = app(&broker);
    streams.start().unwrap();
    println!("started");
    loop {
        std::thread::sleep(Duration::from_millis(5));
        if let Some(e) = streams.error() {
            panic!("the application failed: {e}");
        }
    }
}

#[test]
fn killed_wordcount_counts_at_least_once_with_bounded_repeats() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = broker(dir.path());
        broker.create_topic("lines", 2).unwrap();
        broker.create_topic("counts-out", 2).unwrap();
        let producer = Producer::with_defaults(&broker).unwrap();
        for i in 0..LINES {
            producer
                .send_async(ProducerRecord::new("lines", line(i)).key(format!("l{i}")))
                .unwrap();
        }
        producer.flush().unwrap();
    }
    let mut rng = Rng::new(7);
    let mut kills = 0;
    for _ in 0..ROUNDS {
        let mut child = spawn_child("child_wordcount", dir.path(), rng.next_u64());
        let started = child.wait_for(GIVE_UP, |l| l.contains("started"));
        child.assert_running();
        assert!(started, "child never started");
        std::thread::sleep(Duration::from_millis(rng.range(20, 300)));
        child.assert_running();
        child.kill();
        kills += 1;
    }

    // Catch up in this process and compare.
    let broker = broker(dir.path());
    let streams = app(&broker);
    streams.start().unwrap();
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let lag = broker.group_lag("crash-wc").unwrap_or_default();
        let caught_up = lag.len() == 4
            && lag.iter().all(|p| p.lag == Some(0))
            && streams.local_tasks().len() == 4;
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not catch up: {lag:?} {:?}",
            streams.error()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let counts: BTreeMap<String, i64> = streams
        .store::<String, i64>("counts")
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    streams.close().unwrap();
    let truth = truth();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>()
    );
    let mut over = 0;
    for (word, &n) in &truth {
        assert!(
            counts[word] >= n,
            "`{word}` lost counts: {} < {n}",
            counts[word]
        );
        over += counts[word] - n;
    }
    // Per kill: a poll's lines repeated (each up to 5 words) plus a poll's words repeated, per
    // stream thread's tasks.
    let bound = kills * (MAX_POLL_RECORDS as i64 * MAX_WORDS_PER_LINE + MAX_POLL_RECORDS as i64);
    assert!(
        over <= bound,
        "{over} repeated counts after {kills} kills (bound {bound})"
    );
    eprintln!("{kills} kills, {over} counts repeated (bound {bound})");
}
