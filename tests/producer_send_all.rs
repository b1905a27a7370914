//! `Producer::send_all` through the public API: against a plain model (what `send_async` of
//! each record would do), with failures mixed in, and from several threads at once.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use tidelog::{
    partition_for_key, Broker, CleanupPolicy, Durability, Error, LogConfig, OffsetRecord, Producer,
    ProducerConfig, ProducerRecord,
};

fn no_fsync() -> LogConfig {
    LogConfig::default().durability(Durability::None)
}

/// Every record of a partition, in offset order.
fn read_all(broker: &Broker, topic: &str, partition: u32) -> Vec<OffsetRecord> {
    support::read_all(broker.partition(topic, partition).unwrap().log().unwrap())
}

/// A record to send, as the strategy draws it.
#[derive(Debug, Clone)]
struct Draw {
    /// 0: "plain" (3 partitions), 1: "compact" (compacted, 2 partitions), 2: unknown topic.
    topic: u8,
    key: Option<u8>,
    /// An explicit partition (0..4: 3 is unknown for both topics).
    partition: Option<u32>,
    /// Value length; > 1000 is too large for "plain" (max_message_bytes 1000).
    len: usize,
}

fn draw() -> impl Strategy<Value = Draw> {
    (
        prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)],
        proptest::option::weighted(0.7, 0u8..20),
        proptest::option::weighted(0.2, 0u32..4),
        prop_oneof![20 => 0usize..200, 1 => 1001usize..1100],
    )
        .prop_map(|(topic, key, partition, len)| Draw {
            topic,
            key,
            partition,
            len,
        })
}

const TOPICS: [&str; 3] = ["plain", "compact", "nowhere"];

fn value(i: usize, d: &Draw) -> Bytes {
    let mut value = format!("{i:06}").into_bytes();
    value.resize(d.len.max(6), b'x');
    Bytes::from(value)
}

fn record(i: usize, d: &Draw) -> ProducerRecord {
    let mut r = ProducerRecord::new(TOPICS[d.topic as usize], value(i, d))
        .timestamp(1_700_000_000_000 + i as i64)
        .header("i", i.to_string());
    if let Some(k) = d.key {
        r = r.key(format!("key-{k}"));
    }
    if let Some(p) = d.partition {
        r = r.partition(p);
    }
    r
}

/// What `send_async` of the record would end in: `Ok(Some(p))` stored in partition `p`,
/// `Ok(None)` stored in a partition the sticky partitioner picks, `Err` the error's kind.
fn expected(d: &Draw) -> Result<Option<u32>, &'static str> {
    let partitions = match d.topic {
        0 => 3,
        1 => 2,
        _ => return Err("unknown topic"),
    };
    if let Some(p) = d.partition {
        if p >= partitions {
            return Err("unknown partition");
        }
    }
    if d.topic == 1 && d.key.is_none() {
        return Err("missing key");
    }
    if d.topic == 0 && d.len > 1000 {
        return Err("too large");
    }
    Ok(d.partition.or_else(|| {
        d.key
            .map(|k| partition_for_key(format!("key-{k}").as_bytes(), partitions))
    }))
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::UnknownTopic(_) => "unknown topic",
        Error::UnknownPartition { .. } => "unknown partition",
        Error::MissingKey => "missing key",
        Error::RecordTooLarge { .. } => "too large",
        _ => "other",
    }
}

