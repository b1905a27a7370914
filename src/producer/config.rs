//! `ProducerConfig`: batching, buffer and partitioner settings, by Kafka's names.

use std::sync::Arc;
use std::time::Duration;

use super::partitioner::Partitioner;
use crate::error::{Error, Result};

/// Settings of a [`Producer`](crate::Producer). Names follow Kafka's producer configs.
///
/// Durability is not a producer setting: a send is acknowledged when the topic's
/// [`Durability`](crate::Durability) policy is met (with `Always`, after the fsync).
///
/// ```
/// use std::time::Duration;
/// use tidelog::ProducerConfig;
///
/// let config = ProducerConfig::default()
///     .linger(Duration::from_millis(20))
///     .batch_size(64 << 10)
///     .buffer_memory(64 << 20);
/// ```
#[derive(Clone)]
pub struct ProducerConfig {
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) buffer_memory: usize,
    pub(crate) append_in_background: bool,
    pub(crate) partitioner: Option<Arc<dyn Partitioner>>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            buffer_memory: 32 << 20,
            append_in_background: false,
            partitioner: None,
        }
    }
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("linger", &self.linger)
            .field("batch_size", &self.batch_size)
            .field("buffer_memory", &self.buffer_memory)
            .field("append_in_background", &self.append_in_background)
            .field(
                "partitioner",
                &if self.partitioner.is_some() {
                    "custom"
                } else {
                    "built-in"
                },
            )
            .finish()
    }
}

impl ProducerConfig {
    /// How long a batch that is not full waits for more records before it is appended
    /// (Kafka's `linger.ms`). Default 5 ms, Kafka 4.0's default: a little latency buys much
    /// larger batches. Zero appends as soon as the producer's background thread gets to a
    /// batch; records sent meanwhile still share it. A blocking [`send`](crate::Producer::send)
    /// never waits for the linger time.
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Target size of one batch, in bytes of encoded records (Kafka's `batch.size`). A batch
    /// is closed and appended once the next record would not fit; a record larger than this
    /// travels in a batch of its own. Default 16 KiB; at most 1 GiB. Zero puts every record in
    /// its own batch.
    #[must_use]
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// How many bytes of records not yet appended the producer holds before `send` blocks
    /// (Kafka's `buffer.memory`). Each open batch counts `batch_size` bytes (or its one record's
    /// size, if larger). Default 32 MiB; at least `batch_size`. A record larger than this fails
    /// with [`Error::RecordTooLarge`].
    #[must_use]
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// Who appends a batch that a `send_async` filled: the producer's background thread
    /// (`true`, as Kafka's sender thread does: the sending thread goes on filling the next batch
    /// while this one is written, which pays when a core is free for it), or the sending
    /// thread itself (`false`: no thread hand-off, best when cores are busy). Default `false`.
    /// Batches closed by linger time are always appended by the background thread, and a
    /// blocking [`send`](crate::Producer::send) always appends its batch itself.
    #[must_use]
    pub fn append_in_background(mut self, enabled: bool) -> Self {
        self.append_in_background = enabled;
        self
    }

    /// The partitioner for records that name no partition (Kafka's `partitioner.class`).
    /// Default: Kafka's built-in one, murmur2 of the key ([`partition_for_key`](crate::partition_for_key)),
    /// sticky for records without a key.
    #[must_use]
    pub fn partitioner(mut self, partitioner: impl Partitioner + 'static) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_size > 1 << 30 {
            return Err(Error::InvalidConfig {
                key: "batch_size",
                reason: format!("{} bytes is more than the limit of 1 GiB", self.batch_size),
            });
        }
        if self.buffer_memory < self.batch_size.max(1) {
            return Err(Error::InvalidConfig {
                key: "buffer_memory",
                reason: format!(
                    "{} bytes cannot hold one batch of batch_size = {} bytes",
                    self.buffer_memory, self.batch_size
                ),
            });
        }
        Ok(())
    }
}
