//! Clicks per user per minute, on event time, with late records.
//!
//! Reads `clicks` (user → page, stamped with when the click happened) and counts each user's
//! clicks in tumbling one-minute windows with a 10-second grace period, twice:
//!
//! * every update of a count, as it happens, to `clicks-per-minute`;
//! * only each window's final count, once the window has closed (`EmitStrategy::OnWindowClose`),
//!   to `final-clicks-per-minute`.
//!
//! The clicks arrive out of order: one is late but within the grace period (counted in its
//! window), one is later than that (its window is closed: dropped, and counted in the
//! application's `dropped_late` metric). Windows close on **stream time**, the largest timestamp
//! the task has seen, not on the wall clock. One partition, so that all users share one stream
//! time (each partition's task has its own).
//!
//! ```text
//! cargo run --example windowed_counts                  # in ./tidelog-data (tidelog::DEFAULT_DIR)
//! cargo run --example windowed_counts -- /some/dir     # or any directory
//! ```
//!
//! Each run starts over (deletes what an earlier run left), so the output is the same every
//! time: times are printed as minutes:seconds from the start of the first minute.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidelog::{
    Broker, Consumed, ConsumerConfig, Deserializer, EmitStrategy, Grouped, LongCodec, Materialized,
    OffsetReset, Produced, Producer, ProducerRecord, Streams, StreamsBuilder, StreamsConfig,
    StreamsState, StringCodec, TimeWindows, Topology, Windowed, WindowedCodec,
};

const APP: &str = "click-counter";
const CLICKS: &str = "clicks";
const UPDATES: &str = "clicks-per-minute";
const FINALS: &str = "final-clicks-per-minute";
const TOPICS: [&str; 3] = [CLICKS, UPDATES, FINALS];
const STORE: &str = "clicks-per-minute";
const MINUTE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

