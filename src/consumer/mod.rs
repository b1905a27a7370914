//! The `Consumer`: reads records from assigned or subscribed partitions, by offset.
//!
//! Files: `mod.rs` (the consumer: assignment, positions, poll), `fetch.rs` (one partition's
//! fetch state and the decoding of fetched batches), `records.rs` (what a poll returns),
//! `iter.rs` (the blocking iterator),
//! `config.rs`, `typed.rs` (typed records over a codec).
//!
//! Invariants:
//! 1. `assigned` is sorted by topic-partition and holds each at most once; every entry's log has
//!    the consumer's `signal` registered as a listener, and no other log does (entries are only
//!    added and removed through `set_assignment`, and `Drop` unregisters the rest).
//! 2. A position is the offset of the next record to return. A poll advances it past exactly the
//!    records it returns, so records are delivered once each, in offset order per partition,
//!    unless the user seeks.
//! 3. An entry's `buffer` holds whole batches fetched but not yet returned; its first batch may
//!    start below the position (a batch is never split), never above it. Before them, `partial`
//!    may hold the batch a full poll stopped in, with the cursor of its next record (whose offset
//!    is the position): the next poll goes on from there without checking the CRC again. Seeking,
//!    resetting or an error empties both.
//! 4. A poll never loses a wake-up: it reads the signal's counter *before* looking for data, and
//!    parks only until the counter moves past that value, so an append between the look and the
//!    park ends the park at once.

mod config;
mod fetch;
mod group;
mod iter;
mod records;
mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::config::{ConsumerConfig, OffsetReset};
use self::fetch::{Assigned, FetchContext};
use self::group::Membership;
pub use self::group::{ConsumerGroupMetadata, RebalanceListener};
pub use self::iter::ConsumerIter;
pub use self::records::{ConsumerRecord, ConsumerRecords};
pub use self::typed::{DecodeError, RecordField, TypedConsumer, TypedRecord};
use crate::broker::is_internal_topic;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::group::coordinator::Subscription;
use crate::partition::{Partition, TopicPartition};
use crate::storage::{AppendSignal, PartitionLog};
use crate::topic::validate_topic_name;

/// How long one park lasts at most when a poll has no deadline (`Duration::MAX` timeouts).
const LONGEST_PARK: Duration = Duration::from_secs(3600);

