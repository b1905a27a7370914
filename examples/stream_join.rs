//! Joins: a stream of clicks enriched with a table of users, and a table-table join.
//!
//! * `users` (user id → region) is read as a `KTable`, `clicks` (user id → page) as a
//!   `KStream`. Each click is joined with its user's region *at the time of the click*
//!   (stream-table join) and written to `clicks-by-region` as `"<page> from <region>"`. A click
//!   of an unknown user is dropped (an inner join), and after a user moves, their later clicks
//!   carry the new region while the earlier ones keep the old.
//! * `users` is also joined with the table `plans` (user id → plan) into a table of profiles
//!   (table-table join), written to `user-profiles`: an update on either side updates the
//!   profile; a user without a plan has no profile (a tombstone).
//!
//! All five topics have 2 partitions: joined topics must be co-partitioned (same partition
//! count, keys partitioned alike), which the producer's default partitioner gives.
//!
//! ```text
//! cargo run --example stream_join                    # in ./tidelog-data (tidelog::DEFAULT_DIR)
//! cargo run --example stream_join -- /some/dir       # or any directory
//! ```
//!
//! Each run starts over (deletes what an earlier run left), so the output is the same every
//! time. Records are stamped with increasing timestamps and printed in that order; the example
//! waits for each step to be processed before the next, so that the records of the different
//! topics are processed in that order too.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidelog::{
    Broker, Consumed, ConsumerConfig, Deserializer, Materialized, OffsetReset, Produced, Producer,
    ProducerRecord, Streams, StreamsBuilder, StreamsConfig, StreamsState, StringCodec, Topology,
};

const APP: &str = "click-regions";
const USERS: &str = "users";
const PLANS: &str = "plans";
const CLICKS: &str = "clicks";
const ENRICHED: &str = "clicks-by-region";
const PROFILES: &str = "user-profiles";
const TOPICS: [&str; 5] = [USERS, PLANS, CLICKS, ENRICHED, PROFILES];
const PARTITIONS: u32 = 2;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> AnyResult<()> {
    let mut dir = tidelog::DEFAULT_DIR.to_string();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo run --example stream_join -- [DIR]");
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
        broker.create_topic(topic, PARTITIONS)?;
    }

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
    let users = streams.store::<String, String>(USERS)?;
    let plans = streams.store::<String, String>(PLANS)?;

    let mut input = Input::new(&broker)?;
    // 1. The tables first, so that the clicks find their users.
    input.send(USERS, "alice", "europe")?;
    input.send(USERS, "bob", "americas")?;
    input.send(USERS, "carol", "asia")?;
    input.flush()?;
    wait_until(&streams, "the users are loaded", || {
        Ok(users.approximate_num_entries()? == 3)
    })?;
    input.send(PLANS, "alice", "pro")?;
    input.send(PLANS, "bob", "free")?;
    input.flush()?;
    wait_until(&streams, "the plans are loaded", || {
        Ok(plans.approximate_num_entries()? == 2)
    })?;

    // 2. Clicks; `dave` is not a user: his click is dropped.
    input.send(CLICKS, "alice", "/home")?;
    input.send(CLICKS, "bob", "/pricing")?;
    input.send(CLICKS, "carol", "/docs")?;
    input.send(CLICKS, "dave", "/home")?;
    input.send(CLICKS, "alice", "/checkout")?;
    input.flush()?;
    wait_until(&streams, "the first clicks are joined", || {
        Ok(end_offsets(&broker, ENRICHED)? == 4)
    })?;

    // 3. Bob moves to Europe and clicks again; carol takes a plan.
    input.send(USERS, "bob", "europe")?;
    input.flush()?;
    wait_until(&streams, "bob has moved", || {
        Ok(users.get(&"bob".to_string())?.as_deref() == Some("europe"))
    })?;
    input.send(PLANS, "carol", "team")?;
    input.send(CLICKS, "bob", "/docs")?;
    input.flush()?;
    wait_until(&streams, "the last click is joined", || {
        Ok(end_offsets(&broker, ENRICHED)? == 5)
    })?;
    wait_until(&streams, "the profiles are up to date", || {
        Ok(plans.approximate_num_entries()? == 3)
    })?;
    streams.close()?;

    println!("stream-table join: `{CLICKS}` ⋈ `{USERS}` -> `{ENRICHED}`");
    for (user, value) in read_all(&broker, ENRICHED)? {
        println!("  {user:<6} {}", value.unwrap_or_default());
    }
    println!("  (dave's click was dropped: no such user)");
    println!();
    println!("table-table join: `{USERS}` ⋈ `{PLANS}` -> `{PROFILES}` (every change)");
    for (user, value) in read_all(&broker, PROFILES)? {
        match value {
            Some(profile) => println!("  {user:<6} {profile}"),
            None => println!("  {user:<6} (no profile: no plan)"),
        }
    }
    Ok(())
}

