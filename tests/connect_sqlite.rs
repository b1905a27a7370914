//! The `SQLite` connectors (feature `sqlite`) against real `SQLite` databases: the sink's
//! inserts, upserts by key and tombstones as deletes, tables and columns created as needed,
//! records that do not fit going to the dead-letter topic; the source's incrementing and
//! timestamp+incrementing modes, resuming from stored offsets, tables shared among tasks; bad
//! configs. Nothing asserts on timing.
#![cfg(feature = "sqlite")]

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};
use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectorConfig, ConnectorState, Durability,
    Error, LogConfig, ProducerRecord, ERROR_HEADER_STAGE,
};

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
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every row of `sql`'s result as JSON arrays, or nothing if the query fails (no table yet).
fn rows(db: &Path, sql: &str) -> Vec<Value> {
    let Ok(conn) = Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(sql) else {
        return Vec::new();
    };
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        let mut row = Vec::new();
        for i in 0..n {
            row.push(match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(v) => json!(v),
                rusqlite::types::ValueRef::Real(v) => json!(v),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                rusqlite::types::ValueRef::Blob(_) => json!("blob"),
            });
        }
        Ok(Value::Array(row))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn topic_values(broker: &Broker, topic: &str) -> Vec<(Option<Value>, Value)> {
    let Ok(t) = broker.topic(topic) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in t.partitions().unwrap() {
        let log = p.log().unwrap();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            for r in log.read_records(next, 1 << 20).unwrap() {
                if r.offset >= next {
                    next = r.offset + 1;
                    let key = r.record.key.map(|k| serde_json::from_slice(&k).unwrap());
                    out.push((
                        key,
                        serde_json::from_slice(&r.record.value.unwrap()).unwrap(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn sink_upserts_by_key_and_deletes_on_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("users", 2).unwrap();
    let db = dir.path().join("app.db");
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("users-db", "io.confluent.connect.jdbc.JdbcSinkConnector")
                .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
                .set("topics", "users")
                .set("tasks.max", "2")
                .set("key.converter", "json")
                .set("value.converter", "json")
                .set("insert.mode", "upsert")
                .set("pk.mode", "record_key")
                .set("pk.fields", "id")
                .set("delete.enabled", "true")
                .set("auto.evolve", "true"),
        )
        .unwrap();
    let producer = broker.producer().unwrap();
    let send = |key: &str, value: Option<Value>| {
        let r = match value {
            Some(v) => ProducerRecord::new("users", v.to_string()).key(key.to_string()),
            None => ProducerRecord::tombstone("users", key.to_string()),
        };
        producer.send(r).unwrap();
    };
    send("1", Some(json!({"name": "ann", "age": 30})));
    send("2", Some(json!({"name": "bob", "age": 40})));
    send("3", Some(json!({"name": "cy", "age": 50})));
    send("1", Some(json!({"name": "anna", "age": 31})));
    send("2", None);
    send("4", Some(json!({"name": "dee", "age": 20, "city": "Oslo"})));
    send("3", Some(json!({"name": "cy", "age": 51})));
    send("9", None); // a delete of a row that never was
    let expected = vec![
        json!([1, "anna", 31, null]),
        json!([3, "cy", 51, null]),
        json!([4, "dee", 20, "Oslo"]),
    ];
    let query = "SELECT id, name, age, city FROM users ORDER BY id";
    wait_for("the table to match", || rows(&db, query) == expected);
    let status = connect.status("users-db").unwrap();
    assert_eq!(status.tasks.len(), 2, "two tasks share the two partitions");
    assert!(status
        .tasks
        .iter()
        .all(|t| t.state == ConnectorState::Running));
    connect.stop_connector("users-db").unwrap();
    assert_eq!(rows(&db, query), expected);
    // The key column is the table's primary key, typed from the first record.
    let pk = rows(
        &db,
        "SELECT name, type, pk FROM pragma_table_info('users') WHERE pk > 0",
    );
    assert_eq!(pk, vec![json!(["id", "INTEGER", 1])]);
}

#[test]
fn sink_inserts_and_reports_records_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("events", 1).unwrap();
    let db = dir.path().join("events.db");
    let producer = broker.producer().unwrap();
    for v in [
        json!({"kind": "a", "n": 1}).to_string(),
        "[1, 2]".to_string(),
        json!({"kind": "b", "n": 2.5, "tags": ["x"]}).to_string(),
    ] {
        producer.send(ProducerRecord::new("events", v)).unwrap();
    }
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("events-db", "SqliteSink")
                .set("connection.url", db.to_string_lossy())
                .set("topics", "events")
                .set("table.name.format", "log_${topic}")
                .set("auto.evolve", "true")
                .set("errors.tolerance", "all")
                .set("errors.deadletterqueue.topic.name", "events-dlq"),
        )
        .unwrap();
    let query = "SELECT kind, n, tags FROM log_events ORDER BY rowid";
    wait_for("two rows", || rows(&db, query).len() == 2);
    assert_eq!(
        rows(&db, query),
        vec![json!(["a", 1, null]), json!(["b", 2.5, "[\"x\"]"])]
    );
    let dlq = broker.partition("events-dlq", 0).unwrap();
    wait_for("the dead letter", || dlq.log_end_offset() == 1);
    let bad = &dlq.log().unwrap().read_records(0, 1 << 20).unwrap()[0];
    assert_eq!(bad.record.value.as_deref(), Some(&b"[1, 2]"[..]));
    let stage = bad
        .record
        .headers
        .iter()
        .find(|h| h.key == ERROR_HEADER_STAGE)
        .unwrap();
    assert_eq!(stage.value.as_deref(), Some(&b"TASK_PUT"[..]));
}

#[test]
fn sink_without_auto_evolve_fails_on_a_new_column_and_can_be_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("t", 1).unwrap();
    let db = dir.path().join("t.db");
    let producer = broker.producer().unwrap();
    producer
        .send(ProducerRecord::new("t", r#"{"a": 1}"#))
        .unwrap();
    producer
        .send(ProducerRecord::new("t", r#"{"a": 2, "b": 3}"#))
        .unwrap();
    let connect = runtime(&broker);
    let config = ConnectorConfig::new("t-db", "SqliteSink")
        .set("connection.url", db.to_string_lossy())
        .set("topics", "t");
    connect.start_connector(config).unwrap();
    wait_for("the failure", || {
        connect.status("t-db").unwrap().tasks[0].state == ConnectorState::Failed
    });
    let trace = connect.status("t-db").unwrap().tasks[0]
        .trace
        .clone()
        .unwrap();
    assert!(trace.contains("auto.evolve"), "{trace}");
    Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE t ADD COLUMN b INTEGER")
        .unwrap();
    connect.restart_task("t-db", 0).unwrap();
    // The first row was not committed (the task failed before its flush), so it comes again:
    // a plain insert without a key repeats it, as Kafka Connect's at-least-once delivery does.
    wait_for("the rows", || {
        rows(&db, "SELECT a, b FROM t ORDER BY rowid").last() == Some(&json!([2, 3]))
    });
}

/// Milliseconds since the epoch at the start of the test run, less a minute: recent, so that
/// retention keeps records stamped with it.
fn base_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 60_000
    })
}

fn items_table(db: &Path, table: &str, from: i64, to: i64) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, name TEXT, price REAL, \
         updated INTEGER NOT NULL)"
    ))
    .unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "INSERT INTO {table} (id, name, price, updated) VALUES (?1, ?2, ?3, ?4)"
        ))
        .unwrap();
    for i in from..to {
        stmt.execute(rusqlite::params![
            i,
            format!("item {i}"),
            i as f64 / 2.0,
            base_ms() + i / 10
        ])
        .unwrap();
    }
}

