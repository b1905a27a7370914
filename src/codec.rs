//! Typed records: turning your own types into record bytes and back.
//!
//! A [`Serializer<T>`] encodes a `T` into the bytes of a record's key or value; a
//! [`Deserializer<T>`] decodes them, as Kafka's `Serializer` and `Deserializer` do. Built in:
//!
//! | codec | format | for |
//! |---|---|---|
//! | [`BincodeCodec`] (the default) | bincode 2, `standard()` configuration, through serde | any `Serialize` / `DeserializeOwned` type; compact and fast |
//! | `JsonCodec` (cargo feature `json`) | JSON through `serde_json` | any serde type; readable by other languages |
//! | [`StringCodec`] | raw UTF-8 | `String` / `str` keys and values, byte-compatible with Kafka's `StringSerializer` |
//! | [`BytesCodec`] | the bytes as they are | `Bytes`, `Vec<u8>`, `[u8]`; no copy when decoding into `Bytes` |
//!
//! Encoding gives [`Bytes`] for a record; the `?` operator turns a [`CodecError`] into
//! [`Error::Codec`](crate::Error::Codec). Decoding failures are per record: a
//! [`TypedConsumer`](crate::TypedConsumer) reports them as a [`DecodeError`](crate::DecodeError)
//! that keeps the raw record, and goes on with the next one.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidelog::BincodeCodec;
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Order { id: u64, item: String }
//!
//! let codec = BincodeCodec;
//! let bytes = codec.encode(&Order { id: 7, item: "tea".into() })?;
//! let back: Order = codec.decode(&bytes)?;
//! assert_eq!(back, Order { id: 7, item: "tea".into() });
//! assert!(codec.decode::<Order>(b"\x07").is_err()); // truncated: an error, not a panic
//! # Ok::<(), tidelog::Error>(())
//! ```

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be encoded, or bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    codec: &'static str,
    decoding: bool,
    reason: String,
}

impl CodecError {
    /// An encoding failure of the codec named `codec`, for writers of their own [`Serializer`].
    pub fn encode(codec: &'static str, reason: impl fmt::Display) -> Self {
        CodecError {
            codec,
            decoding: false,
            reason: reason.to_string(),
        }
    }

    /// A decoding failure of the codec named `codec`, for writers of their own [`Deserializer`].
    pub fn decode(codec: &'static str, reason: impl fmt::Display) -> Self {
        CodecError {
            codec,
            decoding: true,
            reason: reason.to_string(),
        }
    }

    /// The codec's name (`"bincode"`, `"json"`, `"string"`, ...).
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// Whether decoding (rather than encoding) failed.
    pub fn is_decode(&self) -> bool {
        self.decoding
    }

    /// What went wrong, in the codec's words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.decoding {
            "decode bytes"
        } else {
            "encode a value"
        };
        write!(f, "{} could not {what}: {}", self.codec, self.reason)
    }
}

impl std::error::Error for CodecError {}

/// Encodes values of type `T` into record bytes (Kafka's `Serializer<T>`).
///
/// Built in: [`BincodeCodec`] (the default of typed consumers; any serde type), `JsonCodec`
/// (cargo feature `json`; any serde type), [`StringCodec`] (raw UTF-8, as Kafka's
/// `StringSerializer`) and [`BytesCodec`] (bytes as they are). Implement it for your own format;
/// implementations must not panic on any value.
///
/// ```
/// use tidelog::{BincodeCodec, Record, Serializer};
///
/// fn record<K: ?Sized, V: ?Sized>(codec: &impl Serializer<K>, values: &impl Serializer<V>, key: &K, value: &V) -> tidelog::Result<Record> {
///     Ok(Record::new(codec.encode(key)?, values.encode(value)?))
/// }
/// let r = record(&BincodeCodec, &BincodeCodec, "user-1", &(7u32, "clicked"))?;
/// assert!(r.key.is_some());
/// # Ok::<(), tidelog::Error>(())
/// ```
pub trait Serializer<T: ?Sized> {
    /// The bytes of `value`.
    fn encode(&self, value: &T) -> Result<Bytes, CodecError>;
}

/// Decodes record bytes into values of type `T` (Kafka's `Deserializer<T>`).
///
/// The bytes come straight from the log: they can be anything, so implementations must return
/// an error, never panic, on bytes they do not understand.
pub trait Deserializer<T> {
    /// The value encoded in `bytes`.
    fn decode(&self, bytes: &Bytes) -> Result<T, CodecError>;
}

/// bincode 2 with its `standard()` configuration (little-endian, variable-length integers),
/// through serde: compact and fast, for any `Serialize` / `DeserializeOwned` type. The default
/// codec of [`TypedConsumer`](crate::TypedConsumer).
///
/// Decoding refuses trailing bytes, so a record written with another format is reported rather
/// than half-read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BincodeCodec;

impl BincodeCodec {
    /// The bincode encoding of `value`.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, CodecError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map(Bytes::from)
            .map_err(|e| CodecError::encode("bincode", e))
    }

    /// The value whose bincode encoding is `bytes` (exactly: trailing bytes are an error).
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| CodecError::decode("bincode", e))?;
        if used != bytes.len() {
            return Err(CodecError::decode(
                "bincode",
                format!(
                    "{} bytes left over after the value ({used} of {} bytes used)",
                    bytes.len() - used,
                    bytes.len()
                ),
            ));
        }
        Ok(value)
    }
}

impl<T: Serialize + ?Sized> Serializer<T> for BincodeCodec {
    fn encode(&self, value: &T) -> Result<Bytes, CodecError> {
        BincodeCodec::encode(self, value)
    }
}

