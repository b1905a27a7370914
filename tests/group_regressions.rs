//! Regression tests for bugs a review of the consumer-group code found: each failed before its
//! fix (committed offsets lost after compaction, partitions stuck after a static take-over, a
//! waiting cooperative member fenced, missed wake-ups, a recreated topic never read, a deleted
//! group back after a restart, repeated expiry after a rejoin inside a long poll).

use std::time::{Duration, Instant};
use tidelog::*;

fn bcfg() -> BrokerConfig {
    BrokerConfig::default()
        .maintenance_interval(Duration::from_millis(10))
        .topic_defaults(LogConfig::default().durability(Durability::None))
}
fn member(group: &str) -> ConsumerConfig {
    ConsumerConfig::default()
        .group_id(group)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}
fn tp(t: &str, p: u32) -> TopicPartition {
    TopicPartition::new(t, p)
}

/// Commits survive compaction of `__consumer_offsets` and a restart.
#[test]
fn commits_survive_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
        broker.create_topic("t", 4).unwrap();
        let mut c = broker.consumer(member("g")).unwrap();
        c.assign(&[tp("t", 0), tp("t", 1), tp("t", 2), tp("t", 3)])
            .unwrap();
        c.commit_sync_offsets(&[
            (tp("t", 0), OffsetAndMetadata::new(1)),
            (tp("t", 1), OffsetAndMetadata::new(1)),
            (tp("t", 2), OffsetAndMetadata::new(1)),
        ])
        .unwrap();
        let log = broker.partition("__consumer_offsets", 0).unwrap();
        let log = log.log().unwrap();
        log.roll_now().unwrap();
        c.commit_sync_offsets(&[(tp("t", 2), OffsetAndMetadata::new(5))])
            .unwrap();
        c.commit_sync_offsets(&[(tp("t", 3), OffsetAndMetadata::new(7))])
            .unwrap();
        log.roll_now().unwrap();
        log.compact_at(0).unwrap();
        drop(c);
    }
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    let c = broker.consumer(member("g")).unwrap();
    let got = c
        .committed(&[tp("t", 0), tp("t", 1), tp("t", 2), tp("t", 3)])
        .unwrap();
    println!("{got:?}");
    assert_eq!(got[2].as_ref().map(|o| o.offset), Some(5));
    assert_eq!(got[3].as_ref().map(|o| o.offset), Some(7));
}

/// A cooperative member waiting for a partition still commits what it holds.
#[test]
fn a_waiting_cooperative_member_can_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 2).unwrap();
    broker.create_topic("u", 1).unwrap();
    let cfg = member("g").partition_assignment_strategy(CooperativeStickyAssignor);
    let mut a = broker.consumer(cfg.clone()).unwrap();
    let mut b = broker.consumer(cfg).unwrap();
    a.subscribe(&["t"]).unwrap();
    b.subscribe(&["t"]).unwrap();
    for _ in 0..10 {
        a.poll(Duration::from_millis(5)).unwrap();
        b.poll(Duration::from_millis(5)).unwrap();
    }
    println!("a {:?} b {:?}", a.assignment(), b.assignment());
    assert_eq!(a.assignment().len(), 1);
    b.subscribe(&["u"]).unwrap();
    a.poll(Duration::from_millis(5)).unwrap(); // a keeps its partition, waits for b's
    println!(
        "a {:?} meta {:?} group {:?}",
        a.assignment(),
        a.group_metadata(),
        broker.describe_group("g").unwrap().generation
    );
    let r = a.commit_sync();
    println!("commit while waiting: {r:?}");
    assert!(r.is_ok());
}

fn static_cfg(id: &str) -> ConsumerConfig {
    member("g")
        .group_instance_id(id)
        .session_timeout(Duration::from_secs(20))
}

