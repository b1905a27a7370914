//! Found by a review of send_all, delete_records, the tail copy, the consumer's kept batch and the
//! encoder: each test failed before its fix (the first four), or checks a suspicion that held up.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, Consumer, ConsumerConfig, Durability, LogConfig, OffsetReset, PartitionLog, Producer,
    ProducerConfig, ProducerRecord, Record, TopicPartition,
};

/// The offsets one poll returns.
fn poll_offsets(c: &mut Consumer) -> Vec<u64> {
    c.poll(Duration::from_millis(100))
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect()
}

fn no_fsync() -> LogConfig {
    LogConfig::default().durability(Durability::None)
}

/// `send_all` pulls the caller's iterator while it holds the partition queue's lock (the `more`
/// closure in `Producer::send_all` calls `records.next()` inside `PartitionQueue::push_all`).
/// An iterator that itself sends to the same partition (user code: a `map` that logs, audits,
/// forwards...) then deadlocks on the non-reentrant queue mutex.
#[test]
fn send_all_iterator_that_sends_to_the_same_partition_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let producer = broker.producer().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let p2 = producer.clone();
    std::thread::spawn(move || {
        let side = p2.clone();
        let sent = p2
            .send_all((0..3).map(move |i| {
                if i == 1 {
                    // e.g. an audit record sent while building the batch
                    side.send_async(ProducerRecord::new("t", "audit")).unwrap();
                }
                ProducerRecord::new("t", format!("v{i}"))
            }))
            .unwrap();
        p2.flush().unwrap();
        sent.wait().unwrap();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "send_all deadlocked: its iterator ran under the partition's lock"
    );
}

/// A thread that `send_all`s what arrives on the returned channel (its iterator blocks between
/// records), then flushes and checks the outcomes.
fn send_all_from_channel(
    producer: &Producer,
) -> (mpsc::Sender<ProducerRecord>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<ProducerRecord>();
    let producer = producer.clone();
    let sender = std::thread::spawn(move || {
        let sent = producer.send_all(rx).unwrap();
        producer.flush().unwrap();
        sent.wait().unwrap();
    });
    (tx, sender)
}

/// An iterator that blocks (records arriving over a channel) holds the partition's lock for
/// as long as it blocks: the producer's background thread, expiring that partition's lingering
/// batch, blocks on the lock, and every other topic's lingering batch waits with it.
#[test]
fn send_all_blocked_iterator_does_not_stall_other_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("a", 1, no_fsync()).unwrap();
    broker.create_topic_with("b", 1, no_fsync()).unwrap();
    let producer = Producer::new(
        &broker,
        ProducerConfig::default().linger(Duration::from_millis(5)),
    )
    .unwrap();
    let (tx, sender) = send_all_from_channel(&producer);
    tx.send(ProducerRecord::new("a", "first")).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // send_all now waits in rx.recv()
    let started = Instant::now();
    let other = producer
        .send_async(ProducerRecord::new("b", "other topic"))
        .unwrap();
    let outcome = other.wait_timeout(Duration::from_secs(3));
    let waited = started.elapsed();
    drop(tx);
    sender.join().unwrap();
    assert!(
        outcome.is_some(),
        "a send to another topic waited {waited:?} (linger 5 ms) for send_all's iterator"
    );
}

/// Same, for a plain `send` of another thread to the partition send_all is on.
#[test]
fn send_all_blocked_iterator_does_not_block_sends_to_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("a", 1, no_fsync()).unwrap();
    let producer = broker.producer().unwrap();
    let (tx, sender) = send_all_from_channel(&producer);
    tx.send(ProducerRecord::new("a", "first")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (done_tx, done_rx) = mpsc::channel();
    let p3 = producer.clone();
    std::thread::spawn(move || {
        let r = p3.send(ProducerRecord::new("a", "second"));
        let _ = done_tx.send(r.is_ok());
    });
    let outcome = done_rx.recv_timeout(Duration::from_secs(3));
    drop(tx);
    sender.join().unwrap();
    assert_eq!(
        outcome,
        Ok(true),
        "a send to the partition waited for send_all's (blocked) iterator"
    );
}

/// `delete_records` says the new log start "survives a restart". After a crash that loses the
/// unflushed tail below that start, recovery clamps the start to the recovered end
/// (`recovery.rs`: `.min(log_end)`), so new records get offsets below the log start that was
/// reported (and that a consumer may have committed), where Kafka restarts the log at the
/// checkpointed log start offset.
#[test]
fn delete_records_log_start_survives_a_crash_that_loses_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), no_fsync()).unwrap();
    for i in 0..10 {
        log.append(&[Record::new("k", format!("v{i}"))]).unwrap();
    }
    assert_eq!(log.delete_records(10).unwrap(), 10);
    log.simulate_crash();
    // The crash loses the last (unflushed) batch: cut a few bytes off the segment.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let log = PartitionLog::open(dir.path(), no_fsync()).unwrap();
    let info = log.append(&[Record::new("k", "after")]).unwrap();
    assert!(
        log.log_start_offset() >= 10 && info.base_offset >= 10,
        "log start {} and new record at {}: below the start delete_records returned (10)",
        log.log_start_offset(),
        info.base_offset
    );
}

// ------------------------------------------------------------------ checks that should pass

