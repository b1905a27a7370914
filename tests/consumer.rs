//! The Consumer through the public API: round trip, ordering, subscriptions, blocking polls,
//! positions, pause/resume, limits, offset reset after retention, and bad input.
//!
//! Records are appended with `PartitionLog::append`, not the Producer, so these tests cover the
//! consumer alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, BrokerConfig, Consumer, ConsumerConfig, ConsumerRecord, Durability, Error, Header,
    LogConfig, OffsetReset, Record, TimestampType, TopicPartition,
};

const LONG: Duration = Duration::from_secs(10);

fn open() -> (tempfile::TempDir, Broker) {
    open_with(BrokerConfig::default())
}

fn open_with(config: BrokerConfig) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let config = config.topic_defaults(LogConfig::default().durability(Durability::None));
    let broker = Broker::open_with(dir.path(), config).unwrap();
    (dir, broker)
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest)
}

fn append(broker: &Broker, topic: &str, partition: u32, records: &[Record]) {
    broker
        .partition(topic, partition)
        .unwrap()
        .log()
        .unwrap()
        .append(records)
        .unwrap();
}

fn values(topic: &str, partition: u32, range: std::ops::Range<u32>) -> Vec<Record> {
    range
        .map(|i| Record::new(format!("k{i}"), format!("{topic}-{partition}-{i}")))
        .collect()
}

/// Polls until `count` records have come (or panics after `LONG`).
fn poll_n(consumer: &mut Consumer, count: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + LONG;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records came",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(100)).unwrap());
    }
    assert_eq!(out.len(), count, "more records than expected");
    out
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

#[test]
fn round_trip_keys_headers_timestamps_tombstones() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let written = vec![
        Record::new("k1", "v1")
            .with_timestamp(1_000)
            .with_header("h", "x")
            .with_header("h", "y"),
        Record::from_value("no key").with_timestamp(2_000),
        Record::tombstone("k1").with_timestamp(3_000),
        Record::new("", "").with_timestamp(-5),
        Record {
            key: None,
            value: None,
            timestamp: 4_000,
            headers: vec![Header {
                key: "null".into(),
                value: None,
            }],
        },
    ];
    append(&broker, "t", 0, &written);
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let got = poll_n(&mut consumer, written.len());
    for (i, (r, w)) in got.iter().zip(&written).enumerate() {
        assert_eq!(&*r.topic, "t");
        assert_eq!(r.partition, 0);
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.timestamp, w.timestamp);
        assert_eq!(r.timestamp_type, TimestampType::CreateTime);
        assert_eq!(r.key, w.key);
        assert_eq!(r.value, w.value);
        assert_eq!(r.headers, w.headers);
    }
    assert!(got[2].is_tombstone() && !got[0].is_tombstone());
    assert_eq!(got[0].topic_partition(), tp("t", 0));
}

#[test]
fn payloads_are_slices_of_the_fetch_buffer() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    append(
        &broker,
        "t",
        0,
        &[Record::new("key", "value"), Record::new("key2", "value2")],
    );
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    let got = poll_n(&mut consumer, 2);
    // Kafka's record layout: key, then the value's one-byte length varint, then the value. Slices
    // of one buffer sit exactly there; copies would not.
    for r in &got {
        let key = r.key.as_ref().unwrap();
        let value = r.value.as_ref().unwrap();
        assert_eq!(
            value.as_ptr() as usize,
            key.as_ptr() as usize + key.len() + 1
        );
    }
}

#[test]
fn order_is_kept_within_a_partition() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let mut next = 0;
    for size in [1u32, 7, 100, 3, 250, 1, 638] {
        append(&broker, "t", 0, &values("t", 0, next..next + size));
        next += size;
    }
    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(7)).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    let got = poll_n(&mut consumer, next as usize);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.value.as_deref(), Some(format!("t-0-{i}").as_bytes()));
    }
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), u64::from(next));
    assert!(consumer.poll(Duration::ZERO).unwrap().is_empty());
}

