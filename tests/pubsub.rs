//! Producers and consumers together: several producer threads and several independent
//! subscribers on one topic (every record to each subscriber exactly once, in order per
//! partition), and a restart in the middle of the stream.

use std::collections::HashMap;
use std::time::Duration;

use tidelog::{
    Broker, ConsumerConfig, Durability, LogConfig, OffsetReset, ProducerConfig, ProducerRecord,
};

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 2_000;
const CONSUMERS: usize = 3;

/// Reads until `total` records arrived; returns, per partition, the (producer, sequence) pairs in
/// the order they were received, and checks offsets increase by partition.
fn consume(broker: &Broker, topic: &str, total: u64) -> HashMap<u32, Vec<(u64, u64)>> {
    let mut consumer = broker
        .consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    let mut count = 0;
    while count < total {
        let records = consumer.poll(Duration::from_secs(10)).unwrap();
        assert!(
            !records.is_empty(),
            "stalled after {count} of {total} records"
        );
        for r in &records {
            if let Some(prev) = last_offset.insert(r.partition, r.offset) {
                assert!(
                    r.offset > prev,
                    "offsets go forward in partition {}",
                    r.partition
                );
            }
            let text = std::str::from_utf8(r.value.as_deref().unwrap()).unwrap();
            let (p, n) = text.split_once(':').unwrap();
            seen.entry(r.partition)
                .or_default()
                .push((p.parse().unwrap(), n.parse().unwrap()));
            count += 1;
        }
    }
    assert!(
        consumer.poll(Duration::from_millis(50)).unwrap().is_empty(),
        "nothing beyond what was produced"
    );
    seen
}

fn check(seen: &HashMap<u32, Vec<(u64, u64)>>, per_producer: u64) {
    let mut all: Vec<(u64, u64)> = seen.values().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..PRODUCERS)
        .flat_map(|p| (0..per_producer).map(move |n| (p, n)))
        .collect();
    assert_eq!(all, expected, "every record exactly once");
    for records in seen.values() {
        for p in 0..PRODUCERS {
            let order: Vec<u64> = records
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|&(_, n)| n)
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "producer {p}'s records in order within a partition"
            );
        }
    }
}

fn produce(broker: &Broker, topic: &str, from: u64, to: u64) {
    let producer = broker.producer().unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let producer = producer.clone();
            let topic = topic.to_string();
            std::thread::spawn(move || {
                let futures: Vec<_> = (from..to)
                    .map(|n| {
                        // Keyed by producer: each producer's records share a partition, so order holds.
                        let record = ProducerRecord::new(topic.clone(), format!("{p}:{n}"))
                            .key(format!("producer-{p}"));
                        producer.send_async(record).unwrap()
                    })
                    .collect();
                for f in futures {
                    f.wait().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    producer.flush().unwrap();
}

#[test]
fn every_subscriber_gets_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker
        .create_topic_with(
            "events",
            4,
            LogConfig::default().durability(Durability::None),
        )
        .unwrap();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let broker = broker.clone();
            std::thread::spawn(move || consume(&broker, "events", PRODUCERS * PER_PRODUCER))
        })
        .collect();
    produce(&broker, "events", 0, PER_PRODUCER);
    for c in consumers {
        check(&c.join().unwrap(), PER_PRODUCER);
    }
}

#[test]
fn a_restart_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic("events", 3).unwrap(); // Durability::Always: acknowledged means on disk
        produce(&broker, "events", 0, PER_PRODUCER / 2);
    }
    let broker = Broker::open(dir.path()).unwrap();
    produce(&broker, "events", PER_PRODUCER / 2, PER_PRODUCER);
    drop(broker);
    let broker = Broker::open(dir.path()).unwrap();
    check(
        &consume(&broker, "events", PRODUCERS * PER_PRODUCER),
        PER_PRODUCER,
    );
}

#[test]
fn a_lingering_producer_batches_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker
        .create_topic_with("t", 1, LogConfig::default().durability(Durability::None))
        .unwrap();
    let producer = tidelog::Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(20)),
    )
    .unwrap();
    let futures: Vec<_> = (0..500)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("{i}")))
                .unwrap()
        })
        .collect();
    for f in futures {
        f.wait().unwrap();
    }
    let log = broker.partition("t", 0).unwrap();
    let batches = log
        .log()
        .unwrap()
        .read(0, 1 << 20)
        .unwrap()
        .batches()
        .count();
    assert!(batches <= 10, "500 lingering sends made {batches} batches");
}
