//! Streams API throughput (issue 6), end to end through a running `Streams` application, with
//! every topic (input, output, internal, `__consumer_offsets`) at durability `None`. Input is
//! appended before each iteration and not timed; an iteration runs from `Streams::start` until
//! the output is complete (or, for the restore, until the restarted store answers for every
//! key). Smaller sizes than `examples/streams_perf.rs`, which has the goals, the baselines and
//! the full sizes:
//!
//! * `stateless_pipeline`: 200,000 records (8-byte keys, 100-byte values), `filter` +
//!   `map_values`, topic to topic, 2 partitions, 2 stream threads (goal: 2 M records/s).
//! * `wordcount`: 200,000 words in lines of 10, `flat_map_values` → `group_by` → `count` →
//!   output topic, 2 partitions, 2 stream threads (goal: 1 M words/s).
//! * `restore`: a store of 100,000 keys restored from its snapshot after a restart, 1 stream
//!   thread (goal: 1 M keys in under 1 s).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::{
    Broker, BrokerConfig, BytesCodec, Consumed, Durability, Grouped, LogConfig, LongCodec,
    Materialized, Produced, Record, Streams, StreamsBuilder, StreamsConfig, StringCodec, Topology,
};

const RECORDS: u64 = 200_000;
const WORDS: u64 = 200_000;
const KEYS: u64 = 100_000;
const VALUE_LEN: usize = 100;
const PARTITIONS: u32 = 2;

fn open() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BrokerConfig::default()
        .topic_defaults(LogConfig::default().durability(Durability::None))
        .offsets_topic_config(LogConfig::default().durability(Durability::None));
    let broker = Broker::open_with(dir.path(), config).expect("open");
    (dir, broker)
}

/// Streams creates its internal topics with the default durability; turn their fsync off.
fn relax_internal_topics(broker: &Broker, app: &str) {
    for name in broker.topics() {
        if name.starts_with(&format!("{app}-")) {
            let config = broker.topic(&name).expect("topic").config();
            broker
                .set_topic_config(&name, config.durability(Durability::None))
                .expect("config");
        }
    }
}

fn fill(broker: &Broker, topic: &str, count: u64, record: impl Fn(u64) -> Record) {
    let partitions = broker
        .topic(topic)
        .expect("topic")
        .partitions()
        .expect("partitions");
    let n = partitions.len() as u64;
    for (p, partition) in partitions.iter().enumerate() {
        let log = partition.log().expect("log");
        let mut batch = Vec::with_capacity(1000);
        let mut i = p as u64;
        while i < count {
            batch.push(record(i));
            if batch.len() == 1000 {
                log.append(&batch).expect("append");
                batch.clear();
            }
            i += n;
        }
        if !batch.is_empty() {
            log.append(&batch).expect("append");
        }
    }
}

fn end_offsets(broker: &Broker, topic: &str) -> u64 {
    broker
        .topic(topic)
        .expect("topic")
        .partitions()
        .expect("partitions")
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum()
}

/// Starts `topology` over `broker` and times it until `done`.
fn run(
    broker: &Broker,
    topology: Topology,
    app: &str,
    done: impl Fn(&Streams) -> bool,
) -> Duration {
    let streams = Streams::new(
        broker,
        topology,
        StreamsConfig::new(app).num_stream_threads(2),
    )
    .expect("streams");
    relax_internal_topics(broker, app);
    let started = Instant::now();
    streams.start().expect("start");
    let deadline = started + Duration::from_secs(120);
    while !done(&streams) {
        assert!(streams.error().is_none(), "{:?}", streams.error());
        assert!(Instant::now() < deadline, "not done in time");
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    streams.close().expect("close");
    elapsed
}

fn value(i: u64) -> Bytes {
    let mut v = format!("record {i:012} ").into_bytes();
    v.resize(VALUE_LEN, b'.');
    Bytes::from(v)
}

fn pipeline() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(BytesCodec, BytesCodec))
        .filter(|_: &Bytes, v: &Bytes| v.first() != Some(&b'#'))
        .map_values(|v: Bytes| {
            let mut out = v.to_vec();
            out[0] = out[0].to_ascii_uppercase();
            Bytes::from(out)
        })
        .to("out", Produced::with(BytesCodec, BytesCodec));
    builder.build().expect("topology")
}

fn wordcount() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("text", Consumed::with(StringCodec, StringCodec))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(|_, w| w.clone(), Grouped::with(StringCodec, StringCodec))
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "word-counts",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    builder.build().expect("topology")
}

fn table() -> Topology {
    let builder = StreamsBuilder::new();
    let _ = builder.table::<String, Bytes>(
        "kv",
        Consumed::with(StringCodec, BytesCodec),
        Materialized::named("kv-store"),
    );
    builder.build().expect("topology")
}

/// Word `i` of the text: one of 10,000, skewed towards the first.
fn word(i: u64) -> String {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let u = h as f64 / (1u64 << 24) as f64;
    format!("w{}", (u * u * 10_000.0) as u64)
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("streams");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("stateless_pipeline", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, broker) = open();
                broker.create_topic("in", PARTITIONS).expect("topic");
                broker.create_topic("out", PARTITIONS).expect("topic");
                fill(&broker, "in", RECORDS, |i| {
                    Record::new(format!("k{:07}", i % 10_000_000), value(i))
                });
                total += run(&broker, pipeline(), "pipeline", |_| {
                    end_offsets(&broker, "out") >= RECORDS
                });
            }
            total
        });
    });

    group.throughput(Throughput::Elements(WORDS));
    group.bench_function("wordcount", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_dir, broker) = open();
                broker.create_topic("text", PARTITIONS).expect("topic");
                broker
                    .create_topic("word-counts", PARTITIONS)
                    .expect("topic");
                fill(&broker, "text", WORDS / 10, |l| {
                    Record::from_value(
                        (l * 10..l * 10 + 10)
                            .map(word)
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                });
                total += run(&broker, wordcount(), "wordcount", |_| {
                    end_offsets(&broker, "word-counts") >= WORDS
                });
            }
            total
        });
    });

    // One loaded store, restarted every iteration (each close writes a fresh snapshot).
    let (_dir, broker) = open();
    broker.create_topic("kv", 1).expect("topic");
    fill(&broker, "kv", KEYS, |i| {
        Record::new(format!("key-{i:09}"), value(i))
    });
    let loaded = |s: &Streams| {
        !s.local_tasks().is_empty()
            && s.store::<String, Bytes>("kv-store")
                .and_then(|store| store.approximate_num_entries())
                .is_ok_and(|n| n >= KEYS)
    };
    run(&broker, table(), "restore", loaded);
    group.throughput(Throughput::Elements(KEYS));
    group.bench_function("restore_from_snapshot", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run(&broker, table(), "restore", loaded))
                .sum()
        });
    });
    group.finish();
}

criterion_group!(benches, streams);
criterion_main!(benches);
