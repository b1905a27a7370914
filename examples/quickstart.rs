//! The main example: a producer thread appends to a durable partition log while a consumer thread
//! waits for new records and reads them, then the log is reopened to show the records survived.
//!
//! ```text
//! cargo run --example quickstart                 # uses ./tidelog-data/quickstart-0
//! cargo run --example quickstart -- /some/dir    # or any folder
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidelog::{LogConfig, PartitionLog, Record};

const RECORDS: u64 = 10_000;

fn main() -> Result<(), tidelog::Error> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tidelog-data/quickstart-0".to_string());
    let log = Arc::new(PartitionLog::open(&dir, LogConfig::default())?);
    let first = log.log_end_offset();
    println!(
        "opened {dir}: offsets {}..{}",
        log.log_start_offset(),
        first
    );

    let consumer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || -> Result<u64, tidelog::Error> {
            let mut next = first;
            let mut seen = 0;
            while seen < RECORDS {
                if !log.wait_for_offset(next, Duration::from_secs(5)) {
                    break;
                }
                for r in log.read_records(next, 1 << 20)? {
                    next = r.offset + 1;
                    seen += 1;
                }
            }
            Ok(seen)
        })
    };

    let started = Instant::now();
    for chunk in 0..RECORDS / 100 {
        let batch: Vec<Record> = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                Record::new(
                    format!("order-{}", n % 10),
                    format!("{{\"order\":{n},\"amount\":{}}}", n * 3 % 97),
                )
                .with_header("source", "quickstart")
            })
            .collect();
        // Durability::Always (the default): the batch is on disk when append returns.
        log.append(&batch)?;
    }
    let produced = started.elapsed();
    let seen = consumer.join().expect("consumer thread panicked")?;
    println!(
        "produced {RECORDS} records in 100-record batches in {:.1} ms ({:.0} records/s, fsync before each ack)",
        produced.as_secs_f64() * 1e3,
        RECORDS as f64 / produced.as_secs_f64()
    );
    println!("consumer read {seen} records as they arrived");

    let last = log.read_records(log.log_end_offset() - 1, 1 << 20)?;
    if let Some(r) = last.last() {
        println!(
            "last record: offset {} key {} value {}",
            r.offset,
            String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
        );
    }
    let end = log.log_end_offset();
    Arc::try_unwrap(log)
        .map_err(|_| tidelog::Error::InvalidArgument("log still shared".into()))?
        .close()?;

    let reopened = PartitionLog::open(&dir, LogConfig::default())?;
    println!(
        "reopened: offsets {}..{} (was {end}), {} segment(s), {} bytes",
        reopened.log_start_offset(),
        reopened.log_end_offset(),
        reopened.segment_count(),
        reopened.size_bytes()
    );
    assert_eq!(reopened.log_end_offset(), end);
    Ok(())
}
