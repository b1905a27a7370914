//! Partitioning: Kafka's murmur2 (same partition as Kafka's Java client), the sticky
//! partitioner for keyless records, custom partitioners, explicit partitions.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidelog::{
    murmur2, partition_for_key, to_positive, Broker, Durability, Error, LogConfig, Partitioner,
    Producer, ProducerConfig, ProducerRecord,
};

/// From Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils/
/// UtilsTest.java), also checked against an independent Python port of `Utils.murmur2`.
const KAFKA_UTILS_TEST: &[(&str, i32)] = &[
    ("21", -973_932_308),
    ("foobar", -790_332_482),
    ("a-little-bit-long-string", -985_981_536),
    ("a-little-bit-longer-string", -1_486_304_829),
    (
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58_897_971,
    ),
    ("abc", 479_470_107),
];

/// Hashes Akka's `Murmur2Spec` takes from Kafka's implementation, and librdkafka's "kafka".
const OTHER_CLIENTS: &[(&str, i32)] = &[
    ("1", -1_993_445_489),
    ("12", 126_087_238),
    ("123", -267_702_483),
    ("1234", -1_614_185_708),
    ("12345", -1_188_365_604),
    ("kafka", -798_503_068),
];

#[test]
fn murmur2_matches_kafka() {
    for &(key, hash) in KAFKA_UTILS_TEST.iter().chain(OTHER_CLIENTS) {
        assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
    }
    assert_eq!(to_positive(-1), i32::MAX);
    assert_eq!(to_positive(i32::MIN), 0);
    assert_eq!(to_positive(7), 7);
}

#[test]
fn partition_for_key_matches_kafka_java() {
    // toPositive(murmur2(key)) % n, computed from the vectors above (and by the Python port).
    let cases: &[(&str, u32, u32)] = &[
        ("21", 7, 3),
        ("21", 100, 40),
        ("foobar", 10, 6),
        ("a-little-bit-long-string", 7, 1),
        ("a-little-bit-longer-string", 12, 11),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 100, 77),
        ("abc", 7, 4),
        ("1", 100, 59),
        ("12345", 12, 8),
        ("kafka", 100, 80),
        ("abc", 1, 0),
    ];
    for &(key, n, expected) in cases {
        assert_eq!(
            partition_for_key(key.as_bytes(), n),
            expected,
            "{key:?} over {n} partitions"
        );
        let by_hand = (to_positive(murmur2(key.as_bytes())) as u32) % n;
        assert_eq!(by_hand, expected);
    }
}

fn setup(partitions: u32) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker
        .create_topic_with(
            "t",
            partitions,
            LogConfig::default().durability(Durability::None),
        )
        .unwrap();
    (dir, broker)
}

#[test]
fn producer_places_keys_like_kafka() {
    let (_dir, broker) = setup(12);
    let producer =
        Producer::new(&broker, ProducerConfig::default().linger(Duration::ZERO)).unwrap();
    for &(key, _) in KAFKA_UTILS_TEST {
        let expected = partition_for_key(key.as_bytes(), 12);
        for i in 0..3 {
            let meta = producer
                .send(ProducerRecord::new("t", format!("v{i}")).key(key))
                .unwrap();
            assert_eq!(meta.partition, expected, "key {key:?}");
        }
    }
    // "a-little-bit-longer-string" → 11 over 12 partitions, as Kafka's Java client puts it.
    let meta = producer
        .send(ProducerRecord::new("t", "x").key("a-little-bit-longer-string"))
        .unwrap();
    assert_eq!(meta.partition, 11);
}

#[test]
fn sticky_partitioner_fills_batches_and_covers_all_partitions() {
    let (_dir, broker) = setup(4);
    let producer = Producer::new(&broker, ProducerConfig::default().batch_size(1024)).unwrap();
    let futures: Vec<_> = (0..4000)
        .map(|i| {
            producer
                .send_async(ProducerRecord::new("t", format!("value {i:06}")))
                .unwrap()
        })
        .collect();
    producer.flush().unwrap();
    let mut used = BTreeSet::new();
    let mut switches = 0;
    let mut previous = None;
    for f in &futures {
        let p = f.wait().unwrap().partition;
        used.insert(p);
        if previous.is_some_and(|q| q != p) {
            switches += 1;
        }
        previous = Some(p);
    }
    assert_eq!(
        used,
        (0..4).collect::<BTreeSet<u32>>(),
        "every partition gets keyless records"
    );
    // Sticky: a partition keeps keyless records for a whole batch (~50 records of ~20 bytes in
    // 1 KiB), so the partition changes about once per batch, not once per record.
    assert!(switches < 4000 / 20, "{switches} switches");
    assert!(switches >= 4, "{switches} switches");
}

