//! The producer through the public API: round trips, ordering, threads, futures, batching,
//! flush, durability, errors, close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidelog::{
    Broker, CleanupPolicy, Durability, Error, Header, LogConfig, OffsetRecord, Producer,
    ProducerConfig, ProducerRecord,
};

fn open() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    (dir, broker)
}

fn no_fsync() -> LogConfig {
    LogConfig::default().durability(Durability::None)
}

/// Every record of a partition, in offset order.
fn read_all(broker: &Broker, topic: &str, partition: u32) -> Vec<OffsetRecord> {
    let p = broker.partition(topic, partition).unwrap();
    let log = p.log().unwrap();
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        for r in log.read_records(next, 1 << 20).unwrap() {
            if r.offset >= next {
                next = r.offset + 1;
                out.push(r);
            }
        }
    }
    out
}

/// How many record batches (appends) a partition holds.
fn batch_count(broker: &Broker, topic: &str, partition: u32) -> usize {
    let p = broker.partition(topic, partition).unwrap();
    let log = p.log().unwrap();
    let mut count = 0;
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        for batch in log.read(next, 1 << 20).unwrap().batches() {
            let batch = batch.unwrap();
            if batch.header().last_offset() >= next {
                count += 1;
                next = batch.header().last_offset() + 1;
            }
        }
    }
    count
}

#[test]
fn round_trip_with_keys_headers_timestamps_and_tombstones() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let producer = broker.producer().unwrap();
    let sent = [
        ProducerRecord::new("t", "v0")
            .key("k0")
            .timestamp(1_000)
            .header("h", "x")
            .header("h", "y"),
        ProducerRecord::new("t", "no key").timestamp(2_000),
        ProducerRecord::tombstone("t", "k0").timestamp(3_000),
        ProducerRecord::new("t", Bytes::new())
            .key("empty value")
            .timestamp(-5),
        ProducerRecord::new("t", vec![0u8, 255, 7])
            .key(vec![1u8, 2])
            .headers(vec![Header {
                key: "null".into(),
                value: None,
            }]),
    ];
    let mut metas = Vec::new();
    for r in sent {
        metas.push(producer.send(r).unwrap());
    }
    assert_eq!(
        metas.iter().map(|m| m.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(metas.iter().all(|m| &*m.topic == "t" && m.partition == 0));
    assert_eq!(metas[0].timestamp, 1_000);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (metas[4].timestamp - before).abs() < 60_000,
        "default timestamp is now"
    );

    let got = read_all(&broker, "t", 0);
    assert_eq!(got.len(), 5);
    let r0 = &got[0].record;
    assert_eq!(r0.key.as_deref(), Some(&b"k0"[..]));
    assert_eq!(r0.value.as_deref(), Some(&b"v0"[..]));
    assert_eq!(r0.timestamp, 1_000);
    assert_eq!(
        r0.headers,
        vec![Header::new("h", "x"), Header::new("h", "y")]
    );
    assert_eq!(got[1].record.key, None);
    assert_eq!(got[1].record.timestamp, 2_000);
    assert_eq!(got[2].record.value, None, "tombstone");
    assert_eq!(got[2].record.key.as_deref(), Some(&b"k0"[..]));
    assert_eq!(
        got[3].record.value.as_deref(),
        Some(&b""[..]),
        "empty is not a tombstone"
    );
    assert_eq!(got[3].record.timestamp, -5);
    assert_eq!(got[4].record.value.as_deref(), Some(&[0u8, 255, 7][..]));
    assert_eq!(
        got[4].record.headers,
        vec![Header {
            key: "null".into(),
            value: None
        }]
    );
    assert_eq!(got[4].record.timestamp, metas[4].timestamp);
}

#[test]
fn one_thread_keeps_order_per_partition() {
    for in_background in [false, true] {
        one_thread_order(in_background);
    }
}

fn one_thread_order(append_in_background: bool) {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 3, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default()
            .batch_size(512)
            .append_in_background(append_in_background),
    )
    .unwrap();
    let mut futures = Vec::new();
    for i in 0..3000u32 {
        let key = format!("key-{}", i % 17);
        futures.push(
            producer
                .send_async(ProducerRecord::new("t", i.to_be_bytes().to_vec()).key(key))
                .unwrap(),
        );
    }
    producer.flush().unwrap();
    let mut total = 0;
    for p in 0..3 {
        let values: Vec<u32> = read_all(&broker, "t", p)
            .iter()
            .map(|r| u32::from_be_bytes(r.record.value.as_deref().unwrap().try_into().unwrap()))
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {p} in send order"
        );
        total += values.len();
    }
    assert_eq!(total, 3000);
    for (i, f) in futures.iter().enumerate() {
        let meta = f.try_result().expect("done after flush").unwrap();
        let stored = &read_all(&broker, "t", meta.partition)[meta.offset as usize];
        assert_eq!(
            stored.record.value.as_deref(),
            Some(&(i as u32).to_be_bytes()[..])
        );
    }
}