/// Reads records from partitions of a [`Broker`]'s topics, as Kafka's `KafkaConsumer` does.
///
/// Give it partitions with [`assign`](Self::assign), or topics with
/// [`subscribe`](Self::subscribe) (every partition of each, including partitions added later),
/// then call [`poll`](Self::poll) in a loop, or iterate with [`iter`](Self::iter). Each partition
/// has a *position*, the offset of the next record to return; poll moves it on,
/// [`seek`](Self::seek) and friends set it. Where a partition without a valid position starts is
/// the [`auto_offset_reset`](ConsumerConfig::auto_offset_reset) policy (latest by default, as in
/// Kafka).
///
/// A consumer that waits for records parks on a notification that appends fire, never in a sleep
/// loop; with [`ConsumerConfig::spin`] it first spins briefly, for the lowest latency. Records
/// are not copied out of the fetched buffer: keys and values are shared [`Bytes`](bytes::Bytes).
///
/// Consumers without a group read independently: two consumers of the same topic each receive
/// every record. Consumers with the same [`ConsumerConfig::group_id`] that
/// [`subscribe`](Self::subscribe) form a *consumer group*: each partition goes to one member, so
/// each record goes to one consumer of the group (a queue that scales), while every group gets
/// every record (publish/subscribe). Members [commit](Self::commit_sync) their positions, and a
/// partition that moves to another member in a rebalance continues from its committed offset;
/// see [`RebalanceListener`] and the assignors ([`RangeAssignor`](crate::RangeAssignor) and
/// others).
///
/// A consumer is `Send` and `Sync`, but its methods that poll or move positions take `&mut self`:
/// as in Kafka, one thread uses it at a time. Use one consumer per thread to read in parallel,
/// and a [`WakeupHandle`] to interrupt a blocked poll from another thread.
///
/// ```
/// use std::time::Duration;
/// use tidelog::{Broker, Consumer, ConsumerConfig, OffsetReset, Record, TopicPartition};
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path())?;
/// broker.create_topic("orders", 2)?;
/// broker.partition("orders", 0)?.log()?.append(&[Record::new("alice", "tea")])?;
/// broker.partition("orders", 1)?.log()?.append(&[Record::new("bob", "coffee")])?;
///
/// let config = ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest);
/// let mut consumer = Consumer::new(&broker, config)?;
/// consumer.subscribe(&["orders"])?;
/// let records = consumer.poll(Duration::from_secs(1))?;
/// assert_eq!(records.len(), 2);
/// for record in &records {
///     println!("{}-{} @ {}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
///
/// // Read partition 0 again from the start.
/// let p0 = TopicPartition::new("orders", 0);
/// consumer.seek(&p0, 0)?;
/// assert_eq!(consumer.position(&p0)?, 0);
/// let again = consumer.poll(Duration::from_secs(1))?;
/// assert_eq!(again.records(&p0)[0].value.as_deref(), Some(&b"tea"[..]));
///
/// // Nothing new: a poll waits for its timeout and returns no records.
/// assert!(consumer.poll(Duration::from_millis(10))?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Consumer {
    broker: Broker,
    config: ConsumerConfig,
    signal: Arc<AppendSignal>,
    woken: Arc<AtomicBool>,
    /// Subscribed topics or pattern; `None` when partitions are assigned by hand.
    subscription: Option<Subscription>,
    /// The broker's metadata epoch when the subscription was last matched against the topics;
    /// `None` when it must be matched again.
    subscription_epoch: Option<u64>,
    /// Invariant 1: sorted by topic-partition.
    assigned: Vec<Assigned>,
    /// Where the next poll starts its round over `assigned` (fairness between partitions).
    next_start: usize,
    /// The consumer's membership while it is subscribed with a group id (see `group.rs`).
    group: Option<Membership>,
    /// In a mutex only so that the consumer stays `Sync`; used through `get_mut`.
    listener: parking_lot::Mutex<Option<Box<dyn RebalanceListener>>>,
    /// Set while a rebalance listener runs (it must not poll).
    in_listener: bool,
    /// Set while `poll` runs (a listener called from it counts as time outside poll).
    polling: bool,
    /// Why the group fenced this consumer off for good (its instance id was taken over).
    fenced: Option<String>,
    next_auto_commit: Instant,
    closed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("subscription", &self.subscription)
            .field("assignment", &self.assignment())
            .finish_non_exhaustive()
    }
}

/// Interrupts a consumer's [`poll`](Consumer::poll) from another thread (Kafka's `wakeup()`).
///
/// [`wakeup`](Self::wakeup) makes the poll that is blocked now, or else the next one, return at
/// once with no records; an [`iter`](Consumer::iter) then ends. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct WakeupHandle {
    woken: Arc<AtomicBool>,
    signal: Arc<AppendSignal>,
}

impl std::fmt::Debug for WakeupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeupHandle").finish_non_exhaustive()
    }
}

impl WakeupHandle {
    /// Wakes the consumer's current or next poll, which returns no records.
    pub fn wakeup(&self) {
        self.woken.store(true, Ordering::Release);
        self.signal.notify();
    }
}

impl Broker {
    /// A new [`Consumer`] of this directory's topics; the same as [`Consumer::new`].
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self, config)
    }
}

