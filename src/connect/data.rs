//! What flows through a connector: [`ConnectData`] (a key or a value as the outside system sees it)
//! and the records of sources ([`SourceRecord`]) and sinks ([`SinkRecord`]).
//!
//! A source task makes `SourceRecord`s; the runtime runs the transforms on their
//! [`ConnectRecord`] and turns key and value into bytes with the connector's converters. A sink
//! task gets `SinkRecord`s whose key and value the converters made from the bytes of the topic,
//! after the transforms ran.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::consumer::ConsumerRecord;
use crate::record::Header;

/// A key or a value as a connector sees it (Kafka Connect's data, without a schema): raw bytes,
/// text, or structured data as JSON.
///
/// Converters turn it into the bytes of a record and back: the string converter keeps text as
/// UTF-8, the JSON converter writes and parses JSON, the bytes converter keeps bytes as they are.
///
/// ```
/// use serde_json::json;
/// use tidelog::ConnectData;
///
/// let line = ConnectData::from("hello");
/// assert_eq!(line.to_text().as_deref(), Some("hello"));
/// let row = ConnectData::from(json!({"id": 7, "name": "tea"}));
/// assert_eq!(row.to_text().as_deref(), Some(r#"{"id":7,"name":"tea"}"#));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectData {
    /// Bytes as they are.
    Bytes(Bytes),
    /// Text.
    String(String),
    /// Structured data: a JSON object, array, string, number, boolean or null.
    Json(Value),
}

impl ConnectData {
    /// The data as text: text as it is, JSON as its compact text, bytes if they are UTF-8
    /// (`None` otherwise).
    pub fn to_text(&self) -> Option<Cow<'_, str>> {
        match self {
            ConnectData::String(s) | ConnectData::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            ConnectData::Json(v) => Some(Cow::Owned(v.to_string())),
            ConnectData::Bytes(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        }
    }

    /// The JSON object this data holds, if it is one.
    pub fn as_object(&self) -> Option<&serde_json::Map<String, Value>> {
        match self {
            ConnectData::Json(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The data as JSON: structured data as it is, text or bytes parsed as JSON.
    ///
    /// Errors: the parser's message, for text or bytes that are not JSON.
    pub fn to_json(&self) -> Result<Cow<'_, Value>, String> {
        match self {
            ConnectData::Json(v) => Ok(Cow::Borrowed(v)),
            ConnectData::String(s) => serde_json::from_str(s)
                .map(Cow::Owned)
                .map_err(|e| format!("not JSON: {e}")),
            ConnectData::Bytes(b) => serde_json::from_slice(b)
                .map(Cow::Owned)
                .map_err(|e| format!("not JSON: {e}")),
        }
    }
}

impl From<&str> for ConnectData {
    fn from(s: &str) -> Self {
        ConnectData::String(s.to_string())
    }
}

impl From<String> for ConnectData {
    fn from(s: String) -> Self {
        ConnectData::String(s)
    }
}

impl From<Value> for ConnectData {
    fn from(v: Value) -> Self {
        ConnectData::Json(v)
    }
}

impl From<Bytes> for ConnectData {
    fn from(b: Bytes) -> Self {
        ConnectData::Bytes(b)
    }
}

impl From<Vec<u8>> for ConnectData {
    fn from(b: Vec<u8>) -> Self {
        ConnectData::Bytes(Bytes::from(b))
    }
}

/// A record on its way through a connector: what transforms see and change (Kafka Connect's
/// `ConnectRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    /// The topic: where a source record goes, or where a sink record came from (a
    /// [`RegexRouter`](crate::RegexRouter) may have renamed it).
    pub topic: Arc<str>,
    /// The partition: where a source record goes (`None`: the producer's partitioner picks it
    /// from the key), or the partition a sink record came from.
    pub partition: Option<u32>,
    /// The offset a sink record had in its partition; `None` for source records.
    pub offset: Option<u64>,
    /// The key; `None` for a record without one.
    pub key: Option<ConnectData>,
    /// The value; `None` is a tombstone.
    pub value: Option<ConnectData>,
    /// Milliseconds since the Unix epoch; `None` for a source record stamps it with the time
    /// of the send.
    pub timestamp: Option<i64>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl ConnectRecord {
    /// A record for `topic` with a value and nothing else.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<ConnectData>) -> Self {
        ConnectRecord {
            topic: topic.into(),
            partition: None,
            offset: None,
            key: None,
            value: Some(value.into()),
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<ConnectData>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition. Default: chosen by the producer's partitioner.
    #[must_use]
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch). Default: the time of the send.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }
}

/// A record a [`SourceTask`](crate::SourceTask) read from the outside system, with its place
/// there (Kafka Connect's `SourceRecord`).
///
/// `source_partition` names a stream of the outside system (a file, a table) and
/// `source_offset` the position in it just after this record. The runtime stores, for each
/// source partition, the offset of the last record that was written to its topic, in the
/// internal topic `__connect_offsets`; a task that starts again reads it with
/// [`SourceTaskContext::offset`](crate::SourceTaskContext::offset) and continues from there.
/// Both are JSON, as in Kafka Connect, where they are maps: `{"filename": "/var/log/app"}` and
/// `{"position": 8812}`.
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use tidelog::SourceRecord;
///
/// let file = Arc::new(json!({"filename": "/var/log/app.log"}));
/// let record = SourceRecord::new(Arc::clone(&file), json!({"position": 42}), "logs", "a line");
/// assert_eq!(record.record.topic.as_ref(), "logs");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The stream of the outside system the record comes from; shared by the records of one
    /// stream (an `Arc`, so that it costs no copy per record).
    pub source_partition: Arc<Value>,
    /// The position in that stream just after this record.
    pub source_offset: Value,
    /// The record to write.
    pub record: ConnectRecord,
}

