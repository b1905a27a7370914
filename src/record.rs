//! `Record` and `Header`: what a producer writes and a consumer reads.

use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// One header of a record: a string key and an optional byte value, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value; `None` is Kafka's null header value.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record: key, value, timestamp and headers.
///
/// A `None` value is a *tombstone*: in a compacted log it deletes the key.
///
/// ```
/// use tidelog::Record;
/// let r = Record::new("user-7", "logged in").with_timestamp(1_700_000_000_000);
/// assert_eq!(r.key.as_deref(), Some(&b"user-7"[..]));
/// assert!(!Record::tombstone("user-7").value.is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The key; records with the same key go to the same partition and compaction keeps the newest.
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Milliseconds since the Unix epoch (Kafka's `CreateTime`).
    pub timestamp: i64,
    /// Headers, in order; names may repeat.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with a key and a value, stamped with the current time.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            timestamp: now_ms(),
            headers: Vec::new(),
        }
    }

    /// A record with a value and no key, stamped with the current time.
    pub fn from_value(value: impl Into<Bytes>) -> Self {
        Record {
            key: None,
            value: Some(value.into()),
            timestamp: now_ms(),
            headers: Vec::new(),
        }
    }

    /// A tombstone (no value) for `key`, stamped with the current time.
    pub fn tombstone(key: impl Into<Bytes>) -> Self {
        Record {
            key: Some(key.into()),
            value: None,
            timestamp: now_ms(),
            headers: Vec::new(),
        }
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }
}

/// A record read back from a log, with the offset it was stored at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetRecord {
    /// The record's offset in its partition.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// The current wall-clock time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