#[test]
fn several_threads_every_record_once_in_order_per_thread() {
    for in_background in [false, true] {
        several_threads(in_background);
    }
}

fn several_threads(append_in_background: bool) {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 4, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default()
            .batch_size(2048)
            .append_in_background(append_in_background),
    )
    .unwrap();
    let threads = 4u32;
    let per_thread = 5000u32;
    std::thread::scope(|s| {
        for t in 0..threads {
            let producer = producer.clone();
            s.spawn(move || {
                let mut pending = Vec::new();
                for i in 0..per_thread {
                    let mut value = t.to_be_bytes().to_vec();
                    value.extend_from_slice(&i.to_be_bytes());
                    let record = ProducerRecord::new("t", value).key(format!("{t}-{}", i % 13));
                    if i % 10 == 0 {
                        producer.send(record).unwrap();
                    } else {
                        pending.push(producer.send_async(record).unwrap());
                    }
                }
                for f in pending {
                    f.wait().unwrap();
                }
            });
        }
    });
    let mut seen = HashMap::new();
    for p in 0..4 {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for r in read_all(&broker, "t", p) {
            let v = r.record.value.unwrap();
            let t = u32::from_be_bytes(v[..4].try_into().unwrap());
            let i = u32::from_be_bytes(v[4..].try_into().unwrap());
            if let Some(prev) = last.insert(t, i) {
                assert!(prev < i, "thread {t}: {prev} before {i} in partition {p}");
            }
            assert!(seen.insert((t, i), p).is_none(), "({t}, {i}) twice");
        }
    }
    assert_eq!(seen.len() as u32, threads * per_thread);
}

#[test]
fn futures_complete_with_their_offsets() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 2, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(30)),
    )
    .unwrap();
    let futures: Vec<_> = (0..500)
        .map(|i| {
            producer
                .send_async(
                    ProducerRecord::new("t", format!("{i}"))
                        .partition(1)
                        .timestamp(i),
                )
                .unwrap()
        })
        .collect();
    // With a 30 s linger and batches of 16 KiB, the last records are still waiting.
    let last = futures.last().unwrap();
    assert!(!last.is_done());
    assert!(last.try_result().is_none());
    assert!(last.wait_timeout(Duration::from_millis(20)).is_none());
    assert_eq!(last.partition(), 1);
    producer.flush().unwrap();
    for (i, f) in futures.iter().enumerate() {
        assert!(f.is_done());
        let meta = f.wait().unwrap();
        assert_eq!(
            (meta.partition, meta.offset, meta.timestamp),
            (1, i as u64, i as i64)
        );
        assert_eq!(f.wait_timeout(Duration::ZERO).unwrap().unwrap(), meta);
    }
    assert_eq!(broker.partition("t", 0).unwrap().log_end_offset(), 0);
}

#[test]
fn batching_really_batches() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(50)),
    )
    .unwrap();
    let futures: Vec<_> = (0..100)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("value {i}")))
                .unwrap()
        })
        .collect();
    // The linger time passes: the background thread appends without a flush.
    let meta = futures[99].wait().unwrap();
    assert_eq!(meta.offset, 99);
    let batches = batch_count(&broker, "t", 0);
    assert!(batches <= 3, "100 small sends in {batches} batches");

    // A full batch goes without waiting for linger: 16 KiB batches of ~1 KiB records.
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(60)),
    )
    .unwrap();
    let futures: Vec<_> = (0..40)
        .map(|_| {
            producer
                .send_async(ProducerRecord::new("t", vec![1u8; 1000]))
                .unwrap()
        })
        .collect();
    assert!(futures[0]
        .wait_timeout(Duration::from_secs(10))
        .expect("a full batch is appended at once")
        .is_ok());
    assert!(!futures[39].is_done(), "the open batch lingers");
    drop(producer);
    assert!(futures[39].is_done());
    assert_eq!(
        batch_count(&broker, "t", 0),
        batches + 3,
        "40 KB in 16 KiB batches"
    );
}

