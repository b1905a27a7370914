//! `ConsumerConfig` and `OffsetReset`: a consumer's settings, named as Kafka names them.

use std::time::Duration;

use crate::error::{Error, Result};

/// Where a consumer starts in a partition that has no valid position: a newly assigned partition,
/// or one whose position fell outside the log (retention deleted it, or a seek went past the end).
/// Kafka's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset: the oldest record still kept (Kafka's `earliest`).
    Earliest,
    /// The log end offset: only records appended from now on (Kafka's `latest`, the default).
    #[default]
    Latest,
    /// No automatic reset: `poll` and `position` return [`Error::NoOffsetForPartition`] for a
    /// partition without a position and [`Error::PositionOutOfRange`] for one whose position is
    /// outside the log, until it is seeked (Kafka's `none`).
    None,
}

/// A consumer's configuration: `ConsumerConfig::default()` plus setters, each documenting its
/// default.
///
/// ```
/// use std::time::Duration;
/// use tidelog::{ConsumerConfig, OffsetReset};
///
/// let config = ConsumerConfig::default()
///     .auto_offset_reset(OffsetReset::Earliest)
///     .max_poll_records(1_000)
///     .spin(Duration::from_micros(50));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub(crate) max_poll_records: usize,
    pub(crate) fetch_max_bytes: usize,
    pub(crate) max_partition_fetch_bytes: usize,
    pub(crate) auto_offset_reset: OffsetReset,
    pub(crate) spin: Duration,
    pub(crate) group_id: Option<String>,
    pub(crate) metadata_max_age: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_poll_records: 500,
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
            auto_offset_reset: OffsetReset::Latest,
            spin: Duration::ZERO,
            group_id: None,
            metadata_max_age: Duration::from_millis(100),
        }
    }
}

impl ConsumerConfig {
    /// Most records one `poll` returns (`max.poll.records`). Default 500; at least 1.
    #[must_use]
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.max_poll_records = records;
        self
    }

    /// Most bytes of record batches one `poll` reads from the logs over all partitions
    /// (`fetch.max.bytes`). Default 50 MiB; at least 1. Not an absolute limit: a poll always reads
    /// at least one whole batch, so that a batch larger than the limit is still consumed.
    #[must_use]
    pub fn fetch_max_bytes(mut self, bytes: usize) -> Self {
        self.fetch_max_bytes = bytes;
        self
    }

    /// Most bytes of record batches read from one partition at a time
    /// (`max.partition.fetch.bytes`). Default 1 MiB; at least 1. Like `fetch_max_bytes`, at least
    /// one whole batch is read.
    #[must_use]
    pub fn max_partition_fetch_bytes(mut self, bytes: usize) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// Where to start when a partition has no valid position (`auto.offset.reset`). Default
    /// [`OffsetReset::Latest`], as in Kafka.
    #[must_use]
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// How long a `poll` that found nothing keeps checking the logs' end offsets in a busy loop
    /// before it parks on the append notification. Default zero (park at once). A few tens of
    /// microseconds cut the wake-up latency of a consumer that is usually kept busy, at the price
    /// of a core while it spins (Chronicle Queue's tailers do the same).
    #[must_use]
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The consumer group (`group.id`). Default none.
    ///
    /// Consumer groups (partitions shared out between the members, committed offsets) come with a
    /// later release. Until then the group id is only recorded: a consumer with a group id that
    /// calls [`subscribe`](crate::Consumer::subscribe) gets every partition of the topics, as
    /// without one.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// How often a subscribed consumer that is blocked in `poll` looks for partitions added to
    /// (or topics created or deleted among) its subscription (`metadata.max.age.ms`). Default
    /// 100 ms; every call of `poll` also looks once. A check is a few map look-ups, not I/O.
    #[must_use]
    pub fn metadata_max_age(mut self, age: Duration) -> Self {
        self.metadata_max_age = age;
        self
    }

    /// Checks the ranges: [`Error::InvalidConfig`] naming the setting otherwise.
    pub fn validate(&self) -> Result<()> {
        let positive = |key: &'static str, value: usize| {
            if value == 0 {
                Err(Error::InvalidConfig {
                    key,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("max_poll_records", self.max_poll_records)?;
        positive("fetch_max_bytes", self.fetch_max_bytes)?;
        positive("max_partition_fetch_bytes", self.max_partition_fetch_bytes)?;
        if self.metadata_max_age.is_zero() {
            return Err(Error::InvalidConfig {
                key: "metadata_max_age",
                reason: "must be greater than zero".into(),
            });
        }
        if let Some(group) = &self.group_id {
            if group.is_empty() {
                return Err(Error::InvalidConfig {
                    key: "group_id",
                    reason: "cannot be empty".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = ConsumerConfig::default();
        assert_eq!(c.max_poll_records, 500);
        assert_eq!(c.fetch_max_bytes, 52_428_800);
        assert_eq!(c.max_partition_fetch_bytes, 1_048_576);
        assert_eq!(c.auto_offset_reset, OffsetReset::Latest);
        assert_eq!(c.spin, Duration::ZERO);
        assert_eq!(c.group_id, None);
        c.validate().unwrap();
        assert!(matches!(
            c.clone().max_poll_records(0).validate(),
            Err(Error::InvalidConfig {
                key: "max_poll_records",
                ..
            })
        ));
        assert!(matches!(
            c.group_id("").validate(),
            Err(Error::InvalidConfig {
                key: "group_id",
                ..
            })
        ));
    }
}
