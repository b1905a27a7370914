//! Producer throughput (records/s) with 100-byte values.
//!
//! * `send_async/shared_value`: one thread, `send_async` in a loop then one `flush`, topic
//!   durability `None`; the value is a shared `Bytes` (a reference count per record).
//! * `send_async/shared_value/append_in_background`: the same, with full batches appended by
//!   the producer's thread (Kafka's sender) instead of the sending thread.
//! * `send_async/owned_value`: the same, copying the value into a fresh `Bytes` per record, as
//!   an application building each record would.
//! * `baseline/write_all_16k`: the same number of value bytes written with `File::write_all` in
//!   16 KiB chunks (no records, no offsets): the ceiling the producer is compared with.
//! * `always_4_threads`: four threads, each keeping up to 10,000 `send_async` in flight, topic
//!   durability `Always` (acknowledged after fsync).
//!
//! One criterion iteration is 100,000 records. Each sample uses a fresh directory, removed afterwards, so disk use stays bounded.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::{Broker, Durability, LogConfig, Producer, ProducerConfig, ProducerRecord};

const VALUE_LEN: usize = 100;
/// Records per criterion iteration: large, so that the fixed cost of a sample (opening the
/// directory, the first segment, the final flush) does not count.
const PER_ITER: u64 = 100_000;

fn fresh(durability: Durability, root: &std::path::Path) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir_in(root).expect("temp dir");
    let broker = Broker::open(dir.path()).expect("open");
    broker
        .create_topic_with("bench", 1, LogConfig::default().durability(durability))
        .expect("create topic");
    (dir, broker)
}

fn single_thread(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    let mut group = c.benchmark_group("produce");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(PER_ITER));

    group.bench_function("send_async/shared_value", |b| {
        b.iter_custom(|iters| {
            let (_dir, broker) = fresh(Durability::None, root.path());
            let producer = Producer::with_defaults(&broker).expect("producer");
            let t = Instant::now();
            for _ in 0..iters * PER_ITER {
                std::hint::black_box(
                    producer
                        .send_async(ProducerRecord::new("bench", value.clone()))
                        .expect("send"),
                );
            }
            producer.flush().expect("flush");
            t.elapsed()
        });
    });

    group.bench_function("send_async/shared_value/append_in_background", |b| {
        b.iter_custom(|iters| {
            let (_dir, broker) = fresh(Durability::None, root.path());
            let config = ProducerConfig::default().append_in_background(true);
            let producer = Producer::new(&broker, config).expect("producer");
            let t = Instant::now();
            for _ in 0..iters * PER_ITER {
                std::hint::black_box(
                    producer
                        .send_async(ProducerRecord::new("bench", value.clone()))
                        .expect("send"),
                );
            }
            producer.flush().expect("flush");
            t.elapsed()
        });
    });

    group.bench_function("send_async/owned_value", |b| {
        b.iter_custom(|iters| {
            let (_dir, broker) = fresh(Durability::None, root.path());
            let producer = Producer::with_defaults(&broker).expect("producer");
            let t = Instant::now();
            for _ in 0..iters * PER_ITER {
                let record = ProducerRecord::new("bench", Bytes::copy_from_slice(&value));
                std::hint::black_box(producer.send_async(record).expect("send"));
            }
            producer.flush().expect("flush");
            t.elapsed()
        });
    });

    group.bench_function("baseline/write_all_16k", |b| {
        let chunk = vec![b'v'; 16 * 1024];
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir_in(root.path()).expect("temp dir");
            let mut file = std::fs::File::create(dir.path().join("baseline")).expect("create");
            let mut left = (iters * PER_ITER) as usize * VALUE_LEN;
            let t = Instant::now();
            while left > 0 {
                let n = left.min(chunk.len());
                file.write_all(&chunk[..n]).expect("write");
                left -= n;
            }
            t.elapsed()
        });
    });
    group.finish();
}

fn always_four_threads(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    let value = Bytes::from(vec![b'v'; VALUE_LEN]);
    let mut group = c.benchmark_group("produce");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(PER_ITER));
    group.bench_function("always_4_threads", |b| {
        b.iter_custom(|iters| {
            let (_dir, broker) = fresh(Durability::Always, root.path());
            let producer = Producer::with_defaults(&broker).expect("producer");
            let per_thread = (iters * PER_ITER).div_ceil(4);
            let t = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    let producer = producer.clone();
                    let value = value.clone();
                    s.spawn(move || {
                        let mut in_flight = VecDeque::new();
                        for _ in 0..per_thread {
                            if in_flight.len() >= 10_000 {
                                let f: tidelog::SendFuture =
                                    in_flight.pop_front().expect("non-empty");
                                f.wait().expect("acknowledged");
                            }
                            in_flight.push_back(
                                producer
                                    .send_async(ProducerRecord::new("bench", value.clone()))
                                    .expect("send"),
                            );
                        }
                        producer.flush().expect("flush");
                        for f in in_flight {
                            f.wait().expect("acknowledged");
                        }
                    });
                }
            });
            t.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, single_thread, always_four_threads);
criterion_main!(benches);