/// The clicks in the order they arrive: (user, page, seconds after the first minute began).
const INPUT: &[(&str, &str, i64)] = &[
    ("ann", "/home", 5),
    ("bob", "/home", 20),
    ("ann", "/pricing", 40),
    ("ann", "/docs", 65),     // minute 1 begins; minute 0 stays open until 1:10
    ("bob", "/pricing", 58),  // late, but within the grace period: counted in minute 0
    ("ann", "/checkout", 90), // stream time 1:30: minute 0 is closed
    ("ann", "/home", 50),     // too late: minute 0 closed at 1:10; dropped
    ("bob", "/docs", 135),    // stream time 2:15: minute 1 closes
    ("cat", "/home", 200),    // stream time 3:20: minute 2 closes
];

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> AnyResult<()> {
    let mut dir = tidelog::DEFAULT_DIR.to_string();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo run --example windowed_counts -- [DIR]");
                return Ok(());
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option `{other}` (try --help)").into())
            }
            other => dir = other.to_string(),
        }
    }
    let broker = Broker::open(&dir)?;
    reset(&broker)?;
    for topic in TOPICS {
        broker.create_topic(topic, 1)?;
    }

    let streams = Streams::new(
        &broker,
        topology()?,
        StreamsConfig::new(APP).commit_interval(Duration::from_millis(100)),
    )?;
    streams.start()?;
    if !streams.wait_for_state(StreamsState::Running, Duration::from_secs(30)) {
        return Err(format!("the application did not start: {:?}", streams.error()).into());
    }

    // Event times: recent (the topics' 7-day retention would delete older records), and the
    // start of a minute, so that the windows print as whole minutes.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let base = now - now % 60_000 - 10 * 60_000;
    let producer = Producer::with_defaults(&broker)?;
    println!("clicks, in the order they arrive:");
    for (user, page, seconds) in INPUT {
        println!("  {:<4} {:<10} at {}", user, page, clock(seconds * 1000));
        producer.send_async(
            ProducerRecord::new(CLICKS, page.to_string())
                .key(user.to_string())
                .timestamp(base + seconds * 1000),
        )?;
    }
    producer.flush()?;

    // 8 updates (every click but the dropped one); 4 final counts: minute 0 (ann, bob),
    // minute 1 (ann) and minute 2 (bob).
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&broker, UPDATES)? < 8 || count(&broker, FINALS)? < 4 {
        if let Some(error) = streams.error() {
            return Err(format!("the application failed: {error}").into());
        }
        if Instant::now() > deadline {
            return Err("the counts did not arrive in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    // Interactive query: the windows the store still holds (it keeps a window for its size
    // plus the grace period after stream time passes it).
    let store = streams.window_store::<String, i64>(STORE)?;
    let mut held = store.fetch_all(base, base + 10 * 60_000)?;
    held.sort_by(|a, b| (a.0.window.start, &a.0.key).cmp(&(b.0.window.start, &b.0.key)));
    println!();
    println!("the store, queried while the application runs:");
    for (windowed, n) in held {
        println!("  {}", row(&windowed, base, n));
    }
    streams.close()?;
    println!(
        "records dropped as late: {} (ann's click at 0:50, once by each of the two counts: it \
         arrived after minute 0 closed at 1:10)",
        streams.metrics().dropped_late
    );

    println!();
    println!("`{UPDATES}` (every update):");
    for (windowed, n) in read_all(&broker, UPDATES)? {
        println!("  {}", row(&windowed, base, n));
    }
    println!();
    println!("`{FINALS}` (once per window, when it closes):");
    for (windowed, n) in read_all(&broker, FINALS)? {
        println!("  {}", row(&windowed, base, n));
    }
    println!("  (minute 3, cat's, is still open: stream time 3:20 < 4:10)");
    Ok(())
}

fn topology() -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    let per_user = builder
        .stream(CLICKS, Consumed::with(StringCodec, StringCodec))
        .group_by_key(Grouped::with(StringCodec, StringCodec));
    let windows = TimeWindows::of_size_with_grace(MINUTE, GRACE)?;
    let output = || Produced::with_tombstones(WindowedCodec::new(StringCodec, MINUTE), LongCodec);
    per_user
        .windowed_by(windows)
        .count_with(Materialized::named(STORE))
        .to_stream()
        .to(UPDATES, output());
    per_user
        .windowed_by(windows)
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count_with(Materialized::named("final-counts"))
        .to_stream()
        .to(FINALS, output());
    builder.build()
}

/// `m:ss` for `ms` milliseconds.
fn clock(ms: i64) -> String {
    format!("{}:{:02}", ms / 60_000, ms % 60_000 / 1000)
}

fn row(windowed: &Windowed<String>, base: i64, n: i64) -> String {
    format!(
        "{:<4} [{} - {})  {n}",
        windowed.key,
        clock(windowed.window.start - base),
        clock(windowed.window.end - base)
    )
}

fn count(broker: &Broker, topic: &str) -> Result<u64, tidelog::Error> {
    Ok(broker
        .topic(topic)?
        .partitions()?
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum())
}

/// Every (windowed user, count) of `topic`, in offset order.
fn read_all(broker: &Broker, topic: &str) -> AnyResult<Vec<(Windowed<String>, i64)>> {
    let end = count(broker, topic)?;
    let keys = WindowedCodec::new(StringCodec, MINUTE);
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    consumer.subscribe(&[topic])?;
    let (mut out, mut seen) = (Vec::new(), 0);
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
            let windowed: Windowed<String> = keys.decode(&key)?;
            out.push((windowed, LongCodec.decode(&value)?));
        }
    }
    Ok(out)
}

/// Deletes what an earlier run left: the topics, the application's internal topics, its
/// group and its state directory.
fn reset(broker: &Broker) -> Result<(), tidelog::Error> {
    let prefix = format!("{APP}-");
    for topic in broker.topics() {
        if TOPICS.contains(&topic.as_str()) || topic.starts_with(&prefix) {
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
