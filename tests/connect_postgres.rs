//! The `PostgreSQL` connectors (feature `postgres`) against a real `PostgreSQL` server, whose
//! URL `TIDELOG_PG_URL` gives (`.ci/run` installs and starts one). Without it the tests print
//! a notice and pass, except under CI (`CI=true`), where they fail.
//!
//! Each test works in tables of its own, named after the process and the time, so runs do not
//! meet. Nothing asserts on timing.
#![cfg(feature = "postgres")]

use std::path::Path;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use serde_json::{json, Value};
use tidelog::{
    Broker, BrokerConfig, Connect, ConnectConfig, ConnectorConfig, ConnectorState, Durability,
    Error, LogConfig, ProducerRecord,
};

const GIVE_UP: Duration = Duration::from_secs(30);

/// The server's URL, or `None` (with a notice) outside CI when there is none.
fn pg_url() -> Option<String> {
    match std::env::var("TIDELOG_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TIDELOG_PG_URL is not set under CI: .ci/run must start PostgreSQL"
            );
            eprintln!("skipped: set TIDELOG_PG_URL=postgresql://user@host:port/db to run");
            None
        }
    }
}

fn client(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connecting to PostgreSQL")
}

/// A table name no other run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

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
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rows of `sql` as JSON (through `row_to_json`), or nothing if the query fails.
fn rows(url: &str, sql: &str) -> Vec<Value> {
    let mut c = client(url);
    let wrapped = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
    match c.query(wrapped.as_str(), &[]) {
        Ok(rows) => rows
            .iter()
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn topic_values(broker: &Broker, topic: &str) -> Vec<Value> {
    let Ok(p) = broker.partition(topic, 0) else {
        return Vec::new();
    };
    let log = p.log().unwrap();
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        for r in log.read_records(next, 1 << 20).unwrap() {
            if r.offset >= next {
                next = r.offset + 1;
                out.push(serde_json::from_slice(&r.record.value.unwrap()).unwrap());
            }
        }
    }
    out
}

#[test]
fn postgres_sink_upserts_by_key_and_deletes_on_tombstones() {
    let Some(url) = pg_url() else { return };
    let table = unique("users");
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    broker.create_topic("users", 1).unwrap();
    let producer = broker.producer().unwrap();
    let send = |id: i64, value: Option<Value>| {
        let key = json!({"id": id}).to_string();
        let r = match value {
            Some(v) => ProducerRecord::new("users", v.to_string()).key(key),
            None => ProducerRecord::tombstone("users", key),
        };
        producer.send(r).unwrap();
    };
    send(
        1,
        Some(json!({"name": "ann", "prefs": {"theme": "dark"}, "score": 1.5})),
    );
    send(2, Some(json!({"name": "bob", "prefs": {}, "score": 2.0})));
    send(
        1,
        Some(json!({"name": "anna", "prefs": {"theme": "light"}, "score": 3.25})),
    );
    send(3, Some(json!({"name": "cy", "prefs": null, "score": 4.0})));
    send(2, None);
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("pg-users", "io.confluent.connect.jdbc.JdbcSinkConnector")
                .set("connection.url", format!("jdbc:{url}"))
                .set("topics", "users")
                .set("table.name.format", &table)
                .set("key.converter", "json")
                .set("value.converter", "json")
                .set("insert.mode", "upsert")
                .set("pk.mode", "record_key")
                .set("delete.enabled", "true"),
        )
        .unwrap();
    let query = format!("SELECT id, name, prefs, score FROM \"{table}\" ORDER BY id");
    let expected = vec![
        json!({"id": 1, "name": "anna", "prefs": {"theme": "light"}, "score": 3.25}),
        json!({"id": 3, "name": "cy", "prefs": null, "score": 4}),
    ];
    wait_for("the table to match", || {
        let status = connect.status("pg-users").unwrap();
        assert!(status.tasks[0].trace.is_none(), "{status:?}");
        rows(&url, &query) == expected
    });
    // Types from the first record; the key is the primary key.
    let types = rows(
        &url,
        &format!(
            "SELECT column_name::text AS c, data_type::text AS t FROM information_schema.columns \
             WHERE table_name = '{table}' ORDER BY ordinal_position"
        ),
    );
    assert_eq!(
        types,
        vec![
            json!({"c": "id", "t": "bigint"}),
            json!({"c": "name", "t": "text"}),
            json!({"c": "prefs", "t": "jsonb"}),
            json!({"c": "score", "t": "double precision"}),
        ]
    );
    // An update after a restart of the runtime goes to the same row.
    connect.shutdown();
    send(
        3,
        Some(json!({"name": "cyd", "prefs": {"a": [1]}, "score": 5.5})),
    );
    let connect = runtime(&broker);
    connect
        .start_connector(connect_config_again(&url, &table))
        .unwrap();
    wait_for("the update", || {
        rows(&url, &query).get(1).map(|r| r["name"].clone()) == Some(json!("cyd"))
    });
    assert_eq!(rows(&url, &query).len(), 2);
    client(&url)
        .batch_execute(&format!("DROP TABLE \"{table}\""))
        .unwrap();
}

fn connect_config_again(url: &str, table: &str) -> ConnectorConfig {
    ConnectorConfig::new("pg-users", "PostgresSink")
        .set("connection.url", url)
        .set("topics", "users")
        .set("table.name.format", table)
        .set("key.converter", "json")
        .set("value.converter", "json")
        .set("insert.mode", "upsert")
        .set("pk.mode", "record_key")
        .set("delete.enabled", "true")
}

