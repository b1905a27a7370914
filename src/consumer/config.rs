//! `ConsumerConfig` and `OffsetReset`: a consumer's settings, named as Kafka names them.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::group::assignor::{Assignor, RangeAssignor};

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
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) enable_auto_commit: bool,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) assignor: AssignorRef,
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
            group_instance_id: None,
            client_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            assignor: AssignorRef(Arc::new(RangeAssignor)),
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
    /// With a group id, [`subscribe`](crate::Consumer::subscribe) joins the group: the
    /// subscribed topics' partitions are shared out among its members, and the consumer can
    /// [commit](crate::Consumer::commit_sync) offsets and starts each partition at the group's
    /// committed offset. Without one, a subscription reads every partition and commits are
    /// refused.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Makes the consumer a *static member* of its group (`group.instance.id`). Default none
    /// (a dynamic member).
    ///
    /// When a static member's consumer is dropped or closed, the group keeps its partitions
    /// for [`session_timeout`](Self::session_timeout) instead of rebalancing; a new consumer
    /// with the same instance id within that time gets them back at once, without a
    /// rebalance (for example across an application restart). A second live consumer with the
    /// same instance id takes the place over, and the first one gets [`Error::Fenced`].
    #[must_use]
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// A name for the consumer, shown in group descriptions and the start of its member id
    /// (`client.id`). Default `consumer-<group>-<n>`.
    #[must_use]
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Whether positions are committed automatically (`enable.auto.commit`). Default `true`,
    /// as in Kafka: each `poll` commits the positions reached by the records the previous polls
    /// returned, once every [`auto_commit_interval`](Self::auto_commit_interval); positions are
    /// also committed before partitions are revoked in a rebalance and when the consumer is
    /// closed. Records a thread did not finish processing before it polls again can be lost
    /// this way; turn it off and commit yourself after processing for at-least-once delivery.
    #[must_use]
    pub fn enable_auto_commit(mut self, enabled: bool) -> Self {
        self.enable_auto_commit = enabled;
        self
    }

    /// How often automatic commits happen (`auto.commit.interval.ms`). Default 5 s.
    #[must_use]
    pub fn auto_commit_interval(mut self, every: Duration) -> Self {
        self.auto_commit_interval = every;
        self
    }

    /// How long a member whose thread is gone keeps its place (`session.timeout.ms`). Default
    /// 45 s, as in Kafka. The session ends when the thread that polled the consumer last has
    /// ended and no other thread has polled it since; a static member whose consumer was
    /// dropped keeps its partitions this long for its successor.
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Longest time a member may spend between polls before the group removes it and gives its
    /// partitions to others (`max.poll.interval.ms`). Default 5 minutes. Time spent waiting
    /// inside `poll` does not count; time in a [`RebalanceListener`](crate::RebalanceListener)
    /// callback does, as in Kafka. A removed consumer's commits fail with
    /// [`Error::Fenced`]; its next poll joins the group again as a new member.
    #[must_use]
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// How the group shares partitions among its members (`partition.assignment.strategy`):
    /// [`RangeAssignor`] (the default, as in Kafka), [`RoundRobinAssignor`](crate::RoundRobinAssignor),
    /// [`StickyAssignor`](crate::StickyAssignor),
    /// [`CooperativeStickyAssignor`](crate::CooperativeStickyAssignor) (partitions that stay
    /// are consumed throughout a rebalance), or your own [`Assignor`]. Every member of a group
    /// must use the same one.
    #[must_use]
    pub fn partition_assignment_strategy(mut self, assignor: impl Assignor + 'static) -> Self {
        self.assignor = AssignorRef(Arc::new(assignor));
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
            if group.is_empty() || group.len() > 1024 {
                return Err(Error::InvalidConfig {
                    key: "group_id",
                    reason: "must be 1 to 1024 bytes long".into(),
                });
            }
        }
        if self
            .group_instance_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 249)
        {
            return Err(Error::InvalidConfig {
                key: "group_instance_id",
                reason: "must be 1 to 249 bytes long".into(),
            });
        }
        for (key, value) in [
            ("auto_commit_interval", self.auto_commit_interval),
            ("session_timeout", self.session_timeout),
            ("max_poll_interval", self.max_poll_interval),
        ] {
            if value < Duration::from_millis(1) {
                return Err(Error::InvalidConfig {
                    key,
                    reason: "must be at least 1 ms".into(),
                });
            }
        }
        Ok(())
    }
}

/// The configured assignor; configurations compare equal when their assignors have the same
/// name.
#[derive(Clone)]
pub(crate) struct AssignorRef(pub Arc<dyn Assignor>);

impl std::fmt::Debug for AssignorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl PartialEq for AssignorRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for AssignorRef {}

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
        assert!(c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.max_poll_interval, Duration::from_secs(300));
        assert_eq!(c.assignor.0.name(), "range");
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
