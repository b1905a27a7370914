//! Streams applications running for real: stream threads, consumer group, changelogs,
//! snapshots, several instances, and bad topologies. Waits poll for a condition with a generous
//! deadline; nothing asserts on timing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, Consumed, Error, Grouped, LongCodec, Materialized, Produced, Producer, ProducerRecord,
    Streams, StreamsBuilder, StreamsConfig, StreamsState, StringCodec, Topology,
};

const GIVE_UP: Duration = Duration::from_secs(60);

fn wordcount() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringCodec, StringCodec),
        )
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to(
            "word-counts",
            Produced::with_tombstones(StringCodec, LongCodec),
        );
    builder.build().unwrap()
}

fn setup(partitions: u32) -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path()).unwrap();
    broker.create_topic("lines", partitions).unwrap();
    broker.create_topic("word-counts", partitions).unwrap();
    (dir, broker)
}

fn config(app: &str) -> StreamsConfig {
    StreamsConfig::new(app).commit_interval(Duration::from_millis(20))
}

fn produce_lines(broker: &Broker, lines: &[String]) {
    let producer = Producer::with_defaults(broker).unwrap();
    for (i, line) in lines.iter().enumerate() {
        producer
            .send_async(ProducerRecord::new("lines", line.clone()).key(format!("k{i}")))
            .unwrap();
    }
    producer.flush().unwrap();
}

