//! The `SQLite` source and sink (feature `sqlite`, the bundled `SQLite` of `rusqlite`).
//!
//! `connection.url` is `jdbc:sqlite:<path>` (Confluent's form), `sqlite:<path>` or a plain path;
//! the database file is created when missing. The sink's connection uses WAL with
//! `synchronous=FULL`, so a committed transaction is on disk when `flush` returns; both wait up
//! to 5 s for a lock held by another connection (the sink's tasks hold the write lock only
//! during one `put`, so several tasks can share one file). Columns are typed `INTEGER`, `REAL` or `TEXT`
//! from the first record's JSON (objects and arrays as JSON text); BLOBs are read as base64.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use serde_json::{Map, Value};
use std::fmt::Write as _;

use super::settings::{SourceQuery, TimestampKind};
use super::sink::SqlSinkConnector;
use super::source::SqlSourceConnector;
use super::{base64, quote, Database, Position, Row};
use crate::connect::api::{SinkConnector, SinkTask, SourceConnector, SourceTask};
use crate::connect::config::ConnectorConfig;
use crate::error::{Error, Result};

use super::settings::criteria;

fn external(what: &str, e: &rusqlite::Error) -> Error {
    Error::External {
        system: "sqlite",
        reason: format!("{what}: {e}"),
    }
}

/// A JSON value as an `SQLite` parameter, text borrowed.
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Bool(b) => ToSqlOutput::Owned(i64::from(*b).into()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ToSqlOutput::Owned(i.into()),
                None => ToSqlOutput::Owned(n.as_f64().unwrap_or(f64::NAN).into()),
            },
            Value::String(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            other => ToSqlOutput::Owned(other.to_string().into()),
        })
    }
}

fn json_of(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(base64(b)),
    }
}

impl Database for Connection {
    const SYSTEM: &'static str = "sqlite";

    fn connect(config: &ConnectorConfig) -> Result<Self> {
        let url = config.required("connection.url")?.trim();
        let path = url
            .strip_prefix("jdbc:sqlite:")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let conn = Connection::open(path)
            .map_err(|e| config.error("connection.url", &format!("opening `{path}`: {e}")))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| external("setting the busy timeout", &e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| external("setting the journal mode", &e))?;
        Ok(conn)
    }

    fn columns(&mut self, table: &str) -> Result<Option<Vec<(String, String)>>> {
        let mut stmt = self
            .prepare_cached("SELECT name, type FROM pragma_table_info(?1)")
            .map_err(|e| external("reading a table's columns", &e))?;
        let cols = stmt
            .query_map([table], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .map_err(|e| external(&format!("reading the columns of `{table}`"), &e))?;
        Ok((!cols.is_empty()).then_some(cols))
    }

    fn sql_type(value: &Value, _primary_key: bool) -> &'static str {
        match value {
            Value::Bool(_) => "INTEGER",
            Value::Number(n) if n.is_i64() || n.is_u64() => "INTEGER",
            Value::Number(_) => "REAL",
            _ => "TEXT",
        }
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        self.execute_batch(sql)
            .map_err(|e| external(&format!("running `{sql}`"), &e))
    }

    fn placeholder(index: usize, _column_type: &str) -> String {
        format!("?{index}")
    }

    fn write(&mut self, sql: &str, params: &[&Value]) -> Result<()> {
        let mut stmt = self
            .prepare_cached(sql)
            .map_err(|e| external(&format!("preparing `{sql}`"), &e))?;
        stmt.execute(rusqlite::params_from_iter(params.iter().map(|v| Param(v))))
            .map_err(|e| external(&format!("running `{sql}`"), &e))?;
        Ok(())
    }

