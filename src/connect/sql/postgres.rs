//! The `PostgreSQL` source and sink (feature `postgres`, the synchronous `postgres` client,
//! without TLS).
//!
//! `connection.url` is `jdbc:postgresql://host:port/db` (Confluent's form), a
//! `postgresql://user:password@host:port/db` URL or libpq's `key=value` form;
//! `connection.user` and `connection.password` override what it says. Sessions use UTC.
//!
//! Parameters are sent as text and cast to each column's type (`$1::text::bigint`), so a JSON
//! number fills an `integer` column, a JSON string a `timestamptz` or `uuid` column, and a
//! JSON object a `jsonb` column. Tables created by the sink type columns `BIGINT`,
//! `DOUBLE PRECISION`, `BOOLEAN`, `TEXT` or `JSONB` from the first record. The source reads
//! rows with `row_to_json`, so every column type becomes JSON as `PostgreSQL` writes it.

use std::collections::HashMap;

use postgres::{Client, NoTls, Statement};
use serde_json::{Map, Value};

use super::settings::{criteria, SourceQuery, TimestampKind};
use super::sink::SqlSinkConnector;
use super::source::SqlSourceConnector;
use super::{quote, Database, Position, Row};
use crate::connect::api::{SinkConnector, SinkTask, SourceConnector, SourceTask};
use crate::connect::config::ConnectorConfig;
use crate::error::{Error, Result};

/// The earliest time a source offset starts from: 0001-01-01 in microseconds since the epoch
/// (`PostgreSQL` timestamps cannot hold `i64::MIN` microseconds).
const MIN_MICROS: i64 = -62_135_596_800_000_000;

fn external(what: &str, e: &postgres::Error) -> Error {
    Error::External {
        system: "postgres",
        reason: format!("{what}: {e}"),
    }
}

/// A connection with its prepared statements.
pub(crate) struct Postgres {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Postgres {
    fn prepare(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .client
            .prepare(sql)
            .map_err(|e| external(&format!("preparing `{sql}`"), &e))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

impl Database for Postgres {
    const SYSTEM: &'static str = "postgres";

    fn connect(config: &ConnectorConfig) -> Result<Self> {
        let url = config.required("connection.url")?.trim();
        let url = url.strip_prefix("jdbc:").unwrap_or(url);
        let mut pg: postgres::Config = url
            .parse()
            .map_err(|e| config.error("connection.url", &format!("`{url}`: {e}")))?;
        if let Some(user) = config.get("connection.user") {
            pg.user(user);
        }
        if let Some(password) = config.get("connection.password") {
            pg.password(password);
        }
        let mut client = pg
            .connect(NoTls)
            .map_err(|e| config.error("connection.url", &format!("connecting to `{url}`: {e}")))?;
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .map_err(|e| external("setting the time zone", &e))?;
        Ok(Postgres {
            client,
            statements: HashMap::new(),
        })
    }

    fn columns(&mut self, table: &str) -> Result<Option<Vec<(String, String)>>> {
        let rows = self
            .client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
                 ORDER BY attnum",
                &[&quote(table)],
            )
            .map_err(|e| external(&format!("reading the columns of `{table}`"), &e))?;
        let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok((!cols.is_empty()).then_some(cols))
    }

    fn sql_type(value: &Value, _primary_key: bool) -> &'static str {
        match value {
            Value::Bool(_) => "BOOLEAN",
            Value::Number(n) if n.is_i64() || n.is_u64() => "BIGINT",
            Value::Number(_) => "DOUBLE PRECISION",
            Value::Object(_) | Value::Array(_) => "JSONB",
            Value::Null | Value::String(_) => "TEXT",
        }
    }

    fn execute(&mut self, sql: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .map_err(|e| external(&format!("running `{sql}`"), &e))
    }

    fn placeholder(index: usize, column_type: &str) -> String {
        if column_type.is_empty() {
            format!("${index}::text")
        } else {
            format!("${index}::text::{column_type}")
        }
    }