#[test]
fn subscribe_reads_every_partition_exactly_once() {
    let (_dir, broker) = open();
    broker.create_topic("t", 4).unwrap();
    for p in 0..4 {
        for chunk in 0..5 {
            append(
                &broker,
                "t",
                p,
                &values("t", p, chunk * 50..chunk * 50 + 50),
            );
        }
    }
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    assert_eq!(
        consumer.assignment(),
        (0..4).map(|p| tp("t", p)).collect::<Vec<_>>()
    );
    assert_eq!(consumer.subscription(), vec!["t".to_string()]);
    let got = poll_n(&mut consumer, 1000);
    let mut seen = HashSet::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &got {
        assert!(
            seen.insert((r.partition, r.offset)),
            "duplicate {}-{}",
            r.partition,
            r.offset
        );
        if let Some(prev) = last.insert(r.partition, r.offset) {
            assert_eq!(r.offset, prev + 1);
        }
        assert_eq!(
            r.value.as_deref(),
            Some(format!("t-{}-{}", r.partition, r.offset).as_bytes())
        );
    }
    assert!(consumer.poll(Duration::from_millis(20)).unwrap().is_empty());
}

#[test]
fn consumer_records_group_by_partition() {
    let (_dir, broker) = open();
    broker.create_topic("t", 3).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..3));
    append(&broker, "t", 2, &values("t", 2, 0..2));
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let records = consumer.poll(LONG).unwrap();
    let records = if records.len() == 5 {
        records
    } else {
        // The two partitions may take two polls only if the first ran out of room; it cannot here.
        panic!("expected 5 records in one poll, got {}", records.len());
    };
    let mut parts = records.partitions();
    parts.sort();
    assert_eq!(parts, vec![tp("t", 0), tp("t", 2)]);
    assert_eq!(
        records
            .records(&tp("t", 0))
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(records.records(&tp("t", 2)).len(), 2);
    assert!(records.records(&tp("t", 1)).is_empty());
    assert_eq!((&records).into_iter().count(), 5);
    assert_eq!(records.iter().count(), 5);
    assert!(!records.is_empty());
}

#[test]
fn independent_consumers_on_threads_each_get_everything_in_order() {
    const PARTITIONS: u32 = 3;
    const PER_PARTITION: u32 = 2_000;
    const CONSUMERS: usize = 4;
    let (_dir, broker) = open();
    broker.create_topic("t", PARTITIONS).unwrap();
    let ready = Arc::new(Barrier::new(CONSUMERS + 1));
    let readers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let broker = broker.clone();
            let ready = Arc::clone(&ready);
            thread::spawn(move || {
                let config = earliest().max_poll_records(64 + c * 100);
                let mut consumer = Consumer::new(&broker, config).unwrap();
                consumer.subscribe(&["t"]).unwrap();
                ready.wait();
                let got = poll_n(&mut consumer, (PARTITIONS * PER_PARTITION) as usize);
                let mut next = [0u64; PARTITIONS as usize];
                for r in got {
                    let p = r.partition as usize;
                    assert_eq!(r.offset, next[p], "consumer {c}, partition {p}");
                    assert_eq!(
                        r.value.as_deref(),
                        Some(format!("t-{p}-{}", r.offset).as_bytes())
                    );
                    next[p] += 1;
                }
            })
        })
        .collect();
    ready.wait();
    // Two writers, appending while the consumers read.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let broker = broker.clone();
            thread::spawn(move || {
                for p in (0..PARTITIONS).filter(|p| p % 2 == w) {
                    for chunk in 0..PER_PARTITION / 40 {
                        append(
                            &broker,
                            "t",
                            p,
                            &values("t", p, chunk * 40..chunk * 40 + 40),
                        );
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn a_blocked_poll_wakes_on_append() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    let mut consumer = Consumer::new(&broker, ConsumerConfig::default()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    assert_eq!(consumer.position(&tp("t", 1)).unwrap(), 0);
    let writer = {
        let broker = broker.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            append(&broker, "t", 1, &[Record::new("k", "woken")]);
        })
    };
    let started = Instant::now();
    let records = consumer.poll(LONG).unwrap();
    let waited = started.elapsed();
    writer.join().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records.iter().next().unwrap().value.as_deref(),
        Some(&b"woken"[..])
    );
    assert!(
        waited >= Duration::from_millis(40),
        "returned before the append: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "not woken by the append: {waited:?}"
    );
}

#[test]
fn a_poll_without_data_returns_empty_after_its_timeout() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..3));
    let mut consumer = Consumer::new(&broker, ConsumerConfig::default()).unwrap(); // latest
    consumer.assign(&[tp("t", 0)]).unwrap();
    for timeout in [Duration::ZERO, Duration::from_millis(50)] {
        let started = Instant::now();
        assert!(consumer.poll(timeout).unwrap().is_empty());
        assert!(started.elapsed() >= timeout);
    }
    // No partitions at all: still waits, still empty.
    consumer.unsubscribe().unwrap();
    assert!(consumer.assignment().is_empty());
    let started = Instant::now();
    assert!(consumer.poll(Duration::from_millis(50)).unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[test]
fn spinning_polls_see_appends_and_time_out() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let config = ConsumerConfig::default().spin(Duration::from_millis(20));
    let mut consumer = Consumer::new(&broker, config).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    let started = Instant::now();
    assert!(consumer.poll(Duration::from_millis(30)).unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(30));
    // Appends land both during the spin (5 ms) and after it, while parked (60 ms).
    for delay in [5u64, 60] {
        let writer = {
            let broker = broker.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(delay));
                append(&broker, "t", 0, &[Record::from_value(delay.to_string())]);
            })
        };
        let records = consumer.poll(LONG).unwrap();
        writer.join().unwrap();
        assert_eq!(
            records.iter().next().unwrap().value.as_deref(),
            Some(delay.to_string().as_bytes())
        );
    }
}