impl Consumer {
    /// A consumer of `broker`'s topics with no assignment yet.
    ///
    /// Errors: [`Error::InvalidConfig`] when a setting is out of range.
    pub fn new(broker: &Broker, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let next_auto_commit = crate::storage::deadline_after(config.auto_commit_interval);
        Ok(Consumer {
            broker: broker.clone(),
            config,
            signal: Arc::new(AppendSignal::default()),
            woken: Arc::new(AtomicBool::new(false)),
            subscription: None,
            subscription_epoch: None,
            assigned: Vec::new(),
            next_start: 0,
            group: None,
            listener: parking_lot::Mutex::new(None),
            in_listener: false,
            polling: false,
            fenced: None,
            next_auto_commit,
            closed: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The group id, if one was configured (see [`ConsumerConfig::group_id`]).
    pub fn group_id(&self) -> Option<&str> {
        self.config.group_id.as_deref()
    }

    /// A handle that interrupts this consumer's blocked poll from another thread.
    pub fn wakeup_handle(&self) -> WakeupHandle {
        WakeupHandle {
            woken: Arc::clone(&self.woken),
            signal: Arc::clone(&self.signal),
        }
    }

    // ------------------------------------------------------------------------------ assignment

    /// Reads exactly these partitions (Kafka's `assign`), replacing any earlier assignment or
    /// subscription. Partitions that stay assigned keep their position; new ones start where
    /// `auto_offset_reset` says, unless seeked. An empty slice unassigns everything.
    ///
    /// If a topic of an assigned partition is deleted, polls return [`Error::UnknownTopic`] until
    /// the assignment changes.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::UnknownPartition`]; the assignment is then left
    /// as it was.
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let mut wanted = Vec::with_capacity(partitions.len());
        for tp in partitions {
            wanted.push((tp.clone(), self.broker.partition(&tp.topic, tp.partition)?));
        }
        // Leaving the group switches to the new assignment even when its final commit fails;
        // that error comes after.
        let left = self.leave_group(false);
        self.subscription = None;
        self.set_assignment(wanted);
        self.seek_to_committed()?;
        left
    }

    /// With a group id, starts newly assigned partitions without a position at the group's
    /// committed offsets.
    fn seek_to_committed(&mut self) -> Result<()> {
        let Some(group_id) = &self.config.group_id else {
            return Ok(());
        };
        let fresh: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|a| a.position.is_none())
            .map(|a| a.tp.clone())
            .collect();
        let committed = self.broker.inner.groups.committed(group_id, &fresh);
        for (tp, c) in fresh.iter().zip(committed) {
            if let Some(c) = c {
                let i = self.index_of(tp)?;
                self.assigned[i].seek(c.offset);
            }
        }
        Ok(())
    }

    /// Subscribes to these topics (Kafka's `subscribe`), replacing any earlier assignment or
    /// subscription. An empty slice is [`unsubscribe`](Self::unsubscribe).
    ///
    /// **With a [group id](ConsumerConfig::group_id)** the consumer joins the group, and the
    /// subscribed topics' partitions are shared out among the members by the group's assignor;
    /// members joining or leaving, partitions added and topics created or deleted start a
    /// rebalance, which the next `poll` (or the one that is blocked) carries out. Each partition
    /// starts at the group's committed offset, else where `auto_offset_reset` says.
    ///
    /// **Without one** it reads every partition of the topics. Partitions added to a topic
    /// later, and topics created later under a subscribed name, are picked up by the next poll
    /// (a poll that is blocked looks every
    /// [`metadata_max_age`](ConsumerConfig::metadata_max_age)); a deleted topic's partitions
    /// are dropped from the assignment without an error.
    ///
    /// Errors: [`Error::InvalidTopicName`] (a name that could never exist);
    /// [`Error::InvalidConfig`] if the group uses another assignor; I/O errors creating the
    /// offsets topic.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        for topic in topics {
            validate_topic_name(topic)?;
        }
        if topics.is_empty() {
            return self.unsubscribe();
        }
        let mut names: Vec<String> = topics.iter().map(|t| (*t).to_string()).collect();
        names.sort_unstable();
        names.dedup();
        self.subscribe_to(Subscription::Topics(names))
    }

    /// Subscribes to every topic whose whole name matches the regular expression `pattern`
    /// (Kafka's `subscribe(Pattern)`), now and as topics are created or deleted, except the
    /// internal `__consumer_offsets`. Otherwise as [`subscribe`](Self::subscribe).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tidelog::{Broker, ConsumerConfig, OffsetReset, Record};
    /// # let dir = tempfile::tempdir()?;
    /// # let broker = Broker::open(dir.path())?;
    /// let mut consumer = broker.consumer(
    ///     ConsumerConfig::default().group_id("audit").auto_offset_reset(OffsetReset::Earliest),
    /// )?;
    /// consumer.subscribe_pattern("orders-.*")?;
    /// broker.create_topic("orders-eu", 1)?; // created after the subscription: picked up
    /// broker.partition("orders-eu", 0)?.log()?.append(&[Record::from_value("x")])?;
    /// let records = consumer.poll(Duration::from_secs(5))?;
    /// assert_eq!(records.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Errors: [`Error::InvalidArgument`] for a pattern that is not a valid regular expression;
    /// as [`subscribe`](Self::subscribe).
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        let anchored = format!("^(?:{pattern})$");
        let re = regex::Regex::new(&anchored).map_err(|e| {
            Error::InvalidArgument(format!("invalid subscription pattern `{pattern}`: {e}"))
        })?;
        self.subscribe_to(Subscription::Pattern(re))
    }

    fn subscribe_to(&mut self, subscription: Subscription) -> Result<()> {
        if self.config.group_id.is_some() {
            return self.group_subscribe(subscription);
        }
        self.subscription = Some(subscription);
        self.subscription_epoch = None;
        self.refresh_subscription();
        Ok(())
    }

    /// Drops the subscription and every assigned partition. A group member first gives its
    /// partitions up (the rebalance listener runs; with auto-commit their positions are
    /// committed) and leaves the group.
    ///
    /// Errors: that final commit's, after leaving anyway.
    pub fn unsubscribe(&mut self) -> Result<()> {
        let left = self.leave_group(false);
        self.subscription = None;
        self.set_assignment(Vec::new());
        left
    }

    /// The partitions assigned now, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.iter().map(|a| a.tp.clone()).collect()
    }

    /// The subscribed topics, sorted: the names given to [`subscribe`](Self::subscribe), or the
    /// existing topics a [pattern](Self::subscribe_pattern) matches now; empty when partitions
    /// are assigned by hand.
    pub fn subscription(&self) -> Vec<String> {
        self.subscribed_names()
    }

    /// The topic names a subscription covers now (for a pattern: the existing topics it matches).
    fn subscribed_names(&self) -> Vec<String> {
        match &self.subscription {
            None => Vec::new(),
            Some(Subscription::Topics(names)) => names.clone(),
            Some(Subscription::Pattern(re)) => self
                .broker
                .topics()
                .into_iter()
                .filter(|t| !is_internal_topic(t) && re.is_match(t))
                .collect(),
        }
    }

    /// Replaces the assignment, keeping the state of partitions that stay (invariant 1).
    fn set_assignment(&mut self, mut wanted: Vec<(TopicPartition, Partition)>) {
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        wanted.dedup_by(|a, b| a.0 == b.0);
        let mut old = std::mem::take(&mut self.assigned).into_iter().peekable();
        let mut next = Vec::with_capacity(wanted.len());
        for (tp, partition) in wanted {
            while let Some(stale) = old.next_if(|a| a.tp < tp) {
                stale.partition.log.remove_listener(&self.signal);
            }
            match old.next_if(|a| a.tp == tp) {
                Some(kept) if Arc::ptr_eq(&kept.partition.log, &partition.log) => next.push(kept),
                replaced => {
                    // A topic deleted and created again under the same name is a new log.
                    if let Some(stale) = replaced {
                        stale.partition.log.remove_listener(&self.signal);
                    }
                    partition.log.add_listener(&self.signal);
                    next.push(Assigned::new(tp, partition));
                }
            }
        }
        for stale in old {
            stale.partition.log.remove_listener(&self.signal);
        }
        self.assigned = next;
        self.next_start = 0;
    }

    /// Whether the assignment differs from the subscribed topics' partitions now.
    fn subscription_changed(&self, names: &[String]) -> bool {
        let mut i = 0;
        for name in names {
            let Ok(topic) = self.broker.topic(name) else {
                continue;
            };
            if topic.state.check_live().is_err() {
                continue;
            }
            let logs = topic.state.partitions.read();
            for (p, log) in logs.iter().enumerate() {
                match self.assigned.get(i) {
                    Some(a)
                        if a.tp.partition as usize == p
                            && a.tp.topic == *name
                            && Arc::ptr_eq(&a.partition.log, log) =>
                    {
                        i += 1;
                    }
                    _ => return true,
                }
            }
        }
        i != self.assigned.len()
    }

    /// Brings the assignment of a subscription without a group in line with the subscribed
    /// topics; a no-op (one atomic load) unless a topic was created or deleted or a partition
    /// added since it last looked.
    fn refresh_subscription(&mut self) {
        if self.subscription.is_none() || self.config.group_id.is_some() {
            return;
        }
        // Read first: a change while the topics are looked at moves it again, so the next
        // poll looks again.
        let epoch = self.broker.metadata_epoch();
        if self.subscription_epoch == Some(epoch) {
            return;
        }
        self.subscription_epoch = Some(epoch);
        let names = self.subscribed_names();
        if !self.subscription_changed(&names) {
            return;
        }
        let mut wanted = Vec::new();
        for name in &names {
            // A topic that does not exist (yet, or any more) has no partitions to read.
            if let Ok(partitions) = self.broker.topic(name).and_then(|t| t.partitions()) {
                wanted.extend(
                    partitions
                        .into_iter()
                        .map(|p| (TopicPartition::new(name, p.partition()), p)),
                );
            }
        }
        self.set_assignment(wanted);
    }

    fn index_of(&self, tp: &TopicPartition) -> Result<usize> {
        self.assigned
            .binary_search_by(|a| a.tp.cmp(tp))
            .map_err(|_| {
                Error::InvalidArgument(format!("partition {tp} is not assigned to this consumer"))
            })
    }

    /// The indexes of `partitions`, or of every assigned partition for an empty slice.
    fn indexes_of(&self, partitions: &[TopicPartition]) -> Result<Vec<usize>> {
        if partitions.is_empty() {
            return Ok((0..self.assigned.len()).collect());
        }
        partitions.iter().map(|tp| self.index_of(tp)).collect()
    }

    // ------------------------------------------------------------------------------ positions

    /// Sets the position of an assigned partition: the next poll returns records from `offset`
    /// on. An offset outside the log is allowed here; the poll that meets it applies
    /// `auto_offset_reset`.
    ///
    /// Errors: [`Error::InvalidArgument`] if `partition` is not assigned.
    pub fn seek(&mut self, partition: &TopicPartition, offset: u64) -> Result<()> {
        let i = self.index_of(partition)?;
        self.assigned[i].seek(offset);
        Ok(())
    }

    /// Moves these partitions (all assigned ones for an empty slice) to their log start offset,
    /// the oldest record still kept.
    ///
    /// Errors: [`Error::InvalidArgument`] if one is not assigned (nothing is moved then).
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.indexes_of(partitions)? {
            let start = self.assigned[i].partition.log.log_start_offset();
            self.assigned[i].seek(start);
        }
        Ok(())
    }

    /// Moves these partitions (all assigned ones for an empty slice) to their log end offset, so
    /// that only records appended from now on are returned.
    ///
    /// Errors: [`Error::InvalidArgument`] if one is not assigned (nothing is moved then).
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.indexes_of(partitions)? {
            let end = self.assigned[i].partition.log.log_end_offset();
            self.assigned[i].seek(end);
        }
        Ok(())
    }

    /// The offset of the next record a poll would return from `partition`. A partition that has
    /// no position yet gets one from `auto_offset_reset` first.
    ///
    /// Errors: [`Error::InvalidArgument`] if it is not assigned; [`Error::NoOffsetForPartition`]
    /// if it has no position and the policy is [`OffsetReset::None`].
    pub fn position(&mut self, partition: &TopicPartition) -> Result<u64> {
        let i = self.index_of(partition)?;
        let reset = self.config.auto_offset_reset;
        let a = &mut self.assigned[i];
        match a.position {
            Some(position) => Ok(position),
            None => a.reset(reset, None),
        }
    }

    /// Stops returning records of these partitions from polls, keeping their positions (Kafka's
    /// `pause`), for example while the application catches up elsewhere.
    ///
    /// Errors: [`Error::InvalidArgument`] if one is not assigned (nothing is paused then).
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.indexes_of(partitions)? {
            self.assigned[i].paused = true;
        }
        Ok(())
    }

    /// Undoes [`pause`](Self::pause).
    ///
    /// Errors: [`Error::InvalidArgument`] if one is not assigned (nothing is resumed then).
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for i in self.indexes_of(partitions)? {
            self.assigned[i].paused = false;
        }
        Ok(())
    }

    /// The paused partitions, sorted.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assigned
            .iter()
            .filter(|a| a.paused)
            .map(|a| a.tp.clone())
            .collect()
    }

    /// For each partition and timestamp (milliseconds since the epoch), the first offset whose
    /// record timestamp is at least it, or `None` if every record is older (Kafka's
    /// `offsetsForTimes`; the partitions need not be assigned). Seek there to replay from a time.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::UnknownPartition`], I/O errors.
    pub fn offsets_for_times(&self, query: &[(TopicPartition, i64)]) -> Result<Vec<Option<u64>>> {
        query
            .iter()
            .map(|(tp, ts)| {
                self.broker
                    .partition(&tp.topic, tp.partition)?
                    .offset_for_timestamp(*ts)
            })
            .collect()
    }

    /// Each partition's log start offset (Kafka's `beginningOffsets`), in the order given; the
    /// partitions need not be assigned.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::UnknownPartition`].
    pub fn beginning_offsets(&self, partitions: &[TopicPartition]) -> Result<Vec<u64>> {
        self.offsets_of(partitions, PartitionLog::log_start_offset)
    }

    /// Each partition's log end offset, the offset the next record will get (Kafka's
    /// `endOffsets`), in the order given; the partitions need not be assigned.
    ///
    /// Errors: [`Error::UnknownTopic`], [`Error::UnknownPartition`].
    pub fn end_offsets(&self, partitions: &[TopicPartition]) -> Result<Vec<u64>> {
        self.offsets_of(partitions, PartitionLog::log_end_offset)
    }

    /// `offset` of each partition's log, in the order given.
    fn offsets_of(
        &self,
        partitions: &[TopicPartition],
        offset: fn(&PartitionLog) -> u64,
    ) -> Result<Vec<u64>> {
        partitions
            .iter()
            .map(|tp| {
                Ok(offset(
                    self.broker.partition(&tp.topic, tp.partition)?.log()?,
                ))
            })
            .collect()
    }

    // ------------------------------------------------------------------------------ polling

    /// Returns the next records of the assigned, unpaused partitions: at most `max_poll_records`,
    /// in offset order within each partition, and moves the positions past them.
    ///
    /// If none are there, waits for an append to one of the partitions (spinning first for
    /// [`ConsumerConfig::spin`], then parked, not in a sleep loop) until `timeout` passes, and
    /// then returns empty records. A zero timeout never waits; `Duration::MAX` waits until
    /// records come or a [`WakeupHandle`] wakes it.
    ///
    /// Partitions take turns: each poll starts with the partition after the last one that
    /// returned records, so a busy partition cannot starve the others.
    ///
    /// Errors: [`Error::NoOffsetForPartition`] or [`Error::PositionOutOfRange`] under
    /// [`OffsetReset::None`], naming the partition; [`Error::UnknownTopic`] for an assigned
    /// partition whose topic was deleted; errors reading the log ([`Error::Io`], damaged batches).
    /// Records found before the error are returned first; the error comes with the next poll,
    /// and again until the cause is fixed (for a damaged batch, seek past it).
    pub fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        if self.in_listener {
            return Err(Error::InvalidArgument(
                "poll cannot be called from a rebalance listener".into(),
            ));
        }
        if let Some(m) = &self.group {
            m.liveness.enter_poll();
        }
        // A panic in a listener called from the poll must not leave the member "inside poll"
        // for ever (it would never be removed for not polling).
        self.polling = true;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.poll_inner(timeout)));
        self.polling = false;
        if let Some(m) = &self.group {
            m.liveness.exit_poll();
        }
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn poll_inner(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        self.maybe_auto_commit();
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let mut metadata_checked = started;
        self.refresh_subscription();
        loop {
            if self.woken.swap(false, Ordering::AcqRel) {
                return Ok(ConsumerRecords::default());
            }
            // Invariant 4: the counter first, then the look (the group's coordinator notifies
            // the same signal).
            let seen = self.signal.current();
            self.group_sync()?;
            let records = self.fetch()?;
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(ConsumerRecords::default());
            }
            if !self.config.spin.is_zero() {
                let spin_end = now
                    .checked_add(self.config.spin)
                    .unwrap_or(now + LONGEST_PARK);
                if self.spin_until(deadline.map_or(spin_end, |d| d.min(spin_end))) {
                    continue;
                }
            }
            let mut park_until = deadline
                .unwrap_or(now + LONGEST_PARK)
                .min(now + LONGEST_PARK);
            if self.subscription.is_some() && self.group.is_none() {
                let refresh_at = metadata_checked
                    .checked_add(self.config.metadata_max_age)
                    .unwrap_or(now + LONGEST_PARK);
                if now >= refresh_at {
                    self.refresh_subscription();
                    metadata_checked = now;
                    continue;
                }
                park_until = park_until.min(refresh_at);
            }
            self.signal.wait_past(seen, park_until);
        }
    }

    /// An iterator over records that polls as needed, each poll waiting up to
    /// `timeout_per_poll`.
    ///
    /// It ends when a poll returns no records: when nothing arrives for `timeout_per_poll`, or
    /// when a [`WakeupHandle`] wakes the consumer. With `Duration::MAX` it follows the partitions
    /// until woken. A poll error is yielded as an `Err` item; the next call polls again.
    ///
    /// Positions move as with [`poll`](Self::poll); dropping the iterator with records still
    /// buffered moves their partitions back to the first record not yet yielded, so nothing is
    /// skipped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tidelog::{Broker, ConsumerConfig, OffsetReset, Record};
    /// # let dir = tempfile::tempdir()?;
    /// # let broker = Broker::open(dir.path())?;
    /// # broker.create_topic("events", 1)?;
    /// # let log = broker.partition("events", 0)?;
    /// # log.log()?.append(&[Record::from_value("a"), Record::from_value("b"), Record::from_value("c")])?;
    /// let mut consumer = broker.consumer(ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest))?;
    /// consumer.subscribe(&["events"])?;
    /// let first_two: Vec<_> = consumer.iter(Duration::from_millis(100)).take(2).collect::<Result<_, _>>()?;
    /// assert_eq!(first_two.len(), 2);
    /// // The third record was fetched but not yet yielded: the next poll returns it.
    /// let rest = consumer.poll(Duration::from_millis(100))?;
    /// assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), [2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&mut self, timeout_per_poll: Duration) -> ConsumerIter<'_> {
        ConsumerIter::new(self, timeout_per_poll)
    }

    /// Spins until a partition has data to return, the consumer is woken, or `until`; returns
    /// whether to look again.
    fn spin_until(&self, until: Instant) -> bool {
        loop {
            if self.woken.load(Ordering::Acquire)
                || self.assigned.iter().any(Assigned::may_have_data)
                || self.group.as_ref().is_some_and(Membership::changed)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// One round over the assigned partitions without waiting.
    fn fetch(&mut self) -> Result<ConsumerRecords> {
        let n = self.assigned.len();
        if n == 0 {
            return Ok(ConsumerRecords::default());
        }
        let mut ctx = FetchContext {
            out: Vec::new(),
            max_records: self.config.max_poll_records,
            bytes_left: self.config.fetch_max_bytes,
            partition_bytes: self.config.max_partition_fetch_bytes,
            reset: self.config.auto_offset_reset,
        };
        let mut runs = Vec::new();
        let mut failed: Option<(usize, Error)> = None;
        let first = self.next_start % n;
        let mut next_start = first;
        for k in 0..n {
            if ctx.out.len() >= ctx.max_records {
                break;
            }
            let i = (first + k) % n;
            let a = &mut self.assigned[i];
            if a.paused {
                continue;
            }
            let before = ctx.out.len();
            let result = a.fetch_into(&mut ctx);
            if ctx.out.len() > before {
                runs.push((Arc::clone(&a.topic), a.tp.partition, before..ctx.out.len()));
                next_start = i + 1;
            }
            match result {
                Ok(()) => {}
                // A subscription drops a deleted topic's partitions at its next refresh.
                Err(Error::UnknownTopic(_)) if self.subscription.is_some() => {}
                // The other partitions still get their turn, so one failing partition cannot
                // stop them.
                Err(e) => {
                    failed.get_or_insert((i, e));
                }
            }
        }
        self.next_start = next_start;
        if let Some((i, e)) = failed {
            // The next poll starts with the failing partition: its error comes then at the
            // latest, unless fixed meanwhile.
            self.next_start = i;
            if ctx.out.is_empty() {
                return Err(e);
            }
        }
        Ok(ConsumerRecords::new(ctx.out, runs))
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // A rebalance listener may run here; if it panics, the group is still left.
        let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.close_inner()));
        if closed.is_err() {
            let _ = self.leave_group(true);
        }
        for a in &self.assigned {
            a.partition.log.remove_listener(&self.signal);
        }
        if let Err(panic) = closed {
            std::panic::resume_unwind(panic);
        }
    }
}

#[cfg(test)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Consumer>();
    is::<ConsumerRecords>();
    is::<WakeupHandle>();
    is::<TypedConsumer<String, Vec<u8>>>();
}
