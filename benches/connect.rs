//! Connector throughput, each with a baseline measured in the same run.
//!
//! * `file_source/to_topic`: a `FileStreamSource` connector reads a file of 100-byte lines into
//!   a topic (durability `None`, one partition), from start to the last record appended.
//! * `file_source/baseline_bufread_lines`: the same file read with `BufRead::lines` (no records,
//!   no topic): the ceiling of reading lines at all.
//! * `sqlite_sink/upsert` (feature `sqlite`): a `SqliteSink` connector upserts a topic of JSON
//!   records by `id` (half of them updates of earlier ids) into a table, from start until the
//!   group committed the last offset (so every row is committed in `SQLite`), with offsets
//!   committed every 100 ms so that the run does not end waiting for the default 1 s timer.
//! * `sqlite_sink/baseline_rusqlite_upsert`: the same rows upserted with `rusqlite` directly, a
//!   prepared statement in transactions of 3000 rows (the sink's `batch.size`), same journal
//!   settings (WAL, `synchronous=FULL`).
//!
//! One criterion iteration is `LINES` lines or `ROWS` rows; each sample uses fresh directories.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::{Broker, BrokerConfig, Connect, ConnectorConfig, Durability, LogConfig};

const LINES: u64 = 200_000;
const LINE_LEN: usize = 100;

fn broker(dir: &Path) -> Broker {
    Broker::open_with(
        dir,
        BrokerConfig::default().topic_defaults(LogConfig::default().durability(Durability::None)),
    )
    .expect("broker")
}

fn write_lines(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("input"));
    for i in 0..LINES {
        let head = format!("{i:010} ");
        let pad = LINE_LEN - 1 - head.len();
        writeln!(f, "{head}{}", "x".repeat(pad)).expect("write");
    }
    f.flush().expect("flush");
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "the connector did not finish");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn file_source(c: &mut Criterion) {
    let root = tempfile::tempdir().expect("temp dir");
    let input = root.path().join("lines.txt");
    write_lines(&input);
    let mut group = c.benchmark_group("file_source");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(LINES));
    group.bench_function("to_topic", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(root.path()).expect("dir");
                let broker = broker(dir.path());
                broker.create_topic("lines", 1).expect("topic");
                let connect = Connect::new(&broker).expect("runtime");
                let log = broker.partition("lines", 0).expect("partition");
                let started = Instant::now();
                connect
                    .start_connector(
                        ConnectorConfig::new("bench", "FileStreamSource")
                            .set("file", input.to_string_lossy())
                            .set("topic", "lines"),
                    )
                    .expect("start");
                wait_until(|| log.log_end_offset() >= LINES);
                total += started.elapsed();
                connect.shutdown();
            }
            total
        });
    });
    group.bench_function("baseline_bufread_lines", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                let reader =
                    BufReader::with_capacity(256 << 10, std::fs::File::open(&input).expect("open"));
                let mut n = 0u64;
                for line in reader.lines() {
                    std::hint::black_box(line.expect("line"));
                    n += 1;
                }
                assert_eq!(n, LINES);
            }
            started.elapsed()
        });
    });
    group.finish();
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{broker, wait_until};
    use std::time::{Duration, Instant};

    use criterion::{Criterion, Throughput};
    use tidelog::{
        Connect, ConnectConfig, ConnectorConfig, ConsumerConfig, ProducerRecord, TopicPartition,
    };

    pub const ROWS: u64 = 100_000;

    fn row(i: u64) -> (i64, String, i64, f64) {
        // Half the rows update an earlier id.
        let id = (i % (ROWS / 2)) as i64;
        (id, format!("customer {i}"), (i % 7) as i64, i as f64 * 0.25)
    }

    fn json(i: u64) -> String {
        let (id, name, qty, price) = row(i);
        serde_json::json!({"id": id, "name": name, "qty": qty, "price": price}).to_string()
    }

    pub fn sqlite_sink(c: &mut Criterion) {
        let root = tempfile::tempdir().expect("temp dir");
        let mut group = c.benchmark_group("sqlite_sink");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Elements(ROWS));
        group.bench_function("upsert", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(root.path()).expect("dir");
                    let broker = broker(&dir.path().join("data"));
                    broker.create_topic("rows", 1).expect("topic");
                    let producer = broker.producer().expect("producer");
                    for i in 0..ROWS {
                        producer
                            .send_async(ProducerRecord::new("rows", json(i)))
                            .expect("send");
                    }
                    producer.flush().expect("flush");
                    drop(producer);
                    // Commits every 100 ms rather than the default 1 s, so that the end of the
                    // run is not a wait for the timer.
                    let connect = Connect::with_config(
                        &broker,
                        ConnectConfig::default().offset_flush_interval(Duration::from_millis(100)),
                    )
                    .expect("runtime");
                    let probe = broker
                        .consumer(ConsumerConfig::default().group_id("connect-bench"))
                        .expect("consumer");
                    let tp = [TopicPartition::new("rows", 0)];
                    let db = dir.path().join("bench.db");
                    let started = Instant::now();
                    connect
                        .start_connector(
                            ConnectorConfig::new("bench", "SqliteSink")
                                .set("connection.url", db.to_string_lossy())
                                .set("topics", "rows")
                                .set("value.converter", "json")
                                .set("insert.mode", "upsert")
                                .set("pk.mode", "record_value")
                                .set("pk.fields", "id")
                                .set("consumer.max.poll.records", "2000"),
                        )
                        .expect("start");
                    wait_until(|| {
                        probe.committed(&tp).expect("committed")[0]
                            .as_ref()
                            .is_some_and(|o| o.offset >= ROWS)
                    });
                    total += started.elapsed();
                    connect.shutdown();
                }
                total
            });
        });
        group.bench_function("baseline_rusqlite_upsert", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(root.path()).expect("dir");
                    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).expect("db");
                    conn.execute_batch(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                         CREATE TABLE rows (id INTEGER NOT NULL, name TEXT, price REAL,
                                            qty INTEGER, PRIMARY KEY (id));",
                    )
                    .expect("setup");
                    let started = Instant::now();
                    let mut stmt = conn
                        .prepare(
                            "INSERT INTO rows (id, name, price, qty) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                             price = excluded.price, qty = excluded.qty",
                        )
                        .expect("prepare");
                    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(3000) {
                        conn.execute_batch("BEGIN").expect("begin");
                        for &i in chunk {
                            let (id, name, qty, price) = row(i);
                            stmt.execute(rusqlite::params![id, name, price, qty])
                                .expect("upsert");
                        }
                        conn.execute_batch("COMMIT").expect("commit");
                    }
                    total += started.elapsed();
                }
                total
            });
        });
        group.finish();
    }
}

#[cfg(feature = "sqlite")]
criterion_group!(benches, file_source, sqlite::sqlite_sink);
#[cfg(not(feature = "sqlite"))]
criterion_group!(benches, file_source);
criterion_main!(benches);
