//! Topic administration: create, list, describe, delete, add partitions, change config, names,
//! restart, and one owner per directory.

use std::time::Duration;

use tidelog::{Broker, BrokerConfig, CleanupPolicy, Durability, Error, LogConfig, Record};

fn quick() -> LogConfig {
    LogConfig::default().durability(Durability::None)
}

#[test]
fn create_list_describe_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(dir.path()).unwrap();
        let orders = broker.create_topic_with("orders", 3, quick()).unwrap();
        broker
            .create_topic_with(
                "audit.log_v2",
                1,
                quick().cleanup_policy(CleanupPolicy::Compact),
            )
            .unwrap();
        assert_eq!(orders.partition_count(), 3);
        assert_eq!(
            broker.topics(),
            vec!["audit.log_v2".to_string(), "orders".to_string()]
        );
        orders
            .partition(1)
            .unwrap()
            .log()
            .unwrap()
            .append(&[Record::new("k", "v")])
            .unwrap();
        let d = broker.describe_topic("orders").unwrap();
        assert_eq!(d.partitions.len(), 3);
        assert_eq!(
            (
                d.partitions[1].log_start_offset,
                d.partitions[1].log_end_offset
            ),
            (0, 1)
        );
        assert!(d.partitions[1].size_bytes > 0);
        // Kafka's folder names.
        assert!(dir.path().join("orders-2").is_dir());
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.topics().len(), 2);
    assert_eq!(
        broker
            .topic("audit.log_v2")
            .unwrap()
            .config()
            .durability_policy(),
        Durability::None
    );
    assert_eq!(broker.partition("orders", 1).unwrap().log_end_offset(), 1);
    assert_eq!(
        broker.topic("audit.log_v2").unwrap().config(),
        quick().cleanup_policy(CleanupPolicy::Compact)
    );
}

#[test]
fn names_and_arguments_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    for bad in ["", "..", "a/b", "with space", &"x".repeat(250)] {
        assert!(
            matches!(
                broker.create_topic(bad, 1),
                Err(Error::InvalidTopicName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        broker.create_topic("zero", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        broker.create_topic_with("cfg", 1, LogConfig::default().segment_bytes(1)),
        Err(Error::InvalidConfig {
            key: "segment_bytes",
            ..
        })
    ));
    broker.create_topic("t", 2).unwrap();
    assert!(matches!(
        broker.create_topic("t", 2),
        Err(Error::TopicExists(_))
    ));
    assert!(matches!(broker.topic("nope"), Err(Error::UnknownTopic(_))));
    assert!(matches!(
        broker.partition("t", 2),
        Err(Error::UnknownPartition { partition: 2, .. })
    ));
    assert!(
        broker.topics().iter().all(|t| t == "t"),
        "failed creations leave nothing behind"
    );
}

#[test]
fn delete_removes_data_and_invalidates_handles() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let topic = broker.create_topic_with("gone", 2, quick()).unwrap();
    let partition = topic.partition(0).unwrap();
    partition
        .log()
        .unwrap()
        .append(&[Record::new("k", "v")])
        .unwrap();
    broker.delete_topic("gone").unwrap();
    assert!(matches!(broker.topic("gone"), Err(Error::UnknownTopic(_))));
    assert!(matches!(topic.partition(0), Err(Error::UnknownTopic(_))));
    assert!(matches!(partition.log(), Err(Error::UnknownTopic(_))));
    assert!(!dir.path().join("gone-0").exists());
    // The name can be used again, empty.
    let again = broker.create_topic_with("gone", 1, quick()).unwrap();
    assert_eq!(again.partition(0).unwrap().log_end_offset(), 0);
    drop((topic, partition, again, broker));
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.topic("gone").unwrap().partition_count(), 1);
    assert!(matches!(
        broker.delete_topic("never"),
        Err(Error::UnknownTopic(_))
    ));
}

#[test]
fn add_partitions_only_grows_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic_with("t", 2, quick()).unwrap();
        assert!(matches!(
            broker.add_partitions("t", 2),
            Err(Error::InvalidArgument(_))
        ));
        broker.add_partitions("t", 5).unwrap();
        assert_eq!(broker.topic("t").unwrap().partition_count(), 5);
        broker
            .partition("t", 4)
            .unwrap()
            .log()
            .unwrap()
            .append(&[Record::new("k", "v")])
            .unwrap();
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(broker.topic("t").unwrap().partition_count(), 5);
    assert_eq!(broker.partition("t", 4).unwrap().log_end_offset(), 1);
}

