//! The main example: open a directory, create a topic, produce from one thread and consume in
//! another, reopen the directory and read everything again, then share the topic between the
//! two members of a consumer group that commit their progress (a second run continues where the
//! first stopped).
//!
//! ```text
//! cargo run --example quickstart                 # uses ./tidelog-data (tidelog::DEFAULT_DIR)
//! cargo run --example quickstart -- /some/dir    # or any directory
//! ```

use std::time::{Duration, Instant};

use tidelog::{Broker, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord};

const TOPIC: &str = "orders";
const RECORDS: u64 = 10_000;

fn main() -> Result<(), tidelog::Error> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| tidelog::DEFAULT_DIR.to_string());
    let broker = Broker::open(&dir)?;
    let topic = match broker.topic(TOPIC) {
        Ok(topic) => topic,
        Err(tidelog::Error::UnknownTopic(_)) => broker.create_topic(TOPIC, 3)?,
        Err(e) => return Err(e),
    };
    let before: u64 = topic
        .partitions()?
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum();
    println!(
        "opened {dir}: topic `{TOPIC}` with {} partitions, {before} records so far",
        topic.partition_count()
    );

    // A consumer in its own thread, subscribed to the topic, starting at the current end.
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Latest))?;
    consumer.subscribe(&[TOPIC])?;
    consumer.poll(Duration::ZERO)?; // take positions at the current end before producing
    let reader = std::thread::spawn(move || -> Result<(u64, [u64; 3]), tidelog::Error> {
        let (mut seen, mut per_partition) = (0u64, [0u64; 3]);
        while seen < RECORDS {
            let records = consumer.poll(Duration::from_secs(5))?;
            if records.is_empty() {
                break;
            }
            for r in &records {
                seen += 1;
                per_partition[r.partition as usize % 3] += 1;
            }
        }
        Ok((seen, per_partition))
    });

    // A producer: sends are batched per partition; the topic's default durability
    // (Durability::Always) makes each acknowledgement wait for fsync, shared by the batch.
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(2)),
    )?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(RECORDS as usize);
    for n in 0..RECORDS {
        let record = ProducerRecord::new(
            TOPIC,
            format!("{{\"order\":{n},\"amount\":{}}}", n * 7 % 101),
        )
        .key(format!("customer-{}", n % 50))
        .header("source", "quickstart");
        pending.push(producer.send_async(record)?);
    }
    let last = pending
        .iter()
        .map(tidelog::SendFuture::wait)
        .collect::<Result<Vec<_>, _>>()?;
    let elapsed = started.elapsed();
    println!(
        "produced {RECORDS} records in {:.1} ms ({:.0} records/s, each acknowledged after fsync)",
        elapsed.as_secs_f64() * 1e3,
        RECORDS as f64 / elapsed.as_secs_f64()
    );
    if let Some(m) = last.last() {
        println!(
            "last record went to {}-{} at offset {}",
            m.topic, m.partition, m.offset
        );
    }
    let (seen, per_partition) = reader.join().expect("consumer thread panicked")?;
    println!("consumer received {seen} records as they arrived (per partition: {per_partition:?})");
    drop((producer, topic, broker));

    // Everything is on disk: reopen and read the whole topic from the beginning.
    let broker = Broker::open(&dir)?;
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    consumer.subscribe(&[TOPIC])?;
    let mut total = 0;
    loop {
        let records = consumer.poll(Duration::from_millis(200))?;
        if records.is_empty() {
            break;
        }
        total += records.len();
    }
    println!("after reopening: {total} records in `{TOPIC}`");
    drop(consumer);

    // A consumer group: its two members share the partitions, each record goes to one of them,
    // and the group's committed offsets (kept in `__consumer_offsets`) say where the next run of
    // this example continues.
    let members: Vec<_> = (0..2)
        .map(|i| {
            let broker = broker.clone();
            std::thread::spawn(move || -> Result<usize, tidelog::Error> {
                let mut member = broker.consumer(
                    ConsumerConfig::default()
                        .group_id("billing")
                        .client_id(format!("billing-{i}"))
                        .auto_offset_reset(OffsetReset::Earliest),
                )?;
                member.subscribe(&[TOPIC])?;
                let (mut received, mut idle) = (0, 0);
                while idle < 5 {
                    let records = member.poll(Duration::from_millis(100))?;
                    if records.is_empty() {
                        idle += 1;
                        continue;
                    }
                    idle = 0;
                    received += records.len();
                    member.commit_sync()?; // processed: the group moves on
                }
                member.close()?;
                Ok(received)
            })
        })
        .collect();
    for (i, member) in members.into_iter().enumerate() {
        let received = member.join().expect("group member panicked")?;
        println!("group `billing`, member {i}: {received} records");
    }
    let lag: u64 = broker
        .group_lag("billing")?
        .iter()
        .filter_map(|p| p.lag)
        .sum();
    println!("group `billing` has {lag} records left to read (lag)");
    Ok(())
}
