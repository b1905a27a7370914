//! Converters: between a connector's [`ConnectData`] and the bytes of a record (Kafka Connect's
//! `Converter`). A connector has one for keys (`key.converter`) and one for values
//! (`value.converter`); tombstones and missing keys (`None`) pass through without one.
//!
//! | name in a config | Kafka's class name | to bytes | from bytes |
//! |---|---|---|---|
//! | `string` (default) | `org.apache.kafka.connect.storage.StringConverter` | text as UTF-8, JSON as its text, bytes as they are | text (bytes that are not UTF-8 are an error) |
//! | `json` | `org.apache.kafka.connect.json.JsonConverter` | JSON text (text as a JSON string) | parsed JSON |
//! | `bytes` | `org.apache.kafka.connect.converters.ByteArrayConverter` | bytes as they are (text as UTF-8) | bytes |
//!
//! `<prefix>.schemas.enable=true` makes the JSON converter write and read Kafka's envelope
//! `{"schema": null, "payload": ...}`; the default is `false` (plain JSON), unlike Kafka, whose
//! default envelope would need schemas tidelog does not have.

use bytes::Bytes;
use serde_json::Value;

use super::config::ConnectorConfig;
use super::data::ConnectData;
use crate::codec::CodecError;
use crate::error::Result;

/// Turns a connector's [`ConnectData`] into record bytes and back (Kafka Connect's `Converter`).
///
/// Implementations must return an error, never panic, on bytes they do not understand: the
/// bytes come from a topic and can be anything.
pub trait Converter: Send + Sync + std::fmt::Debug {
    /// The bytes of `data`, for a record going to `topic` (Kafka's `fromConnectData`).
    fn encode(&self, topic: &str, data: ConnectData) -> Result<Bytes, CodecError>;

    /// The data in `bytes`, read from `topic` (Kafka's `toConnectData`).
    fn decode(&self, topic: &str, bytes: &Bytes) -> Result<ConnectData, CodecError>;
}

/// Text as UTF-8 (Kafka's `StringConverter`), the default converter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StringConverter;

impl Converter for StringConverter {
    fn encode(&self, _topic: &str, data: ConnectData) -> Result<Bytes, CodecError> {
        Ok(match data {
            ConnectData::String(s) | ConnectData::Json(Value::String(s)) => {
                Bytes::from(s.into_bytes())
            }
            ConnectData::Bytes(b) => b,
            ConnectData::Json(v) => Bytes::from(v.to_string().into_bytes()),
        })
    }

    fn decode(&self, _topic: &str, bytes: &Bytes) -> Result<ConnectData, CodecError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(ConnectData::String(s.to_string())),
            Err(e) => Err(CodecError::decode("StringConverter", e)),
        }
    }
}

/// Bytes as they are (Kafka's `ByteArrayConverter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BytesConverter;

impl Converter for BytesConverter {
    fn encode(&self, _topic: &str, data: ConnectData) -> Result<Bytes, CodecError> {
        match data {
            ConnectData::Bytes(b) => Ok(b),
            ConnectData::String(s) => Ok(Bytes::from(s.into_bytes())),
            ConnectData::Json(_) => Err(CodecError::encode(
                "ByteArrayConverter",
                "structured (JSON) data has no bytes of its own; use value.converter=json",
            )),
        }
    }

    fn decode(&self, _topic: &str, bytes: &Bytes) -> Result<ConnectData, CodecError> {
        Ok(ConnectData::Bytes(bytes.clone()))
    }
}

/// JSON (Kafka's `JsonConverter`), plain or in Kafka's `{"schema", "payload"}` envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonConverter {
    /// Whether records carry Kafka's envelope (`schemas.enable`). Default `false`.
    pub schemas_enable: bool,
}

impl Converter for JsonConverter {
    fn encode(&self, _topic: &str, data: ConnectData) -> Result<Bytes, CodecError> {
        let value = match data {
            ConnectData::Json(v) => v,
            ConnectData::String(s) => Value::String(s),
            ConnectData::Bytes(_) => {
                return Err(CodecError::encode(
                    "JsonConverter",
                    "raw bytes are not JSON; use the bytes or string converter",
                ))
            }
        };
        let out = if self.schemas_enable {
            serde_json::to_vec(&serde_json::json!({"schema": null, "payload": value}))
        } else {
            serde_json::to_vec(&value)
        };
        out.map(Bytes::from)
            .map_err(|e| CodecError::encode("JsonConverter", e))
    }

    fn decode(&self, _topic: &str, bytes: &Bytes) -> Result<ConnectData, CodecError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| CodecError::decode("JsonConverter", e))?;
        if !self.schemas_enable {
            return Ok(ConnectData::Json(value));
        }
        match value {
            Value::Object(mut envelope)
                if envelope.len() == 2
                    && envelope.contains_key("schema")
                    && envelope.contains_key("payload") =>
            {
                Ok(ConnectData::Json(
                    envelope.remove("payload").unwrap_or(Value::Null),
                ))
            }
            _ => Err(CodecError::decode(
                "JsonConverter",
                "with schemas.enable=true a record must be {\"schema\": ..., \"payload\": ...}",
            )),
        }
    }
}

/// The converter `key` (`key.converter` or `value.converter`) of `config` names; the string
/// converter when unset.
pub(crate) fn from_config(config: &ConnectorConfig, key: &str) -> Result<Box<dyn Converter>> {
    let name = config.get(key).map_or("string", str::trim);
    let simple = name.rsplit('.').next().unwrap_or(name);
    Ok(match simple {
        "string" | "StringConverter" => Box::new(StringConverter),
        "bytes" | "ByteArrayConverter" => Box::new(BytesConverter),
        "json" | "JsonConverter" => Box::new(JsonConverter {
            schemas_enable: config.bool_or(&format!("{key}.schemas.enable"), false)?,
        }),
        _ => {
            return Err(config.error(
                key,
                &format!("unknown converter `{name}`: use string, json or bytes"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let j = JsonConverter::default();
        let b = j.encode("t", ConnectData::Json(json!({"a": 1}))).unwrap();
        assert_eq!(&b[..], br#"{"a":1}"#);
        assert_eq!(
            j.decode("t", &b).unwrap(),
            ConnectData::Json(json!({"a": 1}))
        );
        assert!(j.decode("t", &Bytes::from_static(b"{nope")).is_err());
        let env = JsonConverter {
            schemas_enable: true,
        };
        let b = env.encode("t", ConnectData::Json(json!([1]))).unwrap();
        assert_eq!(env.decode("t", &b).unwrap(), ConnectData::Json(json!([1])));
        assert!(env.decode("t", &Bytes::from_static(b"[1]")).is_err());
        let s = StringConverter;
        assert!(s.decode("t", &Bytes::from_static(&[0xff, 0xfe])).is_err());
        assert_eq!(
            s.decode("t", &Bytes::from_static(b"hi")).unwrap(),
            ConnectData::String("hi".into())
        );
        assert!(BytesConverter
            .encode("t", ConnectData::Json(json!(1)))
            .is_err());
    }

    #[test]
    fn from_config_names() {
        let c = ConnectorConfig::new("n", "c")
            .set(
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter",
            )
            .set("value.converter.schemas.enable", "true")
            .set("key.converter", "xml");
        assert!(format!("{:?}", from_config(&c, "value.converter").unwrap()).contains("true"));
        let e = from_config(&c, "key.converter").unwrap_err();
        assert!(e.to_string().contains("key.converter"), "{e}");
    }
}
