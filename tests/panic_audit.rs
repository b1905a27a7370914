//! Bad arguments and hand-edited files through the public API: each input here once panicked
//! (a `Duration` too large to add to `Instant::now()`, a partition count of zero read off disk).
//! Each test asserts what the call returns now: a typed error, or the documented result.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectorConfig, ConnectorState, Consumed,
    ConsumerConfig, Durability, Error, LogConfig, OffsetReset, Produced, ProducerRecord, Record,
    SourceConnector, SourceRecord, SourceTask, SourceTaskContext, Streams, StreamsBuilder,
    StreamsConfig, StreamsState, StringCodec,
};

/// How long a wait may last before the test gives up (never an expectation of speed).
const GIVE_UP: Duration = Duration::from_secs(30);

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + GIVE_UP;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Names of the threads that panicked in this test binary (recorded by a panic hook that then
/// runs the default one), so that a test can see a panic of a background thread.
fn panicked_threads() -> &'static Mutex<Vec<String>> {
    static PANICKED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static HOOK: OnceLock<()> = OnceLock::new();
    let panicked = PANICKED.get_or_init(|| Mutex::new(Vec::new()));
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current()
                .name()
                .unwrap_or("<unnamed>")
                .to_string();
            if let Some(list) = PANICKED.get() {
                list.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            }
            default(info);
        }));
    });
    panicked
}

fn quiet_log() -> LogConfig {
    LogConfig::default().durability(Durability::None)
}

// ------------------------------------------------------------------ Duration::MAX as "forever"

/// `maintenance_interval(Duration::MAX)` (maintenance never runs): the maintenance thread added
/// the interval to `Instant::now()` and panicked, leaving the broker without maintenance.
#[test]
fn maintenance_interval_of_duration_max_means_never() {
    let panicked = panicked_threads();
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerConfig::default()
            .maintenance_interval(Duration::MAX)
            .topic_defaults(quiet_log()),
    )
    .unwrap();
    let topic = broker.create_topic("t", 1).unwrap();
    let log = topic.partition(0).unwrap();
    log.log().unwrap().append(&[Record::new("k", "v")]).unwrap();
    // The thread starts its first wait right away; give it the moment it needs.
    std::thread::sleep(Duration::from_millis(100));
    drop((log, topic, broker));
    let names = panicked.lock().unwrap().clone();
    assert!(
        !names.iter().any(|n| n == "tidelog-maintenance"),
        "the maintenance thread panicked"
    );
    // Reopening finds the record: the broker closed normally.
    let broker = Broker::open(dir.path()).unwrap();
    let records = broker
        .partition("t", 0)
        .unwrap()
        .log()
        .unwrap()
        .read_records(0, 1 << 20)
        .unwrap();
    assert_eq!(records.len(), 1);
}

/// `auto_commit_interval(Duration::MAX)` passes `validate` (it is at least 1 ms), then
/// `Consumer::new` added it to `Instant::now()` and panicked.
#[test]
fn consumer_with_auto_commit_interval_of_duration_max() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerConfig::default().topic_defaults(quiet_log()),
    )
    .unwrap();
    let topic = broker.create_topic("t", 1).unwrap();
    topic
        .partition(0)
        .unwrap()
        .log()
        .unwrap()
        .append(&[Record::new("k", "v")])
        .unwrap();
    let mut consumer = broker
        .consumer(
            ConsumerConfig::default()
                .group_id("g")
                .auto_offset_reset(OffsetReset::Earliest)
                .auto_commit_interval(Duration::MAX),
        )
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    wait_for("the record", || {
        got.extend(consumer.poll(Duration::from_millis(50)).unwrap());
        !got.is_empty()
    });
    assert_eq!(got[0].offset, 0);
    assert_eq!(got[0].value.as_deref(), Some(&b"v"[..]));
}

/// `Streams::wait_for_state(state, Duration::MAX)` added the timeout to `Instant::now()`.
#[test]
fn streams_wait_for_state_with_duration_max() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerConfig::default().topic_defaults(quiet_log()),
    )
    .unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringCodec, StringCodec))
        .to("out", Produced::with(StringCodec, StringCodec));
    let streams = Streams::new(
        &broker,
        builder.build().unwrap(),
        StreamsConfig::new("wait-max"),
    )
    .unwrap();
    streams.start().unwrap();
    assert!(streams.wait_for_state(StreamsState::Running, Duration::MAX));
    streams.close().unwrap();
    // A terminal state ends the wait too, whatever the timeout.
    assert!(!streams.wait_for_state(StreamsState::Running, Duration::MAX));
    assert_eq!(streams.state(), StreamsState::NotRunning);
}

/// A source task that idles "for ever" (until it is asked to stop) on its first poll.
struct IdleForever;