#[test]
fn the_default_reset_is_latest() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..5));
    let mut consumer = Consumer::new(&broker, ConsumerConfig::default()).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 5);
    append(&broker, "t", 0, &values("t", 0, 5..6));
    let got = poll_n(&mut consumer, 1);
    assert_eq!(got[0].offset, 5);
}

#[test]
fn seek_and_position() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..10));
    let p0 = tp("t", 0);
    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(3)).unwrap();
    consumer.assign(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.position(&p0).unwrap(), 0);
    assert_eq!(
        poll_n(&mut consumer, 3)
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(consumer.position(&p0).unwrap(), 3);

    // Into the middle of a batch: the records before it are skipped.
    consumer.seek(&p0, 7).unwrap();
    assert_eq!(consumer.position(&p0).unwrap(), 7);
    assert_eq!(
        poll_n(&mut consumer, 3)
            .iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>(),
        [7, 8, 9]
    );

    consumer
        .seek_to_beginning(std::slice::from_ref(&p0))
        .unwrap();
    assert_eq!(consumer.position(&p0).unwrap(), 0);
    assert_eq!(poll_n(&mut consumer, 3)[0].offset, 0);

    consumer.seek_to_end(&[]).unwrap(); // every assigned partition
    assert_eq!(consumer.position(&p0).unwrap(), 10);
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());

    // Past the end: reset by policy (earliest here) at the next poll.
    consumer.seek(&p0, 1_000).unwrap();
    assert_eq!(poll_n(&mut consumer, 3)[0].offset, 0);

    // Not assigned.
    let p1 = tp("t", 1);
    assert!(matches!(
        consumer.seek(&p1, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        consumer.position(&p1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        consumer.seek_to_end(std::slice::from_ref(&p1)),
        Err(Error::InvalidArgument(_))
    ));

    // beginning and end offsets need no assignment.
    assert_eq!(
        consumer
            .beginning_offsets(&[p0.clone(), p1.clone()])
            .unwrap(),
        [0, 0]
    );
    assert_eq!(consumer.end_offsets(&[p0, p1]).unwrap(), [10, 0]);
}

#[test]
fn reassigning_keeps_positions_of_partitions_that_stay() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..10));
    append(&broker, "t", 1, &values("t", 1, 0..10));
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    consumer.seek(&tp("t", 0), 4).unwrap();
    consumer
        .assign(&[tp("t", 1), tp("t", 0), tp("t", 0)])
        .unwrap();
    assert_eq!(consumer.assignment(), [tp("t", 0), tp("t", 1)]);
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 4);
    assert_eq!(consumer.position(&tp("t", 1)).unwrap(), 0);
    assert_eq!(poll_n(&mut consumer, 16).len(), 16);
}

#[test]
fn paused_partitions_return_nothing_until_resumed() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..5));
    append(&broker, "t", 1, &values("t", 1, 0..5));
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    consumer.pause(&[tp("t", 0)]).unwrap();
    assert_eq!(consumer.paused(), [tp("t", 0)]);
    let got = poll_n(&mut consumer, 5);
    assert!(got.iter().all(|r| r.partition == 1));
    // Only the paused partition has data: a poll waits and returns nothing.
    assert!(consumer.poll(Duration::from_millis(30)).unwrap().is_empty());
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 0);
    consumer.resume(&[tp("t", 0)]).unwrap();
    assert!(consumer.paused().is_empty());
    let got = poll_n(&mut consumer, 5);
    assert!(got.iter().all(|r| r.partition == 0));
    assert!(matches!(
        consumer.pause(&[tp("t", 9)]),
        Err(Error::InvalidArgument(_))
    ));
}

