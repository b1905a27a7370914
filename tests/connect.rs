//! The Connector API through the public API: the file source and sink round trip, resuming
//! from stored offsets, transforms and converters from a Kafka Connect JSON config, pause and
//! resume, bad configs, a panicking task that is restarted while the rest goes on, and the
//! dead-letter topic with its `__connect.errors.*` headers.
//!
//! Nothing here asserts on timing: every wait polls until a condition holds and gives up only
//! after `GIVE_UP`.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectData, ConnectorConfig, ConnectorKind,
    ConnectorState, Durability, Error, LogConfig, OffsetRecord, ProducerRecord, SinkConnector,
    SinkRecord, SinkTask, SinkTaskContext, SourceConnector, SourceRecord, SourceTask,
    SourceTaskContext, ERROR_HEADER_CONNECTOR, ERROR_HEADER_EXCEPTION, ERROR_HEADER_MESSAGE,
    ERROR_HEADER_OFFSET, ERROR_HEADER_PARTITION, ERROR_HEADER_STAGE, ERROR_HEADER_TOPIC,
};

/// How long a wait may last before the test gives up (never an expectation of speed).
const GIVE_UP: Duration = Duration::from_secs(30);

fn open(dir: &Path) -> Broker {
    Broker::open_with(
        dir.join("data"),
        BrokerConfig::default()
            .maintenance_interval(Duration::from_millis(10))
            .topic_defaults(LogConfig::default().durability(Durability::None)),
    )
    .unwrap()
}

fn runtime(broker: &Broker) -> Connect {
    Connect::with_config(
        broker,
        ConnectConfig::default().offset_flush_interval(Duration::from_millis(50)),
    )
    .unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + GIVE_UP;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn append_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

fn topic_records(broker: &Broker, topic: &str) -> Vec<OffsetRecord> {
    let Ok(t) = broker.topic(topic) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in t.partitions().unwrap() {
        let log = p.log().unwrap();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let records = log.read_records(next, 1 << 20).unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                if r.offset >= next {
                    next = r.offset + 1;
                    out.push(r);
                }
            }
        }
    }
    out
}

fn topic_values(broker: &Broker, topic: &str) -> Vec<String> {
    topic_records(broker, topic)
        .into_iter()
        .map(|r| String::from_utf8(r.record.value.unwrap().to_vec()).unwrap())
        .collect()
}

fn header<'a>(r: &'a OffsetRecord, name: &str) -> Option<&'a str> {
    r.record
        .headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok())
}