impl SourceRecord {
    /// A record with a value for `topic`, from `source_partition` at `source_offset`.
    pub fn new(
        source_partition: Arc<Value>,
        source_offset: Value,
        topic: impl Into<Arc<str>>,
        value: impl Into<ConnectData>,
    ) -> Self {
        SourceRecord {
            source_partition,
            source_offset,
            record: ConnectRecord::new(topic, value),
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<ConnectData>) -> Self {
        self.record.key = Some(key.into());
        self
    }

    /// Makes the record a tombstone (no value).
    #[must_use]
    pub fn tombstone(mut self) -> Self {
        self.record.value = None;
        self
    }
}

/// A record a [`SinkTask`](crate::SinkTask) receives (Kafka Connect's `SinkRecord`): key and
/// value as the converters made them, after the transforms, and where the record was read.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    /// The record after conversion and transforms.
    pub record: ConnectRecord,
    /// The topic the record was read from (before any transform renamed it).
    pub kafka_topic: Arc<str>,
    /// The partition it was read from.
    pub kafka_partition: u32,
    /// Its offset there.
    pub kafka_offset: u64,
    /// The record as it was read, for the dead-letter topic.
    pub(crate) raw: Option<ConsumerRecord>,
}

impl SinkRecord {
    /// A sink record read from `topic`-`partition` at `offset` (for tests of sink tasks; the
    /// runtime makes them from what it consumes).
    pub fn new(
        record: ConnectRecord,
        topic: impl Into<Arc<str>>,
        partition: u32,
        offset: u64,
    ) -> Self {
        SinkRecord {
            record,
            kafka_topic: topic.into(),
            kafka_partition: partition,
            kafka_offset: offset,
            raw: None,
        }
    }

    /// The key.
    pub fn key(&self) -> Option<&ConnectData> {
        self.record.key.as_ref()
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&ConnectData> {
        self.record.value.as_ref()
    }
}

impl PartialEq for SinkRecord {
    fn eq(&self, other: &Self) -> bool {
        self.record == other.record
            && self.kafka_topic == other.kafka_topic
            && self.kafka_partition == other.kafka_partition
            && self.kafka_offset == other.kafka_offset
    }
}
