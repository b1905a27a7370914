//! Offset lookup: random `read(offset, 1)` (one batch) on a multi-segment log, and
//! `offset_for_timestamp` with random timestamps. Throughput is lookups/s.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::{Durability, LogConfig, PartitionLog, Record};

/// Lookups per criterion iteration.
const LOOKUPS: usize = 1_000;
const BASE_TS: i64 = 1_700_000_000_000;

/// xorshift64*: deterministic random numbers without a dependency.
fn random_values(n: usize, below: u64, mut seed: u64) -> Vec<u64> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // 1M records of 100 bytes in batches of 10 (~130 MB), in segments of 8 MiB (~16 segments).
    let config = LogConfig::default()
        .segment_bytes(8 << 20)
        .durability(Durability::None);
    let log = PartitionLog::open(dir.path(), config).expect("open");
    let mut next = 0i64;
    for _ in 0..100_000 {
        let batch: Vec<Record> = (0..10)
            .map(|_| {
                next += 1;
                Record::new(format!("k{next:07}"), vec![b'v'; 100]).with_timestamp(BASE_TS + next)
            })
            .collect();
        log.append(&batch).expect("append");
    }
    let end = log.log_end_offset();
    let segments = log.segment_count();

    let mut group = c.benchmark_group("lookup");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(LOOKUPS as u64));

    let offsets = random_values(LOOKUPS, end, 0x9E37_79B9_7F4A_7C15);
    group.bench_function(
        BenchmarkId::new("read_one_batch", format!("{segments}_segments")),
        |b| {
            b.iter(|| {
                for &offset in &offsets {
                    let data = log.read(offset, 1).expect("read");
                    debug_assert!(!data.is_empty());
                    std::hint::black_box(data);
                }
            });
        },
    );

    let timestamps = random_values(LOOKUPS, end, 0xD1B5_4A32_D192_ED03);
    group.bench_function(
        BenchmarkId::new("offset_for_timestamp", format!("{segments}_segments")),
        |b| {
            b.iter(|| {
                for &t in &timestamps {
                    let found = log
                        .offset_for_timestamp(BASE_TS + 1 + t as i64)
                        .expect("lookup");
                    debug_assert_eq!(found, Some(t));
                    std::hint::black_box(found);
                }
            });
        },
    );
    group.finish();
    log.simulate_crash();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