#[test]
fn flush_waits_for_everything() {
    let (_dir, broker) = open();
    broker.create_topic("durable", 3).unwrap();
    broker.create_topic_with("fast", 3, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(60)),
    )
    .unwrap();
    let mut futures = Vec::new();
    for i in 0..300 {
        let topic = if i % 2 == 0 { "durable" } else { "fast" };
        futures.push(
            producer
                .send_async(ProducerRecord::new(topic, "v").key(format!("{i}")))
                .unwrap(),
        );
    }
    producer.flush().unwrap();
    assert!(futures.iter().all(tidelog::SendFuture::is_done));
    for p in broker.topic("durable").unwrap().partitions().unwrap() {
        assert_eq!(
            p.flushed_offset(),
            p.log_end_offset(),
            "flush waits for the fsync too"
        );
    }
    let total: u64 = ["durable", "fast"]
        .iter()
        .flat_map(|t| broker.topic(t).unwrap().partitions().unwrap())
        .map(|p| p.log_end_offset())
        .sum();
    assert_eq!(total, 300);
}

#[test]
fn always_durable_topic_is_fsynced_before_acknowledgement() {
    let (_dir, broker) = open();
    let topic = broker.create_topic("t", 2).unwrap();
    assert_eq!(topic.config().durability_policy(), Durability::Always);
    let producer = broker.producer().unwrap();
    for i in 0..20 {
        let meta = producer
            .send(ProducerRecord::new("t", "v").partition(i % 2))
            .unwrap();
        assert!(
            broker
                .partition("t", meta.partition)
                .unwrap()
                .flushed_offset()
                > meta.offset
        );
    }
    let futures: Vec<_> = (0..200)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("{i}")).partition(0))
                .unwrap()
        })
        .collect();
    for f in &futures {
        let meta = f.wait().unwrap();
        assert!(broker.partition("t", 0).unwrap().flushed_offset() > meta.offset);
    }
}

#[test]
fn blocking_sends_from_many_threads_share_batches_and_fsyncs() {
    let (_dir, broker) = open();
    broker.create_topic("t", 1).unwrap();
    let producer = broker.producer().unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let producer = producer.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let meta = producer
                        .send(ProducerRecord::new("t", format!("{t}-{i}")))
                        .unwrap();
                    assert!(meta.offset < 400);
                }
            });
        }
    });
    let p = broker.partition("t", 0).unwrap();
    assert_eq!(p.log_end_offset(), 400);
    assert_eq!(p.flushed_offset(), 400);
    assert_eq!(read_all(&broker, "t", 0).len(), 400);
}

#[test]
fn oversized_record_fails_alone() {
    let (_dir, broker) = open();
    broker
        .create_topic_with("t", 1, no_fsync().max_message_bytes(1000))
        .unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(60)),
    )
    .unwrap();
    let small1 = producer
        .send_async(ProducerRecord::new("t", "small 1"))
        .unwrap();
    let big = producer
        .send_async(ProducerRecord::new("t", vec![0u8; 2000]))
        .unwrap();
    let small2 = producer
        .send_async(ProducerRecord::new("t", "small 2"))
        .unwrap();
    let err = big.wait().unwrap_err();
    assert!(
        matches!(err, Error::RecordTooLarge { max: 1000, size } if size > 2000),
        "{err}"
    );
    producer.flush().unwrap();
    assert_eq!(small1.wait().unwrap().offset, 0);
    assert_eq!(small2.wait().unwrap().offset, 1);
    let err = producer
        .send(ProducerRecord::new("t", vec![0u8; 1000]))
        .unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");

    // Records that fit one by one but not together go in separate batches.
    let metas: Vec<_> = (0..5)
        .map(|_| {
            producer
                .send_async(ProducerRecord::new("t", vec![1u8; 400]))
                .unwrap()
        })
        .collect();
    producer.flush().unwrap();
    for m in metas {
        m.wait().unwrap();
    }
    assert_eq!(broker.partition("t", 0).unwrap().log_end_offset(), 7);

    // A record larger than the producer's whole buffer.
    broker.create_topic_with("roomy", 1, no_fsync()).unwrap();
    let tiny = Producer::new(
        &broker,
        ProducerConfig::default()
            .batch_size(1024)
            .buffer_memory(4096),
    )
    .unwrap();
    let err = tiny
        .send(ProducerRecord::new("roomy", vec![0u8; 5000]))
        .unwrap_err();
    assert!(
        matches!(err, Error::RecordTooLarge { max: 4096, .. }),
        "{err}"
    );
}