/// A poll that stops inside a batch goes on from the next record at the next poll; a damaged
/// record further in comes after the records before it, as an error of the next poll, and again
/// until a seek past its batch.
#[test]
fn a_damaged_record_after_a_partial_poll_is_reported_until_skipped() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    // Ten 9-byte records (no key, 2-byte value, no header): record i starts at 61 + 9 i.
    let records: Vec<Record> = (0..10)
        .map(|i| Record::from_value(format!("v{i}")).with_timestamp(1_000))
        .collect();
    let mut bytes = tidelog::RecordBatch::encode(0, &records)
        .unwrap()
        .into_bytes()
        .to_vec();
    // Record 7's offset delta becomes 0 (out of order); the CRC is made valid again.
    let at = 61 + 9 * 7;
    assert_eq!((bytes[at], bytes[at + 3]), (0x10, 14));
    bytes[at + 3] = 0;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &bytes[21..]) as u32;
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let batch = tidelog::RecordBatch::from_bytes(bytes.into()).unwrap();
    let partition = broker.partition("t", 0).unwrap();
    partition.log().unwrap().append_batch(&batch).unwrap();
    append(&broker, "t", 0, &values("t", 0, 10..12));

    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(3)).unwrap();
    consumer.assign(&[tp("t", 0)]).unwrap();
    let offsets = |consumer: &mut Consumer| -> Vec<u64> {
        let records = consumer.poll(LONG).unwrap();
        records.iter().map(|r| r.offset).collect()
    };
    assert_eq!(offsets(&mut consumer), [0, 1, 2]);
    assert_eq!(offsets(&mut consumer), [3, 4, 5]);
    assert_eq!(offsets(&mut consumer), [6]);
    for _ in 0..2 {
        match consumer.poll(LONG) {
            Err(Error::InvalidBatch(why)) => assert!(why.contains("offsetDelta"), "{why}"),
            other => panic!("expected the damaged record, got {other:?}"),
        }
        assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 7);
    }
    // Past the damaged batch.
    consumer.seek(&tp("t", 0), 10).unwrap();
    assert_eq!(offsets(&mut consumer), [10, 11]);
}

#[test]
fn max_poll_records_is_respected() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..100));
    append(&broker, "t", 1, &values("t", 1, 0..55));
    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(10)).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let mut total = 0;
    let mut polls = 0;
    loop {
        let records = consumer.poll(Duration::from_millis(20)).unwrap();
        if records.is_empty() {
            break;
        }
        assert!(records.len() <= 10);
        total += records.len();
        polls += 1;
    }
    assert_eq!((total, polls), (155, 16));
}

#[test]
fn a_busy_partition_does_not_starve_the_others() {
    let (_dir, broker) = open();
    broker.create_topic("t", 3).unwrap();
    for chunk in 0..100 {
        append(
            &broker,
            "t",
            0,
            &values("t", 0, chunk * 100..chunk * 100 + 100),
        );
    }
    append(&broker, "t", 1, &values("t", 1, 0..10));
    append(&broker, "t", 2, &values("t", 2, 0..10));
    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(50)).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..3 {
        for r in consumer.poll(LONG).unwrap() {
            seen.insert(r.partition);
        }
    }
    assert_eq!(seen, HashSet::from([0, 1, 2]));
}

#[test]
fn fetch_byte_limits_bound_a_poll_but_never_stall_it() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    for p in 0..2 {
        for chunk in 0..10 {
            append(
                &broker,
                "t",
                p,
                &values("t", p, chunk * 10..chunk * 10 + 10),
            );
        }
    }
    // One byte per fetch: each poll still reads one whole batch.
    let config = earliest().fetch_max_bytes(1).max_partition_fetch_bytes(1);
    let mut consumer = Consumer::new(&broker, config).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let first = consumer.poll(LONG).unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(poll_n(&mut consumer, 190).len(), 190);
}