/// Tail cache vs delete_records / truncate / roll: a read never returns a removed batch.
#[test]
fn tail_cache_never_returns_deleted_or_truncated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), no_fsync()).unwrap();
    for i in 0..5 {
        log.append(&[Record::new("k", format!("v{i}"))]).unwrap();
    }
    log.delete_records(5).unwrap();
    assert!(log.read(4, 1 << 20).is_err());
    log.append(&[Record::new("k", "v5")]).unwrap();
    log.truncate_to(5).unwrap();
    log.append(&[Record::new("k", "new5")]).unwrap();
    let r = log.read_records(5, 1 << 20).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].record.value.as_deref(), Some(&b"new5"[..]));
    // truncate below the start empties the log
    log.truncate_to(2).unwrap();
    assert!(log.read(5, 1 << 20).is_err());
    log.append(&[Record::new("k", "x")]).unwrap();
    let r = log.read_records(2, 1 << 20).unwrap();
    assert_eq!(r[0].record.value.as_deref(), Some(&b"x"[..]));
}

/// The consumer's partial batch across polls, seeks and delete_records.
#[test]
fn consumer_partial_batch_across_polls_and_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic_with("t", 1, no_fsync()).unwrap();
    let p = broker.partition("t", 0).unwrap();
    let batch: Vec<Record> = (0..10)
        .map(|i| Record::from_value(format!("{i}")))
        .collect();
    p.log().unwrap().append(&batch).unwrap();
    p.log().unwrap().append(&batch).unwrap();
    let mut c = broker
        .consumer(
            ConsumerConfig::default()
                .max_poll_records(3)
                .auto_offset_reset(OffsetReset::Earliest),
        )
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    c.assign(std::slice::from_ref(&tp)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.extend(poll_offsets(&mut c));
    }
    assert_eq!(seen, (0..9).collect::<Vec<_>>());
    c.seek(&tp, 4).unwrap();
    let got = poll_offsets(&mut c);
    assert_eq!(got, [4, 5, 6]);
    p.delete_records(15).unwrap();
    c.seek(&tp, 12).unwrap();
    let got = poll_offsets(&mut c);
    assert_eq!(got, [15, 16, 17]);
    let got = poll_offsets(&mut c);
    assert_eq!(got, [18, 19]);
}

/// Records of one partition keep the order sent, across runs, with failures mixed in, and
/// every record's metadata has the offset it was stored at.
#[test]
fn send_all_order_and_offsets_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker
        .create_topic_with("t", 3, no_fsync().max_message_bytes(500))
        .unwrap();
    let producer = Producer::new(&broker, ProducerConfig::default().batch_size(300)).unwrap();
    let records: Vec<ProducerRecord> = (0..600)
        .map(|i| {
            let len = if i % 37 == 0 { 600 } else { i % 50 };
            let r = ProducerRecord::new("t", "x".repeat(len)).header("i", i.to_string());
            if i % 11 == 0 {
                r.partition(7)
            } else {
                r.partition(((i / 3) % 3) as u32)
            }
        })
        .collect();
    let sent = producer.send_all(records).unwrap();
    producer.flush().unwrap();
    let meta = sent.metadata();
    assert_eq!(meta.len(), 600);
    for (i, m) in meta.iter().enumerate() {
        let bad = i % 37 == 0 || i % 11 == 0;
        assert_eq!(m.is_err(), bad, "record {i}: {m:?}");
        if let Ok(m) = m {
            let log = broker.partition("t", m.partition).unwrap();
            let got = log.log().unwrap().read_records(m.offset, 1).unwrap();
            let rec = got.iter().find(|r| r.offset == m.offset).unwrap();
            assert_eq!(
                rec.record.headers[0].value.as_deref(),
                Some(i.to_string().as_bytes())
            );
            assert_eq!(sent.get(i).unwrap().wait().unwrap().offset, m.offset);
        }
    }
}

/// Encoding into a slice sized by the bounds: lengths around every varint boundary (body
/// length moving from the guessed prefix size), many headers, extreme timestamp deltas.
#[test]
fn encoder_bounds_hold_at_varint_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path(),
        no_fsync()
            .max_message_bytes(64 << 20)
            .segment_bytes(256 << 20),
    )
    .unwrap();
    let sizes = [
        0usize, 1, 55, 56, 57, 63, 64, 65, 120, 127, 128, 8180, 8183, 8184, 8191, 8192, 8200,
    ];
    for &k in &sizes {
        for &v in &sizes {
            for hdrs in [0usize, 1, 3] {
                let mut r = Record::new(vec![b'k'; k], vec![b'v'; v]).with_timestamp(-(1i64 << 61));
                for h in 0..hdrs {
                    r = r.with_header(format!("h{}", "x".repeat(h * 60)), vec![b'y'; v / 2]);
                }
                let r2 = Record::new("a", "b").with_timestamp(1i64 << 62);
                let info = log.append(&[r.clone(), r2]).unwrap();
                let got = log.read_records(info.base_offset, 1 << 26).unwrap();
                let first = got.iter().find(|x| x.offset == info.base_offset).unwrap();
                assert_eq!(first.record.key, r.key);
                assert_eq!(first.record.value, r.value);
                assert_eq!(first.record.headers.len(), hdrs);
            }
        }
    }
}
