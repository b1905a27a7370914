//! The classic Streams application: lines of text in, a running count per word out.
//!
//! Creates the topics `lines` and `word-counts` (2 partitions each), starts the wordcount
//! application on 2 stream threads, produces a short text into `lines` from another thread,
//! and prints the counts twice: from the application's store (an interactive query, while it
//! runs) and from the latest record per word in `word-counts` (after a clean close).
//!
//! ```text
//! cargo run --example wordcount                      # in ./tidelog-data (tidelog::DEFAULT_DIR)
//! cargo run --example wordcount -- /some/dir         # or any directory
//! cargo run --example wordcount -- --continue        # keep the previous run's state
//! ```
//!
//! Each run starts over: it deletes what an earlier run left (the two topics, the application's
//! internal topics, its consumer group and its state directory), so the output is the same
//! every time. With `--continue` it keeps them: the application restores its store from the
//! snapshot and changelog of the last run, reads only the new lines, and the counts go on
//! growing (twice the first run's after the second run, and so on).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tidelog::{
    Broker, Consumed, ConsumerConfig, Deserializer, Grouped, LongCodec, Materialized, OffsetReset,
    Produced, Producer, ProducerRecord, Streams, StreamsBuilder, StreamsConfig, StreamsState,
    StringCodec, Topology,
};

const APP: &str = "wordcount";
const INPUT: &str = "lines";
const OUTPUT: &str = "word-counts";
const STORE: &str = "counts";
const PARTITIONS: u32 = 2;