#[test]
fn config_changes_apply_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(dir.path()).unwrap();
        broker.create_topic_with("t", 1, quick()).unwrap();
        let changed = quick().retention(None).max_message_bytes(200);
        broker.set_topic_config("t", changed.clone()).unwrap();
        assert_eq!(broker.topic("t").unwrap().config(), changed);
        let log = broker.partition("t", 0).unwrap();
        assert!(matches!(
            log.log()
                .unwrap()
                .append(&[Record::new("k", vec![0u8; 500])]),
            Err(Error::RecordTooLarge { max: 200, .. })
        ));
        assert!(matches!(
            broker.set_topic_config("t", LogConfig::default().index_interval_bytes(0)),
            Err(Error::InvalidConfig { .. })
        ));
    }
    let broker = Broker::open(dir.path()).unwrap();
    assert_eq!(
        broker
            .topic("t")
            .unwrap()
            .config()
            .max_message_bytes(1_048_588),
        quick().retention(None)
    );
}

#[test]
fn a_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    assert!(matches!(
        Broker::open(dir.path()),
        Err(Error::DirectoryLocked { .. })
    ));
    let clone = broker.clone();
    drop(broker);
    assert!(
        matches!(Broker::open(dir.path()), Err(Error::DirectoryLocked { .. })),
        "a clone keeps it open"
    );
    drop(clone);
    Broker::open(dir.path()).unwrap();
}

#[test]
fn damaged_metadata_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    Broker::open(dir.path())
        .unwrap()
        .create_topic("t", 1)
        .unwrap();
    let path = dir.path().join("meta").join("topics");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    match Broker::open(dir.path()) {
        Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_background_thread_applies_retention_and_stops_with_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::default().maintenance_interval(Duration::from_millis(10));
    let broker = Broker::open_with(dir.path(), config).unwrap();
    let topic = broker
        .create_topic_with(
            "t",
            1,
            quick()
                .segment_bytes(1024)
                .retention(Some(Duration::from_millis(1))),
        )
        .unwrap();
    let log = topic.partition(0).unwrap();
    for i in 0..50 {
        log.log()
            .unwrap()
            .append(&[Record::new("k", format!("{i:0100}")).with_timestamp(0)])
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.log_start_offset() < 50 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        log.log_start_offset(),
        50,
        "retention ran in the background"
    );
    assert!(broker.maintenance_error().is_none());
    drop((log, topic, broker));
    // Everything closed: the directory can be opened again at once.
    if let Err(e) = Broker::open(dir.path()) {
        panic!("reopen failed: {e:?}");
    }
}

#[test]
fn handles_of_a_deleted_topic_never_touch_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    let old = broker.create_topic_with("t", 1, quick()).unwrap();
    let old_partition = old.partition(0).unwrap();
    for i in 0..10 {
        old_partition
            .log()
            .unwrap()
            .append(&[Record::new("k", format!("{i}"))])
            .unwrap();
    }
    broker.delete_topic("t").unwrap();
    let new = broker.create_topic_with("t", 1, quick()).unwrap();
    new.partition(0)
        .unwrap()
        .log()
        .unwrap()
        .append(&[Record::new("k", "fresh")])
        .unwrap();
    drop((old, old_partition)); // the old log's last handle: must not write into `t-0`
    drop((new, broker));
    let broker = Broker::open(dir.path()).unwrap();
    let p = broker.partition("t", 0).unwrap();
    assert_eq!((p.log_start_offset(), p.log_end_offset()), (0, 1));
    let records = p.log().unwrap().read_records(0, 1 << 20).unwrap();
    assert_eq!(records[0].record.value.as_deref(), Some(&b"fresh"[..]));
}

#[test]
fn partition_counts_above_the_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    for count in [tidelog::MAX_PARTITIONS + 1, u32::MAX] {
        assert!(matches!(
            broker.create_topic("t", count),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(broker.topics().is_empty(), "nothing was created");
    broker.create_topic("t", 1).unwrap();
    assert!(matches!(
        broker.add_partitions("t", u32::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(broker.topic("t").unwrap().partition_count(), 1);
    let config = BrokerConfig::default().offsets_topic_partitions(u32::MAX);
    drop(broker);
    assert!(matches!(
        Broker::open_with(dir.path(), config),
        Err(Error::InvalidConfig {
            key: "offsets_topic_partitions",
            ..
        })
    ));
}
