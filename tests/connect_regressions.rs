//! Regressions found in review of the Connector API (feature `sqlite`), each failing before its
//! fix: a source offset stored for a record that failed to send, a file truncated or rotated
//! while tailed, concurrent task restarts leaking a task, a huge `tasks.max`, integers beyond
//! `i64` in the SQL sink.
#![cfg(feature = "sqlite")]

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectorConfig, ConnectorState, Durability,
    LogConfig, ProducerRecord, SourceConnector, SourceRecord, SourceTask, SourceTaskContext,
};

const GIVE_UP: Duration = Duration::from_secs(20);

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

fn topic_values(broker: &Broker, topic: &str) -> Vec<String> {
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
                    out.push(String::from_utf8(r.record.value.unwrap().to_vec()).unwrap());
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- 1. source offset of a failed record

/// Emits records n = 1..=5 in one poll (offset {"n": n}); record 3 goes to an invalid topic,
/// so sending it fails.
struct OneBadRecord;
struct OneBadTask {
    done: bool,
    context: Option<SourceTaskContext>,
}
impl SourceConnector for OneBadRecord {
    fn start(&mut self, _c: &ConnectorConfig) -> tidelog::Result<()> {
        Ok(())
    }
    fn task_configs(&self, _max: usize) -> tidelog::Result<Vec<ConnectorConfig>> {
        Ok(vec![ConnectorConfig::from_map(Default::default())])
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(OneBadTask {
            done: false,
            context: None,
        })
    }
}
impl SourceTask for OneBadTask {
    fn start(&mut self, _c: &ConnectorConfig, context: &SourceTaskContext) -> tidelog::Result<()> {
        self.context = Some(context.clone());
        Ok(())
    }
    fn poll(&mut self) -> tidelog::Result<Vec<SourceRecord>> {
        if self.done {
            self.context
                .as_ref()
                .unwrap()
                .idle(Duration::from_millis(20));
            return Ok(Vec::new());
        }
        self.done = true;
        let p = Arc::new(json!({"p": 0}));
        Ok((1..=5u64)
            .map(|n| {
                let topic = if n == 3 { "bad topic!" } else { "good" };
                SourceRecord::new(Arc::clone(&p), json!({"n": n}), topic, format!("v{n}"))
            })
            .collect())
    }
}

#[test]
fn source_offset_of_a_record_that_failed_to_send_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect
        .start_source(ConnectorConfig::new("onebad", "OneBad"), OneBadRecord)
        .unwrap();
    wait_for("the task to fail", || {
        connect.status("onebad").unwrap().tasks[0].state == ConnectorState::Failed
    });
    assert_eq!(topic_values(&broker, "good"), ["v1", "v2"]);
    let offsets = connect.source_offsets("onebad").unwrap();
    // Only records 1 and 2 reached their topic: a restart must retry record 3.
    assert!(
        offsets.iter().all(|(_, o)| o["n"].as_u64().unwrap() <= 2),
        "stored an offset covering the record that was never written: {offsets:?}"
    );
}

// ---------------------------------------------------------------- 2. file truncated while tailing

#[test]
fn file_source_reads_a_file_truncated_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "aaaa\nbbbb\n").unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("tail", "FileStreamSource")
                .set("file", input.to_string_lossy())
                .set("topic", "lines")
                .set("poll.interval.ms", "10"),
        )
        .unwrap();
    wait_for("2 lines", || topic_values(&broker, "lines").len() >= 2);
    // Truncated (as `> file` or copytruncate log rotation does), then written again.
    std::fs::write(&input, "c\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    f.write_all(b"d\ne\n").unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(500));
    let got = topic_values(&broker, "lines");
    connect.stop_connector("tail").unwrap();
    assert_eq!(
        got,
        ["aaaa", "bbbb", "c", "d", "e"],
        "lines after the truncation were lost"
    );
}

// ---------------------------------------------------------------- 3. config values that panic

#[test]
fn sqlite_sink_huge_tasks_max_panics_in_start_connector() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        connect.start_connector(
            ConnectorConfig::new("k", "SqliteSink")
                .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
                .set("topics", "t")
                .set("tasks.max", usize::MAX.to_string()),
        )
    }));
    assert!(
        outcome.is_ok(),
        "start_connector panicked on tasks.max = usize::MAX"
    );
}

// ---------------------------------------------------------------- 4. concurrent restart_task leaks a task

static LIVE: AtomicUsize = AtomicUsize::new(0);

struct SlowStop;
struct SlowStopTask {
    context: Option<SourceTaskContext>,
    started: bool,
}
impl SourceConnector for SlowStop {
    fn start(&mut self, _c: &ConnectorConfig) -> tidelog::Result<()> {
        Ok(())
    }
    fn task_configs(&self, _max: usize) -> tidelog::Result<Vec<ConnectorConfig>> {
        Ok(vec![ConnectorConfig::from_map(Default::default())])
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(SlowStopTask {
            context: None,
            started: false,
        })
    }
}
impl SourceTask for SlowStopTask {
    fn start(&mut self, _c: &ConnectorConfig, context: &SourceTaskContext) -> tidelog::Result<()> {
        LIVE.fetch_add(1, Ordering::SeqCst);
        self.started = true;
        self.context = Some(context.clone());
        Ok(())
    }
    fn poll(&mut self) -> tidelog::Result<Vec<SourceRecord>> {
        self.context
            .as_ref()
            .unwrap()
            .idle(Duration::from_millis(20));
        Ok(Vec::new())
    }
    fn stop(&mut self) {
        std::thread::sleep(Duration::from_millis(500));
        if self.started {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn concurrent_restart_task_leaks_a_running_task() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect
        .start_source(ConnectorConfig::new("slow", "SlowStop"), SlowStop)
        .unwrap();
    wait_for("running", || {
        connect.status("slow").unwrap().tasks[0].state == ConnectorState::Running
    });
    let c2 = connect.clone();
    let t = std::thread::spawn(move || c2.restart_task("slow", 0).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    connect.restart_task("slow", 0).unwrap();
    t.join().unwrap();
    connect.stop_connector("slow").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "a task survived stop_connector: its thread was orphaned by concurrent restarts"
    );
}

// ---------------------------------------------------------------- 5. integers beyond i64 in the SQLite sink

/// Keys above `i64::MAX` cannot be stored exactly (SQL integers are 64-bit signed): the records
/// are errant, go to the dead-letter topic, and never collapse into one lossy float key.
#[test]
fn sqlite_sink_reports_integers_beyond_i64_as_errant() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("big", 1).unwrap();
    broker.create_topic("big-dlq", 1).unwrap();
    let db = dir.path().join("b.db");
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("big-db", "SqliteSink")
                .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
                .set("topics", "big")
                .set("key.converter", "json")
                .set("value.converter", "json")
                .set("insert.mode", "upsert")
                .set("pk.mode", "record_key")
                .set("pk.fields", "id")
                .set("errors.tolerance", "all")
                .set("errors.deadletterqueue.topic.name", "big-dlq"),
        )
        .unwrap();
    let producer = broker.producer().unwrap();
    for k in ["9223372036854775808", "9223372036854775809"] {
        producer
            .send(ProducerRecord::new("big", json!({"name": k}).to_string()).key(k.to_string()))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let dlq = broker.partition("big-dlq", 0).unwrap();
    while dlq.log_end_offset() < 2 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            connect.status("big-db").unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    connect.stop_connector("big-db").unwrap();
    let rows: i64 = rusqlite::Connection::open(&db)
        .ok()
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM big", [], |r| r.get(0))
                .ok()
        })
        .unwrap_or(0);
    assert_eq!(rows, 0);
}
