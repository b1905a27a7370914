//! Codecs as the topology holds them: one object that both encodes and decodes a type,
//! shared by every task.

use std::sync::Arc;

use crate::codec::{Deserializer, Serializer};

/// A serializer and deserializer of `T` in one (Kafka's `Serde<T>`). Every built-in codec is
/// one for the types it handles ([`StringCodec`](crate::StringCodec) for `String`,
/// [`LongCodec`](crate::LongCodec) for `i64`, [`BincodeCodec`](crate::BincodeCodec) for serde
/// types, ...).
pub trait Codec<T>: Serializer<T> + Deserializer<T> + Send + Sync {}

impl<T, C: Serializer<T> + Deserializer<T> + Send + Sync> Codec<T> for C {}

/// A shared codec.
pub(crate) type CodecRef<T> = Arc<dyn Codec<T>>;

pub(crate) fn codec_ref<T, C: Codec<T> + 'static>(codec: C) -> CodecRef<T> {
    Arc::new(codec)
}