#[test]
fn offsets_for_times_find_the_first_record_at_or_after() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(
        &broker,
        "t",
        0,
        &[
            Record::new("a", "1").with_timestamp(1_000),
            Record::new("b", "2").with_timestamp(2_000),
            Record::new("c", "3").with_timestamp(3_000),
        ],
    );
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    let found = consumer
        .offsets_for_times(&[
            (tp("t", 0), 1_500),
            (tp("t", 0), 0),
            (tp("t", 0), 3_001),
            (tp("t", 1), 0),
        ])
        .unwrap();
    assert_eq!(found, [Some(1), Some(0), None, None]);
    assert!(matches!(
        consumer.offsets_for_times(&[(tp("nope", 0), 0)]),
        Err(Error::UnknownTopic(_))
    ));
    consumer.assign(&[tp("t", 0)]).unwrap();
    consumer.seek(&tp("t", 0), found[0].unwrap()).unwrap();
    assert_eq!(
        poll_n(&mut consumer, 2)[0].value.as_deref(),
        Some(&b"2"[..])
    );
}

/// A topic whose early segments retention can delete: small segments, 60 s retention, 200
/// records stamped long ago. The background maintenance is held off, so that only
/// `expire_old_segments` applies retention.
fn retained_topic() -> (tempfile::TempDir, Broker) {
    let (dir, broker) =
        open_with(BrokerConfig::default().maintenance_interval(Duration::from_secs(3600)));
    let config = LogConfig::default()
        .segment_bytes(2048)
        .retention(Some(Duration::from_secs(60)))
        .durability(Durability::None);
    broker.create_topic_with("r", 1, config).unwrap();
    for chunk in 0..40 {
        let old: Vec<_> = values("r", 0, chunk * 5..chunk * 5 + 5)
            .into_iter()
            .map(|r| r.with_timestamp(1_000))
            .collect();
        append(&broker, "r", 0, &old);
    }
    (dir, broker)
}

/// Appends 5 new records in a segment of their own, then lets retention delete every older
/// segment; returns the new log start offset (200).
fn expire_old_segments(broker: &Broker) -> u64 {
    let partition = broker.partition("r", 0).unwrap();
    let log = partition.log().unwrap();
    log.roll_now().unwrap();
    log.append(&values("r", 0, 200..205)).unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(log.maintain_at(now).unwrap().segments_deleted > 0);
    assert_eq!(log.log_start_offset(), 200);
    log.log_start_offset()
}

#[test]
fn earliest_reset_jumps_to_the_new_log_start_after_retention() {
    let (_dir, broker) = retained_topic();
    let r0 = tp("r", 0);
    // One batch per fetch and per poll, so nothing stays buffered from before retention.
    let config = earliest().max_poll_records(5).max_partition_fetch_bytes(1);
    let mut consumer = Consumer::new(&broker, config).unwrap();
    consumer.assign(std::slice::from_ref(&r0)).unwrap();
    assert_eq!(poll_n(&mut consumer, 5).last().unwrap().offset, 4);
    let start = expire_old_segments(&broker);
    let got = poll_n(&mut consumer, 5);
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (start..start + 5).collect::<Vec<_>>()
    );
    assert_eq!(consumer.position(&r0).unwrap(), start + 5);
}

#[test]
fn latest_reset_jumps_to_the_end_after_retention() {
    let (_dir, broker) = retained_topic();
    let r0 = tp("r", 0);
    let mut consumer = Consumer::new(&broker, ConsumerConfig::default()).unwrap();
    consumer.assign(std::slice::from_ref(&r0)).unwrap();
    consumer.seek(&r0, 3).unwrap();
    expire_old_segments(&broker);
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
    assert_eq!(consumer.position(&r0).unwrap(), 205);
}

