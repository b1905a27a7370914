//! Typed records: a consumer that decodes keys and values with a [`Deserializer`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use super::records::ConsumerRecord;
use super::Consumer;
use crate::batch::TimestampType;
use crate::codec::{BincodeCodec, CodecError, Deserializer};
use crate::error::Result;
use crate::record::Header;

/// A record whose key and value are decoded into `K` and `V`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecord<K, V> {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Whether `timestamp` is the producer's or the log's.
    pub timestamp_type: TimestampType,
    /// The decoded key; `None` if the record has no key.
    pub key: Option<K>,
    /// The decoded value; `None` for a tombstone.
    pub value: Option<V>,
    /// The headers, undecoded.
    pub headers: Vec<Header>,
}

impl<K, V> TypedRecord<K, V> {
    /// Decodes `record`'s key and value. On failure the [`DecodeError`] keeps the record, so its
    /// raw bytes stay available.
    pub fn decode<KD, VD>(
        record: ConsumerRecord,
        keys: &KD,
        values: &VD,
    ) -> Result<Self, DecodeError>
    where
        KD: Deserializer<K> + ?Sized,
        VD: Deserializer<V> + ?Sized,
    {
        let key = match record.key.as_ref().map(|k| keys.decode(k)).transpose() {
            Ok(key) => key,
            Err(source) => {
                return Err(DecodeError {
                    record: Box::new(record),
                    field: RecordField::Key,
                    source,
                })
            }
        };
        let value = match record.value.as_ref().map(|v| values.decode(v)).transpose() {
            Ok(value) => value,
            Err(source) => {
                return Err(DecodeError {
                    record: Box::new(record),
                    field: RecordField::Value,
                    source,
                })
            }
        };
        Ok(TypedRecord {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            timestamp_type: record.timestamp_type,
            key,
            value,
            headers: record.headers,
        })
    }
}

/// Which part of a record failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    /// The key.
    Key,
    /// The value.
    Value,
}

/// A record whose key or value does not decode: one bad record, not a dead consumer. The raw
/// record is kept, to log it, move it to a dead-letter topic, or decode it another way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The record as read, with its raw key and value (boxed: errors are rare, and a small
    /// error keeps every decoded record small).
    pub record: Box<ConsumerRecord>,
    /// What failed to decode.
    pub field: RecordField,
    /// Why.
    pub source: CodecError,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = match self.field {
            RecordField::Key => "key",
            RecordField::Value => "value",
        };
        write!(
            f,
            "the {field} of the record at offset {} of partition {}-{} does not decode: {}",
            self.record.offset, self.record.topic, self.record.partition, self.source
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A [`Consumer`] that decodes keys into `K` and values into `V`, with bincode unless other
/// deserializers are given.
///
/// A poll fails only as the consumer's poll does; a record that does not decode comes back as
/// a [`DecodeError`] in its place, and the records around it decode as usual. Everything else
/// of the consumer (assign, subscribe, seek, pause, ...) is reached through `Deref`.
///
/// ```
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tidelog::{BincodeCodec, Broker, ConsumerConfig, OffsetReset, Record, TypedConsumer};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Order { id: u64, item: String }
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path())?;
/// broker.create_topic("orders", 1)?;
/// let codec = BincodeCodec;
/// let order = Order { id: 1, item: "tea".into() };
/// broker.partition("orders", 0)?.log()?.append(&[
///     Record::new(codec.encode("alice")?, codec.encode(&order)?),
///     Record::new(codec.encode("bob")?, &b"not an order"[..]),
/// ])?;
///
/// let consumer = broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
/// let mut orders: TypedConsumer<String, Order> = TypedConsumer::new(consumer);
/// orders.subscribe(&["orders"])?;
/// let polled = orders.poll(Duration::from_secs(1))?;
/// assert_eq!(polled[0].as_ref().unwrap().value, Some(order));
/// let bad = polled[1].as_ref().unwrap_err();
/// assert_eq!(bad.record.value.as_deref(), Some(&b"not an order"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedConsumer<K, V, KD = BincodeCodec, VD = BincodeCodec> {
    consumer: Consumer,
    keys: KD,
    values: VD,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V, KD, VD> fmt::Debug for TypedConsumer<K, V, KD, VD> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedConsumer")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl<K, V> TypedConsumer<K, V> {
    /// Decodes keys and values of `consumer`'s records with [`BincodeCodec`].
    pub fn new(consumer: Consumer) -> Self {
        TypedConsumer::with_deserializers(consumer, BincodeCodec, BincodeCodec)
    }
}

impl<K, V, KD, VD> TypedConsumer<K, V, KD, VD> {
    /// Decodes keys with `keys` and values with `values` (for example
    /// [`StringCodec`](crate::StringCodec) keys and `JsonCodec` values, with the `json` feature).
    pub fn with_deserializers(consumer: Consumer, keys: KD, values: VD) -> Self {
        TypedConsumer {
            consumer,
            keys,
            values,
            _types: PhantomData,
        }
    }

    /// The untyped consumer back.
    pub fn into_inner(self) -> Consumer {
        self.consumer
    }
}

impl<K, V, KD: Deserializer<K>, VD: Deserializer<V>> TypedConsumer<K, V, KD, VD> {
    /// Polls like [`Consumer::poll`] and decodes each record; one that does not decode is a
    /// [`DecodeError`] in its place (the positions move past it either way).
    pub fn poll(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<Result<TypedRecord<K, V>, DecodeError>>> {
        let records = self.consumer.poll(timeout)?;
        Ok(records.into_iter().map(|r| self.decode(r)).collect())
    }

    /// Decodes one record with this consumer's deserializers (for records from
    /// [`Consumer::iter`], for example).
    pub fn decode(&self, record: ConsumerRecord) -> Result<TypedRecord<K, V>, DecodeError> {
        TypedRecord::decode(record, &self.keys, &self.values)
    }
}

impl<K, V, KD, VD> Deref for TypedConsumer<K, V, KD, VD> {
    type Target = Consumer;

    fn deref(&self) -> &Consumer {
        &self.consumer
    }
}

impl<K, V, KD, VD> DerefMut for TypedConsumer<K, V, KD, VD> {
    fn deref_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }
}
