//! The producer's shared state and its two threads:
//!
//! * the *sender* (Kafka's `Sender`) appends full batches that async sends hand to it and
//!   batches whose linger time passed;
//! * the *syncer* completes batches of `Always`-durable topics once they are fsynced, calling
//!   `flush_until` once per partition for every batch waiting (group commit), so that appends
//!   and fsyncs overlap and no sending thread waits for an fsync it did not ask for.
//!
//! Locks, always taken in this order (never the other way): a partition queue's `acc`, then
//! `control` or `sync`, then `pool`. `control` and `sync` are never held together.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex};

use super::accumulator::{clone_error, BatchCompletion, PartitionQueue, TopicShared};
use super::config::ProducerConfig;
use super::partitioner::Sticky;
use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::storage::PartitionLog;
use crate::topic::TopicState;

/// A batch appended to a topic whose durability is `Always`: it completes once the log is
/// flushed up to `end`.
pub(crate) struct Durable {
    pub log: Arc<PartitionLog>,
    pub end: u64,
    pub base: u64,
    pub completion: Arc<BatchCompletion>,
}

impl Durable {
    pub(crate) fn finish(self, flushed: Result<()>) {
        self.completion.complete(flushed.map(|()| self.base));
    }
}

/// A topic as the producer sees it: its partition queues and what a send checks of its
/// config. Never changed: when the topic grows or its config changes, the producer puts a new
/// entry (sharing the queues) in its map ([`Shared::resolve`]), so a send reads all of it under
/// the one guard of the map, with no other shared pointer to load.
pub(crate) struct TopicEntry {
    pub topic: Arc<TopicShared>,
    pub queues: Vec<Arc<PartitionQueue>>,
    /// `TopicState::config_epoch` when the fields below were read.
    config_epoch: u64,
    pub max_message_bytes: usize,
    pub compacts: bool,
}

impl TopicEntry {
    /// An entry for `state`, keeping the queues of `previous` (an entry of the same topic).
    fn new(state: &Arc<TopicState>, previous: Option<&TopicEntry>) -> TopicEntry {
        // The epoch first: a config stored meanwhile makes the entry look stale, never current.
        let config_epoch = state.config_epoch.load(Ordering::Acquire);
        let config = state.config.load();
        let logs = state.partitions.read().clone();
        let (topic, mut queues) = match previous {
            Some(previous) => (Arc::clone(&previous.topic), previous.queues.clone()),
            None => (
                Arc::new(TopicShared {
                    name: Arc::from(state.name.as_str()),
                    sticky: Sticky::new(logs.len() as u32),
                    state: Arc::clone(state),
                }),
                Vec::new(),
            ),
        };
        for (p, log) in logs.into_iter().enumerate().skip(queues.len()) {
            queues.push(Arc::new(PartitionQueue::new(
                Arc::clone(&topic),
                p as u32,
                log,
            )));
        }
        TopicEntry {
            topic,
            queues,
            config_epoch,
            max_message_bytes: config.max_message_bytes,
            compacts: config.cleanup_policy.compacts(),
        }
    }

    /// Whether the topic still exists and its config is the one this entry read.
    pub(crate) fn is_current(&self) -> bool {
        self.topic.is_live()
            && self.topic.state.config_epoch.load(Ordering::Acquire) == self.config_epoch
    }

    /// Whether the topic has more partitions than this entry has queues.
    pub(crate) fn grew(&self) -> bool {
        self.topic.partition_count() as usize > self.queues.len()
    }
}

/// A batch waiting for its linger time.
struct Lingering {
    deadline: Instant,
    queue: Arc<PartitionQueue>,
    batch: Arc<BatchCompletion>,
}

#[derive(Default)]
struct Control {
    /// Open batches by deadline; the linger time is the same for all, so a queue is sorted.
    lingering: VecDeque<Lingering>,
    /// Queues whose appender role was handed to the sender thread.
    ready: Vec<Arc<PartitionQueue>>,
    /// Close every lingering batch now (buffer memory is short).
    drain: bool,
    stop: bool,
    sleeping: bool,
}

#[derive(Default)]
struct SyncState {
    /// Appended batches waiting for an fsync.
    pending: Vec<Durable>,
    /// How many batches were ever put in `pending`, and how many of those are complete.
    queued: u64,
    completed: u64,
    stop: bool,
    exited: bool,
    sleeping: bool,
}

/// FNV-1a, for the map of topic names looked up on every send: names are short and chosen by
/// the application, so `SipHash`'s flooding resistance buys nothing here.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub(crate) type TopicMap = HashMap<Arc<str>, Arc<TopicEntry>, BuildHasherDefault<NameHasher>>;

/// What all clones of a producer and its threads share.
pub(crate) struct Shared {
    pub broker: Broker,
    pub config: ProducerConfig,
    pub topics: ArcSwap<TopicMap>,
    topics_lock: Mutex<()>,
    pub closed: AtomicBool,
    pool: Mutex<usize>,
    pool_cond: Condvar,
    control: Mutex<Control>,
    /// Wakes the sender thread.
    wake: Condvar,
    sync: Mutex<SyncState>,
    /// Wakes the syncer thread.
    sync_wake: Condvar,
    /// Signals `SyncState::completed` moving, to `flush`.
    sync_progress: Condvar,
}