#[test]
fn no_reset_reports_the_partition_and_the_range() {
    let (_dir, broker) = retained_topic();
    let r0 = tp("r", 0);
    let mut consumer = Consumer::new(
        &broker,
        ConsumerConfig::default().auto_offset_reset(OffsetReset::None),
    )
    .unwrap();
    consumer.assign(std::slice::from_ref(&r0)).unwrap();
    // No position yet.
    let err = consumer.poll(Duration::from_millis(10)).unwrap_err();
    assert!(
        matches!(&err, Error::NoOffsetForPartition { topic, partition: 0 } if topic == "r"),
        "{err}"
    );
    assert!(err.to_string().contains("r-0"), "{err}");
    assert!(matches!(
        consumer.position(&r0),
        Err(Error::NoOffsetForPartition { .. })
    ));

    consumer.seek(&r0, 0).unwrap();
    let start = expire_old_segments(&broker);
    let err = consumer.poll(Duration::from_millis(10)).unwrap_err();
    match &err {
        Error::PositionOutOfRange {
            topic,
            partition,
            offset,
            log_start_offset,
            log_end_offset,
        } => {
            assert_eq!((topic.as_str(), *partition, *offset), ("r", 0, 0));
            assert_eq!((*log_start_offset, *log_end_offset), (start, 205));
        }
        other => panic!("expected PositionOutOfRange, got {other}"),
    }
    assert!(err.to_string().contains("r-0"), "{err}");
    // The error stays until the position is fixed.
    assert!(consumer.poll(Duration::ZERO).is_err());
    consumer.seek_to_beginning(&[r0]).unwrap();
    assert_eq!(poll_n(&mut consumer, 5)[0].offset, start);
}

#[test]
fn an_error_on_one_partition_does_not_lose_records_of_another() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..3));
    append(&broker, "t", 1, &values("t", 1, 0..3));
    let mut consumer = Consumer::new(
        &broker,
        ConsumerConfig::default().auto_offset_reset(OffsetReset::None),
    )
    .unwrap();
    consumer.assign(&[tp("t", 0), tp("t", 1)]).unwrap();
    consumer.seek(&tp("t", 0), 0).unwrap(); // t-1 has no position
    let mut got = Vec::new();
    let mut errors = 0;
    for _ in 0..4 {
        match consumer.poll(Duration::ZERO) {
            Ok(records) => got.extend(records),
            Err(Error::NoOffsetForPartition { partition: 1, .. }) => errors += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), 3);
    assert!(errors >= 2);
}

#[test]
fn unknown_topics_and_partitions_are_refused() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    assert!(
        matches!(consumer.assign(&[tp("nope", 0)]), Err(Error::UnknownTopic(t)) if t == "nope")
    );
    assert!(matches!(
        consumer.assign(&[tp("t", 0), tp("t", 2)]),
        Err(Error::UnknownPartition { topic, partition: 2 }) if topic == "t"
    ));
    assert!(
        consumer.assignment().is_empty(),
        "a failed assign changes nothing"
    );
    assert!(matches!(
        consumer.subscribe(&["bad name"]),
        Err(Error::InvalidTopicName { .. })
    ));
    assert!(matches!(
        consumer.end_offsets(&[tp("t", 5)]),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        consumer.beginning_offsets(&[tp("x", 0)]),
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        Consumer::new(&broker, ConsumerConfig::default().max_poll_records(0)),
        Err(Error::InvalidConfig {
            key: "max_poll_records",
            ..
        })
    ));
    assert!(matches!(
        broker.consumer(ConsumerConfig::default().fetch_max_bytes(0)),
        Err(Error::InvalidConfig {
            key: "fetch_max_bytes",
            ..
        })
    ));
}

#[test]
fn a_subscription_to_a_missing_topic_picks_it_up_when_created() {
    let (_dir, broker) = open();
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["later"]).unwrap();
    assert!(consumer.assignment().is_empty());
    assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
    broker.create_topic("later", 2).unwrap();
    append(&broker, "later", 1, &values("later", 1, 0..2));
    assert_eq!(poll_n(&mut consumer, 2)[0].partition, 1);
    assert_eq!(consumer.assignment().len(), 2);
}

#[test]
fn a_subscription_picks_up_added_partitions() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let mut consumer = Consumer::new(&broker, earliest()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..3));
    assert_eq!(poll_n(&mut consumer, 3).len(), 3);

    // Added between polls.
    broker.add_partitions("t", 2).unwrap();
    append(&broker, "t", 1, &values("t", 1, 0..2));
    let got = poll_n(&mut consumer, 2);
    assert!(got.iter().all(|r| r.partition == 1));
    assert_eq!(consumer.assignment(), [tp("t", 0), tp("t", 1)]);

    // Added while a poll is blocked: found within metadata_max_age, and its first append read.
    let writer = {
        let broker = broker.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            broker.add_partitions("t", 3).unwrap();
            append(&broker, "t", 2, &values("t", 2, 0..1));
        })
    };
    let started = Instant::now();
    let records = consumer.poll(LONG).unwrap();
    writer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        records
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>(),
        [(2, 0)]
    );
}