    fn poll(
        &mut self,
        query: &SourceQuery,
        _timestamp_kind: TimestampKind,
        after: &Position,
        until: Option<i64>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let (clause, params) = criteria(
            query,
            after,
            until,
            &|c| quote(c),
            &|i| format!("?{i}"),
            &|i| format!("?{i}"),
        );
        let mut sql = format!("SELECT * FROM {}{clause}", quote(&query.table));
        if let Some(limit) = limit {
            let _ = write!(sql, " LIMIT {limit}");
        }
        let mut stmt = self
            .prepare_cached(&sql)
            .map_err(|e| external(&format!("preparing `{sql}`"), &e))?;
        let names: Vec<String> = stmt
            .column_names()
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let inc = query
            .incrementing
            .as_ref()
            .and_then(|c| names.iter().position(|n| n == c));
        let ts = query
            .timestamp
            .as_ref()
            .and_then(|c| names.iter().position(|n| n == c));
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| external(&format!("running `{sql}`"), &e))?;
        let mut out = Vec::new();
        let integer =
            |row: &rusqlite::Row<'_>, i: Option<usize>, what: &str| -> Result<Option<i64>> {
                let Some(i) = i else { return Ok(None) };
                match row.get_ref(i).map_err(|e| external("reading a row", &e))? {
                    ValueRef::Integer(v) => Ok(Some(v)),
                    // The source decides (as PostgreSQL's NULLs reach it as `None`).
                    ValueRef::Null => Ok(None),
                    other => Err(Error::External {
                        system: "sqlite",
                        reason: format!(
                            "the {what} column of `{}` holds {:?}, not an integer",
                            query.table,
                            other.data_type()
                        ),
                    }),
                }
            };
        while let Some(row) = rows.next().map_err(|e| external("reading a row", &e))? {
            let mut columns = Map::new();
            for (i, name) in names.iter().enumerate() {
                let v = row.get_ref(i).map_err(|e| external("reading a row", &e))?;
                columns.insert(name.clone(), json_of(v));
            }
            out.push(Row {
                columns,
                incrementing: integer(row, inc, "incrementing")?,
                timestamp: integer(row, ts, "timestamp")?,
            });
        }
        Ok(out)
    }

    fn timestamp_kind(&mut self, _table: &str, _column: &str) -> Result<TimestampKind> {
        Ok(TimestampKind::Millis)
    }
}

/// The `SQLite` sink connector (`SqliteSink`, or Confluent's `JdbcSinkConnector` with a
/// `jdbc:sqlite:` URL): writes records as rows, inserted or upserted by key, tombstones as
/// deletes. Settings: Confluent's JDBC sink names (`connection.url`, `insert.mode`,
/// `pk.mode`, `pk.fields`, `delete.enabled`, `auto.create`, `auto.evolve`, `batch.size`,
/// `table.name.format`); see the crate's README.
///
/// ```
/// # use std::time::{Duration, Instant};
/// use tidelog::{Broker, Connect, ConnectorConfig, ProducerRecord};
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path().join("data"))?;
/// broker.create_topic("users", 1)?;
/// let producer = broker.producer()?;
/// producer.send(ProducerRecord::new("users", r#"{"name": "ann"}"#).key("1"))?;
/// producer.send(ProducerRecord::new("users", r#"{"name": "anna"}"#).key("1"))?;
/// let db = dir.path().join("app.db");
/// let connect = Connect::new(&broker)?;
/// connect.start_connector(
///     ConnectorConfig::new("users-db", "SqliteSink")
///         .set("connection.url", format!("jdbc:sqlite:{}", db.display()))
///         .set("topics", "users")
///         .set("value.converter", "json")
///         .set("insert.mode", "upsert")
///         .set("pk.mode", "record_key")
///         .set("pk.fields", "id"),
/// )?;
/// # let deadline = Instant::now() + Duration::from_secs(20);
/// # loop {
/// #     let c = rusqlite::Connection::open(&db)?;
/// #     let n: Option<String> = c.query_row("SELECT name FROM users WHERE id = '1'", [], |r| r.get(0)).ok();
/// #     if n.as_deref() == Some("anna") { break; }
/// #     assert!(Instant::now() < deadline);
/// #     std::thread::sleep(Duration::from_millis(20));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct SqliteSinkConnector {
    inner: SqlSinkConnector<Connection>,
}

impl std::fmt::Debug for SqliteSinkConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSinkConnector")
            .finish_non_exhaustive()
    }
}

impl SinkConnector for SqliteSinkConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.inner.start(config)
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        Ok(self.inner.task_configs(max_tasks))
    }

    fn task(&self) -> Box<dyn SinkTask> {
        SqlSinkConnector::<Connection>::task()
    }
}

/// The `SQLite` source connector (`SqliteSource`, or Confluent's `JdbcSourceConnector` with a
/// `jdbc:sqlite:` URL): new rows of tables, by an incrementing column and/or a timestamp
/// column (integer milliseconds since the epoch). Settings: Confluent's JDBC source names
/// (`connection.url`, `table.whitelist`, `mode`, `incrementing.column.name`,
/// `timestamp.column.name`, `topic.prefix`, `poll.interval.ms`, `batch.max.rows`,
/// `timestamp.delay.interval.ms`); see the crate's README.
#[derive(Default)]
pub struct SqliteSourceConnector {
    inner: SqlSourceConnector<Connection>,
}

impl std::fmt::Debug for SqliteSourceConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSourceConnector")
            .finish_non_exhaustive()
    }
}

impl SourceConnector for SqliteSourceConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.inner.start(config)
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        Ok(self.inner.task_configs(max_tasks))
    }

    fn task(&self) -> Box<dyn SourceTask> {
        SqlSourceConnector::<Connection>::task()
    }
}