struct AlwaysTwo {
    batches: Arc<AtomicUsize>,
}

impl Partitioner for AlwaysTwo {
    fn partition(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: u32,
    ) -> u32 {
        assert_eq!(topic, "t");
        assert_eq!(partitions, 4);
        2
    }

    fn on_new_batch(&self, topic: &str, partitions: u32, prev_partition: u32) {
        assert_eq!((topic, partitions), ("t", 4));
        if prev_partition == 2 {
            self.batches.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn custom_partitioner_is_used() {
    let (_dir, broker) = setup(4);
    let batches = Arc::new(AtomicUsize::new(0));
    let config = ProducerConfig::default().partitioner(AlwaysTwo {
        batches: Arc::clone(&batches),
    });
    let producer = Producer::new(&broker, config).unwrap();
    for i in 0..20 {
        let key = format!("key-{i}");
        assert_eq!(
            producer
                .send(ProducerRecord::new("t", "v").key(key))
                .unwrap()
                .partition,
            2
        );
        assert_eq!(
            producer
                .send(ProducerRecord::new("t", "keyless"))
                .unwrap()
                .partition,
            2
        );
    }
    assert!(batches.load(Ordering::SeqCst) >= 1);
    // `send_all` asks it too.
    let sent = producer
        .send_all((0..50).map(|i| ProducerRecord::new("t", "v").key(format!("key-{i}"))))
        .unwrap();
    producer.flush().unwrap();
    assert!(sent
        .metadata()
        .iter()
        .all(|m| m.as_ref().unwrap().partition == 2));
    // An explicit partition still wins over a custom partitioner.
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").key("k").partition(0))
            .unwrap()
            .partition,
        0
    );
}

struct OutOfRange;

impl Partitioner for OutOfRange {
    fn partition(&self, _: &str, _: Option<&[u8]>, _: Option<&[u8]>, partitions: u32) -> u32 {
        partitions
    }
}

#[test]
fn a_partitioner_answer_out_of_range_is_an_error() {
    let (_dir, broker) = setup(3);
    let producer =
        Producer::new(&broker, ProducerConfig::default().partitioner(OutOfRange)).unwrap();
    let err = producer.send(ProducerRecord::new("t", "v")).unwrap_err();
    assert!(
        matches!(err, Error::UnknownPartition { partition: 3, .. }),
        "{err}"
    );
}

#[test]
fn explicit_partition_wins_and_is_validated() {
    let (_dir, broker) = setup(3);
    let producer = Producer::with_defaults(&broker).unwrap();
    let key = "a-little-bit-long-string"; // hashes to partition 2 of 3
    assert_eq!(partition_for_key(key.as_bytes(), 3), 2);
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").key(key))
            .unwrap()
            .partition,
        2
    );
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").key(key).partition(0))
            .unwrap()
            .partition,
        0
    );
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").partition(1))
            .unwrap()
            .partition,
        1
    );

    for bad in [3, 4, u32::MAX] {
        let err = producer
            .send(ProducerRecord::new("t", "v").partition(bad))
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnknownPartition { topic, partition } if topic == "t" && *partition == bad),
            "{err}"
        );
        let err = producer
            .send_async(ProducerRecord::new("t", "v").partition(bad))
            .unwrap_err();
        assert!(matches!(err, Error::UnknownPartition { .. }), "{err}");
    }

    // After the topic grows, the new partition is accepted.
    broker.add_partitions("t", 5).unwrap();
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").partition(4))
            .unwrap()
            .partition,
        4
    );
    // And keys spread over the new count.
    let key = "a-little-bit-longer-string";
    let expected = partition_for_key(key.as_bytes(), 5);
    assert_eq!(
        producer
            .send(ProducerRecord::new("t", "v").key(key))
            .unwrap()
            .partition,
        expected
    );
}
