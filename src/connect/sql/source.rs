//! The SQL source (Confluent's `JdbcSourceTask` with its `TimestampIncrementingTableQuerier`):
//! reads new rows of tables by an incrementing column, a timestamp column, or both.
//!
//! Each table is a source partition `{"table": <name>}`; its offset is
//! `{"incrementing": <last id>}`, `{"timestamp": <last time>}` or both, as Confluent writes
//! them. A row becomes a record of topic `<topic.prefix><table>` whose value is the row as a
//! JSON object and whose key is the incrementing column's value (when there is one).
//!
//! Invariants:
//! 1. Rows are read in the order of the offset columns, strictly after the stored offset, so a
//!    restarted task repeats no row whose offset was stored and skips none after it (in
//!    timestamp+incrementing mode even among rows of one timestamp).
//! 2. A table is queried again at once when the last query filled `batch.max.rows`, else after
//!    `poll.interval.ms`.
//! 3. A row read with a NULL in an offset column of its mode fails the task (as Confluent's
//!    source: "Null value for incrementing column"), after the rows before it were delivered:
//!    the offset stays at the row before, so nothing is skipped and a restart meets the row
//!    again (until it gets a value, or the column is made `NOT NULL`). The queries' `>` and
//!    `<` never select a NULL, so in `incrementing` mode rows whose incrementing column is
//!    NULL, and in the timestamp modes rows whose timestamp is NULL, are never read (as in
//!    Confluent's source); only `timestamp+incrementing` meets a NULL incrementing value, in a
//!    row selected by its timestamp.
//!
//! Timestamp columns: in `SQLite` integers, milliseconds since the epoch; in `PostgreSQL`
//! `timestamp`, `timestamptz` (offsets in microseconds since the epoch) or integers
//! (milliseconds).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::settings::{Mode, SourceQuery, SourceSettings, TimestampKind};
use super::{quote, Database, Position, Row};
use crate::connect::api::{SourceTask, SourceTaskContext};
use crate::connect::config::ConnectorConfig;
use crate::connect::data::{ConnectData, SourceRecord};
use crate::error::{Error, Result};

/// A source connector over database `D`.
pub(crate) struct SqlSourceConnector<D> {
    config: Option<ConnectorConfig>,
    tables: Vec<String>,
    db: PhantomData<fn() -> D>,
}

impl<D> Default for SqlSourceConnector<D> {
    fn default() -> Self {
        SqlSourceConnector {
            config: None,
            tables: Vec::new(),
            db: PhantomData,
        }
    }
}

impl<D: Database> SqlSourceConnector<D> {
    pub fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        let settings = SourceSettings::from_config(config)?;
        let mut db = D::connect(config)?;
        for table in &settings.tables {
            let Some(columns) = db.columns(table)? else {
                return Err(config.error(
                    "table.whitelist",
                    &format!("table `{table}` does not exist"),
                ));
            };
            for (key, column) in [
                ("incrementing.column.name", &settings.incrementing),
                ("timestamp.column.name", &settings.timestamp),
            ] {
                if let Some(column) = column {
                    if !columns.iter().any(|(c, _)| c == column) {
                        return Err(
                            config.error(key, &format!("table `{table}` has no column `{column}`"))
                        );
                    }
                }
            }
        }
        self.tables = settings.tables;
        self.config = Some(config.clone());
        Ok(())
    }

    /// The tables shared out round-robin among at most `max_tasks` tasks.
    pub fn task_configs(&self, max_tasks: usize) -> Vec<ConnectorConfig> {
        let Some(config) = &self.config else {
            return Vec::new();
        };
        let n = max_tasks.min(self.tables.len()).max(1);
        let mut groups = vec![Vec::new(); n];
        for (i, t) in self.tables.iter().enumerate() {
            groups[i % n].push(t.clone());
        }
        groups
            .into_iter()
            .map(|g| config.clone().set("tables", g.join(",")))
            .collect()
    }

    pub fn task() -> Box<dyn SourceTask> {
        Box::new(SqlSourceTask::<D> {
            db: None,
            settings: None,
            context: None,
            tables: Vec::new(),
            next: 0,
            failure: None,
        })
    }
}

struct TableState {
    query: SourceQuery,
    partition: Arc<Value>,
    topic: Arc<str>,
    kind: TimestampKind,
    position: Position,
    due: Instant,
}

struct SqlSourceTask<D> {
    db: Option<D>,
    settings: Option<SourceSettings>,
    context: Option<SourceTaskContext>,
    tables: Vec<TableState>,
    /// The table to look at first (the tables take turns).
    next: usize,
    /// An error met after rows that were returned first (invariant 3): the next poll's.
    failure: Option<Error>,
}

