//! A file source into a topic, transforms, and a `SQLite` sink out of it; prints the table.
//!
//! ```sh
//! cargo run --example connect_pipeline --features sqlite [-- <work dir>]
//! ```
//!
//! `orders.jsonl` gets one JSON order per line (a later line for the same order id updates it,
//! test orders are to be left out). The file source writes each line to topic `orders`; the
//! SQLite sink reads the topic as JSON, drops the test orders (`Filter` with a `FieldMatches`
//! predicate), stamps each row with where it came from (`InsertField`), renames `qty` to
//! `quantity` (`ReplaceField`), and upserts the rows by `id` into table `orders` of
//! `shop.db`. Both connectors are set up from Kafka Connect JSON configs.

use std::io::Write;
use std::time::{Duration, Instant};

use tidelog::{Broker, Connect, ConnectorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join(format!("tidelog-connect-pipeline-{}", std::process::id())),
        Into::into,
    );
    std::fs::create_dir_all(&work)?;
    let input = work.join("orders.jsonl");
    let db = work.join("shop.db");
    let mut file = std::fs::File::create(&input)?;
    for line in [
        r#"{"id": 1, "item": "tea", "qty": 2, "status": "new"}"#,
        r#"{"id": 2, "item": "coffee", "qty": 1, "status": "new"}"#,
        r#"{"id": 3, "item": "cake", "qty": 5, "status": "test"}"#,
        r#"{"id": 1, "item": "tea", "qty": 3, "status": "paid"}"#,
        r#"{"id": 4, "item": "scone", "qty": 1, "status": "new"}"#,
        r#"{"id": 2, "item": "coffee", "qty": 1, "status": "shipped"}"#,
    ] {
        writeln!(file, "{line}")?;
    }
    drop(file);

    let broker = Broker::open(work.join("data"))?;
    let connect = Connect::new(&broker)?;
    connect.start_connector(ConnectorConfig::from_json(&format!(
        r#"{{
            "name": "orders-file",
            "config": {{
                "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max": "1",
                "file": {input:?},
                "topic": "orders"
            }}
        }}"#,
        input = input.display().to_string()
    ))?)?;
    connect.start_connector(ConnectorConfig::from_json(&format!(
        r#"{{
            "name": "orders-db",
            "config": {{
                "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
                "connection.url": "jdbc:sqlite:{db}",
                "topics": "orders",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter.schemas.enable": "false",
                "insert.mode": "upsert",
                "pk.mode": "record_value",
                "pk.fields": "id",
                "transforms": "dropTests,stamp,rename",
                "transforms.dropTests.type": "org.apache.kafka.connect.transforms.Filter",
                "transforms.dropTests.predicate": "isTest",
                "predicates": "isTest",
                "predicates.isTest.type": "FieldMatches",
                "predicates.isTest.field": "status",
                "predicates.isTest.pattern": "^test$",
                "transforms.stamp.type": "org.apache.kafka.connect.transforms.InsertField$Value",
                "transforms.stamp.static.field": "source",
                "transforms.stamp.static.value": "orders.jsonl",
                "transforms.stamp.offset.field": "kafka_offset",
                "transforms.rename.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
                "transforms.rename.renames": "qty:quantity"
            }}
        }}"#,
        db = db.display()
    ))?)?;

    // The last line is at offset 5: wait until the sink has written it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = rusqlite::Connection::open(&db)?
            .query_row("SELECT max(kafka_offset) FROM orders", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten()
            == Some(5);
        if done {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the pipeline did not finish: {:?}",
                connect.status("orders-db")?
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    connect.shutdown();

    let conn = rusqlite::Connection::open(&db)?;
    let mut stmt = conn.prepare(
        "SELECT id, item, quantity, status, source, kafka_offset FROM orders ORDER BY id",
    )?;
    println!("table orders of {}:", db.display());
    println!(
        "{:>3}  {:<7} {:>8}  {:<8} {:<13} {:>12}",
        "id", "item", "quantity", "status", "source", "kafka_offset"
    );
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (id, item, quantity, status, source, offset) = row?;
        println!("{id:>3}  {item:<7} {quantity:>8}  {status:<8} {source:<13} {offset:>12}");
    }
    println!(
        "source offsets: {:?}",
        connect.source_offsets("orders-file")?
    );
    if std::env::args().nth(1).is_none() {
        drop((connect, broker));
        std::fs::remove_dir_all(&work)?;
    }
    Ok(())
}