/// A static successor does not leave partitions owned by a member that is gone.
#[test]
fn a_static_successor_leaves_no_stale_owner() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 2).unwrap();
    let mut s = broker.consumer(static_cfg("s1")).unwrap();
    s.subscribe(&["t"]).unwrap();
    for _ in 0..3 {
        s.poll(Duration::from_millis(5)).unwrap();
    }
    assert_eq!(s.assignment().len(), 2);
    let mut d = broker.consumer(member("g")).unwrap();
    d.subscribe(&["t"]).unwrap(); // gen 2: s {t-0}, d {t-1}; s has not released t-1 yet
    drop(s); // static: departs (consumer-local revoke), owners still s:{t-0,t-1}
    let mut s2 = broker.consumer(static_cfg("s1")).unwrap();
    s2.subscribe(&["t"]).unwrap(); // takes s's place; renames only its target
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        s2.poll(Duration::from_millis(5)).unwrap();
        d.poll(Duration::from_millis(5)).unwrap();
    }
    let desc = broker.describe_group("g").unwrap();
    println!(
        "s2 {:?} d {:?} state {:?}",
        s2.assignment(),
        d.assignment(),
        desc.state
    );
    assert_eq!(d.assignment(), vec![tp("t", 1)]);
}

/// A member waiting for a departed static member's partition gets it at once.
#[test]
fn a_departing_static_member_wakes_the_waiting_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 2).unwrap();
    let mut s = broker.consumer(static_cfg("s1")).unwrap();
    s.subscribe(&["t"]).unwrap();
    for _ in 0..3 {
        s.poll(Duration::from_millis(5)).unwrap();
    }
    let mut d = broker.consumer(member("g")).unwrap();
    d.subscribe(&["t"]).unwrap();
    d.poll(Duration::from_millis(5)).unwrap(); // waiting for t-1 held by s
    assert!(d.assignment().is_empty());
    drop(s); // departs: t-1 is free for d by sync's rule
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) && d.assignment().is_empty() {
        d.poll(Duration::from_millis(50)).unwrap();
    }
    println!("after {:?}: d {:?}", start.elapsed(), d.assignment());
    assert!(!d.assignment().is_empty());
}

/// A topic deleted and created again is read afresh by a cooperative member.
#[test]
fn a_recreated_topic_is_read_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 1).unwrap();
    let cfg = member("g").partition_assignment_strategy(CooperativeStickyAssignor);
    let mut a = broker.consumer(cfg).unwrap();
    a.subscribe(&["t"]).unwrap();
    a.poll(Duration::from_millis(5)).unwrap();
    assert_eq!(a.assignment().len(), 1);
    broker.delete_topic("t").unwrap();
    broker.create_topic("t", 1).unwrap();
    broker
        .partition("t", 0)
        .unwrap()
        .log()
        .unwrap()
        .append(&[Record::from_value("x")])
        .unwrap();
    let mut n = 0;
    for _ in 0..20 {
        n += a.poll(Duration::from_millis(20)).unwrap().len();
    }
    println!(
        "records after recreate: {n}; assignment {:?}",
        a.assignment()
    );
    assert_eq!(n, 1);
}

/// A deleted group stays deleted after a restart.
#[test]
fn a_deleted_group_stays_deleted_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
        broker.create_topic("t", 1).unwrap();
        let mut c = broker.consumer(member("g")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        c.commit_sync_offsets(&[(tp("t", 0), OffsetAndMetadata::new(1))])
            .unwrap();
        drop(c);
        broker.delete_group("g").unwrap();
        assert!(broker.list_groups().is_empty());
    }
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    println!("{:?}", broker.list_groups());
    assert!(broker.list_groups().is_empty());
}

/// Commits, for `i` in `1..n`, offset `i` of partition `t-i` (with `metadata`) together with
/// offset `i` of `t-0` in one call, compacts `__consumer_offsets`, reopens the directory and
/// checks that every committed offset of `t-0..t-n` survived.
fn commit_compact_reopen(config: &dyn Fn() -> BrokerConfig, n: u32, metadata: &str, sync: bool) {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open_with(dir.path(), config()).unwrap();
        broker.create_topic("t", n).unwrap();
        let mut c = broker.consumer(member("g")).unwrap();
        c.assign(&[tp("t", 0)]).unwrap();
        for i in 1..n {
            let offsets = [
                (
                    tp("t", i),
                    OffsetAndMetadata::new(u64::from(i)).with_metadata(metadata),
                ),
                (tp("t", 0), OffsetAndMetadata::new(u64::from(i))),
            ];
            if sync {
                c.commit_sync_offsets(&offsets).unwrap();
            } else {
                c.commit_async_offsets(&offsets).unwrap();
            }
        }
        let p = broker.partition("__consumer_offsets", 0).unwrap();
        let log = p.log().unwrap();
        log.flush().unwrap();
        log.roll_now().unwrap();
        println!("removed {}", log.compact_at(0).unwrap());
    }
    let broker = Broker::open_with(dir.path(), config()).unwrap();
    let c = broker.consumer(member("g")).unwrap();
    let all: Vec<_> = (0..n).map(|i| tp("t", i)).collect();
    let got = c.committed(&all).unwrap();
    let missing: Vec<u32> = (0..n).filter(|&i| got[i as usize].is_none()).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} commits missing: {missing:?}",
        missing.len()
    );
    assert_eq!(got[0].as_ref().map(|c| c.offset), Some(u64::from(n - 1)));
}