fn check_run(draws: &[Draw], batch_size: usize, chunks: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker
        .create_topic_with("plain", 3, no_fsync().max_message_bytes(1000))
        .unwrap();
    broker
        .create_topic_with(
            "compact",
            2,
            no_fsync().cleanup_policy(CleanupPolicy::Compact),
        )
        .unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default()
            .batch_size(batch_size)
            .linger(Duration::from_secs(60)),
    )
    .unwrap();
    // Sent in `chunks` calls, so runs also start on a batch another call left open.
    let per_call = draws.len().div_ceil(chunks.max(1)).max(1);
    let mut outcomes = Vec::new();
    for (c, part) in draws.chunks(per_call).enumerate() {
        let sent = producer
            .send_all(
                part.iter()
                    .enumerate()
                    .map(|(j, d)| record(c * per_call + j, d)),
            )
            .unwrap();
        prop_assert_eq!(sent.len(), part.len());
        outcomes.push(sent);
    }
    producer.flush().unwrap();
    let mut stored: HashMap<(String, u32), Vec<(u64, usize)>> = HashMap::new();
    let mut i = 0;
    for sent in &outcomes {
        prop_assert!(sent.is_done());
        let metadata = sent.metadata();
        let first_error = metadata.iter().find_map(|m| m.as_ref().err().map(kind));
        match sent.wait() {
            Ok(()) => prop_assert!(first_error.is_none()),
            Err(e) => prop_assert_eq!(Some(kind(&e)), first_error),
        }
        for (j, outcome) in metadata.into_iter().enumerate() {
            let d = &draws[i];
            // `get` agrees with `metadata`.
            let one = sent.get(j).unwrap().wait();
            prop_assert_eq!(one.as_ref().ok(), outcome.as_ref().ok());
            match (expected(d), outcome) {
                (Ok(partition), Ok(meta)) => {
                    prop_assert_eq!(&*meta.topic, TOPICS[d.topic as usize]);
                    if let Some(p) = partition {
                        prop_assert_eq!(meta.partition, p);
                    }
                    prop_assert_eq!(meta.timestamp, 1_700_000_000_000 + i as i64);
                    stored
                        .entry((meta.topic.to_string(), meta.partition))
                        .or_default()
                        .push((meta.offset, i));
                }
                (Err(want), Err(e)) => prop_assert_eq!(want, kind(&e), "record {}", i),
                (want, got) => {
                    prop_assert!(false, "record {i} {d:?}: expected {want:?}, got {got:?}")
                }
            }
            i += 1;
        }
        prop_assert!(sent.get(sent.len()).is_none());
    }
    // Each partition holds exactly the records reported stored there, at the reported offsets,
    // in the order they were sent.
    for (topic, partitions) in [("plain", 3), ("compact", 2)] {
        for p in 0..partitions {
            let log = read_all(&broker, topic, p);
            let reported = stored.remove(&(topic.to_string(), p)).unwrap_or_default();
            prop_assert_eq!(log.len(), reported.len(), "{}-{}", topic, p);
            for (r, (offset, i)) in log.iter().zip(&reported) {
                prop_assert_eq!(r.offset, *offset);
                prop_assert_eq!(r.record.value.clone(), Some(value(*i, &draws[*i])));
                prop_assert_eq!(r.record.timestamp, 1_700_000_000_000 + *i as i64);
                prop_assert_eq!(
                    r.record.key.clone(),
                    draws[*i].key.map(|k| Bytes::from(format!("key-{k}")))
                );
                prop_assert_eq!(r.record.headers.len(), 1);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn send_all_does_what_send_async_of_each_record_does(
        draws in proptest::collection::vec(draw(), 1..300),
        batch_size in prop_oneof![Just(0usize), Just(300), Just(2048), Just(16384)],
        chunks in 1usize..4,
    ) {
        check_run(&draws, batch_size, chunks)?;
    }
}

/// Threads calling `send_all` and `send_async` on one producer at once: every record stored
/// once, in each thread's order within a partition.
#[test]
fn several_threads_mixing_send_all_and_send_async() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("t", 4, no_fsync()).unwrap();
    let producer = Producer::new(&broker, ProducerConfig::default().batch_size(4096)).unwrap();
    let threads = 4;
    let per_thread = 20_000;
    std::thread::scope(|s| {
        for t in 0..threads {
            let producer = producer.clone();
            s.spawn(move || {
                let record = |i: usize| {
                    ProducerRecord::new("t", format!("{t}:{i}")).key(format!("k{}", i % 13))
                };
                let mut i = 0;
                while i < per_thread {
                    if t % 2 == 0 || i % 3 == 0 {
                        let n = (i % 700 + 1).min(per_thread - i);
                        let sent = producer.send_all((i..i + n).map(record)).unwrap();
                        assert_eq!(sent.len(), n);
                        i += n;
                    } else {
                        producer.send_async(record(i)).unwrap();
                        i += 1;
                    }
                }
            });
        }
    });
    producer.flush().unwrap();
    let mut seen = vec![Vec::new(); threads];
    for p in 0..4 {
        let mut last = vec![None::<usize>; threads];
        for r in read_all(&broker, "t", p) {
            let text = String::from_utf8(r.record.value.unwrap().to_vec()).unwrap();
            let (t, i) = text.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert!(
                last[t] < Some(i),
                "thread {t}: {i} after {:?} in partition {p}",
                last[t]
            );
            last[t] = Some(i);
            seen[t].push(i);
        }
    }
    for (t, mut got) in seen.into_iter().enumerate() {
        got.sort_unstable();
        assert_eq!(got, (0..per_thread).collect::<Vec<_>>(), "thread {t}");
    }
}

#[test]
fn a_closed_producer_refuses_send_all() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = broker.producer().unwrap();
    let empty = producer.send_all(Vec::new()).unwrap();
    assert!(empty.is_empty() && empty.is_done());
    assert!(empty.wait().is_ok());
    producer.close().unwrap();
    let err = producer
        .send_all([ProducerRecord::new("t", "v")])
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
}

/// The caller's iterator runs between records: here it deletes the topic and creates it again
/// with fewer partitions in the middle of a run. Records sent before that belong to the old topic
/// and fail with it, at once (not after the linger time); the ones after go to the new one, or
/// fail on a partition it does not have; nothing panics.
#[test]
fn a_topic_created_again_during_send_all() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("t", 3, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_secs(60)),
    )
    .unwrap();
    let admin = broker.clone();
    let records = (0..8u32).map(move |i| {
        if i == 5 {
            admin.delete_topic("t").unwrap();
            admin.create_topic_with("t", 1, no_fsync()).unwrap();
        }
        let partition = match i {
            0..=4 => 2,
            5 => 1,
            _ => 0,
        };
        ProducerRecord::new("t", format!("v{i}")).partition(partition)
    });
    let sent = producer.send_all(records).unwrap();
    producer.flush().unwrap();
    let outcomes = sent.metadata();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i < 5 {
            assert!(
                matches!(outcome, Err(Error::UnknownTopic(_))),
                "record {i}: {outcome:?}"
            );
        } else if i == 5 {
            assert!(
                matches!(outcome, Err(Error::UnknownPartition { partition: 1, .. })),
                "record {i}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome.as_ref().unwrap().partition, 0, "record {i}");
        }
    }
    let stored: Vec<_> = read_all(&broker, "t", 0)
        .into_iter()
        .map(|r| r.record.value.unwrap())
        .collect();
    assert_eq!(stored, [Bytes::from("v6"), Bytes::from("v7")]);
}
