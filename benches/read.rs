//! Sequential read throughput (records/s) from the page cache: `read(offset, 1 MiB)` from the
//! first offset to the end, every batch's CRC checked (`FetchData::batches`) and every record
//! decoded, for 100-byte and 1 KiB values in batches of 100.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::{Durability, LogConfig, PartitionLog, Record};

const FETCH_BYTES: usize = 1 << 20;

fn records(n: usize, value_len: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::new(format!("k{i:07}"), vec![b'v'; value_len])
                .with_timestamp(1_700_000_000_000 + i as i64)
        })
        .collect()
}

/// Reads and decodes every record; returns how many there were.
fn read_all(log: &PartitionLog) -> u64 {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut count = 0u64;
    while offset < end {
        let data = log.read(offset, FETCH_BYTES).expect("read");
        for batch in data.batches() {
            for record in batch.expect("valid batch").records() {
                let record = record.expect("valid record");
                offset = record.offset + 1;
                count += 1;
                std::hint::black_box(&record);
            }
        }
    }
    count
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_sequential");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // About 120 MB of log either way.
    for (value_len, batches) in [(100usize, 10_000usize), (1024, 1_100)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = PartitionLog::open(
            dir.path(),
            LogConfig::default().durability(Durability::None),
        )
        .expect("open");
        let batch = records(100, value_len);
        for _ in 0..batches {
            log.append(&batch).expect("append");
        }
        let total = log.log_end_offset();
        assert_eq!(read_all(&log), total);
        group.throughput(Throughput::Elements(total));
        group.bench_function(
            BenchmarkId::new(format!("value_{value_len}B"), format!("{total}_records")),
            |b| {
                b.iter(|| read_all(&log));
            },
        );
        log.simulate_crash();
    }
    group.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