fn expected_counts(lines: &[String]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for word in line.split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

fn lines(n: usize, seed: usize) -> Vec<String> {
    let words = [
        "tide", "log", "stream", "table", "window", "join", "count", "key",
    ];
    (0..n)
        .map(|i| {
            (0..(i % 5 + 1))
                .map(|j| words[(i * 7 + j * 3 + seed) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Waits until the queryable store holds exactly `expected`.
fn wait_for_counts(streams: &[&Streams], expected: &BTreeMap<String, i64>) {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let mut seen = BTreeMap::new();
        for s in streams {
            if let Ok(store) = s.store::<String, i64>("counts") {
                if let Ok(all) = store.all() {
                    seen.extend(all);
                }
            }
        }
        if &seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counts did not converge: {seen:?} != {expected:?}; errors: {:?}",
            streams.iter().map(|s| s.error()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The latest count per word in the output topic.
fn output_counts(broker: &Broker) -> BTreeMap<String, i64> {
    let mut latest = BTreeMap::new();
    let topic = broker.topic("word-counts").unwrap();
    for partition in topic.partitions().unwrap() {
        let log = partition.log().unwrap();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let records = log.read(offset, 1 << 20).unwrap();
            for r in records.records().unwrap() {
                let key = String::from_utf8(r.record.key.unwrap().to_vec()).unwrap();
                let value = i64::from_be_bytes(r.record.value.unwrap()[..].try_into().unwrap());
                latest.insert(key, value);
                offset = r.offset + 1;
            }
        }
    }
    latest
}

#[test]
fn wordcount_runs_commits_and_answers_queries() {
    let (_dir, broker) = setup(3);
    let input = lines(500, 0);
    produce_lines(&broker, &input);
    let streams = Streams::new(&broker, wordcount(), config("wc").num_stream_threads(2)).unwrap();
    assert_eq!(streams.state(), StreamsState::Created);
    streams.start().unwrap();
    let expected = expected_counts(&input);
    wait_for_counts(&[&streams], &expected);
    assert!(streams.wait_for_state(StreamsState::Running, GIVE_UP));
    // Both threads have tasks: 3 repartition tasks + 3 source tasks.
    assert_eq!(streams.local_tasks().len(), 6);
    streams.close().unwrap();
    assert_eq!(streams.state(), StreamsState::NotRunning);
    assert_eq!(output_counts(&broker), expected);
    assert_eq!(
        streams.metrics().processed,
        500 + expected.values().sum::<i64>() as u64
    );
    // Input offsets were committed: the group's lag is zero.
    let lag = broker.group_lag("wc").unwrap();
    assert!(lag.iter().all(|p| p.lag == Some(0)), "{lag:?}");
    // Internal topics exist with the right partitioning.
    assert_eq!(
        broker
            .topic("wc-counts-changelog")
            .unwrap()
            .partition_count(),
        3
    );
}

#[test]
fn restart_restores_from_snapshot_and_changelog_tail() {
    let (dir, broker) = setup(2);
    let first = lines(300, 1);
    produce_lines(&broker, &first);
    let streams = Streams::new(&broker, wordcount(), config("wc")).unwrap();
    streams.start().unwrap();
    wait_for_counts(&[&streams], &expected_counts(&first));
    streams.close().unwrap();
    drop(streams);
    // A clean close left snapshots.
    let snapshots: Vec<_> = walk(&dir.path().join("streams-state/wc"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    assert!(!snapshots.is_empty());

    // More input while stopped; a restart continues the counts.
    let second = lines(200, 2);
    produce_lines(&broker, &second);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let streams = Streams::new(&broker, wordcount(), config("wc")).unwrap();
    streams.start().unwrap();
    wait_for_counts(&[&streams], &expected_counts(&all));
    streams.close().unwrap();
    // The snapshots of the clean close covered the whole changelog: nothing was replayed.
    assert_eq!(streams.metrics().restored, 0);
    drop(streams);

    // Damaged and missing snapshots only cost time: the changelog has everything.
    for (i, path) in snapshots.iter().enumerate() {
        if i % 2 == 0 {
            std::fs::write(path, b"garbage").unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let streams = Streams::new(&broker, wordcount(), config("wc")).unwrap();
    streams.start().unwrap();
    wait_for_counts(&[&streams], &expected_counts(&all));
    streams.close().unwrap();
    // Without usable snapshots the stores came back from their changelogs.
    assert!(streams.metrics().restored > 0);
    assert_eq!(output_counts(&broker), expected_counts(&all));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn two_instances_share_tasks_and_hand_them_over() {
    let (_dir, broker) = setup(4);
    let a = Streams::new(&broker, wordcount(), config("shared")).unwrap();
    let b = Streams::new(&broker, wordcount(), config("shared")).unwrap();
    a.start().unwrap();
    b.start().unwrap();
    let first = lines(400, 3);
    produce_lines(&broker, &first);
    wait_for_counts(&[&a, &b], &expected_counts(&first));
    let deadline = Instant::now() + GIVE_UP;
    while a.local_tasks().is_empty() || b.local_tasks().is_empty() {
        assert!(Instant::now() < deadline, "tasks not shared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ta, tb) = (a.local_tasks(), b.local_tasks());
    assert!(ta.iter().all(|t| !tb.contains(t)), "{ta:?} / {tb:?}");
    assert_eq!(ta.len() + tb.len(), 8);

    // One instance leaves; the other takes its tasks, restores their stores, and goes on.
    a.close().unwrap();
    let second = lines(300, 4);
    produce_lines(&broker, &second);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    wait_for_counts(&[&b], &expected_counts(&all));
    assert_eq!(b.local_tasks().len(), 8);
    b.close().unwrap();
    assert_eq!(output_counts(&broker), expected_counts(&all));
}

#[test]
fn bad_topologies_are_refused_with_clear_errors() {
    // A source topic that does not exist.
    let (_dir, broker) = setup(2);
    let builder = StreamsBuilder::new();
    builder
        .stream("missing", Consumed::with(StringCodec, StringCodec))
        .to("lines", Produced::with(StringCodec, StringCodec));
    let err = Streams::new(&broker, builder.build().unwrap(), config("x"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::InvalidTopology(m) if m.contains("`missing`")),
        "{err}"
    );

    // Joined topics with different partition counts.
    broker.create_topic("three", 3).unwrap();
    let builder = StreamsBuilder::new();
    let table = builder.table(
        "three",
        Consumed::with(StringCodec, StringCodec),
        Materialized::named("t"),
    );
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .join(&table, |l: &String, r: &String| format!("{l}{r}"))
        .to("word-counts", Produced::with(StringCodec, StringCodec));
    let err = Streams::new(&broker, builder.build().unwrap(), config("x"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::InvalidTopology(m) if m.contains("co-partitioning") && m.contains("`three`: 3")),
        "{err}"
    );

    // A cycle through topics.
    let builder = StreamsBuilder::new();
    builder
        .stream("a", Consumed::with(StringCodec, StringCodec))
        .to("b", Produced::with(StringCodec, StringCodec));
    builder
        .stream("b", Consumed::with(StringCodec, StringCodec))
        .to("a", Produced::with(StringCodec, StringCodec));
    let err = builder.build().err().unwrap();
    assert!(
        matches!(&err, Error::InvalidTopology(m) if m.contains("cycle")),
        "{err}"
    );

    // A missing codec after a type change.
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .map(|k, v| (v, k.len()))
        .group_by_key(Grouped::default())
        .count();
    let err = builder.build().err().unwrap();
    assert!(
        matches!(&err, Error::InvalidTopology(m) if m.contains("codec")),
        "{err}"
    );

    // A bad application id.
    let err = Streams::new(&broker, wordcount(), StreamsConfig::new("no spaces"))
        .err()
        .unwrap();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            key: "application_id",
            ..
        }
    ));
}

#[test]
fn a_failing_processor_stops_the_application_with_its_error() {
    let (_dir, broker) = setup(1);
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .map_values(|v: String| {
            assert!(v != "poison", "poison record");
            v
        })
        .to("word-counts", Produced::with(StringCodec, StringCodec));
    let streams = Streams::new(&broker, builder.build().unwrap(), config("fail")).unwrap();
    streams.start().unwrap();
    produce_lines(&broker, &["ok".to_string(), "poison".to_string()]);
    let deadline = Instant::now() + GIVE_UP;
    while streams.state() != StreamsState::Error {
        assert!(Instant::now() < deadline, "did not fail");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(streams.error().unwrap().contains("poison record"));
    let err = streams.close().err().unwrap();
    assert!(matches!(err, Error::StreamsFailed(_)));
    // The broker is fine; the poison record was not committed.
    let lag = broker.group_lag("fail").unwrap_or_default();
    assert!(
        lag.iter()
            .all(|p| p.partition.topic != "lines" || p.committed.unwrap_or(0) < 2),
        "{lag:?}"
    );
}

#[test]
fn windowed_counts_are_queryable_while_running() {
    use tidelog::TimeWindows;
    let (_dir, broker) = setup(2);
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_no_grace(Duration::from_secs(60)).unwrap())
        .count_with(Materialized::named("per-minute"));
    let streams = Streams::new(&broker, builder.build().unwrap(), config("win")).unwrap();
    streams.start().unwrap();
    let producer = Producer::with_defaults(&broker).unwrap();
    // user-a: 3 clicks in the first minute, 1 in the second; user-b: 2 in the first.
    for (user, ts) in [
        ("a", 1_000),
        ("a", 2_000),
        ("b", 3_000),
        ("a", 59_999),
        ("b", 4_000),
        ("a", 60_000),
    ] {
        producer
            .send(
                ProducerRecord::new("lines", "click")
                    .key(user)
                    .timestamp(ts),
            )
            .unwrap();
    }
    let store = streams.window_store::<String, i64>("per-minute").unwrap();
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let a = store.fetch(&"a".to_string(), 0, 120_000).unwrap();
        let b = store.fetch(&"b".to_string(), 0, 120_000).unwrap();
        if a == vec![(0, 3), (60_000, 1)] && b == vec![(0, 2)] {
            break;
        }
        assert!(Instant::now() < deadline, "a: {a:?}, b: {b:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The wrong kind of store is a clear error.
    assert!(streams.store::<String, i64>("per-minute").is_err());
    assert!(streams.window_store::<String, i64>("nope").is_err());
    streams.close().unwrap();
}

#[test]
fn a_thread_too_slow_for_the_group_rejoins_and_nothing_is_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_dir, broker) = setup(1);
    let stalled = Arc::new(AtomicBool::new(false));
    let stall = Arc::clone(&stalled);
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(StringCodec, StringCodec))
        .map_values(move |v: String| {
            // The first time record "slow" comes by, take longer than max_poll_interval.
            if v == "slow" && !stall.swap(true, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(600));
            }
            v
        })
        .to("word-counts", Produced::with(StringCodec, StringCodec));
    let config = config("slow")
        .max_poll_interval(Duration::from_millis(200))
        .max_poll_records(1);
    let streams = Streams::new(&broker, builder.build().unwrap(), config).unwrap();
    streams.start().unwrap();
    let input: Vec<String> = ["a", "slow", "b", "c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    produce_lines(&broker, &input);
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let lag = broker.group_lag("slow").unwrap_or_default();
        if lag.len() == 1 && lag[0].lag == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "{lag:?} {:?}", streams.error());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stalled.load(Ordering::SeqCst));
    assert_ne!(
        streams.state(),
        StreamsState::Error,
        "{:?}",
        streams.error()
    );
    streams.close().unwrap();
    // Every input made it out at least once, in order per first appearance.
    let log = broker.partition("word-counts", 0).unwrap();
    let out: Vec<String> = log
        .log()
        .unwrap()
        .read_records(0, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect();
    for v in &input {
        assert!(out.contains(v), "{v} missing from {out:?}");
    }
    // (Typically `a` and `slow` come out twice: the stalled thread's work was not committed.)
}

#[test]
fn the_record_cache_forwards_only_the_latest_count_per_commit() {
    for (cache, expected_outputs) in [(10 << 20, 1), (0, 1000)] {
        let (_dir, broker) = setup(1);
        let input: Vec<String> = (0..1000).map(|_| "same".to_string()).collect();
        produce_lines(&broker, &input);
        let config = StreamsConfig::new("cached")
            .commit_interval(Duration::from_secs(3600))
            .cache_max_bytes(cache);
        let streams = Streams::new(&broker, wordcount(), config).unwrap();
        streams.start().unwrap();
        wait_for_counts(&[&streams], &BTreeMap::from([("same".to_string(), 1000)]));
        // Only the commit of the clean close flushes the cache.
        streams.close().unwrap();
        let end = broker.partition("word-counts", 0).unwrap().log_end_offset();
        assert_eq!(end, expected_outputs, "cache_max_bytes {cache}");
        assert_eq!(output_counts(&broker)["same"], 1000);
    }
}

/// Kafka Streams' purge of repartition topics: records every reader has committed are deleted
/// (the log start offset moves to the committed offset), so the topic does not keep everything.
#[test]
fn committed_records_of_repartition_topics_are_purged() {
    let (_dir, broker) = setup(2);
    let input = lines(400, 3);
    produce_lines(&broker, &input);
    let streams = Streams::new(
        &broker,
        wordcount(),
        config("purge").repartition_purge_interval(Duration::ZERO),
    )
    .unwrap();
    streams.start().unwrap();
    wait_for_counts(&[&streams], &expected_counts(&input));
    streams.close().unwrap();
    let repartition: Vec<_> = broker
        .topics()
        .into_iter()
        .filter(|t| t.starts_with("purge-") && t.ends_with("-repartition"))
        .collect();
    assert_eq!(repartition.len(), 1);
    let topic = broker.topic(&repartition[0]).unwrap();
    let mut written = 0;
    for p in topic.partitions().unwrap() {
        // Everything was processed and committed at close, so everything is purged.
        assert_eq!(
            p.log_start_offset(),
            p.log_end_offset(),
            "{}",
            p.partition()
        );
        written += p.log_end_offset();
    }
    assert_eq!(
        written,
        expected_counts(&input).values().sum::<i64>() as u64
    );
    // The default interval (30 s) purges nothing in a short run.
    let (_dir, broker) = setup(2);
    produce_lines(&broker, &input);
    let streams = Streams::new(&broker, wordcount(), config("keep")).unwrap();
    streams.start().unwrap();
    wait_for_counts(&[&streams], &expected_counts(&input));
    streams.close().unwrap();
    let kept = broker
        .topics()
        .into_iter()
        .find(|t| t.ends_with("-repartition"))
        .unwrap();
    let kept = broker.topic(&kept).unwrap();
    assert!(kept
        .partitions()
        .unwrap()
        .iter()
        .all(|p| p.log_start_offset() == 0));
}