impl SourceConnector for IdleForever {
    fn start(&mut self, _config: &ConnectorConfig) -> tidelog::Result<()> {
        Ok(())
    }

    fn task_configs(&self, _max_tasks: usize) -> tidelog::Result<Vec<ConnectorConfig>> {
        Ok(vec![ConnectorConfig::new("idle", "IdleForever")])
    }

    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(IdleForeverTask { context: None })
    }
}

struct IdleForeverTask {
    context: Option<SourceTaskContext>,
}

impl SourceTask for IdleForeverTask {
    fn start(
        &mut self,
        _config: &ConnectorConfig,
        context: &SourceTaskContext,
    ) -> tidelog::Result<()> {
        self.context = Some(context.clone());
        Ok(())
    }

    fn poll(&mut self) -> tidelog::Result<Vec<SourceRecord>> {
        if let Some(context) = &self.context {
            context.idle(Duration::MAX);
        }
        Ok(Vec::new())
    }
}

fn task_state(connect: &Connect, name: &str) -> ConnectorState {
    connect.status(name).unwrap().tasks[0].state
}

/// `SourceTaskContext::idle(Duration::MAX)` added the timeout to `Instant::now()`: the task
/// thread panicked and the task was FAILED.
#[test]
fn source_task_idle_with_duration_max() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_with(
        dir.path(),
        BrokerConfig::default().topic_defaults(quiet_log()),
    )
    .unwrap();
    let connect = Connect::with_config(
        &broker,
        ConnectConfig::default().offset_flush_interval(Duration::from_millis(20)),
    )
    .unwrap();
    connect.register_source("IdleForever", || Box::new(IdleForever));
    connect
        .start_connector(ConnectorConfig::new("idle", "IdleForever"))
        .unwrap();
    wait_for("the task to run", || {
        task_state(&connect, "idle") != ConnectorState::Unassigned
    });
    // Long enough for the first poll to be idling.
    std::thread::sleep(Duration::from_millis(200));
    let status = connect.status("idle").unwrap();
    assert_eq!(
        status.tasks[0].state,
        ConnectorState::Running,
        "{:?}",
        status.tasks[0].trace
    );
    // Stopping wakes the idling task.
    connect.stop_connector("idle").unwrap();
    assert!(matches!(
        connect.status("idle"),
        Err(Error::UnknownConnector(_))
    ));
}

// ------------------------------------------------------------------ hand-edited meta/topics

/// Rewrites `meta/topics` (`"TLMT"`, version, payload length, CRC-32, bincode payload) with
/// `edit` applied to the payload, recomputing length and checksum as a careful hand edit would.
fn edit_topic_metadata(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join("meta").join("topics");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"TLMT");
    let mut payload = bytes[13..].to_vec();
    edit(&mut payload);
    let mut out = bytes[..5].to_vec();
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    std::fs::write(&path, out).unwrap();
}

/// bincode (standard config) of `[TopicMeta { name: "t", partitions: 1, .. }]` starts with
/// the vector's length 1, the name's length 1, `t`, then the partition count 1 (varints).
const PARTITIONS_AT: usize = 3;

fn broker_with_topic_t(dir: &Path) {
    let broker =
        Broker::open_with(dir, BrokerConfig::default().topic_defaults(quiet_log())).unwrap();
    broker.create_topic("t", 1).unwrap();
    drop(broker);
    let payload = std::fs::read(dir.join("meta").join("topics")).unwrap()[13..].to_vec();
    assert_eq!(&payload[..=PARTITIONS_AT], &[1, 1, b't', 1]);
}

/// A topic listed with zero partitions opened as a topic no record can go to: a keyed send
/// indexed its partition queues at 0 and panicked. The file is refused as damaged instead.
#[test]
fn topic_metadata_with_zero_partitions_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    broker_with_topic_t(dir.path());
    edit_topic_metadata(dir.path(), |payload| payload[PARTITIONS_AT] = 0);
    match Broker::open(dir.path()) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert!(path.ends_with("meta/topics"), "{}", path.display());
            assert!(reason.contains("partition"), "{reason}");
        }
        Ok(broker) => {
            // What the unguarded broker did with it.
            let producer = tidelog::Producer::with_defaults(&broker).unwrap();
            let sent = producer.send(ProducerRecord::new("t", "v").key("k"));
            panic!("opened a topic of zero partitions; a send gave {sent:?}");
        }
        Err(other) => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

/// A topic name no broker call accepts. (`.` here, which stays inside the directory; a name
/// such as `/` made the broker create and lock the partition folder `/-0` at the file system's
/// root, since `Path::join` of an absolute path replaces the data directory.)
#[test]
fn topic_metadata_with_invalid_name_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    broker_with_topic_t(dir.path());
    edit_topic_metadata(dir.path(), |payload| payload[2] = b'.');
    match Broker::open(dir.path()) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("name"), "{reason}"),
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}