#[test]
fn unknown_and_deleted_topics() {
    let (_dir, broker) = open();
    let producer = broker.producer().unwrap();
    let err = producer.send(ProducerRecord::new("nope", "v")).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownTopic(t) if t == "nope"),
        "{err}"
    );
    let err = producer
        .send_async(ProducerRecord::new("nope", "v"))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownTopic(_)), "{err}");

    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    producer.send(ProducerRecord::new("t", "v")).unwrap();
    broker.delete_topic("t").unwrap();
    let err = producer.send(ProducerRecord::new("t", "v")).unwrap_err();
    assert!(matches!(err, Error::UnknownTopic(_)), "{err}");

    // A topic created again under the same name is a new topic.
    broker.create_topic_with("t", 2, no_fsync()).unwrap();
    let meta = producer
        .send(ProducerRecord::new("t", "v").partition(1))
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (1, 0));
}

#[test]
fn batch_pending_when_its_topic_is_deleted_fails() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(60)),
    )
    .unwrap();
    let f = producer.send_async(ProducerRecord::new("t", "v")).unwrap();
    broker.delete_topic("t").unwrap();
    producer.flush().unwrap();
    assert!(matches!(f.wait(), Err(Error::UnknownTopic(_))));
}

#[test]
fn compacted_topic_refuses_keyless_records() {
    let (_dir, broker) = open();
    broker
        .create_topic_with("c", 1, no_fsync().cleanup_policy(CleanupPolicy::Compact))
        .unwrap();
    let producer = broker.producer().unwrap();
    let keyless = producer.send_async(ProducerRecord::new("c", "v")).unwrap();
    let keyed = producer
        .send_async(ProducerRecord::new("c", "v").key("k"))
        .unwrap();
    assert!(matches!(keyless.wait(), Err(Error::MissingKey)));
    assert_eq!(keyed.wait().unwrap().offset, 0);
}

#[test]
fn dropping_the_producer_flushes_lingering_records() {
    let (_dir, broker) = open();
    broker.create_topic("t", 2).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(3600)),
    )
    .unwrap();
    let clone = producer.clone();
    let futures: Vec<_> = (0..10)
        .map(|i| {
            clone
                .send_async(ProducerRecord::new("t", format!("{i}")))
                .unwrap()
        })
        .collect();
    drop(clone);
    assert!(
        !futures[0].is_done(),
        "a clone's drop does not close the producer"
    );
    drop(producer);
    for f in &futures {
        f.try_result().expect("done after the drop").unwrap();
    }
    let topic = broker.topic("t").unwrap();
    let total: u64 = topic
        .partitions()
        .unwrap()
        .iter()
        .map(|p| p.log_end_offset())
        .sum();
    assert_eq!(total, 10);
    for p in topic.partitions().unwrap() {
        assert_eq!(p.flushed_offset(), p.log_end_offset());
    }
}

#[test]
fn closed_producer_refuses_sends() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(3600)),
    )
    .unwrap();
    let other = producer.clone();
    let f = producer.send_async(ProducerRecord::new("t", "v")).unwrap();
    producer.close().unwrap();
    assert_eq!(f.wait().unwrap().offset, 0);
    assert!(matches!(
        other.send(ProducerRecord::new("t", "v")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        other.send_async(ProducerRecord::new("t", "v")),
        Err(Error::Closed)
    ));
    other.close().unwrap();
    other.flush().unwrap();
}

#[test]
fn small_buffer_memory_blocks_then_proceeds() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 8, no_fsync()).unwrap();
    let config = ProducerConfig::default()
        .linger(Duration::from_secs(3600))
        .batch_size(1024)
        .buffer_memory(3 * 1024);
    let producer = Arc::new(Producer::new(&broker, config).unwrap());
    // Eight partitions, room for three open batches: sends must wait for appends to free room,
    // and a drain request makes lingering batches go early.
    let futures: Vec<_> = (0..2000)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("{i:08}")).key(format!("{i}")))
                .unwrap()
        })
        .collect();
    producer.flush().unwrap();
    for f in &futures {
        f.wait().unwrap();
    }
    let total: u64 = broker
        .topic("t")
        .unwrap()
        .partitions()
        .unwrap()
        .iter()
        .map(|p| p.log_end_offset())
        .sum();
    assert_eq!(total, 2000);
}

