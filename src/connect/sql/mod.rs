//! SQL connectors shared by `SQLite` (`sqlite.rs`, feature `sqlite`) and `PostgreSQL`
//! (`postgres.rs`, feature `postgres`), configured with the names of Confluent's JDBC
//! connectors so that their configs carry over. A [`Database`] is what differs between the two;
//! the settings (`settings.rs`), the sink task (`sink.rs`) and the source task (`source.rs`) are
//! written once.

pub(crate) mod settings;
pub(crate) mod sink;
pub(crate) mod source;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use serde_json::{Map, Value};

use self::settings::{SourceQuery, TimestampKind};
use super::config::ConnectorConfig;
use crate::error::Result;

/// A connection to one database, as the SQL tasks use it.
pub(crate) trait Database: Send + Sized + 'static {
    /// `"sqlite"` or `"postgres"`, for errors.
    const SYSTEM: &'static str;

    /// Connects as `connection.url` (and `connection.user`, `connection.password`) say.
    fn connect(config: &ConnectorConfig) -> Result<Self>;

    /// The columns of `table` and their types, `None` if it does not exist.
    fn columns(&mut self, table: &str) -> Result<Option<Vec<(String, String)>>>;

    /// The column type for a JSON value, when a table or column is created.
    fn sql_type(value: &Value, primary_key: bool) -> &'static str;

    /// Runs a statement without parameters or results (DDL, `BEGIN`, `COMMIT`).
    fn execute(&mut self, sql: &str) -> Result<()>;

    /// The placeholder of parameter `index` (1-based) for a column of type `column_type`.
    fn placeholder(index: usize, column_type: &str) -> String;

    /// Runs `sql` (an insert, upsert or delete) with these parameters.
    fn write(&mut self, sql: &str, params: &[&Value]) -> Result<()>;

    /// The next rows after `after` of a source query, in order, at most `limit` if given.
    fn poll(
        &mut self,
        query: &SourceQuery,
        timestamp_kind: TimestampKind,
        after: &Position,
        until: Option<i64>,
        limit: Option<usize>,
    ) -> Result<Vec<Row>>;

    /// How the timestamp column of `table` is stored.
    fn timestamp_kind(&mut self, table: &str, column: &str) -> Result<TimestampKind>;

    /// The current time in the unit of `kind` (for `timestamp.delay.interval.ms`).
    fn now(kind: TimestampKind) -> i64 {
        let ms = crate::record::now_ms();
        match kind {
            TimestampKind::Millis => ms,
            TimestampKind::Micros => ms.saturating_mul(1000),
        }
    }
}

/// Where a source table was read up to: its offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub incrementing: Option<i64>,
    pub timestamp: Option<i64>,
}

/// A row read by a source: its columns as JSON, and its incrementing and timestamp values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub columns: Map<String, Value>,
    pub incrementing: Option<i64>,
    pub timestamp: Option<i64>,
}

/// `name` as a quoted SQL identifier (both databases use `"`).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Standard base64 (how Kafka's JSON converter writes bytes), for BLOB and BYTEA columns.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_quotes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
    }
}
