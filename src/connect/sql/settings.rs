//! The SQL connectors' settings, by the names of Confluent's JDBC connectors.
//!
//! Sink: `connection.url` (required), `connection.user`, `connection.password`,
//! `table.name.format` (default `${topic}`), `insert.mode` (`insert`, the default, or
//! `upsert`), `pk.mode` (`none`, the default, `record_key` or `record_value`), `pk.fields`
//! (the key columns; for a `record_key` that is not a JSON object, its one column, default
//! `id`), `delete.enabled` (tombstones delete by key; needs `pk.mode=record_key`; default
//! `false`), `auto.create` (create missing tables from the first record; default `true`, unlike
//! Confluent), `auto.evolve` (add missing columns; default `false`), `batch.size` (most rows in
//! one transaction before it is committed, besides the end of every `put`; default 3000).
//!
//! Source: `connection.url` (required), `table.whitelist` or `table.include.list` (required),
//! `mode` (`incrementing`, `timestamp` or `timestamp+incrementing`; required),
//! `incrementing.column.name`, `timestamp.column.name`, `topic.prefix` (default empty: the topic
//! is the table's name), `poll.interval.ms` (default 5000), `batch.max.rows` (default 100),
//! `timestamp.delay.interval.ms` (default 0). The tables are shared out among at most
//! `tasks.max` tasks.

use super::super::config::ConnectorConfig;
use crate::error::Result;
use crate::topic::validate_topic_name;
use std::fmt::Write as _;

/// `insert.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertMode {
    Insert,
    Upsert,
}

/// `pk.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PkMode {
    None,
    RecordKey,
    RecordValue,
}

#[derive(Debug, Clone)]
pub(crate) struct SinkSettings {
    pub table_format: String,
    pub insert_mode: InsertMode,
    pub pk_mode: PkMode,
    pub pk_fields: Vec<String>,
    pub delete_enabled: bool,
    pub auto_create: bool,
    pub auto_evolve: bool,
    pub batch_size: usize,
}

impl SinkSettings {
    pub fn from_config(c: &ConnectorConfig) -> Result<Self> {
        c.required("connection.url")?;
        let insert_mode = match c.get("insert.mode").map_or("insert", str::trim) {
            m if m.eq_ignore_ascii_case("insert") => InsertMode::Insert,
            m if m.eq_ignore_ascii_case("upsert") => InsertMode::Upsert,
            m => return Err(c.error("insert.mode", &format!("`{m}` is not `insert` or `upsert`"))),
        };
        let pk_mode = match c.get("pk.mode").map_or("none", str::trim) {
            m if m.eq_ignore_ascii_case("none") => PkMode::None,
            m if m.eq_ignore_ascii_case("record_key") => PkMode::RecordKey,
            m if m.eq_ignore_ascii_case("record_value") => PkMode::RecordValue,
            m => {
                return Err(c.error(
                    "pk.mode",
                    &format!("`{m}` is not `none`, `record_key` or `record_value`"),
                ))
            }
        };
        let pk_fields = c.list("pk.fields");
        if pk_mode == PkMode::RecordValue && pk_fields.is_empty() {
            return Err(c.error(
                "pk.fields",
                "pk.mode=record_value needs the key columns in pk.fields",
            ));
        }
        if insert_mode == InsertMode::Upsert && pk_mode == PkMode::None {
            return Err(c.error("pk.mode", "insert.mode=upsert needs a primary key"));
        }
        let delete_enabled = c.bool_or("delete.enabled", false)?;
        if delete_enabled && pk_mode != PkMode::RecordKey {
            return Err(c.error(
                "delete.enabled",
                "deletes by tombstone need pk.mode=record_key",
            ));
        }
        let batch_size: usize = c.parse_or("batch.size", 3000)?;
        if batch_size == 0 {
            return Err(c.error("batch.size", "must be at least 1"));
        }
        Ok(SinkSettings {
            table_format: c.get("table.name.format").unwrap_or("${topic}").to_string(),
            insert_mode,
            pk_mode,
            pk_fields,
            delete_enabled,
            auto_create: c.bool_or("auto.create", true)?,
            auto_evolve: c.bool_or("auto.evolve", false)?,
            batch_size,
        })
    }

    /// The table of a record of `topic`.
    pub fn table(&self, topic: &str) -> String {
        self.table_format.replace("${topic}", topic)
    }
}

/// `mode` of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Incrementing,
    Timestamp,
    TimestampIncrementing,
}

/// How a timestamp column holds time: integer milliseconds since the epoch, or a SQL timestamp
/// type read as microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampKind {
    Millis,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Micros,
}