const TEXT: &[&str] = &[
    "All streams flow to the sea",
    "yet the sea is not full",
    "to the place the streams come from",
    "there they return again",
    "a log is a stream and a table is a log",
    "the table is the latest value of each key in the stream",
];

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> AnyResult<()> {
    let mut dir = tidelog::DEFAULT_DIR.to_string();
    let mut keep = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--continue" => keep = true,
            "-h" | "--help" => {
                println!("usage: cargo run --example wordcount -- [DIR] [--continue]");
                return Ok(());
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option `{other}` (try --help)").into())
            }
            other => dir = other.to_string(),
        }
    }
    let broker = Broker::open(&dir)?;
    if !keep {
        reset(&broker)?;
    }
    for topic in [INPUT, OUTPUT] {
        match broker.create_topic(topic, PARTITIONS) {
            Ok(_) | Err(tidelog::Error::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    // The application: split lines into lowercase words, re-key by word (through a
    // repartition topic, so that each word is counted by one task), count into the store
    // `counts`, and write every change of a count to `word-counts`.
    let streams = Streams::new(
        &broker,
        topology()?,
        StreamsConfig::new(APP)
            .num_stream_threads(2)
            .commit_interval(Duration::from_millis(100)),
    )?;
    streams.start()?;
    if !streams.wait_for_state(StreamsState::Running, Duration::from_secs(30)) {
        return Err(format!("the application did not start: {:?}", streams.error()).into());
    }
    println!(
        "{APP}: running with 2 stream threads and {} tasks",
        streams.local_tasks().len()
    );

    // Lines arrive from another thread while the application runs.
    let producer_broker = broker.clone();
    let producer = std::thread::spawn(move || -> Result<(), tidelog::Error> {
        let producer = Producer::with_defaults(&producer_broker)?;
        for line in TEXT {
            producer.send_async(ProducerRecord::new(INPUT, *line))?;
        }
        producer.flush()
    });
    producer
        .join()
        .map_err(|_| "the producer thread panicked")??;
    let lines = total_records(&broker, INPUT)?;
    println!(
        "produced {} lines ({lines} in `{INPUT}` in all)",
        TEXT.len()
    );

    // Every run appends the whole text, so the counts are `runs` times those of the text.
    let runs = (lines / TEXT.len() as u64) as i64;
    let expected: BTreeMap<String, i64> = count_words(TEXT)
        .into_iter()
        .map(|(word, n)| (word, n * runs))
        .collect();

    // Interactive query: read the running application's store until it has counted everything.
    let store = streams.store::<String, i64>(STORE)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let queried = loop {
        let all: BTreeMap<String, i64> = store.all()?.into_iter().collect();
        if all == expected {
            break all;
        }
        if let Some(error) = streams.error() {
            return Err(format!("the application failed: {error}").into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the counts did not reach the expected ones in 30 s (an earlier run was \
                 interrupted? run without --continue to start over); store: {all:?}"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "interactive query: {} distinct words; `the` -> {:?}, `stream` -> {:?}",
        queried.len(),
        store.get(&"the".to_string())?,
        store.get(&"stream".to_string())?
    );

    // A clean close commits: outputs flushed, store snapshotted, input offsets committed.
    streams.close()?;
    let lag: u64 = broker
        .group_lag(APP)?
        .iter()
        .map(|p| p.lag.unwrap_or(p.log_end_offset))
        .sum();
    println!("closed cleanly; the application has {lag} input records left (lag)");

    // The output topic: every count change; the latest record per word is the count.
    let from_topic = latest_counts(&broker)?;
    println!();
    println!("{:<10} {:>6} {:>6}", "word", "store", "topic");
    let mut rows: Vec<(&String, &i64)> = queried.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (word, count) in rows {
        let topic = from_topic
            .get(word)
            .map_or_else(|| "-".to_string(), i64::to_string);
        println!("{word:<10} {count:>6} {topic:>6}");
    }
    if from_topic != queried {
        return Err("the output topic disagrees with the store".into());
    }
    println!();
    println!(
        "store and output topic agree on all {} words",
        queried.len()
    );
    Ok(())
}

fn topology() -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(StringCodec, StringCodec))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(StringCodec, StringCodec),
        )
        .count_with(Materialized::named(STORE))
        .to_stream()
        .to(OUTPUT, Produced::with_tombstones(StringCodec, LongCodec));
    builder.build()
}

fn count_words(text: &[&str]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in text {
        for word in line.split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

/// Records in all partitions of `topic`.
fn total_records(broker: &Broker, topic: &str) -> Result<u64, tidelog::Error> {
    Ok(broker
        .topic(topic)?
        .partitions()?
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum())
}

/// Reads `word-counts` from the beginning; the latest count of each word.
fn latest_counts(broker: &Broker) -> AnyResult<BTreeMap<String, i64>> {
    let end = total_records(broker, OUTPUT)?;
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    consumer.subscribe(&[OUTPUT])?;
    let mut latest = BTreeMap::new();
    let mut seen = 0;
    while seen < end {
        let records = consumer.poll(Duration::from_secs(1))?;
        if records.is_empty() {
            break;
        }
        for record in records {
            seen += 1;
            let (Some(key), Some(value)) = (record.key, record.value) else {
                continue;
            };
            let word: String = StringCodec.decode(&key)?;
            let count: i64 = LongCodec.decode(&value)?;
            latest.insert(word, count);
        }
    }
    Ok(latest)
}

/// Deletes what an earlier run left: the topics, the application's internal topics
/// (`wordcount-…-changelog`, `wordcount-…-repartition`), its group and its state directory.
fn reset(broker: &Broker) -> Result<(), tidelog::Error> {
    let prefix = format!("{APP}-");
    for topic in broker.topics() {
        if topic == INPUT || topic == OUTPUT || topic.starts_with(&prefix) {
            broker.delete_topic(&topic)?;
        }
    }
    match broker.delete_group(APP) {
        Ok(()) | Err(tidelog::Error::UnknownGroup(_)) => {}
        Err(e) => return Err(e),
    }
    let state = broker.dir().join("streams-state").join(APP);
    match std::fs::remove_dir_all(&state) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(tidelog::Error::Io {
            context: format!("removing {}", state.display()),
            source,
        }),
    }
}