#[test]
fn source_reads_new_rows_by_incrementing_column_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    items_table(&db, "items", 1, 251);
    let config = ConnectorConfig::new("shop", "SqliteSource")
        .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
        .set("table.whitelist", "items")
        .set("mode", "incrementing")
        .set("incrementing.column.name", "id")
        .set("topic.prefix", "shop-")
        .set("poll.interval.ms", "20")
        .set("batch.max.rows", "100")
        .set("value.converter", "json")
        .set("key.converter", "json");
    {
        let broker = open(dir.path());
        let connect = runtime(&broker);
        connect.start_connector(config.clone()).unwrap();
        wait_for("250 records", || {
            topic_values(&broker, "shop-items").len() >= 250
        });
        connect.stop_connector("shop").unwrap();
        assert_eq!(
            connect.source_offsets("shop").unwrap(),
            vec![(json!({"table": "items"}), json!({"incrementing": 250}))]
        );
    }
    items_table(&db, "items", 251, 256);
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect.start_connector(config).unwrap();
    wait_for("255 records", || {
        topic_values(&broker, "shop-items").len() >= 255
    });
    std::thread::sleep(Duration::from_millis(100));
    connect.shutdown();
    let records = topic_values(&broker, "shop-items");
    let ids: Vec<i64> = records
        .iter()
        .map(|(_, v)| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..256).collect::<Vec<_>>(), "each row once, in order");
    assert_eq!(
        records[6].0,
        Some(json!(7)),
        "the key is the incrementing column"
    );
    assert_eq!(
        records[6].1,
        json!({"id": 7, "name": "item 7", "price": 3.5, "updated": base_ms()})
    );
}