#[test]
fn postgres_source_timestamp_incrementing_resumes_and_sees_updates() {
    let Some(url) = pg_url() else { return };
    let table = unique("orders");
    let mut c = client(&url);
    c.batch_execute(&format!(
        "CREATE TABLE \"{table}\" (id serial PRIMARY KEY, item text NOT NULL, qty integer, \
         updated timestamptz NOT NULL DEFAULT now(), extra jsonb);
         INSERT INTO \"{table}\" (item, qty, updated, extra)
           SELECT 'item ' || g, g, now() - interval '1 hour' + (g / 10) * interval '1 second',
                  jsonb_build_object('g', g)
           FROM generate_series(1, 120) g;"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ConnectorConfig::new("pg-orders", "PostgresSource")
        .set("connection.url", &url)
        .set("table.whitelist", &table)
        .set("mode", "timestamp+incrementing")
        .set("incrementing.column.name", "id")
        .set("timestamp.column.name", "updated")
        .set("topic.prefix", "pg-")
        .set("poll.interval.ms", "20")
        .set("batch.max.rows", "25")
        .set("value.converter", "json")
        .set("key.converter", "json");
    let topic = format!("pg-{table}");
    {
        let broker = open(dir.path());
        let connect = runtime(&broker);
        connect.start_connector(config.clone()).unwrap();
        wait_for("120 records", || topic_values(&broker, &topic).len() >= 120);
        connect.stop_connector("pg-orders").unwrap();
        let offsets = connect.source_offsets("pg-orders").unwrap();
        assert_eq!(offsets[0].0, json!({"table": table}));
        assert_eq!(offsets[0].1["incrementing"], 120);
    }
    // New rows and an update while the runtime is down.
    c.batch_execute(&format!(
        "INSERT INTO \"{table}\" (item, qty) VALUES ('late 1', 1), ('late 2', 2);
         UPDATE \"{table}\" SET qty = 999, updated = now() WHERE id = 5;"
    ))
    .unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect.start_connector(config).unwrap();
    wait_for("123 records", || topic_values(&broker, &topic).len() >= 123);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        connect.status("pg-orders").unwrap().tasks[0].state,
        ConnectorState::Running
    );
    connect.shutdown();
    let values = topic_values(&broker, &topic);
    assert_eq!(
        values.len(),
        123,
        "each row once, plus the updated row once more"
    );
    let ids: Vec<i64> = values[..120]
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=120).collect::<Vec<_>>());
    assert_eq!(values[7]["item"], "item 8");
    assert_eq!(values[7]["extra"], json!({"g": 8}));
    let tail: Vec<(i64, i64)> = values[120..]
        .iter()
        .map(|v| (v["id"].as_i64().unwrap(), v["qty"].as_i64().unwrap()))
        .collect();
    assert!(tail.contains(&(5, 999)) && tail.contains(&(121, 1)) && tail.contains(&(122, 2)));
    c.batch_execute(&format!("DROP TABLE \"{table}\"")).unwrap();
}

#[test]
fn postgres_to_topic_to_postgres_and_bad_configs() {
    let Some(url) = pg_url() else { return };
    let from = unique("src");
    let to = unique("dst");
    let mut c = client(&url);
    c.batch_execute(&format!(
        "CREATE TABLE \"{from}\" (id bigint PRIMARY KEY, name text, price numeric(10,2));
         INSERT INTO \"{from}\" SELECT g, 'n' || g, g * 1.25 FROM generate_series(1, 50) g;"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path());
    let connect = runtime(&broker);
    connect
        .start_connector(
            ConnectorConfig::new("from-pg", "PostgresSource")
                .set("connection.url", &url)
                .set("table.whitelist", &from)
                .set("mode", "incrementing")
                .set("incrementing.column.name", "id")
                .set("poll.interval.ms", "20")
                .set("value.converter", "json")
                .set("key.converter", "json"),
        )
        .unwrap();
    connect
        .start_connector(
            ConnectorConfig::new("to-pg", "PostgresSink")
                .set("connection.url", &url)
                .set("topics", &from)
                .set("table.name.format", &to)
                .set("value.converter", "json")
                .set("insert.mode", "upsert")
                .set("pk.mode", "record_value")
                .set("pk.fields", "id"),
        )
        .unwrap();
    let query = format!("SELECT id, name, price FROM \"{to}\" ORDER BY id");
    wait_for("50 rows copied", || rows(&url, &query).len() == 50);
    let row = &rows(&url, &query)[3];
    assert_eq!((&row["id"], &row["name"]), (&json!(4), &json!("n4")));
    assert_eq!(row["price"].as_f64(), Some(5.0));
    // Bad configs name their key.
    for (config, key) in [
        (
            ConnectorConfig::new("x", "PostgresSource")
                .set("connection.url", &url)
                .set("table.whitelist", "no_such_table_here")
                .set("mode", "incrementing")
                .set("incrementing.column.name", "id"),
            "table.whitelist",
        ),
        (
            ConnectorConfig::new("x", "PostgresSink")
                .set("connection.url", "postgresql://nobody@127.0.0.1:1/none")
                .set("topics", "t"),
            "connection.url",
        ),
        (
            ConnectorConfig::new("x", "PostgresSink")
                .set("connection.url", "not a url ::: at all")
                .set("topics", "t"),
            "connection.url",
        ),
    ] {
        match connect.start_connector(config) {
            Err(Error::ConnectorConfig { key: k, .. }) => assert_eq!(k, key),
            other => panic!("expected a config error naming {key}, got {other:?}"),
        }
    }
    connect.shutdown();
    c.batch_execute(&format!("DROP TABLE \"{from}\"; DROP TABLE \"{to}\""))
        .unwrap();
}