/// Loading commits crosses compacted batches at a read boundary.
#[test]
fn loading_crosses_trimmed_batches_at_read_boundaries() {
    commit_compact_reopen(&bcfg, 400, &"m".repeat(4000), false);
}

/// Loading commits crosses a compacted batch that ends a segment.
#[test]
fn loading_crosses_a_trimmed_batch_ending_a_segment() {
    let config = || {
        bcfg().offsets_topic_config(
            LogConfig::default()
                .segment_bytes(1024)
                .durability(Durability::None),
        )
    };
    commit_compact_reopen(&config, 60, "", true);
}

/// A member that rejoins inside a long poll is not removed again while it waits.
#[test]
fn a_rejoin_inside_a_long_poll_is_not_expired_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 1).unwrap();
    let mut c = broker
        .consumer(member("g").max_poll_interval(Duration::from_millis(300)))
        .unwrap();
    c.subscribe(&["t"]).unwrap();
    c.poll(Duration::from_millis(5)).unwrap();
    std::thread::sleep(Duration::from_millis(800)); // removed: did not poll in time
    let g0 = broker.describe_group("g").unwrap().generation;
    c.poll(Duration::from_secs(3)).unwrap(); // idle topic: waits the whole 3 s inside poll
    let g1 = broker.describe_group("g").unwrap().generation;
    println!("generations during one 3 s poll: {}", g1 - g0);
    assert!(g1 - g0 <= 2);
}

/// Time in a rebalance listener counts as processing, as in Kafka: a callback slower than
/// `max_poll_interval` gets the member removed (it then loses its partitions and rejoins).
#[test]
fn a_listener_slower_than_max_poll_interval_gets_the_member_removed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Slow {
        assigned: Arc<AtomicUsize>,
        lost: Arc<AtomicUsize>,
    }
    impl RebalanceListener for Slow {
        fn on_partitions_assigned(&mut self, _: &mut Consumer, partitions: &[TopicPartition]) {
            if !partitions.is_empty() && self.assigned.fetch_add(1, Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(800));
            }
        }
        fn on_partitions_lost(&mut self, _: &mut Consumer, _: &[TopicPartition]) {
            self.lost.fetch_add(1, Ordering::SeqCst);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(dir.path(), bcfg()).unwrap();
    broker.create_topic("t", 1).unwrap();
    let (assigned, lost) = (Arc::default(), Arc::<AtomicUsize>::default());
    let mut c = broker
        .consumer(member("g").max_poll_interval(Duration::from_millis(300)))
        .unwrap();
    c.set_rebalance_listener(Slow {
        assigned: Arc::clone(&assigned),
        lost: Arc::clone(&lost),
    });
    c.subscribe(&["t"]).unwrap();
    let first = c.group_metadata().unwrap().member_id;
    let deadline = Instant::now() + Duration::from_secs(20);
    while lost.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        c.poll(Duration::from_millis(20)).unwrap();
    }
    assert_eq!(
        lost.load(Ordering::SeqCst),
        1,
        "the slow member was never removed"
    );
    // It joined again as a new member and gets the partition back.
    while c.assignment().is_empty() && Instant::now() < deadline {
        c.poll(Duration::from_millis(20)).unwrap();
    }
    assert_eq!(c.assignment(), vec![tp("t", 0)]);
    assert_ne!(c.group_metadata().unwrap().member_id, first);
}