#[test]
fn file_to_topic_to_file_round_trip_and_tailing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let first: Vec<String> = (0..5_000)
        .map(|i| format!("line {i} ✓ {}", "x".repeat(i % 50)))
        .collect();
    append_lines(&input, first.clone());
    connect
        .start_connector(
            ConnectorConfig::new(
                "src",
                "org.apache.kafka.connect.file.FileStreamSourceConnector",
            )
            .set("file", input.to_string_lossy())
            .set("topic", "lines")
            .set("batch.size", "300"),
        )
        .unwrap();
    connect
        .start_connector(
            ConnectorConfig::new("sink", "FileStreamSink")
                .set("file", output.to_string_lossy())
                .set("topics", "lines"),
        )
        .unwrap();
    wait_for("the first lines in the output", || {
        read_lines(&output).len() >= first.len()
    });
    // Tailing: lines appended later, one of them first written without its newline.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    f.write_all(b"late 1\nlate").unwrap();
    f.flush().unwrap();
    wait_for("late 1", || read_lines(&output).len() > first.len());
    f.write_all(b" 2\r\nlate 3\n").unwrap();
    let mut expected = first.clone();
    expected.extend(["late 1", "late 2", "late 3"].map(String::from));
    wait_for("every line in the output", || {
        read_lines(&output).len() >= expected.len()
    });
    connect.stop_connector("sink").unwrap();
    connect.stop_connector("src").unwrap();
    assert_eq!(read_lines(&output), expected);
    assert_eq!(topic_values(&broker, "lines"), expected);
    // The stored offset is the byte after the last line, in Kafka Connect's shape.
    let len = std::fs::metadata(&input).unwrap().len();
    assert_eq!(
        connect.source_offsets("src").unwrap(),
        vec![(
            json!({"filename": input.to_string_lossy()}),
            json!({"position": len})
        )]
    );
    // The offsets topic is internal: hidden from the topic list, refused by hand.
    assert_eq!(broker.topics(), vec!["lines".to_string()]);
    assert!(broker.topic("__connect_offsets").is_ok());
    assert!(matches!(
        broker.create_topic("__connect_offsets", 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        broker.delete_topic("__connect_offsets"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_stopped_source_resumes_after_its_stored_offset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    append_lines(&input, (0..1000).map(|i| format!("a{i}")));
    let config = ConnectorConfig::new("src", "FileStreamSource")
        .set("file", input.to_string_lossy())
        .set("topic", "t");
    {
        let broker = open(dir.path());
        let connect = runtime(&broker);
        connect.start_connector(config.clone()).unwrap();
        wait_for("1000 records", || topic_values(&broker, "t").len() >= 1000);
        connect.stop_connector("src").unwrap();
        // A second start under the same name in the same runtime continues too.
        append_lines(&input, (0..10).map(|i| format!("b{i}")));
        connect.start_connector(config.clone()).unwrap();
        wait_for("1010 records", || topic_values(&broker, "t").len() >= 1010);
        assert!(matches!(
            connect.start_connector(config.clone()),
            Err(Error::ConnectorExists(_))
        ));
    }
    // A new process (broker and runtime) on the same directory.
    append_lines(&input, (0..500).map(|i| format!("c{i}")));
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect.start_connector(config).unwrap();
    wait_for("1510 records", || topic_values(&broker, "t").len() >= 1510);
    connect.shutdown();
    let values = topic_values(&broker, "t");
    let expected: Vec<String> = (0..1000)
        .map(|i| format!("a{i}"))
        .chain((0..10).map(|i| format!("b{i}")))
        .chain((0..500).map(|i| format!("c{i}")))
        .collect();
    assert_eq!(
        values, expected,
        "a clean stop repeats nothing and loses nothing"
    );
}

#[test]
fn transforms_and_converters_from_a_kafka_connect_json_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let input = dir.path().join("events.jsonl");
    append_lines(
        &input,
        [
            r#"{"id": 1, "level": "INFO", "msg": "start", "secret": "s"}"#,
            r#"{"id": 2, "level": "DEBUG", "msg": "noise"}"#,
            r#"{"id": 3, "level": "WARN", "msg": "disk"}"#,
        ]
        .map(String::from),
    );
    // The source reads lines as text; the sink parses them as JSON, then transforms.
    let source = dir.path().join("source.json");
    std::fs::write(
        &source,
        json!({
            "name": "events-in",
            "config": {
                "connector.class": "FileStreamSource",
                "tasks.max": 1,
                "file": input.to_string_lossy(),
                "topic": "events-raw",
                "transforms": "route",
                "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
                "transforms.route.regex": "(.*)-raw",
                "transforms.route.replacement": "$1-clean"
            }
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(connect.start_connector_file(&source).unwrap(), "events-in");
    wait_for("3 routed records", || {
        topic_values(&broker, "events-clean").len() >= 3
    });
    assert!(
        broker.topic("events-raw").is_err(),
        "routed before the topic was made"
    );

    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink_config = ConnectorConfig::from_json(
        &json!({
            "name": "events-out",
            "connector.class": "collecting",
            "topics": ["events-clean"],
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": false,
            "transforms": "dropDebug,addSource,tidy",
            "transforms.dropDebug.type": "Filter",
            "transforms.dropDebug.predicate": "isDebug",
            "predicates": "isDebug",
            "predicates.isDebug.type": "FieldMatches",
            "predicates.isDebug.field": "level",
            "predicates.isDebug.pattern": "^DEBUG$",
            "transforms.addSource.type": "InsertField$Value",
            "transforms.addSource.static.field": "source",
            "transforms.addSource.static.value": "app",
            "transforms.addSource.offset.field": "kafka_offset",
            "transforms.tidy.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
            "transforms.tidy.exclude": "secret",
            "transforms.tidy.renames": "msg:message"
        })
        .to_string(),
    )
    .unwrap();
    connect
        .start_sink(sink_config, Collecting::new(&collected))
        .unwrap();
    wait_for("2 records in the sink", || {
        collected.lock().unwrap().len() >= 2
    });
    connect.stop_connector("events-out").unwrap();
    let got: Vec<Value> = collected
        .lock()
        .unwrap()
        .iter()
        .map(|r: &SinkRecord| match r.value() {
            Some(ConnectData::Json(v)) => v.clone(),
            other => panic!("not JSON: {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            json!({"id": 1, "level": "INFO", "message": "start", "source": "app", "kafka_offset": 0}),
            json!({"id": 3, "level": "WARN", "message": "disk", "source": "app", "kafka_offset": 2}),
        ]
    );
    let status = connect.status("events-in").unwrap();
    assert_eq!(status.kind, ConnectorKind::Source);
    assert_eq!(status.tasks.len(), 1);
}

/// A sink that keeps what it is given, flushed or not.
struct Collecting {
    out: Arc<Mutex<Vec<SinkRecord>>>,
}

impl Collecting {
    fn new(out: &Arc<Mutex<Vec<SinkRecord>>>) -> Self {
        Collecting {
            out: Arc::clone(out),
        }
    }
}

impl SinkConnector for Collecting {
    fn start(&mut self, _config: &ConnectorConfig) -> tidelog::Result<()> {
        Ok(())
    }
    fn task_configs(&self, _max: usize) -> tidelog::Result<Vec<ConnectorConfig>> {
        Ok(vec![ConnectorConfig::from_map(Default::default())])
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(CollectingTask {
            out: Arc::clone(&self.out),
            context: None,
        })
    }
}

struct CollectingTask {
    out: Arc<Mutex<Vec<SinkRecord>>>,
    context: Option<SinkTaskContext>,
}

impl SinkTask for CollectingTask {
    fn start(&mut self, _c: &ConnectorConfig, context: &SinkTaskContext) -> tidelog::Result<()> {
        self.context = Some(context.clone());
        Ok(())
    }
    fn put(&mut self, records: Vec<SinkRecord>) -> tidelog::Result<()> {
        for r in records {
            // Text values starting with "reject" are reported as errant by the task itself.
            if let Some(ConnectData::String(s)) = r.value() {
                if s.starts_with("reject") {
                    let ctx = self.context.as_ref().unwrap();
                    ctx.report(&r, Error::InvalidArgument(format!("refused {s}")))?;
                    continue;
                }
            }
            self.out.lock().unwrap().push(r);
        }
        Ok(())
    }
    fn flush(&mut self) -> tidelog::Result<()> {
        Ok(())
    }
}

#[test]
fn dead_letter_topic_gets_bad_records_with_the_reason_in_headers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("orders", 1).unwrap();
    let producer = broker.producer().unwrap();
    let values = [r#"{"id":1}"#, "not json", r#"{"id":2}"#, "{", r#"{"id":3}"#];
    for v in values {
        producer
            .send(
                ProducerRecord::new("orders", v)
                    .key("k")
                    .header("trace", "t1"),
            )
            .unwrap();
    }
    let connect = runtime(&broker);
    let collected = Arc::new(Mutex::new(Vec::new()));
    let config = ConnectorConfig::new("orders-sink", "collecting")
        .set("topics", "orders")
        .set("value.converter", "json")
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", "orders-dlq");
    connect
        .start_sink(config, Collecting::new(&collected))
        .unwrap();
    wait_for("3 good records", || collected.lock().unwrap().len() >= 3);
    wait_for("2 dead letters", || {
        topic_records(&broker, "orders-dlq").len() >= 2
    });
    let status = connect.status("orders-sink").unwrap();
    assert_eq!(status.tasks[0].state, ConnectorState::Running);
    assert_eq!(status.tasks[0].skipped, 2);
    assert_eq!(status.tasks[0].dead_lettered, 2);
    connect.stop_connector("orders-sink").unwrap();
    let dlq = topic_records(&broker, "orders-dlq");
    assert_eq!(dlq.len(), 2);
    for (r, (offset, bad)) in dlq.iter().zip([(1, "not json"), (3, "{")]) {
        // The record as it was read...
        assert_eq!(r.record.value.as_deref(), Some(bad.as_bytes()));
        assert_eq!(r.record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(header(r, "trace"), Some("t1"));
        // ...and where it came from and why it failed, under Kafka's header names.
        assert_eq!(header(r, ERROR_HEADER_TOPIC), Some("orders"));
        assert_eq!(header(r, ERROR_HEADER_PARTITION), Some("0"));
        assert_eq!(
            header(r, ERROR_HEADER_OFFSET),
            Some(offset.to_string().as_str())
        );
        assert_eq!(header(r, ERROR_HEADER_CONNECTOR), Some("orders-sink"));
        assert_eq!(header(r, ERROR_HEADER_STAGE), Some("VALUE_CONVERTER"));
        assert_eq!(
            header(r, ERROR_HEADER_EXCEPTION),
            Some("tidelog::Error::Codec")
        );
        assert!(
            header(r, ERROR_HEADER_MESSAGE).is_some_and(|m| m.contains("JsonConverter")),
            "{:?}",
            header(r, ERROR_HEADER_MESSAGE)
        );
    }
    // Skipped records count as processed: the group committed past all five.
    let mut consumer = broker
        .consumer(tidelog::ConsumerConfig::default().group_id("connect-orders-sink"))
        .unwrap();
    consumer
        .assign(&[tidelog::TopicPartition::new("orders", 0)])
        .unwrap();
    let committed = consumer
        .committed(&[tidelog::TopicPartition::new("orders", 0)])
        .unwrap();
    assert_eq!(committed[0].as_ref().map(|c| c.offset), Some(5));
}

#[test]
fn errant_records_reported_by_a_sink_task_go_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("in", 1).unwrap();
    let producer = broker.producer().unwrap();
    for v in ["ok 1", "reject me", "ok 2"] {
        producer.send(ProducerRecord::new("in", v)).unwrap();
    }
    let connect = runtime(&broker);
    let collected = Arc::new(Mutex::new(Vec::new()));
    connect
        .start_sink(
            ConnectorConfig::new("picky", "collecting")
                .set("topics", "in")
                .set("errors.tolerance", "all")
                .set("errors.deadletterqueue.topic.name", "in-dlq"),
            Collecting::new(&collected),
        )
        .unwrap();
    wait_for("one dead letter", || {
        !topic_records(&broker, "in-dlq").is_empty()
    });
    wait_for("two good records", || collected.lock().unwrap().len() >= 2);
    let dlq = topic_records(&broker, "in-dlq");
    assert_eq!(header(&dlq[0], ERROR_HEADER_STAGE), Some("TASK_PUT"));
    assert_eq!(dlq[0].record.value.as_deref(), Some(&b"reject me"[..]));
    assert!(header(&dlq[0], ERROR_HEADER_MESSAGE)
        .unwrap()
        .contains("refused reject me"));
}

#[test]
fn without_tolerance_a_bad_record_fails_the_task_and_commits_nothing_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("in", 1).unwrap();
    let producer = broker.producer().unwrap();
    for v in [r#"{"a":1}"#, "oops"] {
        producer.send(ProducerRecord::new("in", v)).unwrap();
    }
    let connect = runtime(&broker);
    let collected = Arc::new(Mutex::new(Vec::new()));
    connect
        .start_sink(
            ConnectorConfig::new("strict", "collecting")
                .set("topics", "in")
                .set("value.converter", "json"),
            Collecting::new(&collected),
        )
        .unwrap();
    wait_for("the task to fail", || {
        connect.status("strict").unwrap().tasks[0].state == ConnectorState::Failed
    });
    let trace = connect.status("strict").unwrap().tasks[0]
        .trace
        .clone()
        .unwrap();
    assert!(
        trace.contains("VALUE_CONVERTER") && trace.contains("in-0@1"),
        "{trace}"
    );
    let consumer = broker
        .consumer(tidelog::ConsumerConfig::default().group_id("connect-strict"))
        .unwrap();
    let committed = consumer
        .committed(&[tidelog::TopicPartition::new("in", 0)])
        .unwrap();
    assert!(
        committed[0].as_ref().is_none_or(|c| c.offset <= 1),
        "committed past the bad record: {committed:?}"
    );
}

/// A source whose task panics in `poll` while `PANICS` is above zero, and otherwise emits one
/// numbered record per poll.
struct Flaky {
    panics: Arc<AtomicUsize>,
}

struct FlakyTask {
    panics: Arc<AtomicUsize>,
    next: u64,
    partition: Arc<Value>,
    context: Option<SourceTaskContext>,
}

impl SourceConnector for Flaky {
    fn start(&mut self, config: &ConnectorConfig) -> tidelog::Result<()> {
        config.required("topic")?;
        Ok(())
    }
    fn task_configs(&self, max: usize) -> tidelog::Result<Vec<ConnectorConfig>> {
        Ok((0..max.min(2))
            .map(|i| ConnectorConfig::from_map(Default::default()).set("stream", i.to_string()))
            .collect())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FlakyTask {
            panics: Arc::clone(&self.panics),
            next: 0,
            partition: Arc::new(Value::Null),
            context: None,
        })
    }
}

impl SourceTask for FlakyTask {
    fn start(&mut self, c: &ConnectorConfig, context: &SourceTaskContext) -> tidelog::Result<()> {
        self.partition = Arc::new(json!({"stream": c.required("stream")?}));
        self.next = context
            .offset(&self.partition)?
            .and_then(|o| o["next"].as_u64())
            .unwrap_or(0);
        self.context = Some(context.clone());
        Ok(())
    }
    fn poll(&mut self) -> tidelog::Result<Vec<SourceRecord>> {
        let stream = self.partition["stream"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if stream == "1" && self.panics.load(Ordering::SeqCst) > 0 {
            self.panics.fetch_sub(1, Ordering::SeqCst);
            panic!("flaky stream 1 broke");
        }
        if self.next >= 100 {
            self.context
                .as_ref()
                .unwrap()
                .idle(Duration::from_millis(20));
            return Ok(Vec::new());
        }
        let n = self.next;
        self.next += 1;
        Ok(vec![SourceRecord::new(
            Arc::clone(&self.partition),
            json!({"next": n + 1}),
            format!("flaky-{stream}"),
            format!("{stream}:{n}"),
        )])
    }
}

#[test]
fn a_panicking_task_is_reported_failed_and_restarts_while_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let panics = Arc::new(AtomicUsize::new(1));
    connect
        .start_source(
            ConnectorConfig::new("flaky", "Flaky")
                .set("topic", "x")
                .set("tasks.max", "5"),
            Flaky {
                panics: Arc::clone(&panics),
            },
        )
        .unwrap();
    wait_for("task 1 to fail", || {
        connect.status("flaky").unwrap().tasks[1].state == ConnectorState::Failed
    });
    wait_for("task 0 to finish its 100 records", || {
        topic_values(&broker, "flaky-0").len() >= 100
    });
    let status = connect.status("flaky").unwrap();
    assert_eq!(
        status.tasks.len(),
        2,
        "the connector split into 2 tasks for tasks.max = 5"
    );
    assert_eq!(status.tasks[0].state, ConnectorState::Running);
    assert!(
        status.tasks[1]
            .trace
            .as_deref()
            .is_some_and(|t| t.contains("panicked") && t.contains("flaky stream 1 broke")),
        "{status:?}"
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0);
    connect.restart_task("flaky", 1).unwrap();
    wait_for("task 1's 100 records", || {
        topic_values(&broker, "flaky-1").len() >= 100
    });
    assert_eq!(
        connect.status("flaky").unwrap().tasks[1].state,
        ConnectorState::Running
    );
    assert!(matches!(
        connect.restart_task("flaky", 7),
        Err(Error::InvalidArgument(_))
    ));
    // The restarted connector continues each stream after its stored offset.
    connect.restart_connector("flaky").unwrap();
    connect.stop_connector("flaky").unwrap();
    let expected: Vec<String> = (0..100).map(|n| format!("1:{n}")).collect();
    assert_eq!(topic_values(&broker, "flaky-1"), expected);
    assert!(connect.connectors().is_empty());
}

#[test]
fn pause_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    append_lines(&input, (0..100).map(|i| format!("{i}")));
    connect
        .start_connector(
            ConnectorConfig::new("src", "FileStreamSource")
                .set("file", input.to_string_lossy())
                .set("topic", "t"),
        )
        .unwrap();
    connect
        .start_connector(
            ConnectorConfig::new("sink", "FileStreamSink")
                .set("file", output.to_string_lossy())
                .set("topics", "t"),
        )
        .unwrap();
    wait_for("100 lines out", || read_lines(&output).len() >= 100);
    connect.pause("sink").unwrap();
    connect.pause("src").unwrap();
    wait_for("both paused", || {
        ["sink", "src"].iter().all(|n| {
            let s = connect.status(n).unwrap();
            s.state == ConnectorState::Paused && s.tasks[0].state == ConnectorState::Paused
        })
    });
    append_lines(&input, (100..200).map(|i| format!("{i}")));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        topic_values(&broker, "t").len(),
        100,
        "a paused source does not poll"
    );
    connect.resume("src").unwrap();
    wait_for("200 records", || topic_values(&broker, "t").len() >= 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        read_lines(&output).len(),
        100,
        "a paused sink does not consume"
    );
    connect.resume("sink").unwrap();
    wait_for("200 lines out", || read_lines(&output).len() >= 200);
    assert_eq!(
        read_lines(&output),
        (0..200).map(|i| format!("{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn bad_configs_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let key_of = |e: Error| match e {
        Error::ConnectorConfig { key, .. } => key,
        other => panic!("expected a config error, got {other}"),
    };
    let source = |name: &str| {
        ConnectorConfig::new(name, "FileStreamSource")
            .set("file", "/tmp/x")
            .set("topic", "t")
    };
    let cases: Vec<(ConnectorConfig, &str)> = vec![
        (
            ConnectorConfig::new("a", "FileStreamSource").set("topic", "t"),
            "file",
        ),
        (
            ConnectorConfig::new("a", "FileStreamSource").set("file", "/x"),
            "topic",
        ),
        (source("a").set("topic", "bad topic"), "topic"),
        (source("a").set("tasks.max", "0"), "tasks.max"),
        (source("a").set("tasks.max", "two"), "tasks.max"),
        (source("a").set("batch.size", "-1"), "batch.size"),
        (
            ConnectorConfig::new("a", "com.example.Nope"),
            "connector.class",
        ),
        (ConnectorConfig::new("", "FileStreamSource"), "name"),
        (
            source("a").set("value.converter", "avro"),
            "value.converter",
        ),
        (
            source("a").set("errors.tolerance", "most"),
            "errors.tolerance",
        ),
        (
            source("a").set("errors.deadletterqueue.topic.name", "dlq"),
            "errors.deadletterqueue.topic.name",
        ),
        (source("a").set("transforms", "x"), "transforms.x.type"),
        (
            source("a")
                .set("transforms", "x")
                .set("transforms.x.type", "Mystery"),
            "transforms.x.type",
        ),
        (
            source("a")
                .set("transforms", "x")
                .set("transforms.x.type", "RegexRouter")
                .set("transforms.x.regex", "(")
                .set("transforms.x.replacement", "y"),
            "transforms.x.regex",
        ),
        (
            source("a")
                .set("transforms", "x")
                .set("transforms.x.type", "Filter")
                .set("transforms.x.predicate", "p"),
            "transforms.x.predicate",
        ),
        (
            source("a")
                .set("transforms", "x")
                .set("transforms.x.type", "InsertField$Value"),
            "transforms.x.static.field",
        ),
        (
            ConnectorConfig::new("a", "FileStreamSink").set("file", "/x"),
            "topics",
        ),
        (
            ConnectorConfig::new("a", "FileStreamSink")
                .set("file", "/x")
                .set("topics", "t")
                .set("topics.regex", "t.*"),
            "topics.regex",
        ),
        (
            ConnectorConfig::new("a", "FileStreamSink")
                .set("file", "/x")
                .set("topics", "t")
                .set("errors.deadletterqueue.topic.name", "t"),
            "errors.deadletterqueue.topic.name",
        ),
        (
            ConnectorConfig::new("a", "JdbcSinkConnector")
                .set("connection.url", "jdbc:oracle:thin:@x")
                .set("topics", "t"),
            "connection.url",
        ),
    ];
    for (config, key) in cases {
        let validated = connect.validate(&config).map_err(|e| e.to_string());
        let started = connect.start_connector(config.clone());
        assert_eq!(key_of(started.unwrap_err()), key, "{config:?}");
        assert!(validated.unwrap_err().contains(key));
    }
    assert!(connect.connectors().is_empty(), "nothing bad was started");
    // The error message names connector and key.
    let e = connect
        .start_connector(ConnectorConfig::new("files", "FileStreamSource").set("topic", "t"))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "connector `files`: invalid config `file`: is required"
    );
    // Bad JSON files.
    let path = dir.path().join("bad.json");
    for (text, key) in [
        (r#"{"name": "x"}"#, "connector.class"),
        (r#"{"name": "x", "config": []}"#, "config"),
        (
            r#"{"name": "x", "connector.class": "FileStreamSource", "file": {"a": 1}}"#,
            "file",
        ),
        ("not json", ""),
    ] {
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            key_of(connect.start_connector_file(&path).unwrap_err()),
            key,
            "{text}"
        );
    }
    assert!(matches!(
        connect.start_connector_file(dir.path().join("missing.json")),
        Err(Error::Io { .. })
    ));
    // Unknown connectors.
    for result in [
        connect.stop_connector("ghost"),
        connect.pause("ghost"),
        connect.resume("ghost"),
        connect.restart_task("ghost", 0),
        connect.restart_connector("ghost"),
        connect.status("ghost").map(drop),
    ] {
        assert!(matches!(result, Err(Error::UnknownConnector(_))));
    }
    assert!(matches!(
        Connect::with_config(
            &broker,
            ConnectConfig::default().offset_flush_interval(Duration::ZERO)
        ),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn a_sink_task_that_cannot_open_its_file_fails_and_can_be_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("t", 1).unwrap();
    broker
        .producer()
        .unwrap()
        .send(ProducerRecord::new("t", "hello"))
        .unwrap();
    let connect = runtime(&broker);
    let out = dir.path().join("no-such-dir").join("out.txt");
    connect
        .start_connector(
            ConnectorConfig::new("sink", "FileStreamSink")
                .set("file", out.to_string_lossy())
                .set("topics", "t"),
        )
        .unwrap();
    wait_for("the task to fail", || {
        connect.status("sink").unwrap().tasks[0].state == ConnectorState::Failed
    });
    let trace = connect.status("sink").unwrap().tasks[0]
        .trace
        .clone()
        .unwrap();
    assert!(trace.contains("no-such-dir"), "{trace}");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    connect.restart_task("sink", 0).unwrap();
    wait_for("the line out", || read_lines(&out) == ["hello"]);
}
