//! How the coordinator knows a member is alive without heartbeat messages.
//!
//! Kafka's members prove they live with heartbeats (checked against `session.timeout.ms`) and
//! prove they make progress by calling `poll` (checked against `max.poll.interval.ms`). In one
//! process the coordinator can look instead:
//!
//! - **progress**: a member's consumer stamps the time each `poll` returns, and marks the time it
//!   is inside `poll` (waiting in `poll` is progress). A member that spends longer than
//!   `max_poll_interval` outside `poll` is removed.
//! - **session**: the thread that last polled leaves a thread-local guard whose destructor stamps
//!   the time the thread ended. A member whose polling thread ended, and that no live thread has
//!   polled since, is removed once `session_timeout` has passed: the consumer was leaked in a
//!   thread that died, or kept somewhere no thread polls it from. A static member whose consumer
//!   was dropped keeps its partitions for `session_timeout` too, waiting for its successor.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

/// Milliseconds since the first call in this process (monotonic; never zero once the process
/// has run for a millisecond, and `ALIVE` means "no time" below).
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

const ALIVE: u64 = 0;
const IN_POLL: u64 = u64::MAX;

/// Whether a thread still runs: `ended_at` is stamped by the thread-local guard's destructor.
#[derive(Debug, Default)]
pub(crate) struct ThreadAlive {
    ended_at: AtomicU64,
}

struct ThreadGuard(Arc<ThreadAlive>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.0.ended_at.store(now_ms(), Ordering::Release);
    }
}

thread_local! {
    static THIS_THREAD: ThreadGuard = ThreadGuard(Arc::new(ThreadAlive::default()));
}

/// Why the coordinator removed a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    /// It did not poll in time or its session ended; it may join again as a new member.
    Expired(String),
    /// Another consumer joined with its `group_instance_id`; it must not consume any more.
    Fenced(String),
}

/// A member's signs of life, shared by its consumer and the coordinator.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// When the last `poll` returned (`now_ms`), or `IN_POLL` while one runs.
    last_poll: AtomicU64,
    /// The thread that polled last.
    thread: Mutex<Arc<ThreadAlive>>,
    /// Its address, to compare without the lock on every poll.
    thread_id: AtomicUsize,
    /// Set by the coordinator when it removes the member.
    removed: Mutex<Option<Removal>>,
}

impl Liveness {
    /// Liveness of a member joining from the current thread.
    pub fn new() -> Arc<Liveness> {
        let thread = current_thread();
        Arc::new(Liveness {
            last_poll: AtomicU64::new(now_ms()),
            thread_id: AtomicUsize::new(Arc::as_ptr(&thread) as usize),
            thread: Mutex::new(thread),
            removed: Mutex::new(None),
        })
    }

    /// A poll starts on the current thread.
    pub fn enter_poll(&self) {
        self.last_poll.store(IN_POLL, Ordering::Release);
        if let Ok(ours) = THIS_THREAD.try_with(|g| Arc::as_ptr(&g.0) as usize) {
            // `thread` keeps the recorded `ThreadAlive` allocated, so its address is never reused
            // by another thread's while we compare against it.
            if self.thread_id.load(Ordering::Relaxed) != ours {
                let mut thread = self.thread.lock();
                *thread = current_thread();
                self.thread_id
                    .store(Arc::as_ptr(&thread) as usize, Ordering::Relaxed);
            }
        }
    }

    /// A poll returns.
    pub fn exit_poll(&self) {
        self.last_poll.store(now_ms(), Ordering::Release);
    }

    /// Why the member was removed, if it was.
    pub fn removal(&self) -> Option<Removal> {
        self.removed.lock().clone()
    }

    pub fn set_removed(&self, removal: Removal) {
        self.removed.lock().get_or_insert(removal);
    }

    /// Why the member should be removed at `now`, if it should.
    pub fn expired(
        &self,
        now: u64,
        max_poll_interval_ms: u64,
        session_timeout_ms: u64,
    ) -> Option<String> {
        let last = self.last_poll.load(Ordering::Acquire);
        if last != IN_POLL && now.saturating_sub(last) > max_poll_interval_ms {
            return Some(format!(
                "the consumer did not poll for {} ms, longer than max_poll_interval ({max_poll_interval_ms} ms)",
                now.saturating_sub(last)
            ));
        }
        let ended = self.thread.lock().ended_at.load(Ordering::Acquire);
        if ended != ALIVE && now.saturating_sub(ended) >= session_timeout_ms {
            return Some(format!(
                "the thread that polled the consumer ended {} ms ago and none has polled since \
                 (session_timeout {session_timeout_ms} ms)",
                now.saturating_sub(ended)
            ));
        }
        None
    }
}

fn current_thread() -> Arc<ThreadAlive> {
    // During thread-local destruction there is no guard any more: report an ended thread.
    THIS_THREAD
        .try_with(|g| Arc::clone(&g.0))
        .unwrap_or_else(|_| {
            Arc::new(ThreadAlive {
                ended_at: AtomicU64::new(now_ms()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_ends_is_noticed() {
        let liveness = std::thread::spawn(|| {
            let l = Liveness::new();
            l.enter_poll();
            l.exit_poll();
            l
        })
        .join()
        .unwrap();
        let now = now_ms();
        assert!(liveness.expired(now, u64::MAX, 10_000).is_none());
        assert!(liveness.expired(now + 10_000, u64::MAX, 10_000).is_some());
        // A poll from a live thread revives it.
        liveness.enter_poll();
        assert!(liveness.expired(now + 10_000, u64::MAX, 10_000).is_none());
    }

    #[test]
    fn polling_is_progress() {
        let l = Liveness::new();
        l.exit_poll();
        let now = now_ms();
        assert!(l.expired(now + 50, 100, u64::MAX).is_none());
        assert!(l.expired(now + 500, 100, u64::MAX).is_some());
        l.enter_poll();
        assert!(l.expired(now + 500, 100, u64::MAX).is_none());
    }
}