#[test]
fn source_timestamp_incrementing_sees_updates_and_shares_tables_among_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("multi.db");
    for t in ["a", "b", "c"] {
        items_table(&db, t, 1, 31);
    }
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("multi", "JdbcSourceConnector")
                .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
                .set("table.whitelist", "a, b, c")
                .set("tasks.max", "2")
                .set("mode", "timestamp+incrementing")
                .set("incrementing.column.name", "id")
                .set("timestamp.column.name", "updated")
                .set("poll.interval.ms", "20")
                .set("batch.max.rows", "7")
                .set("value.converter", "json")
                .set("key.converter", "json"),
        )
        .unwrap();
    assert_eq!(connect.status("multi").unwrap().tasks.len(), 2);
    wait_for("30 rows of each table", || {
        ["a", "b", "c"]
            .iter()
            .all(|t| topic_values(&broker, t).len() >= 30)
    });
    // An update moves a row's timestamp forward: it is read again, with its new values.
    Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE b SET name = 'renamed', updated = ?1 WHERE id = 3",
            [base_ms() + 5000],
        )
        .unwrap();
    wait_for("the update", || topic_values(&broker, "b").len() >= 31);
    connect.shutdown();
    let b = topic_values(&broker, "b");
    assert_eq!(b.len(), 31);
    assert_eq!(b[30].1["name"], "renamed");
    let ids: Vec<i64> = b[..30]
        .iter()
        .map(|(_, v)| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..31).collect::<Vec<_>>(),
        "rows of one timestamp split across batches"
    );
    let offsets = connect.source_offsets("multi").unwrap();
    assert_eq!(offsets.len(), 3);
    assert!(offsets.contains(&(
        json!({"table": "b"}),
        json!({"incrementing": 3, "timestamp": base_ms() + 5000})
    )));
}

#[test]
fn sql_configs_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    items_table(&db, "items", 1, 2);
    let broker = open(dir.path());
    let connect = runtime(&broker);
    let url = format!("jdbc:sqlite:{}", db.display());
    let source = || {
        ConnectorConfig::new("s", "SqliteSource")
            .set("connection.url", url.clone())
            .set("table.whitelist", "items")
            .set("mode", "incrementing")
            .set("incrementing.column.name", "id")
    };
    let sink = || {
        ConnectorConfig::new("k", "SqliteSink")
            .set("connection.url", url.clone())
            .set("topics", "t")
    };
    let cases = [
        (source().set("table.whitelist", "nope"), "table.whitelist"),
        (
            source().set("incrementing.column.name", "nope"),
            "incrementing.column.name",
        ),
        (source().set("mode", "bulk"), "mode"),
        (source().set("mode", "timestamp"), "timestamp.column.name"),
        (source().set("batch.max.rows", "0"), "batch.max.rows"),
        (
            source().set("connection.url", "jdbc:sqlite:/no/such/dir/x.db"),
            "connection.url",
        ),
        (sink().set("insert.mode", "merge"), "insert.mode"),
        (sink().set("insert.mode", "upsert"), "pk.mode"),
        (sink().set("pk.mode", "record_value"), "pk.fields"),
        (sink().set("delete.enabled", "true"), "delete.enabled"),
        (sink().set("auto.create", "maybe"), "auto.create"),
    ];
    for (config, key) in cases {
        match connect.start_connector(config.clone()) {
            Err(Error::ConnectorConfig { key: k, .. }) => assert_eq!(k, key, "{config:?}"),
            other => panic!("{config:?}: expected a config error naming {key}, got {other:?}"),
        }
    }
    assert!(connect.connectors().is_empty());
}