/// Invariant 3: the error of a row with a NULL in an offset column of `query`'s mode.
fn null_offset_column<D: Database>(
    query: &SourceQuery,
    row: &Row,
    after: Position,
) -> Option<Error> {
    let (what, column) = match query.mode {
        Mode::Incrementing | Mode::TimestampIncrementing if row.incrementing.is_none() => {
            ("incrementing", query.incrementing.as_deref())
        }
        Mode::Timestamp | Mode::TimestampIncrementing if row.timestamp.is_none() => {
            ("timestamp", query.timestamp.as_deref())
        }
        _ => return None,
    };
    let column = quote(column.unwrap_or_default());
    let offset = offset_of(query.mode, after);
    Some(Error::External {
        system: D::SYSTEM,
        reason: format!(
            "a row of table `{}` after offset {offset} has NULL in its {what} column {column}: \
             the source cannot read past it without losing rows (give the row a value, or make \
             the column NOT NULL)",
            query.table
        ),
    })
}

fn position_of(offset: Option<&Value>) -> Position {
    Position {
        incrementing: offset
            .and_then(|o| o.get("incrementing"))
            .and_then(Value::as_i64),
        timestamp: offset
            .and_then(|o| o.get("timestamp"))
            .and_then(Value::as_i64),
    }
}

fn offset_of(mode: Mode, p: Position) -> Value {
    match mode {
        Mode::Incrementing => json!({"incrementing": p.incrementing}),
        Mode::Timestamp => json!({"timestamp": p.timestamp}),
        Mode::TimestampIncrementing => {
            json!({"incrementing": p.incrementing, "timestamp": p.timestamp})
        }
    }
}

impl<D: Database> SourceTask for SqlSourceTask<D> {
    fn start(&mut self, config: &ConnectorConfig, context: &SourceTaskContext) -> Result<()> {
        let settings = SourceSettings::from_config(config)?;
        let mut db = D::connect(config)?;
        let now = Instant::now();
        for table in &settings.tables {
            let partition = Arc::new(json!({"table": table}));
            let stored = context.offset(&partition)?;
            let kind = match &settings.timestamp {
                Some(column) => db.timestamp_kind(table, column)?,
                None => TimestampKind::Millis,
            };
            self.tables.push(TableState {
                query: settings.query(table),
                partition,
                topic: format!("{}{table}", settings.topic_prefix).into(),
                kind,
                position: position_of(stored.as_ref()),
                due: now,
            });
        }
        self.db = Some(db);
        self.settings = Some(settings);
        self.context = Some(context.clone());
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let (Some(db), Some(settings)) = (&mut self.db, &self.settings) else {
            return Err(Error::InvalidArgument(
                "the SQL source task was not started".into(),
            ));
        };
        let n = self.tables.len();
        let now = Instant::now();
        for k in 0..n {
            let i = (self.next + k) % n;
            let t = &mut self.tables[i];
            if t.due > now {
                continue;
            }
            let limit = match settings.mode {
                // Rows of one timestamp must come in one query (invariant 1).
                Mode::Timestamp => None,
                _ => Some(settings.batch_max_rows),
            };
            // Always an upper bound, as Confluent's source: rows stamped with the current
            // instant may still be joined by more rows with that timestamp, which a later
            // `ts > last` query would then miss.
            let until = {
                let delay = match t.kind {
                    TimestampKind::Millis => settings.delay_ms,
                    TimestampKind::Micros => settings.delay_ms.saturating_mul(1000),
                };
                Some(D::now(t.kind).saturating_sub(delay))
            };
            let rows = db.poll(&t.query, t.kind, &t.position, until, limit)?;
            // Invariant 2.
            t.due = if limit.is_some_and(|l| rows.len() >= l) {
                now
            } else {
                now + Duration::from_millis(settings.poll_interval_ms)
            };
            if rows.is_empty() {
                continue;
            }
            self.next = i + 1;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(e) = null_offset_column::<D>(&t.query, &row, t.position) {
                    // Invariant 3: the rows before it first, then the error.
                    if records.is_empty() {
                        return Err(e);
                    }
                    self.failure = Some(e);
                    break;
                }
                if row.incrementing.is_some() {
                    t.position.incrementing = row.incrementing;
                }
                if row.timestamp.is_some() {
                    t.position.timestamp = row.timestamp;
                }
                let mut record = SourceRecord::new(
                    Arc::clone(&t.partition),
                    offset_of(settings.mode, t.position),
                    Arc::clone(&t.topic),
                    ConnectData::Json(Value::Object(row.columns)),
                );
                if let Some(id) = row.incrementing {
                    record = record.with_key(ConnectData::Json(Value::from(id)));
                }
                if let Some(ts) = row.timestamp {
                    record.record.timestamp = Some(match t.kind {
                        TimestampKind::Millis => ts,
                        TimestampKind::Micros => ts / 1000,
                    });
                }
                records.push(record);
            }
            return Ok(records);
        }
        let wait = self
            .tables
            .iter()
            .map(|t| t.due.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(100));
        if let Some(context) = &self.context {
            context.idle(wait);
        }
        Ok(Vec::new())
    }

    fn stop(&mut self) {
        self.db = None;
    }
}