#[test]
fn invalid_config_is_refused() {
    let (_dir, broker) = open();
    let err = Producer::new(
        &broker,
        ProducerConfig::default()
            .batch_size(1 << 20)
            .buffer_memory(1024),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                key: "buffer_memory",
                ..
            }
        ),
        "{err}"
    );
    let err = Producer::new(&broker, ProducerConfig::default().batch_size(usize::MAX)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                key: "batch_size",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn zero_linger_and_zero_batch_size() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer =
        Producer::new(&broker, ProducerConfig::default().linger(Duration::ZERO)).unwrap();
    let futures: Vec<_> = (0..1000)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("{i}")))
                .unwrap()
        })
        .collect();
    // No flush: with no linger the background thread appends on its own.
    for (i, f) in futures.iter().enumerate() {
        assert_eq!(f.wait().unwrap().offset, i as u64);
    }
    let one_each = Producer::new(&broker, ProducerConfig::default().batch_size(0)).unwrap();
    let before = batch_count(&broker, "t", 0);
    let futures: Vec<_> = (0..10)
        .map(|i| {
            one_each
                .send_async(ProducerRecord::new("t", format!("{i}")))
                .unwrap()
        })
        .collect();
    for f in &futures {
        f.wait().unwrap();
    }
    assert_eq!(batch_count(&broker, "t", 0), before + 10);
}

/// A producer keeps what it read of a topic, and must notice at the next send when the topic's
/// config changes or it gets partitions, through `send` and `send_all` alike.
#[test]
fn producer_sees_config_changes_and_new_partitions_at_once() {
    let (_dir, broker) = open();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = broker.producer().unwrap();
    let big = vec![7u8; 2000];
    producer
        .send(ProducerRecord::new("t", big.clone()).key("k"))
        .unwrap();

    broker
        .set_topic_config("t", no_fsync().max_message_bytes(1000))
        .unwrap();
    let err = producer
        .send(ProducerRecord::new("t", big.clone()).key("k"))
        .unwrap_err();
    assert!(
        matches!(err, Error::RecordTooLarge { max: 1000, .. }),
        "{err}"
    );
    // Checked per record before batching: the record fails alone, not its whole batch (the
    // log, which checks the batch, would refuse all three).
    let sent = producer
        .send_all([
            ProducerRecord::new("t", "small").key("k"),
            ProducerRecord::new("t", big.clone()).key("k"),
            ProducerRecord::new("t", "small").key("k"),
        ])
        .unwrap();
    producer.flush().unwrap();
    let outcomes = sent.metadata();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(matches!(
        outcomes[1],
        Err(Error::RecordTooLarge { max: 1000, .. })
    ));

    broker
        .set_topic_config("t", no_fsync().cleanup_policy(CleanupPolicy::Compact))
        .unwrap();
    let sent = producer
        .send_all([
            ProducerRecord::new("t", "a").key("k"),
            ProducerRecord::new("t", "no key"),
            ProducerRecord::new("t", "b").key("k"),
        ])
        .unwrap();
    producer.flush().unwrap();
    let outcomes = sent.metadata();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(matches!(outcomes[1], Err(Error::MissingKey)));
    let err = producer.send(ProducerRecord::new("t", "v")).unwrap_err();
    assert!(matches!(err, Error::MissingKey), "{err}");
    producer
        .send(ProducerRecord::new("t", big).key("k"))
        .unwrap();

    broker.add_partitions("t", 3).unwrap();
    let meta = producer
        .send(ProducerRecord::new("t", "v").key("k").partition(2))
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (2, 0));
    broker.add_partitions("t", 4).unwrap();
    let sent = producer
        .send_all([
            ProducerRecord::new("t", "a").key("k").partition(0),
            ProducerRecord::new("t", "b").key("k").partition(3),
            ProducerRecord::new("t", "c").key("k").partition(4),
        ])
        .unwrap();
    producer.flush().unwrap();
    let outcomes = sent.metadata();
    assert_eq!(outcomes[0].as_ref().unwrap().partition, 0);
    assert_eq!(outcomes[1].as_ref().unwrap().partition, 3);
    assert!(
        matches!(
            outcomes[2],
            Err(Error::UnknownPartition { partition: 4, .. })
        ),
        "{:?}",
        outcomes[2]
    );
}