impl Shared {
    pub(crate) fn new(broker: Broker, config: ProducerConfig) -> Shared {
        Shared {
            broker,
            config,
            topics: ArcSwap::from_pointee(TopicMap::default()),
            topics_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            pool: Mutex::new(0),
            pool_cond: Condvar::new(),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            sync: Mutex::new(SyncState::default()),
            sync_wake: Condvar::new(),
            sync_progress: Condvar::new(),
        }
    }

    /// Looks `name` up in the broker and (re)places its entry unless it is current and as
    /// large as the topic: a new topic, a topic deleted and created again, a config change or
    /// added partitions (Kafka's metadata refresh). Errors if the topic does not exist.
    pub(crate) fn resolve(&self, name: &str) -> Result<()> {
        let topic = self.broker.topic(name)?;
        topic.state.check_live()?;
        let one_at_a_time = self.topics_lock.lock();
        let current = self.topics.load_full();
        let previous = current
            .get(name)
            .filter(|entry| Arc::ptr_eq(&entry.topic.state, &topic.state));
        if previous.is_some_and(|entry| entry.is_current() && !entry.grew()) {
            return Ok(());
        }
        let entry = TopicEntry::new(&topic.state, previous.map(|entry| &**entry));
        let mut topics = TopicMap::clone(&current);
        let replaced = topics.insert(Arc::from(name), Arc::new(entry));
        self.topics.store(Arc::new(topics));
        drop(one_at_a_time);
        // The entry of a topic deleted (and now created again) leaves the map, and `flush`
        // would no longer see its queues: their batches fail now rather than after their
        // linger time (appending to a deleted topic fails at once).
        if let Some(old) = replaced.filter(|old| !Arc::ptr_eq(&old.topic.state, &topic.state)) {
            for queue in &old.queues {
                queue.flush(self);
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------ memory

    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let mut used = self.pool.lock();
        if *used + bytes <= self.config.buffer_memory {
            *used += bytes;
            return true;
        }
        false
    }

    /// Waits until `bytes` of buffer memory are free and takes them; meanwhile asks the
    /// sender thread to append every lingering batch, which frees memory.
    pub(crate) fn reserve_blocking(&self, bytes: usize) {
        loop {
            {
                let mut used = self.pool.lock();
                // A single record larger than the whole buffer was refused before this point;
                // an empty buffer always admits a batch.
                if *used + bytes <= self.config.buffer_memory || *used == 0 {
                    *used += bytes;
                    return;
                }
            }
            self.request_drain();
            let mut used = self.pool.lock();
            if *used + bytes > self.config.buffer_memory && *used != 0 {
                // Memory is released by appends, which notify; the timeout only guards against
                // a drain request that raced with the sender thread going to sleep.
                self.pool_cond
                    .wait_for(&mut used, Duration::from_millis(10));
            }
        }
    }

    pub(crate) fn release(&self, bytes: usize) {
        let mut used = self.pool.lock();
        *used = used.saturating_sub(bytes);
        drop(used);
        self.pool_cond.notify_all();
    }

    // ------------------------------------------------------------------------------ sender thread

    /// Queues a new batch for its linger time. Returns `false` (and queues nothing) once the
    /// producer is closing: the caller appends the batch itself.
    pub(crate) fn register_linger(
        &self,
        queue: &Arc<PartitionQueue>,
        batch: &Arc<BatchCompletion>,
    ) -> bool {
        let deadline = crate::storage::deadline_after(self.config.linger);
        let mut c = self.control.lock();
        if c.stop {
            return false;
        }
        let was_empty = c.lingering.is_empty();
        c.lingering.push_back(Lingering {
            deadline,
            queue: Arc::clone(queue),
            batch: Arc::clone(batch),
        });
        if was_empty && c.sleeping {
            self.wake.notify_one();
        }
        true
    }

    /// Hands the appender role of `queue` to the sender thread. Returns `false` (and hands
    /// nothing) once the producer is closing.
    pub(crate) fn hand_off(&self, queue: &Arc<PartitionQueue>) -> bool {
        let mut c = self.control.lock();
        if c.stop {
            return false;
        }
        c.ready.push(Arc::clone(queue));
        if c.sleeping {
            self.wake.notify_one();
        }
        true
    }

    fn request_drain(&self) {
        let mut c = self.control.lock();
        c.drain = true;
        if c.sleeping {
            self.wake.notify_one();
        }
    }

    // ------------------------------------------------------------------------------ syncer thread

    /// Hands an appended batch to the syncer thread, to complete after an fsync.
    pub(crate) fn push_durable(&self, durable: Durable) {
        let mut s = self.sync.lock();
        if s.exited {
            drop(s);
            let flushed = durable.log.flush_until(durable.end);
            durable.finish(flushed);
            return;
        }
        s.pending.push(durable);
        s.queued += 1;
        if s.sleeping {
            self.sync_wake.notify_one();
        }
    }

    // ------------------------------------------------------------------------------ flush, close

    /// Kafka's `flush`: closes every open batch, and waits until every batch closed before
    /// the call is appended and, where the topic asks for it, fsynced.
    pub(crate) fn flush(&self) {
        let entries: Vec<Arc<TopicEntry>> = self.topics.load().values().cloned().collect();
        for entry in entries {
            for queue in &entry.queues {
                queue.flush(self);
            }
        }
        // Every batch closed before is appended, and handed to the syncer if it needs an fsync.
        let mut s = self.sync.lock();
        let target = s.queued;
        while s.completed < target && !s.exited {
            self.sync_progress.wait(&mut s);
        }
    }

    /// Flushes, then stops both threads.
    pub(crate) fn close(&self, threads: &Mutex<Vec<std::thread::JoinHandle<()>>>) {
        self.closed.store(true, Ordering::Release);
        self.flush();
        {
            let mut c = self.control.lock();
            c.stop = true;
            self.wake.notify_one();
        }
        {
            let mut s = self.sync.lock();
            s.stop = true;
            self.sync_wake.notify_one();
        }
        let threads = std::mem::take(&mut *threads.lock());
        for handle in threads {
            // A thread can hold the last handle to the producer for a moment: never join self.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// Starts the sender and syncer threads of a producer.
pub(crate) fn spawn(shared: &Arc<Shared>) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let sender = Arc::clone(shared);
    let sender = std::thread::Builder::new()
        .name("tidelog-producer".into())
        .spawn(move || run_sender(&sender))
        .map_err(|e| Error::io("starting the producer thread", e))?;
    let syncer = Arc::clone(shared);
    let syncer = std::thread::Builder::new()
        .name("tidelog-producer-sync".into())
        .spawn(move || run_syncer(&syncer));
    match syncer {
        Ok(syncer) => Ok(vec![sender, syncer]),
        Err(e) => {
            shared.control.lock().stop = true;
            shared.wake.notify_one();
            let _ = sender.join();
            Err(Error::io("starting the producer sync thread", e))
        }
    }
}

fn run_sender(shared: &Shared) {
    let mut expired = Vec::new();
    let mut ready = Vec::new();
    loop {
        {
            let mut c = shared.control.lock();
            loop {
                let now = Instant::now();
                let all = c.stop || c.drain;
                c.drain = false;
                while c
                    .lingering
                    .front()
                    .is_some_and(|l| all || l.deadline <= now)
                {
                    expired.extend(c.lingering.pop_front());
                }
                std::mem::swap(&mut ready, &mut c.ready);
                if !expired.is_empty() || !ready.is_empty() {
                    break;
                }
                if c.stop {
                    return;
                }
                c.sleeping = true;
                match c.lingering.front().map(|l| l.deadline) {
                    Some(deadline) => {
                        shared.wake.wait_until(&mut c, deadline);
                    }
                    None => shared.wake.wait(&mut c),
                }
                c.sleeping = false;
            }
        }
        for queue in ready.drain(..) {
            queue.drain_handed(shared);
        }
        for l in expired.drain(..) {
            l.queue.linger_expired(shared, &l.batch);
        }
    }
}

fn run_syncer(shared: &Shared) {
    /// Marks the syncer gone however it ends, a panic included, so `flush` and drop never wait
    /// for it forever.
    struct Exit<'a>(&'a Shared);
    impl Drop for Exit<'_> {
        fn drop(&mut self) {
            self.0.sync.lock().exited = true;
            self.0.sync_progress.notify_all();
        }
    }
    let _exit = Exit(shared);
    let mut pending = Vec::new();
    loop {
        let taken = {
            let mut s = shared.sync.lock();
            while s.pending.is_empty() {
                if s.stop {
                    s.exited = true;
                    shared.sync_progress.notify_all();
                    return;
                }
                s.sleeping = true;
                shared.sync_wake.wait(&mut s);
                s.sleeping = false;
            }
            std::mem::swap(&mut pending, &mut s.pending);
            s.queued
        };
        make_durable(&mut pending);
        let mut s = shared.sync.lock();
        s.completed = s.completed.max(taken);
        shared.sync_progress.notify_all();
    }
}

/// Fsyncs each log once, up to the end of its last waiting batch, and completes the batches.
fn make_durable(durable: &mut Vec<Durable>) {
    // Stable: batches of one log keep their order.
    durable.sort_by_key(|d| Arc::as_ptr(&d.log) as usize);
    let mut start = 0;
    while start < durable.len() {
        let log = Arc::clone(&durable[start].log);
        let len = durable[start..]
            .iter()
            .take_while(|d| Arc::ptr_eq(&d.log, &log))
            .count();
        let group = &durable[start..start + len];
        let end = group.iter().map(|d| d.end).max().unwrap_or(0);
        let flushed = log.flush_until(end);
        for d in group {
            d.completion.complete(match &flushed {
                Ok(()) => Ok(d.base),
                Err(e) => Err(clone_error(e)),
            });
        }
        start += len;
    }
    durable.clear();
}