fn topology() -> Result<Topology, tidelog::Error> {
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(StringCodec, StringCodec);
    let users = builder.table(USERS, strings(), Materialized::named(USERS));
    let plans = builder.table(PLANS, strings(), Materialized::named(PLANS));
    builder
        .stream(CLICKS, strings())
        .join(&users, |page: &String, region: &String| {
            format!("{page} from {region}")
        })
        .to(ENRICHED, Produced::with(StringCodec, StringCodec));
    users
        .join(&plans, |region: &String, plan: &String| {
            format!("{plan} plan, in {region}")
        })
        .to_stream()
        .to(
            PROFILES,
            Produced::with_tombstones(StringCodec, StringCodec),
        );
    builder.build()
}

/// Produces keyed string records, each stamped 1 ms after the previous one.
struct Input {
    producer: Producer,
    timestamp: i64,
}

impl Input {
    fn new(broker: &Broker) -> Result<Input, tidelog::Error> {
        // Now, not a fixed date: the topics' 7-day retention would delete older records.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(Input {
            producer: Producer::with_defaults(broker)?,
            timestamp: now,
        })
    }

    fn send(&mut self, topic: &'static str, key: &str, value: &str) -> Result<(), tidelog::Error> {
        self.timestamp += 1;
        let record = ProducerRecord::new(topic, value.to_string())
            .key(key.to_string())
            .timestamp(self.timestamp);
        self.producer.send_async(record)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), tidelog::Error> {
        self.producer.flush()
    }
}

/// Polls `done` every few milliseconds, for at most 30 s.
fn wait_until(
    streams: &Streams,
    what: &str,
    mut done: impl FnMut() -> AnyResult<bool>,
) -> AnyResult<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done()? {
        if let Some(error) = streams.error() {
            return Err(format!("the application failed: {error}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting until {what}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Records in all partitions of `topic`.
fn end_offsets(broker: &Broker, topic: &str) -> Result<u64, tidelog::Error> {
    Ok(broker
        .topic(topic)?
        .partitions()?
        .iter()
        .map(tidelog::Partition::log_end_offset)
        .sum())
}

/// Every record of `topic` as (key, value), in timestamp order.
fn read_all(broker: &Broker, topic: &str) -> AnyResult<Vec<(String, Option<String>)>> {
    let end = end_offsets(broker, topic)?;
    let mut consumer =
        broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    consumer.subscribe(&[topic])?;
    let mut records = Vec::new();
    while (records.len() as u64) < end {
        let polled = consumer.poll(Duration::from_secs(1))?;
        if polled.is_empty() {
            break;
        }
        for record in polled {
            let key: String = match &record.key {
                Some(key) => StringCodec.decode(key)?,
                None => String::new(),
            };
            let value: Option<String> = match &record.value {
                Some(value) => Some(StringCodec.decode(value)?),
                None => None,
            };
            records.push((
                record.timestamp,
                record.partition,
                record.offset,
                key,
                value,
            ));
        }
    }
    records.sort_by_key(|r| (r.0, r.1, r.2));
    Ok(records.into_iter().map(|r| (r.3, r.4)).collect())
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
