//! Append throughput (records/s): 100-byte and 1 KiB values, batches of 1 and 100,
//! `Durability::None`.
//!
//! Each sample appends to a fresh log in a temporary folder, which is then dropped without its
//! close-time fsync and deleted, so the disk use stays bounded and writeback of earlier samples
//! does not slow later ones down.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::{Durability, LogConfig, PartitionLog, Record, RecordBatch};

fn records(n: usize, value_len: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::new(format!("k{i:07}"), vec![b'v'; value_len])
                .with_timestamp(1_700_000_000_000 + i as i64)
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for value_len in [100usize, 1024] {
        for batch_len in [1usize, 100] {
            let batch = records(batch_len, value_len);
            group.throughput(Throughput::Elements(batch_len as u64));
            let id = BenchmarkId::new(format!("value_{value_len}B"), format!("batch_{batch_len}"));
            group.bench_with_input(id, &batch, |b, batch| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir_in(root.path()).expect("temp dir");
                    let log = PartitionLog::open(
                        dir.path(),
                        LogConfig::default().durability(Durability::None),
                    )
                    .expect("open");
                    let t = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(log.append(batch).expect("append"));
                    }
                    let elapsed = t.elapsed();
                    log.simulate_crash();
                    drop(dir);
                    elapsed
                });
            });
        }
    }
    group.finish();
}

/// Encoding alone (no file): the user-space part of an append of 100 records of 100 bytes.
fn encode(c: &mut Criterion) {
    let batch = records(100, 100);
    let mut group = c.benchmark_group("encode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("value_100B/batch_100", |b| {
        b.iter(|| RecordBatch::encode(0, std::hint::black_box(&batch)).expect("encode"))
    });
    group.finish();
}

criterion_group!(benches, append, encode);
criterion_main!(benches);