impl<T: DeserializeOwned> Deserializer<T> for BincodeCodec {
    fn decode(&self, bytes: &Bytes) -> Result<T, CodecError> {
        BincodeCodec::decode(self, bytes)
    }
}

/// JSON through `serde_json` (cargo feature `json`): any serde type, readable by consumers in
/// other languages.
///
/// ```
/// use tidelog::JsonCodec;
///
/// let bytes = JsonCodec.encode(&vec![1, 2, 3])?;
/// assert_eq!(&bytes[..], b"[1,2,3]");
/// let back: Vec<u32> = JsonCodec.decode(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

#[cfg(feature = "json")]
impl JsonCodec {
    /// The JSON text of `value`.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::encode("json", e))
    }

    /// The value whose JSON text is `bytes` (trailing non-whitespace is an error).
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::decode("json", e))
    }
}

#[cfg(feature = "json")]
impl<T: Serialize + ?Sized> Serializer<T> for JsonCodec {
    fn encode(&self, value: &T) -> Result<Bytes, CodecError> {
        JsonCodec::encode(self, value)
    }
}

#[cfg(feature = "json")]
impl<T: DeserializeOwned> Deserializer<T> for JsonCodec {
    fn decode(&self, bytes: &Bytes) -> Result<T, CodecError> {
        JsonCodec::decode(self, bytes)
    }
}

/// Strings as raw UTF-8 bytes, with no length prefix: the same bytes as Kafka's
/// `StringSerializer`, so string keys partition as they do in Kafka. Decoding refuses bytes that
/// are not UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StringCodec;

impl Serializer<str> for StringCodec {
    fn encode(&self, value: &str) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Serializer<String> for StringCodec {
    fn encode(&self, value: &String) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl Deserializer<String> for StringCodec {
    fn decode(&self, bytes: &Bytes) -> Result<String, CodecError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| CodecError::decode("string", e))
    }
}

/// Bytes as they are. Decoding into [`Bytes`] shares the fetched buffer (no copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BytesCodec;

impl Serializer<[u8]> for BytesCodec {
    fn encode(&self, value: &[u8]) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Vec<u8>> for BytesCodec {
    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(value))
    }
}

impl Serializer<Bytes> for BytesCodec {
    fn encode(&self, value: &Bytes) -> Result<Bytes, CodecError> {
        Ok(value.clone())
    }
}

impl Deserializer<Bytes> for BytesCodec {
    fn decode(&self, bytes: &Bytes) -> Result<Bytes, CodecError> {
        Ok(bytes.clone())
    }
}

impl Deserializer<Vec<u8>> for BytesCodec {
    fn decode(&self, bytes: &Bytes) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// 64-bit signed integers as 8 big-endian bytes: the same bytes as Kafka's `LongSerializer`,
/// so counts written by a Streams application read as Kafka's `Serdes.Long()` does. Decoding
/// refuses any length other than 8.
///
/// ```
/// use tidelog::{Deserializer, LongCodec, Serializer};
/// let bytes = LongCodec.encode(&-2)?;
/// assert_eq!(&bytes[..], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
/// assert_eq!(Deserializer::<i64>::decode(&LongCodec, &bytes)?, -2);
/// # Ok::<(), tidelog::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongCodec;

impl Serializer<i64> for LongCodec {
    fn encode(&self, value: &i64) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(&value.to_be_bytes()))
    }
}

impl Deserializer<i64> for LongCodec {
    fn decode(&self, bytes: &Bytes) -> Result<i64, CodecError> {
        let raw: [u8; 8] = bytes[..].try_into().map_err(|_| {
            CodecError::decode("long", format!("expected 8 bytes, got {}", bytes.len()))
        })?;
        Ok(i64::from_be_bytes(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Point {
        x: i32,
        label: String,
    }

    #[test]
    fn bincode_round_trip_and_refusals() {
        let p = Point {
            x: -3,
            label: "a".into(),
        };
        let bytes = BincodeCodec.encode(&p).unwrap();
        assert_eq!(BincodeCodec.decode::<Point>(&bytes).unwrap(), p);
        let mut longer = bytes.to_vec();
        longer.push(0);
        let err = BincodeCodec.decode::<Point>(&longer).unwrap_err();
        assert!(
            err.is_decode() && err.reason().contains("left over"),
            "{err}"
        );
        assert!(BincodeCodec.decode::<Point>(&[]).is_err());
        let via_trait: Result<Point, _> = Deserializer::decode(&BincodeCodec, &bytes);
        assert_eq!(via_trait.unwrap(), p);
    }

    #[test]
    fn strings_and_bytes() {
        let b = Serializer::<str>::encode(&StringCodec, "héllo").unwrap();
        assert_eq!(&b[..], "héllo".as_bytes());
        let s: String = StringCodec.decode(&b).unwrap();
        assert_eq!(s, "héllo");
        let err =
            Deserializer::<String>::decode(&StringCodec, &Bytes::from_static(b"\xff")).unwrap_err();
        assert_eq!(err.codec(), "string");
        let raw = Bytes::from_static(b"raw");
        let same: Bytes = BytesCodec.decode(&raw).unwrap();
        assert_eq!(same.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn codec_error_converts_into_error() {
        fn f() -> crate::Result<Point> {
            Ok(BincodeCodec.decode(&[1u8][..])?)
        }
        assert!(matches!(f(), Err(crate::Error::Codec(e)) if e.is_decode()));
    }
}