#[test]
fn a_deleted_topic_leaves_a_subscription_and_fails_an_assignment() {
    let (_dir, broker) = open();
    broker.create_topic("gone", 2).unwrap();
    broker.create_topic("stays", 1).unwrap();
    append(&broker, "stays", 0, &values("stays", 0, 0..1));

    let mut subscribed = Consumer::new(&broker, earliest()).unwrap();
    subscribed.subscribe(&["gone", "stays"]).unwrap();
    let mut assigned = Consumer::new(&broker, earliest()).unwrap();
    assigned.assign(&[tp("gone", 0), tp("stays", 0)]).unwrap();
    assert_eq!(subscribed.assignment().len(), 3);

    broker.delete_topic("gone").unwrap();
    assert_eq!(poll_n(&mut subscribed, 1)[0].topic.as_ref(), "stays");
    assert_eq!(subscribed.assignment(), [tp("stays", 0)]);
    assert!(subscribed
        .poll(Duration::from_millis(10))
        .unwrap()
        .is_empty());

    // The assigned consumer reports the deleted topic; the other partition's records still come.
    let mut got = 0;
    let mut unknown = 0;
    for _ in 0..3 {
        match assigned.poll(Duration::ZERO) {
            Ok(records) => got += records.len(),
            Err(Error::UnknownTopic(t)) => {
                assert_eq!(t, "gone");
                unknown += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, 1);
    assert!(unknown >= 1);
    assigned.assign(&[tp("stays", 0)]).unwrap();
    assert!(assigned.poll(Duration::ZERO).unwrap().is_empty());

    // Created again under the same name: a new topic, read from its start.
    broker.create_topic("gone", 1).unwrap();
    append(&broker, "gone", 0, &values("gone", 0, 0..2));
    let got = poll_n(&mut subscribed, 2);
    assert_eq!(
        got.iter()
            .map(|r| (r.topic.as_ref(), r.offset))
            .collect::<Vec<_>>(),
        [("gone", 0), ("gone", 1)]
    );
}

#[test]
fn the_iterator_ends_on_timeout_and_on_wakeup() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..25));
    let mut consumer = Consumer::new(&broker, earliest().max_poll_records(10)).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let all: Vec<_> = consumer
        .iter(Duration::from_millis(20))
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..25).collect::<Vec<_>>()
    );

    // Taking part of a poll's records puts the rest back.
    consumer.seek(&tp("t", 0), 0).unwrap();
    let three: Vec<_> = consumer.iter(LONG).take(3).map(Result::unwrap).collect();
    assert_eq!(three.last().unwrap().offset, 2);
    assert_eq!(consumer.position(&tp("t", 0)).unwrap(), 3);

    // An endless iterator, ended from another thread.
    let wakeup = consumer.wakeup_handle();
    let writer = {
        let broker = broker.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            append(&broker, "t", 0, &values("t", 0, 25..26));
            thread::sleep(Duration::from_millis(30));
            wakeup.wakeup();
        })
    };
    let started = Instant::now();
    let tail: Vec<_> = consumer.iter(Duration::MAX).map(Result::unwrap).collect();
    writer.join().unwrap();
    assert_eq!(tail.len(), 23);
    assert_eq!(tail.last().unwrap().offset, 25);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The wake-up was used up: polls wait again.
    let started = Instant::now();
    assert!(consumer.poll(Duration::from_millis(20)).unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(20));
}

#[test]
fn members_of_a_group_share_the_partitions() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    append(&broker, "t", 0, &values("t", 0, 0..2));
    append(&broker, "t", 1, &values("t", 1, 0..2));
    let mut a = Consumer::new(&broker, earliest().group_id("g")).unwrap();
    let mut b = Consumer::new(&broker, earliest().group_id("g")).unwrap();
    assert_eq!(a.group_id(), Some("g"));
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    let from_a = poll_n(&mut a, 2);
    let from_b = poll_n(&mut b, 2);
    assert_ne!(from_a[0].partition, from_b[0].partition);
    assert!(from_a.iter().all(|r| r.partition == from_a[0].partition));
    assert!(from_b.iter().all(|r| r.partition == from_b[0].partition));
}

#[test]
fn consumers_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<Consumer>();
    is::<tidelog::ConsumerRecords>();
    is::<tidelog::WakeupHandle>();
}