    fn write(&mut self, sql: &str, params: &[&Value]) -> Result<()> {
        let stmt = self.prepare(sql)?;
        let texts: Vec<Option<String>> = params
            .iter()
            .map(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect();
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = texts
            .iter()
            .map(|t| t as &(dyn postgres::types::ToSql + Sync))
            .collect();
        self.client
            .execute(&stmt, &refs)
            .map_err(|e| external(&format!("running `{sql}`"), &e))?;
        Ok(())
    }

    fn poll(
        &mut self,
        query: &SourceQuery,
        kind: TimestampKind,
        after: &Position,
        until: Option<i64>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>> {
        let after = match kind {
            TimestampKind::Micros => Position {
                timestamp: Some(after.timestamp.unwrap_or(MIN_MICROS).max(MIN_MICROS)),
                ..*after
            },
            TimestampKind::Millis => *after,
        };
        let ts_param = |i: usize| match kind {
            TimestampKind::Micros => {
                format!("(TIMESTAMPTZ 'epoch' + ${i}::bigint * INTERVAL '1 microsecond')")
            }
            TimestampKind::Millis => format!("${i}::bigint"),
        };
        let (clause, params) = criteria(query, &after, until, &|c| quote(c), &ts_param, &|i| {
            format!("${i}::bigint")
        });
        let inc = query
            .incrementing
            .as_ref()
            .map_or("NULL::bigint".to_string(), |c| {
                format!("t.{}::bigint", quote(c))
            });
        let ts = query
            .timestamp
            .as_ref()
            .map_or("NULL::bigint".to_string(), |c| match kind {
                TimestampKind::Micros => {
                    format!("(EXTRACT(EPOCH FROM t.{}) * 1000000)::bigint", quote(c))
                }
                TimestampKind::Millis => format!("t.{}::bigint", quote(c)),
            });
        let limit = limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
        let sql = format!(
            // The outer query keeps the inner order explicitly (PostgreSQL does not promise
            // that a subquery's order survives): timestamp, then incrementing column.
            "SELECT row_to_json(t)::text, {inc}, {ts} FROM (SELECT * FROM {}{clause}{limit}) t \
             ORDER BY 3 ASC, 2 ASC",
            quote(&query.table)
        );
        let stmt = self.prepare(&sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self
            .client
            .query(&stmt, &refs)
            .map_err(|e| external(&format!("running `{sql}`"), &e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let text: String = r.get(0);
            let columns: Map<String, Value> =
                serde_json::from_str(&text).map_err(|e| Error::External {
                    system: "postgres",
                    reason: format!("row_to_json gave what serde_json cannot read: {e}"),
                })?;
            out.push(Row {
                columns,
                incrementing: r.get(1),
                timestamp: r.get(2),
            });
        }
        Ok(out)
    }

    fn timestamp_kind(&mut self, table: &str, column: &str) -> Result<TimestampKind> {
        let columns = self.columns(table)?.unwrap_or_default();
        let ty = columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        if ty.starts_with("timestamp") {
            Ok(TimestampKind::Micros)
        } else if ["bigint", "integer", "smallint"].contains(&ty) {
            Ok(TimestampKind::Millis)
        } else {
            Err(Error::External {
                system: "postgres",
                reason: format!(
                    "timestamp column `{column}` of `{table}` is `{ty}`: use timestamp, \
                     timestamptz or an integer of milliseconds"
                ),
            })
        }
    }
}

/// The `PostgreSQL` sink connector (`PostgresSink`, or Confluent's `JdbcSinkConnector` with a
/// `jdbc:postgresql:` URL): writes records as rows, inserted or upserted by key, tombstones as
/// deletes, with Confluent's JDBC sink settings (`connection.url`, `connection.user`,
/// `connection.password`, `insert.mode`, `pk.mode`, `pk.fields`, `delete.enabled`,
/// `auto.create`, `auto.evolve`, `batch.size`, `table.name.format`).
#[derive(Default)]
pub struct PostgresSinkConnector {
    inner: SqlSinkConnector<Postgres>,
}

impl std::fmt::Debug for PostgresSinkConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSinkConnector")
            .finish_non_exhaustive()
    }
}

impl SinkConnector for PostgresSinkConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.inner.start(config)
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        Ok(self.inner.task_configs(max_tasks))
    }

    fn task(&self) -> Box<dyn SinkTask> {
        SqlSinkConnector::<Postgres>::task()
    }
}

/// The `PostgreSQL` source connector (`PostgresSource`, or Confluent's `JdbcSourceConnector`
/// with a `jdbc:postgresql:` URL): new rows of tables by an incrementing column and/or a
/// timestamp column (`timestamp`, `timestamptz`, or integer milliseconds).
#[derive(Default)]
pub struct PostgresSourceConnector {
    inner: SqlSourceConnector<Postgres>,
}

impl std::fmt::Debug for PostgresSourceConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSourceConnector")
            .finish_non_exhaustive()
    }
}

impl SourceConnector for PostgresSourceConnector {
    fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.inner.start(config)
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<ConnectorConfig>> {
        Ok(self.inner.task_configs(max_tasks))
    }

    fn task(&self) -> Box<dyn SourceTask> {
        SqlSourceConnector::<Postgres>::task()
    }
}
