//! One consumer reading a full topic (records/s): 1 million 100-byte values in one partition,
//! appended in batches of 100 with durability `None`, read from the page cache by
//! `Consumer::poll` from the first offset to the last (every batch CRC-checked, every record
//! decoded into a `ConsumerRecord` whose key and value share the fetch buffer).
//!
//! Goal (issue 4): at least 10 million records/s.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, Durability, LogConfig, OffsetReset, Record,
};

const RECORDS: u64 = 1_000_000;
const BATCH: usize = 100;
const VALUE_LEN: usize = 100;

/// Reads from the beginning to the end; returns how many records came.
fn consume_all(consumer: &mut Consumer) -> u64 {
    consumer.seek_to_beginning(&[]).expect("seek");
    let mut count = 0u64;
    while count < RECORDS {
        let records = consumer.poll(Duration::from_secs(1)).expect("poll");
        assert!(!records.is_empty(), "stalled at {count}");
        count += records.len() as u64;
        std::hint::black_box(&records);
    }
    count
}

fn consume(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        BrokerConfig::default().topic_defaults(LogConfig::default().durability(Durability::None));
    let broker = Broker::open_with(dir.path(), config).expect("open");
    broker.create_topic("bench", 1).expect("topic");
    let partition = broker.partition("bench", 0).expect("partition");
    let log = partition.log().expect("log");
    // Stamped now: older timestamps would let the 7-day retention delete the records mid-bench.
    let batch: Vec<Record> = (0..BATCH)
        .map(|_| Record::from_value(vec![b'v'; VALUE_LEN]))
        .collect();
    for _ in 0..RECORDS / BATCH as u64 {
        log.append(&batch).expect("append");
    }

    let mut group = c.benchmark_group("consume_full_topic");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDS));
    for max_poll_records in [500usize, 5_000] {
        let config = ConsumerConfig::default()
            .auto_offset_reset(OffsetReset::Earliest)
            .max_poll_records(max_poll_records);
        let mut consumer = broker.consumer(config).expect("consumer");
        consumer.subscribe(&["bench"]).expect("subscribe");
        assert_eq!(consume_all(&mut consumer), RECORDS);
        group.bench_function(
            BenchmarkId::new(
                format!("value_{VALUE_LEN}B"),
                format!("max_poll_records_{max_poll_records}"),
            ),
            |b| b.iter(|| consume_all(&mut consumer)),
        );
    }
    group.finish();
}

criterion_group!(benches, consume);
criterion_main!(benches);