/// What a source task queries, for one table.
#[derive(Debug, Clone)]
pub(crate) struct SourceQuery {
    pub table: String,
    pub mode: Mode,
    pub incrementing: Option<String>,
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct SourceSettings {
    pub tables: Vec<String>,
    pub mode: Mode,
    pub incrementing: Option<String>,
    pub timestamp: Option<String>,
    pub topic_prefix: String,
    pub poll_interval_ms: u64,
    pub batch_max_rows: usize,
    pub delay_ms: i64,
}

impl SourceSettings {
    /// The tables key: `tables` in a task's config (set by the connector), else Confluent's.
    pub fn from_config(c: &ConnectorConfig) -> Result<Self> {
        c.required("connection.url")?;
        let (key, tables) = ["tables", "table.whitelist", "table.include.list"]
            .iter()
            .map(|k| (*k, c.list(k)))
            .find(|(_, t)| !t.is_empty())
            .ok_or_else(|| c.error("table.whitelist", "is required: the tables to read"))?;
        let mode = match c.required("mode")?.trim() {
            "incrementing" => Mode::Incrementing,
            "timestamp" => Mode::Timestamp,
            "timestamp+incrementing" => Mode::TimestampIncrementing,
            m => {
                return Err(c.error(
                    "mode",
                    &format!(
                        "`{m}` is not incrementing, timestamp or timestamp+incrementing (bulk \
                         and query modes are not supported)"
                    ),
                ))
            }
        };
        let incrementing = match mode {
            Mode::Timestamp => None,
            _ => Some(c.required("incrementing.column.name")?.trim().to_string()),
        };
        let timestamp = match mode {
            Mode::Incrementing => None,
            _ => Some(c.required("timestamp.column.name")?.trim().to_string()),
        };
        let topic_prefix = c.get("topic.prefix").unwrap_or_default().to_string();
        for table in &tables {
            validate_topic_name(&format!("{topic_prefix}{table}")).map_err(|e| {
                c.error(
                    key,
                    &format!("table `{table}` with topic.prefix makes no topic name: {e}"),
                )
            })?;
        }
        let batch_max_rows: usize = c.parse_or("batch.max.rows", 100)?;
        if batch_max_rows == 0 {
            return Err(c.error("batch.max.rows", "must be at least 1"));
        }
        Ok(SourceSettings {
            tables,
            mode,
            incrementing,
            timestamp,
            topic_prefix,
            poll_interval_ms: c.parse_or("poll.interval.ms", 5000)?,
            batch_max_rows,
            delay_ms: c.parse_or("timestamp.delay.interval.ms", 0)?,
        })
    }

    pub fn query(&self, table: &str) -> SourceQuery {
        SourceQuery {
            table: table.to_string(),
            mode: self.mode,
            incrementing: self.incrementing.clone(),
            timestamp: self.timestamp.clone(),
        }
    }
}

/// The `WHERE ... ORDER BY` of a source query with `p(i)` as the placeholder of parameter `i`
/// (1-based) and `ts` as the expression for a timestamp parameter, and the parameters in order
/// (Confluent's `TimestampIncrementingCriteria`). In timestamp+incrementing mode:
///
/// ```text
/// WHERE ts < :until AND ((ts = :ts AND inc > :inc) OR ts > :ts) ORDER BY ts, inc
/// ```
///
/// so rows of one timestamp are read in increasing `inc` and none is read twice. Without an
/// `until` (no delay set) the first condition is left out.
pub(crate) fn criteria(
    q: &SourceQuery,
    after: &super::Position,
    until: Option<i64>,
    column: &dyn Fn(&str) -> String,
    ts_param: &dyn Fn(usize) -> String,
    int_param: &dyn Fn(usize) -> String,
) -> (String, Vec<i64>) {
    let mut params = Vec::new();
    let mut sql = String::from(" WHERE ");
    let inc = q.incrementing.as_deref().map(column);
    let ts = q.timestamp.as_deref().map(column);
    if let (Some(ts), Some(until)) = (&ts, until) {
        params.push(until);
        let _ = write!(sql, "{ts} < {} AND ", ts_param(params.len()));
    }
    match (q.mode, inc, ts) {
        (Mode::Incrementing, Some(inc), _) => {
            params.push(after.incrementing.unwrap_or(i64::MIN));
            let _ = write!(
                sql,
                "{inc} > {} ORDER BY {inc} ASC",
                int_param(params.len())
            );
        }
        (Mode::Timestamp, _, Some(ts)) => {
            params.push(after.timestamp.unwrap_or(i64::MIN));
            let _ = write!(sql, "{ts} > {} ORDER BY {ts} ASC", ts_param(params.len()));
        }
        (Mode::TimestampIncrementing, Some(inc), Some(ts)) => {
            let last_ts = after.timestamp.unwrap_or(i64::MIN);
            params.extend([last_ts, after.incrementing.unwrap_or(i64::MIN), last_ts]);
            let n = params.len();
            let _ = write!(
                sql,
                "(({ts} = {} AND {inc} > {}) OR {ts} > {}) ORDER BY {ts} ASC, {inc} ASC",
                ts_param(n - 2),
                int_param(n - 1),
                ts_param(n)
            );
        }
        // from_config guarantees the columns each mode needs.
        _ => sql.push_str("1 = 0"),
    }
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_incrementing_criteria() {
        let q = SourceQuery {
            table: "t".into(),
            mode: Mode::TimestampIncrementing,
            incrementing: Some("id".into()),
            timestamp: Some("ts".into()),
        };
        let after = super::super::Position {
            incrementing: Some(7),
            timestamp: Some(100),
        };
        let (sql, params) = criteria(
            &q,
            &after,
            Some(500),
            &|c| format!("\"{c}\""),
            &|i| format!("?{i}"),
            &|i| format!("?{i}"),
        );
        assert_eq!(
            sql,
            " WHERE \"ts\" < ?1 AND ((\"ts\" = ?2 AND \"id\" > ?3) OR \"ts\" > ?4) \
             ORDER BY \"ts\" ASC, \"id\" ASC"
        );
        assert_eq!(params, [500, 100, 7, 100]);
    }

    #[test]
    fn sink_settings_checks() {
        let base = ConnectorConfig::new("s", "SqliteSink").set("connection.url", "x.db");
        let e = SinkSettings::from_config(&base.clone().set("insert.mode", "upsert")).unwrap_err();
        assert!(e.to_string().contains("pk.mode"), "{e}");
        let e = SinkSettings::from_config(&base.clone().set("delete.enabled", "true")).unwrap_err();
        assert!(e.to_string().contains("delete.enabled"), "{e}");
        let s =
            SinkSettings::from_config(&base.set("table.name.format", "kafka_${topic}")).unwrap();
        assert_eq!(s.table("orders"), "kafka_orders");
    }
}
